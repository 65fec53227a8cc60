"""Readiness before the main program starts: an HTTP endpoint that answers 2xx, a TCP port that accepts, a
file that exists (linkerd-await's and scuttle's job, kubexit's birth dependencies).

A dependency is probed until it is ready or the wait's time is up; each probe is bounded (one second), and
between probes the caller's ``pause`` decides how to wait (``exitdir lead`` waits for its terminating
signals there, so a pod deleted meanwhile is not held up).
"""

from __future__ import annotations

import os
import time

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# Documented readiness endpoints, on the pod's loopback (docs/sidecars.md cites each source):
# - istio: the sidecar's readiness probe, GET :15021/healthz/ready (Envoy's, through pilot-agent);
# - linkerd: linkerd2-proxy's admin server, GET :4191/ready;
# - cloud-sql-proxy: v2 with --health-check, GET :9090/readiness (--http-port).
READY_PRESETS = {
    "istio": "http://127.0.0.1:15021/healthz/ready",
    "linkerd": "http://127.0.0.1:4191/ready",
    "cloud-sql-proxy": "http://127.0.0.1:9090/readiness",
}
PROBE_TIMEOUT = 1.0
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 0.5  # between probes: quick at first, then gentler on the target


class Dependency:
    """One thing that must be ready: ``kind`` is ``"http"`` (a URL answering 2xx to GET), ``"tcp"``
    (``HOST:PORT`` accepting a connection) or ``"file"`` (a path that exists).

    >>> Dependency("file", "/").probe()
    ''
    """

    __slots__ = ("kind", "target")  # a plain class: see _stops.Stopped for why not a dataclass

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dependency):
            return NotImplemented
        return (self.kind, self.target) == (other.kind, other.target)

    def __hash__(self) -> int:
        return hash((self.kind, self.target))

    def __repr__(self) -> str:
        return f"Dependency({self.kind!r}, {self.target!r})"

    def probe(self) -> str:
        """'' when ready; else why not, in a few words."""
        if self.kind == "file":
            return "" if os.path.exists(self.target) else "it does not exist yet"
        if self.kind == "tcp":
            return _probe_tcp(self.target)
        return _probe_http(self.target)


def wait_ready(
    dependencies: Sequence[Dependency],
    timeout: float | None,
    pause: Callable[[float], bool] | None = None,
) -> dict[Dependency, str]:
    """Probe ``dependencies`` until every one is ready, or ``timeout`` seconds pass (None: no limit). What is
    still not ready, with why (empty: all ready). ``pause(seconds)`` waits between rounds and returns False
    to give up at once (a signal); by default it sleeps.

    >>> wait_ready([Dependency("file", "/")], timeout=0)
    {}
    """
    pause = pause or _sleep
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = list(dependencies)
    why: dict[Dependency, str] = {}
    gap = FIRST_PAUSE
    while True:
        why = {dependency: reason for dependency in waiting if (reason := dependency.probe())}
        waiting = list(why)
        left = None if deadline is None else deadline - time.monotonic()
        if not waiting or (left is not None and left <= 0):
            return why
        if not pause(gap if left is None else min(gap, left)):
            return why
        gap = min(gap * 2, LONGEST_PAUSE)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _probe_tcp(target: str) -> str:
    import socket

    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as err:
        return _why(err)
    return ""


def _probe_http(url: str) -> str:
    import http.client

    from ._stops import request

    try:
        status, answer = request("GET", url, PROBE_TIMEOUT)
    except (OSError, http.client.HTTPException) as err:
        return _why(err)
    return "" if 200 <= status < 300 else answer


def _why(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT:g} s"
    return str(err) or type(err).__name__
