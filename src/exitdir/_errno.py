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


def errno_text(err: int | None) -> str:
    """``ENOSPC (No space left on device)``: an errno the way people look it up."""
    if not err:
        return "unknown error"
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


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
