#!/usr/bin/env bash
# The browser tests drive Debian's Chromium headless; install it if it is missing.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium for the browser tests (apt-get, about 40 s)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "The browser tests need Chromium at /usr/bin/chromium: run 'sudo apt-get install chromium'" >&2
    exit 1
fi
