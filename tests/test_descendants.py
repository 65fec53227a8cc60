"""`--kill-descendants`: what a program leaves outside its process group is stopped too.

Real processes throughout: a real setsid(), a real double fork, a real PID 1 in a pid namespace, a real
seccomp filter, and a real process stuck in the kernel on a FUSE mount (bindfs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir
from exitdir._cli import main
from exitdir._linux import Process, descendants, descendants_in, process, signal_process

from _support import EXITDIR, GENEROUS, Child, lock_held_behind_bindfs, python

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHILDREN = Path(__file__).parent / "children"
STRAY = [sys.executable, str(CHILDREN / "stray.py")]
NO_SUBREAPER = [sys.executable, str(CHILDREN / "no_subreaper.py")]
KILL = ("--kill-descendants",)


def wrap(mode: str, exit_dir: Path, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    return [*EXITDIR, mode, "--dir", str(exit_dir), *options, "--", *command]


def running(pid: int) -> bool:
    found = process(pid)
    return found is not None and found.alive


@pytest.fixture
def stray(spawn: type[Child]) -> Iterator[Callable[[Child], int]]:
    """``stray(wrapper)`` reads ``stray PID`` and ``ready`` from a wrapper running stray.py and returns the
    stray's pid. A stray still there at the end is SIGKILLed (before ``spawn`` reads the wrappers' output
    to its end, which a stray holding the pipe open would block)."""
    seen: list[Process] = []

    def read(wrapper: Child) -> int:
        line = wrapper.readline()
        assert line.startswith("stray "), line
        pid = int(line.split()[1])
        found = process(pid)
        assert found is not None, f"stray {pid} is gone already"
        seen.append(found)
        wrapper.expect("ready")
        return pid

    yield read
    for found in seen:
        signal_process(found, signal.SIGKILL)  # only if its pid still names the stray


def marker(exit_dir: Path) -> exitdir.Marker:
    with exitdir.aware(exit_dir) as token:
        assert token.marker is not None, f"no marker in {exit_dir}"
        return token.marker


@pytest.mark.parametrize("kill", [False, True], ids=["default", "kill-descendants"])
def test_a_setsid_grandchild_survives_follow_unless_kill_descendants(
    kill: bool, exit_dir: Path, spawn: type[Child], stray: Callable[[Child], int]
) -> None:
    wrapper = spawn(wrap("follow", exit_dir, *STRAY, "setsid", options=KILL if kill else ()))
    pid = stray(wrapper)
    exitdir.exit(directory=exit_dir)
    assert wrapper.wait() == 0
    if kill:
        wrapper.expect("TERM")  # the stray's own line: it had the stop signal, and exited
        assert process(pid) is None  # and the wrapper, its subreaper, reaped it
    else:
        assert running(pid)  # the documented default: outside the helper's group, out of reach


def test_a_grandchild_that_ignores_the_stop_signal_is_killed_after_the_grace(
    exit_dir: Path, spawn: type[Child], stray: Callable[[Child], int]
) -> None:
    options = (*KILL, "--grace", "0.5")
    wrapper = spawn(wrap("follow", exit_dir, *STRAY, "setsid", "ignore", options=options))
    pid = stray(wrapper)
    exitdir.exit(directory=exit_dir)
    assert wrapper.wait() == 0
    _, err = wrapper.rest()
    assert f"exitdir: stopping 1 process started by {sys.executable} (pid {pid}) with SIGTERM\n" in err
    assert f"(pid {pid}) did not exit within 0.5 s of SIGTERM; sending SIGKILL\n" in err
    assert process(pid) is None


@pytest.mark.parametrize("mode", ["lead", "follow"])
@pytest.mark.parametrize("kill", [False, True], ids=["default", "kill-descendants"])
def test_a_double_forked_daemon_is_left_running_unless_kill_descendants(
    mode: str, kill: bool, exit_dir: Path, spawn: type[Child], stray: Callable[[Child], int]
) -> None:
    # The program double-forks a daemon and exits 0 on its own: supervision ends with the program.
    wrapper = spawn(wrap(mode, exit_dir, *STRAY, "daemon", options=KILL if kill else ()))
    pid = stray(wrapper)
    assert wrapper.wait() == 0
    if kill:
        wrapper.expect("TERM")
        assert process(pid) is None
    else:
        assert running(pid)  # the documented default, as tini's: a program that exits leaves it behind


def test_lead_stops_what_its_program_left_before_it_writes_the_marker(
    exit_dir: Path, spawn: type[Child], stray: Callable[[Child], int]
) -> None:
    written = exit_dir / "exitFile"
    wrapper = spawn(wrap("lead", exit_dir, *STRAY, "daemon", f"report={written}", options=KILL))
    stray(wrapper)
    assert wrapper.wait() == 0
    wrapper.expect(f"TERM, {written} missing")  # followers are told only once the daemon has gone
    found = marker(exit_dir)
    assert (found.code, found.reason) == (0, "exited with status 0")


@pytest.mark.parametrize("kill", [False, True], ids=["default", "kill-descendants"])
def test_as_pid_1_what_the_program_left_gets_the_stop_signal_before_the_namespace_ends(
    kill: bool, exit_dir: Path, spawn: type[Child]
) -> None:
    # When PID 1 exits, the kernel SIGKILLs whatever is left in its namespace: no grace, no clean-up.
    namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
    wrapper = spawn([*namespace, *wrap("lead", exit_dir, *STRAY, "daemon", options=KILL if kill else ())])
    assert wrapper.readline().startswith("stray ")
    wrapper.expect("ready")
    assert wrapper.wait() == 0
    out, err = wrapper.rest()
    assert out == ("TERM\n" if kill else ""), err


def test_a_descendant_stuck_in_the_kernel_is_given_up_on_after_the_kill_rounds(
    exit_dir: Path, tmp_path: Path, spawn: type[Child], stray: Callable[[Child], int]
) -> None:
    """A process waiting on a FUSE request its server has taken but not answered sleeps uninterruptibly
    (state D): even SIGKILL waits, as on a dead NFS server. Here bindfs forwards a lock request to a file
    whose lock the test holds. The wrapper must give up after its SIGKILL rounds, with a warning."""
    with lock_held_behind_bindfs(tmp_path) as (lock, blocked):
        options = (*KILL, "--grace", "0.1")
        wrapper = spawn(wrap("follow", exit_dir, *STRAY, "setsid", "ignore", f"lock={lock}", options=options))
        pid = stray(wrapper)
        blocked("the stray")
        exitdir.exit(directory=exit_dir)
        assert wrapper.wait() == 0
        assert process(pid) is not None  # still there: killed, but waiting in the kernel
    _, err = wrapper.rest()
    assert f"(pid {pid}) did not exit within 0.1 s of SIGTERM; sending SIGKILL\n" in err
    assert (
        f"1 process started by {sys.executable} (pid {pid}) still running after 10 rounds of SIGKILL" in err
    )


@pytest.mark.parametrize("option", ["--subreaper", "--kill-descendants"])
def test_without_a_subreaper_the_wrapper_says_so_and_runs_the_program(option: str, exit_dir: Path) -> None:
    # A real seccomp filter refuses prctl(PR_SET_CHILD_SUBREAPER), as some sandboxes do.
    command = [*NO_SUBREAPER, *wrap("follow", exit_dir, "sh", "-c", "exit 3", options=(option,))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=GENEROUS, check=False)
    assert result.returncode == 3
    assert result.stderr.startswith(f"exitdir: {option} needs a child subreaper, which is not available here")
    assert result.stderr.count("\n") == 1


def test_kill_descendants_with_the_proc_of_another_pid_namespace_says_so(exit_dir: Path) -> None:
    # In a pid namespace of its own under the parent's /proc, pids in /proc name other processes than the
    # wrapper's: it must not go looking for "its" descendants there.
    command = ["unshare", "--pid", "--fork", *wrap("follow", exit_dir, "sh", "-c", "exit 3", options=KILL)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=GENEROUS, check=False)
    assert result.returncode == 3
    assert result.stderr == (
        "exitdir: --kill-descendants cannot find CMD's descendants: /proc is missing or shows another pid "
        "namespace (mount /proc for this one); processes that leave CMD's process group are not stopped\n"
    )


@pytest.mark.parametrize("option", [["--grace", "1"], ["--signal", "INT"]])
def test_lead_refuses_grace_or_signal_without_kill_descendants(
    option: list[str], exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lead", "--dir", str(exit_dir), *option, "--", "true"]) == 2
    assert capsys.readouterr().err == (
        "exitdir: usage: --signal and --grace say how to stop CMD or what it leaves: add --stop-on or "
        "--kill-descendants\n"
    )
    assert os.listdir(exit_dir) == []  # refused before anything ran or was written


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
