"""Exit directories on filesystems shared with other clients: FUSE, NFS, SMB (issue 11, rows 9 and 11).

FUSE cases run on real bindfs mounts. NFS and SMB need a server: their messages are checked here by
filesystem type, and the NFS cases are exercised on a real server in issue 12.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, Child, env_with

# --- row 9: inotify forced where it is blind to other clients' writes --------------------------------


def test_forcing_inotify_on_fuse_warns_once_per_directory(
    fuse_mount: tuple[Path, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, mount = fuse_mount
    with caplog.at_level(logging.WARNING, logger="exitdir"):
        for _ in range(2):
            exitdir.aware(mount, backend="inotify").close()
        monkeypatch.setenv("EXITDIR_BACKEND", "inotify")
        exitdir.aware(mount).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"backend='inotify' on {mount}, which is on fuse: ")
    assert "backend='auto' or 'poll'" in warnings[0]


def test_the_cli_prints_the_warning_without_verbose_and_inotify_still_sees_this_mount(
    fuse_mount: tuple[Path, Path], spawn: type[Child]
) -> None:
    """Forcing inotify is legitimate for writes made through the same mount, so it is a warning, not an
    error: the follower still ends on a marker written through the mount."""
    _, mount = fuse_mount
    waiter = spawn(
        [*EXITDIR, "wait", "--verbose", "--dir", str(mount)],
        env_with(EXITDIR_BACKEND="inotify"),
        merge_stderr=True,
    )
    warning = waiter.read_until("EXITDIR_BACKEND=inotify")  # printed once the watch is chosen
    assert warning == (
        f"exitdir: EXITDIR_BACKEND=inotify on {mount}, which is on fuse: inotify sees only changes made "
        "through this mount, so this follower will miss markers written beneath it (in the FUSE "
        "filesystem's backing store); set EXITDIR_BACKEND=auto or poll to poll it instead"
    )
    exitdir.exit(7, directory=mount)  # through the mount: inotify does see this one
    waiter.expect("exitFile: code 7", timeout=GENEROUS)
    assert waiter.wait() == 0
    assert waiter.lines.count(warning) == 1


def test_quiet_silences_the_warning(fuse_mount: tuple[Path, Path], spawn: type[Child]) -> None:
    source, mount = fuse_mount
    exitdir.exit(directory=source)  # present before the start: the first listing finds it
    waiter = spawn([*EXITDIR, "wait", "-q", "--dir", str(mount)], env_with(EXITDIR_BACKEND="inotify"))
    assert waiter.wait() == 0
    assert waiter.rest() == ("", "")


def test_auto_and_poll_on_fuse_do_not_warn(
    fuse_mount: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, mount = fuse_mount
    with caplog.at_level(logging.WARNING, logger="exitdir"):
        exitdir.aware(mount).close()
        exitdir.aware(mount, backend="poll").close()
    assert caplog.records == []


def test_forcing_inotify_on_a_local_filesystem_does_not_warn(
    exit_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="exitdir"):
        exitdir.aware(exit_dir, backend="inotify").close()
    assert caplog.records == []
    assert os.listdir(exit_dir) == []
