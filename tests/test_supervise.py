"""`exitdir lead` and `exitdir follow` as process supervisors, with real processes and real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import exitdir
from exitdir._cli import main
from exitdir._signals import FORWARDED

from _support import EXITDIR, GENEROUS, QUIET_PERIOD, Child, env_with, python

CHILDREN = Path(__file__).parent / "children"
SIGPRINT = [sys.executable, str(CHILDREN / "sigprint.py")]
WRAPPERS = ("lead", "follow")
# A shell child that dies of a signal without leaving a core file behind.
DIE_BY = "ulimit -c 0; kill -{} $$"


def wrap(mode: str, exit_dir: Path, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    return [*EXITDIR, mode, "--dir", str(exit_dir), *options, "--", *command]


def marker(exit_dir: Path, name: str = "exitFile") -> exitdir.Marker:
    with exitdir.aware(exit_dir) as token:
        assert token.marker is not None, f"no marker in {exit_dir}"
        assert token.marker.name == name
        return token.marker


@pytest.mark.parametrize("mode", WRAPPERS)
def test_signals_are_forwarded_but_never_sigurg_or_sigchld(
    mode: str, exit_dir: Path, spawn: type[Child]
) -> None:
    wrapper = spawn(wrap(mode, exit_dir, *SIGPRINT))
    wrapper.expect("ready")
    for signum in (
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGURG,  # must not arrive
        signal.SIGUSR2,
        signal.SIGCHLD,  # must not arrive
        signal.SIGWINCH,
        signal.SIGCONT,
        signal.SIGALRM,
    ):
        wrapper.signal(signum)
        if signum not in (signal.SIGURG, signal.SIGCHLD):
            wrapper.expect(signal.Signals(signum).name.removeprefix("SIG"))
    wrapper.signal(signal.SIGTERM)
    wrapper.expect("TERM")
    assert wrapper.wait() == 0
    out, _ = wrapper.rest()
    assert out == ""  # in particular, no URG or CHLD after the others


def test_forwarded_set_excludes_what_must_not_be_forwarded() -> None:
    for never in (signal.SIGCHLD, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP):
        assert never not in FORWARDED
    for always in (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGWINCH,
    ):
        assert always in FORWARDED
    assert signal.SIGRTMIN in FORWARDED


@pytest.mark.parametrize("mode", WRAPPERS)
def test_signal_before_the_child_started_is_delivered_once_it_has(mode: str, exit_dir: Path) -> None:
    # SIGTERM is made pending (blocked) before the wrapper even starts; the wrapper unblocks it before it
    # spawns the child, and must deliver it to the child rather than lose it (scuttle#34).
    launcher = (
        "import os, signal, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        f"os.execv(sys.executable, {wrap(mode, exit_dir, 'sleep', '60')!r})\n"
    )
    result = subprocess.run(python(launcher), capture_output=True, text=True, timeout=GENEROUS, check=False)
    # follow was asked to stop and its helper ended by that: stopped on purpose, 0 (issue 14)
    assert result.returncode == (143 if mode == "lead" else 0), result.stderr
    if mode == "lead":
        assert (marker(exit_dir).code, marker(exit_dir).reason) == (143, "killed by SIGTERM")


@pytest.mark.parametrize("mode", WRAPPERS)
def test_exit_status_matrix_0_to_255(mode: str, exit_dir: Path) -> None:
    for code in range(256):
        assert main([mode, "-q", "--dir", str(exit_dir), "--", "sh", "-c", f"exit {code}"]) == code
        if mode == "lead":
            assert marker(exit_dir).code == code
    if mode == "follow":
        assert os.listdir(exit_dir) == []


# Every signal whose default action ends the process.
SIGNALS_THAT_KILL = (
    *("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL"),
    *("USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM", "XCPU", "SYS"),
)


@pytest.mark.parametrize("mode", WRAPPERS)
def test_signal_exit_matrix_is_128_plus_signal(mode: str, exit_dir: Path) -> None:
    for name in SIGNALS_THAT_KILL:
        signum = signal.Signals[f"SIG{name}"]
        status = main([mode, "-q", "--dir", str(exit_dir), "--", "sh", "-c", DIE_BY.format(name)])
        assert status == 128 + signum, name
        if mode == "lead":
            assert (marker(exit_dir).code, marker(exit_dir).reason) == (128 + signum, f"killed by SIG{name}")


@pytest.mark.parametrize("mode", WRAPPERS)
def test_command_not_found_is_127_and_not_executable_is_126(
    mode: str, exit_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([mode, "--dir", str(exit_dir), "--", "no-such-command-exitdir"]) == 127
    assert "exitdir: error: command not found: no-such-command-exitdir" in capsys.readouterr().err
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho never\n")  # no execute bit
    assert main([mode, "--dir", str(exit_dir), "--", str(script)]) == 126
    assert main([mode, "--dir", str(exit_dir), "--", str(tmp_path)]) == 126  # a directory
    assert f"cannot execute {tmp_path}" in capsys.readouterr().err
    if mode == "lead":
        # Followers are told even when the leader could not start, or they would wait forever.
        assert marker(exit_dir).code == 126


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lead"], "no command given"),
        (["lead", "--"], "no command given"),
        (["follow", "--signal", "FOO", "--", "true"], "not a signal"),
        (["follow", "--grace", "x", "--", "true"], "not a number"),
        (["follow", "--exit-code", "maybe", "--", "true"], "invalid choice"),
        (["follow", "--timeout", "-3", "--", "true"], "zero or more"),
    ],
)
def test_wrapper_usage_errors_are_status_two_in_one_line(
    argv: list[str], message: str, exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv[:1], "--dir", str(exit_dir), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exitdir: usage: ")
    assert message in err
    assert err.count("\n") == 1


def test_lead_writes_the_childs_status_and_exits_with_it(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("lead", exit_dir, "sh", "-c", "echo working; exit 3"))
    wrapper.expect("working")  # the child's output passes straight through, unprefixed
    assert wrapper.wait() == 3
    found = marker(exit_dir)
    assert (found.code, found.reason) == (3, "exited with status 3")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_lead_itself_signalled_forwards_and_reports(exit_dir: Path, spawn: type[Child], signum: int) -> None:
    wrapper = spawn(wrap("lead", exit_dir, *SIGPRINT, "INT", "ignore"))
    wrapper.expect("ready")
    wrapper.signal(signum)
    wrapper.expect(signal.Signals(signum).name.removeprefix("SIG"))
    # The child survives the signal here (it only prints it); kill it for real to see the report.
    child_pid = int(Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split()[0])
    os.kill(child_pid, signal.SIGKILL)
    assert wrapper.wait() == 128 + signal.SIGKILL
    assert (marker(exit_dir).code, marker(exit_dir).reason) == (137, "killed by SIGKILL")


def test_lead_killed_by_term_reports_143(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("lead", exit_dir, "sh", "-c", "echo ready; exec sleep 60"))
    follower = spawn([*EXITDIR, "wait", "--verbose", "--dir", str(exit_dir)])
    wrapper.expect("ready")
    wrapper.signal(signal.SIGTERM)
    assert wrapper.wait() == 143
    follower.expect("exitFile: code 143: killed by SIGTERM")


def test_follow_stops_helper_on_marker_and_exits_zero_by_default(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("follow", exit_dir, *SIGPRINT))
    wrapper.expect("ready")
    exitdir.exit(3, reason="leader failed", directory=exit_dir)
    wrapper.expect("TERM")
    assert wrapper.wait() == 0  # a helper stopped on purpose does not fail the Job (kubexit#19)
    _, err = wrapper.rest()
    assert "exitdir: leader signalled (exitFile: code 3: leader failed)\nexitdir: stopping " in err


@pytest.mark.parametrize(("policy", "status"), [("zero", 0), ("leader", 3), ("child", 143)])
def test_follow_exit_code_policies(policy: str, status: int, exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(
        wrap("follow", exit_dir, "sh", "-c", "echo ready; exec sleep 60", options=("--exit-code", policy))
    )
    wrapper.expect("ready")
    exitdir.exit(3, directory=exit_dir)
    assert wrapper.wait() == status


def test_follow_leader_policy_with_go_marker_is_zero_and_unknown_is_one(exit_dir: Path) -> None:
    (exit_dir / "exitFile").write_text("")
    assert main(["follow", "-q", "--exit-code", "leader", "--dir", str(exit_dir), "--", "sleep", "60"]) == 0
    (exit_dir / "exitFile").write_text("garbage")
    assert main(["follow", "-q", "--exit-code", "leader", "--dir", str(exit_dir), "--", "sleep", "60"]) == 1


def test_follow_with_marker_already_there_does_not_start_the_helper(
    exit_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exitdir.exit(directory=exit_dir)
    witness = tmp_path / "started"
    assert main(["follow", "--dir", str(exit_dir), "--", "touch", str(witness)]) == 0
    assert not witness.exists()
    assert "not starting touch" in capsys.readouterr().err


def test_follow_helper_exiting_on_its_own_passes_its_status(exit_dir: Path) -> None:
    for policy in ("zero", "leader", "child"):
        assert (
            main(["follow", "--exit-code", policy, "--dir", str(exit_dir), "--", "sh", "-c", "exit 7"]) == 7
        )


def test_follow_grace_then_sigkill_with_warning_and_nothing_left_behind(
    exit_dir: Path, spawn: type[Child]
) -> None:
    # The helper ignores TERM, and so does a grandchild in its process group.
    helper = "trap '' TERM; sleep 600 & echo $!; echo ready; wait"
    wrapper = spawn(wrap("follow", exit_dir, "sh", "-c", helper, options=("--grace", "0.5", "--subreaper")))
    grandchild = int(wrapper.readline())
    wrapper.expect("ready")
    helper_pid = int(Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split()[0])
    exitdir.exit(directory=exit_dir)
    assert wrapper.wait() == 0
    _, err = wrapper.rest()
    assert f"sh (pid {helper_pid}) did not exit within 0.5 s of SIGTERM; sending SIGKILL" in err
    for pid in (helper_pid, grandchild):
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} was left behind"


def test_follow_signal_option(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("follow", exit_dir, *SIGPRINT, "INT", options=("--signal", "SIGINT")))
    wrapper.expect("ready")
    exitdir.exit(directory=exit_dir)
    wrapper.expect("INT")
    assert wrapper.wait() == 0


def test_follow_timeout_stops_the_helper_with_status_124(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("follow", exit_dir, *SIGPRINT, options=("--timeout", str(QUIET_PERIOD))))
    wrapper.expect("ready")
    wrapper.expect("TERM")
    assert wrapper.wait() == 124
    _, err = wrapper.rest()
    assert f"exitdir: no marker within {QUIET_PERIOD:g} s\nexitdir: stopping " in err


@pytest.mark.parametrize("mode", WRAPPERS)
def test_signals_reach_the_whole_process_group(mode: str, exit_dir: Path, spawn: type[Child]) -> None:
    # The signal printer is a grandchild here, behind a process that blocks every signal and relays none:
    # whatever the printer reports reached it through the process group.
    middle = (
        "import signal, subprocess, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())\n"
        f"sys.exit(subprocess.call({SIGPRINT!r}))\n"
    )
    wrapper = spawn(wrap(mode, exit_dir, *python(middle)))
    wrapper.expect("ready")
    wrapper.signal(signal.SIGUSR1)
    wrapper.expect("USR1")
    if mode == "follow":
        exitdir.exit(directory=exit_dir)  # the stop signal goes to the group too
    else:
        wrapper.signal(signal.SIGTERM)
    wrapper.expect("TERM")
    assert wrapper.wait() == 0


def test_quiet_silences_the_wrappers_messages(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("follow", exit_dir, *SIGPRINT, options=("-q",)))
    wrapper.expect("ready")
    exitdir.exit(directory=exit_dir)
    wrapper.expect("TERM")
    assert wrapper.wait() == 0
    assert wrapper.rest() == ("", "")


@pytest.mark.parametrize("mode", WRAPPERS)
def test_as_pid_1_orphans_are_reaped(mode: str, exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            *wrap(mode, exit_dir, sys.executable, str(CHILDREN / "orphan_maker.py")),
        ]
    )
    wrapper.expect("reaped")
    assert wrapper.wait() == 0


def test_subreaper_option_reaps_orphans_outside_a_pid_namespace(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(
        wrap("lead", exit_dir, sys.executable, str(CHILDREN / "orphan_maker.py"), options=("--subreaper",))
    )
    wrapper.expect("reaped")
    assert wrapper.wait() == 0


def test_as_pid_1_sigterm_is_handled_and_forwarded(exit_dir: Path, spawn: type[Child]) -> None:
    # PID 1 ignores signals it has no handler for; the wrapper has one and forwards.
    unshare = spawn(["unshare", "--pid", "--fork", "--mount-proc", *wrap("lead", exit_dir, *SIGPRINT)])
    unshare.expect("ready")
    wrapper_pid = int(Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()[0])
    os.kill(wrapper_pid, signal.SIGTERM)
    unshare.expect("TERM")
    assert unshare.wait() == 0
    assert marker(exit_dir).code == 0


def test_env_is_passed_to_the_child(exit_dir: Path, spawn: type[Child]) -> None:
    wrapper = spawn(wrap("lead", exit_dir, "sh", "-c", 'echo "$GREETING"'), env=env_with(GREETING="hello"))
    wrapper.expect("hello")
    assert wrapper.wait() == 0
