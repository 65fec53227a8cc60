"""Exit directories on filesystems shared with other clients: FUSE, NFS, SMB (issue 11, rows 9 and 11).

FUSE cases run on real bindfs mounts. NFS and SMB need a server: their messages are checked here by
filesystem type, and the NFS cases are exercised on a real server in issue 12.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import exitdir

from _support import EXITDIR, GENEROUS, Child, env_with, world_searchable_dir

Ran = subprocess.CompletedProcess[str]

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


# --- row 11: a permission error's hint fits who is refused, and where --------------------------------

NOBODY = 65534


@pytest.fixture
def foreign_fuse_mount(spawn: type[Child]) -> Iterator[tuple[Path, Callable[..., Ran]]]:
    """A real bindfs mount made by an unprivileged user (nobody) without allow_other: the kernel refuses it
    to every other user, root included. Yields the mount and ``run(argv)``, which runs a command where the
    mount is.

    /dev/fuse is 0600 root on this machine, so an unprivileged mount needs a device node nobody may open:
    one is bind-mounted over /dev/fuse in a private mount namespace, where the mount then lives too.
    """
    base = Path(world_searchable_dir())
    source, mount, device = base / "src", base / "mnt", base / "fuse"
    for directory in (source, mount):
        directory.mkdir()
        os.chown(directory, NOBODY, NOBODY)  # fusermount wants the mount point to be the user's
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(10, 229))  # /dev/fuse's numbers
    os.chown(device, NOBODY, NOBODY)
    as_nobody = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups"
    holder = spawn(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            f"mount --bind {device} /dev/fuse && {as_nobody} bindfs --no-allow-other {source} {mount} "
            "&& echo ready && exec sleep 3600",  # holds the namespace open; killed at the end
        ]
    )
    holder.expect("ready")  # bindfs returns once the mount is in place

    def run(argv: Sequence[str]) -> Ran:
        enter = ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"]
        return subprocess.run([*enter, *argv], capture_output=True, text=True, timeout=GENEROUS, check=False)

    try:
        yield mount, run
    finally:
        run(["umount", str(mount)])  # the bindfs daemon exits with its mount
        holder.cleanup()
        shutil.rmtree(base)


FUSE_HINT = (
    "is a FUSE mount that only the user who mounted it may use, root included: mount it with -o allow_other"
)


def test_a_root_leader_refused_by_a_fuse_mount_is_told_about_allow_other(
    foreign_fuse_mount: tuple[Path, Callable[..., Ran]],
) -> None:
    mount, run = foreign_fuse_mount
    assert os.geteuid() == 0
    done = run([*EXITDIR, "exit", "--code", "3", "--dir", str(mount)])
    assert done.returncode == 1
    assert done.stderr == (
        f"exitdir: error: cannot write a marker in {mount}: permission denied; {mount} {FUSE_HINT} "
        "(user_allow_other in /etc/fuse.conf), or run this as the user who mounted it\n"
    )
    lead = run([*EXITDIR, "lead", "--dir", str(mount), "--", "true"])
    assert lead.returncode == 1  # never 0 when the followers were not told
    assert FUSE_HINT in lead.stderr
    assert "Traceback" not in lead.stderr


def test_a_root_follower_refused_by_a_fuse_mount_is_an_error_not_a_missing_directory(
    foreign_fuse_mount: tuple[Path, Callable[..., Ran]],
) -> None:
    """A stat that fails with EACCES used to read as "does not exist yet": the follower waited for a
    directory that was there all along."""
    mount, run = foreign_fuse_mount
    for command, *options in (["wait", "--timeout", "0"], ["status"], ["follow", "--", "true"]):
        done = run([*EXITDIR, command, "--dir", str(mount), *options])
        assert done.returncode == 1, (command, done.stderr)
        assert done.stderr.startswith(f"exitdir: error: cannot reach exit directory {mount}: permission")
        assert FUSE_HINT in done.stderr
        assert done.stderr.count("\n") == 1


def test_root_refused_on_a_local_filesystem_is_told_why_root_can_be_refused() -> None:
    """A real refusal of uid 0: in a user namespace that does not map the directory's owner, root has no
    CAP_DAC_OVERRIDE over it and is bound by its permission bits."""
    base = Path(world_searchable_dir())
    try:
        directory = base / "exit"
        directory.mkdir(mode=0o755)
        os.chown(directory, 1234, 1234)  # an owner the namespace below does not map
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", *EXITDIR, "exit", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=GENEROUS,
            check=False,
        )
        assert done.returncode == 1
        assert done.stderr.startswith(
            f"exitdir: error: cannot write a marker in {directory}: permission denied; uid 0 was refused: "
            "without CAP_DAC_OVERRIDE"
        )
        assert "user namespace" in done.stderr
        assert os.listdir(directory) == []
    finally:
        shutil.rmtree(base)


# (statfs's answer, the uid, what the hint must say, what it must not)
HINTS = [
    ("nfs", 0, ["root_squash", "no_root_squash", "anonuid", "fsGroup does not apply to NFS"], ["uid 0 ("]),
    ("nfs", 1000, ["writable by uid 1000 on the NFS server", "fsGroup does not apply to NFS"], ["squash"]),
    ("cifs", 0, ["the SMB server checks the account the share was mounted with"], ["fsGroup"]),
    ("smb2", 1000, ["mount the share so that uid 1000 may write", "dir_mode="], ["fsGroup"]),
    ("ceph", 0, ["the ceph server may map root to an unprivileged identity"], ["set fsGroup"]),
    (None, 1000, ["writable by uid 1000 (in Kubernetes, set fsGroup or use an emptyDir)"], ["squash"]),
]


@pytest.mark.parametrize("case", HINTS, ids=[f"{fs}-{uid}" for fs, uid, _, _ in HINTS])
def test_the_hint_fits_the_filesystem_and_the_uid(
    exit_dir: Path, monkeypatch: pytest.MonkeyPatch, case: tuple[str | None, int, list[str], list[str]]
) -> None:
    """A stand-in for the filesystem type (statfs's answer), the uid and the server's refusal: the NFS
    case is exercised on a real NFS server, with root_squash, in issue 12; SMB and Ceph have no server
    here."""
    from exitdir import _linux

    filesystem, uid, expected, unexpected = case
    monkeypatch.setattr(_linux, "shared_filesystem", lambda path: filesystem)
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    monkeypatch.setattr(os, "open", _refuse_writes(os.open))  # as the server would; root ignores modes
    with pytest.raises(exitdir.ExitDirError) as caught:
        exitdir.exit(directory=exit_dir)
    message = str(caught.value)
    assert message.startswith(f"cannot write a marker in {exit_dir}: permission denied; ")
    for part in expected:
        assert part in message
    for part in unexpected:
        assert part not in message


def _refuse_writes(real_open: Callable[..., int]) -> Callable[..., int]:
    def refusing(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR) or flags & getattr(os, "O_TMPFILE", 0):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    return refusing


@pytest.mark.parametrize(
    ("filesystem", "warned"), [("nfs", True), ("cifs", True), ("fuse", False), (None, False)]
)
def test_a_follower_on_a_network_filesystem_says_once_that_remote_crashes_go_unseen(
    exit_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    filesystem: str | None,
    warned: bool,
) -> None:
    """Issue 12: the liveness lock stays in the leader's kernel, so a follower on another node never sees a
    SIGKILLed leader go; it must say so rather than let a README promise stand. statfs is a stand-in here
    (this machine's kernel has no NFS or SMB client); the two-kernel rig in e2e/ runs the real thing."""
    from exitdir import _token

    monkeypatch.setattr(_token, "shared_filesystem", lambda path: filesystem)
    caplog.set_level(logging.WARNING, logger="exitdir")
    for _ in range(2):
        exitdir.aware(exit_dir, backend="poll").close()
    said = [r.getMessage() for r in caplog.records if "cannot be detected" in r.getMessage()]
    assert len(said) == (1 if warned else 0)
    if warned:
        assert said[0].startswith(
            f"{exit_dir} is on {filesystem}, shared with other machines: a leader on another"
        )


@pytest.mark.parametrize(
    ("shared", "warned"),
    [
        ({"exit"}, "set EXITDIR_LIVENESS_DIR (or --liveness-dir) to a directory beside it"),
        ({"exit", "exit-liveness"}, None),
        ({"exit", "-"}, "is not on a shared filesystem: put it on the same volume"),
    ],
)
def test_with_a_liveness_directory_on_the_shared_volume_nothing_is_said(
    exit_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    shared: set[str],
    warned: str | None,
) -> None:
    """Which of the exit directory and the liveness directory are on NFS is a stand-in (statfs), as above;
    "-" names a liveness directory that is on this machine's own filesystem."""
    from exitdir import _token

    live = exit_dir.parent / ("exit-liveness" if "exit-liveness" in shared else "local-liveness")
    monkeypatch.setattr(
        _token, "shared_filesystem", lambda path: "nfs" if Path(path).name in shared else None
    )
    caplog.set_level(logging.WARNING, logger="exitdir")
    given = None if shared == {"exit"} else live
    exitdir.aware(exit_dir, backend="poll", liveness_dir=given).close()
    said = [r.getMessage() for r in caplog.records if "cannot be detected" in r.getMessage()]
    if warned is None:
        assert said == []
    else:
        assert len(said) == 1
        assert warned in said[0]
