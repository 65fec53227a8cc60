"""The liveness directory (issue 12): leaders lock a file of their own there, followers test those locks.

On NFSv4 and SMB the file server keeps such locks, so followers on other machines see them; e2e/ proves
that between two real kernels. Here the locks are this kernel's, on a local filesystem: the same calls,
the same rules. A process that holds only its file's lock, and not the exit directory's, stands in for a
leader on another machine: its death raises no event in the exit directory, as a remote leader's would not.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

import exitdir
from exitdir import _cli
from exitdir._marker import KIND_VANISHED, VANISHED_REASON

from _support import EXITDIR, GENEROUS, POLL_INTERVAL, QUIET_PERIOD, Child, env_with, python

# A leader whose only trace on this machine is its file's lock (bytes 0, and 1 when restartable).
REMOTE_LEADER = (
    "import fcntl, os, struct, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "kind = fcntl.F_WRLCK if sys.argv[3:] == ['exclusive'] else fcntl.F_RDLCK\n"
    "fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi4x', kind, 0, 0, int(sys.argv[2]), 0))\n"
    "print('ready', flush=True)\n"
    "import time; time.sleep(3600)\n"  # until killed
)
LEADER_BLOCK = (
    "import sys, time, exitdir\n"
    "with exitdir.leader(sys.argv[3], directory=sys.argv[1], liveness_dir=sys.argv[2],\n"
    "                    signal_on=sys.argv[4]):\n"
    "    print('ready', flush=True)\n"
    "    time.sleep(3600)\n"
)


@pytest.fixture
def live(tmp_path: Path) -> Path:
    return tmp_path / "exit-liveness"  # beside the exit directory; made by the first leader


def _remote_leader(
    spawn: type[Child],
    live: Path,
    name: str = "exitFile",
    *,
    restartable: bool = False,
    exclusive: bool = False,
) -> Child:
    """``exclusive``: what an SMB follower's lock test holds for an instant, held until killed."""
    live.mkdir(exist_ok=True)
    argv = [*python(REMOTE_LEADER), str(live / name), "2" if restartable else "1"]
    leader = spawn([*argv, "exclusive"] if exclusive else argv)
    leader.expect("ready")
    return leader


def _token(exit_dir: Path, live: Path, backend: str, **kwargs: object) -> exitdir.ExitToken:
    return exitdir.aware(
        exit_dir,
        backend=backend,
        poll_interval=POLL_INTERVAL,
        liveness_dir=live,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("names", [None, ("exitFile",)])
def test_a_leader_seen_only_through_its_file_lock_that_dies_trips_the_follower(
    exit_dir: Path, live: Path, backend: str, spawn: type[Child], names: tuple[str, ...] | None
) -> None:
    """No event comes for a lock released on a file server: inotify followers look on a timer too."""
    leader = _remote_leader(spawn, live)
    with _token(exit_dir, live, backend, names=names) as token:
        assert not token.wait(QUIET_PERIOD)  # seen running
        killed = time.monotonic()
        leader.signal(signal.SIGKILL)
        assert token.wait(GENEROUS)
        took = time.monotonic() - killed
        assert token.marker is not None
        assert (token.marker.kind, token.marker.reason, token.marker.code) == (
            KIND_VANISHED,
            VANISHED_REASON,
            None,
        )
    assert took < GENEROUS
    assert os.listdir(exit_dir) == []


def test_without_the_liveness_directory_such_a_leader_is_not_seen(
    exit_dir: Path, live: Path, spawn: type[Child]
) -> None:
    """The control: the same death, and a follower that was not given the directory waits on."""
    leader = _remote_leader(spawn, live)
    with exitdir.aware(exit_dir, backend="poll", poll_interval=POLL_INTERVAL) as token:
        assert not token.wait(QUIET_PERIOD)
        leader.signal(signal.SIGKILL)
        assert leader.wait() == -signal.SIGKILL
        assert not token.wait(QUIET_PERIOD * 3)


def _its_death_is_not_the_end(exit_dir: Path, live: Path, backend: str, holder: Child) -> None:
    """A follower that has looked while ``holder`` held its lock keeps waiting after it is SIGKILLed."""
    with _token(exit_dir, live, backend) as token:
        assert not token.wait(QUIET_PERIOD)
        holder.signal(signal.SIGKILL)
        assert holder.wait() == -signal.SIGKILL
        assert not token.wait(QUIET_PERIOD * 3)


def test_a_restartable_leader_that_dies_is_not_the_end(
    exit_dir: Path, live: Path, backend: str, spawn: type[Child]
) -> None:
    _its_death_is_not_the_end(exit_dir, live, backend, _remote_leader(spawn, live, restartable=True))


@pytest.mark.parametrize("signal_on", ["always", "success"])
def test_a_leader_holds_its_file_lock_while_it_runs_and_its_marker_comes_first(
    exit_dir: Path, live: Path, backend: str, spawn: type[Child], signal_on: str
) -> None:
    leader = spawn([*python(LEADER_BLOCK), str(exit_dir), str(live), "exitFile", signal_on])
    leader.expect("ready")
    assert os.listdir(live) == ["exitFile"]
    assert os.listdir(exit_dir) == []  # nothing for a Go follower to fire on
    status = _cli.main(
        ["status", "--json", "--dir", str(exit_dir), "--liveness-dir", str(live), "--leader", "exitFile"]
    )
    assert status == 0
    with _token(exit_dir, live, backend) as token:
        assert not token.wait(QUIET_PERIOD)
        leader.signal(signal.SIGINT)  # KeyboardInterrupt: the block ends, code 130
        if signal_on == "always":
            assert token.wait(GENEROUS)
            assert token.marker is not None
            assert (token.marker.kind, token.marker.code) == ("exitdir", 130)  # never a false "vanished"
        else:  # no marker, and the lock said "may be restarted": not the end
            assert leader.wait() != 0
            assert not token.wait(QUIET_PERIOD * 3)


def test_a_finishing_leader_is_never_reported_as_vanished_by_a_polling_follower(
    exit_dir: Path, live: Path, spawn: type[Child]
) -> None:
    # The marker is written before the file's lock goes; repeat to give a wrong order a chance to show.
    for attempt in range(10):
        directory = exit_dir / str(attempt)
        with exitdir.aware(directory, backend="poll", poll_interval=0.001, liveness_dir=live) as token:
            block = (
                f"with exitdir.leader(directory={str(directory)!r}, liveness_dir={str(live)!r}):\n    pass"
            )
            assert spawn(python(f"import exitdir\n{block}")).wait() == 0
            assert token.wait(GENEROUS)
            assert token.marker is not None
            assert token.marker.kind == "exitdir"


def test_lead_and_follow_take_it_from_the_command_line_and_the_environment(
    exit_dir: Path, live: Path, spawn: type[Child]
) -> None:
    lead = spawn(
        [
            *EXITDIR,
            "lead",
            "--dir",
            str(exit_dir),
            "--liveness-dir",
            str(live),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 3600",
        ]
    )
    lead.expect("ready")
    follower = spawn(
        [
            *EXITDIR,
            "follow",
            "--exit-code",
            "leader",
            "--dir",
            str(exit_dir),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 3600",
        ],
        env_with(EXITDIR_LIVENESS_DIR=str(live), EXITDIR_BACKEND="poll"),
    )
    follower.expect("ready")
    assert os.listdir(live) == ["exitFile"]
    program = int(Path(f"/proc/{lead.pid}/task/{lead.pid}/children").read_text().split()[0])
    os.kill(lead.pid, signal.SIGKILL)
    os.killpg(program, signal.SIGKILL)
    assert follower.wait() == 1
    _, err = follower.rest()
    assert VANISHED_REASON in err


@pytest.mark.parametrize("where", ["same", "inside", "deeper"])
def test_a_liveness_directory_inside_the_exit_directory_is_refused_in_one_line(
    exit_dir: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    live = {"same": exit_dir, "inside": exit_dir / "live", "deeper": exit_dir / "a" / "b"}[where]
    with pytest.raises(exitdir.ExitDirError, match="inside the exit directory") as raised:
        exitdir.aware(exit_dir, liveness_dir=live)
    assert f"such as {exit_dir}-liveness" in str(raised.value)
    for command, rest in (("wait", []), ("follow", ["--", "true"])):
        assert _cli.main([command, "--dir", str(exit_dir), "--liveness-dir", str(live), *rest]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "inside the exit directory" in err
    assert os.listdir(exit_dir) == []  # nothing made there


def test_lead_refuses_it_too_and_still_writes_its_marker(
    exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _cli.main(["lead", "--dir", str(exit_dir), "--liveness-dir", str(exit_dir / "x"), "--", "true"])
    assert status == 1
    assert "inside the exit directory" in capsys.readouterr().err
    assert os.listdir(exit_dir) == ["exitFile"]  # its followers are not left waiting
    marker = exitdir.aware(exit_dir).marker
    assert marker is not None
    assert marker.code == 1


def test_a_leader_that_cannot_lock_there_runs_and_says_so(
    exit_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # where the liveness directory should be
    status = _cli.main(
        ["lead", "--dir", str(exit_dir), "--liveness-dir", str(blocked / "live"), "--", "sh", "-c", "exit 3"]
    )
    assert status == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        f"cannot lock {blocked}/live/exitFile in the liveness directory: {blocked}/live or a directory above"
        in err
    )
    assert "cannot tell if it is killed outright" in err
    assert exitdir.aware(exit_dir).marker is not None


def test_a_fifo_in_the_leaders_place_hangs_nobody(
    exit_dir: Path, live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live.mkdir()
    os.mkfifo(live / "exitFile")
    with _token(exit_dir, live, "poll") as token:
        assert not token.wait(QUIET_PERIOD)  # looked at it, several times, without opening it for good
    assert _cli.main(["lead", "--dir", str(exit_dir), "--liveness-dir", str(live), "--", "true"]) == 0
    assert "it is not a regular file: remove it" in capsys.readouterr().err
    assert exitdir.aware(exit_dir).marker is not None


def test_status_counts_the_leaders_of_every_machine(
    exit_dir: Path, live: Path, spawn: type[Child], capsys: pytest.CaptureFixture[str]
) -> None:
    _remote_leader(spawn, live, "db")
    _remote_leader(spawn, live, "api")
    argv = ["status", "--dir", str(exit_dir), "--liveness-dir", str(live)]
    assert _cli.main([*argv, "--leader", "db", "--leader", "web"]) == 0
    out = capsys.readouterr().out
    assert "db: running" in out
    assert "web: not running" in out
    assert _cli.main(argv) == 0
    assert "2 leader(s) running" in capsys.readouterr().out
    assert _cli.main(["status", "--dir", str(exit_dir)]) == 0  # without it, this machine's only
    assert "running" not in capsys.readouterr().out.replace("keep running", "")


def test_another_followers_lock_test_is_never_taken_for_a_leader(
    exit_dir: Path, live: Path, backend: str, spawn: type[Child]
) -> None:
    """An SMB client tests a lock by taking an exclusive one for an instant; a leader's is always shared.
    Held here for a while, then gone: a follower that took it for a leader would report it vanished."""
    _its_death_is_not_the_end(exit_dir, live, backend, _remote_leader(spawn, live, exclusive=True))


@pytest.mark.parametrize("names", [None, ("exitFile",)])
def test_a_leaders_file_replaced_while_no_leader_runs_is_the_one_tested(
    exit_dir: Path, live: Path, spawn: type[Child], names: tuple[str, ...] | None
) -> None:
    live.mkdir()
    (live / "exitFile").write_text("")  # left by an earlier run
    with _token(exit_dir, live, "poll", names=names) as token:
        assert not token.wait(QUIET_PERIOD)  # looked at the old file
        (live / "exitFile").unlink()
        leader = _remote_leader(spawn, live)  # a new file, held
        assert not token.wait(QUIET_PERIOD)
        leader.signal(signal.SIGKILL)
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.kind == KIND_VANISHED


def test_a_running_leaders_file_unlinked_is_not_its_death(
    exit_dir: Path, live: Path, spawn: type[Child]
) -> None:
    _remote_leader(spawn, live)
    with _token(exit_dir, live, "poll") as token:
        assert not token.wait(QUIET_PERIOD)
        (live / "exitFile").unlink()  # the lock is on the open file, which is still held
        assert not token.wait(QUIET_PERIOD * 3)


def test_what_cannot_be_tested_in_the_directory_is_said_and_does_not_blind_the_follower(
    exit_dir: Path, live: Path, spawn: type[Child], caplog: pytest.LogCaptureFixture
) -> None:
    leader = _remote_leader(spawn, live, "db")
    (live / "junk").symlink_to("/etc/hostname")
    os.mkfifo(live / "pipe")
    caplog.set_level(logging.WARNING, logger="exitdir")
    with _token(exit_dir, live, "poll") as token:
        assert not token.wait(QUIET_PERIOD)
        leader.signal(signal.SIGKILL)
        assert token.wait(GENEROUS)
    said = [r.getMessage() for r in caplog.records]
    assert any(
        f"cannot test the lock of {live}/junk in the liveness directory: it is a symbolic link" in m
        for m in said
    )
    assert any(f"{live}/pipe in the liveness directory: it is not a regular file" in m for m in said)


def test_closing_the_token_closes_the_files_it_kept(exit_dir: Path, live: Path, spawn: type[Child]) -> None:
    _remote_leader(spawn, live)
    before = len(os.listdir("/proc/self/fd"))
    token = _token(exit_dir, live, "poll")
    assert not token.wait(QUIET_PERIOD)  # the leader's file is kept open now
    token.close()
    token.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_symlink_into_the_exit_directory_is_inside_it(exit_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "sneaky").symlink_to(exit_dir)
    with pytest.raises(exitdir.ExitDirError, match="inside the exit directory"):
        exitdir.aware(exit_dir, liveness_dir=tmp_path / "sneaky" / "live")
    assert os.listdir(exit_dir) == []
