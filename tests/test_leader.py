"""The leader: exit() and leader() write a complete marker atomically, or explain what is wrong."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

import exitdir
from exitdir import _leader

from _support import DROP_TO_NOBODY, Child, world_searchable_dir


def read_json(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


def test_exit_writes_our_json_marker(exit_dir: Path) -> None:
    path = exitdir.exit(3, reason="2 tests failed", directory=exit_dir)
    assert path == exit_dir / "exitFile"
    doc = read_json(path)
    assert doc["exitdir"] == 1
    assert doc["code"] == 3
    assert doc["reason"] == "2 tests failed"
    assert doc["name"] == "exitFile"
    assert doc["pid"] == os.getpid()
    assert doc["hostname"] == os.uname().nodename
    assert isinstance(doc["time"], str)
    assert doc["time"].endswith("Z")
    assert path.read_bytes().endswith(b"\n")


def test_exit_leaves_nothing_but_the_marker(exit_dir: Path) -> None:
    # A Go follower fires on any created file: a normal run must leave only the marker behind.
    exitdir.exit(directory=exit_dir)
    exitdir.exit(1, directory=exit_dir)  # a second call replaces the marker
    assert os.listdir(exit_dir) == ["exitFile"]
    assert read_json(exit_dir / "exitFile")["code"] == 1


def test_temp_and_rename_path_also_leaves_only_the_marker(
    exit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_leader, "_publish_tmpfile", lambda *args: False)
    exitdir.exit(4, directory=exit_dir)
    assert os.listdir(exit_dir) == ["exitFile"]
    assert read_json(exit_dir / "exitFile")["code"] == 4


def test_marker_is_world_readable_despite_umask(exit_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        path = exitdir.exit(directory=exit_dir)
    finally:
        os.umask(old)
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_exit_without_directory_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert exitdir.exit() is None
    monkeypatch.setenv("EXIT_DIR", "")
    assert exitdir.exit() is None
    assert os.listdir(tmp_path) == []


def test_exit_uses_env_with_or_without_trailing_slash(
    exit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXIT_DIR", f"{exit_dir}/")
    assert exitdir.exit(name="one") == exit_dir / "one"
    monkeypatch.setenv("EXIT_DIR", str(exit_dir))
    assert exitdir.exit(name="two") == exit_dir / "two"
    assert sorted(os.listdir(exit_dir)) == ["one", "two"]


def test_relative_directory_is_resolved_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = exitdir.exit(directory="rel")
    assert path == tmp_path / "rel" / "exitFile"
    assert path.is_absolute()


def test_leader_creates_a_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    exitdir.exit(directory=target)
    assert os.listdir(target) == ["exitFile"]


def test_marker_symlink_is_replaced_not_followed(exit_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (exit_dir / "exitFile").symlink_to(victim)
    exitdir.exit(directory=exit_dir)
    assert victim.read_text() == "precious"
    assert not (exit_dir / "exitFile").is_symlink()
    assert read_json(exit_dir / "exitFile")["code"] == 0


@pytest.mark.parametrize("code", [-1, 256, 1000])
def test_code_out_of_range_is_a_clear_error(exit_dir: Path, code: int) -> None:
    with pytest.raises(exitdir.ExitDirError, match=r"exit code .* 0 to 255"):
        exitdir.exit(code, directory=exit_dir)
    assert os.listdir(exit_dir) == []


@pytest.mark.parametrize("code", [True, "3", 1.5, None])
def test_code_of_wrong_type_is_a_clear_error(exit_dir: Path, code: object) -> None:
    with pytest.raises(exitdir.ExitDirError, match="integer"):
        exitdir.exit(code, directory=exit_dir)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("a/b", "path"),
        ("..", "path"),
        (".", "path"),
        ("../escape", "path"),
        ("a\0b", "NUL"),
        (".hidden", "reserved"),
        ("lost+found", "reserved"),
        ("x" * 300, "255 bytes"),
    ],
)
def test_bad_names_are_rejected_and_nothing_is_written(exit_dir: Path, name: str, message: str) -> None:
    with pytest.raises(exitdir.ExitDirError, match=message):
        exitdir.exit(name=name, directory=exit_dir)
    with pytest.raises(exitdir.ExitDirError, match=message):
        exitdir.leader(name, directory=exit_dir)
    assert os.listdir(exit_dir) == []
    assert os.listdir(exit_dir.parent) == ["exit"]


def test_directory_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(exitdir.ExitDirError, match=r"not a directory.*EXIT_DIR"):
        exitdir.exit(directory=not_a_dir)


def test_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    # A real read-only filesystem (root ignores permission bits, so chmod would prove nothing here).
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    import subprocess

    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mount_point)], check=True)
    try:
        with pytest.raises(exitdir.ExitDirError, match=r"cannot write a marker in .*read-only"):
            exitdir.exit(directory=mount_point)
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_unwritable_directory_names_the_fix(spawn: type[Child]) -> None:
    base = world_searchable_dir()
    try:
        exit_dir = Path(base, "exit")
        exit_dir.mkdir(mode=0o755)  # root-owned, not writable by nobody
        code = (
            DROP_TO_NOBODY + "import exitdir\n"
            "try:\n"
            f"    exitdir.exit(directory={str(exit_dir)!r})\n"
            "except exitdir.ExitDirError as err:\n"
            "    print(err)\n"
        )
        child = spawn([sys.executable, "-c", code])
        line = child.readline()
        assert child.wait() == 0
        assert "permission denied" in line
        assert str(exit_dir) in line
        assert "fsGroup" in line
        assert os.listdir(exit_dir) == []
    finally:
        shutil.rmtree(base)


def test_leader_block_normal_end_writes_code_zero(exit_dir: Path) -> None:
    with exitdir.leader(directory=exit_dir):
        assert os.listdir(exit_dir) == []
    doc = read_json(exit_dir / "exitFile")
    assert (doc["code"], doc["reason"]) == (0, None)


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (SystemExit(4), 4, None),
        (SystemExit(None), 0, None),
        (SystemExit("fatal: config missing"), 1, "fatal: config missing"),
        (SystemExit(300), 300 & 0xFF, None),
        (ValueError("bad input"), 1, "ValueError: bad input"),
        (RuntimeError(), 1, "RuntimeError"),
        (KeyboardInterrupt(), 130, "KeyboardInterrupt"),
    ],
)
def test_leader_block_reports_how_it_ended(
    exit_dir: Path, exc: BaseException, code: int, reason: str | None
) -> None:
    with pytest.raises(type(exc)), exitdir.leader(name="main", directory=exit_dir):
        raise exc
    doc = read_json(exit_dir / "main")
    assert (doc["code"], doc["reason"]) == (code, reason)


def test_leader_as_decorator(exit_dir: Path) -> None:
    @exitdir.leader(directory=exit_dir)
    def job(x: int) -> int:
        return x * 2

    assert job(21) == 42
    assert read_json(exit_dir / "exitFile")["code"] == 0


def test_leader_as_decorator_on_a_coroutine_function(exit_dir: Path) -> None:
    @exitdir.leader(directory=exit_dir)
    async def job() -> None:
        assert os.listdir(exit_dir) == []  # not written when the coroutine is merely created
        raise SystemExit(9)

    with pytest.raises(SystemExit):
        asyncio.run(job())
    assert read_json(exit_dir / "exitFile")["code"] == 9


def test_leader_async_with(exit_dir: Path) -> None:
    async def main() -> None:
        async with exitdir.leader(directory=exit_dir):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert read_json(exit_dir / "exitFile")["code"] == 0


def test_leader_in_a_real_process_that_crashes(exit_dir: Path, spawn: type[Child]) -> None:
    code = (
        "import exitdir\n"
        f"with exitdir.leader(directory={str(exit_dir)!r}):\n"
        "    raise ZeroDivisionError('oops')\n"
    )
    child = spawn([sys.executable, "-c", code])
    assert child.wait() == 1
    doc = read_json(exit_dir / "exitFile")
    assert (doc["code"], doc["reason"]) == (1, "ZeroDivisionError: oops")
