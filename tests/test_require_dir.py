"""Strict mode: a missing exit directory as an error, on request (issue 11, row 12).

Without it, `exitdir exit` with EXIT_DIR unset writes nothing and exits 0 (Go parity), so a typo in a
leader's environment leaves every follower waiting. ``--require-dir`` (on ``exit``, ``lead`` and
``follow``), ``$EXITDIR_REQUIRE_DIR`` and ``require_dir=True`` make it an error instead.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, env_with

Ran = subprocess.CompletedProcess[str]

MISSING = "no exit directory, and one is required: EXIT_DIR is unset or empty and no directory was given"


def exitdir_cli(cwd: Path, *argv: str, **env: str | None) -> Ran:
    """The real `exitdir` program, with EXIT_DIR unset unless given."""
    return subprocess.run(
        [*EXITDIR, *argv],
        cwd=cwd,
        env=env_with(**{"EXIT_DIR": None, "EXITDIR_REQUIRE_DIR": None, **env}),
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )


def test_exit_require_dir_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    done = exitdir_cli(tmp_path, "exit", "--require-dir", "--code", "3")
    assert done.returncode == 1
    assert done.stderr == f"exitdir: error: {MISSING}; set EXIT_DIR (or pass --dir, directory=)\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE", " Yes "])
def test_the_environment_variable_turns_strict_mode_on(tmp_path: Path, value: str) -> None:
    done = exitdir_cli(tmp_path, "exit", EXITDIR_REQUIRE_DIR=value)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"exitdir: error: no exit directory, and EXITDIR_REQUIRE_DIR={value.strip()} requires one: "
    )


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "", "OFF"])
def test_the_environment_variable_can_say_no(tmp_path: Path, value: str) -> None:
    done = exitdir_cli(tmp_path, "exit", EXITDIR_REQUIRE_DIR=value)
    assert done.returncode == 0  # Go parity, as without the variable
    assert "no marker written" in done.stderr
    assert os.listdir(tmp_path) == []


def test_without_strict_mode_exit_keeps_go_parity_and_says_how_to_be_strict(tmp_path: Path) -> None:
    done = exitdir_cli(tmp_path, "exit")
    assert done.returncode == 0
    assert done.stderr == (
        "exitdir: no exit directory (EXIT_DIR is unset and no --dir): no marker written "
        "(--require-dir or EXITDIR_REQUIRE_DIR=1 makes this an error)\n"
    )


def test_a_bad_value_names_the_variable(tmp_path: Path) -> None:
    done = exitdir_cli(tmp_path, "exit", EXITDIR_REQUIRE_DIR="maybe")
    assert done.returncode == 1
    assert done.stderr == (
        "exitdir: error: EXITDIR_REQUIRE_DIR='maybe' is not a yes/no value: set it to 1, true, yes or on "
        "to require an exit directory, or to 0, false, no, off or nothing\n"
    )


def test_with_a_directory_the_variable_is_not_even_read(tmp_path: Path, exit_dir: Path) -> None:
    """A leader that has a directory always writes its marker: a typo in the strictness switch, which
    only matters when there is none, must not cost the followers their marker."""
    done = exitdir_cli(tmp_path, "exit", "--dir", str(exit_dir), EXITDIR_REQUIRE_DIR="maybe")
    assert done.returncode == 0
    assert os.listdir(exit_dir) == ["exitFile"]
    done = exitdir_cli(tmp_path, "exit", "--require-dir", EXIT_DIR=str(exit_dir), EXITDIR_REQUIRE_DIR="1")
    assert done.returncode == 0


@pytest.mark.parametrize("command", ["lead", "follow"])
@pytest.mark.parametrize("strict", [["--require-dir"], []])
def test_lead_and_follow_refuse_before_starting_their_program(
    tmp_path: Path, command: str, strict: list[str]
) -> None:
    ran = tmp_path / "ran"
    env = {} if strict else {"EXITDIR_REQUIRE_DIR": "yes"}
    done = exitdir_cli(tmp_path, command, *strict, "--", "sh", "-c", f"touch {ran}", **env)
    assert done.returncode == 1
    assert done.stderr.startswith("exitdir: error: no exit directory, and ")
    assert done.stderr.count("\n") == 1
    assert not ran.exists()  # never started: lead could not have reported its end, follow never stopped


def test_lead_and_follow_without_strict_mode_still_run(tmp_path: Path) -> None:
    for command in ("lead", "follow"):
        done = exitdir_cli(tmp_path, command, "--", "sh", "-c", "echo ran")
        assert (done.returncode, done.stdout) == (0, "ran\n")
        assert "--require-dir or EXITDIR_REQUIRE_DIR=1 makes this an error" in done.stderr


def test_the_library_honours_require_dir_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exitdir.ExitDirError, match=MISSING):
        exitdir.exit(require_dir=True)
    ran = []
    with pytest.raises(exitdir.ExitDirError, match=MISSING), exitdir.leader(require_dir=True):
        ran.append("block")
    assert ran == []  # the block never runs without a way to report its end
    with pytest.raises(exitdir.ExitDirError, match=MISSING):
        exitdir.aware(require_dir=True)
    monkeypatch.setenv("EXITDIR_REQUIRE_DIR", "1")
    with pytest.raises(exitdir.ExitDirError, match="EXITDIR_REQUIRE_DIR=1 requires one"):
        exitdir.exit()
    with pytest.raises(exitdir.ExitDirError, match="EXITDIR_REQUIRE_DIR=1 requires one"):
        exitdir.aware()
    assert exitdir.exit(require_dir=False) is None  # an explicit False wins over the variable
    assert exitdir.aware(require_dir=False).directory is None
    assert os.listdir(tmp_path) == []


def test_the_asyncio_front_honours_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        with pytest.raises(exitdir.ExitDirError, match=MISSING):
            await exitdir.wait_for_exit(timeout=0, require_dir=True)
        with pytest.raises(exitdir.ExitDirError, match=MISSING):
            async with exitdir.cancel_on_exit(require_dir=True):
                pass
        monkeypatch.setenv("EXITDIR_REQUIRE_DIR", "true")
        with pytest.raises(exitdir.ExitDirError, match="EXITDIR_REQUIRE_DIR=true requires one"):
            await exitdir.wait_for_exit(timeout=0)

    asyncio.run(main())


def test_the_leader_decorator_checks_when_it_runs_not_when_it_is_applied(
    exit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @exitdir.leader(require_dir=True)
    def job() -> str:
        return "done"

    with pytest.raises(exitdir.ExitDirError, match=MISSING):
        job()
    monkeypatch.setenv("EXIT_DIR", str(exit_dir))  # set after the decorator was applied
    assert job() == "done"
    assert os.listdir(exit_dir) == ["exitFile"]


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_require_dir_of_the_wrong_type_is_a_clear_error(value: object) -> None:
    with pytest.raises(exitdir.ExitDirError, match=r"require_dir=.* is not True, False or None"):
        exitdir.exit(require_dir=value)  # type: ignore[arg-type]
    with pytest.raises(exitdir.ExitDirError, match=r"require_dir=.* is not True, False or None"):
        exitdir.leader(require_dir=value)  # type: ignore[arg-type]
