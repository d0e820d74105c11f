#!/usr/bin/env bash
# The gradebook tests start a throw-away PostgreSQL server (Debian's postgresql); install it if it is missing.
set -euo pipefail
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL for the gradebook tests (apt-get, about 30 s)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
else
    echo "The gradebook tests need PostgreSQL's initdb and pg_ctl: run 'sudo apt-get install postgresql'" >&2
    exit 1
fi
