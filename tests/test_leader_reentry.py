"""One ``leader`` object entered again: reentrant per thread, independent across threads, never a leak.

Each case counts this process's real descriptors (/proc/self/fd) and the real OFD locks on the exit
directory (/proc/locks), and asks a real ``exitdir status`` what a follower starting now would see.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def locks_on(directory: Path) -> int:
    """How many locks /proc/locks shows on ``directory`` (one per running leader run)."""
    st = os.stat(directory)
    needle = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    with open("/proc/locks") as table:
        return sum(1 for line in table if needle in line and not line.lstrip().startswith("->"))


def status(directory: Path, name: str) -> str:
    done = subprocess.run(
        [*EXITDIR, "status", "--dir", str(directory), "--leader", name],
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )
    return done.stdout.splitlines()[0]


def code_of(path: Path) -> int:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    code = doc["code"]
    assert isinstance(code, int)
    return code


def test_a_recursive_decorated_function_is_one_run(exit_dir: Path) -> None:
    # The reported case: signal_on="success" and a failure, so the run ends with no marker; before, the
    # nested entries leaked their descriptors and the lock, and status said "job: running" for ever.
    seen: list[tuple[int, bool]] = []

    @exitdir.leader(directory=exit_dir, name="job", signal_on="success")
    def rec(depth: int) -> None:
        if depth:
            rec(depth - 1)
            return
        seen.append((locks_on(exit_dir), (exit_dir / "job").exists()))
        raise RuntimeError("innermost")

    before = open_fds()
    with pytest.raises(RuntimeError):
        rec(3)
    assert seen == [(1, False)]  # one run, one lock, however deep
    assert open_fds() == before
    assert locks_on(exit_dir) == 0
    assert status(exit_dir, "job") == "job: not running"


def test_only_the_outermost_exit_writes_the_marker_with_its_outcome(exit_dir: Path) -> None:
    @exitdir.leader(directory=exit_dir, name="job")
    def rec(depth: int) -> int:
        if depth:
            try:
                return rec(depth - 1)
            except ValueError:
                assert not (exit_dir / "job").exists()  # a nested exit writes nothing
                return 5
        raise ValueError("caught by the caller")

    before = open_fds()
    assert rec(2) == 5
    assert code_of(exit_dir / "job") == 0  # the outermost call succeeded
    assert open_fds() == before
    assert locks_on(exit_dir) == 0


def test_a_recursive_coroutine_function_is_one_run(exit_dir: Path) -> None:
    seen: list[int] = []

    @exitdir.leader(directory=exit_dir, name="job")
    async def rec(depth: int) -> None:
        if depth:
            await rec(depth - 1)
            return
        await asyncio.sleep(0)
        seen.append(locks_on(exit_dir))
        assert not (exit_dir / "job").exists()
        raise SystemExit(7)

    before = open_fds()
    with pytest.raises(SystemExit):
        asyncio.run(rec(3))
    assert seen == [1]
    assert code_of(exit_dir / "job") == 7
    assert open_fds() == before
    assert locks_on(exit_dir) == 0
    assert status(exit_dir, "job").startswith("done: job: code 7")


def test_nested_with_of_one_object(exit_dir: Path) -> None:
    lead = exitdir.leader(directory=exit_dir, name="job")

    def nest() -> None:
        with lead:
            with lead:  # noqa: SIM117 - one nested entry, then another
                with lead:
                    assert locks_on(exit_dir) == 1
                    1 / 0  # noqa: B018 - the block fails
            assert not (exit_dir / "job").exists()

    before = open_fds()
    with pytest.raises(ZeroDivisionError):
        nest()
    assert code_of(exit_dir / "job") == 1
    assert open_fds() == before
    assert locks_on(exit_dir) == 0


def test_nested_async_with_of_one_object(exit_dir: Path) -> None:
    lead = exitdir.leader(directory=exit_dir, name="job")

    async def main() -> None:
        async with lead:
            async with lead:
                assert locks_on(exit_dir) == 1
            assert not (exit_dir / "job").exists()

    before = open_fds()
    asyncio.run(main())
    assert code_of(exit_dir / "job") == 0
    assert open_fds() == before
    assert locks_on(exit_dir) == 0


def test_threads_calling_one_decorated_function_are_independent_runs(exit_dir: Path) -> None:
    threads = 5
    # Every worker and this thread meet inside the function, so all runs overlap; then they leave.
    inside = threading.Barrier(threads + 1, timeout=GENEROUS)
    leave = threading.Barrier(threads + 1, timeout=GENEROUS)
    errors: list[BaseException] = []

    @exitdir.leader(directory=exit_dir, name="job")
    def work() -> None:
        inside.wait()
        leave.wait()

    def worker() -> None:
        try:
            work()
        except BaseException as err:  # reported by the test, not lost in the thread
            errors.append(err)

    before = open_fds()
    started = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in started:
        thread.start()
    inside.wait()
    try:
        held = locks_on(exit_dir)
        marker_while_running = (exit_dir / "job").exists()
    finally:
        leave.wait()
    for thread in started:
        thread.join(GENEROUS)
    assert errors == []
    assert held == threads  # each thread's run holds its own lock
    assert not marker_while_running
    assert code_of(exit_dir / "job") == 0
    assert open_fds() == before
    assert locks_on(exit_dir) == 0
    assert status(exit_dir, "job").startswith("done: job: code 0")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda f: functools.partial(f, 2), id="partial"),
        pytest.param(lambda f: type("Job", (), {"__call__": lambda self: f(2)})(), id="callable-object"),
    ],
)
def test_decorating_a_callable_that_is_not_a_function(exit_dir: Path, make: object) -> None:
    def double(x: int) -> int:
        return x * 2

    wrapped = exitdir.leader(directory=exit_dir)(make(double))  # type: ignore[operator]
    assert wrapped() == 4
    assert code_of(exit_dir / "exitFile") == 0


def test_decorating_a_builtin_and_a_class(exit_dir: Path) -> None:
    assert exitdir.leader(directory=exit_dir, name="len")(len)([1, 2]) == 2
    assert code_of(exit_dir / "len") == 0
    assert exitdir.leader(directory=exit_dir, name="dict")(dict)(a=1) == {"a": 1}
    assert code_of(exit_dir / "dict") == 0


class _AsyncJob:
    async def __call__(self, code: int) -> None:
        assert not (self.directory / "exitFile").exists()  # not written when the coroutine is created
        raise SystemExit(code)

    def __init__(self, directory: Path) -> None:
        self.directory = directory


def test_async_callables_get_an_async_wrapper(exit_dir: Path) -> None:
    job = _AsyncJob(exit_dir)
    for wrapped, args in (
        (exitdir.leader(directory=exit_dir)(job), (3,)),
        (exitdir.leader(directory=exit_dir)(functools.partial(job, 3)), ()),
    ):
        with pytest.raises(SystemExit):
            asyncio.run(wrapped(*args))
        assert code_of(exit_dir / "exitFile") == 3
        (exit_dir / "exitFile").unlink()


def test_partial_of_a_coroutine_function(exit_dir: Path) -> None:
    async def job(code: int) -> None:
        raise SystemExit(code)

    wrapped = exitdir.leader(directory=exit_dir)(functools.partial(job, 6))
    with pytest.raises(SystemExit):
        asyncio.run(wrapped())
    assert code_of(exit_dir / "exitFile") == 6


@pytest.mark.parametrize("thing", [5, None, "main"])
def test_decorating_what_is_not_callable_is_a_clear_error(exit_dir: Path, thing: object) -> None:
    with pytest.raises(exitdir.ExitDirError, match=rf"cannot decorate {thing!r}: it is not callable"):
        exitdir.leader(directory=exit_dir)(thing)  # type: ignore[type-var]
    assert os.listdir(exit_dir) == []
