"""Stopping what a follower did not start: a sidecar told through its own HTTP shutdown endpoint.

Injected proxies (Istio, Linkerd) and distroless sidecars (Cloud SQL Proxy) cannot be wrapped by
``exitdir follow -- CMD``, but each documents an endpoint that makes it exit. A stop-only follower posts
to it once the marker appears. "Connection refused" means nothing listens there, which is what a pod
without the mesh looks like: that target is absent, and absent counts as done, so one manifest works with
and without the mesh. Any other failure is retried a few times, then reported with the URL and what went
wrong. An answer (2xx) says the target accepted; whether and when its process ends is its own business.
"""

from __future__ import annotations

import time

from ._text import printable

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    T = TypeVar("T")

# The documented shutdown endpoints, on the pod's loopback (docs/sidecars.md cites each source):
# - istio: pilot-agent's status port (15020) has POST /quitquitquit since Istio 1.3; it stops Envoy and
#   itself. Scuttle's ISTIO_QUIT_API is this URL.
# - envoy: Envoy's admin interface, POST /quitquitquit ("cleanly exit the server"); Istio runs it on 15000.
# - linkerd: linkerd2-proxy's admin server, POST :4191/shutdown (linkerd2-proxy#811). Off by default since
#   2024: enable it with the pod annotation config.linkerd.io/proxy-admin-shutdown: enabled (else: 404).
# - cloud-sql-proxy: v2's admin server (--admin-port, 9091), POST /quitquitquit when started with
#   --quitquitquit.
QUIT_PRESETS = {
    "istio": "http://127.0.0.1:15020/quitquitquit",
    "envoy": "http://127.0.0.1:15000/quitquitquit",
    "linkerd": "http://127.0.0.1:4191/shutdown",
    "cloud-sql-proxy": "http://127.0.0.1:9091/quitquitquit",
}
_HINTS = {
    "http://127.0.0.1:4191/shutdown": "Linkerd's shutdown endpoint is off by default: annotate the pod with "
    "config.linkerd.io/proxy-admin-shutdown: enabled",
    "http://127.0.0.1:9091/quitquitquit": "start cloud-sql-proxy with --quitquitquit",
}
POST_TIMEOUT = 2.0  # per attempt: a local admin endpoint answers in milliseconds
POST_ATTEMPTS = 3
_RETRY_AFTER = 0.2  # doubled after each failed attempt
_MAX_ANSWER = 64 * 1024  # what is read of an answer: it is only shown

STOPPED = "stopped"
KILLED = "killed"
ABSENT = "absent"
FAILED = "failed"
OUTCOMES = (STOPPED, KILLED, ABSENT, FAILED)


class Stopped:
    """What became of one stop action, whatever the target (an endpoint, a process): ``outcome`` is
    ``"stopped"``, ``"killed"`` (a process that had to be SIGKILLed), ``"absent"`` (nothing there to stop)
    or ``"failed"`` (``detail`` says why and what to do). A target's exit status is never known: it is
    not our child.

    >>> Stopped("http://127.0.0.1:4191/shutdown", ABSENT, "connection refused").describe()
    'http://127.0.0.1:4191/shutdown: absent: connection refused'
    """

    # A plain class rather than a dataclass: importing dataclasses costs every wrapper's start-up ~5 ms,
    # since the parser of `lead` and `follow` loads this module for the --quit presets.
    __slots__ = ("detail", "outcome", "target")

    def __init__(self, target: str, outcome: str, detail: str = "") -> None:
        self.target, self.outcome, self.detail = target, outcome, detail

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stopped):
            return NotImplemented
        return (self.target, self.outcome, self.detail) == (other.target, other.outcome, other.detail)

    def __hash__(self) -> int:
        return hash((self.target, self.outcome, self.detail))

    def __repr__(self) -> str:
        return f"Stopped({self.target!r}, {self.outcome!r}, {self.detail!r})"

    @property
    def done(self) -> bool:
        """Whether nothing is left to do about the target: stopped, killed or absent."""
        return self.outcome != FAILED

    def describe(self) -> str:
        """One line for people, every character a terminal must not interpret escaped."""
        line = f"{self.target}: {self.outcome}"
        return printable(f"{line}: {self.detail}" if self.detail else line)


def post(
    url: str,
    *,
    timeout: float = POST_TIMEOUT,
    attempts: int = POST_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> Stopped:
    """POST an empty body to ``url``, a shutdown endpoint; what came of it (never raises for the network).

    >>> post("http://127.0.0.1:9/quitquitquit").outcome  # the discard port: nothing listens there
    'absent'
    """
    import http.client

    problem = ""
    for attempt in range(attempts):
        if attempt:
            sleep(_RETRY_AFTER * 2 ** (attempt - 1))
        try:
            status, answer = request("POST", url, timeout, body=b"", headers={"User-Agent": "exitdir"})
        except ConnectionRefusedError:
            return Stopped(url, ABSENT, "connection refused: nothing listens there")
        except http.client.RemoteDisconnected:
            # The request went out and the target hung up without a word: it is going away (some servers
            # exit before answering their quit request).
            return Stopped(url, STOPPED, "the connection was closed without an answer")
        except (OSError, http.client.HTTPException) as err:
            problem = _network_problem(err, timeout)
            continue
        if 200 <= status < 300:
            return Stopped(url, STOPPED, answer)
        problem = answer
        if status < 500:  # the request itself is refused: asking again changes nothing
            break
    hint = _HINTS.get(url)
    return Stopped(url, FAILED, f"{problem}; {hint}" if hint and "404" in problem else problem)


def quit_sidecar(target: str, *, timeout: float = POST_TIMEOUT, attempts: int = POST_ATTEMPTS) -> Stopped:
    """Tell a sidecar to exit through its shutdown endpoint, as ``exitdir follow --quit``/``--post`` do:
    ``target`` is a URL to POST to, or a preset (``"istio"``, ``"envoy"``, ``"linkerd"``,
    ``"cloud-sql-proxy"``) for its documented endpoint on this pod's loopback. Each attempt waits
    ``timeout`` seconds at most; network errors and 5xx answers are tried again, ``attempts`` times in
    all. What came of it: refused connections mean the sidecar is not there (``"absent"``); never raises
    for the network, only for a bad argument (ExitDirError).

    >>> quit_sidecar("http://127.0.0.1:9/quitquitquit").describe()  # the discard port: nothing listens
    'http://127.0.0.1:9/quitquitquit: absent: connection refused: nothing listens there'
    """
    from ._config import validate_attempts, validate_seconds, validate_url

    url = QUIT_PRESETS.get(target) or validate_url(target)
    return post(url, timeout=validate_seconds(timeout, "timeout="), attempts=validate_attempts(attempts))


def in_parallel(actions: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``actions`` at once, each in a thread (one target's grace period must not delay the others);
    their results in order."""
    if len(actions) <= 1:
        return [action() for action in actions]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        return list(pool.map(lambda action: action(), actions))


def request(
    method: str, url: str, timeout: float, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """One HTTP request to ``url``: the answer's status, and its status line as people read it
    (``HTTP 200 OK``). Raises OSError or ``http.client.HTTPException`` for what the network does."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        answer.read(_MAX_ANSWER)  # only shown, never used
    finally:
        connection.close()
    return answer.status, f"HTTP {answer.status} {answer.reason}".rstrip()


def _network_problem(err: BaseException, timeout: float) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}" if type(err).__name__ not in text else text
