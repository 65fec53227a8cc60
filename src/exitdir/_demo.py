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
# Go's monotonic readings count from when its time package was initialised, as the program started; the
# demo's from when this module was loaded, which `exitdir demo` does first.
_STARTED = time.monotonic()


def go_time(now: float, elapsed: float | None = None) -> str:
    """Local time as Go's ``time.Time.String()`` prints it, as the seed shows: ``now`` (``time.time()``)
    to the microsecond, then, given ``elapsed`` (seconds since the program started, on a monotonic clock),
    Go's monotonic reading ``m=±SECONDS`` with 9 decimals (Go's ``m=±ddd.nnnnnnnnn``).

    >>> go_time(0.0, 0.501881542).endswith(" m=+0.501881542")
    True
    """
    local = time.localtime(now)
    micros = int((now - int(now)) * 1_000_000)
    text = time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{micros:06d}" + time.strftime(" %z %Z", local)
    if elapsed is None:  # as Go prints a time stripped of its monotonic reading (t.Round(0))
        return text
    nanos = round(abs(elapsed) * 1e9)
    sign = "-" if elapsed < 0 else "+"
    return f"{text} m={sign}{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


def busy(say: Callable[[str], None]) -> int:
    """Tick every 500 ms until a marker appears, then exit 0 at once (not at the next tick).

    ``say`` prints a line; it must not raise (the CLI's never does), so a lost stdout cannot stop a demo.
    """
    with aware() as token:
        next_tick = time.monotonic() + TICK_SECONDS
        while not token.wait(timeout=max(0.0, next_tick - time.monotonic())):
            say(f"[Busy] Tick at {go_time(time.time(), time.monotonic() - _STARTED)}")
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
