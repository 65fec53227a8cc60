"""A follower process for the latency benchmark. Reads a directory per line on stdin; for each, sets up its
watch, prints `ready`, waits for a marker, and prints time.monotonic_ns() at the moment the wait returned.

Modes: token (ExitToken.wait), async (exitdir.wait_for_exit), poll (ExitToken on the poll backend),
raw (the floor: one ctypes inotify fd, a blocking read in this thread, nothing else).
"""

from __future__ import annotations

import os
import sys
import time

IN_CREATE = 0x100


def raw() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)  # blocking reads
    for line in sys.stdin:
        wd = libc.inotify_add_watch(fd, line.strip().encode(), IN_CREATE)
        print("ready", flush=True)
        os.read(fd, 4096)
        done = time.monotonic_ns()
        libc.inotify_rm_watch(fd, wd)
        os.read(fd, 4096)  # the IN_IGNORED that removing the watch queues
        print(done, flush=True)


def token(backend: str, interval: float | None) -> None:
    import exitdir

    for line in sys.stdin:
        with exitdir.aware(line.strip(), backend=backend, poll_interval=interval) as waiting:
            print("ready", flush=True)
            waiting.wait()
            done = time.monotonic_ns()
        print(done, flush=True)


def async_() -> None:
    import asyncio

    import exitdir

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for line in sys.stdin:
            # Runs once wait_for_exit first suspends, which is after its watch is in place.
            loop.call_soon(lambda: print("ready", flush=True))
            await exitdir.wait_for_exit(line.strip())
            done = time.monotonic_ns()
            print(done, flush=True)

    asyncio.run(main())


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "raw":
        raw()
    elif mode == "async":
        async_()
    elif mode == "poll":
        token("poll", float(sys.argv[2]))
    else:
        token("inotify", None)
