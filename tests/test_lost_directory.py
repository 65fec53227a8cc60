"""An exit directory lost for good ends every follower with a clear error, never a silent hang.

The real case: a follower's exit directory is the root of an NFS mount, and the directory is deleted and
recreated on the server. The client's handle to it is stale for good: every look answers ESTALE until the
volume is remounted. The server here is a stand-in (``children/stale_nfs.py``, a FUSE daemon): a real
kernel mount whose every operation answers ESTALE once the directory it exports is replaced, exactly what
an NFS client sees; what cannot be had here is a second machine and an NFS server.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, POLL_INTERVAL, QUIET_PERIOD, Child, env_with

if TYPE_CHECKING:
    from collections.abc import Iterator

STAND_IN = Path(__file__).parent / "children" / "stale_nfs.py"
LOST_ERRNO = "ESTALE (Stale file handle)"
LOST = f"is lost: {LOST_ERRNO}"


class NfsServer:
    """The stand-in server: ``export`` is the directory on the "server", ``mount`` the client's view."""

    def __init__(self, export: Path, mount: Path, daemon: Child) -> None:
        self.export = export
        self.mount = mount
        self.daemon = daemon

    def recreate(self) -> None:
        """Delete the exported directory and create it again, on the "server": the mount goes stale."""
        shutil.rmtree(self.export)
        self.export.mkdir()

    def remount(self) -> None:
        """What a client's remount does: the mount serves the directory there now."""
        self.daemon.signal(signal.SIGUSR1)
        try:
            os.stat(self.mount)  # an operation, in which the daemon's Python runs the handler
        except OSError:
            pass
        self.daemon.expect("remounted")


@pytest.fixture
def nfs(tmp_path: Path, spawn: type[Child]) -> Iterator[NfsServer]:
    # No skip: FUSE is part of the test rig on every machine of this kind (as for bindfs in conftest); a
    # machine without /dev/fuse fails here, loudly, instead of passing without the test.
    assert os.path.exists("/dev/fuse"), "no /dev/fuse: these tests need a real FUSE mount"
    export, mount = tmp_path / "export", tmp_path / "mount"
    export.mkdir()
    mount.mkdir()
    daemon = spawn([sys.executable, str(STAND_IN), str(export), str(mount)])
    daemon.expect("ready")
    yield NfsServer(export, mount, daemon)
    subprocess.run(["fusermount", "-u", str(mount)], check=False, timeout=GENEROUS)


def test_the_stand_in_goes_stale_like_an_nfs_mount_and_a_remount_recovers(nfs: NfsServer) -> None:
    (nfs.export / "before").write_text("")
    assert os.listdir(nfs.mount) == ["before"]
    nfs.daemon.expect("listed")
    nfs.recreate()
    for look in (os.listdir, os.stat):
        with pytest.raises(OSError, match="Stale file handle") as raised:
            look(nfs.mount)
        assert raised.value.errno == errno.ESTALE
    nfs.remount()
    assert os.listdir(nfs.mount) == []


def follower_env() -> dict[str, str]:
    return env_with(EXITDIR_POLL_INTERVAL=str(POLL_INTERVAL))


def test_exitdir_wait_ends_with_one_line_and_status_1(nfs: NfsServer, spawn: type[Child]) -> None:
    follower = spawn([*EXITDIR, "wait", "--dir", str(nfs.mount)], follower_env())
    nfs.daemon.expect("listed")  # the follower watches
    nfs.recreate()
    assert follower.wait() == 1
    _, err = follower.rest()
    first, last = err.splitlines()
    assert first.startswith(f"exitdir: cannot list exit directory {nfs.mount}: ESTALE")  # a warning, once
    assert last.startswith(f"exitdir: error: exit directory {nfs.mount} {LOST} for ")
    assert last.endswith("remount it and restart this follower")


def test_exitdir_wait_started_on_a_lost_directory_ends_too(nfs: NfsServer, spawn: type[Child]) -> None:
    nfs.recreate()
    for backend in ("auto", "inotify", "poll"):
        env = env_with(EXITDIR_POLL_INTERVAL=str(POLL_INTERVAL), EXITDIR_BACKEND=backend)
        follower = spawn([*EXITDIR, "wait", "--dir", str(nfs.mount)], env)
        assert follower.wait() == 1, backend
        _, err = follower.rest()
        assert LOST in err, (backend, err)
        assert "Traceback" not in err, backend


def test_exitdir_follow_stops_its_helper_and_fails(nfs: NfsServer, spawn: type[Child]) -> None:
    helper = "echo ready $$; exec sleep 60"
    follower = spawn([*EXITDIR, "follow", "--dir", str(nfs.mount), "--", "sh", "-c", helper], follower_env())
    helper_pid = int(follower.read_until("ready").split()[1])
    nfs.daemon.expect("listed")
    nfs.recreate()
    assert follower.wait() == 1
    _, err = follower.rest()
    said = f"exitdir: cannot watch the exit directory any more\nexitdir: stopping sh (pid {helper_pid})"
    assert f"{said} with SIGTERM" in err
    assert f"exitdir: error: exit directory {nfs.mount} {LOST}" in err
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(helper_pid, 0)


def test_status_exit_and_lead_on_a_lost_directory_say_what_to_do(nfs: NfsServer) -> None:
    nfs.recreate()
    fix = (
        "ESTALE (Stale file handle): the directory was deleted and recreated on its server (NFS): remount it"
    )
    for command, done in [
        ("status", f"exitdir: error: cannot list exit directory {nfs.mount}: {fix}"),
        ("exit", f"exitdir: error: cannot write a marker in {nfs.mount}: {fix}"),
        # lead finds it before it runs the program: the program's end could not be reported
        ("lead", f"exitdir: error: cannot start true: cannot write a marker in {nfs.mount}: {fix}"),
    ]:
        argv = [*EXITDIR, command, "--dir", str(nfs.mount)] + (["--", "true"] if command == "lead" else [])
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=GENEROUS, check=False)
        assert ran.returncode == 1, (command, ran.stderr)
        assert ran.stderr.splitlines()[-1] == done, command
        assert "Traceback" not in ran.stderr, command


def test_token_fails_wakes_its_waiters_and_raises_every_time(
    nfs: NfsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exitdir")
    token = exitdir.aware(nfs.mount, poll_interval=POLL_INTERVAL)
    nfs.daemon.expect("listed")
    called: list[str] = []
    token.add_callback(lambda: called.append("exit"))
    (callbacks,) = [t for t in threading.enumerate() if t.name == "exitdir-callbacks"]
    raised: list[BaseException] = []
    started = threading.Event()

    def blocked() -> None:
        started.set()
        try:
            token.wait()
        except exitdir.ExitDirError as err:
            raised.append(err)

    waiter = threading.Thread(target=blocked)
    waiter.start()
    assert started.wait(GENEROUS)
    nfs.recreate()
    for thread in (waiter, callbacks):
        thread.join(GENEROUS)
        assert not thread.is_alive(), f"{thread.name}, blocked in wait(), was not woken by the failure"
    error = token.error
    assert error is not None
    assert raised == [error]
    assert str(error).startswith(f"exit directory {nfs.mount} {LOST}")
    for call in (token.is_set, token.wait, lambda: token.wait(0), lambda: token.add_callback(print)):
        with pytest.raises(exitdir.ExitDirError) as again:
            call()
        assert again.value is error
    assert token.marker is None  # failed is not "exit requested"
    assert "failed" in repr(token)
    token.close()
    assert called == []
    assert f"exit callbacks not run: {error}" in caplog.text
    assert caplog.text.count("cannot list exit directory") == 1  # the first failed look, once


def test_wait_for_exit_raises(nfs: NfsServer) -> None:
    async def follow() -> None:
        task = asyncio.ensure_future(exitdir.wait_for_exit(nfs.mount, poll_interval=POLL_INTERVAL))
        await asyncio.sleep(0)  # the task watches
        nfs.recreate()
        with pytest.raises(exitdir.ExitDirError, match=re.escape(LOST)):
            await asyncio.wait_for(task, GENEROUS)

    asyncio.run(follow())


def test_cancel_on_exit_cancels_the_block_and_raises_at_its_end(nfs: NfsServer) -> None:
    reached: list[str] = []
    scopes: list[exitdir.CancelOnExit] = []

    async def serve() -> None:
        async with exitdir.cancel_on_exit(nfs.mount, poll_interval=POLL_INTERVAL) as scope:
            scopes.append(scope)
            nfs.recreate()
            await asyncio.sleep(GENEROUS)
            reached.append("the end of the block")
        reached.append("after the block")

    with pytest.raises(exitdir.ExitDirError, match=re.escape(LOST)):
        asyncio.run(asyncio.wait_for(serve(), 2 * GENEROUS))
    assert reached == []
    assert not scopes[0].exit_requested
    assert not scopes[0].interrupted


def test_a_moment_of_estale_is_retried_not_a_failure(
    nfs: NfsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A server failing over: ESTALE for a moment, then the same directory again. Looks happen only inside
    # this thread's own calls, so fewer than a second of them fail before the remount.
    with caplog.at_level(logging.WARNING, logger="exitdir"):
        token = exitdir.aware(nfs.mount, poll_interval=POLL_INTERVAL)
        nfs.daemon.expect("listed")
        nfs.recreate()
        assert not token.wait(3 * POLL_INTERVAL)
        assert "ESTALE" in caplog.text
        nfs.remount()
        assert not token.wait(QUIET_PERIOD)
        assert token.error is None
        exitdir.exit(5, directory=nfs.export)
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 5
        token.close()
