"""Linux inotify through ctypes: one instance per process, shared by every watch.

Why one shared instance: the per-user instance limit is 128 by default across a whole node, and closing
an instance blocks for ~10 ms while the kernel waits out a grace period. Watches are added and removed with
``inotify_add_watch``/``inotify_rm_watch``, which cost microseconds.

Why no reader thread: the thread that waits reads the fd itself (``poll`` then ``read``); a hand-over between
threads costs 100-150 us here. When several threads wait at once, one of them reads and dispatches to every
watch and the others sleep on a condition until it is done.

Why one instance per *process*: a forked child inherits the descriptor, and an event read from a shared
instance is gone for every other process, so only one of them would trip. A child therefore drops what it
inherited (``_after_fork_in_child``) and each watch it inherited sets itself up again on the child's own
instance, then rescans.
"""

from __future__ import annotations

import os
import select
import stat
import struct
import threading
import time
import weakref

from .._clock import poll_ms, wait_seconds
from .._errno import FallbackRequired, errno_text, fallback_or_raise, lacking
from .._linux import Inotify
from .._log import warn_once

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ._base import OnChange, Plan


def _never() -> bool:
    return False


IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

# Every watch uses the same mask: inotify shares one watch per inode per instance and a second
# add_watch with another mask would replace the first one's. IN_CLOSE_NOWRITE on the directory itself is
# how a follower learns that a process holding it open, such as a leader with its liveness lock, is gone.
WATCH_MASK = (
    IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
_APPEARED = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name
_READ_SIZE = 64 * 1024


class _Hub:
    """The process's inotify instance and the watches registered on it."""

    def __init__(self) -> None:
        self._inotify = Inotify()
        self.fd = self._inotify.fd
        self.pid = os.getpid()
        # A self-pipe so close() can wake a thread blocked in poll() on a watch that another token shares.
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            self._inotify.close()
            raise fallback_or_raise("pipe2", err) from None
        # A follower must still be able to list the directory beside these three descriptors. If it
        # cannot (a low `ulimit -n`), polling, which holds none, works where inotify's listings never would.
        try:
            os.close(os.dup(self._wake_r))
        except OSError as err:
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._inotify.close()
            raise fallback_or_raise(
                "no file descriptor left beside inotify's to list the directory", err
            ) from None
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self._lock = threading.Lock()
        self._done_reading = threading.Condition(self._lock)
        self._reader: int | None = None  # the thread reading the fd, if any
        self._watches: dict[int, list[InotifyWatch]] = {}

    def forsake(self) -> None:
        """In a forked child: close this process's copies of the parent's descriptors, and nothing else.

        The instance itself is shared with the parent: ``inotify_rm_watch`` here would remove the parent's
        watches, and reading it would steal the parent's events.
        """
        for fd in (self.fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass  # closed by the program meanwhile (a daemon closing every descriptor after fork)

    def add(self, path: str, watch: InotifyWatch) -> int:
        with self._lock:
            wd = self._inotify.add_watch(path, WATCH_MASK)
            self._watches.setdefault(wd, []).append(watch)
            return wd

    def remove(self, wd: int, watch: InotifyWatch) -> None:
        with self._lock:
            watches = self._watches.get(wd)
            if watches is None or watch not in watches:
                return
            watches.remove(watch)
            if watches:
                return  # another token still watches this inode
            del self._watches[wd]
            self._inotify.rm_watch(wd)

    def wake(self) -> None:
        """Make every thread blocked in :meth:`pump` look again. Call it *after* changing what they check.

        A thread about to block checks its ``stop`` under the lock first, so a change made before this
        call is seen there, and one made after it is announced here: to the condition's sleepers, and
        through the pipe to another thread blocked in poll(). The reader itself needs no syscall.
        """
        with self._lock:
            reader = self._reader
            self._done_reading.notify_all()
        if reader is not None and reader != threading.get_ident():
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def pump(self, timeout: float | None, stop: Callable[[], bool]) -> None:
        """Block up to ``timeout`` seconds (one thread in poll(), the rest on a condition), unless ``stop()``
        says the caller's reason to block is gone; then dispatch what was read."""
        with self._lock:
            if stop():
                return
            if self._reader is not None:
                # Another thread is reading; it dispatches to our watches too. Wait until it is done.
                self._done_reading.wait(wait_seconds(timeout))
                return
            self._reader = threading.get_ident()
        try:
            # PEP 475: retried on EINTR with the remaining time. Only the fds it reports are read, so the
            # hot path raises no BlockingIOError; level-triggered poll reports leftovers next time.
            for fd, _ in self._poller.poll(poll_ms(timeout)):
                if fd == self.fd:
                    self._read_events()
                else:
                    self._drain_wake_pipe()
        finally:
            with self._lock:
                self._reader = None
                self._done_reading.notify_all()

    def _drain_wake_pipe(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def _read_events(self) -> None:
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return  # another loop or thread sharing the fd got there first
        self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        # Per watch: its wd, new names, whether to re-arm, whether a process closed the directory itself.
        deliveries: dict[InotifyWatch, tuple[int, list[str], bool, bool]] = {}
        offset = 0
        with self._lock:
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = os.fsdecode(data[offset : offset + length].rstrip(b"\0"))
                offset += length
                if mask & IN_Q_OVERFLOW:
                    # Events were lost: every watch rescans.
                    for watches in self._watches.values():
                        for watch in watches:
                            deliveries[watch] = (watch.wd, [], True, False)
                    continue
                watches = self._watches.get(wd, [])
                if mask & IN_IGNORED:
                    self._watches.pop(wd, None)
                for watch in watches:
                    _, names, rearm, closed = deliveries.get(watch, (wd, [], False, False))
                    if mask & _GONE:
                        rearm = True
                    elif mask & _APPEARED and name and not mask & IN_ISDIR:
                        names.append(name)
                    elif mask & _APPEARED and mask & IN_ISDIR and not watch.watching_target:
                        rearm = True  # a directory appeared on the way to the one we wait for
                    elif mask & IN_CLOSE_NOWRITE and not name:
                        closed = True
                    deliveries[watch] = (wd, names, rearm, closed)
        # Outside the lock: delivering reads markers and may add or remove watches.
        for watch, (wd, names, rearm, closed) in deliveries.items():
            watch.deliver(wd, names, rearm, closed)


_hub: _Hub | None = None
_hub_lock = threading.Lock()
# Every open watch, so that a forked child can move the ones it inherited onto an instance of its own.
_open_watches: weakref.WeakSet[InotifyWatch] = weakref.WeakSet()


def process_hub() -> _Hub:
    """The shared instance, created on first use (and anew in a forked child, which must not read ours)."""
    global _hub  # noqa: PLW0603 - one instance per process is the point
    with _hub_lock:
        if _hub is None or _hub.pid != os.getpid():
            _hub = _Hub()
        return _hub


def _after_fork_in_child() -> None:
    """Drop the parent's instance in a forked child, and have every inherited watch set itself up anew.

    Only this thread survives a fork: a lock another thread held then stays held forever, so every lock
    the watches use is made anew, and the reader recorded in the old hub is forgotten with it. Nothing is
    set up here (no descriptor is opened in a child that may never wait): each watch does it on its next
    pump, which its plan makes due at once.
    """
    global _hub, _hub_lock  # noqa: PLW0603 - the child's own instance replaces the parent's
    inherited, _hub = _hub, None
    _hub_lock = threading.Lock()
    if inherited is not None:
        inherited.forsake()
    for watch in list(_open_watches):
        watch._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the directory ``path`` names now, or None if it names none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class InotifyWatch:
    """Watch one directory; while it does not exist, watch its nearest existing ancestor.

    Its plan is the shared inotify fd and a timer of ``retry_interval`` (the poll interval). At each due
    pump one ``stat`` checks that the path still names the directory watched: a symlink retargeted, a
    filesystem mounted over it or an ancestor renamed raise no event on the inode watched, so then the
    watch is set again and the directory rescanned. While the watch is *broken* (lost mid-wait and
    refused again: the watch limit reached, the directory recreated unreadable; or not yet set up in a
    forked child), each due pump retries the watch and rescans instead, so the follower polls until the
    watch can be set again, and never hangs.
    """

    backend = "inotify"

    def __init__(
        self, directory: str, on_change: OnChange, *, retry_interval: float, look_every_interval: bool = False
    ) -> None:
        self._hub: _Hub | None = None  # None: not set up in this process (yet)
        self._directory = directory
        self._on_change = on_change
        self._retry_interval = retry_interval
        self._look_every_interval = look_every_interval
        self._lock = threading.RLock()
        self._closed = False
        self._retry_at: float | None = None  # monotonic time of the next retry while broken
        self._check_at = 0.0  # monotonic time of the next check that the path names what is watched
        self._watched: tuple[str, tuple[int, int] | None] = (directory, None)  # path, its identity then
        self._wake = threading.Event()  # set by wake() and close(), for a pump that has no hub to block on
        self.wd = -1
        self.watching_target = False
        self._arm(initial=True)
        _open_watches.add(self)

    def plan(self) -> Plan:
        hub = self._hub
        retry_at = self._retry_at
        due = self._check_at if retry_at is None else retry_at
        return None if hub is None else hub.fd, max(0.0, due - time.monotonic())

    def _arm(self, *, initial: bool = False) -> None:
        """Watch the directory (or the closest ancestor that exists), then ask for a rescan.

        The watch goes in *before* the scan, so a marker written at any moment is seen by one or the other.
        """
        with self._lock:
            if self._closed:
                return
            if self.wd != -1 and self._hub is not None:
                self._hub.remove(self.wd, self)
            self.wd = -1
            path, identity = self._directory, None
            try:
                hub = self._hub = process_hub()
            except (FallbackRequired, OSError) as err:
                if initial:
                    raise  # inotify cannot be used here: the caller polls instead
                self._break(err)  # a forked child that cannot have an instance of its own (yet)
            else:
                while True:
                    # Taken before the watch is set: a swap after this is seen by the next check, and one
                    # between the two costs one needless re-watch, never a miss.
                    identity = _identity(path)
                    try:
                        self.wd = hub.add(path, self)
                        break
                    except (FileNotFoundError, NotADirectoryError):
                        parent = os.path.dirname(path)
                        if parent == path:
                            raise
                        path = parent
                    except (FallbackRequired, OSError) as err:
                        if initial and (isinstance(err, FallbackRequired) or lacking(err)):
                            raise  # inotify cannot be used here: the caller polls instead
                        # Refused now (a stale NFS handle, a directory made unreadable): retried on a timer.
                        self._break(err)
                        break
            if self.wd != -1:
                self._retry_at = None
                self._watched = (path, identity)
            self.watching_target = path == self._directory
            self._check_at = time.monotonic() + self._retry_interval
        self._on_change(None)

    def _break(self, err: OSError | FallbackRequired) -> None:
        # Mid-wait (watch limit reached, permission changed): poll on a timer and retry the watch, rather
        # than hang. The change of plan reaches waiters through the rescan that follows.
        self._retry_at = time.monotonic() + self._retry_interval
        warn_once(
            f"inotify-broken:{self._directory}",
            f"cannot re-watch {self._directory} with inotify: {errno_text(err.errno)}; polling it every "
            f"{self._retry_interval:g} s until it can be watched again",
        )

    def _forked(self) -> None:
        """In a forked child (see ``_after_fork_in_child``): broken, with a retry due at once."""
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._hub = None
        self.wd = -1
        self._retry_at = 0.0

    def _moved(self) -> bool:
        """Whether the path names another directory than the one watched, or the one awaited has appeared."""
        path, identity = self._watched
        if not self.watching_target and _identity(self._directory) is not None:
            return True
        return _identity(path) != identity

    def deliver(self, wd: int, names: list[str], rearm: bool, closed: bool) -> None:
        if wd != self.wd or self._closed:
            return  # a stale event for a watch we already replaced
        if rearm:
            self._arm()
        elif (names or closed) and self.watching_target:
            self._on_change(names)

    def pump(self, timeout: float | None, stop: Callable[[], bool] = _never) -> None:
        if self._closed:
            return
        hub = self._hub
        if hub is not None:
            hub.pump(timeout, lambda: self._closed or stop())
        elif timeout is None or timeout > 0:
            # No instance to block on: sleep until the retry is due. Cleared before stop() is checked, so a
            # change announced after that check still ends the sleep (the contract in _base).
            self._wake.clear()
            if not (self._closed or stop()):
                self._wake.wait(wait_seconds(timeout))
        now = time.monotonic()
        retry_at = self._retry_at
        if retry_at is not None:
            if now >= retry_at:
                self._arm()
        elif now >= self._check_at:
            with self._lock:  # one thread checks per interval
                if now < self._check_at:
                    return
                self._check_at = now + self._retry_interval
            if self._moved():
                self._arm()
            elif self._look_every_interval and self.watching_target:
                self._on_change([])

    def wake(self) -> None:
        self._wake.set()
        hub = self._hub
        if hub is not None:
            hub.wake()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            hub = self._hub
            if self.wd != -1 and hub is not None:
                hub.remove(self.wd, self)
            self.wd = -1
        _open_watches.discard(self)
        self._wake.set()
        if hub is not None:
            hub.wake()
