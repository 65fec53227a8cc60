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
"""

from __future__ import annotations

import os

from ._linux import HAVE_OFD_LOCKS, lock_shared, lock_table
from ._log import debug_once

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
