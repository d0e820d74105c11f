#!/usr/bin/env bash
# lstmkit.torch compiles its CPU step kernel with g++ on first use (lstmkit/_cpu_kernel.py); install
# g++ if it is missing. Without it everything still runs, on torch ops (slower at small sizes).
set -euo pipefail
command -v g++ >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing g++ for lstmkit's CPU kernel (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
else
    echo "g++ not found: lstmkit.torch will use torch ops on the CPU ('sudo apt-get install g++' for its kernel)"
fi
