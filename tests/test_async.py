"""The asyncio front: no thread, cancellation that ends the block normally, level-triggered results."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, POLL_INTERVAL, QUIET_PERIOD, Child


def test_wait_for_exit_returns_a_marker_already_there(exit_dir: Path, backend: str) -> None:
    exitdir.exit(2, reason="early", directory=exit_dir)
    marker = asyncio.run(exitdir.wait_for_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL))
    assert marker is not None
    assert (marker.code, marker.reason) == (2, "early")


def test_wait_for_exit_wakes_on_a_marker_from_another_process_without_a_thread(
    exit_dir: Path, backend: str, spawn: type[Child]
) -> None:
    async def main() -> exitdir.Marker | None:
        threads_before = threading.active_count()
        waiting = asyncio.create_task(
            exitdir.wait_for_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL, timeout=GENEROUS)
        )
        await asyncio.sleep(0)  # let it start watching
        leader = spawn([*EXITDIR, "exit", "--code", "8", "--dir", str(exit_dir)])
        while leader.proc.poll() is None:
            assert threading.active_count() == threads_before, "the async path started a thread"
            await asyncio.sleep(0.01)
        return await waiting

    marker = asyncio.run(main())
    assert marker is not None
    assert marker.code == 8


def test_wait_for_exit_times_out_with_none(exit_dir: Path, backend: str) -> None:
    marker = asyncio.run(
        exitdir.wait_for_exit(exit_dir, timeout=QUIET_PERIOD, backend=backend, poll_interval=POLL_INTERVAL)
    )
    assert marker is None


def test_many_concurrent_waiters_on_one_loop(exit_dir: Path, backend: str) -> None:
    async def main() -> list[exitdir.Marker | None]:
        waiters = [
            asyncio.create_task(
                exitdir.wait_for_exit(
                    exit_dir, backend=backend, poll_interval=POLL_INTERVAL, timeout=GENEROUS
                )
            )
            for _ in range(5)
        ]
        await asyncio.sleep(0.01)
        exitdir.exit(directory=exit_dir)
        return await asyncio.gather(*waiters)

    markers = asyncio.run(main())
    assert [m.code if m else None for m in markers] == [0] * 5


def test_cancelling_wait_for_exit_cleans_up(exit_dir: Path, backend: str) -> None:
    async def main() -> None:
        task = asyncio.create_task(
            exitdir.wait_for_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL)
        )
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The loop no longer watches anything: a marker now trips nobody and nothing breaks.
        exitdir.exit(directory=exit_dir)
        await asyncio.sleep(0.05)

    asyncio.run(main())


def test_cancel_on_exit_interrupts_the_block_and_ends_it_normally(exit_dir: Path, backend: str) -> None:
    async def main() -> tuple[bool, bool, int | None, bool]:
        reached_end = False
        async with exitdir.cancel_on_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL) as scope:
            asyncio.get_running_loop().call_later(0.02, lambda: exitdir.exit(4, directory=exit_dir))
            await asyncio.sleep(GENEROUS)
            reached_end = True
        code = scope.marker.code if scope.marker else None
        return scope.exit_requested, scope.interrupted, code, reached_end

    assert asyncio.run(main()) == (True, True, 4, False)


def test_cancel_on_exit_block_that_finishes_first(exit_dir: Path, backend: str) -> None:
    async def main() -> tuple[bool, bool]:
        async with exitdir.cancel_on_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL) as scope:
            await asyncio.sleep(0)
        exitdir.exit(directory=exit_dir)
        await asyncio.sleep(QUIET_PERIOD)  # the scope is over: nothing may cancel us now
        return scope.exit_requested, scope.interrupted

    assert asyncio.run(main()) == (False, False)


def test_cancel_on_exit_with_marker_already_there_and_no_await_leaves_no_pending_cancel(
    exit_dir: Path, backend: str
) -> None:
    exitdir.exit(directory=exit_dir)

    async def main() -> tuple[bool, bool]:
        async with exitdir.cancel_on_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL) as scope:
            pass  # no await: there is nothing to interrupt
        await asyncio.sleep(0.01)  # must not raise CancelledError
        return scope.exit_requested, scope.interrupted

    assert asyncio.run(main()) == (True, False)


def test_cancel_on_exit_with_marker_already_there_interrupts_at_first_await(
    exit_dir: Path, backend: str
) -> None:
    exitdir.exit(directory=exit_dir)

    async def main() -> tuple[bool, bool]:
        async with exitdir.cancel_on_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL) as scope:
            await asyncio.sleep(GENEROUS)
        return scope.exit_requested, scope.interrupted

    assert asyncio.run(main()) == (True, True)


def test_cancel_on_exit_does_not_swallow_someone_elses_cancel(exit_dir: Path, backend: str) -> None:
    async def main() -> None:
        async def body() -> None:
            async with exitdir.cancel_on_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL):
                await asyncio.sleep(GENEROUS)

        task = asyncio.create_task(body())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_cancel_on_exit_lets_other_exceptions_through(exit_dir: Path, backend: str) -> None:
    async def main() -> None:
        async with exitdir.cancel_on_exit(exit_dir, backend=backend, poll_interval=POLL_INTERVAL):
            raise LookupError("real failure")

    with pytest.raises(LookupError, match="real failure"):
        asyncio.run(main())


def test_async_and_sync_waiters_in_one_process_share_the_inotify_fd(exit_dir: Path) -> None:
    sync_token = exitdir.aware(exit_dir, backend="inotify")
    sync_result: list[bool] = []
    sync_waiter = threading.Thread(target=lambda: sync_result.append(sync_token.wait(GENEROUS)))
    sync_waiter.start()

    async def main() -> exitdir.Marker | None:
        task = asyncio.create_task(exitdir.wait_for_exit(exit_dir, backend="inotify", timeout=GENEROUS))
        await asyncio.sleep(0.01)
        exitdir.exit(directory=exit_dir)
        return await task

    marker = asyncio.run(main())
    sync_waiter.join(GENEROUS)
    sync_token.close()
    assert marker is not None
    assert sync_result == [True]
