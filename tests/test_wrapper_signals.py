"""`exitdir lead` and `exitdir follow` against hostile signals and odd commands (issue 11 follow-ups).

Real wrappers in real processes, sent real signals: at the earliest moment the test can see exitdir's own
code running, every signal whose default action would end the wrapper, and commands a shell would refuse.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exitdir._cli import main

from _support import EXITDIR, GENEROUS, env_with, python

CHILDREN = Path(__file__).parent / "children"
SIGPRINT = [sys.executable, str(CHILDREN / "sigprint.py")]
WRAPPERS = ("lead", "follow")


def wrap(mode: str, exit_dir: Path, *command: str) -> list[str]:
    return [*EXITDIR, mode, "--dir", str(exit_dir), "--", *command]


def marker_doc(exit_dir: Path) -> dict[str, object] | None:
    """The marker `lead` wrote, or None."""
    try:
        doc: dict[str, object] = json.loads((exit_dir / "exitFile").read_text())
    except FileNotFoundError:
        return None
    return doc


# --- commands a shell refuses -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", WRAPPERS)
def test_an_empty_command_name_is_command_not_found_127(
    mode: str, exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As bash says `: command not found` with 127; it was a ValueError traceback out of posix_spawnp,
    # status 1, and for lead a marker "exitdir lead failed".
    assert main([mode, "--dir", str(exit_dir), "--", ""]) == 127
    err = capsys.readouterr().err
    assert err == "exitdir: error: command not found: ''\n"
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert (doc["code"], doc["reason"]) == (127, "command not found: ''")
    else:
        assert os.listdir(exit_dir) == []


@pytest.mark.parametrize("mode", WRAPPERS)
def test_an_argument_exec_cannot_take_is_126_not_a_traceback(
    mode: str, exit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A command line cannot hold a NUL, but main(argv) called from Python can: posix_spawnp raised ValueError.
    assert main([mode, "--dir", str(exit_dir), "--", "echo", "a\0b"]) == 126
    assert capsys.readouterr().err == "exitdir: error: cannot execute echo: embedded null byte\n"
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert doc["code"] == 126


# Starts the wrapper with a raw environment entry "=x=y" (execve allows it; Python reads it as the name "",
# and posix_spawnp refused to pass it on: ValueError "illegal environment variable name"). ctypes, because
# os.execve refuses to build such an environment.
RAW_ENV_LAUNCHER = """
import ctypes, os, sys
argv = [os.fsencode(a) for a in sys.argv[1:]]
env = [b"=x=y", b"PATH=" + os.environ["PATH"].encode(), b"KEPT=yes"]
c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
ctypes.CDLL(None, use_errno=True).execve(argv[0], c_argv, c_env)
sys.exit(f"execve failed: {ctypes.get_errno()}")
"""


@pytest.mark.parametrize("mode", WRAPPERS)
def test_an_environment_entry_with_an_empty_name_does_not_stop_the_program(mode: str, exit_dir: Path) -> None:
    program = "import os; print(os.environ['KEPT'], '' in os.environ)"
    result = subprocess.run(
        [*python(RAW_ENV_LAUNCHER), *wrap(mode, exit_dir, sys.executable, "-c", program)],
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "yes False\n", "")


# --- signals from the moment exitdir's own code runs ---------------------------------------------------


def blocked(pid: int) -> int:
    """The signal mask of process ``pid`` (SigBlk in /proc), or -1 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return -1
    for line in status.splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    return -1


def wait_until_held(proc: subprocess.Popen[bytes], signum: int) -> bool:
    """Until ``proc`` blocks ``signum``: the first thing `main` does for `lead` and `follow`, so from then on
    exitdir's own code is running. Polls /proc: the wrapper gives no other sign of reaching that point,
    and one it printed would already be too late to test the window. False if ``proc`` ran to its end
    before a look could see it (a quick program on a loaded machine)."""
    deadline = time.monotonic() + GENEROUS
    while True:
        mask = blocked(proc.pid)
        if mask > 0 and mask & (1 << (signum - 1)):
            return True
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            pytest.fail(f"the wrapper never blocked {name(signum)} within {GENEROUS} s")
        time.sleep(0.0002)  # a poll of /proc, not a handshake: see the docstring


PROGRAMS = {
    "runs": ["sleep", "30"],  # the signal must reach it, whenever it came
    "ends": ["true"],  # the signal may come before it starts (then it reaches it) or after it ended
    "missing": ["no-such-command-exitdir"],  # it never starts: the signal changes nothing
}


@pytest.mark.parametrize("mode", WRAPPERS)
def test_a_signal_sent_as_soon_as_exitdir_runs_reaches_the_program_and_lead_writes_its_marker(
    mode: str, tmp_path: Path
) -> None:
    # It used to kill the wrapper outright during its first ~50 ms (imports, argument parsing, taking the
    # lock), before the relay was in place: lead exited 143 with no marker and no lock, so its followers
    # waited forever. Each trial sends a real signal a random delay (0-40 ms: the whole start-up) after
    # exitdir's own code started running; whenever it lands, the program's end is what is reported.
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    for trial in range(24):
        exit_dir = tmp_path / str(trial)
        exit_dir.mkdir()
        signum = rng.choice([signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
        program = rng.choice(list(PROGRAMS))
        proc = subprocess.Popen(
            wrap(mode, exit_dir, *PROGRAMS[program]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if wait_until_held(proc, signum):
                time.sleep(rng.uniform(0, 0.04))  # the trial's random moment, not a synchronisation
                proc.send_signal(signum)
            elif program == "runs":  # sleep 30 cannot end by itself: the wrapper died, or never held
                pytest.fail(f"seed {seed}, trial {trial}: {mode} ended ({proc.returncode}), sleep running")
            # else: true or a missing command ran to its end first; the outcome is checked all the same
            _, err = proc.communicate(timeout=GENEROUS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        status, doc = proc.returncode, marker_doc(exit_dir)
        seen = f"seed {seed}, trial {trial}: {program}, {signal.Signals(signum).name}: status {status}, {doc}"
        assert b"Traceback" not in err, seen + err.decode()
        # 128+N: the program was killed by the signal and the wrapper said so. -N: the wrapper itself was
        # ended by it, which may only happen once it is done (as it exits), so never to a running program.
        killed, reported = 128 + signum, -signum
        # follow, asked to stop by TERM or INT, exits 0 when its helper ends by it: stopped on purpose
        on_purpose = 0 if mode == "follow" and signum in (signal.SIGTERM, signal.SIGINT) else killed
        program_status = {
            "runs": {on_purpose},  # the program was running: the signal always reaches it
            "ends": {0, on_purpose},  # it reached the program, or came after the program had ended
            "missing": {127},  # the program never started: the signal changes nothing
        }[program]
        assert status in (*program_status, reported), seen
        assert (program, status) != ("runs", reported), seen
        if mode == "lead":  # and the marker was written, with the program's status
            assert doc is not None, seen
            assert doc["code"] == (status if status != reported else min(program_status)), seen
        else:
            assert doc is None, seen


# --- every signal that would end the wrapper -----------------------------------------------------------

# Every catchable signal whose default action ends a process (signal(7)): the rest is ignored or stops it.
ENDS_A_PROCESS = sorted(
    signum
    for signum in signal.valid_signals()
    if signum
    not in {
        *(signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH),
        *(signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU),
    }
)
# Not forwarded, and ignored by the wrapper: faults (the kernel still makes a real one fatal), the
# wrapper's own resource and profiling signals, and SIGPIPE.
NOT_FORWARDED = {
    *(signal.SIGILL, signal.SIGTRAP, signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV, signal.SIGSYS),
    *(signal.SIGPIPE, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGPROF, signal.SIGVTALRM),
}


def name(signum: int) -> str:
    """As sigprint.py prints it: TERM, RTMIN, 40."""
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


class Wrapped:
    """A real wrapper running sigprint.py, read line by line; a read fails at once if the wrapper died."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.buffer = b""
        self.program: int | None = None  # a pidfd on the program, to kill it if the wrapper leaves it

    def line(self) -> str:
        assert self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        deadline = time.monotonic() + GENEROUS
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line from the program within {GENEROUS} s")
            ready, _, _ = select.select([out, self.pidfd], [], [], left)
            if out in ready:
                chunk = os.read(out, 4096)
                if not chunk:
                    pytest.fail("the program's output ended")
                self.buffer += chunk
            elif self.pidfd in ready:
                pytest.fail(f"the wrapper died (status {self.proc.wait()}), leaving its program running")
        text, _, self.buffer = self.buffer.partition(b"\n")
        return text.decode()

    def started(self) -> None:
        assert self.line() == "ready"
        pid = int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])
        self.program = os.pidfd_open(pid)

    def close(self) -> None:
        if self.program is not None:
            try:
                signal.pidfd_send_signal(self.program, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(self.program)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=GENEROUS)
        os.close(self.pidfd)


# Signals the wrapper forwards, each new to it in turn: the real-time ones, and a few named ones.
DISTINCT = (
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
)


def _printed(signum: int) -> str:
    """What sigprint.py prints for ``signum``."""
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


@pytest.mark.parametrize("mode", WRAPPERS)
def test_signals_coming_while_the_wrapper_loops_never_end_it(mode: str, exit_dir: Path) -> None:
    """Each signal is sent as the program reports the last one, which is when the wrapper, woken by that
    one, runs its loop again: the relay's handler then runs between two bytecodes of that loop. It once
    added a new signal to a dict the loop was iterating (looking for a stop request, after a SIGINT):
    RuntimeError, lead ended with status 1 and its program left running, one run in a few of the tests
    above. A new signal is what changes the dict's size: so 20 wrappers, each sent every signal once."""
    for _ in range(20):
        wrapped = Wrapped(wrap(mode, exit_dir, *SIGPRINT))
        try:
            wrapped.started()
            wrapped.proc.send_signal(signal.SIGINT)
            assert wrapped.line() == "INT"
            for signum in DISTINCT:
                wrapped.proc.send_signal(signum)
                assert wrapped.line() == _printed(signum)  # fails at once if the wrapper died
            wrapped.proc.send_signal(signal.SIGTERM)
            assert wrapped.line() == "TERM"
            assert wrapped.proc.wait(GENEROUS) == 0
        finally:
            wrapped.close()


@pytest.mark.parametrize("mode", WRAPPERS)
def test_no_signal_ends_the_wrapper_and_leaves_its_program_running(mode: str, exit_dir: Path) -> None:
    # SIGPROF, SIGVTALRM, SIGXCPU and SIGSYS (and the faults, sent with kill) used to end the wrapper with
    # 128+N, leaving the program running and, for lead, no marker. Each is either forwarded (the program
    # prints it) or ignored (the program prints the WINCH sent after it, and never it).
    wrapped = Wrapped(wrap(mode, exit_dir, *SIGPRINT))
    try:
        wrapped.started()
        for signum in ENDS_A_PROCESS:
            if signum == signal.SIGTERM:
                continue  # ends sigprint.py: sent last
            wrapped.proc.send_signal(signum)
            if signum in NOT_FORWARDED:
                wrapped.proc.send_signal(signal.SIGWINCH)
                assert wrapped.line() == "WINCH", name(signum)
            else:
                assert wrapped.line() == name(signum)
        wrapped.proc.send_signal(signal.SIGTERM)
        assert wrapped.line() == "TERM"
        assert wrapped.proc.wait(GENEROUS) == 0
        assert wrapped.buffer + wrapped.proc.communicate(timeout=GENEROUS)[0] == b""
    finally:
        wrapped.close()
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert doc["code"] == 0


@pytest.mark.parametrize("mode", WRAPPERS)
def test_signal_handlers_installed_outside_python_do_not_end_the_wrapper_in_a_traceback(
    mode: str, exit_dir: Path
) -> None:
    # PYTHONFAULTHANDLER=1 puts handlers outside Python on SIGABRT and the faults; putting them back when
    # the relay was left raised TypeError once the program had ended (lead: marker "exitdir lead failed").
    result = subprocess.run(
        wrap(mode, exit_dir, "true"),
        env=env_with(PYTHONFAULTHANDLER="1"),
        capture_output=True,
        timeout=GENEROUS,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert (doc["code"], doc["reason"]) == (0, "exited with status 0")


# --- job control through the wrapper, on a real terminal -----------------------------------------------


class Terminal:
    """An interactive bash on a real pty, as a user at a terminal has it: its controlling terminal (setsid
    -c), job control on. Read against a deadline; everything it started is killed at the end."""

    def __init__(self, exit_dir: Path) -> None:
        self.master, slave = os.openpty()
        env = env_with(PS1="PROMPT$ ", TERM="dumb", HISTFILE="/dev/null", EXIT_DIR=str(exit_dir))
        self.bash = subprocess.Popen(
            ["setsid", "-c", "bash", "--norc", "--noprofile", "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        self.seen = b""
        self.pidfds: list[int] = []

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, fragment: str) -> str:
        """Read until ``fragment`` has appeared; what came up to it."""
        deadline = time.monotonic() + GENEROUS
        while fragment.encode() not in self.seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"no {fragment!r} on the terminal within {GENEROUS} s; it shows {self.seen!r}")
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:  # EIO: every process of the session has gone
                pytest.fail(f"the terminal closed before {fragment!r}; it showed {self.seen!r}")
        before, _, self.seen = self.seen.partition(fragment.encode())
        return before.decode(errors="replace")

    def owned_by(self, group: int) -> None:
        """Until ``group`` is the terminal's foreground group (what ^C and ^Z reach). Polls the terminal:
        nothing prints when its owner changes."""
        deadline = time.monotonic() + GENEROUS
        while os.tcgetpgrp(self.master) != group:
            if time.monotonic() > deadline:
                pytest.fail(f"the terminal never went to group {group}; it is {os.tcgetpgrp(self.master)}'s")
            time.sleep(0.001)  # a poll of the terminal, not a handshake: see the docstring

    def children(self, pid: int) -> list[int]:
        pids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        self.pidfds += [os.pidfd_open(p) for p in pids]
        return pids

    def close(self) -> None:
        for fd in self.pidfds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(fd)
        self.bash.kill()
        self.bash.wait(GENEROUS)
        os.close(self.master)


def state(pid: int) -> str:
    """R, S, T (stopped)... from /proc/PID/stat."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def lead_then_ctrl_z(terminal: Terminal) -> tuple[int, int]:
    """At the prompt, run `exitdir lead -- sleep` as a foreground job and press ^Z once the program holds
    the terminal; once the shell has it again, the (wrapper, program) pids."""
    terminal.expect("PROMPT$ ")
    lead = " ".join(EXITDIR)
    terminal.type(f"{lead} lead -- sh -c 'echo rea\"\"dy; exec sleep 30'\n")
    terminal.expect("ready")
    [wrapper] = terminal.children(terminal.bash.pid)
    [program] = terminal.children(wrapper)
    terminal.owned_by(program)  # lead has handed it the terminal
    terminal.type("\x1a")  # ^Z
    terminal.expect("Stopped")
    terminal.expect("PROMPT$ ")  # the shell has the terminal again
    return wrapper, program


def test_ctrl_z_stops_lead_like_a_shell_job_and_fg_gives_the_program_the_terminal(exit_dir: Path) -> None:
    # ^Z used to stop the program only: it kept the terminal and the wrapper kept waiting, so neither the
    # prompt nor ^C answered. Now the wrapper stops too, with the same signal, and the shell is back.
    terminal = Terminal(exit_dir)
    try:
        wrapper, program = lead_then_ctrl_z(terminal)
        assert (state(wrapper), state(program)) == ("T", "T")
        assert marker_doc(exit_dir) is None  # stopped, not ended
        assert os.tcgetpgrp(terminal.master) == terminal.bash.pid
        terminal.type("fg\n")
        terminal.owned_by(program)  # bash gave it to lead, and lead to the program
        terminal.type("\x03")  # ^C: as to a shell job, the job ends with 130, and lead reports it
        terminal.expect("PROMPT$ ")
        terminal.type('echo "st""atus=$?"\n')
        terminal.expect("status=130")
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert (doc["code"], doc["reason"]) == (130, "killed by SIGINT")
    finally:
        terminal.close()


def test_bg_after_ctrl_z_runs_the_program_in_the_background_and_leaves_the_shell_the_terminal(
    exit_dir: Path,
) -> None:
    terminal = Terminal(exit_dir)
    try:
        wrapper, program = lead_then_ctrl_z(terminal)
        terminal.type("bg\n")
        terminal.expect("PROMPT$ ")
        deadline = time.monotonic() + GENEROUS
        while state(program) == "T":  # continued by lead once bash has continued lead
            assert time.monotonic() < deadline, "bg never continued the program"
            time.sleep(0.001)  # a poll of /proc: nothing prints when a process continues
        assert state(wrapper) != "T"
        assert os.tcgetpgrp(terminal.master) == terminal.bash.pid  # not taken from the shell
        terminal.type('kill %1; wait %1; echo "st""atus=$?"\n')
        terminal.expect("status=143")
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert (doc["code"], doc["reason"]) == (143, "killed by SIGTERM")
        assert os.tcgetpgrp(terminal.master) == terminal.bash.pid  # nor when the job ended
    finally:
        terminal.close()


# The exitdir program, with a signal sent to itself the moment its held signals are released: the instant
# a real signal can come in after the wrapper has done its work. A stand-in for the timing only (that
# window is microseconds wide: tests/test_reliability.py hit it once in 200 random trials); the signal,
# the process and its status are real.
SIGNAL_AFTER_RELEASE = """
import os, signal, sys
from exitdir import _cli
real_release = _cli.release
late = getattr(signal, sys.argv.pop(1))
def release(previous, **how):
    real_release(previous, **how)
    os.kill(os.getpid(), late)
_cli.release = release
sys.exit(_cli.main())
"""


@pytest.mark.parametrize("mode", WRAPPERS)
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_wrapper_is_done_does_not_change_its_status(
    tmp_path: Path, mode: str, signame: str
) -> None:
    exit_dir = tmp_path / "exit"
    exit_dir.mkdir()
    argv = [*python(SIGNAL_AFTER_RELEASE), signame, mode, "--dir", str(exit_dir), "--", "sh", "-c", "exit 3"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=GENEROUS, env=env_with(), check=False)
    assert (done.returncode, done.stderr) == (3, "")  # not -2 with a KeyboardInterrupt, nor 143
    if mode == "lead":
        doc = marker_doc(exit_dir)
        assert doc is not None
        assert doc["code"] == 3
