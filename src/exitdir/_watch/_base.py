"""What every watch backend provides to the token, and the waiting contract (types only at run time).

The waiting contract
--------------------
A watch does not decide how its waiters block; it tells them, and it may change its mind. Every waiter
(``ExitToken.wait()`` in any thread, the asyncio driver, the supervisor's ``poll()``) runs this loop, and
re-reads the plan before *every* block::

    while not tripped:
        fd, timeout = watch.plan()
        block until `fd` is readable (None: no fd), at most `timeout` seconds (None: no limit),
              or until the waiter's own events (a signal, close(), a cancelled task) wake it
        watch.pump(0)        # deliver what is pending; never blocks

- ``plan()`` never blocks, never raises and is cheap: it is called before every block.
- ``timeout`` is the seconds until the watch must be pumped again whatever its fd says: a poll backend's
  next scan, a broken inotify watch's next retry, an inotify watch's next check that its path still names
  the directory it watches (and, for a token that tests locks on a file server, looks again). It is
  never negative; 0 means "pump now".
- ``(None, None)``: nothing the watch does can end the wait; only the waiter's own events can.
- The plan changes only inside a delivery: an inotify watch lost mid-wait (the directory replaced while
  the watch limit is reached, or recreated unreadable for a moment) turns into timer polling, and back
  into events once the watch can be set again. Each change is followed by ``on_change(None)``, so the
  watch's owner (the token) can wake every waiter blocked on the old plan in another thread or loop.
  A waiter that blocked on a plan read once and never again is the bug this contract exists to rule out.
- A look can fail: the listing or a marker's read runs out of file descriptors or memory (EMFILE, ENFILE,
  ENOMEM...), or meets a stale handle. ``on_change`` never raises for that; the watch stays in place, so
  whatever happens meanwhile is still reported, and the owner (the token) looks again after the poll
  interval, on a timer of its own that it adds to the plan its waiters block on (``Waiter.plan()`` is
  this plan with that timer): every front-end wakes for the retry, whichever backend watches. A watch
  needs to do nothing for it. A look that keeps failing on a stale handle for a second and a few looks
  fails the token instead (its waiters are woken and told).
- ``pump(timeout, stop)`` is the same loop body for a thread that blocks *inside* the watch: it blocks
  on the watch's own fd for at most ``timeout`` seconds (the caller has already capped that at the
  plan's timeout), then delivers. Between the caller's last look and its block, another thread may
  trip or close the token or change the plan: ``stop()`` is checked under the watch's lock just before
  blocking, and every such change is followed by ``wake()``, so the change is seen by one or the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    # Called with names that may be new markers, or None when the whole directory must be rescanned (the
    # watch was just set up, the directory was replaced, the event queue overflowed, a poll is due, the
    # plan changed), or an empty list when nothing new appeared but a process closed the directory (a
    # leader may have died). Never raises: a look that failed is the owner's to retry (see above).
    OnChange = Callable[[list[str] | None], None]

    # (fd, timeout): what a waiter blocks on before its next pump(0). See the contract above.
    Plan = tuple[int | None, float | None]


class Watch(Protocol):
    """One follower's watch on one exit directory."""

    backend: str

    def plan(self) -> Plan:
        """What to block on before the next ``pump(0)``: re-read before every block (the contract)."""

    def pump(self, timeout: float | None, stop: Callable[[], bool] = ...) -> None:
        """Block on the watch's fd for at most ``timeout`` seconds (None: no limit), then deliver.

        ``stop()`` is checked where no wake-up can be missed, just before blocking: True means the
        caller's reason to block is gone (the token tripped or closed, or the plan changed), so return.
        """

    def wake(self) -> None:
        """Make every thread blocked in :meth:`pump` look again (after whatever its ``stop()`` checks)."""

    def close(self) -> None:
        """Stop watching and wake every thread blocked in :meth:`pump`. Idempotent."""
