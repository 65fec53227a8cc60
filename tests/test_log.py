"""The library's own messages (`_log`): a waiting follower does not import `logging` for a debug line no
handler could show, and its warnings still reach stderr when the program never imported `logging`.

Real subprocesses with a fresh interpreter each: what a program that never touched `logging` gets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from _support import GENEROUS, env_with, python

FOLLOWER = """
import sys, exitdir
token = exitdir.aware(sys.argv[1])
token.wait(0.01)
print("logging" in sys.modules)
"""


def _follow(directory: Path, *, with_logging: bool = False) -> subprocess.CompletedProcess[str]:
    program = ("import logging\n" if with_logging else "") + FOLLOWER
    argv = [*python(program), str(directory)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=GENEROUS, env=env_with(), check=False)


def test_a_waiting_follower_does_not_import_logging(exit_dir: Path) -> None:
    done = _follow(exit_dir)
    assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")


def test_a_warning_reaches_stderr_without_logging(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    done = _follow(missing)
    assert done.stdout == "False\n"
    assert done.stderr == f"exit directory {missing} does not exist yet; waiting for it to appear\n"


def test_a_program_that_uses_logging_gets_the_warning_through_it(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    done = _follow(missing, with_logging=True)  # no handler configured: logging's last resort prints it
    assert done.stdout == "True\n"
    assert done.stderr == f"exit directory {missing} does not exist yet; waiting for it to appear\n"
