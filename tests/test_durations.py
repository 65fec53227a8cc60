"""Any duration the parser accepts works (issue 11, row 5): beyond what poll(), Event.wait() or time.sleep()
can take it means "that long, or forever", never an OverflowError. Real processes, real waits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, QUIET_PERIOD, Child, env_with

HUGE = ("inf", "3000000", "1e10", "1e300")


@pytest.mark.parametrize("timeout", HUGE)
def test_wait_with_a_huge_timeout_still_ends_on_the_marker(
    exit_dir: Path, spawn: type[Child], timeout: str
) -> None:
    waiting = spawn([*EXITDIR, "wait", "--verbose", "--timeout", timeout, "--dir", str(exit_dir)])
    # No handshake is needed: the marker is found by the first scan or by the watch, whichever comes.
    exitdir.exit(3, reason="done", directory=exit_dir)
    assert waiting.wait() == 0
    out, err = waiting.rest()
    assert "code 3" in out
    assert err == ""


@pytest.mark.parametrize("interval", ["3000000", "1e10"])
def test_a_huge_poll_interval_is_a_retry_interval_not_a_crash(
    exit_dir: Path, spawn: type[Child], interval: str
) -> None:
    # Automatic choice: inotify, with the interval only for retries; the marker still arrives at once.
    waiting = spawn([*EXITDIR, "wait", "--dir", str(exit_dir)], env_with(EXITDIR_POLL_INTERVAL=interval))
    exitdir.exit(directory=exit_dir)
    assert waiting.wait() == 0
    # Forced polling: the first scan finds a marker already there.
    polling = spawn(
        [*EXITDIR, "wait", "--dir", str(exit_dir)],
        env_with(EXITDIR_POLL_INTERVAL=interval, EXITDIR_BACKEND="poll"),
    )
    assert polling.wait() == 0
    assert polling.rest()[1] == ""


def test_an_infinite_poll_interval_is_refused_with_its_fix(exit_dir: Path, spawn: type[Child]) -> None:
    # A poll interval must come round: inf is refused in one line, not taken as "never look".
    waiting = spawn([*EXITDIR, "wait", "--dir", str(exit_dir)], env_with(EXITDIR_POLL_INTERVAL="inf"))
    assert waiting.wait() == 1
    _, err = waiting.rest()
    assert err == (
        "exitdir: error: EXITDIR_POLL_INTERVAL='inf' is invalid: give a finite number of seconds > 0, "
        "for example 0.2\n"
    )


def test_follow_with_an_infinite_grace_waits_for_the_helper_and_orphans_nothing(
    exit_dir: Path, spawn: type[Child]
) -> None:
    stubborn = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    follower = spawn(
        [*EXITDIR, "follow", "--grace", "inf", "--dir", str(exit_dir), "--", "sh", "-c", stubborn],
        merge_stderr=True,
    )
    follower.expect("ready")
    exitdir.exit(directory=exit_dir)
    assert "stopping sh" in follower.read_until("with SIGTERM")
    # The helper ignores TERM, and an infinite grace never escalates: the wrapper keeps waiting for it,
    # alive, rather than dying and leaving it orphaned.
    helper = int(Path(f"/proc/{follower.pid}/task/{follower.pid}/children").read_text().split()[0])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            follower.proc.wait(QUIET_PERIOD)
    finally:
        os.killpg(helper, signal.SIGKILL)  # the test, not the wrapper, ends the helper (and its sleep)
    assert follower.wait() == 0  # --exit-code zero: the helper was stopped on the leader's marker
    assert "Traceback" not in follower.rest()[0]


@pytest.mark.parametrize("grace", ["3000000", "1e300"])
def test_follow_with_a_huge_grace_and_timeout_stops_a_helper_that_obeys(
    exit_dir: Path, spawn: type[Child], grace: str
) -> None:
    helper = ["sh", "-c", "echo ready; exec sleep 3600"]
    follower = spawn(
        [*EXITDIR, "follow", "--grace", grace, "--timeout", grace, "--dir", str(exit_dir), "--", *helper]
    )
    follower.expect("ready")
    exitdir.exit(directory=exit_dir)
    assert follower.wait() == 0
    assert "Traceback" not in follower.rest()[1]


@pytest.mark.parametrize("seconds", [float("inf"), 1e10, 1e300])
def test_token_wait_takes_any_timeout(exit_dir: Path, backend: str, seconds: float) -> None:
    with exitdir.aware(exit_dir, backend=backend, poll_interval=0.05) as token:
        writer = threading.Timer(0.05, exitdir.exit, kwargs={"directory": exit_dir})
        writer.start()
        try:
            assert token.wait(seconds)
        finally:
            writer.join()


@pytest.mark.parametrize("seconds", [float("inf"), 1e10])
def test_asyncio_front_ends_take_any_timeout_and_interval(exit_dir: Path, seconds: float) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: exitdir.exit(directory=exit_dir))
        marker = await exitdir.wait_for_exit(exit_dir, timeout=seconds)
        assert marker is not None
        async with exitdir.cancel_on_exit(exit_dir) as scope:
            await asyncio.sleep(seconds)  # asyncio takes inf; the marker is already there
        assert scope.marker is not None

    asyncio.run(scenario())


def test_demo_work_for_ever_is_stopped_by_sigterm(spawn: type[Child], exit_dir: Path) -> None:
    work = spawn([*EXITDIR, "demo", "work", "--seconds", "inf"], env_with(EXIT_DIR=str(exit_dir)))
    work.expect("[Work] Doing work...")
    work.signal(signal.SIGTERM)
    assert work.wait() == 128 + signal.SIGTERM
    assert work.rest()[1] == ""
