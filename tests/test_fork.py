"""A token inherited across ``fork()`` trips in every process (gunicorn and multiprocessing workers).

The processes used to share the parent's one inotify instance: whichever read the marker's event first
took it from the others, which then never tripped (inotify: one `worker True`, the rest False). The test
runs a real program that makes a token, really forks, and reports from every process; both backends.
"""

from __future__ import annotations

from pathlib import Path

import exitdir

from _support import GENEROUS, POLL_INTERVAL, Child, python

WORKERS = 3

# Makes a token, starts a thread already blocked in wait() (the hub's reader at the moment of the fork),
# forks WORKERS children that each wait on the inherited token, and reports every process's result. The
# test writes the marker once every worker is about to wait.
FORKING = """
import os, sys, threading, exitdir
say = lambda *words: os.write(1, (" ".join(map(str, words)) + "\\n").encode())  # one write: no interleaving
directory, backend, interval, workers, wait = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
token = exitdir.aware(directory, backend=backend, poll_interval=interval)
thread_result = []
waiting = threading.Thread(target=lambda: thread_result.append(token.wait(wait)))
waiting.start()
pids = []
for i in range(int(workers)):
    pid = os.fork()
    if pid == 0:
        say("worker ready")
        tripped = token.wait(wait)
        say("worker", tripped)
        os._exit(0)
    pids.append(pid)
say("parent ready")
say("parent", token.wait(wait))
waiting.join()
say("thread", thread_result[0])
for pid in pids:
    os.waitpid(pid, 0)
"""


def test_every_forked_worker_trips(spawn: type[Child], exit_dir: Path, backend: str) -> None:
    child = spawn(
        [*python(FORKING), str(exit_dir), backend, str(POLL_INTERVAL), str(WORKERS), str(GENEROUS / 2)]
    )
    lines = [child.readline() for _ in range(WORKERS + 1)]
    assert sorted(lines) == ["parent ready"] + ["worker ready"] * WORKERS
    exitdir.exit(directory=exit_dir)
    results = sorted(child.readline() for _ in range(WORKERS + 2))
    assert results == ["parent True", "thread True"] + ["worker True"] * WORKERS
    assert child.wait() == 0


# Holds, at the fork, every lock a wait takes in the watch, as a thread of the parent caught mid-look would.
# A stand-in for that thread: taking them in this thread instead makes the race certain, and in the child
# a lock held at the fork stays held whichever thread of the parent held it.
LOCKS_HELD = """
import os, sys, exitdir
from exitdir._watch import _inotify, _poll
say = lambda *words: os.write(1, (" ".join(map(str, words)) + "\\n").encode())
directory, backend, interval, wait = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
token = exitdir.aware(directory, backend=backend, poll_interval=interval)
watch = token._watch
locks = [watch._scan_lock] if backend == "poll" else [watch._lock, _inotify._hub_lock]
for lock in locks:
    lock.acquire()
pid = os.fork()
if pid == 0:
    say("worker ready")
    say("worker", token.wait(wait))
    os._exit(0)
for lock in locks:
    lock.release()
os.waitpid(pid, 0)
"""


def test_a_lock_held_at_the_fork_does_not_hang_the_child(
    spawn: type[Child], exit_dir: Path, backend: str
) -> None:
    child = spawn([*python(LOCKS_HELD), str(exit_dir), backend, str(POLL_INTERVAL), str(GENEROUS / 2)])
    child.expect("worker ready")
    exitdir.exit(directory=exit_dir)
    child.expect("worker True")
    assert child.wait() == 0
