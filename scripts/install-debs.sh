#!/bin/sh
# Installs the Debian packages given as arguments, only those missing, so a fresh machine needs no manual
# step. The Makefile says which targets need which packages and why.
set -eu
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "exitdir: these Debian packages are needed:$missing; install them as root (apt-get install$missing)" >&2
    exit 1
fi
echo "exitdir: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
