"""The polling backend: rescan the directory on a timer.

For filesystems whose changes inotify cannot see (NFS, SMB, FUSE, 9P and other shared mounts written from
another client), for non-Linux platforms, and when inotify cannot be set up.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from .._clock import wait_seconds
from .._linux import bypass_client_caches

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ._base import OnChange, Plan


# Filesystem timestamps can be coarse (a jiffy on ext4, 2 s on FAT): a directory modified less than this
# long before a scan may be modified again without its mtime changing, so it is listed again regardless.
_TIMESTAMP_MARGIN = 2.0


# Every open watch, so that a forked child can remake their locks (below).
_open_watches: weakref.WeakSet[PollWatch] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A lock held at the fork by a thread of the parent (scanning) would stay held in the child forever."""
    for watch in list(_open_watches):
        watch._scan_lock = threading.Lock()
        watch._wake = threading.Event()


os.register_at_fork(after_in_child=_after_fork_in_child)


class PollWatch:
    """Its plan: no fd, and a timer that runs out when the next scan is due."""

    backend = "poll"

    def __init__(
        self, directory: str, on_change: OnChange, *, interval: float, list_when_changed: bool
    ) -> None:
        self._interval = interval
        self._on_change = on_change
        self._directory = directory
        # Listing opens the directory, and every inotify follower watching it wakes on that close. On local
        # filesystems a stat tells whether anything changed; on network ones (where nobody uses inotify)
        # attribute caching could make a stat staler than a listing, so those are always listed.
        self._list_when_changed = list_when_changed
        self._last_seen: tuple[int, ...] | None = None
        self._settling = True
        self._closed = False
        self._wake = threading.Event()  # set by wake() and close(): every sleeping pump returns
        self._scan_lock = threading.Lock()
        self._next_scan = 0.0
        _open_watches.add(self)
        self._scan()

    def plan(self) -> Plan:
        if self._closed:
            return None, None
        return None, max(0.0, self._next_scan - time.monotonic())

    def _scan(self) -> None:
        with self._scan_lock:
            self._next_scan = time.monotonic() + self._interval
            relist = not self._list_when_changed or self._changed()
            if not self._list_when_changed:
                bypass_client_caches(self._directory)
        # [] : no new entries, but the leaders' locks are still worth a look.
        self._on_change(None if relist else [])

    def _changed(self) -> bool:
        """Whether the directory may hold new entries since the last look (a stat, not a listing)."""
        try:
            st = os.stat(self._directory)
        except OSError:
            return True  # missing or unreadable: the listing reports it
        seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, st.st_size)
        changed = seen != self._last_seen or self._settling
        self._last_seen = seen
        self._settling = time.time() - st.st_mtime < _TIMESTAMP_MARGIN
        return changed

    def pump(self, timeout: float | None, stop: Callable[[], bool] | None = None) -> None:
        # Scan only when due, so a caller spinning on is_set() costs a clock read, not a directory listing.
        # The wake event is sticky: a trip or close after the stop() check still ends the sleep.
        if (timeout is None or timeout > 0) and not (stop is not None and stop()):
            self._wake.wait(wait_seconds(timeout))
        if not self._closed and time.monotonic() >= self._next_scan:
            self._scan()

    def wake(self) -> None:
        # Only ever called once the token has tripped or closed, when no pump needs to sleep again.
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        _open_watches.discard(self)
        self._wake.set()
