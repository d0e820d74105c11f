#!/usr/bin/env bash
# `lstmkit grade` runs each submission in bubblewrap (Debian's bwrap) with a seccomp filter built by
# libseccomp (libseccomp2, loaded by the pyseccomp package); install them if they are missing.
set -euo pipefail
command -v bwrap >/dev/null 2>&1 && ldconfig -p | grep -q 'libseccomp\.so\.2' && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap and libseccomp2 for the grader's sandbox (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 >/dev/null
else
    echo "The grader's sandbox needs bubblewrap and libseccomp2: run 'sudo apt-get install bubblewrap libseccomp2'" >&2
    exit 1
fi
