"""Run one child program the way an init should, until it ends or the follower's token says stop.

Models: tini's ``main`` and dumb-init. :func:`supervise` is the one entry point and reads top to bottom:
start the child in its own process group (``posix_spawn``, empty signal mask, default dispositions: Python
ignores SIGPIPE and SIGXFSZ, and ignored signals survive ``exec``), relay signals to it, wait for it to
exit or for the token to trip or the deadline to pass, stop it (signal, grace period, SIGKILL, and
always a wait), reap it, with ``kill_descendants`` stop whatever it left running outside its process group
(tini's ``-g``, completed), and say what happened as an :class:`Outcome`. ``exitdir lead`` and ``exitdir
follow`` only map the outcome to an exit status.
"""

from __future__ import annotations

import _thread
import errno
import os
import select
import signal
import time

from ._clock import poll_ms, sooner
from ._errno import explain
from ._errors import ExitDirError
from ._linux import Process, descendants, signal_process
from ._marker import KIND_VANISHED, describe
from ._signals import CHILD_DEFAULTS, STOP_REQUESTS, SignalRelay, signal_name

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    from ._token import ExitToken

    class Say(Protocol):
        """Where the wrapper's own messages go: ``say(message, event, **fields)``. ``event`` is a kebab-case
        name (``stopping``); ``fields`` are facts a log pipeline may want (``pid``, ``command``,
        ``signal``, ``status``, ``marker``). The CLI writes text or JSON lines; the default says nothing."""

        def __call__(self, message: str, event: str = ..., **fields: object) -> None: ...


EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

# Why supervision ended: Outcome.why.
EXITED = "exited"  # the child ended on its own
MARKER = "marker"  # the token tripped: the child was stopped, or never started (Outcome.child is None)
TIMEOUT = "timeout"  # the deadline passed first: the child was stopped
NOT_STARTED = "not started"  # the program could not be started (Outcome.child: 127 or 126, and why)
FAILED = "failed"  # the token failed (its directory is lost): the child was stopped; Outcome.error says why
STOPPED = "stopped"  # a SIGTERM held (hold_on_term) until no marker came in time, or a second one: stopped


class ChildExit:
    """How a child ended: ``code`` is what a shell reports (the status, or 128 + signal number)."""

    __slots__ = ("code", "reason", "signal")

    def __init__(self, code: int, reason: str, signum: int | None = None) -> None:
        self.code = code
        self.reason = reason
        self.signal = signum

    @classmethod
    def from_wait_status(cls, status: int) -> ChildExit:
        if os.WIFSIGNALED(status):
            signum = os.WTERMSIG(status)
            return cls(128 + signum, f"killed by {signal_name(signum)}", signum)
        code = os.waitstatus_to_exitcode(status)
        return cls(code, f"exited with status {code}")

    def __repr__(self) -> str:
        return f"ChildExit({self.code}, {self.reason!r})"


class Outcome:
    """Why supervision ended (``why``: EXITED, MARKER, TIMEOUT, NOT_STARTED, FAILED or STOPPED) and how the
    child ended; ``error``, for FAILED, is the token's error. ``stop_request`` is the first SIGTERM or
    SIGINT the wrapper itself was sent while the child ran (None: none); ``on_purpose`` says that the
    child then ended by what was asked: by that signal (forwarded, or reaching it another way; killed by
    it or exiting 128 + it), or, for STOPPED, by the stop sequence (the stop signal, or SIGKILL after the
    grace period)."""

    __slots__ = ("child", "error", "on_purpose", "pid", "stop_request", "why")

    def __init__(
        self,
        why: str,
        child: ChildExit | None,
        pid: int | None = None,
        error: ExitDirError | None = None,
        *,
        stop_request: int | None = None,
        on_purpose: bool = False,
    ) -> None:
        self.why = why
        self.child = child
        self.pid = pid
        self.error = error
        self.stop_request = stop_request
        self.on_purpose = on_purpose

    def __repr__(self) -> str:
        return f"Outcome({self.why!r}, {self.child!r}, pid={self.pid})"


def _quiet(message: str, event: str = "info", **fields: object) -> None:
    pass


def signal_relay() -> SignalRelay:
    """A :class:`SignalRelay`, or ExitDirError saying what is lacking and the fix."""
    try:
        return SignalRelay()
    except OSError as err:
        raise ExitDirError(f"no file descriptor left to relay signals: {explain(err)}") from None


def supervise(
    argv: Sequence[str],
    *,
    until: ExitToken | None = None,
    relay: SignalRelay | None = None,
    timeout: float | None = None,
    stop_signal: int = signal.SIGTERM,
    grace: float = 10.0,
    reap_all: bool = False,
    kill_descendants: bool = False,
    hold_on_term: float | None = None,
    watch_after_stop_request: bool = True,
    say: Say = _quiet,
) -> Outcome:
    """Run ``argv`` until it exits, or until ``until`` trips or fails or ``timeout`` seconds pass (then
    stop it).

    Everything supervision needs is acquired before the program starts, and if something is lacking
    (ExitDirError) it does not start: the signal relay (``relay``, else one made now: a caller that also
    watches a directory makes it first, so that the watch adapts to what is left), and a look at the
    directory with all that held. ``until`` failing before the start raises its error too.
    ``reap_all``: orphans are reparented to us (PID 1, or a subreaper) and must be reaped too.
    ``kill_descendants`` (with ``reap_all``, on Linux): every other process below us is stopped too, however
    supervision ends: ``stop_signal``, ``grace``, then SIGKILL. ``hold_on_term`` (seconds): a SIGTERM to
    the wrapper is not forwarded; the child runs on until ``until`` trips (MARKER) or that long has passed
    (STOPPED), then is stopped as for a marker; a second SIGTERM stops it at once (STOPPED).
    ``watch_after_stop_request=False``: once the wrapper is sent SIGTERM or SIGINT (relayed to the child
    as usual), ``until`` is no longer watched: the pod is being deleted, and what else stops now is part of
    that, not a reason to stop the child a second time (``lead --stop-on``). ``say``
    receives the wrapper's own messages, each with its event name and facts (:class:`Say`). Call from the
    main thread: signal handlers are installed for the duration, then restored.
    """
    command = argv[0]
    try:
        relay = relay if relay is not None else signal_relay()
    except ExitDirError as err:
        raise ExitDirError(f"cannot start {command}: {err}") from None
    try:
        if until is not None:
            from ._token import Waiter  # here: `exitdir lead` never loads the follower's machinery

            lacking = Waiter(until).lacking()
            if lacking is not None:
                raise ExitDirError(f"cannot start {command}: {lacking}")
            if until.is_set():  # raises the token's error if it failed
                message, event = _cause(MARKER, until, None)
                say(
                    f"{message}: not starting {command}"
                    if until.followers
                    else f"leader already signalled ({describe(until.marker)}): not starting {command}",
                    event,
                    marker=until.marker,
                    command=command,
                )
                return Outcome(MARKER, None)
        deadline = None if timeout is None else time.monotonic() + timeout
        if hold_on_term is not None:
            relay.withhold(signal.SIGTERM)  # the loop below decides when the child gets it
        with relay:
            started = _spawn(argv)
            if isinstance(started, ChildExit):
                return Outcome(NOT_STARTED, started)
            child = _Child(started, relay, reap_all=reap_all)
            strays = _Descendants(relay, say=say, what=command) if kill_descendants else None
            held = None if hold_on_term is None else _Hold(hold_on_term, say=say, what=command)
            killed = False
            with _TerminalHandover(child.pid) as terminal:
                relay.relay_to(child.pid)
                # Said once the relay reaches the child: a signal that comes while we write goes on at once.
                say(f"started {command} (pid {child.pid})", "started", pid=child.pid, command=command)
                why = child.wait(
                    until,
                    deadline,
                    terminal=terminal,
                    hold=held,
                    watch_after_stop_request=watch_after_stop_request,
                )
                if why != EXITED:
                    _say_cause(say, why, until, timeout, held)
                    say(
                        f"stopping {command} (pid {child.pid}) with {signal_name(stop_signal)}",
                        "stopping",
                        pid=child.pid,
                        command=command,
                        signal=signal_name(stop_signal),
                    )
                    if strays is not None:  # at the same time as the group, within the same grace period
                        strays.send(stop_signal, grace, sent_to_group=child.pid)
                    killed = child.stop(stop_signal, grace, say=say, what=command)
                ended = child.reap()
                relay.stop_relaying()
            say(
                f"{command} (pid {child.pid}) {ended.reason}",
                "exited",
                pid=child.pid,
                command=command,
                status=ended.code,
                signal=None if ended.signal is None else signal_name(ended.signal),
            )
            if strays is not None:  # what it left running (setsid, a double-forked daemon) goes too
                strays.stop(stop_signal, grace)
    finally:
        relay.close()
    asked = relay.stop_request()
    if why == STOPPED:
        wanted = {stop_signal, signal.SIGKILL} if killed else {stop_signal}
    else:  # what the wrapper was asked to stop by, whoever passed it on to the child
        wanted = {signum for signum in STOP_REQUESTS if relay.received(signum)} if why == EXITED else set()
    on_purpose = ended.signal in wanted or (ended.signal is None and (ended.code - 128) in wanted)
    return Outcome(
        why,
        ended,
        child.pid,
        None if until is None else until.error,
        stop_request=asked,
        on_purpose=on_purpose,
    )


def _say_cause(
    say: Say, why: str, token: ExitToken | None, timeout: float | None, held: _Hold | None
) -> None:
    """Why the child is being stopped: the marker (or the leader vanished), the deadline, a lost watch, the
    end of a held SIGTERM."""
    if why == TIMEOUT:
        say(f"no marker within {timeout:g} s", "timed-out")
    elif why == FAILED:
        say("cannot watch the exit directory any more", "watch-failed")
    elif why == STOPPED:
        assert held is not None
        say(held.cause(), "hold-ended", command=held.what)
    else:
        message, event = _cause(why, token, timeout)
        say(message, event, marker=None if token is None else token.marker)


def _cause(why: str, token: ExitToken | None, timeout: float | None) -> tuple[str, str]:
    """Why a tripped token trips, in words, and its event: a marker, or a leader (or, for ``lead --stop-on``,
    a follower) gone without writing one."""
    marker = None if token is None else token.marker
    vanished = marker is not None and marker.kind == KIND_VANISHED
    if token is not None and token.followers and marker is not None:  # lead --stop-on
        if vanished:
            return (
                f"follower {marker.name} is gone without a report "
                "(killed outright, stopped from outside, or its helper exited 0)",
                "follower-vanished",
            )
        return f"follower {marker.name} reported a failure ({describe(marker)})", "follower-failed"
    if vanished:
        return f"leader gone without a marker ({describe(marker)})", "leader-vanished"
    return f"leader signalled ({describe(marker)})", "marker-seen"


class _Hold:
    """``follow --hold-on-term``: the first SIGTERM starts a hold of ``seconds``, in which the child runs
    on (the app it serves is still draining); the supervisor's loop waits for its end as for a deadline."""

    def __init__(self, seconds: float, *, say: Say, what: str) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self._say = say
        self.what = what
        self._terms = 0

    def ended(self, relay: SignalRelay) -> bool:
        """Starts the hold at the first SIGTERM; True once it is over (a second SIGTERM, or its time)."""
        self._terms = relay.received(signal.SIGTERM)
        if self._terms == 0:
            return False
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds
            self._say(
                f"SIGTERM: holding {self.what} until the marker appears, at most {self.seconds:g} s",
                "holding",
                command=self.what,
                signal="SIGTERM",
            )
        return self._terms > 1 or time.monotonic() >= self.deadline

    def cause(self) -> str:
        if self._terms > 1:
            return "SIGTERM again while holding"
        return f"no marker within {self.seconds:g} s of SIGTERM"


def _spawn(argv: Sequence[str], file_actions: Sequence[tuple[object, ...]] = ()) -> int | ChildExit:
    """The child's pid, or how starting it failed, as a shell would report it (127 not found, 126 else)."""
    command = argv[0]
    if not command:  # names no program, as bash says (`: command not found`, 127)
        return ChildExit(EXIT_NOT_FOUND, "command not found: ''")
    try:
        return os.posix_spawnp(
            command,
            list(argv),
            _environment(),
            file_actions=file_actions,
            setpgroup=0,
            setsigmask=(),
            setsigdef=CHILD_DEFAULTS,
        )
    except OSError as err:
        if err.errno == errno.ENOENT:
            return ChildExit(EXIT_NOT_FOUND, f"command not found: {command}")
        # EACCES, ENOEXEC, EISDIR as a shell says them; E2BIG, ENOMEM, EAGAIN too: it did not start.
        return ChildExit(EXIT_NOT_EXECUTABLE, f"cannot execute {command}: {err.strerror}")
    except ValueError as err:  # a NUL in an argument: only supervise(argv) from Python can pass one
        return ChildExit(EXIT_NOT_EXECUTABLE, f"cannot execute {command}: {err}")


def _environment() -> dict[str, str]:
    """``os.environ`` as exec can pass it on. A raw entry ``=x`` (execve allows it) reads as the name ``""``,
    which posix_spawnp refuses (ValueError): it is dropped, as Python drops an entry with no ``=``; no
    program can look up a variable with no name."""
    return {name: value for name, value in os.environ.items() if name and "=" not in name}


# How long a wrapper that stops watching on a stop request waits for one before it acts on a follower gone
# without a marker: the kubelet stops a pod's containers in parallel, so their SIGTERMs come moments apart.
STOP_REQUEST_SKEW = 2.0
_KILLED_GROUP_WAIT = 2.0


def _due(at: float | None, timeout: float | None) -> tuple[bool, float | None]:
    """Whether monotonic time ``at`` has passed, and the poll timeout shortened to wake up then."""
    if at is None:
        return False, timeout
    left = at - time.monotonic()
    return left <= 0, sooner(
        timeout, max(0.0, left)
    )  # seconds for SIGKILLed group members to die; only one stuck in the kernel takes it


class _Child:
    """The main child: its exit is seen with ``waitid(WNOWAIT)``, which leaves it a zombie until
    :meth:`reap`. While it is a zombie its pid, and so its process group id, cannot be reused, so the
    rest of its group can be SIGKILLed without any risk of hitting an unrelated process."""

    def __init__(self, pid: int, relay: SignalRelay, *, reap_all: bool) -> None:
        self.pid = pid
        self._relay = relay
        self._reap_all = reap_all
        self._exited = False
        self._group_killed = False

    def wait(
        self,
        until: ExitToken | None,
        deadline: float | None,
        *,
        terminal: _TerminalHandover | None = None,
        hold: _Hold | None = None,
        watch_after_stop_request: bool = True,
    ) -> str:
        """Block until the child exits (EXITED), ``until`` trips (MARKER) or ``deadline`` passes (TIMEOUT),
        or ``hold`` ends (STOPPED). With ``terminal`` (interactive use), a child stopped by job control
        stops the wrapper too. Without ``watch_after_stop_request``, ``until`` is dropped once the wrapper
        is sent SIGTERM or SIGINT (a trip seen before then still counts)."""
        poller = select.poll()
        poller.register(self._relay.fileno(), select.POLLIN)
        waiter = None
        if until is not None:
            from ._token import Waiter  # here: `exitdir lead` never loads the follower's machinery

            # Woken through the relay's pipe when the token trips or changes its plan in another thread.
            waiter = Waiter(until, self._relay.wake)
        polled_fd: int | None = None
        confirm_at: float | None = None  # a vanished trip, acted on then unless a stop request comes first
        try:
            while True:
                self._reap_orphans()
                if self._has_exited():
                    return EXITED
                if self._stopped_with(terminal):
                    continue
                if waiter is not None and waiter.deliver():
                    assert until is not None
                    marker = until.marker
                    if watch_after_stop_request or marker is None or marker.kind != KIND_VANISHED:
                        return MARKER
                    # Gone without a marker, while a pod's deletion may be under way: the kubelet signals
                    # its containers in parallel, so ours may come a moment after the other's ended.
                    confirm_at = time.monotonic() + STOP_REQUEST_SKEW
                    waiter.close()
                    waiter = None
                if until is not None and until.error is not None:
                    return FAILED
                if until is not None and not watch_after_stop_request and self._relay.stop_request():
                    if waiter is not None:
                        waiter.close()  # the child has the signal: only its end is awaited now
                    waiter = until = confirm_at = None
                fd, timeout = (None, None) if waiter is None else waiter.plan()  # re-read: it may change
                if fd != polled_fd:
                    if polled_fd is not None:
                        poller.unregister(polled_fd)
                    if fd is not None:
                        poller.register(fd, select.POLLIN)
                    polled_fd = fd
                passed, timeout = _due(deadline, timeout)
                if passed:
                    return TIMEOUT
                passed, timeout = _due(confirm_at, timeout)
                if passed:
                    return MARKER
                if hold is not None:
                    if hold.ended(self._relay):
                        return STOPPED
                    if hold.deadline is not None:  # a SIGTERM is held: its end is one more deadline
                        timeout = sooner(timeout, hold.deadline - time.monotonic())
                poller.poll(poll_ms(timeout))
                self._relay.drain()
        finally:
            if waiter is not None:
                waiter.close()

    def _stopped_with(self, terminal: _TerminalHandover | None) -> bool:
        """Interactive use: whether job control stopped the child, and so the wrapper, since last asked."""
        if terminal is None or not terminal.active:
            return False
        stopped = self._stopped()
        if stopped is not None:
            terminal.stop_with(stopped)
        return stopped is not None

    def stop(self, signum: int, grace: float, *, say: Say, what: str) -> bool:
        """Send ``signum`` to the group; after ``grace`` seconds, SIGKILL it. Always waits for the child.
        Whether the child had to be SIGKILLed."""
        self._relay.send(signum)
        killed = self.wait(None, time.monotonic() + grace) != EXITED
        if killed:
            say(
                f"{what} (pid {self.pid}) did not exit within {grace:g} s of {signal_name(signum)}; "
                "sending SIGKILL",
                "killed-after-grace",
                pid=self.pid,
                command=what,
                signal="SIGKILL",
            )
            self._relay.send(signal.SIGKILL)
            self.wait(None, None)
        # Whatever else the group still holds (a child that ignored the signal) goes too: the zombie main
        # child still pins the pgid, so this cannot hit an unrelated process.
        self._relay.send(signal.SIGKILL)
        self._group_killed = True
        return killed

    def reap(self) -> ChildExit:
        """Reap the main child (after :meth:`wait` said EXITED) and any orphans; how the child ended."""
        assert self._exited
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # someone else reaped it: the status is lost
            status = 0
        self._reap_orphans()
        if self._reap_all and self._group_killed:
            self._reap_killed_group()
        return ChildExit.from_wait_status(status)

    def _reap_killed_group(self) -> None:
        """Members of the SIGKILLed group reparented to us die within moments: reap them before we exit, or
        each is left a zombie for another init. Bounded: one stuck in the kernel is left to that init."""
        # -pid: the group; its id outlives the main child while members live
        _reap_until_none(self._relay, -self.pid, time.monotonic() + _KILLED_GROUP_WAIT)

    def _has_exited(self) -> bool:
        if not self._exited:
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            self._exited = info is not None and info.si_pid == self.pid
        return self._exited

    def _stopped(self) -> int | None:
        """The signal that stopped the child since last asked (its report is consumed), or None."""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WSTOPPED | os.WNOHANG)
        except ChildProcessError:
            return None
        return info.si_status if info is not None and info.si_code == os.CLD_STOPPED else None

    def _reap_orphans(self) -> None:
        """As PID 1 or a subreaper, orphans are reparented to us: reap them, or they stay zombies."""
        while self._reap_all:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in (0, self.pid):
                return  # nothing to reap, or only the main child, which reap() reaps
            with _probes_lock:
                try:
                    _, status = os.waitpid(info.si_pid, 0)
                except ChildProcessError:
                    continue
                if info.si_pid in _probe_statuses:
                    _probe_statuses[info.si_pid] = status  # for run_probe, whose child it is


# Readiness probe commands (`exitdir follow --ready-cmd`) run in another thread while this module's loop may
# reap every child (as PID 1 or a subreaper). A probe's status must not be lost to that reaper: subprocess
# would read the lost status as 0, "ready". The reaper keeps the status of a probe it reaps, under the lock
# that the probe holds while it starts its child and after it finds the child reaped by someone else.
# `_thread`, not `threading`: it costs no import, and `exitdir lead` never needs more.
_probes_lock = _thread.allocate_lock()
_probe_statuses: dict[int, int | None] = {}  # a running probe's pid -> its wait status, once reaped here
_PROBE_OUTPUT = 4096  # what is kept of a probe's standard error: its last line is shown


def run_probe(argv: Sequence[str], timeout: float) -> tuple[int | None, str]:
    """Run the probe command ``argv`` to its end, for ``timeout`` seconds at most (then its process group
    is SIGKILLed): its exit code (None: it did not start, took too long, or its status was lost) and the
    last line of its standard error, or why it failed. Its standard output is discarded.

    >>> run_probe(["true"], timeout=5)
    (0, '')
    """
    deadline = time.monotonic() + timeout
    read_end, write_end = os.pipe()
    quiet = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_end, 2),
    ]
    try:
        with _probes_lock:
            pid = _spawn(argv, quiet)
            if isinstance(pid, int):
                _probe_statuses[pid] = None
    finally:
        os.close(write_end)
    if isinstance(pid, ChildExit):
        os.close(read_end)
        return None, pid.reason
    try:
        said = _read_until_closed(read_end, deadline)
        status, killed = _probe_status(pid, deadline)
    finally:
        os.close(read_end)
        with _probes_lock:
            _probe_statuses.pop(pid, None)
    last = said.decode(errors="replace").strip().rpartition("\n")[2].strip()
    if killed:
        return None, f"no answer within {timeout:g} s"
    if status is None:
        return None, "its exit status was lost"
    ended = ChildExit.from_wait_status(status)
    return ended.code, last or ("" if ended.code == 0 else ended.reason)


def _read_until_closed(fd: int, deadline: float) -> bytes:
    """What comes through ``fd`` until its writers close it or ``deadline`` passes (the last bytes kept)."""
    kept = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(poll_ms(left)):
            return kept
        chunk = os.read(fd, 65536)
        if not chunk:
            return kept
        kept = (kept + chunk)[-_PROBE_OUTPUT:]


def _probe_status(pid: int, deadline: float) -> tuple[int | None, bool]:
    """The wait status of probe ``pid``, reaped here or by the supervision loop (None if lost: a final
    sweep of every child took it), and whether it had to be killed: past ``deadline`` its group is
    SIGKILLed, and waited for a little longer (bounded: a process stuck in the kernel outlives SIGKILL)."""
    pause = 0.001
    killed = False
    while True:
        with _probes_lock:
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return _probe_statuses.get(pid), killed
        if reaped:
            return status, killed
        if time.monotonic() >= deadline:
            if killed:
                return None, killed
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            killed, deadline = True, time.monotonic() + _KILLED_GROUP_WAIT
            continue
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


# After the grace period, SIGKILL rounds: each kills what /proc shows and waits for it to be gone, a little
# longer each time (SIGKILL waits for a process stuck in the kernel, on a dead NFS server say, to come
# back). A fork bomb can outrun a round, since pids are signalled one by one; the rounds are bounded.
_KILL_ROUNDS = 10
_FIRST_KILL_WAIT = 0.01
_LONGEST_KILL_WAIT = 1.0


class _Descendants:
    """Every process below the wrapper, found in /proc by its parent chain: tini's ``-g``, completed, so a
    process that left the helper's group (``setsid()``, a double-forked daemon) is stopped too.

    Needs the subreaper (or PID 1): an orphan is then reparented to us, so it stays our descendant until we
    reap it, and the last one to go always wakes us with SIGCHLD (a live descendant hangs below a live
    child of ours). A process is signalled only while its pid still names the process seen in /proc
    (:func:`~exitdir._linux.signal_process`), and each gets the stop signal once.
    """

    def __init__(self, relay: SignalRelay, *, say: Say, what: str) -> None:
        self._relay = relay
        self._say = say
        self._what = what
        self._signalled: set[tuple[int, int]] = set()
        self._deadline: float | None = None
        self._blind = False  # /proc could not be read: nothing more can be found, so nothing is waited for

    def send(self, signum: int, grace: float, *, sent_to_group: int | None = None) -> None:
        """Send ``signum`` to every descendant that has not had it, and start the grace period if it has
        not started. Members of process group ``sent_to_group`` have it already (the relay sent it)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + grace
        sent = []
        for proc in self._alive() or ():
            if proc.key in self._signalled:
                continue
            self._signalled.add(proc.key)
            if proc.pgrp != sent_to_group and signal_process(proc, signum):
                sent.append(proc.pid)
        if sent:
            self._say(
                f"stopping {_count(sent)} started by {self._what} ({_pids(sent)}) with {signal_name(signum)}",
                "stopping-descendants",
                pids=sent,
                command=self._what,
                signal=signal_name(signum),
            )

    def stop(self, signum: int, grace: float) -> None:
        """``signum`` to every descendant that has not had it, the rest of the grace period, then SIGKILL
        in rounds until none is left; every one that ends is reaped."""
        self.send(signum, grace)
        assert self._deadline is not None
        if self._blind or self._gone(self._deadline):
            return
        wait, warned = _FIRST_KILL_WAIT, False
        for _ in range(_KILL_ROUNDS):
            killed = [proc.pid for proc in self._alive() or () if signal_process(proc, signal.SIGKILL)]
            if killed and not warned:
                warned = True
                self._say(
                    f"{_count(killed)} started by {self._what} ({_pids(killed)}) did not exit within "
                    f"{grace:g} s of {signal_name(signum)}; sending SIGKILL",
                    "killed-after-grace",
                    pids=killed,
                    command=self._what,
                    signal="SIGKILL",
                )
            if self._blind or self._gone(time.monotonic() + wait):
                return
            wait = min(2 * wait, _LONGEST_KILL_WAIT)
        left = [proc.pid for proc in self._alive() or ()]
        if left:
            self._say(
                f"{_count(left)} started by {self._what} ({_pids(left)}) still running after {_KILL_ROUNDS} "
                "rounds of SIGKILL (stuck in the kernel, or a fork bomb); leaving them",
                "descendants-left",
                pids=left,
                command=self._what,
            )

    def _alive(self) -> list[Process] | None:
        """The descendants that are not zombies; None once /proc could not be read (said once)."""
        if self._blind:
            return None
        try:
            return [proc for proc in descendants() if proc.alive]
        except OSError as err:
            self._blind = True
            self._say(
                f"cannot list the processes started by {self._what} ({err}); leaving them running",
                "descendants-unknown",
                command=self._what,
            )
            return None

    def _gone(self, deadline: float) -> bool:
        """Reap every child that has ended; True once none is left (so no descendant either), False if
        ``deadline`` passes first."""
        return _reap_until_none(self._relay, -1, deadline)


def _reap_until_none(relay: SignalRelay, which: int, deadline: float) -> bool:
    """Reap our children ``which`` names (waitpid's pid: -1 for all, -PGID for a group) as they end, until
    none is left (True) or ``deadline`` passes (False). SIGCHLD wakes the wait, through the relay's pipe."""
    poller = select.poll()
    poller.register(relay.fileno(), select.POLLIN)
    while True:
        try:
            while os.waitpid(which, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        poller.poll(poll_ms(left))
        relay.drain()


def _count(pids: list[int]) -> str:
    return "1 process" if len(pids) == 1 else f"{len(pids)} processes"


def _pids(pids: list[int], shown: int = 5) -> str:
    """``pid 7``, ``pids 7, 8``, ``pids 1, 2, 3, 4, 5 and 3 more``."""
    listed = ", ".join(str(pid) for pid in pids[:shown])
    more = f" and {len(pids) - shown} more" if len(pids) > shown else ""
    return f"pid{'s' if len(pids) > 1 else ''} {listed}{more}"


class _TerminalHandover:
    """Interactive use: the child's group owns the terminal while it runs, so reading from it does not
    stop the child (SIGTTIN) and Ctrl-C reaches the child directly. Job control goes through the wrapper as
    through a shell job: when Ctrl-Z stops the child, the wrapper takes the terminal back and stops itself
    with the same signal, so the shell regains control; on SIGCONT (``fg``, ``bg``) it gives the terminal
    back to the child if it is itself in the foreground, and continues the child. In containers there is
    no terminal and this does nothing."""

    def __init__(self, pid: int) -> None:
        self._fd: int | None = None
        self._pid = pid
        self._child_has_it = True  # the terminal, given to the child's group, is to be taken back
        try:
            if not os.isatty(0) or os.tcgetpgrp(0) != os.getpgrp():
                return
            with _SigttouIgnored():
                os.tcsetpgrp(0, pid)
            self._fd = 0
            os.killpg(pid, signal.SIGCONT)  # in case it already read from the terminal and stopped
        except OSError:
            self._fd = None

    @property
    def active(self) -> bool:
        return self._fd is not None

    def stop_with(self, signum: int) -> None:
        """The child was stopped by ``signum``: do as it did, then, once continued, continue it."""
        fd = self._fd
        assert fd is not None
        # Take the terminal only from the child: stopped in the background (bg, then reading), it does
        # not have it, and taking it then would take it from the shell.
        self._hand(fd, frm=self._pid, to=os.getpgrp())
        # SIGCONT continues us whether or not it is blocked; blocked, its handler (which forwards it) does
        # not run before the terminal is the child's again, so the child never wakes up without it.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCONT])
        try:
            # A stop signal is discarded for an orphaned process group: then we go on at once, as a shell
            # would have to.
            os.kill(os.getpid(), signum)
            # fg: the terminal is ours again, so the child's; bg: it stays the shell's, and is not ours
            # to take back when the child ends.
            self._child_has_it = self._hand(fd, frm=os.getpgrp(), to=self._pid)
            try:
                os.killpg(self._pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            while signal.sigtimedwait([signal.SIGCONT], 0) is not None:
                pass  # the child has had it: not twice (a program redraws its screen on each)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    @staticmethod
    def _hand(fd: int, *, frm: int, to: int) -> bool:
        """Give the terminal to group ``to`` if group ``frm`` has it; whether it did."""
        try:
            with _SigttouIgnored():
                if os.tcgetpgrp(fd) != frm:
                    return False
                os.tcsetpgrp(fd, to)
                return True
        except OSError:
            return False

    def __enter__(self) -> _TerminalHandover:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is None or not self._child_has_it:
            return
        try:
            with _SigttouIgnored():
                os.tcsetpgrp(self._fd, os.getpgrp())
        except OSError:
            pass


class _SigttouIgnored:
    """tcsetpgrp from a background group raises SIGTTOU, which would stop the wrapper."""

    def __enter__(self) -> None:
        self._old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGTTOU, self._old)
