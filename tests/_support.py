"""Helpers for tests: real child processes read line by line against a deadline."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exitdir import _cli

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

BACKENDS = ("inotify", "poll")
POLL_INTERVAL = 0.05
# A deadline for things that should take milliseconds: generous, because the machines are noisy.
GENEROUS = 20.0
# How long to keep looking before concluding that something did *not* happen: several poll intervals.
QUIET_PERIOD = 0.3
EXITDIR = [sys.executable, "-m", "exitdir"]


class Child:
    """A real subprocess whose stdout is read line by line against a deadline, never with a sleep."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        merge_stderr: bool = False,
        **kwargs: object,
    ) -> None:
        """``merge_stderr``: read stderr as lines of stdout too (a warning can then be a handshake)."""
        self.args = list(args)
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            env=env,
            **kwargs,
        )
        self._buffer = b""
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def readline(self, timeout: float = GENEROUS) -> str:
        """The next line of stdout (without newline); '' at end of file. Fails after ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no line from {self.args} within {timeout} s; so far {self._buffer!r}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line.decode()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        text = line.decode()
        self.lines.append(text)
        return text

    def read_until(self, fragment: str, timeout: float = GENEROUS) -> str:
        """Read lines until one contains ``fragment``; return it. Fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if fragment in line:
                return line
            if line == "" and self.proc.poll() is not None:
                pytest.fail(f"{self.args} ended before saying {fragment!r}; it said {self.lines}")

    def expect(self, expected: str, timeout: float = GENEROUS) -> None:
        line = self.readline(timeout)
        assert line == expected, f"expected {expected!r} from {self.args}, got {line!r}"

    def wait(self, timeout: float = GENEROUS) -> int:
        try:
            return int(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.args} did not exit within {timeout} s")

    def rest(self, timeout: float = GENEROUS) -> tuple[str, str]:
        """Wait for exit and return the remaining stdout and all of stderr."""
        out, err = self.proc.communicate(timeout=timeout)
        return (self._buffer + out).decode(), (err or b"").decode()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=GENEROUS)
        except subprocess.TimeoutExpired:  # a grandchild still holds the pipes: never hang the suite on it
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            self.proc.wait()


def python(code: str) -> list[str]:
    """argv running ``code`` in a fresh interpreter, as a real process."""
    return [sys.executable, "-c", code]


def env_with(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# Becomes the unprivileged user in a child, for checks that permission bits bind (root ignores them). The
# modules exitdir imports lazily are loaded first: this machine's interpreter lives under /root, which
# nobody cannot read, whereas a real non-root container has a readable Python.
DROP_TO_NOBODY = (
    "import os, json, math, pathlib, logging, functools, ctypes, select, struct\n"
    "import exitdir._cli, exitdir._leader, exitdir._token, exitdir._async, exitdir._watch._inotify\n"
    "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
)


def world_searchable_dir() -> str:
    """A fresh directory under /tmp that other users may enter (pytest's tmp_path is 0700)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="exitdir-test-")
    os.chmod(path, 0o755)
    return path


@contextmanager
def lock_held_behind_bindfs(tmp_path: Path) -> Iterator[tuple[Path, Callable[[str], None]]]:
    """A file on a bindfs mount that forwards lock requests, whose lock the test holds: a process asking
    for it waits on a FUSE request its server has taken but not answered, uninterruptibly (state D), so
    even SIGKILL waits, as on a dead NFS server. Yields the file's path on the mount and ``blocked(who)``,
    which returns once a request waits behind the lock (polled in /proc/locks, since nothing can say
    "blocked" from inside the kernel). On leaving, the lock is released (the killed process can finish
    dying) and the mount is lazily unmounted."""
    source, mount = tmp_path / "source", tmp_path / "mount"
    source.mkdir()
    mount.mkdir()
    (source / "lock").touch()
    bindfs = ["bindfs", "--multithreaded", "--enable-lock-forwarding", str(source), str(mount)]
    subprocess.run(bindfs, check=True, timeout=GENEROUS)
    holder = os.open(source / "lock", os.O_RDWR)
    waiter = f":{os.stat(source / 'lock').st_ino} "

    def blocked(who: str) -> None:
        deadline = time.monotonic() + GENEROUS
        while not any(
            "->" in line and waiter in line for line in Path("/proc/locks").read_text().splitlines()
        ):
            assert time.monotonic() < deadline, f"{who} never blocked on the lock"
            time.sleep(0.01)  # polling the kernel's lock table for a state, not a synchronisation by time

    try:
        fcntl.lockf(holder, fcntl.LOCK_EX)
        yield mount / "lock", blocked
    finally:
        os.close(holder)
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False, timeout=GENEROUS)


def one_usage_line(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> str:
    """Run the command line in-process: it must exit 2 with nothing on stdout and one usage line on
    stderr, which is returned (`exitdir: usage: ...`)."""
    assert _cli.main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("exitdir: usage: ")
    assert err.count("\n") == 1
    return err
