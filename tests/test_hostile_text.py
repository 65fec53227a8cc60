"""Hostile text and broken output (issue 11, rows 1, 3, 6, 7): undecodable bytes in arguments, names and
paths; markers whose content would drive a terminal; stdout and stderr that are broken pipes or closed.

Every case runs the real ``exitdir`` in a real process with real bytes in its argv, real pipes whose
reader is gone and real closed descriptors: what a shell trap, a CI log collector or ``| head`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir
from exitdir._marker import Marker, describe

from _support import EXITDIR, GENEROUS, env_with

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# A reason as hostile as it gets for a terminal: a lone surrogate, ESC and CSI sequences (7- and 8-bit),
# CR and LF (a fake second line), TAB, a bidi override and a zero-width space.
HOSTILE_REASON = "x\ud800 \x1b[31mred\x1b[0m\r\nexitdir: fake line\t\x9b2J\u202eevil\u200b"
HOSTILE_SHOWN = "x\\ud800 \\x1b[31mred\\x1b[0m\\x0d\\x0aexitdir: fake line\\x09\\x9b2J\\u202eevil\\u200b"


def run(
    args: Sequence[str | bytes], *, closing: int | None = None, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    """``exitdir ARGS`` as a real process (bytes allowed, as a shell passes them), stdout and stderr
    captured unless given; bounded. ``closing``: started with that descriptor closed, as ``N>&-`` does."""
    streams: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    prefix = [] if closing is None else ["sh", "-c", f'exec "$@" {closing}>&-', "sh"]
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*prefix, *EXITDIR, *args], timeout=GENEROUS, stdin=subprocess.DEVNULL, check=False, **streams
    )


def marker_doc(directory: Path | bytes, name: str = "exitFile") -> dict[str, object]:
    path = os.path.join(os.fsencode(directory), os.fsencode(name))
    with open(path, "rb") as f:
        doc: dict[str, object] = json.loads(f.read().decode("utf-8"))  # strict: the marker is real UTF-8
    return doc


def no_traceback(stderr: bytes) -> None:
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
    assert b"Exception ignored" not in stderr, stderr.decode(errors="replace")


def write_hostile_marker(directory: Path, name: str = "exitFile") -> None:
    """A marker with HOSTILE_REASON, written as JSON with escapes (what a foreign writer may produce)."""
    (directory / name).write_text(json.dumps({"exitdir": 1, "code": 4, "reason": HOSTILE_REASON}) + "\n")


@pytest.fixture
def dead_pipe() -> Iterator[int]:
    """The write end of a real pipe whose reader has gone: every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    yield write_end
    os.close(write_end)


# -- row 1: undecodable bytes ---------------------------------------------------------------------------


def test_exit_writes_its_marker_whatever_bytes_the_reason_holds(exit_dir: Path) -> None:
    """The shell-trap leader: `exitdir exit --reason $'caf\\xe9'` used to die on UnicodeEncodeError."""
    done = run(["exit", "--dir", str(exit_dir), "--code", "3", "--reason", b"caf\xe9 \xff\xfe!"])
    no_traceback(done.stderr)
    assert (done.returncode, done.stderr) == (0, b"")
    doc = marker_doc(exit_dir)
    assert (doc["code"], doc["reason"]) == (3, "caf\ufffd \ufffd\ufffd!")


def test_the_library_writes_lone_surrogates_in_a_reason_as_replacement_characters(exit_dir: Path) -> None:
    exitdir.exit(2, reason="a\udcffb\ud800c\U0001f600", directory=exit_dir)
    assert marker_doc(exit_dir)["reason"] == "a\ufffdb\ufffdc\U0001f600"
    with exitdir.aware(exit_dir) as token:
        assert token.marker is not None
        assert token.marker.reason == "a\ufffdb\ufffdc\U0001f600"
    # A leader that fails with such an exception still writes its marker.
    with pytest.raises(ValueError, match="bad byte"), exitdir.leader(directory=exit_dir):
        raise ValueError("bad byte \udce9")
    assert marker_doc(exit_dir)["reason"] == "ValueError: bad byte \ufffd"


@pytest.mark.parametrize(
    "args",
    [
        ["exit", "--name", b"caf\xe9"],
        ["lead", "--name", b"caf\xe9", "--", "true"],
        ["wait", "--leader", b"caf\xe9", "--timeout", "0"],
        ["status", "--leader", b"\xff"],
        ["follow", "--leader", b"\xff", "--", "true"],
    ],
    ids=["exit", "lead", "wait", "status", "follow"],
)
def test_a_name_that_is_not_utf8_is_a_one_line_usage_error(args: list[str | bytes], exit_dir: Path) -> None:
    done = run([args[0], "--dir", str(exit_dir), *args[1:]])
    no_traceback(done.stderr)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.count("\n") == 1
    assert err.startswith("exitdir: usage: ")
    assert "is not valid UTF-8 text" in err
    assert "use a plain file name" in err
    assert os.listdir(exit_dir) == []  # nothing written, nothing run


def test_the_library_refuses_a_name_that_is_not_valid_unicode(exit_dir: Path) -> None:
    name = os.fsdecode(b"caf\xe9")  # what Python makes of an undecodable argv or environment byte
    for attempt in (
        lambda: exitdir.exit(name=name, directory=exit_dir),
        lambda: exitdir.leader(name=name, directory=exit_dir),
        lambda: exitdir.aware(exit_dir, names=["api", name]),
        lambda: exitdir.exit(name="\ud800", directory=exit_dir),
    ):
        with pytest.raises(exitdir.ExitDirError, match="is not valid UTF-8 text"):
            attempt()
    assert os.listdir(exit_dir) == []


def test_lead_of_an_undecodable_command_writes_its_marker_and_exits_127(exit_dir: Path) -> None:
    done = run(["lead", "--dir", str(exit_dir), "--", b"/x/\xff"])
    no_traceback(done.stderr)
    assert done.returncode == 127
    assert done.stderr == b"exitdir: error: command not found: /x/\\udcff\n"
    doc = marker_doc(exit_dir)
    assert (doc["code"], doc["reason"]) == (127, "command not found: /x/\ufffd")


def test_an_exit_directory_that_is_not_utf8_works_everywhere(tmp_path: Path) -> None:
    """A path is bytes to the kernel: --dir and EXIT_DIR with undecodable bytes must just work."""
    directory = os.path.join(os.fsencode(tmp_path), b"exit-\xff")
    assert run(["status", "--dir", directory]).stdout.endswith(
        b"-\\udcff: no markers\nfollowers would keep running: no marker counts\n"
    )
    done = run(["exit", "-v", "--code", "5", "--dir", directory])
    no_traceback(done.stderr)
    assert done.returncode == 0
    assert done.stderr.endswith(b"exit-\\udcff/exitFile (code 5)\n")
    assert marker_doc(directory)["code"] == 5
    env = os.environb.copy()
    env[b"EXIT_DIR"] = directory
    for args in (["wait", "-v"], ["status"], ["follow", "--", "true"]):
        done = run(args, env=env)
        no_traceback(done.stderr)
        assert done.returncode == 0, done.stderr
    assert run(["wait", "-v"], env=env).stdout == b"exitFile: code 5\n"
    # A message that echoes such a path is one readable line.
    not_a_dir = os.path.join(os.fsencode(tmp_path), b"file-\xff\x1b[2J")
    Path(os.fsdecode(not_a_dir)).write_text("")
    done = run(["wait", "--dir", not_a_dir])
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert b"file-\\udcff\\x1b[2J is not a directory" in done.stderr


def test_a_marker_whose_file_name_is_not_utf8_is_a_marker_and_prints_safely(exit_dir: Path) -> None:
    hostile = os.path.join(os.fsencode(exit_dir), b"\xff\x1b[2Jname")
    with open(hostile, "wb") as f:
        f.write(b"")
    status = run(["status", "--dir", str(exit_dir)])
    shown = b"\\udcff\\x1b[2Jname: code 0\n"
    verdict = b"followers would exit now\n"
    assert (status.returncode, status.stdout, status.stderr) == (0, shown + verdict, b"")
    doc = json.loads(run(["status", "--json", "--dir", str(exit_dir)]).stdout)
    assert doc["markers"][0]["name"] == os.fsdecode(b"\xff\x1b[2Jname")  # exact, as Python names it
    waited = run(["wait", "-v", "--dir", str(exit_dir)])
    assert (waited.returncode, waited.stdout) == (0, b"\\udcff\\x1b[2Jname: code 0\n")
    followed = run(["follow", "--dir", str(exit_dir), "--", "true"])
    no_traceback(followed.stderr)
    assert followed.returncode == 0
    assert b"leader already signalled (\\udcff\\x1b[2Jname: code 0): not starting true" in followed.stderr


# -- row 6: printing a marker ---------------------------------------------------------------------------


def test_describe_escapes_everything_that_could_drive_a_terminal() -> None:
    shown = describe(Marker("exitFile", kind="exitdir", code=4, reason=HOSTILE_REASON))
    assert shown == f"exitFile: code 4: {HOSTILE_SHOWN}"
    assert shown.isprintable()
    assert describe(Marker("exitFile", kind="exitdir", code=0, reason="C:\\temp caf\u00e9")) == (
        "exitFile: code 0: C:\\temp caf\u00e9"  # printable text is shown as it is
    )


@pytest.mark.parametrize(
    "locale",
    [
        {"LANG": "C.UTF-8"},
        {"LANG": "C", "LC_ALL": "C"},
        {"PYTHONIOENCODING": "utf-8:strict"},
        {"PYTHONIOENCODING": "ascii"},
    ],
    ids=["C.UTF-8", "C", "utf-8-strict", "ascii"],
)
def test_status_and_wait_print_a_hostile_marker_as_one_escaped_line(
    exit_dir: Path, locale: dict[str, str]
) -> None:
    write_hostile_marker(exit_dir)
    env = env_with(**locale)
    for args in (["status"], ["wait", "-v"]):
        done = run([*args, "--dir", str(exit_dir)], env=env)
        no_traceback(done.stderr)
        assert (done.returncode, done.stderr) == (0, b"")
        verdict = "followers would exit now\n" if args[0] == "status" else ""
        assert done.stdout == f"exitFile: code 4: {HOSTILE_SHOWN}\n{verdict}".encode()
    for args in (["status", "--json"], ["wait", "--json"]):
        done = run([*args, "--dir", str(exit_dir)], env=env)
        assert done.returncode == 0
        doc = json.loads(done.stdout)
        found = doc["markers"][0] if "markers" in doc else doc
        assert found["reason"] == HOSTILE_REASON  # --json is exact


def test_non_ascii_text_is_escaped_only_where_the_locale_cannot_show_it(exit_dir: Path) -> None:
    exitdir.exit(0, reason="caf\u00e9 \u2713", directory=exit_dir)
    shown = run(["wait", "-v", "--dir", str(exit_dir)], env=env_with(PYTHONIOENCODING="utf-8")).stdout
    assert shown == "exitFile: code 0: caf\u00e9 \u2713\n".encode()
    shown = run(["wait", "-v", "--dir", str(exit_dir)], env=env_with(PYTHONIOENCODING="ascii")).stdout
    assert shown == b"exitFile: code 0: caf\\xe9 \\u2713\n"


# -- row 7: a reader that went away, a closed or full stdout --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["wait", "--json"], ["wait", "-v"]],
    ids=["status", "status-json", "wait-json", "wait-verbose"],
)
def test_a_reader_that_went_away_is_a_quiet_141(args: list[str], exit_dir: Path, dead_pipe: int) -> None:
    """`exitdir status | head -c0`, `exitdir wait --json | true`, made deterministic: the reader is gone
    before exitdir writes."""
    exitdir.exit(0, directory=exit_dir)
    done = run([*args, "--dir", str(exit_dir)], stdout=dead_pipe, stderr=subprocess.PIPE)
    assert (done.returncode, done.stderr) == (141, b"")


def test_the_demo_leader_writes_its_marker_though_its_stdout_is_gone(exit_dir: Path, dead_pipe: int) -> None:
    env = env_with(EXIT_DIR=str(exit_dir))
    done = run(
        ["demo", "work", "--seconds", "0"],
        env=env,
        stdout=dead_pipe,
        stderr=subprocess.PIPE,
    )
    assert (done.returncode, done.stderr) == (141, b"")
    assert marker_doc(exit_dir)["code"] == 0


def test_a_closed_or_full_stdout_is_a_one_line_error(exit_dir: Path) -> None:
    exitdir.exit(0, directory=exit_dir)
    closed = run(["status", "--dir", str(exit_dir)], closing=1)
    assert closed.returncode == 1
    assert closed.stderr == (
        b"exitdir: error: cannot write to stdout: it is closed; the output is lost: "
        b"give exitdir a stdout it can write to\n"
    )
    with open("/dev/full", "wb") as full:
        done = run(
            ["wait", "--json", "--dir", str(exit_dir)],
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(b"exitdir: error: cannot write to stdout: No space left on device")
    assert done.stderr.count(b"\n") == 1


# -- row 3: follow's own messages never stop supervision ------------------------------------------------


def readline(proc: subprocess.Popen[bytes], timeout: float = GENEROUS) -> str:
    """One line of ``proc``'s stdout, read against a deadline (never a sleep)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            pytest.fail(f"no line from {proc.args!r} within {timeout} s; so far {line!r}")
        byte = os.read(proc.stdout.fileno(), 1)
        if not byte:
            pytest.fail(f"{proc.args!r} closed its stdout; so far {line!r}")
        line += byte
    return line.decode().rstrip("\n")


# The helper says its pid, where its stderr points, and that it is ready; IGNORE_TERM makes the wrapper
# wait out the grace and SIGKILL, which is a second message to a broken stderr.
HELPER = (
    "import os, signal, sys\n"
    "if sys.argv[1:] == ['IGNORE_TERM']: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "fd2 = os.readlink('/proc/self/fd/2') if os.path.exists('/proc/self/fd/2') else 'closed'\n"
    "print(os.getpid(), fd2, 'ready', flush=True)\n"
    "signal.pause()\n"
)
HELPER_ARGV = [sys.executable, "-c", HELPER]


@contextlib.contextmanager
def following(argv: Sequence[str], **popen: object) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """``exitdir follow ... -- HELPER`` started and its helper ready: (wrapper, helper pid, helper's fd 2).
    If the test fails, both are killed, so a helper left running cannot hold the pipe open."""
    wrapper = subprocess.Popen(  # type: ignore[call-overload]
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, **popen
    )
    pid = None
    try:
        pid, fd2, ready = readline(wrapper).split()
        assert ready == "ready"
        yield wrapper, pid, fd2
    except BaseException:
        for victim in (pid, wrapper.pid):
            if victim is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(victim), signal.SIGKILL)
        raise
    finally:
        wrapper.communicate(timeout=GENEROUS)


@pytest.mark.parametrize("term", ["obeys", "ignores"])
def test_follow_stops_its_helper_though_its_stderr_reader_went_away(
    exit_dir: Path, dead_pipe: int, term: str
) -> None:
    """`exitdir follow -- helper 2>&1 | reader` whose reader went away: the "stopping" message used to
    raise BrokenPipeError before the helper was signalled, leaving it running."""
    helper = [*HELPER_ARGV, *(["IGNORE_TERM"] if term == "ignores" else [])]
    argv = [*EXITDIR, "follow", "--grace", "0.5", "--dir", str(exit_dir), "--", *helper]
    with following(argv, stderr=dead_pipe) as (wrapper, pid, _):
        exitdir.exit(0, directory=exit_dir)
        assert wrapper.wait(GENEROUS) == 0
        assert not Path(f"/proc/{pid}").exists(), "the helper was left running (or unreaped)"


def test_follow_works_with_its_stderr_closed(exit_dir: Path) -> None:
    """`exitdir follow ... 2>&-`: the wrapper's messages go nowhere (never to stdout), and the helper gets
    /dev/null as its stderr rather than whichever file the wrapper happened to open first."""
    argv = [
        "sh",
        "-c",
        'exec "$@" 2>&-',
        "sh",
        *EXITDIR,
        "follow",
        "--dir",
        str(exit_dir),
        "--",
        *HELPER_ARGV,
    ]
    with following(argv) as (wrapper, pid, fd2):
        assert fd2 == "/dev/null"
        exitdir.exit(0, directory=exit_dir)
        assert wrapper.wait(GENEROUS) == 0
        assert not Path(f"/proc/{pid}").exists()
        assert wrapper.communicate(timeout=GENEROUS)[0] == b""  # no wrapper message on stdout


def test_lead_still_writes_its_marker_when_its_stderr_reader_went_away(
    exit_dir: Path, dead_pipe: int
) -> None:
    done = run(
        ["lead", "--dir", str(exit_dir), "--", "/no/such/program"],
        stdout=subprocess.PIPE,
        stderr=dead_pipe,
    )
    assert done.returncode == 127
    assert marker_doc(exit_dir)["reason"] == "command not found: /no/such/program"


def test_warnings_to_a_broken_stderr_change_no_status(exit_dir: Path, dead_pipe: int) -> None:
    """A warning routed through the log sink (the directory does not exist yet) and the timeout message,
    both to a stderr whose reader went away: `wait` still times out with 124, not 1."""
    done = run(
        ["wait", "--dir", str(exit_dir / "missing"), "--timeout", "0.2"],
        stdout=subprocess.PIPE,
        stderr=dead_pipe,
    )
    assert done.returncode == 124


def test_a_leader_whose_exception_cannot_be_shown_still_writes_its_marker(exit_dir: Path) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    with pytest.raises(Unprintable), exitdir.leader(directory=exit_dir):
        raise Unprintable
    assert (marker_doc(exit_dir)["code"], marker_doc(exit_dir)["reason"]) == (1, "Unprintable")
    with pytest.raises(SystemExit), exitdir.leader(directory=exit_dir):
        raise SystemExit(Unprintable())
    assert (marker_doc(exit_dir)["code"], marker_doc(exit_dir)["reason"]) == (1, "")
