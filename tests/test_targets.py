"""Stopping processes we did not start (`_targets`): found by name in /proc or through a pid file.

The targets are real processes started in a session of their own through an intermediate `sh -c '... &'`
that exits at once, so they are not the test's children, as in the real use (sidecars of a pod with a
shared process namespace). Both ways of telling that a target is gone run: a pidfd, and the /proc polling
used where pidfds are not available (forced with ``pidfd=False``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import Orphan
from exitdir import ExitDirError
from exitdir._linux import process, running, send_signal
from exitdir._stops import Stopped
from exitdir._targets import find, from_pid_file, stop

from _support import DROP_TO_NOBODY, GENEROUS, QUIET_PERIOD, Child, env_with, lock_held_behind_bindfs, python

if TYPE_CHECKING:
    from collections.abc import Callable

SRC = str(Path(__file__).parent.parent / "src")
PIDFD = pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "proc-polling"])
# A target that ignores SIGTERM, and says so once it does.
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
    "time.sleep(600)"
)


def alive(pid: int) -> bool:
    found = process(pid)
    return found is not None and found.alive


@PIDFD
def test_a_target_found_by_name_that_ends_at_term_is_stopped(
    orphan: Callable[..., Orphan], program: Callable[[str, str], str], pidfd: bool
) -> None:
    name = f"fake-proxy-{os.getpid()}"
    _, pid = orphan(program(name, "/bin/sleep"), "600")
    assert find(name) == [pid]
    result = stop(pid, signal=signal.SIGTERM, grace=GENEROUS, name=name, pidfd=pidfd)
    assert result == Stopped(f"{name} (pid {pid})", "stopped", "ended after SIGTERM")
    assert not alive(pid)
    assert find(name) == []


@PIDFD
def test_a_target_that_ignores_term_is_killed_after_the_grace(
    orphan: Callable[..., Orphan], program: Callable[[str, str], str], pidfd: bool
) -> None:
    name = "stubborn-proxy"  # 14 bytes: its comm is the whole name too
    shell, pid = orphan(program(name, "python"), "-c", STUBBORN)
    shell.expect("ready")
    assert find(name) == [pid]
    result = stop(pid, signal=signal.SIGTERM, grace=0.2, name=name, pidfd=pidfd)
    assert result.outcome == "killed", result
    assert (
        result.describe()
        == f"{name} (pid {pid}): killed: still running 0.2 s after SIGTERM; SIGKILL ended it"
    )
    assert not alive(pid)


@PIDFD
def test_no_grace_waits_for_the_first_signal_however_long_it_takes(
    orphan: Callable[..., Orphan], program: Callable[[str, str], str], tmp_path: Path, pidfd: bool
) -> None:
    """With ``grace=None`` a target that takes its time to end at SIGTERM is never SIGKILLed."""
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    slow = (
        "import signal, sys\n"
        f"def ending(*_):\n    print('term', flush=True)\n    open({str(fifo)!r}).read()\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, ending)\nprint('ready', flush=True)\nsignal.pause()"
    )
    shell, pid = orphan(program("slow-proxy", "python"), "-c", slow)
    shell.expect("ready")
    results: list[Stopped] = []
    stopper = threading.Thread(
        target=lambda: results.append(stop(pid, signal=signal.SIGTERM, grace=None, name="slow", pidfd=pidfd))
    )
    stopper.start()
    try:
        shell.expect("term")
        stopper.join(QUIET_PERIOD)
        assert stopper.is_alive(), "stop() returned before the target ended"
        assert alive(pid), "the target was not given all the time it needed"
    finally:
        with open(fifo, "w"):
            pass  # the target reads to end of file and exits
        stopper.join(GENEROUS)
    assert [r.outcome for r in results] == ["stopped"]


@PIDFD
def test_a_zombie_is_absent(pidfd: bool) -> None:
    """A process that has exited but is not reaped yet (here our own child, so that it stays a zombie) has
    nothing left to stop."""
    child = subprocess.Popen(python("pass"))
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has exited; leave it a zombie
        seen = process(child.pid)
        assert seen is not None
        assert seen.state == "Z"
        result = stop(child.pid, signal=signal.SIGTERM, grace=GENEROUS, name="zombie", pidfd=pidfd)
        assert result.outcome == "absent", result
    finally:
        child.wait()


def test_the_start_time_tells_the_target_from_a_process_reusing_its_pid(
    orphan: Callable[..., Orphan],
) -> None:
    """A real process seen with another start time (a stand-in for its pid reused by another process) is
    not running as far as the target goes, and is never signalled for it."""
    _, pid = orphan("sleep", "600")
    seen = process(pid)
    assert seen is not None
    assert running(pid, seen.start)
    assert not running(pid, seen.start + 1)
    with pytest.raises(ProcessLookupError):
        send_signal(pid, seen.start + 1, None, signal.SIGKILL)
    assert running(pid, seen.start), "a process with another start time was signalled"
    send_signal(pid, seen.start, None, signal.SIGKILL)
    # SIGKILL is not instant: stop() waits for it to land (the SIGTERM then finds it gone, or follows it).
    assert stop(pid, signal=signal.SIGTERM, grace=GENEROUS, name="sleep").outcome in ("absent", "stopped")
    assert not running(pid, seen.start)


def test_find_never_returns_this_process_or_its_ancestors(
    orphan: Callable[..., Orphan], program: Callable[[str, str], str], spawn: type[Child]
) -> None:
    """A program named like its target (a wrapper started as `finder`, which runs `finder`) finds the
    other `finder`s, never itself nor the one that started it."""
    finder = program("finder", "python")
    env = env_with(PYTHONPATH=SRC)
    shell, other = orphan(finder, "-c", STUBBORN)
    shell.expect("ready")
    inner = "import os; from exitdir._targets import find; print(os.getpid(), os.getppid(), find('finder'))"
    outer = spawn([finder, "-c", f"import subprocess; subprocess.run([{finder!r}, '-c', {inner!r}])"], env)
    me, parent, found = outer.readline().split(" ", 2)
    assert outer.wait() == 0
    assert found == f"[{other}]", (me, parent, found)


def test_find_refuses_a_name_that_cannot_be_a_program() -> None:
    for name in ("", "/usr/bin/envoy", "a\0b"):
        with pytest.raises(ExitDirError, match="give its file name as it runs"):
            find(name)


def test_a_pid_file_names_the_target_and_a_dead_pid_is_absent(tmp_path: Path) -> None:
    child = subprocess.Popen(python("pass"))
    child.wait()  # reaped: the pid names nothing now
    pid_file = tmp_path / "proxy.pid"
    pid_file.write_text(f"  {child.pid}\n")
    assert from_pid_file(str(pid_file)) == child.pid
    result = stop(child.pid, signal=signal.SIGTERM, grace=GENEROUS, name=str(pid_file))
    assert result == Stopped(f"{pid_file} (pid {child.pid})", "absent", "not running")


def test_a_missing_pid_file_means_no_target(tmp_path: Path) -> None:
    assert from_pid_file(str(tmp_path / "none.pid")) is None


@pytest.mark.parametrize(
    "content", [b"", b"\n", b"abc\n", b"-5", b"0", b"12 34", b"1.5", b"\xff\xfe", b"9" * 30]
)
def test_a_pid_file_that_holds_no_pid_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    pid_file = tmp_path / "proxy.pid"
    pid_file.write_bytes(content)
    with pytest.raises(ExitDirError) as caught:
        from_pid_file(str(pid_file))
    message = str(caught.value)
    assert message.startswith(f"pid file {str(pid_file)!r} holds ")
    assert "not a process id: it must hold the target's pid alone" in message
    assert "\n" not in message


def test_a_pid_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExitDirError, match=r"cannot read pid file .*: EISDIR .*: give a regular file"):
        from_pid_file(str(tmp_path))


@PIDFD
def test_another_users_process_is_not_ours_to_stop_and_we_are_told_why(
    orphan: Callable[..., Orphan], program: Callable[[str, str], str], spawn: type[Child], pidfd: bool
) -> None:
    """The target runs as root, the stopper as nobody: the kernel refuses the signal (EPERM)."""
    assert os.geteuid() == 0, "the suite runs as root (.ci/run): a process of another user needs it"
    name = "root-proxy"
    _, pid = orphan(program(name, "/bin/sleep"), "600")
    code = (
        "import exitdir._targets\n"
        + DROP_TO_NOBODY
        + f"from exitdir._targets import find, stop\n[pid] = find({name!r})\n"
        + f"print(stop(pid, signal=15, grace=1.0, name={name!r}, pidfd={pidfd}).describe())"
    )
    stopper = spawn(python(code))
    assert stopper.readline() == (
        f"{name} (pid {pid}): failed: not permitted to send SIGTERM: it runs as another user; "
        "run this as that user, or give it CAP_KILL"
    )
    assert stopper.wait() == 0
    assert alive(pid)


@pytest.mark.parametrize(
    ("pid", "signum", "grace"), [(0, 15, 1.0), (True, 15, 1.0), (1234, 0, 1.0), (1234, 15, -1.0)]
)
def test_wrong_arguments_are_exitdir_errors(pid: int, signum: int, grace: float) -> None:
    with pytest.raises(ExitDirError):
        stop(pid, signal=signum, grace=grace, name="x")


def test_this_process_is_never_stopped() -> None:
    result = stop(os.getpid(), signal=signal.SIGTERM, grace=1.0, name="me")
    assert result.outcome == "failed"


NO_PIDFD = [sys.executable, str(Path(__file__).parent / "children" / "no_pidfd.py")]


@pytest.mark.parametrize(
    ("refused", "errno_name"), [("both", "ENOSYS"), ("open", "EPERM"), ("signal", "EPERM")]
)
def test_a_kernel_refusing_pidfds_falls_back_to_polling_proc(
    orphan: Callable[..., Orphan],
    program: Callable[[str, str], str],
    spawn: type[Child],
    refused: str,
    errno_name: str,
) -> None:
    """A real seccomp filter refuses pidfd_open and/or pidfd_send_signal, as an older container runtime's
    profile does (EPERM) or an old kernel (ENOSYS): the target is still stopped, through /proc, and a
    refused pidfd signal is not taken for "another user's process"."""
    name = "sealed-proxy"
    shell, pid = orphan(program(name, "python"), "-c", STUBBORN)
    shell.expect("ready")
    code = (
        "import os, errno\nfrom exitdir._targets import find, stop\n"
        "try:\n    os.close(os.pidfd_open(os.getpid()))\n    print('pidfd_open works')\n"
        "except OSError as err:\n    print('pidfd_open', errno.errorcode[err.errno])\n"
        f"[pid] = find({name!r})\nprint(stop(pid, signal=15, grace=0.2, name={name!r}).describe())"
    )
    stopper = spawn([*NO_PIDFD, refused, errno_name, *python(code)], env_with(PYTHONPATH=SRC))
    assert stopper.readline() == ("pidfd_open works" if refused == "signal" else f"pidfd_open {errno_name}")
    assert (
        stopper.readline()
        == f"{name} (pid {pid}): killed: still running 0.2 s after SIGTERM; SIGKILL ended it"
    )
    assert stopper.wait() == 0
    assert not alive(pid)


@PIDFD
def test_a_target_stuck_in_the_kernel_is_given_up_on_after_a_bounded_wait(
    orphan: Callable[..., Orphan], program: Callable[[str, str], str], tmp_path: Path, pidfd: bool
) -> None:
    """A process waiting on a FUSE request its server has taken but not answered sleeps uninterruptibly
    (state D): even SIGKILL waits, as on a dead NFS server. Here bindfs forwards a lock request to a file
    whose lock the test holds. stop() must give up after ``kill_wait`` with a clear result."""
    with lock_held_behind_bindfs(tmp_path) as (lock, blocked):
        stuck = (
            "import fcntl, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"f = open({str(lock)!r}, 'r+')\nprint('ready', flush=True)\n"
            "fcntl.lockf(f, fcntl.LOCK_EX)"
        )
        shell, pid = orphan(program("stuck-proxy", "python"), "-c", stuck)
        shell.expect("ready")
        blocked("the target")
        result = stop(pid, signal=signal.SIGTERM, grace=0.1, name="stuck-proxy", pidfd=pidfd, kill_wait=0.3)
        assert result.describe() == (
            f"stuck-proxy (pid {pid}): failed: still running 0.3 s after SIGKILL: it is stuck in the kernel "
            "(a dead NFS or FUSE server?); leaving it"
        )
        assert process(pid) is not None
