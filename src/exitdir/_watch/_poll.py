"""The polling backend: rescan the directory on a timer.

For filesystems whose changes inotify cannot see (NFS, SMB, FUSE, 9P and other shared mounts written from
another client), for non-Linux platforms, and when inotify cannot be set up.
"""

from __future__ import annotations

import threading
import time

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._base import OnChange


class PollWatch:
    backend = "poll"

    def __init__(self, directory: str, on_change: OnChange, *, interval: float) -> None:
        self.poll_interval: float | None = interval
        self._interval = interval
        self._on_change = on_change
        self._closed = threading.Event()
        self._scan_lock = threading.Lock()
        self._next_scan = 0.0
        self._scan()

    def fileno(self) -> int | None:
        return None

    def _scan(self) -> None:
        with self._scan_lock:
            self._next_scan = time.monotonic() + self._interval
        self._on_change(None)

    def pump(self, timeout: float | None) -> None:
        # Scan only when due, so a caller spinning on is_set() costs a clock read, not a directory listing.
        until_due = self._next_scan - time.monotonic()
        if until_due > 0:
            if timeout is not None and timeout < until_due:
                if timeout > 0:
                    self._closed.wait(timeout)
                return
            if self._closed.wait(until_due):
                return
        if not self._closed.is_set():
            self._scan()

    def wake(self) -> None:
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
