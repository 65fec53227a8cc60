"""Exhausted file descriptors: under a real ``ulimit -n``, every command either does its job or says what
it lacks, and a leader's end is always reported.

The limits are set in the child (``resource.setrlimit`` before ``exec``), for real. Each command is run at
every limit from the lowest at which the interpreter itself can start up to one where nothing is short,
and the invariants are asserted at each: no traceback, and either the job was done (the marker found, the
program run and its status reported), or it was not started and the message names the fd limit.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir

from _support import DROP_TO_NOBODY, EXITDIR, GENEROUS, Child, python, world_searchable_dir

if TYPE_CHECKING:
    from collections.abc import Callable

# Enough for every command on either backend: the sweeps go from the lowest limit up to this one.
ENOUGH = 10
FIX = "raise the open-file limit (ulimit -n"
# Python run in a child: open /dev/null until the process has no descriptor left, keeping them in `held`.
EXHAUST = (
    "held = []\n"
    "try:\n"
    "    while True:\n"
    "        held.append(os.open('/dev/null', os.O_RDONLY))\n"
    "except OSError:\n"
    "    pass\n"
)


def limited(n: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's open-file limit to ``n`` (stdin, stdout and stderr count)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def run(argv: list[str], n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        preexec_fn=limited(n),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )


@functools.cache
def lowest_limit() -> int:
    """The lowest open-file limit at which the interpreter starts and exitdir's command line runs."""
    for n in range(3, ENOUGH):
        if run([*EXITDIR, "--version"], n).returncode == 0:
            return n
    pytest.fail(f"exitdir does not even start under ulimit -n {ENOUGH - 1}")


def limits() -> range:
    return range(lowest_limit(), ENOUGH + 1)


def marker_code(directory: Path) -> tuple[int | None, str | None]:
    marker = exitdir.aware(directory).marker
    assert marker is not None, f"no marker in {directory}"
    return marker.code, marker.reason


def test_the_lowest_limit_is_what_the_interpreter_needs() -> None:
    # The sweeps start where the interpreter itself can start (5 here: its own start-up opens files while
    # stdin, stdout and stderr are open); below that nothing of exitdir runs, so nothing can be asserted.
    n = lowest_limit()
    assert run(python("pass"), n - 1).returncode != 0
    assert run(python("pass"), n).returncode == 0


def test_wait_finds_a_marker_already_there_at_every_limit(exit_dir: Path) -> None:
    # Issue 11, row 2: under `ulimit -n 6` the first listing failed with EMFILE and was never retried, so
    # `exitdir wait` ran into its timeout with the marker right there.
    exitdir.exit(3, directory=exit_dir)
    for n in limits():
        done = run([*EXITDIR, "wait", "--json", "--timeout", "5", "--dir", str(exit_dir)], n)
        assert done.returncode == 0, (n, done.stderr)
        assert json.loads(done.stdout)["code"] == 3, n
        assert "Traceback" not in done.stderr, n


def test_exit_and_status_at_every_limit(exit_dir: Path) -> None:
    for n in limits():
        done = run([*EXITDIR, "exit", "--code", str(n), "--dir", str(exit_dir)], n)
        assert done.returncode == 0, (n, done.stderr)
        assert marker_code(exit_dir)[0] == n
        shown = run([*EXITDIR, "status", "--json", "--dir", str(exit_dir)], n)
        assert shown.returncode == 0, (n, shown.stderr)
        assert json.loads(shown.stdout)["markers"][0]["code"] == n


def test_lead_runs_its_program_only_if_it_can_report_its_end(exit_dir: Path) -> None:
    # Under `ulimit -n 5`, `lead` used to die without running the program or writing a marker.
    ran_at = []
    for n in limits():
        for old in exit_dir.iterdir():
            old.unlink()
        done = run([*EXITDIR, "lead", "--dir", str(exit_dir), "--", "sh", "-c", "echo ran; exit 3"], n)
        assert "Traceback" not in done.stderr, (n, done.stderr)
        if done.stdout == "ran\n":
            ran_at.append(n)
            assert done.returncode == 3, (n, done.stderr)
            assert marker_code(exit_dir) == (3, "exited with status 3"), n
        else:  # not started: one line naming the limit, status 1, and the followers are told
            assert done.stdout == "", n
            assert done.returncode == 1, (n, done.stderr)
            (line,) = done.stderr.splitlines()
            assert line.startswith("exitdir: error: cannot start sh: no file descriptor left"), (n, line)
            assert FIX in line, (n, line)
            code, reason = marker_code(exit_dir)
            assert code == 1, n
            assert reason is not None
            assert reason.startswith("exitdir could not start sh: no file descriptor left"), n
    assert ran_at == list(range(ran_at[0], ENOUGH + 1)), "a larger limit must never do less"


@pytest.mark.parametrize("policy", ["zero", "leader"])
def test_follow_stops_its_helper_or_does_not_start_it(exit_dir: Path, policy: str) -> None:
    # Under `ulimit -n 5` follow never stopped its helper; at 6 and 7 it died with a traceback; at 8 it
    # read the marker as unreadable (EMFILE), so `--exit-code leader` reported 1 for a leader's 3.
    started_at = []
    for n in limits():
        for old in exit_dir.iterdir():
            old.unlink()
        argv = [*EXITDIR, "follow", "--exit-code", policy, "--dir", str(exit_dir)]
        follower = Child([*argv, "--", "sh", "-c", "echo ready $$; exec sleep 60"], preexec_fn=limited(n))
        try:
            first = follower.readline()
            if first.startswith("ready"):
                started_at.append(n)
                exitdir.exit(3, directory=exit_dir)
                assert follower.wait() == (3 if policy == "leader" else 0), n
                _, err = follower.rest()
                assert "leader signalled (exitFile: code 3)" in err, (n, err)
                with pytest.raises(ProcessLookupError):  # the helper was stopped and reaped
                    os.kill(int(first.split()[1]), 0)
            else:
                assert follower.wait() == 1, n
                _, err = follower.rest()
                *warnings, line = err.splitlines()
                assert line.startswith("exitdir: error: cannot start sh: "), (n, line)
                assert FIX in line, (n, line)
                assert all("EMFILE" in warning for warning in warnings), (n, err)
            assert "Traceback" not in err, (n, err)
        finally:
            follower.cleanup()
    assert started_at == list(range(started_at[0], ENOUGH + 1)), "a larger limit must never do less"


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_a_look_that_failed_for_want_of_descriptors_is_retried(
    exit_dir: Path, spawn: type[Child], backend: str
) -> None:
    # The follower's process uses up every descriptor (its own program's doing) while it waits; the marker
    # arrives then; once descriptors are free again it must be found, with its code. Before, inotify read
    # it as an "unreadable" marker of unknown code, and polling never listed the directory again.
    code = (
        "import os, signal, threading, exitdir, exitdir._watch._inotify, ctypes, logging\n"
        f"token = exitdir.aware({str(exit_dir)!r}, backend={backend!r}, poll_interval=0.05)\n"
        f"{EXHAUST}"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGUSR2])\n"
        "def follow() -> None:\n"
        "    tripped = token.wait(60)\n"
        "    print('tripped', tripped, token.marker.code, flush=True)\n"
        "print('exhausted', flush=True)\n"
        "signal.sigwait([signal.SIGUSR2])  # the marker is there: look now\n"
        "threading.Thread(target=follow).start()\n"
        "signal.sigwait([signal.SIGUSR1])  # the look failed: free the descriptors\n"
        "for fd in held:\n"
        "    os.close(fd)\n"
    )
    follower = spawn(python(code), merge_stderr=True)
    follower.expect("exhausted")
    exitdir.exit(3, directory=exit_dir)
    # A directory that looks settled, so that a poll follower lists it again only if it means to retry.
    os.utime(exit_dir, (0, 0))
    follower.signal(signal.SIGUSR2)
    line = follower.read_until("cannot list exit directory")
    assert "EMFILE (Too many open files)" in line
    assert FIX in line
    follower.signal(signal.SIGUSR1)
    assert follower.read_until("tripped") == "tripped True 3"
    assert follower.wait() == 0


def test_a_leader_block_that_used_up_every_descriptor_still_writes_its_marker(
    exit_dir: Path, spawn: type[Child]
) -> None:
    code = (
        "import os, exitdir\n"
        f"with exitdir.leader(directory={str(exit_dir)!r}):\n"
        "    try:\n"
        "        while True:\n"
        "            os.open('/dev/null', os.O_RDONLY)\n"
        "    except OSError as err:\n"
        "        print('exhausted', err.errno, flush=True)\n"
        "        raise SystemExit(4)\n"
    )
    leader = spawn(python(code))
    leader.expect("exhausted 24")
    assert leader.wait() == 4
    _, err = leader.rest()
    assert err == ""
    assert marker_code(exit_dir)[0] == 4


def test_a_leader_that_cannot_keep_what_its_marker_needs_does_not_run(
    exit_dir: Path, spawn: type[Child]
) -> None:
    code = (
        "import os, exitdir, exitdir._leader, exitdir._marker, exitdir._liveness\n"
        f"{EXHAUST}"
        "os.close(held.pop())  # one descriptor free: not enough to keep the directory and write\n"
        "try:\n"
        f"    with exitdir.leader(directory={str(exit_dir)!r}):\n"
        "        print('ran', flush=True)\n"
        "except exitdir.ExitDirError as err:\n"
        "    print('refused:', err, flush=True)\n"
    )
    leader = spawn(python(code))
    line = leader.readline()
    assert line.startswith("refused: cannot start the leader's block: no file descriptor left"), line
    assert FIX in line
    assert leader.wait() == 0


def test_callbacks_beyond_the_thread_limit_are_a_clear_error(exit_dir: Path, spawn: type[Child]) -> None:
    base = world_searchable_dir()
    try:
        directory = Path(base, "exit")
        directory.mkdir()
        prelude = "import resource\n" + DROP_TO_NOBODY  # resource first: nobody cannot read it here
        code = prelude + (
            "import exitdir\n"
            f"token = exitdir.aware({str(directory)!r})\n"
            "resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))  # this process alone: no thread more\n"
            "try:\n"
            "    token.add_callback(lambda: print('called', flush=True))\n"
            "except exitdir.ExitDirError as err:\n"
            "    print('refused:', err, flush=True)\n"
            f"print('tripped', token.wait({GENEROUS}), flush=True)\n"
        )
        child = spawn(python(code))
        line = child.readline()
        assert line.startswith("refused: cannot start the thread that runs exit callbacks: "), line
        assert "ulimit -u" in line
        exitdir.exit(directory=directory)  # the token still works
        child.expect("tripped True")
        assert child.wait() == 0
    finally:
        shutil.rmtree(base)
