"""Gated waits (issue 14, item 4): `exitdir wait --exit-code leader` exits with the leader's code, so that
`exitdir wait --exit-code leader && next-step` runs the next step only after the leader succeeded.

Real leaders (`exitdir lead` around a real program, Go-style empty files, one SIGKILLed), real `exitdir wait`
processes, and the gate itself in a real `sh`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import exitdir
from exitdir import _cli

from _support import EXITDIR, GENEROUS, Child, one_usage_line

ANNOUNCING_MAIN = Path(__file__).parent / "children" / "announcing_main.py"


def _lead(exit_dir: Path, code: int, name: str = "exitFile") -> None:
    """A real leader: `exitdir lead` around a program that exits ``code``."""
    argv = [*EXITDIR, "lead", "--dir", str(exit_dir), "--name", name, "--", "sh", "-c", f"exit {code}"]
    assert subprocess.run(argv, timeout=GENEROUS, check=False).returncode == code


def _wait(exit_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [*EXITDIR, "wait", "--dir", str(exit_dir), "--timeout", str(GENEROUS), *options]
    return subprocess.run(argv, capture_output=True, text=True, timeout=2 * GENEROUS, check=False)


@pytest.mark.parametrize("code", [0, 3])
def test_wait_exits_with_the_leaders_code(exit_dir: Path, code: int) -> None:
    _lead(exit_dir, code)
    done = _wait(exit_dir, "--exit-code", "leader")
    assert done.returncode == code
    said = (
        ""
        if code == 0
        else "exitdir: leader did not succeed (exitFile: code 3: exited with status 3): exiting 3\n"
    )
    assert done.stderr == said


def test_without_the_option_wait_still_exits_0_whatever_the_leader_did(exit_dir: Path) -> None:
    _lead(exit_dir, 3)
    assert _wait(exit_dir).returncode == 0
    assert _wait(exit_dir, "--exit-code", "zero").returncode == 0


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"", 0), (b"\n", 0), (b"not ours", 1), (b'{"exitdir": 1, "code": "three"}', 1)],
    ids=["go-empty", "echo-empty", "unknown", "unreadable-code"],
)
def test_a_marker_written_by_hand_or_by_go(exit_dir: Path, content: bytes, status: int) -> None:
    """Go's Exit() writes an empty file: code 0, as before. Content that is not ours has no code: the
    leader ended, but cannot be said to have succeeded."""
    (exit_dir / "exitFile").write_bytes(content)
    assert _wait(exit_dir, "--exit-code", "leader").returncode == status


def test_a_vanished_leader_is_1(exit_dir: Path, spawn: type[Child]) -> None:
    """A real `exitdir lead` SIGKILLed while its program runs writes no marker: wait sees it vanish."""
    lead = spawn([*EXITDIR, "lead", "--dir", str(exit_dir), "--", "sh", "-c", "echo $$; exec sleep 60"])
    program = int(lead.readline())  # the program runs, so lead holds its liveness lock
    try:
        # announcing_main says "ready" once its token has looked at the directory, and so seen the leader.
        waiter = spawn(
            [sys.executable, str(ANNOUNCING_MAIN), "wait", "--dir", str(exit_dir), "--exit-code", "leader"]
        )
        waiter.expect("ready")
        lead.signal(signal.SIGKILL)
        assert waiter.wait() == 1
        _, err = waiter.rest()
        assert err == (
            "exitdir: leader did not succeed (exitFile: unknown code: leader exited without signalling): "
            "exiting 1\n"
        )
    finally:
        os.kill(program, signal.SIGKILL)  # orphaned by the SIGKILL: ours to end
    assert os.listdir(exit_dir) == []


@pytest.mark.parametrize(
    ("order", "codes", "status"),
    [
        (["a", "b"], {"a": 0, "b": 3}, 3),
        (["a", "b"], {"a": 2, "b": 3}, 2),
        (["b", "a"], {"a": 2, "b": 3}, 3),  # the first non-zero in the order given
        (["a", "b"], {"a": 0, "b": 0}, 0),
    ],
)
def test_with_all_the_first_failing_leader_in_the_order_given(
    exit_dir: Path, order: list[str], codes: dict[str, int], status: int
) -> None:
    for name, code in codes.items():
        _lead(exit_dir, code, name)
    leaders = [option for name in order for option in ("--leader", name)]
    assert _wait(exit_dir, *leaders, "--all", "--exit-code", "leader").returncode == status


def test_with_all_a_vanished_named_leader_is_1(exit_dir: Path, spawn: type[Child]) -> None:
    _lead(exit_dir, 0, "a")
    lead = spawn(
        [*EXITDIR, "lead", "--dir", str(exit_dir), "--name", "b", "--", "sh", "-c", "echo $$; exec sleep 60"]
    )
    program = int(lead.readline())
    try:
        waiter = spawn(
            [
                *(sys.executable, str(ANNOUNCING_MAIN), "wait", "--dir", str(exit_dir)),
                *("--leader", "a", "--leader", "b", "--exit-code", "leader"),
            ]
        )
        waiter.expect("ready")
        lead.signal(signal.SIGKILL)
        assert waiter.wait() == 1
    finally:
        os.kill(program, signal.SIGKILL)


def test_with_any_the_marker_that_tripped(exit_dir: Path) -> None:
    _lead(exit_dir, 4, "b")
    assert _wait(exit_dir, "--leader", "a", "--leader", "b", "--any", "--exit-code", "leader").returncode == 4


def test_a_timeout_is_still_124(exit_dir: Path) -> None:
    argv = [*EXITDIR, "wait", "--dir", str(exit_dir), "--timeout", "0.1", "--exit-code", "leader"]
    assert subprocess.run(argv, capture_output=True, timeout=GENEROUS, check=False).returncode == 124


@pytest.mark.parametrize(("code", "runs"), [(0, True), (3, False)])
def test_the_shell_gate_runs_the_next_step_only_after_success(
    exit_dir: Path, tmp_path: Path, code: int, runs: bool
) -> None:
    _lead(exit_dir, code, "build")
    ran = tmp_path / "ran"
    wait = " ".join([*EXITDIR, "wait", "--dir", str(exit_dir), "--leader", "build", "--exit-code", "leader"])
    gate = subprocess.run(["sh", "-c", f"{wait} && touch {ran}"], timeout=GENEROUS, check=False)
    assert gate.returncode == code
    assert ran.exists() == runs


def test_exit_code_leader_makes_no_sense_with_ready(
    exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli.main(["wait", "--dir", str(exit_dir), "--ready", "proxy", "--exit-code", "leader"]) == 2
    assert capsys.readouterr().err == (
        "exitdir: usage: --exit-code leader exits with a leader's code; --ready waits for announcements, "
        "which carry none: drop one of them\n"
    )


def test_a_bad_policy_is_a_usage_error(exit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_usage_line(capsys, ["wait", "--dir", str(exit_dir), "--exit-code", "child"])
    assert err.startswith("exitdir: usage: argument --exit-code: invalid choice: 'child'")


def test_the_library_gives_the_same_status(exit_dir: Path) -> None:
    exitdir.exit(0, name="build", directory=exit_dir)
    exitdir.exit(5, name="lint", directory=exit_dir)
    with exitdir.aware(exit_dir, names=["build", "lint"]) as token:
        assert token.wait(GENEROUS)
        assert token.exit_status == 5
        assert token.marker is not None
    with exitdir.aware(exit_dir, names=["build"]) as token:
        assert token.wait(GENEROUS)
        assert token.exit_status == 0
    with exitdir.aware(exit_dir / "never") as token:
        assert token.exit_status is None  # not tripped: no status yet


@pytest.mark.parametrize(
    "options", [(), ("--any", "--leader", "a", "--leader", "b")], ids=["any-marker", "any-named"]
)
def test_a_failure_among_the_markers_there_closes_the_gate_however_the_names_sort(
    exit_dir: Path, options: tuple[str, ...]
) -> None:
    """Several markers are there when a late `wait` starts: `b` failed, then `a` succeeded. Which of them
    trips the wait depends on how their names sort; the gate stays shut either way."""
    _lead(exit_dir, 5, name="b")
    _lead(exit_dir, 0, name="a")
    done = _wait(exit_dir, "--exit-code", "leader", *options)
    assert done.returncode == 5
    assert "leader did not succeed (b: code 5: exited with status 5): exiting 5" in done.stderr
    # Only successes there: the gate opens.
    os.unlink(exit_dir / "b")
    assert _wait(exit_dir, "--exit-code", "leader", *options).returncode == 0
