"""Wire compatibility with Go exitdir, both ways, with real Go programs built from tests/go/.

The Go programs follow chainguard-dev/exitdir's Exit() and Aware() on the same fsnotify library, from
Debian's packages (installed by `make test`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import exitdir
from exitdir import _leader

from _support import EXITDIR, GENEROUS, Child, env_with


def test_python_follower_trips_on_go_exit(exit_dir: Path, go_programs: dict[str, Path], backend: str) -> None:
    with exitdir.aware(exit_dir, backend=backend, poll_interval=0.05) as token:
        subprocess.run([go_programs["goleader"]], env=env_with(EXIT_DIR=str(exit_dir)), check=True)
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert (token.marker.name, token.marker.kind, token.marker.code) == ("exitFile", "empty", 0)


def test_python_follower_started_after_go_exit(exit_dir: Path, go_programs: dict[str, Path]) -> None:
    subprocess.run([go_programs["goleader"]], env=env_with(EXIT_DIR=f"{exit_dir}/"), check=True)
    with exitdir.aware(exit_dir) as token:
        assert token.is_set()


@pytest.mark.parametrize("publish", ["tmpfile", "rename"])
def test_go_follower_trips_on_python_exit(
    exit_dir: Path,
    go_programs: dict[str, Path],
    spawn: type[Child],
    publish: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if publish == "rename":
        monkeypatch.setattr(_leader, "_publish_tmpfile", lambda *args: False)
    follower = spawn([str(go_programs["gofollower"])], env=env_with(EXIT_DIR=str(exit_dir)))
    follower.expect("ready")
    exitdir.exit(3, reason="done", directory=exit_dir)
    first_event = follower.readline()
    follower.expect("tripped")
    assert follower.wait() == 0
    if publish == "tmpfile":
        # One directory operation: the first thing a Go follower sees is the complete marker itself.
        assert first_event == "event exitFile"
    else:
        assert first_event.startswith("event ")
    assert os.listdir(exit_dir) == ["exitFile"]


def test_go_follower_started_after_python_cli_exit(
    exit_dir: Path, go_programs: dict[str, Path], spawn: type[Child]
) -> None:
    subprocess.run([*EXITDIR, "exit", "--code", "0", "--dir", str(exit_dir)], check=True)
    follower = spawn([str(go_programs["gofollower"])], env=env_with(EXIT_DIR=str(exit_dir)))
    follower.expect("ready")
    follower.expect("tripped")
    assert follower.wait() == 0


def test_go_follower_is_not_tripped_by_a_python_follower(
    exit_dir: Path, go_programs: dict[str, Path], spawn: type[Child]
) -> None:
    # A Go follower fires on any created entry: watching with exitdir must create nothing in EXIT_DIR.
    follower = spawn([str(go_programs["gofollower"])], env=env_with(EXIT_DIR=str(exit_dir)))
    follower.expect("ready")
    with exitdir.aware(exit_dir) as token:
        assert not token.wait(0.3)
    assert os.listdir(exit_dir) == []
    exitdir.exit(directory=exit_dir)
    follower.expect("event exitFile")
    follower.expect("tripped")
