"""The path of the exit directory comes to name another directory, with no event on the one watched.

A symlink retargeted atomically, a filesystem mounted over the directory, an ancestor renamed and
recreated: the inode an inotify follower watches is neither deleted nor renamed, so it raises no event,
and the follower used to wait forever on it while the leader wrote its marker into the new directory
(polling always found it). Now the inotify watch checks, once per poll interval with one ``stat``, that
the path still names the directory it watches, and re-watches and rescans when it does not. All real:
symlinks, ``rename``, a tmpfs mounted over the directory (the tests run as root); both backends.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import exitdir

from _support import EXITDIR, GENEROUS, POLL_INTERVAL, QUIET_PERIOD, Child, env_with


def test_symlink_retargeted_while_waiting(tmp_path: Path, backend: str) -> None:
    old, new, link = tmp_path / "old", tmp_path / "new", tmp_path / "link"
    old.mkdir()
    new.mkdir()
    link.symlink_to(old)
    with exitdir.aware(link, backend=backend, poll_interval=POLL_INTERVAL) as token:
        (tmp_path / "link.new").symlink_to(new)
        os.replace(
            tmp_path / "link.new", link
        )  # atomic, as `ln -sfn` then `mv -T` (a Kubernetes ..data swap)
        exitdir.exit(code=11, directory=link)
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 11


def test_exitdir_follow_through_a_retargeted_symlink(
    spawn: type[Child], tmp_path: Path, backend: str
) -> None:
    """The issue's reproduction through the CLI (``exitdir wait`` hung there: 124 under ``timeout``).
    ``follow`` watches before it starts its helper, so the helper's line is the handshake."""
    old, new, link = tmp_path / "old", tmp_path / "new", tmp_path / "link"
    old.mkdir()
    new.mkdir()
    link.symlink_to(old)
    env = env_with(EXITDIR_BACKEND=backend, EXITDIR_POLL_INTERVAL=str(POLL_INTERVAL))
    helper = ["sh", "-c", "echo ready; exec sleep 60"]
    follower = spawn([*EXITDIR, "follow", "--dir", str(link), "--", *helper], env)
    follower.expect("ready")
    (tmp_path / "link.new").symlink_to(new)
    os.replace(tmp_path / "link.new", link)
    subprocess.run([*EXITDIR, "exit", "--dir", str(link), "--code", "11"], check=True, timeout=GENEROUS)
    assert follower.wait() == 0
    _, err = follower.rest()
    assert "code 11" in err


def test_filesystem_mounted_over_the_directory_while_waiting(exit_dir: Path, backend: str) -> None:
    with exitdir.aware(exit_dir, backend=backend, poll_interval=POLL_INTERVAL) as token:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(exit_dir)], check=True, timeout=GENEROUS)
        try:
            assert not token.wait(QUIET_PERIOD)  # a new, empty directory: nothing to trip on
            exitdir.exit(code=5, directory=exit_dir)  # into the tmpfs, above the inode first watched
            assert token.wait(GENEROUS)
            assert token.marker is not None
            assert token.marker.code == 5
        finally:
            subprocess.run(["umount", str(exit_dir)], check=True, timeout=GENEROUS)


def test_ancestor_renamed_and_recreated_while_waiting(tmp_path: Path, backend: str) -> None:
    directory = tmp_path / "jobs" / "exit"
    directory.mkdir(parents=True)
    with exitdir.aware(directory, backend=backend, poll_interval=POLL_INTERVAL) as token:
        (tmp_path / "jobs").rename(
            tmp_path / "jobs.old"
        )  # the watched inode moves, without an event of its own
        directory.mkdir(parents=True)
        exitdir.exit(code=7, directory=directory)
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 7
        assert not (tmp_path / "jobs.old" / "exit" / "exitFile").exists()


def test_symlink_appearing_where_the_directory_is_awaited(tmp_path: Path, backend: str) -> None:
    """A directory that does not exist yet, whose path then becomes a symlink to one (an event on the
    ancestor, but for a file, not a directory, so it did not re-arm the watch)."""
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    with exitdir.aware(link, backend=backend, poll_interval=POLL_INTERVAL) as token:
        link.symlink_to(target)
        exitdir.exit(code=9, directory=target)
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 9
