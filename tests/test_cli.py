"""The command line, in-process through main(argv) and as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import exitdir
from exitdir._cli import EXIT_TIMEOUT, main

from _support import EXITDIR, GENEROUS, Child

ANNOUNCING_MAIN = Path(__file__).parent / "children" / "announcing_main.py"


def test_exit_writes_a_marker_with_code_and_reason(exit_dir: Path) -> None:
    assert (
        main(["exit", "--code", "3", "--reason", "tests failed", "--name", "main", "--dir", str(exit_dir)])
        == 0
    )
    token = exitdir.aware(exit_dir)
    assert token.marker is not None
    assert (token.marker.name, token.marker.code, token.marker.reason) == ("main", 3, "tests failed")
    token.close()


def test_exit_without_directory_writes_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["exit"]) == 0
    assert "no marker written" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_wait_returns_zero_and_prints_the_marker(exit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exitdir.exit(5, reason="lint failed", directory=exit_dir)
    assert main(["wait", "--dir", str(exit_dir), "--verbose"]) == 0
    assert capsys.readouterr().out == "exitFile: code 5: lint failed\n"
    assert main(["wait", "--dir", str(exit_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["name"], doc["code"], doc["reason"], doc["kind"]) == ("exitFile", 5, "lint failed", "exitdir")


def test_wait_timeout_has_its_own_status(exit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wait", "--dir", str(exit_dir), "--timeout", "0.1"]) == EXIT_TIMEOUT == 124
    assert "timed out after 0.1 s" in capsys.readouterr().err
    assert main(["wait", "--dir", str(exit_dir), "--timeout", "0.1", "-q"]) == 124
    assert capsys.readouterr().err == ""


def test_wait_uses_exit_dir_from_the_environment(exit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXIT_DIR", str(exit_dir))
    exitdir.exit()
    assert main(["wait", "--timeout", "5"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a command is required"),
        (["frobnicate"], "invalid choice"),
        (["exit", "--code", "256"], "outside 0..255"),
        (["exit", "--code", "x"], "not an integer"),
        (["wait", "--timeout", "-1"], "zero or more seconds"),
        (["wait", "--timeout", "soon"], "not a number"),
        (["wait"], "nothing to wait for: set EXIT_DIR or pass --dir"),
        (["status"], "set EXIT_DIR or pass --dir"),
        (["demo", "idle"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_and_status_two(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("exitdir: usage: ")
    assert message in err
    assert err.count("\n") == 1


def test_user_mistakes_are_one_clear_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert main(["exit", "--dir", str(not_a_dir)]) == 1
    assert main(["wait", "--dir", str(not_a_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert all(line.startswith("exitdir: error: ") for line in err)
    assert "not a directory" in err[0]
    # A bad name is refused by its argument's validator, like --code: a usage error.
    assert main(["exit", "--name", "../x", "--dir", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("exitdir: usage: argument --name: marker name '../x' is a path")


def test_status_lists_markers(exit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--dir", str(exit_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{exit_dir}: no markers",
        "followers would keep running: no marker counts",
    ]
    exitdir.exit(0, name="api", directory=exit_dir)
    exitdir.exit(3, reason="boom", name="worker", directory=exit_dir)
    (exit_dir / "exitFile").write_text("")  # Go's marker
    assert main(["status", "--dir", str(exit_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "api: code 0",
        "exitFile: code 0",
        "worker: code 3: boom",
        "followers would exit now",
    ]
    assert main(["status", "--dir", str(exit_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["directory"] == str(exit_dir)
    assert [(m["name"], m["kind"]) for m in doc["markers"]] == [
        ("api", "exitdir"),
        ("exitFile", "empty"),
        ("worker", "exitdir"),
    ]


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"exitdir {exitdir.__version__}"
    assert main(["--help"]) == 0
    assert "wait" in capsys.readouterr().out


def test_console_script_and_module_are_the_same_program(exit_dir: Path) -> None:
    script = Path(sys.executable).with_name("exitdir")
    for argv in ([str(script)], EXITDIR):
        result = subprocess.run(
            [*argv, "wait", "--dir", str(exit_dir), "--timeout", "0"], capture_output=True, check=False
        )
        assert result.returncode == 124


def test_wait_in_a_real_process_is_woken_by_exit_in_another(exit_dir: Path, spawn: type[Child]) -> None:
    waiter = spawn([*EXITDIR, "wait", "--verbose", "--dir", str(exit_dir)])
    # `wait` prints nothing before the marker, so the handshake is the watch itself: the leader may write
    # at any moment, before or after the watch is set up, and the waiter must still wake.
    leader = spawn([*EXITDIR, "exit", "--code", "9", "--reason", "done", "--dir", str(exit_dir)])
    assert leader.wait() == 0
    waiter.expect("exitFile: code 9: done", timeout=GENEROUS)
    assert waiter.wait() == 0


def _wait_command_announcing_ready(exit_dir: Path) -> list[str]:
    """`exitdir wait` in a real process that prints `ready` from inside main(), as it starts waiting."""
    return [sys.executable, str(ANNOUNCING_MAIN), "wait", "--dir", str(exit_dir)]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_while_waiting_is_128_plus_n_without_traceback(
    exit_dir: Path, spawn: type[Child], signum: int, status: int
) -> None:
    waiter = spawn(_wait_command_announcing_ready(exit_dir))
    waiter.expect("ready")
    waiter.signal(signum)
    assert waiter.wait() == status
    _, err = waiter.rest()
    assert "Traceback" not in err
