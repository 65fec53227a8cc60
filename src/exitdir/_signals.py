"""Relaying signals to a child's process group, and turning every signal into a readable fd.

While a :class:`SignalRelay` is entered, each forwardable signal is sent on to the target process group
(or kept until there is one: a signal that arrives before the child exists is not lost, scuttle#34), and
every signal, SIGCHLD included, writes to a wake-up pipe. The supervisor waits in one ``poll()`` on that
pipe and on the follower's token: no thread, no timer, zero wake-ups while idle.
"""

from __future__ import annotations

import os
import signal

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

# Ignored, never forwarded, while a program is supervised: none of them may end the wrapper and leave the
# program running with no marker. The faults (a real one is still fatal: the kernel resets a fault's signal
# that is ignored or blocked to its default action; only one sent with kill is ignored), and the wrapper's
# own resource and profiling signals, which say nothing to the program (its CPU time, file size, timers).
# Python ignores SIGPIPE and SIGXFSZ already.
IGNORED = frozenset(
    {
        *(signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS),
        *(signal.SIGPIPE, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGPROF, signal.SIGVTALRM),
    }
)
# Never forwarded, and left at their actions: the wrapper's own child notifications and job control, and
# SIGURG, which the Go runtime uses internally (forwarding it killed Python and Node children under
# scuttle: scuttle#44, #46). None of them ends a process.
_LEFT_ALONE = {
    *(signal.SIGCHLD, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP),
    *(signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU),
}
# Everything else, real-time signals included: every other signal that would end the wrapper.
FORWARDED = tuple(sorted(s for s in signal.valid_signals() if s not in IGNORED and s not in _LEFT_ALONE))
# What hold() blocks: every catchable signal whose default action ends a process (signal(7)), plus
# SIGCONT and SIGWINCH, which are forwarded too and must not be lost either. (glibc keeps 32 and 33 for
# itself: no program can block or catch them, as no program can catch SIGKILL.)
HELD = frozenset(FORWARDED) | IGNORED
# What asks the wrapper itself to stop: a pod deleted (the kubelet's SIGTERM), `docker stop`, Ctrl-C. A
# program that then ends by it was stopped on purpose (`follow --exit-code zero` exits 0).
STOP_REQUESTS = (signal.SIGTERM, signal.SIGINT)
# Every signal that asks a container to stop: the kubelet's default and any an image may name as its
# STOPSIGNAL (nginx's images use SIGQUIT). It ends ``follow --linger`` (ignoring one would cost the whole
# grace period, then a SIGKILL and status 137, the failure --linger is there to avoid), and a helper that
# ends after the wrapper got one was asked to stop, not failing on its own (``--report-failure``).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
# Reset to the default action in the child, whatever the wrapper does with them.
CHILD_DEFAULTS = tuple(s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


def hold() -> set[int]:
    """Block every signal the wrapper forwards or ignores, until a :class:`SignalRelay` is entered; the
    mask to give :func:`release`. First thing ``lead`` and ``follow`` do: a signal that comes while they
    start (before the relay, or the program, exists) is kept for the program instead of ending the
    wrapper with no marker and no lock.

    >>> previous = hold()
    >>> signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    True
    >>> release(previous)
    """
    return signal.pthread_sigmask(signal.SIG_BLOCK, HELD)


def release(previous: set[int], *, restore: bool = True) -> None:
    """Drop the held signals still pending, and restore ``previous``. A signal still pending here came
    when no program was running to take it (it never started, or had ended): the wrapper's status says
    what became of the program, and the wrapper is ending anyway. ``restore=False``, for a process that
    is about to exit (the ``exitdir`` program itself): they stay blocked, since one that comes after the
    drain would otherwise be delivered as the mask is restored, and end a wrapper that has done its work
    with a traceback (SIGINT) or 143 (SIGTERM) instead of the program's status (seen once in 200 random
    trials of tests/test_reliability.py).

    >>> previous = hold()
    >>> release(previous, restore=False)
    >>> signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    True
    >>> release(previous)
    >>> signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    False
    """
    for signum in signal.sigpending() & HELD:
        if signum not in previous:  # blocked before we came: not ours to take
            while signal.sigtimedwait([signum], 0) is not None:  # real-time signals queue
                pass
    if restore:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def linger(*, reap: bool = False) -> int:
    """Block, with no timer and no wake-up, until one of :data:`STOP_SIGNALS` comes; which one came. They are
    blocked meanwhile and taken with ``sigwaitinfo``, so neither a handler nor a default action runs.
    ``reap``: orphans are ours (PID 1, a subreaper), so children that end meanwhile are reaped, each on
    its SIGCHLD. ``follow --linger``: a native sidecar that exits is restarted, so it stays, idle.
    """
    awaited = {*STOP_SIGNALS, *((signal.SIGCHLD,) if reap else ())}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, awaited)
    try:
        while True:
            if reap:  # a child that ended before SIGCHLD was blocked left no signal to wait for
                _reap_ended()
            signum = signal.sigwaitinfo(awaited).si_signo
            if signum != signal.SIGCHLD:
                return signum
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _reap_ended() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
    except ChildProcessError:
        pass  # no child at all


class SignalRelay:
    """Forward signals to a process group; make :meth:`fileno` readable on any signal. Main thread only.

    Creating one takes its file descriptors (OSError if there are none left), so that a caller can
    acquire everything before it starts a program; entering it installs the handlers; leaving it, or
    :meth:`close` if it was never entered, gives everything back.
    """

    def __init__(self) -> None:
        self._group: int | None = None
        self._pending: list[int] = []
        self._received: dict[int, int] = {}  # signal -> how many times, in the order first received
        self._withheld: set[int] = set()
        self._old_handlers: dict[int, object] = {}
        self._old_wakeup_fd = -1
        self._old_mask: set[int] = set()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __enter__(self) -> SignalRelay:
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in FORWARDED:
            try:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
            except (OSError, ValueError):
                pass  # reserved by the C library (some real-time signals)
        for signum in IGNORED:
            self._old_handlers[signum] = signal.signal(signum, signal.SIG_IGN)
        # A no-op handler makes SIGCHLD write to the wake-up pipe (the default action ignores it silently).
        self._old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        # Held signals (hold()), and an inherited blocked mask (common under container runtimes), which
        # would hold signals back forever. Handlers go in first: a signal pending from before is then
        # queued for the child, not lost.
        self._old_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, [*HELD, signal.SIGCHLD])
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._group = None
        # The mask first: once the handlers are gone, a signal is held again (as before the relay) rather
        # than ending the wrapper between the program's end and its marker.
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        for signum, handler in self._old_handlers.items():
            # None: a handler installed outside Python (faulthandler), which cannot be put back from here.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]
        self._old_handlers = {}
        signal.set_wakeup_fd(self._old_wakeup_fd)
        self.close()

    def close(self) -> None:
        """Give the file descriptors back. Idempotent."""
        for fd in (self._wake_r, self._wake_w):
            if fd != -1:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Every signal seen here came from outside: the wrapper never signals itself (its program has a
        # process group of its own), so a stop request recorded here was asked for by someone else.
        self._received[signum] = self._received.get(signum, 0) + 1
        if signum in self._withheld:
            return  # the supervisor decides when the program gets what it asks for (follow --hold-on-term)
        if self._group is None:
            self._pending.append(signum)
        else:
            self.send(signum)

    def withhold(self, signum: int) -> None:
        """Record ``signum`` when it comes (:meth:`received`) but never forward it."""
        self._withheld.add(signum)

    def received(self, signum: int) -> int:
        """How many times ``signum`` came since the relay was made (a burst may count once, as signals
        merge while pending)."""
        return self._received.get(signum, 0)

    def stop_request(self) -> int | None:
        """The first SIGTERM or SIGINT that came (:data:`STOP_REQUESTS`), or None."""
        # A snapshot, taken in one C call: the handler may add to the dict between any two bytecodes of a
        # loop over it (a RuntimeError that once ended lead, status 1, under a burst of signals).
        return next((signum for signum in tuple(self._received) if signum in STOP_REQUESTS), None)

    def relay_to(self, group: int) -> None:
        """From now on forward to process group ``group``, starting with the signals kept so far."""
        self._group = group
        pending, self._pending = self._pending, []
        for signum in pending:
            self.send(signum)

    def stop_relaying(self) -> None:
        """The group's leader has been reaped: its id may be reused, so nothing more is sent to it."""
        self._group = None

    def send(self, signum: int) -> None:
        """Send ``signum`` to the group, while it is still ours."""
        if self._group is None:
            return
        try:
            os.killpg(self._group, signum)
        except ProcessLookupError:
            pass

    def fileno(self) -> int:
        """Readable after any signal, or after :meth:`wake`."""
        return self._wake_r

    def wake(self) -> None:
        """Make :meth:`fileno` readable, from any thread."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full of wake-ups already, or closed: either way nobody needs another

    def drain(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
