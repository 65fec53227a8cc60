"""Finding a process's descendants in /proc, and signalling one only while its pid still names it."""

from __future__ import annotations

import os
import signal

from exitdir._linux import Process, descendants, descendants_in, process, signal_process

from _support import Child, python


def running(pid: int) -> bool:
    found = process(pid)
    return found is not None and found.alive


def test_descendants_are_found_through_the_parent_chain(spawn: type[Child]) -> None:
    # A real chain: this process, a child, and its own sleeping child.
    code = (
        "import subprocess as s\n"
        "p = s.Popen(['sleep', '60'], stdout=s.DEVNULL)\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    child = spawn(python(code))
    grandchild = int(child.readline())
    try:
        found = {proc.pid: proc for proc in descendants()}
        assert {child.pid, grandchild} <= set(found)
        assert found[grandchild].ppid == child.pid
        assert os.getpid() not in found
    finally:
        os.kill(grandchild, signal.SIGKILL)  # still the child's: its pid cannot have been reused


def test_a_reused_parent_pid_does_not_make_a_stranger_a_descendant() -> None:
    # /proc is read one process at a time: 30 was read as 20's child, then 20 ended and its pid went to
    # a new process, a child of ours. That new 20 is younger than 30, so 30 cannot be its child.
    table = [
        Process(20, 10, 20, start=900, state="S"),  # the new owner of pid 20
        Process(30, 20, 30, start=500, state="S"),  # a stranger, whose real parent was the old 20
        Process(40, 20, 20, start=950, state="S"),  # the new 20's own child
    ]
    assert [proc.pid for proc in descendants_in(table, 10)] == [20, 40]


def test_a_pid_that_names_another_process_now_is_never_signalled(spawn: type[Child]) -> None:
    """Stand-in for pid reuse, which cannot be provoked on demand: what was seen in /proc is a process
    with this pid but another start time, as if the one seen had ended and its pid gone to another."""
    other = spawn(python("import signal; print('ready', flush=True); signal.pause()"))
    other.expect("ready")
    now = process(other.pid)
    assert now is not None
    seen = Process(now.pid, now.ppid, now.pgrp, now.start - 1, now.state)
    assert not signal_process(seen, signal.SIGTERM)
    assert running(other.pid)
    assert signal_process(now, signal.SIGTERM)
    assert other.wait() == -signal.SIGTERM
