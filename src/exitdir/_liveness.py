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
(``exitdir lead --signal-on success``), so its death without a marker is not the end. Byte
``ready_offset(name)``, above every leader's: a follower of that name announces that its helper is ready
(``exitdir follow --name NAME --ready-...``), for as long as it runs; ``exitdir lead --after NAME`` and
``exitdir wait --ready NAME`` wait for it. A lock is the announcement because it creates no entry and ends
with the process that holds it, however it ends: no stale "ready" can outlive its helper. Byte
``reporting_offset(name)``, above those: a follower of that name reports its helper's failure
(``exitdir follow --name NAME --report-failure``) and runs; ``exitdir lead --stop-on NAME`` watches it as a
follower watches a leader. A region of its own, not a leader's slot: unnamed followers and ``exitdir
status`` count every lock of the leaders' region as a running leader, and a follower is not one.

Across machines (issue 12) that lock is no use: NFS and SMB clients keep a lock on a directory in their
own kernel. So a leader given a *liveness directory* (``EXITDIR_LIVENESS_DIR``, ``--liveness-dir``) also
locks a file of its own there, ``LIVENESS_DIR/NAME``, bytes 0 (running) and 1 (may be restarted) (byte 2:
a follower of that name is ready; byte 3: one of that name reports failure), and those locks do reach the
file server (NFSv4 LOCK, SMB2 LOCK). Followers ask the server about them
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
import weakref

from ._errno import explain, lacking, lost
from ._linux import HAVE_OFD_LOCKS, bypass_client_caches, lock_conflict, lock_shared, lock_table
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
_READY_BASE = 2 * _SLOTS  # every leader's bytes lie below; the followers' "ready" bytes above
_READY_BYTE = 2  # in LIVENESS_DIR/NAME
_REPORTING_BASE = 2 * _READY_BASE  # above the "ready" bytes: followers reporting failure
_REPORTING_BYTE = 3  # in LIVENESS_DIR/NAME


def slot(name: str) -> int:
    """The lock offset for the leader whose marker is ``name`` (FNV-1a: stable across processes)."""
    digest = 0x811C9DC5
    for byte in os.fsencode(name):
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return 2 * (digest % _SLOTS)


# The files of liveness directories that this process holds locks on: descriptor -> (path, bytes held).
# On SMB, closing any other descriptor of such a file in this process drops the lock at the server
# (measured on the rig), and a test from this machine never sees it: so this process never opens a file
# it holds to test it, since it knows the answer.
_held_here: dict[int, tuple[str, range]] = {}


def release(fd: int) -> None:
    """Close ``fd``, a descriptor that holds locks (from :func:`hold_liveness_file` or :func:`hold_ready`)."""
    _held_here.pop(fd, None)
    os.close(fd)


def _held_by_this_process(path: str) -> set[int] | None:
    """The bytes of ``path`` that this process holds locked, or None if it holds none."""
    wanted = os.path.abspath(path)
    held = {byte for where, locked in _held_here.values() if where == wanted for byte in locked}
    return held or None


def ready_offset(name: str) -> int:
    """The lock offset by which the follower called ``name`` announces that its helper is ready."""
    return _READY_BASE + slot(name)


def reporting_offset(name: str) -> int:
    """The lock offset held by the follower called ``name`` while it reports its helper's failure."""
    return _REPORTING_BASE + slot(name)


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
        held = {offset for offset in held if offset < _READY_BASE}
        return any(offset % 2 == 0 for offset in held), any(offset % 2 == 1 for offset in held)
    start = slot(name)
    return start in held, start + 1 in held


def reporting_flags(held: set[int], name: str | None) -> tuple[bool, bool]:
    """As :func:`leader_flags`, for the follower ``name`` reporting failure (never restartable)."""
    assert name is not None  # followers are watched by name only: lead --stop-on NAME
    return reporting_offset(name) in held, False


def running_leaders(held: set[int]) -> int:
    return sum(1 for offset in held if offset < _READY_BASE and offset % 2 == 0)


def hold_liveness_file(liveness_dir: str, name: str, *, restartable: bool = False) -> int | None:
    """Leader side: lock ``liveness_dir/NAME`` (created with its directory if missing) where the file server
    sees it; the descriptor to close once the marker is written, or None where that fails (said once:
    the leader runs all the same, and followers on other machines cannot tell if it is killed)."""
    return _hold(
        liveness_dir,
        name,
        0,
        2 if restartable else 1,
        "this leader runs, but followers on other machines cannot tell if it is killed outright",
    )


def hold_ready(directory: str, name: str, liveness_dir: str | None) -> list[int]:
    """Follower side: announce that the helper of the follower called ``name`` is ready, by a lock on the
    exit directory (seen on this machine) and, with a liveness directory, on byte 2 of
    ``liveness_dir/NAME`` (seen on every machine). The descriptors that hold it (closing them withdraws
    it); a lock that cannot be taken is said once, and the others still hold."""
    return _hold_both(
        directory,
        name,
        liveness_dir,
        offset=ready_offset(name),
        byte=_READY_BYTE,
        key=f"ready-hold:{directory}",
        failed=f"cannot announce that {name} is ready on {directory}",
        here="whoever waits for it on this machine (exitdir lead --after, wait --ready) waits until its "
        "timeout",
        elsewhere=f"programs on other machines never see {name} ready",
    )


def hold_reporting(directory: str, name: str, liveness_dir: str | None) -> list[int]:
    """Follower side (``follow --name NAME --report-failure``): hold the lock that shows this follower
    running, as :func:`hold_ready` does at :func:`reporting_offset` and byte 3 of ``liveness_dir/NAME``,
    and make inotify watchers look at once, so that ``lead --stop-on NAME`` has seen it before it can go.
    Release the descriptors only after the failure's marker is written."""
    held = _hold_both(
        directory,
        name,
        liveness_dir,
        offset=reporting_offset(name),
        byte=_REPORTING_BYTE,
        key=f"report-hold:{directory}",
        failed=f"cannot show on {directory} that {name} runs",
        here="exitdir lead --stop-on on this machine cannot tell if this follower is killed outright",
        elsewhere=f"exitdir lead --stop-on {name} on other machines cannot tell if this follower is killed "
        "outright",
    )
    announce(directory)
    return held


def _hold_both(
    directory: str,
    name: str,
    liveness_dir: str | None,
    *,
    offset: int,
    byte: int,
    key: str,
    failed: str,
    here: str,
    elsewhere: str,
) -> list[int]:
    """Lock ``offset`` of the exit directory and, with a liveness directory, ``byte`` of
    ``liveness_dir/NAME``; the descriptors that hold them. A lock that cannot be taken is said once
    (``failed``, why, and ``here`` or ``elsewhere``: what is lost), and the other still holds."""
    held = []
    fd = None
    try:
        os.makedirs(directory, exist_ok=True)  # the leader would create it: the follower may be first
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        lock_shared(fd, offset, 1)  # ENOSYS where OFD locks do not exist: said below
        held.append(fd)
    except OSError as err:
        if fd is not None:
            os.close(fd)
        warn_once(key, f"{failed}: {explain(err)}; {here}")
    if liveness_dir is not None:
        kept = _hold(liveness_dir, name, byte, 1, elsewhere)
        if kept is not None:
            held.append(kept)
    return held


def _hold(liveness_dir: str, name: str, start: int, length: int, consequence: str) -> int | None:
    """Lock bytes ``start`` .. ``start + length - 1`` of ``liveness_dir/NAME`` (created with its directory
    if missing); the descriptor that holds it, or None where that fails (said once, with ``consequence``)."""
    path = os.path.join(liveness_dir, name)
    fd = None
    try:
        if not os.path.isdir(liveness_dir):
            try:
                os.makedirs(liveness_dir, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                _cannot_hold(path, f"{liveness_dir} or a directory above it is not a directory", consequence)
                return None
        # Read-only is enough for a shared lock (a file left by another user can still be locked);
        # O_NONBLOCK: a FIFO planted there must not hang the leader; O_NOFOLLOW: a symlink is refused.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _cannot_hold(path, "it is not a regular file: remove it", consequence)
            os.close(fd)
            return None
        if st.st_uid == os.geteuid() and st.st_mode & 0o444 != 0o444:
            os.fchmod(fd, 0o644)  # whatever the umask: followers of any user must open it to test
        deadline = time.monotonic() + _CONTENDED_FOR
        while True:
            try:
                lock_shared(fd, start, length)
                _held_here[fd] = (os.path.abspath(path), range(start, start + length))
                return fd
            except (BlockingIOError, PermissionError):  # EAGAIN, EACCES: a follower's test, for an instant
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.01)
    except OSError as err:
        if fd is not None:
            os.close(fd)
        why = "it is a symbolic link: remove it" if err.errno == errno.ELOOP else explain(err)
        _cannot_hold(path, why, consequence)
        return None


def _cannot_hold(path: str, why: str, consequence: str) -> None:
    warn_once(f"liveness-hold:{path}", f"cannot lock {path} in the liveness directory: {why}; {consequence}")


def is_ready(directory: str, name: str, liveness_dir: str | None) -> bool | None:
    """Whether the follower called ``name`` has announced its helper ready (see :func:`hold_ready`): on this
    machine, or with a liveness directory on any; None when that cannot be told this time."""
    held = held_offsets(directory)
    if held is not None and ready_offset(name) in held:
        return True
    if liveness_dir is None:
        return None if held is None else False
    mine = _held_by_this_process(os.path.join(liveness_dir, name))
    if mine is not None:
        return _READY_BYTE in mine  # never opened here: see _held_here
    bypass_client_caches(liveness_dir)  # a cached "no such file" would hide a new announcement
    try:
        fd = os.open(
            os.path.join(liveness_dir, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        )
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        # As for a leader's lock (FileLocks): an SMB client's test is a lock taken for an instant, so a
        # shared answer counts only once a second one agrees.
        answers = [lock_conflict(fd, _READY_BYTE, 1), lock_conflict(fd, _READY_BYTE, 1)]
    except OSError:
        return None
    finally:
        os.close(fd)
    if "exclusive" in answers:
        return None
    return answers == ["shared", "shared"]


def liveness_of(
    directory: str, liveness_dir: str | None, *, once: bool = False, followers: bool = False
) -> DirectoryLocks | FileLocks:
    """Where the followers of ``directory`` see leaders running: the locks on the directory itself (the
    leaders of this machine), or with a liveness directory their files' locks there, as the file server
    sees them (the leaders of every machine). ``once``: for one look (``exitdir status``), where one held
    answer is taken as it is, since no crash is concluded from it. ``followers``: the locks of the
    followers reporting failure (``lead --stop-on``) instead of the leaders'."""
    if liveness_dir is None:
        return DirectoryLocks(directory, followers=followers)
    return FileLocks(liveness_dir, answers_needed=1 if once else 2, directory=directory, followers=followers)


class DirectoryLocks:
    """Followers' view of the leaders on this machine: the locks on the exit directory (/proc/locks)."""

    def __init__(self, directory: str, *, followers: bool = False) -> None:
        self._directory = directory
        self._flags_of = reporting_flags if followers else leader_flags

    def flags(self, keys: tuple[str | None, ...]) -> dict[str | None, LockFlags] | None:
        """Each leader's (running, restartable); None if unknowable. Key None: any leader."""
        held = held_offsets(self._directory)
        if held is None:
            return None
        return {key: self._flags_of(held, key) for key in keys}

    def survey(self, names: tuple[str, ...]) -> tuple[dict[str | None, LockFlags] | None, int | None]:
        """For one look (``exitdir status``): each of ``names``' flags, and how many leaders are running,
        from one reading of the lock table; None for what is unknowable."""
        held = held_offsets(self._directory)
        if held is None:
            return None, None
        return {key: leader_flags(held, key) for key in names}, running_leaders(held)

    def close(self) -> None:
        pass


class FileLocks:
    """Followers' view of the leaders on every machine: their locks in the liveness directory, asked of the
    file server.

    An SMB client tests a lock by taking it and releasing it on the server, so one follower's test can meet
    another's. A leader's lock is always shared: a conflict with an exclusive lock is such a test, and
    makes the look inconclusive. A shared one may still be a test (SMB tries a shared lock when an
    exclusive one is refused), so a leader not yet seen running counts only once a second answer, asked at
    once, agrees. The file of a leader seen running is kept open (one round trip per test); any other is
    opened for each test, so a file replaced or created meanwhile is the one tested.
    """

    def __init__(
        self,
        liveness_dir: str,
        *,
        answers_needed: int = 2,
        directory: str | None = None,
        followers: bool = False,
    ) -> None:
        self._dir = liveness_dir
        self._followers = followers  # test the byte of a follower reporting failure, not a leader's
        self._flags_of = reporting_flags if followers else leader_flags
        self._directory = directory  # the exit directory, whose lock table shows this machine's leaders
        self._answers_needed = answers_needed
        self._held: dict[str, int] = {}  # name -> its file, open, while its leader is seen holding it
        self._closed = False
        self._lock = threading.Lock()  # two threads looking at once must not open a file twice
        _every_file_locks.add(self)

    def flags(self, keys: tuple[str | None, ...]) -> dict[str | None, LockFlags] | None:
        """As :meth:`DirectoryLocks.flags`."""
        with self._lock:
            if self._closed:
                return None
            try:
                return self._flags(keys)
            except OSError as err:
                if err.errno in _CANNOT_LOCK:
                    warn_once(
                        f"liveness-test:{self._dir}",
                        f"cannot test the leaders' locks in liveness directory {self._dir}: {explain(err)}; "
                        "a leader killed outright cannot be detected",
                    )
                return None  # unknowable this time: nothing is concluded from it

    def survey(self, names: tuple[str, ...]) -> tuple[dict[str | None, LockFlags] | None, int | None]:
        """As :meth:`DirectoryLocks.survey`: one round of tests, every leader's file included."""
        flags = self.flags((*names, None))
        return (None, None) if flags is None else ({name: flags[name] for name in names}, len(self._held))

    def _flags(self, keys: tuple[str | None, ...]) -> dict[str | None, LockFlags] | None:
        named = [key for key in keys if key is not None]
        if None in keys or any(name not in self._held for name in named):
            bypass_client_caches(self._dir)  # a cached listing or "no such file" would hide a new leader
        if None in keys:  # any leader: those listed, and those seen running even if their file was unlinked
            named = list(dict.fromkeys((*named, *_listing(self._dir), *self._held)))
        found: dict[str, LockFlags] = {}
        for name in named:
            answer = self._test(name)
            if answer is None:
                return None
            found[name] = answer
        # This machine's leaders are in its own lock table too, where an SMB client's test from this machine
        # does not see them (measured on the rig): what either view shows is running.
        local = None if self._directory is None else held_offsets(self._directory)
        if local:
            for name in found:
                here = self._flags_of(local, name)
                found[name] = (found[name][0] or here[0], found[name][1] or here[1])
        flags: dict[str | None, LockFlags] = {key: found[key] for key in keys if key is not None}
        if None in keys:
            flags[None] = (any(r for r, _ in found.values()), any(s for _, s in found.values()))
            if local:
                here = leader_flags(local, None)
                flags[None] = (flags[None][0] or here[0], flags[None][1] or here[1])
        return flags

    def _test(self, name: str) -> LockFlags | None:
        """(running, restartable) for leader ``name``; None if this test was inconclusive."""
        mine = _held_by_this_process(os.path.join(self._dir, name))
        if mine is not None:  # never opened here: see _held_here
            return (_REPORTING_BYTE in mine, False) if self._followers else (0 in mine, 1 in mine)
        kept = self._held.pop(name, None)
        if kept is not None:
            try:
                answer = self._ask(kept)
            except OSError:
                answer = None  # a stale handle, say: asked again below through a fresh open
            if answer is not None and answer[0]:
                self._held[name] = kept
                return answer
            os.close(kept)  # seen gone, or unclear: make sure through a fresh open (the file may be new)
        fd = self._open(name)
        if fd is None:
            return False, False
        try:
            answer = self._ask(fd)
            for _ in range(self._answers_needed - 1):  # a first sighting is confirmed at once
                if answer is None or not answer[0]:
                    break
                answer = self._ask(fd)
        except OSError:
            os.close(fd)
            raise
        if answer is not None and answer[0]:
            self._held[name] = fd
        else:
            os.close(fd)
        return answer

    def _ask(self, fd: int) -> LockFlags | None:
        return _ask_reporting(fd) if self._followers else _ask(fd)

    def _open(self, name: str) -> int | None:
        """Leader ``name``'s file, open for a test; None if there is none, or it is not one to test."""
        path = os.path.join(self._dir, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None  # no leader of that name has run yet
        except OSError as err:
            if lacking(err) or lost(err):
                raise  # this look is inconclusive; the next one may do
            why = "it is a symbolic link" if err.errno == errno.ELOOP else explain(err)
            _cannot_test(path, why)
            return None
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            os.close(fd)
            raise
        if not regular:  # not a leader's file: nobody can hold it for a leader
            os.close(fd)
            _cannot_test(path, "it is not a regular file")
            return None
        return fd

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in self._held.values():
                os.close(fd)
            self._held.clear()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread holding it at the fork does not exist in the child


def _ask(fd: int) -> LockFlags | None:
    """What the locks on a leader's file say, or None when a follower's test was met (see FileLocks).
    Byte 1 first: a restartable leader holds both, and dying between the two tests must not make it look
    like one that is not restartable."""
    second = lock_conflict(fd, 1, 1)
    first = "shared" if second == "shared" else lock_conflict(fd, 0, 1)
    if "exclusive" in (first, second):
        return None
    return first == "shared", second == "shared"


def _ask_reporting(fd: int) -> LockFlags | None:
    """As :func:`_ask`, for the byte of a follower reporting failure."""
    answer = lock_conflict(fd, _REPORTING_BYTE, 1)
    if answer == "exclusive":
        return None
    return answer == "shared", False


def _cannot_test(path: str, why: str) -> None:
    warn_once(
        f"liveness-test:{path}",
        f"cannot test the lock of {path} in the liveness directory: {why}; if a leader of that name is "
        "killed outright, it cannot be detected: remove it, or make it readable by this user",
    )


_every_file_locks: weakref.WeakSet[FileLocks] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for locks in list(_every_file_locks):
        locks._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _listing(directory: str) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if not name.startswith(".")]  # .nfsXXXX and the like
    except (FileNotFoundError, NotADirectoryError):
        return []
