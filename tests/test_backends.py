"""Watch backends on real filesystems: the automatic choice, and every fallback it promises."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import exitdir
from exitdir import _watch
from exitdir._errno import FallbackRequired
from exitdir._watch import _inotify

from _support import (
    DROP_TO_NOBODY,
    GENEROUS,
    POLL_INTERVAL,
    QUIET_PERIOD,
    Child,
    python,
    world_searchable_dir,
)


def inotify_instances() -> int:
    fd_dir = Path("/proc/self/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:
            pass
    return count


def test_fuse_mount_is_polled_automatically_and_trips(
    fuse_mount: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    source, mount = fuse_mount
    with (
        caplog.at_level(logging.DEBUG, logger="exitdir"),
        exitdir.aware(mount, poll_interval=POLL_INTERVAL) as token,
    ):
        assert token.backend == "poll"
        exitdir.exit(4, directory=source)  # another "client" writes beneath the mount
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 4
    assert f"polling {mount} every {POLL_INTERVAL} s: {mount} is on fuse" in caplog.text


def test_on_fuse_inotify_alone_misses_the_marker(fuse_mount: tuple[Path, Path]) -> None:
    # The control experiment: why the automatic choice polls there.
    source, mount = fuse_mount
    with exitdir.aware(mount, backend="inotify") as token:
        exitdir.exit(directory=source)
        assert not token.wait(QUIET_PERIOD)
        assert os.listdir(mount) == ["exitFile"]  # visible to a listing, invisible to inotify


def test_backend_choice_is_logged_once_at_debug(exit_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="exitdir"):
        for _ in range(3):
            exitdir.aware(exit_dir).close()
    assert caplog.text.count(f"watching {exit_dir} with inotify") == 1


def test_non_linux_platforms_poll(exit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _watch.poll_reason(str(exit_dir)) == "no inotify on darwin"
    with exitdir.aware(exit_dir, poll_interval=POLL_INTERVAL) as token:
        assert token.backend == "poll"
        exitdir.exit(directory=exit_dir)
        assert token.wait(GENEROUS)


def test_one_inotify_instance_per_process_however_many_tokens(tmp_path: Path) -> None:
    _inotify.process_hub()
    before = inotify_instances()
    tokens = []
    for i in range(20):
        (tmp_path / str(i)).mkdir()
        tokens.append(exitdir.aware(tmp_path / str(i), backend="inotify"))
    assert inotify_instances() == before
    exitdir.exit(directory=tmp_path / "7")
    assert tokens[7].wait(GENEROUS)
    assert not tokens[6].is_set()
    for token in tokens:
        token.close()
    assert inotify_instances() == before  # closing tokens never closes the shared instance


def test_instance_limit_exhausted_falls_back_to_polling(spawn: type[Child]) -> None:
    # inotify instances are limited per user across the whole node (max_user_instances, 128 by default).
    # A child running as nobody uses them all up, then follows: it must poll, not crash.
    base = world_searchable_dir()
    try:
        exit_dir = Path(base, "exit")
        exit_dir.mkdir()
        code = DROP_TO_NOBODY + (
            "import ctypes, exitdir\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "held = []\n"
            "while libc.inotify_init1(0) >= 0:\n"
            "    held.append(1)\n"
            "print('exhausted', ctypes.get_errno() in (24, 23), flush=True)\n"
            "try:\n"
            f"    exitdir.aware({str(exit_dir)!r}, backend='inotify')\n"
            "except exitdir.ExitDirError as err:\n"
            "    print('forced:', err, flush=True)\n"
            f"token = exitdir.aware({str(exit_dir)!r}, poll_interval={POLL_INTERVAL})\n"
            "print('ready', token.backend, flush=True)\n"
            f"print('tripped', token.wait({GENEROUS}), flush=True)\n"
        )
        child = spawn(python(code))
        child.expect("exhausted True")
        forced = child.readline()
        assert forced.startswith("forced: inotify was requested but cannot watch")
        assert "EMFILE" in forced
        assert "unset EXITDIR_BACKEND" in forced
        child.expect("ready poll")
        exitdir.exit(directory=exit_dir)
        child.expect("tripped True")
        assert child.wait() == 0
    finally:
        shutil.rmtree(base)


def test_file_descriptor_limit_falls_back_to_polling(exit_dir: Path, spawn: type[Child]) -> None:
    code = (
        "import os, resource, exitdir\n"
        "import exitdir._token, exitdir._watch, exitdir._watch._inotify, exitdir._marker, ctypes\n"
        "in_use = len(os.listdir('/proc/self/fd')) - 1  # less the fd of the listing itself\n"
        "# Room for a directory scan, not for inotify's fd and its wake-up pipe (three fds).\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 2, in_use + 2))\n"
        f"token = exitdir.aware({str(exit_dir)!r}, poll_interval={POLL_INTERVAL})\n"
        "print('ready', token.backend, flush=True)\n"
        f"print('tripped', token.wait({GENEROUS}), flush=True)\n"
    )
    child = spawn(python(code))
    child.expect("ready poll")
    exitdir.exit(directory=exit_dir)
    child.expect("tripped True")
    assert child.wait() == 0


def test_event_queue_overflow_rescans(exit_dir: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    with exitdir.aware(exit_dir, backend="inotify") as token:
        # Nobody reads the queue meanwhile: two events per file overflow it, and the marker's own event is
        # among those dropped. Only a rescan on IN_Q_OVERFLOW can find the marker.
        for i in range(limit // 2 + 100):
            (exit_dir / f".noise-{i}").write_bytes(b"")
        exitdir.exit(directory=exit_dir)
        assert token.wait(GENEROUS)


def test_exit_dir_unmounted_while_waiting(exit_dir: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(exit_dir)], check=True)
    with exitdir.aware(exit_dir, backend="inotify") as token:
        subprocess.run(["umount", str(exit_dir)], check=True)  # IN_UNMOUNT, then IN_IGNORED
        assert not token.wait(QUIET_PERIOD)
        exitdir.exit(directory=exit_dir)  # into the directory that was under the mount
        assert token.wait(GENEROUS)


def test_watch_limit_reached_mid_wait_keeps_watching_by_polling(
    exit_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # ENOSPC (max_user_watches) is a node-wide sysctl, so it is provoked here by failing the re-watch that
    # follows the directory being replaced; everything else is real.
    with exitdir.aware(exit_dir, backend="inotify", poll_interval=POLL_INTERVAL) as token:
        hub = _inotify.process_hub()
        real_add = hub.add
        fail = {"on": True}

        def add(path: str, watch: _inotify.InotifyWatch) -> int:
            if fail["on"]:
                raise FallbackRequired("inotify_add_watch", errno.ENOSPC)
            return real_add(path, watch)

        monkeypatch.setattr(hub, "add", add)
        shutil.rmtree(exit_dir)
        exit_dir.mkdir()
        assert not token.wait(QUIET_PERIOD)
        exitdir.exit(directory=exit_dir)
        assert token.wait(GENEROUS)
    assert "polling it every" in caplog.text


def test_polling_a_local_directory_lists_it_only_when_it_changed(exit_dir: Path) -> None:
    # Every listing raises IN_CLOSE_NOWRITE, which wakes each inotify follower of the directory (they look
    # for vanished leaders then): a poll follower beside them must not list an unchanged directory.
    import ctypes
    import time

    settled = time.time() - 60  # older than any filesystem's timestamp granularity
    os.utime(exit_dir, (settled, settled))
    libc = ctypes.CDLL(None, use_errno=True)
    events = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        assert libc.inotify_add_watch(events, os.fsencode(exit_dir), _inotify.IN_CLOSE_NOWRITE) >= 0
        listings = 0
        with exitdir.aware(exit_dir, backend="poll", poll_interval=0.01) as token:
            for _ in range(30):  # about 30 polls; reading each time, so that no two events coalesce
                assert not token.wait(0.01)
                try:
                    listings += len(os.read(events, 4096)) // 16  # name-less events: 16 bytes each
                except BlockingIOError:
                    pass
            assert listings <= 1  # the first look only
            exitdir.exit(directory=exit_dir)
            assert token.wait(GENEROUS)  # a stat sees the change
    finally:
        os.close(events)
