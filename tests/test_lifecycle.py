"""`exitdir follow`'s lifecycle policies (issue 14): a helper stopped on purpose is success,
`--hold-on-term` keeps it running while the app drains, `--linger` stays idle after the marker.

Real wrappers in real processes, sent real signals, wrapping a real helper (children/drainer.py) that says
what it receives; the wrapper's stderr is read as lines of the same pipe, so its messages are handshakes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _support import EXITDIR, GENEROUS, QUIET_PERIOD, Child

DRAINER = [sys.executable, str(Path(__file__).parent / "children" / "drainer.py")]
HELPER = DRAINER[0]  # as the wrapper names it


def follow(spawn: type[Child], exit_dir: Path, *options: str, mode: str = "die") -> tuple[Child, int]:
    """`exitdir follow OPTIONS -- drainer MODE`, once its helper runs: the wrapper and the helper's pid."""
    wrapper = spawn(
        [*EXITDIR, "follow", "--dir", str(exit_dir), *options, "--", *DRAINER, mode], merge_stderr=True
    )
    while not (line := wrapper.read_until("ready ")).startswith("ready "):
        pass  # the wrapper's own line (`proxy is ready`)
    return wrapper, int(line.split()[1])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def mark(exit_dir: Path, code: int = 0) -> None:
    subprocess.run(
        [*EXITDIR, "exit", "--dir", str(exit_dir), "--code", str(code)], check=True, timeout=GENEROUS
    )


# --- 1. stopped on purpose is success -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "policy", "status"),
    [
        ("die", "zero", 0),  # killed by the SIGTERM the wrapper was sent: it used to exit 143
        ("exit143", "zero", 0),  # exits 128 + SIGTERM, as a shell would report it
        ("exit1", "zero", 1),  # a drain that failed still fails
        ("die", "leader", 0),  # no marker to mirror: the stop was asked for
        ("die", "child", 143),  # the helper's own status, faithfully
        ("exit143", "child", 143),
    ],
)
def test_sigterm_to_follow_is_success_when_the_helper_ends_by_it(
    exit_dir: Path, spawn: type[Child], mode: str, policy: str, status: int
) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--exit-code", policy, mode=mode)
    wrapper.signal(signal.SIGTERM)
    assert wrapper.wait() == status
    out, _ = wrapper.rest()
    assert "Traceback" not in out
    if status == 0:
        assert "after exitdir was asked to stop: status 0 (--exit-code child: 143)" in out


@pytest.mark.parametrize(("policy", "status"), [("zero", 0), ("child", 130)])
def test_ctrl_c_to_follow_is_success_when_the_helper_ends_by_it(
    exit_dir: Path, spawn: type[Child], policy: str, status: int
) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--exit-code", policy)
    wrapper.signal(signal.SIGINT)
    assert wrapper.wait() == status


def test_a_helper_ending_by_a_signal_nobody_asked_the_wrapper_for_keeps_its_status(
    exit_dir: Path, spawn: type[Child]
) -> None:
    # SIGTERM sent to the helper alone, not to the wrapper: not a stop request, so 143 passes through.
    wrapper, helper = follow(spawn, exit_dir)
    os.kill(helper, signal.SIGTERM)
    assert wrapper.wait() == 143


def test_the_stop_only_follower_stopped_by_sigterm_or_sigint_exits_zero(
    exit_dir: Path, spawn: type[Child]
) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        wrapper = spawn(
            [*EXITDIR, "follow", "--dir", str(exit_dir), "--pid-file", str(exit_dir.parent / "none")],
            merge_stderr=True,
        )
        _wait_until_watching(wrapper.pid)
        wrapper.signal(signum)
        assert wrapper.wait() == 0, signal.Signals(signum).name
        assert "Traceback" not in wrapper.rest()[0]


def _wait_until_watching(pid: int) -> None:
    """Until ``pid`` has SIGTERM unblocked and a handler for it: the stop-only follower waits then. Polls
    /proc, since a stop-only follower prints nothing as it starts waiting."""
    deadline = time.monotonic() + GENEROUS
    term = 1 << (signal.SIGTERM - 1)
    while True:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        if not int(fields["SigBlk"], 16) & term and int(fields["SigCgt"], 16) & term:
            return
        assert time.monotonic() < deadline, "the stop-only follower never started waiting"
        time.sleep(0.005)  # a poll of /proc for a state, not a synchronisation by time


# --- 2. --hold-on-term --------------------------------------------------------------------------------


def test_hold_on_term_keeps_the_helper_running_until_the_marker(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, helper = follow(spawn, exit_dir, "--hold-on-term", "60")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until(f"SIGTERM: holding {HELPER} until the marker appears, at most 60 s")
    wrapper.signal(signal.SIGUSR1)  # forwarded as ever: the helper answers, so it runs and never got TERM
    wrapper.expect("alive")
    mark(exit_dir)
    wrapper.read_until("leader signalled (exitFile: code 0)")
    wrapper.read_until(f"stopping {HELPER}")
    assert wrapper.wait() == 0
    assert gone(helper)


def test_hold_on_term_stops_the_helper_when_its_time_is_up(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--hold-on-term", "0.5", mode="exit143")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until(f"holding {HELPER}")
    wrapper.read_until("no marker within 0.5 s of SIGTERM")
    wrapper.read_until(f"stopping {HELPER}")
    wrapper.expect("TERM")  # the stop signal, sent by the wrapper at the end of the hold
    assert wrapper.wait() == 0  # stopped on purpose (exits 143): --exit-code zero


def test_a_helper_that_ignores_the_stop_is_killed_after_the_grace_and_that_is_success(
    exit_dir: Path, spawn: type[Child]
) -> None:
    wrapper, helper = follow(spawn, exit_dir, "--hold-on-term", "0", "--grace", "0.2", mode="ignore")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until("did not exit within 0.2 s of SIGTERM; sending SIGKILL")
    assert wrapper.wait() == 0
    assert gone(helper)


def test_a_second_sigterm_while_holding_stops_the_helper_at_once(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--hold-on-term", "3600", mode="exit143")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until(f"holding {HELPER}")
    wrapper.signal(signal.SIGTERM)  # an impatient operator: not an hour
    wrapper.read_until("SIGTERM again while holding")
    wrapper.read_until(f"stopping {HELPER}")
    wrapper.expect("TERM")
    assert wrapper.wait() == 0


def test_sigint_while_holding_is_forwarded_at_once(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--hold-on-term", "3600")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until(f"holding {HELPER}")
    wrapper.signal(signal.SIGINT)  # interactive: the helper is killed by it, and that was asked for
    assert wrapper.wait() == 0
    assert f"{HELPER} killed by SIGINT after exitdir was asked to stop" in wrapper.rest()[0]


def test_a_helper_that_crashes_while_held_keeps_its_status(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--hold-on-term", "3600")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until(f"holding {HELPER}")
    wrapper.signal(signal.SIGUSR2)  # forwarded: the helper exits 3 on its own
    assert wrapper.wait() == 3


def test_the_timeout_still_ends_a_hold(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--hold-on-term", "3600", "--timeout", "1")
    wrapper.signal(signal.SIGTERM)
    wrapper.read_until(f"holding {HELPER}")
    wrapper.read_until("no marker within 1 s")
    wrapper.read_until(f"stopping {HELPER}")
    assert wrapper.wait() == 124


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--hold-on-term", "soon", "--", "true"],
            "argument --hold-on-term: duration 'soon' is not a number",
        ),
        (
            ["--hold-on-term", "-1", "--", "true"],
            "argument --hold-on-term: duration '-1' is invalid: give zero or more",
        ),
        (["--hold-on-term", "5", "--post", "http://127.0.0.1:9/x"], "--hold-on-term holds a helper back"),
    ],
)
def test_hold_on_term_is_refused_in_one_usage_line(tmp_path: Path, argv: list[str], message: str) -> None:
    result = subprocess.run(
        [*EXITDIR, "follow", "--dir", str(tmp_path), *argv],
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("exitdir: usage: "), result.stderr
    assert message in result.stderr, result.stderr


# --- 3. --linger --------------------------------------------------------------------------------------


def _context_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def _assert_idle_holding_nothing(pid: int, exit_dir: Path) -> None:
    """``pid`` sleeps in the kernel and wakes up not once in a quiet period (a bound, not a timing: a
    timer of any period shorter than that would show), holding no inotify watch, no descriptor into the
    exit directory and no lock on it."""
    deadline = time.monotonic() + GENEROUS
    while "sigtimedwait" not in Path(f"/proc/{pid}/wchan").read_text():  # it said so just before it blocks
        assert time.monotonic() < deadline, "the wrapper never blocked in sigtimedwait"
        time.sleep(0.005)  # a poll of /proc for a state, not a synchronisation by time
    before = _context_switches(pid)
    time.sleep(QUIET_PERIOD * 2)  # the quiet period in which nothing may happen
    assert _context_switches(pid) == before
    assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S"
    assert "sigtimedwait" in Path(f"/proc/{pid}/wchan").read_text()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        assert not target.startswith(str(exit_dir)), target
        if target == "anon_inode:inotify":  # the process's instance stays open, with no watch left
            assert "inotify wd:" not in Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    inode = f":{os.stat(exit_dir).st_ino} "
    assert not [line for line in Path("/proc/locks").read_text().splitlines() if inode in line]


def test_linger_stays_idle_after_the_marker_until_sigterm(exit_dir: Path, spawn: type[Child]) -> None:
    ready = exit_dir.parent / "ready"
    ready.touch()
    wrapper, helper = follow(spawn, exit_dir, "--linger", "--name", "proxy", "--ready-file", str(ready))

    def announced(within: float) -> int:
        wait = [*EXITDIR, "wait", "--dir", str(exit_dir), "--ready", "proxy", "--timeout", str(within)]
        return subprocess.run(wait, capture_output=True, timeout=GENEROUS, check=False).returncode

    assert announced(GENEROUS) == 0
    mark(exit_dir)
    wrapper.read_until(f"{HELPER} stopped; lingering until a stop signal, then exiting with status 0")
    assert gone(helper)
    assert wrapper.proc.poll() is None
    _assert_idle_holding_nothing(wrapper.pid, exit_dir)
    # the announcement went with the helper
    assert announced(QUIET_PERIOD) == 124
    wrapper.signal(signal.SIGTERM)
    assert wrapper.wait() == 0


@pytest.mark.parametrize(("policy", "status"), [("zero", 0), ("leader", 3), ("child", 0)])
def test_linger_with_the_marker_already_there_never_starts_the_helper(
    exit_dir: Path, spawn: type[Child], policy: str, status: int
) -> None:
    # The native sidecar restarted by the kubelet after it exited: it must not run the helper again, nor exit.
    mark(exit_dir, 3)
    wrapper = spawn(
        [*EXITDIR, "follow", "--dir", str(exit_dir), "--linger", "--exit-code", policy, "--", *DRAINER],
        merge_stderr=True,
    )
    wrapper.read_until(f"not starting {HELPER}")
    wrapper.expect(
        f"exitdir: {HELPER} not started; lingering until a stop signal, then exiting with status "
        f"{status} (--linger)"
    )
    _assert_idle_holding_nothing(wrapper.pid, exit_dir)
    wrapper.signal(signal.SIGINT)
    assert wrapper.wait() == status
    assert "ready" not in wrapper.rest()[0]


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_linger_ends_on_any_stop_signal_an_image_may_name(
    exit_dir: Path, spawn: type[Child], signum: int
) -> None:
    """A STOPSIGNAL of SIGQUIT (nginx's images) or SIGHUP ends the linger as SIGTERM does: ignored, it would
    cost the pod its whole grace period, then a SIGKILL and status 137."""
    mark(exit_dir)
    wrapper = spawn(
        [*EXITDIR, "follow", "--dir", str(exit_dir), "--linger", "--", *DRAINER], merge_stderr=True
    )
    wrapper.read_until("lingering until")
    wrapper.signal(signum)
    wrapper.expect(f"exitdir: {signal.Signals(signum).name}: exiting with status 0")
    assert wrapper.wait() == 0


def test_linger_does_not_hold_a_helper_that_crashed(exit_dir: Path, spawn: type[Child]) -> None:
    # Exiting with its status lets restartPolicy: Always restart it: that is what Always is for.
    wrapper, _ = follow(spawn, exit_dir, "--linger")
    os.kill(_, signal.SIGUSR2)
    assert wrapper.wait() == 3


def test_linger_after_the_timeout_keeps_its_status(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, helper = follow(spawn, exit_dir, "--linger", "--timeout", "0.5")
    wrapper.read_until("lingering until a stop signal, then exiting with status 124")
    assert gone(helper)
    wrapper.signal(signal.SIGTERM)
    assert wrapper.wait() == 124


def test_linger_is_skipped_when_the_stop_was_asked_for(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper, _ = follow(spawn, exit_dir, "--linger")
    wrapper.signal(signal.SIGTERM)
    assert wrapper.wait() == 0
    assert "lingering" not in wrapper.rest()[0]


def test_the_stop_only_follower_lingers_too(exit_dir: Path, spawn: type[Child]) -> None:
    mark(exit_dir)
    wrapper = spawn(
        [*EXITDIR, "follow", "--dir", str(exit_dir), "--linger", "--pid-file", str(exit_dir.parent / "none")],
        merge_stderr=True,
    )
    wrapper.read_until("the targets are stopped; lingering until a stop signal, then exiting with status 0")
    _assert_idle_holding_nothing(wrapper.pid, exit_dir)
    wrapper.signal(signal.SIGTERM)
    assert wrapper.wait() == 0
