#!/bin/sh
# Installs the Debian packages the tests need, only when missing, so `make test` works on a fresh machine.
#   golang-go, golang-github-fsnotify-fsnotify-dev: the Go follower/leader for the wire-compatibility tests
#   util-linux: mount/unshare for read-only filesystem and PID 1 tests
#   bindfs, fuse3: a real FUSE mount, where inotify is blind to writes made underneath (like NFS)
set -eu
packages="golang-go golang-github-fsnotify-fsnotify-dev util-linux bindfs fuse3"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "exitdir: the tests need these Debian packages:$missing; install them as root (apt-get install$missing)" >&2
    exit 1
fi
echo "exitdir: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
