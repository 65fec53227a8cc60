"""The seed's two demo programs: ``busy`` (a follower) and ``work`` (a leader)."""

from __future__ import annotations

import time

from ._clock import sleep
from ._config import DEFAULT_NAME
from ._leader import write_marker
from ._token import aware

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

TICK_SECONDS = 0.5


def go_time(now: float) -> str:
    """Local time as Go's ``time.Time.String()`` prints it (less the monotonic part), as the seed shows."""
    local = time.localtime(now)
    micros = int((now - int(now)) * 1_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{micros:06d}" + time.strftime(" %z %Z", local)


def busy(say: Callable[[str], None]) -> int:
    """Tick every 500 ms until a marker appears, then exit 0 at once (not at the next tick).

    ``say`` prints a line; it must not raise (the CLI's never does), so a lost stdout cannot stop a demo.
    """
    with aware() as token:
        next_tick = time.monotonic() + TICK_SECONDS
        while not token.wait(timeout=max(0.0, next_tick - time.monotonic())):
            say(f"[Busy] Tick at {go_time(time.time())}")
            next_tick += TICK_SECONDS
    say("[Busy] Exiting...")
    return 0


def work(seconds: float, say: Callable[[str], None]) -> int:
    """Do ``seconds`` of work, then tell the followers to exit (whatever became of stdout meanwhile)."""
    say("[Work] Doing work...")
    sleep(seconds)  # any duration the parser takes, inf included: work until stopped
    say("[Work] Exiting...")
    write_marker(0, reason=None, name=DEFAULT_NAME, directory=None)
    return 0
