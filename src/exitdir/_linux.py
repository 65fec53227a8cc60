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

from ._errno import FallbackRequired, checked

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

IS_LINUX = sys.platform.startswith("linux")

try:
    import fcntl

    _OFD_SETLK: int | None = fcntl.F_OFD_SETLK  # Linux 3.15+
except (ImportError, AttributeError):
    _OFD_SETLK = None

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
    import ctypes

    statfs = _libc().statfs
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
_F_RDLCK = 0
HAVE_OFD_LOCKS = _OFD_SETLK is not None


def lock_shared(fd: int, start: int, length: int) -> None:
    """Take a shared OFD lock on bytes ``start`` .. ``start + length - 1`` of ``fd``. Raises OSError."""
    if _OFD_SETLK is None:
        raise OSError(errno.ENOSYS, "open file description locks are not available on this platform")
    fcntl.fcntl(fd, _OFD_SETLK, _FLOCK.pack(_F_RDLCK, os.SEEK_SET, start, length, 0))


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
