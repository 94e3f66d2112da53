#!/usr/bin/env bash
# System packages the tests need beyond pip, each installed only when it is missing (idempotent and quiet):
#   Debian's Chromium, which the browser test drives through Playwright (Playwright's own browser download is
#   not used), and the WenQuanYi Micro Hei font (Chinese and Latin), which the OCR tests draw their text with.
set -euo pipefail
missing=()
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [ ! -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
    missing+=(fonts-wqy-microhei)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install ${missing[*]} (Chromium as /usr/bin/chromium, which the browser test drives; WenQuanYi Micro Hei" \
         "as /usr/share/fonts/truetype/wqy/wqy-microhei.ttc, which the OCR tests draw with), then run the tests" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
