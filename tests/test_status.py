"""`exitdir status` judges markers by the followers' own rules (issue 11, row 8).

A marker that `wait` and `follow` ignore (stale: written before the last boot; with ``--leader``, a leader
nobody asked about) is shown as ignored, with why, and status says whether a follower with the same
``--leader``/``--any``/``--all`` would exit now. Each case is checked against a real follower too: status
and `exitdir wait` must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import exitdir
from exitdir._cli import main

from _support import EXITDIR

# A boot id that is not this machine's: the marker was written "before the last boot".
OTHER_BOOT = "00000000-0000-0000-0000-000000000000"


def stale_marker(directory: Path, name: str = "exitFile", code: int = 0) -> None:
    """A real exitdir marker, as a leader wrote it before this machine last booted."""
    path = exitdir.exit(code, reason="from before the reboot", name=name, directory=directory)
    assert path is not None
    doc = json.loads(path.read_text())
    doc["boot_id"] = OTHER_BOOT
    path.write_text(json.dumps(doc) + "\n")


def status(directory: Path, *options: str) -> tuple[int, str, str]:
    """`exitdir status` in a real process: its status, stdout and stderr."""
    done = subprocess.run(
        [*EXITDIR, "status", "--dir", str(directory), *options], capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout, done.stderr


def follower_exits_now(directory: Path, *options: str) -> bool:
    """Whether a real `exitdir wait` with these options ends at once (0) rather than timing out (124)."""
    done = subprocess.run(
        [*EXITDIR, "wait", "--dir", str(directory), "--timeout", "0", *options],
        capture_output=True,
        check=False,
    )
    assert done.returncode in (0, 124), done.stderr
    return done.returncode == 0


def test_a_stale_marker_is_shown_as_ignored_and_followers_keep_running(exit_dir: Path) -> None:
    stale_marker(exit_dir)
    code, out, err = status(exit_dir)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "ignored: exitFile: code 0: from before the reboot (stale: written before this machine last "
        "booted, its boot_id differs)",
        "followers would keep running: no marker counts",
    ]
    assert not follower_exits_now(exit_dir)  # what status said is what a follower does


def test_json_keeps_each_marker_exact_and_adds_the_verdict(exit_dir: Path) -> None:
    stale_marker(exit_dir, name="old")
    exitdir.exit(3, reason="tests failed", name="new", directory=exit_dir)
    code, out, _ = status(exit_dir, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["would_exit"] is True
    assert doc["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    new, old = doc["markers"]  # sorted by name
    assert (old["name"], old["boot_id"], old["ignored"]) == ("old", OTHER_BOOT, "stale")
    assert (new["name"], new["code"], new["reason"], new["ignored"]) == ("new", 3, "tests failed", None)
    # The marker's own fields are exactly what `wait --json` prints for it; only "ignored" is added.
    waited = subprocess.run(
        [*EXITDIR, "wait", "--json", "--dir", str(exit_dir), "--leader", "new"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {k: v for k, v in new.items() if k != "ignored"} == json.loads(waited.stdout)
    assert follower_exits_now(exit_dir)


def test_text_marks_only_the_ignored_markers(exit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale_marker(exit_dir, name="old")
    exitdir.exit(0, name="new", directory=exit_dir)
    assert main(["status", "--dir", str(exit_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "new: code 0",
        "ignored: old: code 0: from before the reboot (stale: written before this machine last booted, "
        "its boot_id differs)",
        "followers would exit now",
    ]


def test_with_leaders_an_unnamed_marker_is_ignored_and_a_stale_one_is_not_done(
    exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale_marker(exit_dir, name="db")
    exitdir.exit(0, name="api", directory=exit_dir)
    exitdir.exit(0, name="unrelated", directory=exit_dir)
    options = ["--leader", "db", "--leader", "api"]
    assert main(["status", "--dir", str(exit_dir), *options]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "db: not running",
        "done: api: code 0",
        "ignored: db: code 0: from before the reboot (stale: written before this machine last booted, "
        "its boot_id differs)",
        "ignored: unrelated: code 0 (not named: not one of the leaders asked about)",
        "followers would keep running: waiting for db",
    ]
    assert not follower_exits_now(exit_dir, *options)
    assert main(["status", "--dir", str(exit_dir), "--json", *options]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["ignored"]) for m in doc["markers"]] == [
        ("api", None),
        ("db", "stale"),
        ("unrelated", "not named"),
    ]
    assert doc["leaders"] == {"db": "not running", "api": "done"}
    assert doc["would_exit"] is False
    # --any: api alone is enough, for status as for a follower.
    assert main(["status", "--dir", str(exit_dir), "--any", *options]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "followers would exit now"
    assert follower_exits_now(exit_dir, "--any", *options)


@pytest.mark.parametrize(
    ("markers", "options"),
    [
        ([], []),
        (["a"], []),
        (["~a"], []),
        (["~a", "b"], []),
        (["a"], ["--leader", "a"]),
        (["a"], ["--leader", "a", "--leader", "b"]),
        (["a", "b"], ["--leader", "a", "--leader", "b"]),
        (["a", "~b"], ["--leader", "a", "--leader", "b"]),
        (["a", "~b"], ["--leader", "a", "--leader", "b", "--any"]),
        (["~a", "~b"], ["--leader", "a", "--leader", "b", "--any"]),
        (["c"], ["--leader", "a", "--any"]),
    ],
)
def test_status_and_a_real_follower_agree(exit_dir: Path, markers: list[str], options: list[str]) -> None:
    """``~name``: a stale marker."""
    for marker in markers:
        if marker.startswith("~"):
            stale_marker(exit_dir, name=marker[1:])
        else:
            exitdir.exit(name=marker, directory=exit_dir)
    code, out, _ = status(exit_dir, "--json", *options)
    assert code == 0
    assert json.loads(out)["would_exit"] is follower_exits_now(exit_dir, *options)


def marker_from_another_machine(directory: Path, *, hostname: str) -> None:
    """A real exitdir marker as a leader on another machine writes it: its own boot id and hostname."""
    path = exitdir.exit(4, reason="done on node a", directory=directory)
    assert path is not None
    doc = json.loads(path.read_text())
    doc["boot_id"], doc["hostname"] = OTHER_BOOT, hostname
    path.write_text(json.dumps(doc) + "\n")


def test_a_marker_from_another_machine_on_a_shared_filesystem_trips_wait_and_counts_in_status(
    fuse_mount: tuple[Path, Path],
) -> None:
    """Issue 12: on a filesystem other machines write to, another boot id is another machine, not an
    earlier boot. A real FUSE mount (bindfs) stands in for NFS here: both are shared filesystems to
    exitdir (statfs says so), and the two-kernel NFS and SMB runs are in e2e/."""
    _, mount = fuse_mount
    marker_from_another_machine(mount, hostname="node-a")
    waited = subprocess.run(
        [*EXITDIR, "wait", "-v", "--timeout", "5", "--dir", str(mount)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (waited.returncode, waited.stdout) == (0, "exitFile: code 4: done on node a\n")
    code, out, _ = status(mount)
    assert (code, out.splitlines()[-1]) == (0, "followers would exit now")
    # A marker naming this host with another boot id was written here before a reboot, even there.
    marker_from_another_machine(mount, hostname=os.uname().nodename)
    code, out, _ = status(mount)
    assert "ignored: exitFile" in out
    assert "followers would keep running" in out


def test_a_marker_with_another_boot_id_in_a_local_directory_is_still_stale(exit_dir: Path) -> None:
    # kubernetes#53423: an emptyDir (or hostPath) that survived a node reboot, whatever host it names.
    marker_from_another_machine(exit_dir, hostname="node-a")
    done = subprocess.run(
        [*EXITDIR, "wait", "--timeout", "0.3", "--dir", str(exit_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 124
