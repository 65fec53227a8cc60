#!/bin/sh
# The seed's local demo: `busy` ticks every 500 ms until `work`, after 5 s of work, signals exit.
set -e
EXIT_DIR=$(mktemp -d)
export EXIT_DIR
trap 'rm -rf "$EXIT_DIR"' EXIT
exitdir demo busy &
exitdir demo work
wait $!
