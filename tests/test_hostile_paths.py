"""A path that cannot be an exit directory, and a leader that could not report its end: found before
anything runs, said in one line with the fix, the same words for leaders and followers. Real symlinks,
real files, a real read-only mount and a real unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import exitdir

from _support import DROP_TO_NOBODY, EXITDIR, GENEROUS, world_searchable_dir

FOLLOWERS = (["wait", "--timeout", "5"], ["status"], ["follow", "--", "echo", "RAN"])
LEADERS = (["exit"], ["lead", "--", "echo", "RAN"])


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXITDIR, *argv], capture_output=True, text=True, timeout=GENEROUS, check=False)


def broken_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of path that can never be an exit directory, with what its message must say."""
    (tmp_path / "file").write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    return {
        "dangling symlink": (
            tmp_path / "dangling",
            f"is a symlink to {tmp_path / 'nowhere'}, which does not exist: create it, or point EXIT_DIR",
        ),
        "symlink loop": (tmp_path / "loop1", "goes round a symlink loop: point EXIT_DIR"),
        "loop above": (tmp_path / "loop1" / "sub", "goes round a symlink loop: point EXIT_DIR"),
        "file above": (tmp_path / "file" / "sub", "a part of the path above it is a file, not a directory"),
        "a file": (tmp_path / "file", "is not a directory: point EXIT_DIR"),
    }


@pytest.mark.parametrize("kind", ["dangling symlink", "symlink loop", "loop above", "file above", "a file"])
def test_every_command_says_the_same_line_for_a_path_that_cannot_be_a_directory(
    tmp_path: Path, kind: str
) -> None:
    """Before, a file or a loop above the directory made wait/follow wait for it forever while status
    failed, and a leader said only the errno ("Too many levels of symbolic links")."""
    path, said = broken_paths(tmp_path)[kind]
    for argv in (*FOLLOWERS, *LEADERS):
        done = run([argv[0], "--dir", str(path), *argv[1:]])
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr.count("\n") == 1, (argv, done.stderr)  # one line
        assert said in done.stderr, (argv, done.stderr)
        assert "RAN" not in done.stdout  # neither lead nor follow ran their program
    assert not (tmp_path / "nowhere").exists()  # nothing created through a dangling symlink


def test_a_directory_in_the_way_of_the_marker_stops_lead_before_it_runs(exit_dir: Path) -> None:
    (exit_dir / "exitFile").mkdir()
    said = "a directory of that name is in the way; remove it (a marker is a file)"
    for argv in LEADERS:
        done = run([argv[0], "--dir", str(exit_dir), *argv[1:]])
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1, done.stderr
        assert f"cannot write the marker {exit_dir / 'exitFile'}: {said}" in done.stderr
        assert done.stdout == ""  # lead did not run echo: its end could not have been reported
    with pytest.raises(exitdir.ExitDirError, match="in the way"), exitdir.leader(directory=exit_dir):
        pytest.fail("a leader block that could not report its end must not run")


def test_a_read_only_directory_stops_lead_before_it_runs(tmp_path: Path) -> None:
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mount_point)], check=True)
    try:
        done = run(["lead", "--dir", str(mount_point), "--", "echo", "RAN"])
        assert (done.returncode, done.stdout) == (1, "")
        assert "read-only filesystem; mount a writable volume there" in done.stderr
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_an_unwritable_directory_stops_lead_and_leader_blocks_before_they_run() -> None:
    base = world_searchable_dir()
    try:
        exit_dir = Path(base, "exit")
        exit_dir.mkdir(mode=0o755)  # root-owned: not writable by nobody
        code = (
            # argparse loads gettext and locale lazily: load them while the interpreter is readable
            "import argparse, gettext, locale\nargparse.ArgumentParser(prog='x').parse_args([])\n"
            + DROP_TO_NOBODY
            + "import sys, exitdir\nfrom exitdir._cli import main\n"
            f"status = main(['lead', '--dir', {str(exit_dir)!r}, '--', 'echo', 'RAN'])\n"
            "try:\n"
            f"    with exitdir.leader(directory={str(exit_dir)!r}):\n"
            "        print('BLOCK RAN')\n"
            "except exitdir.ExitDirError as err:\n"
            "    print('refused:', err)\n"
            "sys.exit(status)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=GENEROUS, check=False
        )
        assert done.returncode == 1
        assert "RAN" not in done.stdout
        assert f"refused: cannot start the leader's block: cannot write a marker in {exit_dir}" in done.stdout
        assert f"cannot start echo: cannot write a marker in {exit_dir}: permission denied" in done.stderr
        assert os.listdir(exit_dir) == []  # the probe is an anonymous file: no entry a Go follower sees
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("nan", "EXITDIR_POLL_INTERVAL='nan' is invalid: give a finite number of seconds > 0"),
        (
            "abc",
            "EXITDIR_POLL_INTERVAL='abc' is not a number of seconds: give a finite number of seconds > 0",
        ),
        ("0", "EXITDIR_POLL_INTERVAL='0' is invalid: give a finite number of seconds > 0"),
    ],
)
def test_a_poll_interval_is_asked_for_as_it_must_be(exit_dir: Path, value: str, said: str) -> None:
    env = dict(os.environ, EXITDIR_POLL_INTERVAL=value)
    done = subprocess.run(
        [*EXITDIR, "wait", "--dir", str(exit_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )
    assert done.returncode == 1
    assert said in done.stderr  # never "zero or more", which 0 would then contradict


def test_a_digit_that_is_not_decimal_is_not_a_signal(exit_dir: Path) -> None:
    done = run(["follow", "--signal", "\u00b2", "--dir", str(exit_dir), "--", "true"])
    assert done.returncode == 2
    assert "'²' is not a signal: use a name such as TERM" in done.stderr


def test_a_name_that_is_not_a_string_is_said_so(exit_dir: Path) -> None:
    with pytest.raises(exitdir.ExitDirError, match=r"marker name 5 is not a string"):
        exitdir.exit(name=5, directory=exit_dir)  # type: ignore[arg-type]
