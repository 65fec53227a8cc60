"""The inotify watch lost in the middle of a wait: every front-end falls back to polling and still ends.

Two real triggers, each against every follower front-end, each a real process:

- **the watch limit reached on re-watch**: the follower runs as root in a private user namespace whose
  ``max_inotify_watches`` is lowered to 0 once it watches (its existing watch survives; the kernel refuses
  every new one with ENOSPC), then the exit directory is replaced;
- **the directory recreated unreadable for a moment**, under a follower running as nobody: the re-watch
  fails with EACCES until the directory is made readable again.

Each front-end must say it fell back (the warning is the handshake), and end within a second or two of
the marker. Before the waiting contract, ``exitdir follow`` and the asyncio front-end read the watch's
plan once and blocked on a dead inotify fd forever.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir

from _support import DROP_TO_NOBODY, EXITDIR, GENEROUS, Child, env_with, world_searchable_dir

if TYPE_CHECKING:
    from collections.abc import Iterator

RETRY_INTERVAL = "0.05"
# "A second or two" (issue 10): with a 50 ms retry interval, anything near this bound is a hang, not noise.
WITHIN = 2.0
FELL_BACK = "cannot re-watch"

FRONT_ENDS = ("sync", "wait_for_exit", "cancel_on_exit", "follow")


def front_end(kind: str, directory: Path, *, as_nobody: bool) -> list[str]:
    """argv of a follower that prints 'ready' once it watches, then ends when a marker appears."""
    # Loaded before the drop: nobody cannot read this machine's interpreter under /root.
    preloaded = "import asyncio, argparse, locale, shutil, exitdir._supervise, exitdir._signals\n"
    prelude = preloaded + DROP_TO_NOBODY if as_nobody else "import exitdir\n"
    d = str(directory)
    if kind == "sync":
        body = f"token = exitdir.aware({d!r})\nprint('ready', flush=True)\nprint('tripped', token.wait(60))\n"
    elif kind == "wait_for_exit":
        body = (
            "import asyncio\n"
            "async def main() -> None:\n"
            f"    task = asyncio.ensure_future(exitdir.wait_for_exit({d!r}, timeout=60))\n"
            "    await asyncio.sleep(0)  # one turn: the task has run up to its first await, watching\n"
            "    print('ready', flush=True)\n"
            "    print('tripped', (await task) is not None)\n"
            "asyncio.run(main())\n"
        )
    elif kind == "cancel_on_exit":
        body = (
            "import asyncio\n"
            "async def main() -> None:\n"
            f"    async with exitdir.cancel_on_exit({d!r}) as scope:\n"
            "        print('ready', flush=True)\n"
            "        await asyncio.sleep(60)\n"
            "    print('tripped', scope.interrupted)\n"
            "asyncio.run(main())\n"
        )
    else:  # the helper is sh: readable by nobody, unlike this machine's interpreter under /root
        if not as_nobody:
            return [*EXITDIR, "follow", "--dir", d, "--", "sh", "-c", "echo ready; exec sleep 60"]
        argv = ["follow", "--dir", d, "--", "sh", "-c", "echo ready; exec sleep 60"]
        body = f"import sys, exitdir._cli\nsys.exit(exitdir._cli.main({argv!r}))\n"
    return [sys.executable, "-c", prelude + body]


def ended_by_the_marker(follower: Child, kind: str, exit_dir: Path) -> float:
    """Write the marker; wait for the follower to end because of it; return how long that took."""
    assert follower.proc.poll() is None, f"{kind} ended before the marker: {follower.lines}"
    written = time.monotonic()
    exitdir.exit(directory=exit_dir)
    status = follower.wait(GENEROUS)
    took = time.monotonic() - written
    out, _ = follower.rest()
    assert status == 0, out
    if kind != "follow":
        assert "tripped True" in out.splitlines(), out
    return took


@pytest.fixture
def shared_exit_dir() -> Iterator[Path]:
    """An exit directory that nobody may read, under a parent that nobody may search."""
    base = world_searchable_dir()
    directory = Path(base, "exit")
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(base)


def replace_directory(directory: Path, mode: int) -> None:
    """Replace ``directory`` in one step by a new one with ``mode``: its watch is dropped, and there is
    never a moment without it, so the follower never falls back to watching the parent (whose events
    would wake even a broken waiter by chance)."""
    fresh = directory.with_name(directory.name + ".new")
    fresh.mkdir()
    os.chmod(fresh, mode)
    os.rename(fresh, directory)  # over an empty directory: atomic


def lower_watch_limit(pid: int) -> None:
    """Set the follower's user namespace's inotify watch limit to 0: every new watch gets ENOSPC."""
    limit = ["sh", "-c", "echo 0 > /proc/sys/user/max_inotify_watches"]
    subprocess.run(["nsenter", "--user", "--target", str(pid), *limit], check=True, timeout=GENEROUS)


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_watch_limit_reached_on_rewatch(kind: str, exit_dir: Path, spawn: type[Child]) -> None:
    argv = ["unshare", "--user", "--map-root-user", *front_end(kind, exit_dir, as_nobody=False)]
    follower = spawn(argv, env_with(EXITDIR_POLL_INTERVAL=RETRY_INTERVAL), merge_stderr=True)
    follower.read_until("ready")
    lower_watch_limit(follower.pid)
    replace_directory(exit_dir, 0o755)
    assert "ENOSPC" in follower.read_until(FELL_BACK)
    assert ended_by_the_marker(follower, kind, exit_dir) < WITHIN


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_directory_recreated_unreadable_for_a_moment(
    kind: str, shared_exit_dir: Path, spawn: type[Child]
) -> None:
    follower = spawn(
        front_end(kind, shared_exit_dir, as_nobody=True),
        env_with(EXITDIR_POLL_INTERVAL=RETRY_INTERVAL),
        merge_stderr=True,
    )
    follower.read_until("ready")
    replace_directory(shared_exit_dir, 0o700)  # root's own: a follower running as nobody cannot watch it
    assert "EACCES" in follower.read_until(FELL_BACK)
    os.chmod(shared_exit_dir, 0o755)
    assert ended_by_the_marker(follower, kind, shared_exit_dir) < WITHIN
