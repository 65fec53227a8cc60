"""Every public entry point given a wrong-typed argument: an ExitDirError naming it and the fix.

Never a TypeError or AttributeError from deep inside, and never a mistake that surfaces only later (a
callback that is not callable, found when the token trips, in a thread nobody watches).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir

from _support import GENEROUS

if TYPE_CHECKING:
    from collections.abc import Callable


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


# (what is called, a fragment the message must hold: the argument and its value)
CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "aware(names=5)": (lambda d: exitdir.aware(d, names=5), "names=5 is not a list"),  # type: ignore[arg-type]
    "aware(names='db')": (lambda d: exitdir.aware(d, names="db"), "names='db' is a string"),
    "aware(names=[5])": (lambda d: exitdir.aware(d, names=[5]), "marker name 5 is not a string"),  # type: ignore[list-item]
    "aware(require=None)": (lambda d: exitdir.aware(d, require=None), "require=None"),  # type: ignore[arg-type]
    "aware(backend=5)": (lambda d: exitdir.aware(d, backend=5), "backend=5"),  # type: ignore[arg-type]
    "aware(poll_interval='x')": (
        lambda d: exitdir.aware(d, poll_interval="x"),  # type: ignore[arg-type]
        "poll_interval='x' is not a number of seconds",
    ),
    "aware(poll_interval='0.1')": (
        lambda d: exitdir.aware(d, poll_interval="0.1"),  # type: ignore[arg-type]
        "poll_interval='0.1' is not a number of seconds",
    ),
    "aware(poll_interval=True)": (
        lambda d: exitdir.aware(d, poll_interval=True),
        "poll_interval=True is not a number of seconds",
    ),
    "aware(poll_interval=[])": (
        lambda d: exitdir.aware(d, poll_interval=[]),  # type: ignore[arg-type]
        "poll_interval=[] is not a number of seconds",
    ),
    "aware(directory=5)": (lambda d: exitdir.aware(5), "exit directory 5 is not a path"),  # type: ignore[arg-type]
    "aware(require_dir=1)": (lambda d: exitdir.aware(d, require_dir=1), "require_dir=1"),  # type: ignore[arg-type]
    "exit(code=True)": (lambda d: exitdir.exit(True, directory=d), "exit code True is not an integer"),
    "exit(code=1.0)": (lambda d: exitdir.exit(1.0, directory=d), "exit code 1.0 is not an integer"),  # type: ignore[arg-type]
    "exit(reason=5)": (lambda d: exitdir.exit(reason=5, directory=d), "reason 5 is not a string"),  # type: ignore[arg-type]
    "exit(name=5)": (lambda d: exitdir.exit(name=5, directory=d), "marker name 5 is not a string"),  # type: ignore[arg-type]
    "exit(name=None)": (lambda d: exitdir.exit(name=None, directory=d), "marker name None is not a string"),  # type: ignore[arg-type]
    "exit(directory=5)": (lambda d: exitdir.exit(directory=5), "exit directory 5 is not a path"),  # type: ignore[arg-type]
    "exit(directory=[d])": (lambda d: exitdir.exit(directory=[d]), "is not a path"),  # type: ignore[arg-type]
    "leader(signal_on=5)": (lambda d: exitdir.leader(directory=d, signal_on=5), "signal_on=5"),  # type: ignore[arg-type]
    "leader(signal_on=None)": (lambda d: exitdir.leader(directory=d, signal_on=None), "signal_on=None"),  # type: ignore[arg-type]
    "leader(name=5)": (lambda d: exitdir.leader(5, directory=d), "marker name 5 is not a string"),  # type: ignore[arg-type]
    "leader(directory=5)": (lambda d: exitdir.leader(directory=5), "exit directory 5 is not a path"),  # type: ignore[arg-type]
    "leader(require_dir='yes')": (
        lambda d: exitdir.leader(directory=d, require_dir="yes"),  # type: ignore[arg-type]
        "require_dir='yes'",
    ),
    "wait_for_exit(timeout='x')": (
        lambda d: run(exitdir.wait_for_exit(d, timeout="x")),  # type: ignore[arg-type]
        "timeout 'x' is not a number of seconds",
    ),
    "wait_for_exit(timeout=True)": (
        lambda d: run(exitdir.wait_for_exit(d, timeout=True)),
        "timeout True is not a number of seconds",
    ),
    "wait_for_exit(directory=5)": (
        lambda d: run(exitdir.wait_for_exit(5, timeout=0)),  # type: ignore[arg-type]
        "exit directory 5 is not a path",
    ),
    "cancel_on_exit(directory=5)": (
        lambda d: exitdir.cancel_on_exit(5),  # type: ignore[arg-type]
        "exit directory 5 is not a path",
    ),
    "cancel_on_exit(poll_interval='1')": (
        lambda d: exitdir.cancel_on_exit(d, poll_interval="1"),  # type: ignore[arg-type]
        "poll_interval='1' is not a number of seconds",
    ),
    "token.wait('x')": (lambda d: exitdir.aware(d).wait("x"), "timeout 'x' is not a number"),  # type: ignore[arg-type]
    "token.wait(True)": (lambda d: exitdir.aware(d).wait(True), "timeout True is not a number"),
    "token.wait([1])": (lambda d: exitdir.aware(d).wait([1]), "timeout [1] is not a number"),  # type: ignore[arg-type]
    "token.add_callback(5)": (lambda d: exitdir.aware(d).add_callback(5), "exit callback 5 is not callable"),  # type: ignore[arg-type]
    "token.add_callback(None)": (
        lambda d: exitdir.aware(d).add_callback(None),  # type: ignore[arg-type]
        "exit callback None is not callable",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_typed_argument_is_an_exitdir_error_naming_it(exit_dir: Path, case: str) -> None:
    call, fragment = CASES[case]
    with pytest.raises(exitdir.ExitDirError) as raised:
        call(exit_dir)
    message = str(raised.value)
    assert fragment in message
    assert ": " in message.partition(fragment)[2]  # and then the fix
    assert os.listdir(exit_dir) == []  # a refused call writes nothing


def test_a_bytes_directory_is_a_path(exit_dir: Path) -> None:
    # Python's os functions take bytes paths; so do ours, as the os module decodes them.
    exitdir.exit(3, directory=os.fsencode(exit_dir))  # type: ignore[arg-type]
    with exitdir.aware(os.fsencode(exit_dir)) as token:  # type: ignore[arg-type]
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 3


def test_a_refused_callback_leaves_the_token_working(
    exit_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, add_callback(5) was accepted, and the token's trip logged a TypeError traceback from the
    # callback thread. Now it is refused at once; a real callback registered after still runs.
    ran = threading.Event()
    with exitdir.aware(exit_dir) as token:
        with pytest.raises(exitdir.ExitDirError, match="add_callback"):
            token.add_callback(5)  # type: ignore[arg-type]
        token.add_callback(ran.set)
        exitdir.exit(directory=exit_dir)
        assert ran.wait(GENEROUS)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
