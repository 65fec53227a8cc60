"""`exitdir lead` and `exitdir follow` against hostile signals and odd commands (issue 11 follow-ups).

Real wrappers in real processes, sent real signals: at the earliest moment the test can see exitdir's own
code running, every signal whose default action would end the wrapper, and commands a shell would refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exitdir._cli import main

from _support import EXITDIR, GENEROUS, python

CHILDREN = Path(__file__).parent / "children"
SIGPRINT = [sys.executable, str(CHILDREN / "sigprint.py")]
WRAPPERS = ("lead", "follow")


def wrap(mode: str, exit_dir: Path, *command: str) -> list[str]:
    return [*EXITDIR, mode, "--dir", str(exit_dir), "--", *command]


def marker_doc(exit_dir: Path) -> dict[str, object] | None:
    """The marker `lead` wrote, or None."""
    try:
        doc: dict[str, object] = json.loads((exit_dir / "exitFile").read_text())
    except FileNotFoundError:
        return None
    return doc


# --- commands a shell refuses -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", WRAPPERS)
def test_an_empty_command_name_is_command_not_found_127(
    mode: str, exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As bash says `: command not found` with 127; it was a ValueError traceback out of posix_spawnp,
    # status 1, and for lead a marker "exitdir lead failed".
    assert main([mode, "--dir", str(exit_dir), "--", ""]) == 127
    err = capsys.readouterr().err
    assert err == "exitdir: error: command not found: ''\n"
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert (doc["code"], doc["reason"]) == (127, "command not found: ''")
    else:
        assert os.listdir(exit_dir) == []


@pytest.mark.parametrize("mode", WRAPPERS)
def test_an_argument_exec_cannot_take_is_126_not_a_traceback(
    mode: str, exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A command line cannot hold a NUL, but main(argv) called from Python can: posix_spawnp raised ValueError.
    assert main([mode, "--dir", str(exit_dir), "--", "echo", "a\0b"]) == 126
    assert capsys.readouterr().err == "exitdir: error: cannot execute echo: embedded null byte\n"
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert doc["code"] == 126


# Starts the wrapper with a raw environment entry "=x=y" (execve allows it; Python reads it as the name "",
# and posix_spawnp refused to pass it on: ValueError "illegal environment variable name"). ctypes, because
# os.execve refuses to build such an environment.
RAW_ENV_LAUNCHER = """
import ctypes, os, sys
argv = [os.fsencode(a) for a in sys.argv[1:]]
env = [b"=x=y", b"PATH=" + os.environ["PATH"].encode(), b"KEPT=yes"]
c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
ctypes.CDLL(None, use_errno=True).execve(argv[0], c_argv, c_env)
sys.exit(f"execve failed: {ctypes.get_errno()}")
"""


@pytest.mark.parametrize("mode", WRAPPERS)
def test_an_environment_entry_with_an_empty_name_does_not_stop_the_program(mode: str, exit_dir: Path) -> None:
    program = "import os; print(os.environ['KEPT'], '' in os.environ)"
    result = subprocess.run(
        [*python(RAW_ENV_LAUNCHER), *wrap(mode, exit_dir, sys.executable, "-c", program)],
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "yes False\n", "")
