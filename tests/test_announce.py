"""Readiness between exitdir wrappers (issue 13): `exitdir follow --name X --ready-...` announces its helper
ready; `exitdir lead --after X` and `exitdir wait --ready X` wait for it.

Everything is real: the followers are `exitdir follow` processes wrapping real helpers, the probes hit
real loopback listeners, files and commands; the announcement is a real lock seen in /proc/locks. The
follower says `X is ready (...): announced` once it holds it, which is the handshake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir
from exitdir import _cli
from exitdir._linux import process
from exitdir._ready import Dependency, announce_when_ready
from exitdir._supervise import run_probe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

from _support import EXITDIR, GENEROUS, QUIET_PERIOD, Child, env_with, one_usage_line, python

LISTENER = """
import socket, sys
server = socket.create_server(('127.0.0.1', 0))
print(server.getsockname()[1], flush=True)
while True:
    server.accept()[0].close()
"""


@pytest.fixture
def follow(spawn: type[Child], exit_dir: Path) -> Iterator[Callable[..., Child]]:
    """``follow(*options, helper=argv)``: an `exitdir follow` of ``exit_dir``, stderr read as lines. One still
    running at the end gets SIGTERM, which it relays to its helper, so no helper outlives the test."""
    started: list[Child] = []

    def start(*options: str, helper: tuple[str, ...] = ("sleep", "60")) -> Child:
        argv = [*EXITDIR, "follow", "--dir", str(exit_dir), *options, "--", *helper]
        started.append(spawn(argv, merge_stderr=True))
        return started[-1]

    yield start
    for follower in started:
        if follower.proc.poll() is None:
            follower.signal(signal.SIGTERM)
            follower.wait()


def _wait_ready(exit_dir: Path, name: str, timeout: float, *options: str) -> int:
    argv = [*EXITDIR, "wait", "--dir", str(exit_dir), "--ready", name, "--timeout", str(timeout), *options]
    return subprocess.run(argv, capture_output=True, timeout=GENEROUS, check=False).returncode


def test_lead_after_starts_its_program_only_once_the_follower_announces_its_helper(
    exit_dir: Path, tmp_path: Path, spawn: type[Child], follow: Callable[..., Child]
) -> None:
    flag = tmp_path / "proxy-ready"
    follower = follow("--name", "proxy", "--ready-file", str(flag))
    lead = spawn(
        [*EXITDIR, "lead", "--dir", str(exit_dir), "--after", "proxy", "--", "sh", "-c", "echo started"],
        merge_stderr=True,
    )
    lead.read_until(
        "exitdir: waiting for proxy (announced by exitdir follow --name proxy) before starting sh"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        lead.proc.wait(QUIET_PERIOD)  # the helper is running but not ready: the program waits
    flag.write_text("")
    follower.read_until(f"exitdir: proxy is ready ({flag}): announced")
    lead.read_until("started")
    assert lead.wait() == 0
    follower.read_until("leader signalled")  # and the helper is stopped by the marker as usual
    assert follower.wait() == 0


def test_wait_ready_returns_once_a_tcp_probe_passes(
    exit_dir: Path, spawn: type[Child], follow: Callable[..., Child]
) -> None:
    """The helper is the listener itself: the follower probes the port it prints."""
    helper = spawn(python(LISTENER))
    port = helper.readline()
    assert _wait_ready(exit_dir, "db", 0.2) == 124  # nobody announces db yet
    follower = follow("--name", "db", "--ready-tcp", port)
    follower.read_until(f"exitdir: db is ready (127.0.0.1:{port}): announced")
    done = subprocess.run(
        [*EXITDIR, "wait", "--dir", str(exit_dir), "--ready", "db", "--timeout", "5", "--verbose"],
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "db ready\n")


def test_the_announcement_creates_no_entry_and_is_not_a_leader(
    exit_dir: Path, spawn: type[Child], follow: Callable[..., Child]
) -> None:
    """Go followers fire on any new entry; our followers count running leaders by their locks: the
    announcement must be neither."""
    follower = follow("--name", "proxy", "--ready-file", "/")
    follower.read_until("proxy is ready")
    assert os.listdir(exit_dir) == []
    status = subprocess.run(
        [*EXITDIR, "status", "--dir", str(exit_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,  # its status says whether followers would end: asserted below from the JSON
    )
    assert json.loads(status.stdout)["running"] == 0
    with exitdir.aware(exit_dir) as token:
        assert not token.wait(QUIET_PERIOD)


def test_a_go_follower_does_not_mistake_the_announcement_for_the_end(
    exit_dir: Path, spawn: type[Child], go_programs: dict[str, Path], follow: Callable[..., Child]
) -> None:
    go_follower = spawn([str(go_programs["gofollower"])], env=env_with(EXIT_DIR=str(exit_dir)))
    go_follower.expect("ready")
    follower = follow("--name", "proxy", "--ready-file", "/")
    follower.read_until("proxy is ready")
    assert _wait_ready(exit_dir, "proxy", 5) == 0
    with pytest.raises(subprocess.TimeoutExpired):
        go_follower.proc.wait(QUIET_PERIOD)
    exitdir.exit(directory=exit_dir)
    go_follower.expect("event exitFile")


@pytest.mark.parametrize("how", ["helper exits", "follower killed"])
def test_the_announcement_ends_with_the_follower(
    exit_dir: Path, tmp_path: Path, spawn: type[Child], how: str, follow: Callable[..., Child]
) -> None:
    pid_file = tmp_path / "helper.pid"
    helper = ("sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60', str(pid_file))
    follower = follow("--name", "proxy", "--ready-file", str(pid_file), helper=helper)
    follower.read_until("proxy is ready")
    assert _wait_ready(exit_dir, "proxy", 5) == 0
    if how == "helper exits":
        os.kill(int(pid_file.read_text()), signal.SIGTERM)  # it ends on its own, as far as follow knows
        assert follower.wait() == 128 + signal.SIGTERM
    else:
        follower.signal(signal.SIGKILL)
        follower.wait()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # orphaned: ours to end
    assert _wait_ready(exit_dir, "proxy", 0.2) == 124  # never "ready" after its helper is gone


def test_a_probe_command_that_fails_is_never_taken_for_ready_even_when_its_status_is_reaped_elsewhere(
    exit_dir: Path, spawn: type[Child], follow: Callable[..., Child]
) -> None:
    """With --subreaper the supervision loop reaps every child that ends, probe commands included; a lost
    status must not read as 0 (subprocess's reading). `false` is probed ~10 times meanwhile."""
    follower = follow("--subreaper", "--name", "db", "--ready-cmd", "false")
    assert _wait_ready(exit_dir, "db", 2.0) == 124
    follower.signal(signal.SIGTERM)
    follower.wait()
    assert "db is ready" not in "\n".join(follower.lines)


def test_a_probe_command_that_passes_announces_under_a_subreaper(
    exit_dir: Path, tmp_path: Path, spawn: type[Child], follow: Callable[..., Child]
) -> None:
    flag = tmp_path / "up"
    probe = f'sh -c \'test -e "$0" || {{ echo "not up yet" >&2; exit 3; }}\' {flag}'
    follower = follow("--subreaper", "--name", "db", "--ready-cmd", probe)
    assert _wait_ready(exit_dir, "db", 0.3) == 124
    flag.write_text("")
    follower.read_until("db is ready")
    assert _wait_ready(exit_dir, "db", 5) == 0


def test_a_follower_says_why_its_helper_is_not_ready(exit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever waits sees only "not announced ready yet": the follower's own log must say why."""
    monkeypatch.setattr("exitdir._ready.FIRST_NOTE", 0.0)
    said: list[tuple[str, str, dict[str, object]]] = []
    noted = threading.Event()

    def say(message: str, event: str = "info", **fields: object) -> None:
        said.append((message, event, fields))
        noted.set()

    probe = "sh -c 'echo refused >&2; exit 2'"
    stop = announce_when_ready(
        "db", [Dependency("cmd", probe)], directory=exit_dir, liveness_dir=None, say=say
    )
    try:
        assert noted.wait(GENEROUS)
    finally:
        stop()
    assert said[0] == (f"db not ready after 0 s: {probe}: refused", "not-ready", {"name": "db"})


def test_across_machines_the_announcement_is_also_a_lock_in_the_liveness_directory(
    exit_dir: Path, tmp_path: Path, spawn: type[Child], follow: Callable[..., Child]
) -> None:
    """A waiter that cannot see this machine's lock table (here: it looks at another exit directory, as
    a follower on another node sees its own kernel's) still sees the lock on LDIR/NAME, byte 2."""
    liveness = tmp_path / "liveness"
    follower = follow("--liveness-dir", str(liveness), "--name", "proxy", "--ready-file", "/")
    follower.read_until("proxy is ready")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _wait_ready(elsewhere, "proxy", 0.2) == 124  # its own kernel's view: nothing
    assert _wait_ready(elsewhere, "proxy", 5, "--liveness-dir", str(liveness)) == 0
    assert (liveness / "proxy").is_file()
    follower.signal(signal.SIGTERM)  # it relays the signal, its helper ends, and so does it
    follower.wait()
    assert _wait_ready(elsewhere, "proxy", 0.2, "--liveness-dir", str(liveness)) == 124


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["follow", "--ready-tcp", "80", "--", "true"],
            "--ready-... probes announce a helper ready under a name",
        ),
        (["follow", "--name", "p", "--", "true"], "--name says under which name a helper is announced ready"),
        (
            ["follow", "--name", "p", "--ready-tcp", "99999", "--", "true"],
            "argument --ready-tcp: '127.0.0.1:99999'",
        ),
        (
            ["follow", "--name", "p", "--ready-cmd", "'open", "--", "true"],
            'argument --ready-cmd: command "\'open"',
        ),
        (
            ["follow", "--name", "p/q", "--ready-file", "/", "--", "true"],
            "argument --name: marker name 'p/q' is a",
        ),
        (["wait", "--ready", "p", "--leader", "q"], "--ready waits for announcements, not for a marker"),
    ],
)
def test_bad_readiness_options_are_one_usage_line(
    exit_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    err = one_usage_line(capsys, [argv[0], "--dir", str(exit_dir), *argv[1:]])
    assert err.startswith(f"exitdir: usage: {expected}")


def test_lead_after_needs_a_directory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXIT_DIR", raising=False)
    assert _cli.main(["lead", "--after", "proxy", "--", "true"]) == 2
    expected = "--after waits for an announcement on the exit directory: set EXIT_DIR or pass --dir"
    assert capsys.readouterr().err == f"exitdir: usage: {expected}\n"


@pytest.mark.parametrize(
    ("kind", "target", "expected"),
    [
        ("socket", "x", "unknown dependency kind 'socket'"),
        ("http", "127.0.0.1:80", "'127.0.0.1:80' is not an http:// or https:// URL"),
        ("tcp", "80", "'80' is not HOST:PORT"),
        ("cmd", "", "command '' names no program"),
        ("after", "", "marker name '' is empty"),
    ],
)
def test_a_bad_dependency_is_an_exitdir_error(kind: str, target: str, expected: str) -> None:
    with pytest.raises(exitdir.ExitDirError, match=f"^{expected}"):
        Dependency(kind, target)


def test_a_probe_command_that_hangs_is_killed_with_its_group_and_is_not_ready(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hanging = ["sh", "-c", f'sleep 60 & echo $! > {pids}; echo "$$" >> {pids}; wait']
    assert run_probe(hanging, timeout=0.5) == (None, "no answer within 0.5 s")
    deadline = time.monotonic() + GENEROUS
    for pid in map(int, pids.read_text().split()):
        while (found := process(pid)) is not None and found.alive:  # SIGKILL lands within moments
            assert time.monotonic() < deadline, f"probe process {pid} outlived its timeout"
            time.sleep(0.01)  # polling /proc for a state; not a synchronisation by time
