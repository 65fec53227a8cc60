"""The follower's token, against every backend, with real files and real processes."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import exitdir
from exitdir import _marker, _token

from _support import EXITDIR, GENEROUS, POLL_INTERVAL, QUIET_PERIOD, Child, env_with, python


def follow(directory: Path | str | None, backend: str) -> exitdir.ExitToken:
    return exitdir.aware(directory, backend=backend, poll_interval=POLL_INTERVAL)


def test_marker_written_before_the_follower_started_trips_it(exit_dir: Path, backend: str) -> None:
    exitdir.exit(5, reason="done early", directory=exit_dir)
    with follow(exit_dir, backend) as token:
        assert token.is_set()
        assert token.marker is not None
        assert (token.marker.code, token.marker.reason) == (5, "done early")
        assert token.backend == backend


def test_marker_written_between_watch_and_scan_trips_it(
    exit_dir: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The marker appears just *after* the first directory listing. Only a watch that was in place before
    # the listing catches it; a follower that lists first and watches second would wait forever.
    real_list = _marker.list_markers
    calls: list[str] = []

    def list_then_write(directory: str) -> list[exitdir.Marker]:
        found = real_list(directory)
        if not calls:
            calls.append(directory)
            exitdir.exit(6, directory=directory)
        return found

    monkeypatch.setattr(_token, "list_markers", list_then_write)
    with follow(exit_dir, backend) as token:
        assert calls, "the initial scan did not run"
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.code == 6


def test_marker_from_another_process_trips_a_waiting_follower(
    exit_dir: Path, backend: str, spawn: type[Child]
) -> None:
    follower = spawn(
        python(
            "import exitdir, sys\n"
            f"token = exitdir.aware({str(exit_dir)!r}, backend={backend!r}, poll_interval={POLL_INTERVAL})\n"
            "print('ready', flush=True)\n"
            f"assert token.wait({GENEROUS})\n"
            "print('tripped', token.marker.code, token.marker.reason, flush=True)\n"
        )
    )
    follower.expect("ready")
    leader = spawn([*EXITDIR, "exit", "--code", "7", "--reason", "bye", "--dir", str(exit_dir)])
    assert leader.wait() == 0
    follower.expect("tripped 7 bye")
    assert follower.wait() == 0


@pytest.mark.parametrize(
    "kind", ["dotfile", "lost+found file", "lost+found dir", "subdir", "symlink", "fifo"]
)
def test_entries_that_are_not_markers_are_ignored(
    exit_dir: Path, backend: str, kind: str, tmp_path: Path
) -> None:
    def make() -> None:
        if kind == "dotfile":
            (exit_dir / ".exitdir-123.tmp").write_text("{}")
        elif kind == "lost+found file":
            (exit_dir / "lost+found").write_text("")
        elif kind == "lost+found dir":
            (exit_dir / "lost+found").mkdir()
        elif kind == "subdir":
            (exit_dir / "exitFile").mkdir()
        elif kind == "symlink":
            target = tmp_path / "elsewhere"
            target.write_text("")
            (exit_dir / "exitFile").symlink_to(target)
        else:
            os.mkfifo(exit_dir / "exitFile")

    with follow(exit_dir, backend) as token:
        make()
        assert not token.wait(QUIET_PERIOD)
    with follow(exit_dir, backend) as token:  # present before the follower starts
        assert not token.wait(QUIET_PERIOD)
        (exit_dir / "real").write_text("")
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert token.marker.name == "real"


def test_go_style_empty_exit_file_means_code_zero(exit_dir: Path, backend: str) -> None:
    with follow(exit_dir, backend) as token:
        # What Go's Exit() does: os.Create, i.e. open(O_RDWR|O_CREAT|O_TRUNC, 0666), and nothing written.
        os.close(os.open(exit_dir / "exitFile", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666))
        assert token.wait(GENEROUS)
        assert token.marker is not None
        assert (token.marker.kind, token.marker.code, token.marker.name) == ("empty", 0, "exitFile")


def test_unknown_content_is_a_marker_not_a_crash(exit_dir: Path, backend: str) -> None:
    (exit_dir / "exitFile").write_bytes(b"\xff\xfe not json")
    with follow(exit_dir, backend) as token:
        assert token.is_set()
        assert token.marker is not None
        assert (token.marker.kind, token.marker.code) == ("unknown", None)


def test_wait_times_out_and_returns_false(exit_dir: Path, backend: str) -> None:
    with follow(exit_dir, backend) as token:
        assert token.wait(0) is False
        assert token.wait(QUIET_PERIOD) is False
        assert token.is_set() is False
        assert token.marker is None


def test_negative_timeout_is_a_clear_error(exit_dir: Path, backend: str) -> None:
    token = follow(exit_dir, backend)
    with token, pytest.raises(exitdir.ExitDirError, match="zero or more seconds"):
        token.wait(-1)


def test_level_triggered_marker_removal_does_not_untrip(exit_dir: Path, backend: str) -> None:
    with follow(exit_dir, backend) as token:
        exitdir.exit(directory=exit_dir)
        assert token.wait(GENEROUS)
        os.unlink(exit_dir / "exitFile")
        assert token.is_set()
        assert token.wait(0)


def test_many_threads_waiting_on_one_token_all_wake(exit_dir: Path, backend: str) -> None:
    with follow(exit_dir, backend) as token:
        results: list[bool] = []
        started = threading.Barrier(9)

        def waiter() -> None:
            started.wait()
            results.append(token.wait(GENEROUS))

        threads = [threading.Thread(target=waiter) for _ in range(8)]
        for thread in threads:
            thread.start()
        started.wait()
        exitdir.exit(directory=exit_dir)
        for thread in threads:
            thread.join(GENEROUS)
        assert results == [True] * 8


def test_tokens_on_the_same_directory_share_the_watch_and_all_trip(exit_dir: Path, backend: str) -> None:
    tokens = [follow(exit_dir, backend) for _ in range(3)]
    tokens[0].close()  # closing one must not blind the others
    exitdir.exit(directory=exit_dir)
    assert tokens[1].wait(GENEROUS)
    assert tokens[2].wait(GENEROUS)
    assert not tokens[0].is_set()
    for token in tokens:
        token.close()


def test_close_wakes_a_waiter_in_another_thread(exit_dir: Path, backend: str) -> None:
    token = follow(exit_dir, backend)
    result: list[bool] = []
    waiting = threading.Thread(target=lambda: result.append(token.wait()))
    waiting.start()
    token.close()
    token.close()  # idempotent
    waiting.join(GENEROUS)
    assert result == [False]
    assert not token.is_set()


def test_callbacks_run_once_from_a_helper_thread(exit_dir: Path, backend: str) -> None:
    calls: list[str] = []
    done = threading.Event()
    with follow(exit_dir, backend) as token:
        token.add_callback(lambda: calls.append(threading.current_thread().name))
        token.add_callback(done.set)
        exitdir.exit(directory=exit_dir)
        assert done.wait(GENEROUS)
        token.wait(GENEROUS)
        token.add_callback(lambda: calls.append("late"))  # already set: called at once, here
    assert calls == ["exitdir-callbacks", "late"]


def test_a_failing_callback_is_logged_and_does_not_stop_the_others(
    exit_dir: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("callback bug")

    with follow(exit_dir, backend) as token:
        token.add_callback(broken)
        token.add_callback(done.set)
        exitdir.exit(directory=exit_dir)
        assert done.wait(GENEROUS)
    assert "callback bug" in caplog.text


def test_no_helper_thread_unless_a_callback_is_registered(exit_dir: Path, backend: str) -> None:
    before = threading.active_count()
    with follow(exit_dir, backend) as token:
        assert token.wait(0.05) is False
        assert threading.active_count() == before


def test_no_directory_configured_never_trips() -> None:
    token = exitdir.aware()
    assert token.directory is None
    assert token.backend is None
    assert token.wait(0.05) is False
    result: list[bool] = []
    forever = threading.Thread(target=lambda: result.append(token.wait()))
    forever.start()
    token.close()
    forever.join(GENEROUS)
    assert result == [False]


def test_env_directory_with_trailing_slash(
    exit_dir: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXIT_DIR", f"{exit_dir}/")
    with exitdir.aware(backend=backend, poll_interval=POLL_INTERVAL) as token:
        assert token.directory == str(exit_dir)
        exitdir.exit()
        assert token.wait(GENEROUS)


def test_relative_directory_is_resolved_once(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    with follow("rel", backend) as token:
        monkeypatch.chdir("/")
        exitdir.exit(directory=tmp_path / "rel")
        assert token.wait(GENEROUS)
        assert token.directory == str(tmp_path / "rel")


def test_missing_directory_is_waited_for_with_one_warning(
    tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "not" / "yet"
    with caplog.at_level(logging.WARNING, logger="exitdir"), follow(target, backend) as token:
        assert not token.wait(QUIET_PERIOD)
        (tmp_path / "not").mkdir()
        assert not token.wait(QUIET_PERIOD)
        target.mkdir()
        assert not token.wait(QUIET_PERIOD)
        exitdir.exit(directory=target)
        assert token.wait(GENEROUS)
    warnings = [r for r in caplog.records if "does not exist yet" in r.getMessage()]
    assert len(warnings) == 1
    assert str(target) in warnings[0].getMessage()


def test_directory_deleted_and_recreated_while_waiting(exit_dir: Path, backend: str) -> None:
    with follow(exit_dir, backend) as token:
        shutil.rmtree(exit_dir)
        assert not token.wait(QUIET_PERIOD)
        exit_dir.mkdir()
        assert not token.wait(QUIET_PERIOD)
        exitdir.exit(directory=exit_dir)
        assert token.wait(GENEROUS)


def test_directory_renamed_away_while_waiting(exit_dir: Path, backend: str, tmp_path: Path) -> None:
    with follow(exit_dir, backend) as token:
        exit_dir.rename(tmp_path / "moved")
        exitdir.exit(directory=tmp_path / "moved")  # not the watched path any more
        assert not token.wait(QUIET_PERIOD)
        exitdir.exit(directory=exit_dir)  # the leader recreates the path and writes there
        assert token.wait(GENEROUS)


def test_directory_that_is_a_file_is_a_clear_error(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(exitdir.ExitDirError, match=r"not a directory"):
        follow(path, backend)


def test_dangling_symlink_directory_is_a_clear_error(tmp_path: Path, backend: str) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(exitdir.ExitDirError, match=r"symlink .* does not exist"):
        follow(link, backend)
    link.unlink()
    link.symlink_to(tmp_path / "loop")  # a loop of links: stat fails with ELOOP, not ENOENT
    (tmp_path / "loop").symlink_to(link)
    with pytest.raises(exitdir.ExitDirError, match=r"goes round a symlink loop: point EXIT_DIR"):
        follow(link, backend)


def test_unknown_backend_is_a_clear_error(exit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(exitdir.ExitDirError, match=r"unknown watch backend backend='kqueue'"):
        exitdir.aware(exit_dir, backend="kqueue")
    monkeypatch.setenv("EXITDIR_BACKEND", "fanotify")
    with pytest.raises(exitdir.ExitDirError, match="EXITDIR_BACKEND='fanotify'"):
        exitdir.aware(exit_dir)


def test_env_selects_backend_and_interval(exit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXITDIR_BACKEND", "poll")
    monkeypatch.setenv("EXITDIR_POLL_INTERVAL", "0.02")
    with exitdir.aware(exit_dir) as token:
        assert token.backend == "poll"
    monkeypatch.setenv("EXITDIR_POLL_INTERVAL", "soon")
    with pytest.raises(exitdir.ExitDirError, match="EXITDIR_POLL_INTERVAL='soon'"):
        exitdir.aware(exit_dir)


def test_follower_in_a_child_with_env_only(exit_dir: Path, spawn: type[Child]) -> None:
    # The Go-style use: nothing but EXIT_DIR in the environment.
    follower = spawn(
        python(
            "import exitdir\n"
            "t = exitdir.aware()\n"
            "print('ready', t.backend, flush=True)\n"
            f"print(t.wait({GENEROUS}), flush=True)\n"
        ),
        env=env_with(EXIT_DIR=str(exit_dir)),
    )
    follower.expect("ready inotify" if sys.platform.startswith("linux") else "ready poll")
    exitdir.exit(directory=exit_dir)
    follower.expect("True")
    assert follower.wait() == 0


@pytest.mark.parametrize("change", ["trip", "close"])
def test_a_thread_about_to_block_sees_a_change_made_just_before(
    change: str, exit_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thread B has looked (not tripped) and is about to block in the shared inotify hub; it is held at the
    # hub's door (an Event: a stand-in for being preempted there). Thread A then trips or closes the token
    # and drains the queue. B must not block on the emptied fd until its timeout.
    from exitdir._watch import _inotify

    hub = _inotify.process_hub()
    real_pump = type(hub).pump
    at_door, go = threading.Event(), threading.Event()

    def held(self: object, timeout: float | None, stop: Callable[[], bool]) -> None:
        if threading.current_thread().name == "B":
            at_door.set()
            go.wait(GENEROUS)
        real_pump(hub, timeout, stop)

    monkeypatch.setattr(type(hub), "pump", held)
    token = exitdir.aware(exit_dir, backend="inotify")
    returned: dict[str, float] = {}

    def b() -> None:
        token.wait(GENEROUS)
        returned["at"] = time.monotonic()

    waiter = threading.Thread(target=b, name="B")
    waiter.start()
    assert at_door.wait(GENEROUS)
    if change == "trip":
        exitdir.exit(directory=exit_dir)
        assert token.is_set()
    else:
        token.close()
    real_pump(hub, 0, lambda: False)  # what another reader would do: nothing is left for B to read
    released = time.monotonic()
    go.set()
    waiter.join(GENEROUS)
    assert not waiter.is_alive()
    assert returned["at"] - released < 5.0  # a missed wake-up waits out GENEROUS (20 s)
    token.close()
