"""Every Linux-specific call exitdir makes, in one place: libc through ctypes, /proc, and OFD locks.

The rest of the package asks this module questions ("what filesystem is this?", "may I link through
/proc/self/fd?") and never touches ctypes or /proc itself. Each answer has a defined meaning where the
facility is missing (another platform, a seccomp profile, no /proc): None, False, or
:class:`~exitdir._errno.FallbackRequired` for the caller's fallback chain. Every ctypes call goes through
:func:`~exitdir._errno.checked`, so EINTR is retried and errnos are classified in one place.

ctypes is imported on first use, not here: a leader that only writes a marker never loads it.
"""

from __future__ import annotations

import errno
import os
import struct
import sys

from ._errno import FallbackRequired, checked, fallback_or_raise

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

IS_LINUX = sys.platform.startswith("linux")

try:
    import fcntl

    _OFD_SETLK: int | None = fcntl.F_OFD_SETLK  # Linux 3.15+
    _OFD_GETLK: int | None = fcntl.F_OFD_GETLK
except (ImportError, AttributeError):
    _OFD_SETLK = _OFD_GETLK = None

_libc_handle: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _libc_handle:
        import ctypes

        _libc_handle.append(ctypes.CDLL(None, use_errno=True))
    return _libc_handle[0]


def _get_errno() -> int:
    import ctypes

    return ctypes.get_errno()


# -- filesystems --------------------------------------------------------------------------------------


def filesystem_type(path: str) -> int | None:
    """statfs(2) ``f_type`` of the nearest existing ancestor of ``path``; None where it cannot be read."""
    if not IS_LINUX:
        return None
    try:
        import ctypes

        statfs = _libc().statfs
    except OSError:  # no descriptor left even to read ctypes' source (a low `ulimit -n`): unknown
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    while True:
        encoded = os.fsencode(path)
        try:
            checked(f"statfs({path})", lambda: statfs(encoded, buf), _get_errno)  # noqa: B023 - called at once
        except (OSError, FallbackRequired):  # missing, or statfs refused: try the parent, then give up
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent
            continue
        # f_type is the first field, a long on every Linux ABI.
        return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


_AT_FDCWD = -100
_AT_STATX_FORCE_SYNC = 0x2000
_STATX_BASIC_STATS = 0x7FF


def sync_attributes(path: str) -> None:
    """Make a network filesystem client ask the server for ``path``'s attributes now, however it caches
    them: statx(AT_STATX_FORCE_SYNC). On an NFS mount with ``nocto`` (no revalidation on open), this is what
    makes the next listing see entries another client created (issue 12: ~29 s without it, under 0.25 s with
    it). Does nothing where statx or ctypes is unavailable, or the path cannot be looked up."""
    if not IS_LINUX:
        return
    try:
        import ctypes

        statx = _libc().statx
    except (OSError, AttributeError):  # no descriptor left for ctypes, or a libc without statx (< 2.28)
        return
    buf = ctypes.create_string_buffer(256)  # struct statx is 256 bytes
    encoded = os.fsencode(path)
    try:
        checked(
            f"statx({path})",
            lambda: statx(_AT_FDCWD, encoded, _AT_STATX_FORCE_SYNC, _STATX_BASIC_STATS, buf),
            _get_errno,
        )
    except (OSError, FallbackRequired):
        pass  # missing or unreachable: the listing that follows says so


# statfs f_type (linux/magic.h) of filesystems shared with other clients: other machines, or a FUSE
# daemon's backing store. Their server, not this kernel, decides who may do what (root included), and a
# change made by another client raises no inotify event here.
SHARED_FILESYSTEMS = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFE534D42: "smb2",
    0xFF534D42: "cifs",
    0x65735546: "fuse",
    0x01021997: "9p",
    0x00C36400: "ceph",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x5346414F: "afs",
    0x6B414653: "kafs",
    0x73757245: "coda",
    0x564C: "ncp",
    0x7461636F: "ocfs2",
    0x01161970: "gfs2",
}


def shared_filesystem(path: str) -> str | None:
    """The name of the shared filesystem ``path`` is on (``"nfs"``, ``"fuse"``...), else None (local or
    unknown). A missing ``path`` is judged by its nearest existing ancestor.

    >>> shared_filesystem("/proc") is None
    True
    """
    fs_type = filesystem_type(path)
    return None if fs_type is None else SHARED_FILESYSTEMS.get(fs_type)


def bypass_client_caches(directory: str) -> None:
    """Before a listing on a network filesystem, make the client ask the server, whatever it has cached.

    Without this a marker can be seen tens of seconds late: on an NFS mount with ``nocto`` the directory's
    cached attributes (so its cached listing) are trusted until they expire (~29 s measured), and a
    directory created after the follower started hides behind the cached "no such entry" of its name
    (16.5 s median, 29 s at worst). One forced attribute fetch (a GETATTR) per scan answers the first;
    while the directory is missing, opening its nearest existing ancestor answers the second (measured
    under 0.2 s): the client revalidates the ancestor, and a changed one drops its cached absences.
    """
    path = directory
    while not os.path.isdir(path):  # answered from the cache, as the listing would be
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent
    if path != directory:
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError:
            pass  # the listing that follows says what is wrong
    sync_attributes(path)  # on a nocto mount, opening revalidates nothing: ask the server directly


# -- processes ----------------------------------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> bool:
    """Make orphaned descendants ours to reap (prctl). False where that is not available."""
    if not IS_LINUX:
        return False
    prctl = _libc().prctl
    try:
        checked("prctl", lambda: prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), _get_errno)
    except (OSError, FallbackRequired):
        return False
    return True


# -- /proc: the processes below this one ---------------------------------------------------------------


class Process:
    """One process as /proc/PID/stat shows it: enough to find a process's descendants and know it again.

    ``start`` is its start time in clock ticks since boot: a pid and its start time name one process,
    whereas a pid alone may be reused by another process as soon as the first one is reaped.
    """

    __slots__ = ("pgrp", "pid", "ppid", "start", "state")

    def __init__(self, pid: int, ppid: int, pgrp: int, start: int, state: str) -> None:
        self.pid = pid
        self.ppid = ppid
        self.pgrp = pgrp
        self.start = start
        self.state = state

    @property
    def alive(self) -> bool:
        """Not a zombie: it can still do something, so it must be signalled."""
        return self.state not in ("Z", "X")

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)

    def __repr__(self) -> str:
        return f"Process({self.pid}, ppid={self.ppid}, pgrp={self.pgrp}, start={self.start}, {self.state})"


def process(pid: int) -> Process | None:
    """The process ``pid`` now, or None if there is none. Raises OSError if /proc cannot be read (EMFILE)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:  # it ended between the open and the read
        return None
    finally:
        os.close(fd)
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = data.rpartition(b")")[2].split()
    try:
        return Process(pid, int(fields[1]), int(fields[2]), int(fields[19]), fields[0].decode("ascii"))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def descendants_visible() -> bool:
    """Whether /proc shows this process's own pid namespace, so that its descendants can be found there.

    A process in a pid namespace of its own with the parent's /proc (``unshare --pid`` without
    ``--mount-proc``) sees other pids there than its own: its children's pids would name other processes.
    """
    if not IS_LINUX:
        return False
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def descendants() -> list[Process]:
    """Every process below this one (children, theirs, and so on), zombies included, from /proc.

    Raises OSError where /proc cannot be listed; only meaningful where :func:`descendants_visible`.
    """
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = process(int(name))
            if info is not None:
                found.append(info)
    return descendants_in(found, os.getpid())


def descendants_in(table: list[Process], root: int) -> list[Process]:
    """The processes of ``table`` whose parent chain leads to ``root``.

    /proc is read one process at a time, so a parent may have ended and its pid been reused while the table
    was read: a parent younger than its child is such a stranger, and the chain through it is cut.

    >>> table = [Process(10, 1, 10, 500, "S"), Process(11, 10, 10, 510, "S"), Process(12, 11, 12, 505, "S")]
    >>> [p.pid for p in descendants_in(table, 10)]  # 12 started before its "parent" 11: not 11's child
    [11]
    """
    by_parent: dict[int, list[Process]] = {}
    by_pid = {}
    for info in table:
        by_parent.setdefault(info.ppid, []).append(info)
        by_pid[info.pid] = info
    found = []
    seen = {root}
    parents = [root]
    while parents:
        parent = parents.pop()
        older = by_pid.get(parent)
        for child in by_parent.get(parent, ()):
            if child.pid in seen or (parent != root and older is not None and older.start > child.start):
                continue
            seen.add(child.pid)
            found.append(child)
            parents.append(child.pid)
    return found


def signal_process(proc: Process, signum: int) -> bool:
    """Send ``signum`` to ``proc`` if its pid still names that process; False if it is gone, not ours to
    signal (it runs as another user), or cannot be checked.

    A pidfd (Linux 5.3+) holds on to the process it was opened for: once its start time is checked
    through /proc, the signal can only reach that process. Without one (an older kernel, a seccomp profile,
    no fd left), the pid is checked just before :func:`os.kill`, which leaves a window of microseconds.
    """
    import signal

    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):
        pidfd = None
    try:
        now = process(proc.pid)
        if now is None or now.start != proc.start:
            return False  # ended, and maybe its pid is another process's already
        if pidfd is None:
            os.kill(proc.pid, signum)
        else:
            signal.pidfd_send_signal(pidfd, signum)
    except OSError:  # ESRCH: it ended; EPERM: another user's; EMFILE: it cannot be checked, so not signalled
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return True


# -- /proc: processes we did not start ---------------------------------------------------------------

_PF_KTHREAD = 0x00200000  # a kernel thread: nothing to stop, and its empty cmdline is not a program's


def process_ids() -> list[int]:
    """Every pid /proc shows. Raises OSError where /proc cannot be listed."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read_proc(pid: int, what: str) -> bytes | None:
    """/proc/PID/WHAT, or None if the process is gone or its entry cannot be read (another user's, under
    ``hidepid``); a lack of descriptors or memory is raised, because it says nothing of the process."""
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def program_names(pid: int) -> tuple[bytes, bytes] | None:
    """``(argv[0], comm)`` of a running program: what it was started as (``b""`` if its cmdline is empty or
    unreadable) and the kernel's name of it (the file it executed, cut to 15 bytes). None for a process
    that is gone, a zombie, or a kernel thread. Raises OSError if /proc cannot be read (EMFILE).

    >>> program_names(os.getpid())[1] != b""
    True
    """
    stat = _read_proc(pid, "stat")
    if stat is None:
        return None
    head, _, tail = stat.rpartition(b")")
    fields = tail.split()
    try:
        state, flags = fields[0], int(fields[6])
    except (IndexError, ValueError):
        return None
    if state in (b"Z", b"X") or flags & _PF_KTHREAD:
        return None
    comm = head.partition(b"(")[2]
    cmdline = _read_proc(pid, "cmdline") or b""
    return cmdline.split(b"\0", 1)[0], comm


def ancestors() -> set[int]:
    """The pids of this process's parent, its parent's parent, and so on up to the root of /proc."""
    found: set[int] = set()
    pid = os.getppid()
    while pid > 0 and pid not in found:
        found.add(pid)
        info = process(pid)
        pid = 0 if info is None else info.ppid
    return found


def running(pid: int, start: int) -> bool:
    """Whether the process ``pid`` that started at ``start`` (:attr:`Process.start`) still runs: False
    once it is gone, a zombie, or its pid names another process. Raises OSError if /proc cannot be read.

    >>> me = process(os.getpid())
    >>> running(me.pid, me.start), running(me.pid, me.start + 1)
    (True, False)
    """
    now = process(pid)
    return now is not None and now.start == start and now.alive


def pidfd_open(pid: int) -> int | None:
    """A pidfd for the process ``pid`` (Linux 5.3+): it names that process, never one that reuses its pid,
    and polls readable once the process has exited (zombie or reaped). None where pidfds are not
    available (an older kernel or Python, a seccomp profile, no descriptor left). Raises
    ProcessLookupError if there is no such process."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError as err:
        fallback_or_raise(f"pidfd_open({pid})", err)  # re-raises what is not "not available here"
        return None


def send_signal(pid: int, start: int, pidfd: int | None, signum: int) -> None:
    """Send ``signum`` to the process ``pid`` that started at ``start`` (:attr:`Process.start`), through
    ``pidfd`` when there is one. Raises ProcessLookupError if it is gone (a zombie included, or its pid
    names another process now) and PermissionError if it is not ours to signal (another user's).

    Without a pidfd the start time is checked just before :func:`os.kill`, which leaves a window of
    microseconds for a reused pid. A pidfd whose signal is refused (a seccomp profile answering EPERM or
    ENOSYS) is not taken at its word: the checked kill says whether the refusal is real.
    """
    import signal

    if pidfd is not None:
        try:
            signal.pidfd_send_signal(pidfd, signum)
            return
        except AttributeError:  # a Python without it
            pass
        except OSError as err:
            fallback_or_raise(f"pidfd_send_signal({pid})", err)
    if not running(pid, start):
        raise ProcessLookupError(errno.ESRCH, f"process {pid} is gone")
    os.kill(pid, signum)


_boot_id: list[str | None] = []


def boot_id() -> str | None:
    """The kernel's boot id (changes at every boot), read once per process; None where there is none."""
    if not _boot_id:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                _boot_id.append(f.read().strip().decode() or None)
        except (OSError, UnicodeDecodeError):
            _boot_id.append(None)
    return _boot_id[0]


# -- /proc/self/fd: naming an open file --------------------------------------------------------------

# Decided once: linkat through /proc/self/fd is how an O_TMPFILE file is given a name without
# CAP_DAC_READ_SEARCH (which AT_EMPTY_PATH would need).
HAVE_PROC_FD = IS_LINUX and os.path.isdir("/proc/self/fd")


def proc_fd_path(fd: int) -> str:
    """A path that names the open file ``fd`` (only meaningful where :data:`HAVE_PROC_FD`)."""
    return f"/proc/self/fd/{fd}"


# -- open file description locks, and the kernel's lock table -----------------------------------------

# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid (+ padding).
_FLOCK = struct.Struct("hhqqi4x")
_F_RDLCK, _F_WRLCK, _F_UNLCK = 0, 1, 2
HAVE_OFD_LOCKS = _OFD_SETLK is not None


def lock_shared(fd: int, start: int, length: int) -> None:
    """Take a shared OFD lock on bytes ``start`` .. ``start + length - 1`` of ``fd``. Raises OSError."""
    if _OFD_SETLK is None:
        raise OSError(errno.ENOSYS, "open file description locks are not available on this platform")
    fcntl.fcntl(fd, _OFD_SETLK, _FLOCK.pack(_F_RDLCK, os.SEEK_SET, start, length, 0))


def lock_conflict(fd: int, start: int, length: int) -> str | None:
    """The lock some other open file description holds on bytes ``start`` .. ``start + length - 1`` of
    ``fd``: ``"shared"``, ``"exclusive"``, or None for none (F_OFD_GETLK for a write lock, which every lock
    conflicts with). On NFSv4 and SMB the file server answers, so locks held on other machines count.
    Raises OSError."""
    if _OFD_GETLK is None:
        raise OSError(errno.ENOSYS, "open file description locks are not available on this platform")
    answer = fcntl.fcntl(fd, _OFD_GETLK, _FLOCK.pack(_F_WRLCK, os.SEEK_SET, start, length, 0))
    kind = _FLOCK.unpack(answer)[0]
    return None if kind == _F_UNLCK else "shared" if kind == _F_RDLCK else "exclusive"


def lock_table() -> bytes | None:
    """The kernel's table of file locks (/proc/locks), or None where it cannot be read."""
    if not HAVE_OFD_LOCKS:
        return None
    try:
        with open("/proc/locks", "rb") as f:
            return f.read()
    except OSError:
        return None


# -- inotify ------------------------------------------------------------------------------------------


class Inotify:
    """The three inotify syscalls on one instance. Raises FallbackRequired where inotify cannot be used."""

    def __init__(self) -> None:
        import ctypes

        libc = _libc()
        try:
            init1, self._add, self._rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
        except AttributeError:  # a libc without the symbols: not Linux, or a very odd one
            raise FallbackRequired("inotify_init1", errno.ENOSYS) from None
        init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
        self._add.argtypes, self._add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
        self._rm.argtypes, self._rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        flags = os.O_CLOEXEC | os.O_NONBLOCK  # IN_CLOEXEC, IN_NONBLOCK
        self.fd = checked("inotify_init1", lambda: init1(flags), _get_errno)

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor. FallbackRequired at a limit; FileNotFoundError, PermissionError... else."""
        encoded = os.fsencode(path)
        return checked(f"inotify_add_watch({path})", lambda: self._add(self.fd, encoded, mask), _get_errno)

    def rm_watch(self, wd: int) -> None:
        try:
            checked("inotify_rm_watch", lambda: self._rm(self.fd, wd), _get_errno)
        except OSError:
            pass  # EINVAL: the kernel already dropped it (directory deleted); nothing to undo

    def close(self) -> None:
        os.close(self.fd)  # slow (~10 ms, an RCU grace period): only on failure paths
