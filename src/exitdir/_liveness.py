"""Leader liveness: a lock on the exit directory itself, held for as long as a leader runs.

A leader that is SIGKILLed or OOM-killed writes no marker; without this its followers would wait forever
(argo#9083). Each leader holds an open file description lock (``F_OFD_SETLK``, a shared read lock) on
the exit directory, on a byte range chosen by its marker name. The kernel drops the lock the moment the
process is gone, however it died. Followers read the lock table in /proc/locks, which takes nothing
and opens nothing in the exit directory, so followers never disturb leaders or each other.

The lock creates no entry in the directory: Go exitdir followers fire on any new file, so anything else
would stop them early. A leader opens and closes the directory once after locking, and a dying process
closes its descriptor: both raise IN_CLOSE_NOWRITE on the directory, which is how inotify followers learn
it is time to look again, with no timer.

Byte ``slot(name)`` held: that leader is running. Byte ``slot(name) + 1`` held too: it may be restarted
(``exitdir lead --signal-on success``), so its death without a marker is not the end.

Across machines (issue 12) that lock is no use: NFS and SMB clients keep a lock on a directory in their
own kernel. So a leader given a *liveness directory* (``EXITDIR_LIVENESS_DIR``, ``--liveness-dir``) also
locks a file of its own there, ``LIVENESS_DIR/NAME``, bytes 0 (running) and 1 (may be restarted), and
those locks do reach the file server (NFSv4 LOCK, SMB2 LOCK). Followers ask the server about them
(F_OFD_GETLK: an NFSv4 LOCKT, an SMB2 lock-and-unlock), so a leader is seen running from any machine.
When its process dies its kernel releases them; when its node dies, the server does once the client's
lease expires (NFSv4) or its connection is dropped (SMB). It is a directory of its own because Go exitdir
followers fire on any new entry of the exit directory.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time

from ._errno import explain
from ._linux import HAVE_OFD_LOCKS, lock_shared, lock_table, locked_by_another, sync_attributes
from ._log import debug_once, warn_once

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._rules import LockFlags

# An SMB client tests a lock by taking it and releasing it on the server at once, so a leader locking its
# file may meet a follower's test: it tries again, for this long.
_CONTENDED_FOR = 2.0
# What a lock test answers when the filesystem cannot lock at all: no crash detection, said once.
_CANNOT_LOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.EBADF})

_SLOTS = 1 << 30


def slot(name: str) -> int:
    """The lock offset for the leader whose marker is ``name`` (FNV-1a: stable across processes)."""
    digest = 0x811C9DC5
    for byte in os.fsencode(name):
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return 2 * (digest % _SLOTS)


def lock_leader(dir_fd: int, directory: str, name: str, *, restartable: bool = False) -> bool:
    """Take leader ``name``'s lock on ``dir_fd``, the exit directory opened by the leader; whether it is
    held. Closing every descriptor of that open directory (or the process ending in any way) drops it.

    Locking is best effort: where the filesystem refuses it (some FUSE and network filesystems) the
    leader works as before and followers simply get no crash detection.
    """
    if not HAVE_OFD_LOCKS:  # other platforms: no liveness, markers still work
        return False
    try:
        lock_shared(dir_fd, slot(name), 2 if restartable else 1)
    except OSError as err:
        debug_once(f"lock:{directory}", f"no liveness lock on {directory}: {err.strerror}")
        return False
    announce(directory)
    return True


def announce(directory: str) -> None:
    """Raise IN_CLOSE_NOWRITE on ``directory``, so that inotify followers look at the locks now."""
    try:
        os.close(os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError:
        pass


def held_offsets(directory: str) -> set[int] | None:
    """Every byte offset locked on ``directory``, read from /proc/locks; None where that is not possible.

    /proc/locks rather than F_OFD_GETLK: that needs a descriptor on the directory, and a follower holding
    one would keep a deleted directory's inode alive (delaying IN_DELETE_SELF, so the follower would not
    re-arm on a recreated directory), while closing one after each look raises IN_CLOSE_NOWRITE, the very
    event that makes it look again. OFD locks are listed there whatever the reader's PID namespace.
    """
    try:
        st = os.stat(directory)
    except OSError:
        return None
    table = lock_table()
    if table is None:
        return None
    # "1: OFDLCK ADVISORY  READ -1 fe:00:2146321 1000 1001": the device as the kernel's own major:minor.
    # Where stat reports another device than the superblock's (btrfs subvolumes) nothing matches, and
    # followers get no crash detection rather than a wrong one.
    needle = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} ".encode()
    found: set[int] = set()
    for line in table.splitlines():
        at = line.find(needle)
        if at == -1 or line.lstrip().startswith(b"->"):  # "->": a waiter, not a holder
            continue
        first, _, last = line[at + len(needle) :].partition(b" ")
        start = int(first)
        stop = start + 2 if last.strip() == b"EOF" else int(last) + 1
        found.update(range(start, min(stop, start + 2)))
    return found


def leader_flags(held: set[int], name: str | None) -> tuple[bool, bool]:
    """Whether leader ``name`` (any leader, for None) is running, and whether it may be restarted."""
    if name is None:
        return any(offset % 2 == 0 for offset in held), any(offset % 2 == 1 for offset in held)
    start = slot(name)
    return start in held, start + 1 in held


def running_leaders(held: set[int]) -> int:
    return sum(1 for offset in held if offset % 2 == 0)


def hold_liveness_file(liveness_dir: str, name: str, *, restartable: bool = False) -> int | None:
    """Leader side: lock ``liveness_dir/NAME`` (created with its directory if missing) where the file server
    sees it; the descriptor to close once the marker is written, or None where that fails (said once:
    the leader runs all the same, and followers on other machines cannot tell if it is killed)."""
    path = os.path.join(liveness_dir, name)
    fd = None
    try:
        os.makedirs(liveness_dir, exist_ok=True)
        # O_NONBLOCK: a FIFO planted there must not hang the leader; O_NOFOLLOW: nor lead it elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _cannot_hold(path, "it is not a regular file: remove it")
            os.close(fd)
            return None
        deadline = time.monotonic() + _CONTENDED_FOR
        while True:
            try:
                lock_shared(fd, 0, 2 if restartable else 1)
                return fd
            except (BlockingIOError, PermissionError):  # EAGAIN, EACCES: a follower's test, for an instant
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.01)
    except OSError as err:
        if fd is not None:
            os.close(fd)
        _cannot_hold(path, explain(err))
        return None


def _cannot_hold(path: str, why: str) -> None:
    warn_once(
        f"liveness-hold:{path}",
        f"cannot lock {path} in the liveness directory: {why}; this leader runs, but followers on other "
        "machines cannot tell if it is killed outright",
    )


def liveness_of(directory: str, liveness_dir: str | None) -> DirectoryLocks | FileLocks:
    """Where the followers of ``directory`` see leaders running: the locks on the directory itself (the
    leaders of this machine), or with a liveness directory their files' locks there, as the file server
    sees them (the leaders of every machine)."""
    return DirectoryLocks(directory) if liveness_dir is None else FileLocks(liveness_dir)


class DirectoryLocks:
    """Followers' view of the leaders on this machine: the locks on the exit directory (/proc/locks)."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def flags(self, keys: tuple[str | None, ...]) -> dict[str | None, LockFlags] | None:
        """Each leader's (running, restartable); None if unknowable. Key None: any leader."""
        held = held_offsets(self._directory)
        if held is None:
            return None
        return {key: leader_flags(held, key) for key in keys}

    def count(self) -> int | None:
        """How many leaders are running; None if unknowable."""
        held = held_offsets(self._directory)
        return None if held is None else running_leaders(held)

    def close(self) -> None:
        pass


class FileLocks:
    """Followers' view of the leaders on every machine: their locks in the liveness directory, asked of the
    file server. Each leader's file is kept open after its first test (one round trip per test after that);
    a leader seen gone is tested again through a fresh open, in case its file was replaced."""

    def __init__(self, liveness_dir: str) -> None:
        self._dir = liveness_dir
        self._files: dict[str, int] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()  # two threads looking at once must not open a file twice

    def flags(self, keys: tuple[str | None, ...]) -> dict[str | None, LockFlags] | None:
        """As :meth:`DirectoryLocks.flags`."""
        with self._lock:
            return self._flags(keys)

    def _flags(self, keys: tuple[str | None, ...]) -> dict[str | None, LockFlags] | None:
        try:
            named = [key for key in keys if key is not None]
            if None in keys:
                sync_attributes(self._dir)  # a network client's cached listing would hide a new leader
                named += [name for name in _listing(self._dir) if name not in named]
            found = {name: self._test(name) for name in named}
        except OSError as err:
            if err.errno in _CANNOT_LOCK:
                warn_once(
                    f"liveness-test:{self._dir}",
                    f"cannot test the leaders' locks in liveness directory {self._dir}: {explain(err)}; a "
                    "leader killed outright cannot be detected",
                )
            return None  # unknowable this time: nothing is concluded from it
        flags: dict[str | None, LockFlags] = {key: found[key] for key in keys if key is not None}
        if None in keys:
            flags[None] = (any(r for r, _ in found.values()), any(s for _, s in found.values()))
        return flags

    def count(self) -> int | None:
        """As :meth:`DirectoryLocks.count`."""
        with self._lock:
            try:
                sync_attributes(self._dir)
                found = [self._test(name) for name in _listing(self._dir)]
            except OSError:
                return None
        return sum(1 for running, _ in found if running)

    def _test(self, name: str) -> LockFlags:
        fd = self._files.get(name)
        if fd is None:
            fd = self._open(name)
        running = fd is not None and locked_by_another(fd, 0, 1)
        if not running and name in self._running:
            self._forget(name)  # seen gone: make sure through a fresh open, in case the file was replaced
            fd = self._open(name)
            running = fd is not None and locked_by_another(fd, 0, 1)
        if not running or fd is None:
            self._running.discard(name)
            return False, False
        self._running.add(name)
        return True, locked_by_another(fd, 1, 1)

    def _open(self, name: str) -> int | None:
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(os.path.join(self._dir, name), flags)
        except (FileNotFoundError, NotADirectoryError):
            return None  # no leader of that name has run yet
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            os.close(fd)
            raise
        if not regular:  # not a leader's file: nobody can hold it for a leader
            os.close(fd)
            return None
        self._files[name] = fd
        return fd

    def _forget(self, name: str) -> None:
        fd = self._files.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            for name in list(self._files):
                self._forget(name)


def _listing(directory: str) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if not name.startswith(".")]  # .nfsXXXX and the like
    except (FileNotFoundError, NotADirectoryError):
        return []
