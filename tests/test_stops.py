"""Stop actions over HTTP (issue 13): a stop-only `exitdir follow`, and `lead`/`follow` posting to shutdown
endpoints once the marker is there. The endpoints are real HTTP servers on loopback, in child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import exitdir
from conftest import Orphan
from exitdir import _cli
from exitdir._stops import ABSENT, FAILED, KILLED, QUIT_PRESETS, STOPPED, post
from exitdir._targets import find

from _support import EXITDIR, GENEROUS, QUIET_PERIOD, Child, python

# An admin endpoint: prints `ready PORT`, then for each request `METHOD PATH marker=yes|no` (whether the
# exit directory held a marker when the request came), and answers with the status it was given, or hangs
# up without answering ("hangup"), or never answers ("silent").
ENDPOINT = """
import http.server, os, sys, time
exit_dir, how = sys.argv[1], sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        print(self.command, self.path, 'marker=' + ('yes' if os.listdir(exit_dir) else 'no'), flush=True)
        if how == 'hangup':
            self.close_connection = True
            return
        if how == 'silent':
            time.sleep(3600)
        self.send_response(int(how))
        self.end_headers()
        self.wfile.write(b'bye')
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print('ready', server.server_address[1], flush=True)
server.serve_forever()
"""


def _endpoint(spawn: type[Child], exit_dir: Path, how: str = "200") -> tuple[Child, str]:
    server = spawn([*python(ENDPOINT), str(exit_dir), how])
    port = server.read_until("ready").split()[1]
    return server, f"http://127.0.0.1:{port}/quitquitquit"


def _requests(server: Child) -> list[str]:
    """The requests the endpoint saw, once it is stopped (its output all read)."""
    server.signal(signal.SIGTERM)
    out, _ = server.rest()
    return [line for line in [*server.lines, *out.splitlines()] if line.startswith("POST")]


def _watching(follower: Child) -> None:
    """Wait until ``follower``, which prints nothing while it waits, has its inotify watch: then it waits."""
    deadline = time.monotonic() + GENEROUS
    fds = Path(f"/proc/{follower.pid}/fd")
    while not any(_link(fd) == "anon_inode:inotify" for fd in _entries(fds)):
        assert follower.proc.poll() is None, follower.rest()
        assert time.monotonic() < deadline, "the follower never set up its watch"
        time.sleep(0.01)  # polling /proc for a state; not a synchronisation by time


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _link(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released: refused from then on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_stop_only_follower_posts_once_after_the_marker(exit_dir: Path, spawn: type[Child]) -> None:
    server, url = _endpoint(spawn, exit_dir)
    follower = spawn([*EXITDIR, "follow", "--dir", str(exit_dir), "--post", url])
    _watching(follower)
    with pytest.raises(subprocess.TimeoutExpired):
        follower.proc.wait(QUIET_PERIOD)  # no marker: it waits, and posts nothing
    exitdir.exit(directory=exit_dir)
    assert follower.wait() == 0
    _, err = follower.rest()
    assert f"{url}: stopped: HTTP 200 OK" in err
    assert _requests(server) == ["POST /quitquitquit marker=yes"]


def test_nothing_listening_is_absent_and_counts_as_done(exit_dir: Path) -> None:
    exitdir.exit(directory=exit_dir)
    url = f"http://127.0.0.1:{_free_port()}/shutdown"
    assert _cli.main(["follow", "--dir", str(exit_dir), "--post", url]) == 0
    assert post(url).outcome == ABSENT


@pytest.mark.parametrize(("how", "posts"), [("404", 1), ("503", 3)])
def test_a_refusing_endpoint_is_one_error_line_and_status_1(
    exit_dir: Path, spawn: type[Child], capsys: pytest.CaptureFixture[str], how: str, posts: int
) -> None:
    """A 4xx is final (asking again changes nothing); a 5xx is asked again, three times in all."""
    server, url = _endpoint(spawn, exit_dir, how)
    exitdir.exit(directory=exit_dir)
    assert _cli.main(["follow", "--quiet", "--dir", str(exit_dir), "--post", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"exitdir: error: could not stop {url}: failed: HTTP {how} ")
    assert len(_requests(server)) == posts


def test_an_endpoint_that_hangs_up_is_taken_as_stopping(exit_dir: Path, spawn: type[Child]) -> None:
    server, url = _endpoint(spawn, exit_dir, "hangup")
    assert post(url).outcome == STOPPED
    assert len(_requests(server)) == 1


def test_an_endpoint_that_never_answers_fails_within_its_timeouts(exit_dir: Path, spawn: type[Child]) -> None:
    server, url = _endpoint(spawn, exit_dir, "silent")
    started = time.monotonic()
    result = post(url, timeout=0.2, attempts=2, sleep=lambda seconds: None)
    assert time.monotonic() - started < GENEROUS
    assert (result.outcome, result.detail) == (FAILED, "no answer within 0.2 s")
    assert len(_requests(server)) == 2


@pytest.mark.parametrize(("code", "how", "status"), [(3, "200", 3), (0, "404", 1), (3, "404", 3)])
def test_exit_code_leader_reports_the_leaders_code_and_a_failure_as_1_only_over_success(
    exit_dir: Path, spawn: type[Child], code: int, how: str, status: int
) -> None:
    _, url = _endpoint(spawn, exit_dir, how)
    exitdir.exit(code, directory=exit_dir)
    argv = ["follow", "--quiet", "--exit-code", "leader", "--dir", str(exit_dir), "--post", url]
    assert _cli.main(argv) == status


def test_a_timeout_stops_the_targets_anyway_and_exits_124(exit_dir: Path, spawn: type[Child]) -> None:
    server, url = _endpoint(spawn, exit_dir)
    assert _cli.main(["follow", "--quiet", "--timeout", "0.1", "--dir", str(exit_dir), "--post", url]) == 124
    assert _requests(server) == ["POST /quitquitquit marker=no"]


def test_sigterm_ends_a_stop_only_follower_at_once_without_posting(
    exit_dir: Path, spawn: type[Child]
) -> None:
    """The pod is being deleted: the kubelet stops every container itself. Stopped on purpose: 0 (it was
    143 before issue 14)."""
    server, url = _endpoint(spawn, exit_dir)
    follower = spawn([*EXITDIR, "follow", "--dir", str(exit_dir), "--post", url], merge_stderr=True)
    _watching(follower)
    follower.signal(signal.SIGTERM)
    assert follower.wait() == 0
    assert _requests(server) == []


def test_lead_posts_after_its_marker_and_keeps_its_programs_status(
    exit_dir: Path, spawn: type[Child]
) -> None:
    server, url = _endpoint(spawn, exit_dir)
    lead = spawn([*EXITDIR, "lead", "--dir", str(exit_dir), "--post", url, "--", "sh", "-c", "exit 4"])
    assert lead.wait() == 4
    assert _requests(server) == ["POST /quitquitquit marker=yes"]


def test_follow_with_a_helper_posts_after_stopping_it(exit_dir: Path, spawn: type[Child]) -> None:
    server, url = _endpoint(spawn, exit_dir)
    follower = spawn(
        [
            *EXITDIR,
            "follow",
            "--dir",
            str(exit_dir),
            "--post",
            url,
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 60",
        ]
    )
    follower.expect("ready")
    exitdir.exit(directory=exit_dir)
    assert follower.wait() == 0
    _, err = follower.rest()
    assert err.index("stopping sh") < err.index(f"{url}: stopped")
    assert _requests(server) == ["POST /quitquitquit marker=yes"]


def test_each_endpoint_is_posted_once_and_the_presets_are_the_documented_ones(exit_dir: Path) -> None:
    assert QUIT_PRESETS == {
        "istio": "http://127.0.0.1:15020/quitquitquit",
        "envoy": "http://127.0.0.1:15000/quitquitquit",
        "linkerd": "http://127.0.0.1:4191/shutdown",
        "cloud-sql-proxy": "http://127.0.0.1:9091/quitquitquit",
    }
    args = _cli._parser(["follow"]).parse_args(
        ["follow", "--quit", "istio", "--post", QUIT_PRESETS["istio"], "--quit", "linkerd"]
    )
    assert [stop.args[1] for stop in _cli._stop_actions(args)] == [  # type: ignore[attr-defined]
        QUIT_PRESETS["istio"],
        QUIT_PRESETS["linkerd"],
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["follow"], "exitdir: usage: nothing to follow: give -- CMD to run a helper, or what to stop"),
        (["follow", "--post", "ftp://x"], "exitdir: usage: argument --post: 'ftp://x' is not an http://"),
        (["follow", "--post", "http://h:port/"], "exitdir: usage: argument --post: 'http://h:port/' is not"),
        (
            ["follow", "--quit", "consul"],
            "exitdir: usage: argument --quit: unknown --quit sidecar 'consul': use one of istio, envoy",
        ),
        (["follow", "--quit", "istio", "--exit-code", "child"], "exitdir: usage: --exit-code child needs a"),
    ],
)
def test_what_cannot_be_done_is_one_usage_line(
    exit_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert _cli.main([*argv, "--dir", str(exit_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected)
    assert err.count("\n") == 1


# --- processes we did not start, in a shared PID namespace (--process, --pid-file) ------------------------

STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
    "time.sleep(600)"
)


def test_a_stop_only_follower_stops_sidecars_by_name_and_by_pid_file(
    exit_dir: Path,
    tmp_path: Path,
    orphan: Callable[..., Orphan],
    program: Callable[[str, str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One sidecar ends at TERM, one ignores it and is killed after the grace; neither is our child."""
    polite, stubborn = f"polite-proxy-{os.getpid()}", f"stubborn-proxy-{os.getpid()}"
    _, polite_pid = orphan(program(polite, "/bin/sleep"), "600")
    shell, stubborn_pid = orphan(program(stubborn, "python"), "-c", STUBBORN)
    shell.expect("ready")  # it ignores TERM from here on
    pid_file = tmp_path / "stubborn.pid"
    pid_file.write_text(f"{stubborn_pid}\n")
    exitdir.exit(directory=exit_dir)
    argv = [
        "follow",
        "--grace",
        "0.3",
        "--dir",
        str(exit_dir),
        "--process",
        polite,
        "--pid-file",
        str(pid_file),
    ]
    assert _cli.main(argv) == 0
    err = capsys.readouterr().err
    assert f"{polite} (pid {polite_pid}): stopped: ended after SIGTERM" in err
    assert (
        f"{pid_file} (pid {stubborn_pid}): killed: still running 0.3 s after SIGTERM; SIGKILL ended it" in err
    )
    assert find(polite) == []
    assert find(stubborn) == []


def test_targets_that_are_not_there_are_absent_and_a_garbage_pid_file_is_one_error_line(
    exit_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exitdir.exit(directory=exit_dir)
    argv = ["follow", "--dir", str(exit_dir), "--process", f"no-such-program-{os.getpid()}"]
    assert _cli.main([*argv, "--pid-file", str(tmp_path / "missing.pid")]) == 0
    err = capsys.readouterr().err
    assert "absent: no process of that name in this PID namespace" in err
    assert "missing.pid: absent: no pid file" in err
    (tmp_path / "garbage.pid").write_text("abc")
    assert (
        _cli.main(["follow", "--quiet", "--dir", str(exit_dir), "--pid-file", str(tmp_path / "garbage.pid")])
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"exitdir: error: could not stop {tmp_path}/garbage.pid: failed: pid file")


def test_the_help_lists_exactly_the_presets() -> None:
    """The presets are named in the help without importing their modules at start-up: kept in step here."""
    from exitdir._ready import READY_PRESETS

    metavars = {
        option: action.metavar
        for command in ("follow", "lead")
        for action in _cli._parser([command])._subparsers._group_actions[0].choices[command]._actions  # type: ignore[union-attr,index]
        for option in action.option_strings
    }
    assert metavars["--quit"] == "{" + ",".join(QUIT_PRESETS) + "}"
    assert metavars["--wait-ready"] == "{" + ",".join(READY_PRESETS) + "}"


# -- the library: the same stop actions as functions ------------------------------------------------------


def test_quit_sidecar_posts_once_to_a_url_or_a_preset(spawn: type[Child], exit_dir: Path) -> None:
    server, url = _endpoint(spawn, exit_dir)
    assert exitdir.quit_sidecar(url) == exitdir.Stopped(url, STOPPED, "HTTP 200 OK")
    assert _requests(server) == ["POST /quitquitquit marker=no"]
    # A preset names its documented endpoint; nothing listens on this machine's 4191: absent.
    assert exitdir.quit_sidecar("linkerd", attempts=1).target == QUIT_PRESETS["linkerd"]


@pytest.mark.parametrize(
    ("target", "options", "expected"),
    [
        ("consul", {}, "'consul' is not an http:// or https:// URL"),
        ("http://127.0.0.1:9/", {"attempts": 0}, "attempts=0 is not a whole number of at least 1"),
        ("http://127.0.0.1:9/", {"timeout": -1}, "timeout="),
    ],
)
def test_quit_sidecar_refuses_bad_arguments(target: str, options: dict[str, float], expected: str) -> None:
    with pytest.raises(exitdir.ExitDirError, match=expected):
        exitdir.quit_sidecar(target, **options)  # type: ignore[arg-type]


def test_stop_process_stops_by_name_and_by_pid_file(
    tmp_path: Path, orphan: Callable[..., Orphan], program: Callable[[str, str], str]
) -> None:
    name = f"library-proxy-{os.getpid()}"
    sleeper = program(name, "/bin/sleep")
    _, first = orphan(sleeper, "600")
    _, second = orphan(sleeper, "600")
    deadline = time.monotonic() + GENEROUS
    while find(name) != sorted([first, second]):  # each runs `sleeper` once its shell's fork has exec'd
        assert time.monotonic() < deadline, f"{name} never ran twice"
        time.sleep(0.01)  # polling /proc for a state; not a synchronisation by time
    stopped = exitdir.stop_process(name, grace=5)
    assert sorted((s.target, s.outcome) for s in stopped) == sorted(
        [(f"{name} (pid {first})", STOPPED), (f"{name} (pid {second})", STOPPED)]
    )
    assert find(name) == []
    _, third = orphan(sleeper, "600")
    pid_file = tmp_path / "proxy.pid"
    pid_file.write_text(f"{third}\n")
    assert [s.outcome for s in exitdir.stop_process(pid_file=pid_file, signal=signal.SIGKILL)] == [KILLED]
    assert [s.outcome for s in exitdir.stop_process(pid_file=tmp_path / "none.pid")] == [ABSENT]


@pytest.mark.parametrize("arguments", [{}, {"name": "x", "pid_file": "/run/x.pid"}])
def test_stop_process_takes_a_name_or_a_pid_file(arguments: dict[str, Any]) -> None:
    with pytest.raises(exitdir.ExitDirError, match="takes a program name or pid_file=, one of them"):
        exitdir.stop_process(**arguments)
