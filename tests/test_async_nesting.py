"""``cancel_on_exit()`` nested in itself, in ``asyncio.timeout()``, and under someone else's cancel.

Each scope reports what happened to its own block (``interrupted``: cut short while exit was requested),
the marker's cancel is absorbed by the outermost scope it reached and no further, someone else's cancel
always goes on, and no cancel request is left behind on the task. The markers are written by a real
``exitdir exit`` process, or are there before the block starts.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, POLL_INTERVAL, Child

needs_uncancel = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.cancelling()/uncancel() are 3.11+; before, cancels are anonymous"
)


def scope(directory: Path, backend: str) -> exitdir.CancelOnExit:
    return exitdir.cancel_on_exit(directory, backend=backend, poll_interval=POLL_INTERVAL)


def cancelling() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling()


@needs_uncancel
def test_nested_scopes_on_one_directory_both_say_interrupted(
    exit_dir: Path, backend: str, spawn: type[Child]
) -> None:
    # The reported case: the inner sleep was cancelled, yet the inner scope said interrupted=False.
    async def main() -> tuple[tuple[bool, bool], tuple[bool, bool], int]:
        async with scope(exit_dir, backend) as outer:
            async with scope(exit_dir, backend) as inner:
                spawn([*EXITDIR, "exit", "--code", "3", "--dir", str(exit_dir)])
                await asyncio.sleep(GENEROUS)
            await asyncio.sleep(GENEROUS)  # if the inner scope absorbed it, the outer one cuts this short
        await asyncio.sleep(0)  # no cancel may be left pending for the task
        return (
            (inner.exit_requested, inner.interrupted),
            (outer.exit_requested, outer.interrupted),
            cancelling(),
        )

    inner, outer, left = asyncio.run(asyncio.wait_for(main(), GENEROUS))
    assert inner == (True, True)
    assert outer == (True, True)
    assert left == 0


@needs_uncancel
def test_nested_scopes_with_the_marker_there_before_either_began(exit_dir: Path, backend: str) -> None:
    # Both scopes cancel in the same loop iteration: one CancelledError, two requests. The inner scope
    # passes it on, the outer absorbs it; nothing after the inner block runs.
    exitdir.exit(directory=exit_dir)

    async def main() -> tuple[bool, bool, bool, int]:
        reached = False
        async with scope(exit_dir, backend) as outer:
            async with scope(exit_dir, backend) as inner:
                await asyncio.sleep(GENEROUS)
            reached = True
        await asyncio.sleep(0)
        return inner.interrupted, outer.interrupted, reached, cancelling()

    assert asyncio.run(asyncio.wait_for(main(), GENEROUS)) == (True, True, False, 0)


def test_nested_scopes_on_two_directories_each_answer_for_its_own(
    tmp_path: Path, backend: str, spawn: type[Child]
) -> None:
    inner_dir, outer_dir = tmp_path / "inner", tmp_path / "outer"
    inner_dir.mkdir()
    outer_dir.mkdir()

    async def main(marked: Path) -> tuple[tuple[bool, bool], tuple[bool, bool], bool]:
        reached = False
        async with scope(outer_dir, backend) as outer:
            async with scope(inner_dir, backend) as inner:
                spawn([*EXITDIR, "exit", "--dir", str(marked)])
                await asyncio.sleep(GENEROUS)
            reached = True
            if marked == outer_dir:
                await asyncio.sleep(GENEROUS)
        return (inner.exit_requested, inner.interrupted), (outer.exit_requested, outer.interrupted), reached

    # The outer directory's marker cuts both blocks short, but only the outer scope was asked to exit.
    assert asyncio.run(asyncio.wait_for(main(outer_dir), GENEROUS)) == ((False, False), (True, True), False)
    (outer_dir / "exitFile").unlink()
    # The inner directory's marker ends the inner block; the outer block goes on to its end.
    assert asyncio.run(asyncio.wait_for(main(inner_dir), GENEROUS)) == ((True, True), (False, False), True)


@needs_uncancel
def test_inside_asyncio_timeout_the_marker_does_not_trip_the_timeout(
    exit_dir: Path, backend: str, spawn: type[Child]
) -> None:
    async def main() -> tuple[bool, bool, int]:
        async with asyncio.timeout(GENEROUS) as deadline:
            async with scope(exit_dir, backend) as exiting:
                spawn([*EXITDIR, "exit", "--dir", str(exit_dir)])
                await asyncio.sleep(GENEROUS)
        return exiting.interrupted, deadline.expired(), cancelling()

    assert asyncio.run(main()) == (True, False, 0)


@needs_uncancel
def test_a_timeout_expiring_with_the_marker_still_raises_timeout_error(exit_dir: Path, backend: str) -> None:
    # asyncio.timeout(0) and a marker already there cancel the block in the same loop iteration: the
    # timeout's cancel is someone else's, and must reach it.
    exitdir.exit(directory=exit_dir)

    async def main() -> tuple[str, bool, bool, int]:
        exiting = scope(exit_dir, backend)
        try:
            async with asyncio.timeout(0), exiting:
                await asyncio.sleep(GENEROUS)
        except TimeoutError:
            ended = "TimeoutError"
        else:
            ended = "normally"
        return ended, exiting.exit_requested, exiting.interrupted, cancelling()

    assert asyncio.run(main()) == ("TimeoutError", True, True, 0)


@needs_uncancel
def test_a_scope_around_asyncio_timeout_absorbs_only_its_own_cancel(exit_dir: Path, backend: str) -> None:
    exitdir.exit(directory=exit_dir)

    async def main() -> tuple[bool, int]:
        async with scope(exit_dir, backend) as exiting:
            async with asyncio.timeout(0):
                await asyncio.sleep(GENEROUS)
        return exiting.interrupted, cancelling()

    assert asyncio.run(main()) == (True, 0)


@pytest.mark.parametrize("marker", [False, True], ids=["no-marker", "marker-too"])
def test_someone_elses_cancel_goes_through_nested_scopes(exit_dir: Path, backend: str, marker: bool) -> None:
    if marker:
        exitdir.exit(directory=exit_dir)
    scopes: list[exitdir.CancelOnExit] = []

    async def body() -> None:
        async with scope(exit_dir, backend) as outer:
            scopes.append(outer)
            async with scope(exit_dir, backend) as inner:
                scopes.append(inner)
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # someone else's, requested as the scopes' own first looks are due
                await asyncio.sleep(GENEROUS)

    async def main() -> int:
        task = asyncio.create_task(body())
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelling() if sys.version_info >= (3, 11) else 1

    assert asyncio.run(asyncio.wait_for(main(), GENEROUS)) == 1  # the foreign request, and only it, is left
    assert [s.interrupted for s in scopes] == [marker, marker]


@needs_uncancel
def test_a_scope_begun_while_a_cancel_is_pending_absorbs_its_own(exit_dir: Path, backend: str) -> None:
    # A task that caught a CancelledError without uncancel() still counts that request; the scope must
    # compare with what was pending when it began, not with zero.
    exitdir.exit(directory=exit_dir)

    async def main() -> tuple[bool, int, int]:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(GENEROUS)
        except asyncio.CancelledError:
            pass
        before = task.cancelling()
        async with scope(exit_dir, backend) as exiting:
            await asyncio.sleep(GENEROUS)
        return exiting.interrupted, before, task.cancelling()

    assert asyncio.run(asyncio.wait_for(main(), GENEROUS)) == (True, 1, 1)
