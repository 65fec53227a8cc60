"""Readiness before the main program starts: an HTTP endpoint that answers 2xx, a TCP port that accepts, a
file that exists, a command that succeeds (linkerd-await's and scuttle's job, kubexit's birth
dependencies), or another exitdir follower's helper announced ready.

A dependency is probed until it is ready or the wait's time is up; each probe is bounded, and between
probes the caller's ``pause`` decides how to wait (``exitdir lead`` waits for its terminating signals
there, so a pod deleted meanwhile is not held up).

Readiness between exitdir wrappers is a lock, not a file: ``exitdir follow --name proxy --ready-...``
holds it from the moment its probe passes until it ends (``_liveness.hold_ready``), and ``exitdir lead
--after proxy`` waits until it is held. A lock creates no entry in the exit directory, which Go exitdir
followers would take for the end, and it cannot outlive the follower that holds it.
"""

from __future__ import annotations

import os
import time

from ._config import (
    resolve_directory,
    resolve_liveness_dir,
    validate_choice,
    validate_file_dependency,
    validate_host_port,
    validate_name,
    validate_probe_command,
    validate_url,
)
from ._errors import ExitDirError

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._supervise import Say

# Documented readiness endpoints, on the pod's loopback (docs/sidecars.md cites each source):
# - istio: the sidecar's readiness probe, GET :15021/healthz/ready (Envoy's, through pilot-agent);
# - linkerd: linkerd2-proxy's admin server, GET :4191/ready;
# - cloud-sql-proxy: v2 with --health-check, GET :9090/readiness (--http-port).
READY_PRESETS = {
    "istio": "http://127.0.0.1:15021/healthz/ready",
    "linkerd": "http://127.0.0.1:4191/ready",
    "cloud-sql-proxy": "http://127.0.0.1:9090/readiness",
}
KINDS = ("http", "tcp", "file", "cmd", "after")
PROBE_TIMEOUT = 1.0  # a network probe: a local endpoint answers in milliseconds
COMMAND_TIMEOUT = 10.0  # a command probe starts a program, which may take longer
FIRST_PAUSE = 0.05  # between probes: quick at first, then gentler on the target
LONGEST_PAUSE = 0.5  # ... for what asks the network or runs a program
LOCAL_PAUSE = 0.05  # ... for what only this machine's kernel answers (a file, an announcement here)
FIRST_NOTE, LATER_NOTES = 10.0, 60.0  # when a follower says why its helper is not ready yet


class Dependency:
    """One thing that must be ready: ``kind`` is ``"http"`` (a URL answering 2xx to GET), ``"tcp"``
    (``HOST:PORT`` accepting a connection), ``"file"`` (a path that exists), ``"cmd"`` (a command line,
    split as a shell would, that exits 0) or ``"after"`` (the exitdir follower called ``target`` has
    announced its helper ready: see :func:`announce_ready`; through ``directory`` and ``liveness_dir``,
    by default ``$EXIT_DIR`` and ``$EXITDIR_LIVENESS_DIR``, resolved once, here).

    >>> Dependency("file", "/").probe()
    ''
    >>> Dependency("cmd", "false").probe()
    'exited with status 1'
    """

    __slots__ = ("argv", "directory", "kind", "liveness_dir", "target")  # not a dataclass: see _stops.Stopped

    def __init__(
        self,
        kind: str,
        target: str,
        *,
        directory: str | os.PathLike[str] | None = None,
        liveness_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.kind = validate_choice(kind, KINDS, "dependency kind")
        self.target = target
        self.argv: list[str] = []
        if kind == "http":
            validate_url(target)
        elif kind == "tcp":
            validate_host_port(target)
        elif kind == "cmd":
            self.argv = validate_probe_command(target)
        elif kind == "after":
            validate_name(target)
        else:
            validate_file_dependency(target)
        # Where an announcement is looked for: only an "after" dependency looks anywhere.
        self.directory = resolve_directory(directory) if kind == "after" else None
        self.liveness_dir = resolve_liveness_dir(liveness_dir, self.directory) if kind == "after" else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dependency):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (self.kind, self.target, self.directory, self.liveness_dir)

    def __repr__(self) -> str:
        return f"Dependency({self.kind!r}, {self.target!r})"

    def describe(self) -> str:
        """What is waited for, in a few words."""
        if self.kind == "after":
            return f"{self.target} (announced by exitdir follow --name {self.target})"
        return self.target

    @property
    def local(self) -> bool:
        """Whether only this machine's kernel is asked: it may be probed often."""
        return self.kind == "file" or (self.kind == "after" and self.liveness_dir is None)

    def probe(self) -> str:
        """'' when ready; else why not, in a few words."""
        if self.kind == "file":
            return "" if os.path.exists(self.target) else "it does not exist yet"
        if self.kind == "tcp":
            return _probe_tcp(self.target)
        if self.kind == "cmd":
            from ._supervise import run_probe

            code, said = run_probe(self.argv, COMMAND_TIMEOUT)
            return "" if code == 0 else said or f"exited with status {code}"
        if self.kind == "after":
            return self._probe_announcement()
        return _probe_http(self.target)

    def _probe_announcement(self) -> str:
        from ._liveness import is_ready

        if self.directory is None:
            return "no exit directory to look in: set EXIT_DIR or pass one"
        ready = is_ready(self.directory, self.target, self.liveness_dir)
        if ready is None:
            return "cannot tell this time (the lock table cannot be read)"
        return "" if ready else "not announced ready yet"


class Announcement:
    """Held while the helper of the follower called ``name`` is announced ready; :meth:`close` (or the
    process ending, however it ends) withdraws it. Made by :func:`announce_ready`.

    >>> import tempfile
    >>> with announce_ready("proxy", tempfile.mkdtemp()) as announcement:
    ...     announcement.held
    True
    """

    def __init__(self, name: str, fds: list[int]) -> None:
        self.name = name
        self._fds = fds

    @property
    def held(self) -> bool:
        """Whether the announcement is held anywhere (a lock that could not be taken was said)."""
        return bool(self._fds)

    def close(self) -> None:
        """Withdraw the announcement; idempotent."""
        from ._liveness import release

        fds, self._fds = self._fds, []
        for fd in fds:
            release(fd)

    def __enter__(self) -> Announcement:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def announce_ready(
    name: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    liveness_dir: str | os.PathLike[str] | None = None,
) -> Announcement:
    """Announce that this follower's helper, called ``name``, is ready, to whoever waits for it
    (``exitdir lead --after NAME``, ``exitdir wait --ready NAME``, ``Dependency("after", NAME)``): on this
    machine through a lock on the exit directory (``directory``, default ``$EXIT_DIR``), and with a
    liveness directory (default ``$EXITDIR_LIVENESS_DIR``) on every machine sharing it. Nothing is written
    into the exit directory. Raises ExitDirError for a bad name or no directory.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with announce_ready("proxy", d):
    ...     wait_ready([Dependency("after", "proxy", directory=d)], timeout=5)
    {}
    """
    from ._liveness import hold_ready

    name = validate_name(name)
    exit_dir = resolve_directory(directory)
    if exit_dir is None:
        raise ExitDirError(f"nowhere to announce that {name} is ready: set EXIT_DIR or pass a directory")
    return Announcement(name, hold_ready(exit_dir, name, resolve_liveness_dir(liveness_dir, exit_dir)))


def announce_when_ready(
    name: str,
    probes: Sequence[Dependency],
    *,
    directory: str | os.PathLike[str] | None,
    liveness_dir: str | os.PathLike[str] | None,
    say: Say,
) -> Callable[[], None]:
    """Probe ``probes`` in a thread of its own until all pass, then :func:`announce_ready` ``name`` (and
    ``say`` so). What to call to stop probing and withdraw the announcement: it returns at once (a probe
    under way is left to end on its own; the thread is a daemon)."""
    import threading

    stopping = threading.Event()
    held: list[Announcement] = []
    guard = threading.Lock()
    began = time.monotonic()
    next_note = began + FIRST_NOTE

    def note(why: dict[Dependency, str]) -> None:
        """Say now and then why the helper is not ready yet: whoever waits for it sees only that it is not."""
        nonlocal next_note
        now = time.monotonic()
        if now >= next_note:
            next_note = now + LATER_NOTES
            what = "; ".join(f"{probe.describe()}: {reason}" for probe, reason in why.items())
            say(f"{name} not ready after {now - began:.0f} s: {what}", "not-ready", name=name)

    def probe_then_announce() -> None:
        if probe_until_ready(probes, None, lambda seconds: not stopping.wait(seconds), note):
            return  # stopped first
        announcement = announce_ready(name, directory, liveness_dir=liveness_dir)
        with guard:
            if stopping.is_set():
                announcement.close()
                return
            held.append(announcement)
        say(
            f"{name} is ready ({', '.join(probe.describe() for probe in probes)}): announced",
            "ready",
            name=name,
        )

    def stop() -> None:
        stopping.set()
        with guard:
            for announcement in held:
                announcement.close()

    threading.Thread(target=probe_then_announce, name=f"exitdir-ready-{name}", daemon=True).start()
    return stop


def wait_ready(dependencies: Sequence[Dependency], timeout: float | None = None) -> dict[Dependency, str]:
    """Probe ``dependencies`` until every one is ready, or ``timeout`` seconds pass (None: no limit). What is
    still not ready, with why (empty: all ready).

    >>> wait_ready([Dependency("file", "/"), Dependency("tcp", "127.0.0.1:9")], timeout=0)
    {Dependency('tcp', '127.0.0.1:9'): 'connection refused'}
    """
    return probe_until_ready(dependencies, timeout)


def probe_until_ready(
    dependencies: Sequence[Dependency],
    timeout: float | None,
    pause: Callable[[float], bool] | None = None,
    noted: Callable[[dict[Dependency, str]], None] | None = None,
) -> dict[Dependency, str]:
    """:func:`wait_ready`, where ``pause(seconds)`` waits between rounds and returns False to give up at
    once (a signal, say), and ``noted`` is told after each round what is not ready yet, and why."""
    from ._config import validate_timeout

    timeout = validate_timeout(timeout)
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
        if noted is not None:
            noted(why)
        longest = LOCAL_PAUSE if all(dependency.local for dependency in waiting) else LONGEST_PAUSE
        gap = min(gap, longest)
        if not pause(gap if left is None else min(gap, left)):
            return why
        gap = min(gap * 2, longest)


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
