"""The single choke point for errno handling of raw system calls.

Python's own ``os`` functions already retry EINTR (PEP 475); calls made through ctypes do not, so every
ctypes call goes through :func:`checked`. Errnos that mean "this mechanism is not available here" become
:class:`FallbackRequired`, which the backend chooser turns into the next mechanism of its chain instead of a
crash.
"""

from __future__ import annotations

import errno
import os

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Limits and missing features: the per-user inotify instance limit (EMFILE), the watch limit (ENOSPC), a
# kernel or seccomp profile without the syscall (ENOSYS, EPERM), the process fd table (ENFILE).
FALLBACK_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.ENOSYS, errno.EPERM})

# A look at the directory failed for want of a resource (file descriptors, memory, a signal in between):
# the same look can succeed later, so it is retried, and nothing about the directory is concluded.
LACKING_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN, errno.EINTR}
)
# The directory itself is gone for good while these persist: an NFS handle gone stale (the directory was
# deleted and recreated on the server), a FUSE mount whose daemon died. Only a remount brings it back.
LOST_ERRNOS = frozenset({errno.ESTALE, errno.ENOTCONN})

_FIXES = {
    errno.EMFILE: "raise the open-file limit (ulimit -n, or the container's nofile limit)",
    errno.ENFILE: "the system's file table is full: close files elsewhere or raise fs.file-max",
    errno.ENOMEM: "free memory or raise the memory limit",
    errno.ENOBUFS: "free memory or raise the memory limit",
    errno.EAGAIN: "raise the process limit (ulimit -u) or free resources",
    errno.ESTALE: "the directory was deleted and recreated on its server (NFS): remount it",
    errno.ENOTCONN: "the filesystem's daemon (FUSE) is gone: remount it",
}


def errno_text(err: int | None) -> str:
    """``ENOSPC (No space left on device)``: an errno the way people look it up."""
    if not err:
        return "unknown error"
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def lacking(err: BaseException) -> bool:
    """Whether ``err`` says a resource ran out (worth retrying), not that something is wrong."""
    return isinstance(err, OSError) and err.errno in LACKING_ERRNOS


def lost(err: BaseException) -> bool:
    """Whether ``err`` says the directory is unreachable until it is remounted, if it persists."""
    return isinstance(err, OSError) and err.errno in LOST_ERRNOS


def explain(err: OSError) -> str:
    """``EMFILE (Too many open files): raise the open-file limit (ulimit -n, ...)``: the errno, and the
    fix where a resource ran out or a directory is lost."""
    fix = _FIXES.get(err.errno or 0)
    return f"{errno_text(err.errno)}: {fix}" if fix else errno_text(err.errno)


class FallbackRequired(Exception):
    """The mechanism cannot be used here; the caller should move down its fallback chain."""

    def __init__(self, what: str, err: int) -> None:
        self.errno = err
        super().__init__(f"{what}: {errno_text(err)}")


def fallback_or_raise(what: str, err: OSError) -> FallbackRequired:
    """The FallbackRequired to raise for ``err`` if its errno means "not available here"; else re-raise."""
    if err.errno in FALLBACK_ERRNOS:
        return FallbackRequired(what, err.errno)
    raise err


def checked(what: str, call: Callable[[], int], get_errno: Callable[[], int]) -> int:
    """Run a ctypes call that returns -1 on failure, retrying EINTR and classifying the errno."""
    while True:
        result = call()
        if result != -1:
            return result
        err = get_errno()
        if err == errno.EINTR:
            continue
        if err in FALLBACK_ERRNOS:
            raise FallbackRequired(what, err)
        raise OSError(err, f"{what}: {errno_text(err)}")
