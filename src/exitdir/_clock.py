"""Float seconds into what each blocking call accepts. None is forever; a duration longer than a call can
take is cut to the longest it can, and the caller's loop, which re-reads its deadline, blocks again."""

from __future__ import annotations

import math
import time

_MAX_POLL_MS = 2**31 - 1  # poll() takes a C int: about 24.8 days
# threading.TIMEOUT_MAX on 64-bit Linux (about 292 years); a literal, so this module imports nothing.
_MAX_WAIT_SECONDS = 9_223_372_036.0
_MAX_SLEEP_SECONDS = 86_400.0  # time.sleep's limit depends on the platform's timers; a day is safe anywhere


def sooner(first: float | None, second: float | None) -> float | None:
    """The shorter of two durations, None being forever.

    >>> sooner(None, 2.0), sooner(1.0, 2.0), sooner(None, None)
    (2.0, 1.0, None)
    """
    if first is None:
        return second
    return first if second is None else min(first, second)


def poll_ms(timeout: float | None) -> int:
    """``select.poll().poll()``'s argument: -1 for None; rounded up, so a short timeout never busy-loops."""
    if timeout is None:
        return -1
    if timeout >= _MAX_POLL_MS / 1000:
        return _MAX_POLL_MS
    return max(0, math.ceil(timeout * 1000))


def wait_seconds(timeout: float | None) -> float | None:
    """``Event.wait()`` and ``Condition.wait()``'s argument (they raise OverflowError past TIMEOUT_MAX)."""
    if timeout is None:
        return None
    return min(max(timeout, 0.0), _MAX_WAIT_SECONDS)


def sleep(seconds: float) -> None:
    """``time.sleep`` for any duration, ``inf`` included (time.sleep raises OverflowError past time_t)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, _MAX_SLEEP_SECONDS))
