"""Run ``exitdir ARGS...`` (argv[1:]) in-process, printing ``ready`` on stdout from inside main() each time a
token starts to wait: `exitdir wait` prints nothing before the marker, so this line is the handshake."""

from __future__ import annotations

import sys

import exitdir._cli as cli
import exitdir._token as token

real_wait = token.ExitToken.wait


def wait(self: token.ExitToken, timeout: float | None = None) -> bool:
    print("ready", flush=True)
    return real_wait(self, timeout)


token.ExitToken.wait = wait  # type: ignore[method-assign]
sys.exit(cli.main(sys.argv[1:]))
