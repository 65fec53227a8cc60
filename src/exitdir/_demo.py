"""The seed's two demo programs: ``busy`` (a follower) and ``work`` (a leader)."""

from __future__ import annotations

import time

from ._clock import sleep
from ._config import DEFAULT_NAME
from ._leader import write_marker
from ._token import aware

TICK_SECONDS = 0.5


def go_time(now: float) -> str:
    """Local time as Go's ``time.Time.String()`` prints it (less the monotonic part), as the seed shows."""
    local = time.localtime(now)
    micros = int((now - int(now)) * 1_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{micros:06d}" + time.strftime(" %z %Z", local)


def busy() -> int:
    """Tick every 500 ms until a marker appears, then exit 0 at once (not at the next tick)."""
    with aware() as token:
        next_tick = time.monotonic() + TICK_SECONDS
        while not token.wait(timeout=max(0.0, next_tick - time.monotonic())):
            print(f"[Busy] Tick at {go_time(time.time())}", flush=True)
            next_tick += TICK_SECONDS
    print("[Busy] Exiting...", flush=True)
    return 0


def work(seconds: float = 5.0) -> int:
    """Do ``seconds`` of work, then tell the followers to exit."""
    print("[Work] Doing work...", flush=True)
    sleep(seconds)  # any duration the parser takes, inf included: work until stopped
    print("[Work] Exiting...", flush=True)
    write_marker(0, reason=None, name=DEFAULT_NAME, directory=None)
    return 0
