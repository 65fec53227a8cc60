"""Shared fixtures: real child processes with a ready-line handshake, and both watch backends."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from _support import BACKENDS, Child

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# Programs the tests run as children; importing them (as doctest collection would) runs them.
collect_ignore = ["children"]


@pytest.fixture
def spawn() -> Iterator[type[Child]]:
    """Start children with ``spawn(args)``; any still running at the end of the test is killed."""
    started: list[Child] = []

    class Tracked(Child):
        def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, **kwargs: object) -> None:
            super().__init__(args, env, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for child in started:
        child.cleanup()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EXIT_DIR", "EXITDIR_BACKEND", "EXITDIR_POLL_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    # "Warn once" is per process; each test starts with a clean slate.
    from exitdir import _log

    monkeypatch.setattr(_log, "_said", set())


@pytest.fixture
def exit_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "exit"
    directory.mkdir()
    return directory


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fuse_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real FUSE mount (bindfs) of SRC at MNT: changes made in SRC raise no inotify event on MNT."""
    source, mount = tmp_path / "src", tmp_path / "mnt"
    source.mkdir()
    mount.mkdir()
    subprocess.run(["bindfs", str(source), str(mount)], check=True)
    yield source, mount
    subprocess.run(["fusermount", "-u", str(mount)], check=True)
