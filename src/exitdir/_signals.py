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

# Never forwarded: the wrapper's own child notifications and job control, faults that concern only the
# wrapper, profiling timers, and SIGURG, which the Go runtime uses internally (forwarding it killed
# Python and Node children under scuttle: scuttle#44, #46).
_NOT_FORWARDED = {
    signal.SIGCHLD,
    signal.SIGURG,
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGPIPE,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGPROF,
    signal.SIGVTALRM,
    signal.SIGXCPU,
    signal.SIGXFSZ,
}
FORWARDED = tuple(sorted(s for s in signal.valid_signals() if s not in _NOT_FORWARDED))
# Reset to the default action in the child, whatever the wrapper does with them.
CHILD_DEFAULTS = tuple(s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SignalRelay:
    """Forward signals to a process group; make :meth:`fileno` readable on any signal. Main thread only.

    Creating one takes its file descriptors (OSError if there are none left), so that a caller can
    acquire everything before it starts a program; entering it installs the handlers; leaving it, or
    :meth:`close` if it was never entered, gives everything back.
    """

    def __init__(self) -> None:
        self._group: int | None = None
        self._pending: list[int] = []
        self._old_handlers: dict[int, object] = {}
        self._old_wakeup_fd = -1
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __enter__(self) -> SignalRelay:
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in FORWARDED:
            try:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
            except (OSError, ValueError):
                pass  # reserved by the C library (some real-time signals)
        # A no-op handler makes SIGCHLD write to the wake-up pipe (the default action ignores it silently).
        self._old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        # An inherited blocked mask (common under container runtimes) would hold signals back forever.
        # Handlers go in first: a signal pending from before is then queued for the child, not lost.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [*FORWARDED, signal.SIGCHLD])
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._group = None
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
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
        if self._group is None:
            self._pending.append(signum)
        else:
            self.send(signum)

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
