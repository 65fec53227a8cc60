"""The README keeps in step with the command line: every option in its command's usage line, every exit
status the code can return in the exit-status table."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from exitdir import _cli, _supervise

README = (Path(__file__).parent.parent / "README.md").read_text()
# Said once for every command instead of in each usage line.
COMMON = {"--help", "--quiet"}


def usage_block(command: str) -> str:
    """The README's usage line(s) for ``exitdir COMMAND``: the sh block that starts with it."""
    found = re.search(rf"```sh\n(exitdir {command} \[.*?)```", README, re.S)
    assert found is not None, f"README has no usage block for exitdir {command}"
    return found.group(1)


def options(command: str) -> list[list[str]]:
    """Each option of ``exitdir COMMAND`` with its spellings (``["-v", "--verbose"]``)."""
    parser = _cli._parser([command])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    return [action.option_strings for action in sub._actions if action.option_strings]


@pytest.mark.parametrize("command", ["exit", "wait", "status", "lead", "follow"])
def test_every_option_is_in_its_commands_usage_line(command: str) -> None:
    shown = set(re.findall(r"--?[a-z][a-z-]*", usage_block(command)))
    missing = sorted(
        spellings[-1]
        for spellings in options(command)
        if not set(spellings) & (shown | COMMON)  # any spelling will do: -v for --verbose
    )
    assert not missing, f"README's usage of exitdir {command} lacks {missing}"


def test_every_exit_status_the_code_returns_is_in_the_table() -> None:
    table = README[README.index("| status | meaning |") :]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    statuses = {
        value for name, value in vars(_cli).items() if name.startswith("EXIT_") and isinstance(value, int)
    }
    statuses |= {_supervise.EXIT_NOT_FOUND, _supervise.EXIT_NOT_EXECUTABLE}
    missing = sorted(status for status in statuses if str(status) not in rows)
    assert not missing, f"README's exit-status table lacks {missing}"
