"""Run one child program the way an init should: its own process group, every signal forwarded, no
zombies, and an exit status that tells what happened.

Models: dumb-init and tini. The child is started with ``posix_spawn`` (no ``preexec_fn``): in a new process
group, with an empty signal mask and default dispositions (Python ignores SIGPIPE and SIGXFSZ, and ignored
signals survive ``exec``). The wrapper waits in one ``poll()`` on a signal wake-up pipe and, for followers,
the exit token's fd: no thread, no timer, zero wake-ups while idle.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

    from ._token import ExitToken

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
_CHILD_DEFAULTS = tuple(s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))

PR_SET_CHILD_SUBREAPER = 36
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``term`` or ``15`` -> 15. Raises ValueError with the accepted forms."""
    name = text.strip().upper()
    if name.isdigit():
        number = int(name)
        if number in signal.valid_signals() and number not in (0,):
            return number
    else:
        try:
            return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
        except KeyError:
            pass
    raise ValueError(f"{text!r} is not a signal: use a name such as TERM, INT, QUIT or a number")


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


def set_subreaper() -> bool:
    """Make orphaned descendants ours to reap (Linux). Returns False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


class Supervisor:
    """Start ``argv`` in its own process group and forward signals to that group until it is reaped.

    Use as a context manager (handlers are installed on entry and restored on exit), from the main thread.
    """

    def __init__(self, argv: Sequence[str], *, warn: Callable[[str], None], reap_all: bool = False) -> None:
        self.argv = list(argv)
        self.pid: int | None = None
        self.exit: ChildExit | None = None
        self._warn = warn
        # As PID 1 or a subreaper, orphans are reparented to us and must be reaped, or they stay zombies.
        self._reap_all = reap_all
        self._pending: list[int] = []
        self._exited = False  # the main child is a zombie (seen with WNOWAIT), not yet reaped
        self._old_handlers: dict[int, object] = {}
        self._wake_r = self._wake_w = -1
        self._old_wakeup_fd = -1
        self._tty_fd: int | None = None

    # -- signals --------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.pid is None:
            self._pending.append(signum)  # delivered once the child exists (scuttle#34)
        else:
            self.send(signum)

    def send(self, signum: int) -> None:
        """Send ``signum`` to the child's process group, while the group can still be ours."""
        if self.pid is None or self.exit is not None:
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Supervisor:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in FORWARDED:
            try:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
            except (OSError, ValueError):
                pass  # reserved by the C library (some real-time signals)
        # A no-op handler makes SIGCHLD write to the wake-up pipe (the default action ignores it silently).
        self._old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        # An inherited blocked mask (common under container runtimes) would hold signals back forever.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [*FORWARDED, signal.SIGCHLD])
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._old_wakeup_fd)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._give_back_terminal()

    # -- the child ------------------------------------------------------------------------------------

    def spawn(self) -> ChildExit | None:
        """Start the child. None once it runs, else how it failed (127 not found, 126 not executable)."""
        command = self.argv[0]
        try:
            pid = os.posix_spawnp(
                command,
                self.argv,
                os.environ,
                setpgroup=0,
                setsigmask=(),
                setsigdef=_CHILD_DEFAULTS,
            )
        except FileNotFoundError:
            return ChildExit(EXIT_NOT_FOUND, f"command not found: {command}")
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ENOTDIR):
                return ChildExit(EXIT_NOT_EXECUTABLE, f"cannot execute {command}: {err.strerror}")
            raise
        self.pid = pid
        self._hand_over_terminal()
        pending, self._pending = self._pending, []
        for signum in pending:
            self.send(signum)
        return None

    def _hand_over_terminal(self) -> None:
        # Interactive use: the child's group must own the terminal, or reading from it stops the child
        # (SIGTTIN) and Ctrl-C would reach only us. In containers there is no terminal and this is a no-op.
        assert self.pid is not None
        try:
            if not os.isatty(0) or os.tcgetpgrp(0) != os.getpgrp():
                return
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(0, self.pid)
            finally:
                signal.signal(signal.SIGTTOU, old)
            self._tty_fd = 0
            os.killpg(self.pid, signal.SIGCONT)  # in case it already read from the terminal and stopped
        except OSError:
            self._tty_fd = None

    def _give_back_terminal(self) -> None:
        if self._tty_fd is None:
            return
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(self._tty_fd, os.getpgrp())
        except OSError:
            pass
        finally:
            signal.signal(signal.SIGTTOU, old)
            self._tty_fd = None

    def _main_child_exited(self) -> bool:
        """Whether the main child has exited, leaving it a zombie (so its pgid cannot be reused yet)."""
        if self._exited:
            return True
        assert self.pid is not None
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None
        self._exited = info is not None and info.si_pid == self.pid
        return self._exited

    def _reap_orphans(self) -> None:
        if not self._reap_all:
            return
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in (0, self.pid):
                return  # nothing to reap, or only the main child, which finish() reaps
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                pass

    def wait(self, *, deadline: float | None = None, token: ExitToken | None = None) -> bool:
        """Block until the main child exits (True), ``token`` trips or ``deadline`` passes (False)."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        token_watch = token._watch_for_loop() if token is not None else None
        token_fd = token_watch.fileno() if token_watch is not None else None
        if token_fd is not None:
            poller.register(token_fd, select.POLLIN)
        poll_every = token_watch.poll_interval if token_watch is not None else None
        while True:
            self._reap_orphans()
            if self._main_child_exited():
                return True
            if token is not None and token.is_set():
                return False
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return False
            if poll_every is not None:
                timeout = poll_every if timeout is None else min(timeout, poll_every)
            poller.poll(-1 if timeout is None else max(1, int(timeout * 1000 + 0.999)))
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    def stop(self, signum: int, grace: float, *, what: str) -> None:
        """Send ``signum`` to the group; after ``grace`` seconds, SIGKILL it. Always waits for the child."""
        assert self.pid is not None
        self.send(signum)
        if not self.wait(deadline=time.monotonic() + grace):
            self._warn(
                f"{what} (pid {self.pid}) did not exit within {grace:g} s of {signal_name(signum)}; "
                "sending SIGKILL"
            )
            self.send(signal.SIGKILL)
            self.wait()
        # Whatever else the group still holds (a child that ignored the signal) goes too: the zombie main
        # child still pins the pgid, so this cannot hit an unrelated process.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self) -> ChildExit:
        """Reap the main child (after :meth:`wait` returned True) and any orphans; return how it ended."""
        assert self.pid is not None
        assert self._exited
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # someone else reaped it: the status is lost
            status = 0
        self.exit = ChildExit.from_wait_status(status)
        self._reap_orphans()
        return self.exit
