"""A helper for the lifecycle tests: prints `ready PID`, answers SIGUSR1 with `alive` (proof that it still
runs), exits 3 on SIGUSR2 (a crash of its own), and on SIGTERM does as argv[1] says: `die` (the default
action: killed by it), `exit143` or `exit1` (a drain that failed), after printing `TERM`, or `ignore` (only
SIGKILL ends it). SIGINT keeps its default action: killed by it.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

mode = sys.argv[1] if len(sys.argv) > 1 else "die"


def on_usr1(signum: int, frame: FrameType | None) -> None:
    print("alive", flush=True)


def on_term(signum: int, frame: FrameType | None) -> None:
    print("TERM", flush=True)
    sys.exit(143 if mode == "exit143" else 1)


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGUSR2, lambda signum, frame: sys.exit(3))
signal.signal(signal.SIGINT, signal.SIG_DFL)
if mode in ("exit143", "exit1"):
    signal.signal(signal.SIGTERM, on_term)
elif mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"ready {os.getpid()}", flush=True)
while True:
    signal.pause()
