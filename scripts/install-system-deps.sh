#!/usr/bin/env bash
# System packages the tests need beyond pip: Debian's Chromium, which the browser test drives through Playwright
# (Playwright's own browser download is not used). Idempotent and quiet: does nothing when it is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install Chromium as /usr/bin/chromium (the browser test drives it), then run the tests" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
