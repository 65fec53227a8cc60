"""Readiness before the main program starts (issue 13): `exitdir lead --wait-http/--wait-tcp/--wait-file`.

Dependencies are real: an HTTP server and a TCP listener on loopback in child processes, started only once
`lead` says it is waiting; files made by the test. `lead` says `waiting for ...` on stderr as it starts to
wait, which is the handshake.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

import exitdir
from exitdir import _cli
from exitdir._ready import READY_PRESETS, Dependency, wait_ready

from _support import EXITDIR, QUIET_PERIOD, Child, one_usage_line, python

PROGRAM = ["sh", "-c", "echo started"]
# Listens on the port it is given: `http` answers GET with the status given, `tcp` only accepts.
LISTENER = """
import http.server, socket, sys
kind, port = sys.argv[1], int(sys.argv[2])
if kind == 'tcp':
    server = socket.create_server(('127.0.0.1', port))
    print('ready', flush=True)
    while True:
        server.accept()[0].close()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[3]))
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
print('ready', flush=True)
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _lead(spawn: type[Child], exit_dir: Path, *waits: str) -> Child:
    lead = spawn([*EXITDIR, "lead", "--dir", str(exit_dir), *waits, "--", *PROGRAM], merge_stderr=True)
    lead.read_until("exitdir: waiting for ")
    return lead


@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_the_program_starts_only_once_its_dependency_answers(
    exit_dir: Path, spawn: type[Child], kind: str
) -> None:
    port = _free_port()
    target = f"http://127.0.0.1:{port}/ready" if kind == "http" else f"127.0.0.1:{port}"
    lead = _lead(spawn, exit_dir, f"--wait-{kind}", target)
    with pytest.raises(subprocess.TimeoutExpired):
        lead.proc.wait(QUIET_PERIOD)  # nothing listens yet: still waiting (the program would end at once)
    spawn([*python(LISTENER), kind, str(port), "200"]).expect("ready")
    lead.read_until("started")
    assert lead.wait() == 0
    assert exitdir.aware(exit_dir).marker is not None


def test_every_dependency_must_be_ready(exit_dir: Path, tmp_path: Path, spawn: type[Child]) -> None:
    port, flag = _free_port(), tmp_path / "flag"
    lead = _lead(spawn, exit_dir, "--wait-tcp", f"127.0.0.1:{port}", "--wait-file", str(flag))
    spawn([*python(LISTENER), "tcp", str(port)]).expect("ready")
    with pytest.raises(subprocess.TimeoutExpired):
        lead.proc.wait(QUIET_PERIOD)  # the port is there, the file is not
    flag.write_text("")
    lead.read_until("started")
    assert lead.wait() == 0


def test_a_dependency_never_ready_stops_everyone_within_the_timeout(
    exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    argv = ["lead", "--dir", str(exit_dir), "--wait-tcp", f"127.0.0.1:{port}", "--wait-timeout", "0.5"]
    assert _cli.main([*argv, "--", *PROGRAM]) == 1
    out, err = capsys.readouterr()
    assert "started" not in out  # the program never ran
    reason = f"sh not started: not ready within 0.5 s: 127.0.0.1:{port}: connection refused"
    assert err.splitlines()[-1] == f"exitdir: error: {reason}"
    marker = exitdir.aware(exit_dir).marker  # the helpers stop, the Job fails fast (scuttle#27)
    assert marker is not None
    assert (marker.code, marker.reason) == (1, reason)


def test_an_http_dependency_that_answers_an_error_is_not_ready(exit_dir: Path, spawn: type[Child]) -> None:
    port = _free_port()
    spawn([*python(LISTENER), "http", str(port), "503"]).expect("ready")
    missing = wait_ready([Dependency("http", f"http://127.0.0.1:{port}/")], timeout=0.2)
    assert list(missing.values()) == ["HTTP 503 Service Unavailable"]


def test_sigterm_while_waiting_ends_lead_at_once_and_the_marker_says_so(
    exit_dir: Path, spawn: type[Child]
) -> None:
    """The pod is deleted before its dependency came up: no waiting out the grace period."""
    lead = _lead(spawn, exit_dir, "--wait-tcp", f"127.0.0.1:{_free_port()}")
    lead.signal(signal.SIGTERM)
    assert lead.wait() == 128 + signal.SIGTERM
    marker = exitdir.aware(exit_dir).marker
    assert marker is not None
    assert marker.code == 143
    assert marker.reason is not None
    assert marker.reason.startswith("sh not started: SIGTERM while waiting for 127.0.0.1:")


def test_the_presets_are_the_documented_readiness_endpoints() -> None:
    assert READY_PRESETS == {
        "istio": "http://127.0.0.1:15021/healthz/ready",
        "linkerd": "http://127.0.0.1:4191/ready",
        "cloud-sql-proxy": "http://127.0.0.1:9090/readiness",
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--wait-tcp", "nohost"], "argument --wait-tcp: 'nohost' is not HOST:PORT"),
        (["--wait-tcp", "h:99999"], "argument --wait-tcp: 'h:99999' is not HOST:PORT"),
        (["--wait-http", "localhost:80"], "argument --wait-http: 'localhost:80' is not an http://"),
        (
            ["--wait-ready", "consul"],
            "argument --wait-ready: unknown --wait-ready sidecar 'consul': use one of istio",
        ),
        (["--wait-timeout", "5"], "--wait-timeout bounds a wait: say what to wait for"),
    ],
)
def test_bad_waits_are_one_usage_line_and_nothing_runs(
    exit_dir: Path, capsys: pytest.CaptureFixture[str], options: list[str], expected: str
) -> None:
    err = one_usage_line(capsys, ["lead", "--dir", str(exit_dir), *options, "--", *PROGRAM])
    assert err.startswith(f"exitdir: usage: {expected}")
