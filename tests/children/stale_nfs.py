"""A stand-in for an NFS server: a FUSE filesystem that serves EXPORT at MOUNT, read-only.

Like an NFS client's file handles, the mount refers to the exported directory itself, not to its path: if
EXPORT is deleted and recreated ("on the server"), every operation on the mount fails with ESTALE, as a
real NFS mount whose root directory was replaced does, until the client remounts. SIGUSR1 stands for that
remount: the mount then serves whatever directory EXPORT is now.

It prints `ready` once mounted, `listed` the first time the mount's root is listed (a follower watches),
and `remounted` after each SIGUSR1 (handled at the next operation on the mount: Python runs its signal
handlers between its own steps, and libfuse's loop is C). It runs until the mount is unmounted.

Usage: stale_nfs.py EXPORT MOUNT
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Any

from fuse import FUSE, FuseOSError, Operations

_ATTRIBUTES = (
    "st_mode",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_ino",
    "st_atime",
    "st_mtime",
    "st_ctime",
)


class StaleServer(Operations):  # type: ignore[misc]  # fusepy has no type information
    def __init__(self, export: str) -> None:
        self.export = export
        # Held open, so the exported inode stays alive and a recreated directory never gets its number.
        self.handle = os.open(export, os.O_RDONLY | os.O_DIRECTORY)
        self.listed = False
        signal.signal(signal.SIGUSR1, self.remount)  # libfuse itself handles HUP, INT and TERM

    def remount(self, signum: int, frame: object) -> None:
        old, self.handle = self.handle, os.open(self.export, os.O_RDONLY | os.O_DIRECTORY)
        os.close(old)
        print("remounted", flush=True)

    def real(self, path: str) -> str:
        held = os.fstat(self.handle)
        try:
            there = os.stat(self.export)
        except FileNotFoundError:
            raise FuseOSError(errno.ESTALE) from None
        if (held.st_dev, held.st_ino) != (there.st_dev, there.st_ino):
            raise FuseOSError(errno.ESTALE)
        return os.path.join(self.export, path.lstrip("/"))

    def init(self, path: str) -> None:
        print("ready", flush=True)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self.real(path))
        except OSError as err:
            raise FuseOSError(err.errno) from None
        return {name: getattr(st, name) for name in _ATTRIBUTES}

    def readdir(self, path: str, fh: int) -> list[str]:
        entries = os.listdir(self.real(path))
        if not self.listed:
            self.listed = True
            print("listed", flush=True)
        return [".", "..", *entries]

    def open(self, path: str, flags: int) -> int:
        try:
            return os.open(self.real(path), os.O_RDONLY)
        except OSError as err:
            raise FuseOSError(err.errno) from None

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0


if __name__ == "__main__":
    export, mount = sys.argv[1:3]
    # No attribute or entry caching: every look reaches the "server", as with NFS's noac.
    FUSE(StaleServer(export), mount, foreground=True, nothreads=True, attr_timeout=0.0, entry_timeout=0.0)
