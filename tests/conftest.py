"""Shared fixtures: real child processes with a ready-line handshake, and both watch backends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exitdir._linux import process, running, send_signal

from _support import BACKENDS, GENEROUS, Child, env_with

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

# Programs the tests run as children; importing them (as doctest collection would) runs them.
collect_ignore = ["children"]

GO_SOURCES = Path(__file__).parent / "go"


@pytest.fixture(scope="session")
def go_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Go follower and leader of tests/go, built once on the same fsnotify as Go exitdir."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("no Go toolchain: run `make test` (it installs golang-go and fsnotify from Debian)")
    out = tmp_path_factory.mktemp("go")
    env = env_with(GO111MODULE="off", GOPATH="/usr/share/gocode", GOCACHE=str(out / "cache"), GOFLAGS=None)
    built = {}
    for name in ("gofollower", "goleader"):
        subprocess.run([go, "build", "-o", str(out / name), f"./{name}"], cwd=GO_SOURCES, env=env, check=True)
        built[name] = out / name
    return built


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
    # Every option can be set as EXITDIR_<OPTION>: a developer's own settings must not steer the tests.
    for name in [name for name in os.environ if name == "EXIT_DIR" or name.startswith("EXITDIR_")]:
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


Orphan = tuple[Child, int]


@pytest.fixture
def orphan(spawn: type[Child]) -> Iterator[Callable[..., Orphan]]:
    """``orphan(*argv)`` runs argv in a new session through a shell that exits at once, so the program is
    not our child; returns the shell's Child (whose stdout the program inherits) and the program's pid.
    Whatever is still running at the end is SIGKILLed, and reaped if it was reparented to us."""
    started: list[tuple[int, int]] = []

    def start(*argv: str, env: dict[str, str] | None = None) -> Orphan:
        shell = spawn(["sh", "-c", '"$@" & echo $!', "sh", *argv], env, start_new_session=True)
        pid = int(shell.readline())
        assert shell.wait() == 0
        seen = process(pid)
        assert seen is not None, f"{argv} ended at once"
        started.append((pid, seen.start))
        _until_execed(pid, argv[0])
        return shell, pid

    yield start
    for pid, start_time in started:
        if running(pid, start_time):
            send_signal(pid, start_time, None, signal.SIGKILL)
        try:
            os.waitpid(pid, os.WNOHANG)  # ours only if this process is a subreaper (some tests make it one)
        except ChildProcessError:
            pass


def _until_execed(pid: int, program: str) -> None:
    """Until ``pid``, forked by the shell, has exec'd ``program``: before that it is still a shell, and a
    test that looks for the program by name would not find it yet."""
    wanted = os.path.realpath(shutil.which(program) or program)
    deadline = time.monotonic() + GENEROUS
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/exe") == wanted:
                return
        except OSError:
            return  # gone, or not ours to look at: the test says what it expected
        time.sleep(0.001)  # polling /proc state with a deadline, not a sleep used as a sync
    raise AssertionError(f"{program} (pid {pid}) was not exec'd within {GENEROUS} s")


@pytest.fixture
def program(tmp_path: Path) -> Callable[[str, str], str]:
    """``program(name, like)``: a program called ``name`` that runs as ``like`` does (a copy of a binary,
    or a symlink to this Python, whose name is then its argv[0]), so that it can be found by a unique name."""

    def make(name: str, like: str) -> str:
        path = tmp_path / name
        if like == "python":
            path.symlink_to(sys.executable)
        else:
            shutil.copy(like, path)
        return str(path)

    return make
