#!/usr/bin/env bash
# The browser tests drive Debian's Chromium headless and inject axe-core (npm, pinned in
# tools/package-lock.json) into every page; a CJK font makes the screenshots of the Chinese
# editions readable. Install whichever is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $* for the browser tests (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "The browser tests need: $* (run 'sudo apt-get install $*')" >&2
        exit 1
    fi
}

command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v npm >/dev/null 2>&1 || apt_install npm
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || apt_install fonts-wqy-microhei
if [ ! -f "$here/node_modules/axe-core/axe.min.js" ]; then
    echo "installing axe-core for the accessibility checks (npm ci)"
    npm ci --prefix "$here" --no-audit --no-fund --silent
fi
