"""A follower's failure ends the Job (issue 14, item 5): `exitdir follow --name proxy --report-failure`
writes the marker `proxy` with its helper's status when the helper fails on its own, and holds a lock that
`exitdir lead --stop-on proxy` watches; lead stops its program when the marker appears or the follower is
gone without one, exits with the follower's status and says so in its own marker.

Everything is real: `exitdir follow` and `exitdir lead` processes, helpers and programs that are real Python
processes, failures made by real signals sent to the helper itself (so that, as far as the wrapper knows,
it failed on its own) or to the wrapper (SIGKILL: killed outright). The helper prints its pid and the
program `app started` once they run: those lines are the handshakes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir
from exitdir import _cli
from exitdir._supervise import STOP_REQUEST_SKEW

from _support import EXITDIR, GENEROUS, QUIET_PERIOD, Child, env_with, one_usage_line, python

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# A helper that prints its pid, then runs until SIGUSR1 makes it exit with the status in argv[1]: a
# failure "on its own", since the wrapper never saw that signal.
HELPER = """
import os, signal, sys
signal.signal(signal.SIGUSR1, lambda *_: os._exit(int(sys.argv[1])))
print(os.getpid(), flush=True)
while True:
    signal.pause()
"""
# The program lead runs: it says when it starts and when SIGTERM stops it, and then exits 0.
APP = """
import signal, sys
def stop(*_):
    print("app got TERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("app started", flush=True)
while True:
    signal.pause()
"""


def _helper(code: int = 3) -> tuple[str, ...]:
    return (*python(HELPER), str(code))


@pytest.fixture
def follow(spawn: type[Child], exit_dir: Path, backend: str) -> Iterator[Callable[..., Child]]:
    """``follow(*options, helper=argv)``: an `exitdir follow` of ``exit_dir``, stderr read as lines."""
    started: list[Child] = []

    def start(*options: str, helper: tuple[str, ...] = _helper()) -> Child:
        argv = [*EXITDIR, "follow", "--dir", str(exit_dir), *options, "--", *helper]
        started.append(spawn(argv, env_with(EXITDIR_BACKEND=backend), merge_stderr=True))
        return started[-1]

    yield start
    for follower in started:
        if follower.proc.poll() is None:
            follower.signal(signal.SIGTERM)
            follower.wait()


@pytest.fixture
def lead(spawn: type[Child], exit_dir: Path, backend: str) -> Callable[..., Child]:
    """``lead(*options)``: an `exitdir lead --stop-on ...` of ``exit_dir`` running APP; `app started` read."""

    def start(*options: str, ready: bool = True) -> Child:
        argv = [*EXITDIR, "lead", "--dir", str(exit_dir), *options, "--", *python(APP)]
        leader = spawn(argv, env_with(EXITDIR_BACKEND=backend), merge_stderr=True)
        if ready:
            leader.expect("app started")
        return leader

    return start


def _marker(exit_dir: Path, name: str) -> dict[str, object]:
    doc = json.loads((exit_dir / name).read_text())
    assert isinstance(doc, dict)
    return doc


def _reaped(pid: int) -> None:
    """Kill a helper orphaned when its wrapper was SIGKILLed: ours to end."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- the reporting follower ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "code", "reason"),
    [
        (signal.SIGUSR1, 3, "proxy exited with status 3"),
        (signal.SIGKILL, 137, "proxy killed by SIGKILL"),  # the OOM killer's way
    ],
    ids=["exits-3", "sigkilled"],
)
def test_a_helper_that_fails_on_its_own_is_reported_in_a_marker(
    exit_dir: Path, follow: Callable[..., Child], how: int, code: int, reason: str
) -> None:
    follower = follow("--name", "proxy", "--report-failure")
    os.kill(int(follower.readline()), how)
    follower.expect(f"exitdir: reported the helper's failure as marker proxy (code {code}): {reason}")
    assert follower.wait() == code  # the follower's own status is the helper's, as before
    assert os.listdir(exit_dir) == ["proxy"]
    doc = _marker(exit_dir, "proxy")
    assert (doc["code"], doc["reason"], doc["name"]) == (code, reason, "proxy")


def test_a_helper_that_cannot_start_is_reported(exit_dir: Path, follow: Callable[..., Child]) -> None:
    follower = follow("--name", "proxy", "--report-failure", helper=("no-such-proxy-program",))
    assert follower.wait() == 127
    doc = _marker(exit_dir, "proxy")
    assert (doc["code"], doc["reason"]) == (
        127,
        "proxy not started: command not found: no-such-proxy-program",
    )


def test_a_helper_stopped_by_the_leaders_marker_is_not_reported(
    exit_dir: Path, follow: Callable[..., Child]
) -> None:
    follower = follow("--name", "proxy", "--report-failure")
    follower.readline()
    exitdir.exit(directory=exit_dir)
    assert follower.wait() == 0  # SIGTERM ended the helper (143): stopped on purpose
    assert os.listdir(exit_dir) == ["exitFile"]


def test_a_helper_that_exits_0_on_its_own_is_not_reported(
    exit_dir: Path, follow: Callable[..., Child]
) -> None:
    follower = follow("--name", "proxy", "--report-failure", helper=_helper(0))
    os.kill(int(follower.readline()), signal.SIGUSR1)
    assert follower.wait() == 0
    assert os.listdir(exit_dir) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("handles", [False, True], ids=["killed", "exits-1"])
def test_a_helper_stopped_through_the_wrapper_is_not_reported(
    exit_dir: Path, follow: Callable[..., Child], signum: int, handles: bool
) -> None:
    """The pod deleted: the wrapper gets SIGTERM and relays it; the helper's death is not its failure,
    whether the signal kills it or it handles it and exits 1 (as many proxies do)."""
    stop = f"signal.signal({int(signum)}, lambda *_: os._exit(1))\n" if handles else ""
    follower = follow(
        "--name",
        "proxy",
        "--report-failure",
        helper=(*python(HELPER.replace("print(", stop + "print(", 1)), "3"),
    )
    follower.readline()
    follower.signal(signum)
    assert follower.wait() == (1 if handles else 0)  # killed by what it was asked: stopped on purpose
    assert os.listdir(exit_dir) == []


def test_a_helper_stopped_by_a_timeout_is_not_reported(exit_dir: Path, follow: Callable[..., Child]) -> None:
    follower = follow("--name", "proxy", "--report-failure", "--timeout", "0.2")
    assert follower.wait() == 124
    assert os.listdir(exit_dir) == []


def test_a_report_left_by_an_earlier_run_is_removed(exit_dir: Path, follow: Callable[..., Child]) -> None:
    """A restarted container must not stop at once on its own old report (nor stop its lead again)."""
    exitdir.exit(3, reason="proxy exited with status 3", name="proxy", directory=exit_dir)
    follower = follow("--name", "proxy", "--report-failure")
    follower.read_until(f"exitdir: removed proxy left in {exit_dir} by an earlier run")
    os.kill(int(follower.readline()), signal.SIGUSR1)  # the helper ran: its pid came after the removal
    assert follower.wait() == 3


def test_an_unnamed_follower_ends_on_the_report_as_on_any_marker(
    exit_dir: Path, follow: Callable[..., Child]
) -> None:
    """Go parity: any entry ends a follower that names no leader."""
    other = follow(helper=python("print('up', flush=True); import time; time.sleep(60)"))
    assert other.readline() == "up"
    reporting = follow("--name", "proxy", "--report-failure")
    os.kill(int(reporting.readline()), signal.SIGUSR1)
    assert reporting.wait() == 3
    other.read_until("exitdir: leader signalled (proxy: code 3: proxy exited with status 3)")
    assert other.wait() == 0


def test_the_reporting_follower_is_not_a_leader(exit_dir: Path, follow: Callable[..., Child]) -> None:
    """Its lock lies apart from the leaders': `status` counts no running leader, and an unnamed follower
    does not take it for a leader that vanished when it is killed outright."""
    with exitdir.aware(exit_dir) as token:
        follower = follow("--name", "proxy", "--report-failure")
        helper = int(follower.readline())
        status = subprocess.run(
            [*EXITDIR, "status", "--dir", str(exit_dir), "--json"],
            capture_output=True,
            text=True,
            timeout=GENEROUS,
            check=True,
        )
        assert json.loads(status.stdout)["running"] == 0
        assert not token.wait(QUIET_PERIOD)  # it has seen the follower's lock by now, if it could
        follower.signal(signal.SIGKILL)
        follower.wait()
        _reaped(helper)
        assert not token.wait(QUIET_PERIOD)
    assert os.listdir(exit_dir) == []


# --- lead --stop-on --------------------------------------------------------------------------------------


def test_lead_stops_its_program_when_the_follower_reports_a_failure(
    exit_dir: Path, follow: Callable[..., Child], lead: Callable[..., Child]
) -> None:
    follower = follow("--name", "proxy", "--report-failure")
    helper = int(follower.readline())
    leader = lead("--stop-on", "proxy")
    os.kill(helper, signal.SIGUSR1)  # the proxy crashes with status 3
    assert follower.wait() == 3
    leader.read_until(
        "exitdir: follower proxy reported a failure (proxy: code 3: proxy exited with status 3)"
    )
    assert leader.readline().startswith("exitdir: stopping ")
    leader.expect("app got TERM")
    stopped = "stopped (exited with status 0) because proxy exited with status 3; exiting 3"
    leader.expect(f"exitdir: {sys.executable} {stopped}")
    assert leader.wait() == 3
    doc = _marker(exit_dir, "exitFile")
    assert (doc["code"], doc["reason"]) == (3, "stopped: proxy exited with status 3")


def test_lead_stops_its_program_when_the_follower_is_killed_outright(
    exit_dir: Path, follow: Callable[..., Child], lead: Callable[..., Child]
) -> None:
    follower = follow("--name", "proxy", "--report-failure")
    helper = int(follower.readline())
    leader = lead("--stop-on", "proxy")  # started after the follower: its first look sees it running
    try:
        follower.signal(signal.SIGKILL)  # no marker: the OOM killer took the wrapper
        follower.wait()
        leader.read_until("exitdir: follower proxy is gone without a report")
        assert leader.readline().startswith("exitdir: stopping ")
        leader.expect("app got TERM")
        assert leader.wait() == 1
    finally:
        _reaped(helper)
    assert os.listdir(exit_dir) == ["exitFile"]
    doc = _marker(exit_dir, "exitFile")
    assert doc["code"] == 1
    assert doc["reason"] == (
        "stopped: proxy: follower ended without reporting a failure "
        "(killed outright, stopped from outside, or its helper exited 0)"
    )


def test_lead_stops_its_program_when_the_followers_helper_exits_0(
    exit_dir: Path, follow: Callable[..., Child], lead: Callable[..., Child]
) -> None:
    """Decided: a dependency that is gone is gone, whatever its status. The follower reports no failure
    (it exits 0, no marker), but lead sees its lock go and stops the program, with status 1."""
    follower = follow("--name", "proxy", "--report-failure", helper=_helper(0))
    helper = int(follower.readline())
    leader = lead("--stop-on", "proxy")
    os.kill(helper, signal.SIGUSR1)
    assert follower.wait() == 0
    leader.read_until("exitdir: follower proxy is gone without a report")
    assert leader.readline().startswith("exitdir: stopping ")
    leader.expect("app got TERM")
    assert leader.wait() == 1


def test_lead_keeps_its_program_running_for_unrelated_markers_and_followers(
    exit_dir: Path, follow: Callable[..., Child], lead: Callable[..., Child]
) -> None:
    leader = lead("--stop-on", "proxy")
    exitdir.exit(4, name="other", directory=exit_dir)  # another leader's marker
    unrelated = follow("--name", "db", "--report-failure", "--leader", "exitFile")
    helper = int(unrelated.readline())
    unrelated.signal(signal.SIGKILL)  # another reporting follower, gone without a marker
    unrelated.wait()
    _reaped(helper)
    with pytest.raises(subprocess.TimeoutExpired):
        leader.proc.wait(QUIET_PERIOD)
    leader.signal(signal.SIGTERM)  # relayed to the program, which exits 0
    leader.expect("app got TERM")
    assert leader.wait() == 0
    assert _marker(exit_dir, "exitFile")["code"] == 0


def test_lead_does_not_start_its_program_after_a_reported_failure(
    exit_dir: Path, lead: Callable[..., Child]
) -> None:
    exitdir.exit(3, reason="proxy exited with status 3", name="proxy", directory=exit_dir)
    leader = lead("--stop-on", "proxy", ready=False)
    assert leader.wait() == 3
    out, _ = leader.rest()
    assert "app started" not in out
    assert f"exitdir: error: {sys.executable} not started: proxy exited with status 3" in out
    doc = _marker(exit_dir, "exitFile")
    assert (doc["code"], doc["reason"]) == (3, f"{sys.executable} not started: proxy exited with status 3")


def test_lead_stop_on_uses_signal_and_grace(
    exit_dir: Path, follow: Callable[..., Child], lead: Callable[..., Child]
) -> None:
    """--signal and --grace say how the program is stopped: here SIGINT, which it does not handle."""
    follower = follow("--name", "proxy", "--report-failure")
    helper = int(follower.readline())
    leader = lead("--stop-on", "proxy", "--signal", "INT", "--grace", "5")
    os.kill(helper, signal.SIGUSR1)
    leader.read_until("with SIGINT")
    assert leader.wait() == 3
    assert _marker(exit_dir, "exitFile")["code"] == 3


def test_across_machines_the_followers_lock_is_seen_in_the_liveness_directory(
    exit_dir: Path, tmp_path: Path, follow: Callable[..., Child], spawn: type[Child], backend: str
) -> None:
    """A lead that cannot see this machine's lock table (it watches another exit directory, as a lead on
    another node sees its own kernel's) still sees the follower's lock on LDIR/proxy, byte 3."""
    liveness = tmp_path / "liveness"
    follower = follow("--liveness-dir", str(liveness), "--name", "proxy", "--report-failure")
    helper = int(follower.readline())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = [
        *(*EXITDIR, "lead", "--dir", str(elsewhere), "--liveness-dir", str(liveness)),
        *("--stop-on", "proxy", "--", *python(APP)),
    ]
    env = env_with(EXITDIR_BACKEND=backend, EXITDIR_POLL_INTERVAL="0.05")
    leader = spawn(argv, env, merge_stderr=True)
    leader.expect("app started")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            leader.proc.wait(QUIET_PERIOD)  # the follower is seen running: nothing happens
        follower.signal(signal.SIGKILL)
        follower.wait()
        leader.read_until("exitdir: follower proxy is gone without a report")
        assert leader.wait() == 1
    finally:
        _reaped(helper)


def test_lead_loads_the_followers_machinery_only_with_stop_on(exit_dir: Path) -> None:
    code = (
        "import sys; from exitdir._cli import main; "
        f"status = main(['lead', '--dir', {str(exit_dir)!r}, *sys.argv[1:], '--', 'true']); "
        "print(status, 'exitdir._token' in sys.modules)"
    )
    for options, loaded in (([], False), (["--stop-on", "proxy"], True)):
        done = subprocess.run(
            [*python(code), *options], capture_output=True, text=True, timeout=GENEROUS, check=True
        )
        assert done.stdout == f"0 {loaded}\n"


# --- usage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["follow", "--report-failure", "--", "true"],
            "--report-failure writes a marker named after this follower: add --name NAME",
        ),
        (
            ["follow", "--name", "p", "--", "true"],
            "--name says under which name a helper is announced ready, or its failure reported: add a "
            "--ready-... probe or --report-failure",
        ),
        (
            ["follow", "--name", "p", "--report-failure", "--post", "http://127.0.0.1:9/quit"],
            "--report-failure reports how a helper ended: run one with -- CMD",
        ),
        (
            ["lead", "--stop-on", "exitFile", "--", "true"],
            "--stop-on exitFile names this leader's own marker, written when CMD ends: give the --name of a "
            "follow --report-failure",
        ),
        (["lead", "--stop-on", "a/b", "--", "true"], "argument --stop-on: marker name 'a/b' is a"),
    ],
)
def test_bad_options_are_one_usage_line(
    exit_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    err = one_usage_line(capsys, [argv[0], "--dir", str(exit_dir), *argv[1:]])
    assert err.startswith(f"exitdir: usage: {expected}")
    assert os.listdir(exit_dir) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["follow", "--name", "p", "--report-failure", "--", "true"],
            "--report-failure writes its marker into the exit directory: set EXIT_DIR or pass --dir",
        ),
        (
            ["lead", "--stop-on", "p", "--", "true"],
            "--stop-on watches the exit directory for a follower's marker: set EXIT_DIR or pass --dir",
        ),
    ],
)
def test_the_options_need_a_directory(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert _cli.main(argv) == 2
    assert capsys.readouterr().err == f"exitdir: usage: {expected}\n"


# A program that drains on SIGTERM until SIGUSR1 says it is done; a second SIGTERM cuts the draining short.
DRAINING_APP = """
import signal, sys
def term(*_):
    if term.seen:
        print("second TERM", flush=True)
        sys.exit(5)
    term.seen = True
    print("draining", flush=True)
term.seen = False
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))
print("app started", flush=True)
while True:
    signal.pause()
"""


def test_a_pod_deleted_stops_the_follower_too_and_lead_lets_its_program_drain(
    spawn: type[Child], exit_dir: Path, backend: str, follow: Callable[..., Child]
) -> None:
    """The kubelet sends SIGTERM to every container at once. The reporting follower's helper ends by it
    (no report) and its lock goes; lead, sent SIGTERM itself, relays it and must not read the follower's
    end as a failure: no second SIGTERM cuts the program's draining short, and lead exits with its status."""
    follower = follow("--name", "proxy", "--report-failure")
    follower.readline()
    argv = [*EXITDIR, "lead", "--dir", str(exit_dir), "--stop-on", "proxy", "--", *python(DRAINING_APP)]
    env = env_with(EXITDIR_BACKEND=backend, EXITDIR_POLL_INTERVAL="0.05")
    leader = spawn(argv, env, merge_stderr=True)
    leader.expect("app started")  # the follower was running before: lead's first look saw it
    leader.signal(signal.SIGTERM)
    leader.expect("draining")
    follower.signal(signal.SIGTERM)
    assert follower.wait() == 0
    with pytest.raises(subprocess.TimeoutExpired):
        leader.proc.wait(QUIET_PERIOD)  # six looks at the follower's lock: still draining
    leader.signal(signal.SIGUSR1)  # relayed: the program is done draining
    assert leader.wait() == 0
    assert _marker(exit_dir, "exitFile")["code"] == 0


def test_a_follower_stopped_a_moment_before_lead_is_not_a_failure(
    spawn: type[Child], exit_dir: Path, backend: str, follow: Callable[..., Child]
) -> None:
    """The kubelet signals a pod's containers in parallel: the follower's SIGTERM may come first, and its
    lock go before lead is sent its own. lead waits STOP_REQUEST_SKEW before acting on a follower gone
    without a report, so its own SIGTERM, coming within that, makes it a deletion, not a failure."""
    follower = follow("--name", "proxy", "--report-failure")
    follower.readline()
    argv = [*EXITDIR, "lead", "--dir", str(exit_dir), "--stop-on", "proxy", "--", *python(DRAINING_APP)]
    leader = spawn(argv, env_with(EXITDIR_BACKEND=backend, EXITDIR_POLL_INTERVAL="0.05"), merge_stderr=True)
    leader.expect("app started")
    follower.signal(signal.SIGTERM)
    assert follower.wait() == 0
    with pytest.raises(subprocess.TimeoutExpired):
        leader.proc.wait(QUIET_PERIOD)  # six looks: lead has seen the follower go, and waits for a SIGTERM
    leader.signal(signal.SIGTERM)
    leader.expect("draining")  # the relayed SIGTERM, and no "follower proxy is gone" before it
    leader.signal(signal.SIGUSR1)
    assert leader.wait() == 0
    assert _marker(exit_dir, "exitFile")["code"] == 0


def test_a_follower_that_ended_on_another_leaders_marker_is_not_a_failure(
    spawn: type[Child], exit_dir: Path, backend: str, follow: Callable[..., Child]
) -> None:
    """A follower of another leader (`--leader other`) ends, on purpose, when that leader's marker
    appears; lead cannot know whom it follows, so a follower gone after some other marker came is no
    failure, and the program runs on."""
    follower = follow("--name", "proxy", "--report-failure", "--leader", "other")
    follower.readline()
    argv = [*EXITDIR, "lead", "--dir", str(exit_dir), "--stop-on", "proxy", "--", *python(APP)]
    leader = spawn(argv, env_with(EXITDIR_BACKEND=backend, EXITDIR_POLL_INTERVAL="0.05"), merge_stderr=True)
    leader.expect("app started")  # the follower was running before: lead's first look saw it
    exitdir.exit(0, name="other", directory=exit_dir)
    assert follower.wait() == 0
    with pytest.raises(subprocess.TimeoutExpired):
        leader.proc.wait(STOP_REQUEST_SKEW + QUIET_PERIOD)  # not stopped, even after the skew
    leader.signal(signal.SIGTERM)
    leader.expect("app got TERM")
    assert leader.wait() == 0
