"""The ``exitdir`` command line. ``main(argv)`` returns the exit status, so tests can call it in-process.

Every argument is checked by the library's own validator (``_config``), so a value is refused with the
same words here and in Python; ``lead`` and ``follow`` map a supervision :class:`Outcome` to a status.
"""

from __future__ import annotations

import os
import signal
import sys

from . import _log
from ._config import (
    DEFAULT_NAME,
    ENV_LOG_FORMAT,
    ENV_REQUIRE_DIR,
    ENV_TIMESTAMPS,
    REQUIRE_ANY,
    SIGNAL_ON,
    log_style,
    resolve_directory,
    split_list,
    validate_code,
    validate_host_port,
    validate_log_format,
    validate_name,
    validate_program_name,
    validate_seconds,
    validate_signal,
    validate_signal_on,
    validate_switch,
    validate_url,
)
from ._errors import ExitDirError
from ._signals import STOP_SIGNALS, hold, release
from ._text import printable

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    # argparse is imported where the parser is built: it costs ~10 ms, and `lead` and `follow` hold their
    # signals before it (main), since a signal there would end them with no marker.
    import argparse
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import Any, NoReturn, TypeVar

    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
    T = TypeVar("T")

    from ._leader import Leadership
    from ._marker import Marker
    from ._ready import Dependency
    from ._signals import SignalRelay
    from ._stops import Stopped
    from ._supervise import ChildExit, Outcome
    from ._token import ExitToken

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124  # as GNU timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a reader that went away


class _UsageError(Exception):
    pass


class _Output:
    """``sys.stdout`` or ``sys.stderr`` as every command writes to it: one line at a time, never raising.

    A line is made safe first: control characters and lone surrogates (from a marker, a path, a command)
    are escaped, so it is one line that cannot drive the terminal, and whatever the stream's encoding
    cannot show (LANG=C) is backslash-escaped instead of failing. When a write fails (a reader that went
    away, a closed or full stream) the stream is not written again and ``failure`` says why; a message can
    then never stop supervision, and a leader still writes its marker.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.failure: str | None = None
        self.broken_pipe = False
        # stderr's messages: "text" or "json", and whether a text line starts with a timestamp. Set from
        # argv and the environment before parsing (a usage error honours them too), then from the options.
        self.style = ("text", False)

    def line(self, text: str) -> None:
        if self.failure is not None:
            return
        stream = getattr(sys, self.name)
        if stream is None:  # the descriptor was closed when Python started
            self.failure = f"cannot write to {self.name}: it is closed"
            return
        try:
            encoding = getattr(stream, "encoding", None) or "utf-8"
            stream.write(printable(text).encode(encoding, "backslashreplace").decode(encoding) + "\n")
            stream.flush()
        except (OSError, ValueError) as err:  # ValueError: the file object was closed
            self.broken_pipe = isinstance(err, BrokenPipeError)
            self.failure = f"cannot write to {self.name}: {getattr(err, 'strerror', None) or err}"
            if self.name == "stdout":
                _discard(stream)


def _discard(stream: object) -> None:
    """Point ``stream``'s descriptor at /dev/null: what is still buffered then goes nowhere when Python
    flushes at exit, instead of failing there ("Exception ignored", and status 120). Only stdout: the
    stderr descriptor is shared with the program ``lead``/``follow`` runs, whose output is its business."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(null, fd, inheritable=fd <= 2)
    except OSError:
        pass
    finally:
        os.close(null)


_stdout = _Output("stdout")
_stderr = _Output("stderr")


def _print(text: str) -> None:
    """A line of the command's output (status, a marker, JSON)."""
    _stdout.line(text)


# Events whose JSON severity is WARNING: exitdir goes on, but not as planned (a default, a fallback, a
# forced kill). Every other `_say` is INFO; `_error` and usage errors are ERROR.
_WARNINGS = frozenset(
    {
        "warning",
        "no-directory",
        "no-subreaper",
        "descendants-hidden",
        "timed-out",
        "leader-vanished",
        "killed-after-grace",
        "descendants-left",
        "descendants-unknown",
        "not-ready",
        "watch-failed",
        "leader-failed",
        "failure-reported",
        "follower-failed",
        "follower-vanished",
        "stopped-for-follower",
    }
)
# The run's life, which text prints only with --verbose (it says nothing unless something happens, as it
# always has) and JSON always: a log pipeline wants the child's pid and status.
_LIFECYCLE = frozenset({"started", "exited", "marker-written"})


def _say(args: argparse.Namespace, message: str, event: str = "info", **fields: object) -> None:
    """One message for people, unless --quiet. ``event`` names it in JSON, with ``fields`` (a Marker under
    ``marker`` is written as ``wait --json`` prints it)."""
    if getattr(args, "quiet", False):
        return
    if event in _LIFECYCLE and _stderr.style[0] == "text" and not getattr(args, "verbose", False):
        return
    _emit("WARNING" if event in _WARNINGS else "INFO", event, message, fields)


def _say_no_directory(args: argparse.Namespace, consequence: str) -> None:
    """Go parity, said once: no directory is not an error unless strict mode makes it one."""
    _say(
        args,
        f"no exit directory (EXIT_DIR is unset and no --dir): {consequence} "
        "(--require-dir or EXITDIR_REQUIRE_DIR=1 makes this an error)",
        event="no-directory",
    )


def _error(message: str, event: str = "error", **fields: object) -> None:
    _emit("ERROR", event, f"error: {message}", fields)


def _emit(severity: str, event: str, message: str, fields: dict[str, object]) -> None:
    """``exitdir: MESSAGE`` (after an RFC 3339 time with --timestamps), or one JSON object: ``time``,
    ``severity``, ``message``, ``event`` and ``fields``. JSON escapes every control character and
    everything not ASCII, so a line stays one line whatever a marker holds; text is escaped by _Output."""
    log_format, timestamps = _stderr.style
    if log_format == "json":
        import json  # loaded already wherever a marker is read or written; never for text

        from ._marker import utc_timestamp

        record: dict[str, object] = {
            "time": utc_timestamp(),
            "severity": severity,
            "message": message,
            "event": event,
        }
        for name, value in fields.items():
            if value is None:
                continue  # a fact this event does not have: absent rather than null
            as_dict = getattr(value, "as_dict", None)  # a Marker
            record[name] = as_dict() if as_dict is not None else value
        _stderr.line(json.dumps(record, default=str))  # default: a stray field never costs the line
    elif timestamps:
        from ._marker import utc_timestamp

        _stderr.line(f"{utc_timestamp()} exitdir: {message}")
    else:
        _stderr.line(f"exitdir: {message}")


def _checked(validate: Callable[[str], T], name: str) -> Callable[[str], T]:
    """An argparse type that applies the library's own validator: one rule, one message."""

    def convert(text: str) -> T:
        try:
            return validate(text)
        except ExitDirError as err:
            import argparse

            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name  # what argparse calls the type in its own messages
    return convert


def _as_int(text: str) -> int | str:
    """``text`` as an int if it is one; else the text itself, for the validator to name."""
    try:
        return int(text)
    except ValueError:
        return text


_code = _checked(lambda text: validate_code(_as_int(text)), "exit code")
_log_format = _checked(validate_log_format, "log format")
_seconds = _checked(lambda text: validate_seconds(text, "duration"), "seconds")
_signal = _checked(validate_signal, "signal")
_signal_on = _checked(validate_signal_on, "signal_on")
_name = _checked(validate_name, "name")
_url = _checked(validate_url, "URL")
_host_port = _checked(validate_host_port, "HOST:PORT")
_program = _checked(validate_program_name, "program name")


def _probe_port(text: str) -> str:
    from ._config import validate_port_or_host_port

    return validate_port_or_host_port(text)


def _probe_command(text: str) -> str:
    from ._config import validate_probe_command

    validate_probe_command(text)
    return text


_port = _checked(_probe_port, "PORT")
_probe = _checked(_probe_command, "command")


def _quit_preset(name: str) -> str:
    from ._config import validate_choice
    from ._stops import QUIT_PRESETS  # only when --quit is given: a wrapper's start-up stays lean

    return validate_choice(name, QUIT_PRESETS, "--quit sidecar")


def _ready_preset(name: str) -> str:
    from ._config import validate_choice
    from ._ready import READY_PRESETS

    return validate_choice(name, READY_PRESETS, "--wait-ready sidecar")


_quit = _checked(_quit_preset, "sidecar")
_ready = _checked(_ready_preset, "sidecar")


def _cmd_exit(args: argparse.Namespace) -> int:
    from ._leader import write_marker

    path = write_marker(
        args.code, reason=args.reason, name=args.name, directory=args.dir, require_dir=args.require_dir
    )
    if path is None:
        _say_no_directory(args, "no marker written")
    else:
        _say_written(args, path, args.code)
    return EXIT_OK


def _say_written(args: argparse.Namespace, path: str, code: int) -> None:
    """marker-written: in text with --verbose; in JSON always, with the marker as followers read it."""
    marker = None
    if _stderr.style[0] == "json" and not args.quiet:
        from ._marker import read_marker

        try:
            marker = read_marker(os.path.dirname(path), os.path.basename(path))
        except OSError:
            pass  # out of descriptors: the line goes without the fields
    _say(args, f"wrote {path} (code {code})", event="marker-written", marker=marker)


def _follower_token(args: argparse.Namespace) -> ExitToken:
    """The token of ``wait`` and ``follow``, from their shared options (``wait`` has no --require-dir:
    there ``$EXITDIR_REQUIRE_DIR`` decides). In strict mode a missing directory is refused here."""
    from ._token import aware

    return aware(
        args.dir,
        names=args.leader,
        require=args.require,
        require_dir=getattr(args, "require_dir", None),
        liveness_dir=args.liveness_dir,
    )


def _marker_awaited(args: argparse.Namespace, then: str = "") -> Marker | None:
    """Wait as ``wait`` does, for ``--timeout`` seconds at most: the marker, or None (said) on a timeout,
    followed by ``then`` (what is done next)."""
    token = _token_awaited(args, then)
    return None if token is None else token.marker


def _token_awaited(args: argparse.Namespace, then: str = "") -> ExitToken | None:
    """As :func:`_marker_awaited`, the token itself (closed, tripped): its marker and its exit status."""
    if resolve_directory(args.dir) is None:
        raise _UsageError("nothing to wait for: set EXIT_DIR or pass --dir")
    with _follower_token(args) as token:
        if not token.wait(args.timeout):
            _say(
                args,
                f"timed out after {args.timeout:g} s waiting for a marker in {token.directory}{then}",
                event="timed-out",
            )
            return None
        return token


WAIT_POLICIES = ("zero", "leader")


def _cmd_wait(args: argparse.Namespace) -> int:
    from ._marker import describe

    if args.ready:
        return _ready_awaited(args)
    token = _token_awaited(args)
    if token is None:
        return EXIT_TIMEOUT
    marker = token.marker
    assert marker is not None  # the token tripped
    if args.json:
        import json

        _print(json.dumps(marker.as_dict()))
    elif args.verbose:
        _print(describe(marker))
    status = token.exit_status if args.exit_code == "leader" else EXIT_OK
    shown = marker
    if status:
        # The marker that decided it: the first named leader with that status, else the one that tripped.
        ended = {**token.markers, marker.name: marker}
        shown = next((m for m in ended.values() if m.exit_status == status), marker)
    if args.exit_code == "leader" and (not args.leader or args.require == REQUIRE_ANY):
        shown = _first_failed(token, args.leader) or shown
        status = shown.exit_status
    if status:
        said = f"leader did not succeed ({describe(shown)}): exiting {status}"
        _say(args, said, event="leader-failed", marker=shown)
    return status or EXIT_OK


def _first_failed(token: ExitToken, names: list[str] | None) -> Marker | None:
    """``wait --exit-code leader`` ended by any marker (no --leader, or --any): of the markers there now
    (among ``names``), the earliest written that failed, if one did. Several can be there when the wait
    ends (it started late), and which of them tripped it depends on how their names sort: a gate must not
    open because a failed step's name sorts after a successful one's."""
    from ._token import vantage

    directory = token.directory
    assert directory is not None  # the token tripped on a marker in it
    here = vantage(directory)
    present = [m for m in _listed(directory) if (not names or m.name in names) and not here.is_stale(m)]
    failed = [m for m in present if m.exit_status != EXIT_OK]
    return min(failed, key=lambda m: (m.time is None, m.time or "", m.name)) if failed else None


def _ready_awaited(args: argparse.Namespace) -> int:
    """``wait --ready NAME...``: until every NAME is announced ready, for ``--timeout`` seconds at most."""
    if args.leader or args.json:
        raise _UsageError("--ready waits for announcements, not for a marker: drop --leader and --json")
    if args.exit_code == "leader":
        raise _UsageError(
            "--exit-code leader exits with a leader's code; --ready waits for announcements, which carry "
            "none: drop one of them"
        )
    if resolve_directory(args.dir) is None:
        raise _UsageError("nothing to wait for: set EXIT_DIR or pass --dir")
    from ._ready import wait_ready

    announced = _given(args, (("ready", "after"),), directory=args.dir, liveness_dir=args.liveness_dir)
    missing = wait_ready(announced, args.timeout)
    if missing:
        what = ", ".join(dependency.target for dependency in missing)
        _say(
            args,
            f"timed out after {args.timeout:g} s waiting for {what} to be announced ready",
            event="timed-out",
        )
        return EXIT_TIMEOUT
    if args.verbose:
        _print(", ".join(args.ready) + " ready")
    return EXIT_OK


def _running(
    directory: str, liveness_dir: str | None, names: tuple[str, ...] | None
) -> tuple[dict[str | None, tuple[bool, bool]] | None, int | None]:
    """Which of ``names`` run, and how many leaders do, as a follower sees them (None: unknowable)."""
    from ._liveness import liveness_of

    if not os.path.isdir(directory):
        return {}, 0
    locks = liveness_of(directory, liveness_dir, once=True)
    try:
        return locks.survey(names or ())
    finally:
        locks.close()


def _cmd_status(args: argparse.Namespace) -> int:
    from ._config import check_watchable, leader_names, resolve_liveness_dir
    from ._marker import describe
    from ._rules import TRIP, WHY_IGNORED, TripRules
    from ._token import vantage

    directory = resolve_directory(args.dir)
    if directory is None:
        raise _UsageError("no exit directory: set EXIT_DIR or pass --dir")
    liveness_dir = resolve_liveness_dir(args.liveness_dir, directory)
    check_watchable(directory)
    names = leader_names(args.leader)
    markers = _listed(directory)
    # The followers' own rules, fed what a follower starting now reads: status never restates a rule.
    here = vantage(directory)
    rules = TripRules(names, args.require, vantage=here)
    verdicts = [(marker, rules.consider(marker)) for marker in markers]
    would_exit = any(verdict == TRIP for _, verdict in verdicts)
    # (marker, why it is ignored: a key of WHY_IGNORED, or None when it counts)
    judged = [(marker, verdict if verdict in WHY_IGNORED else None) for marker, verdict in verdicts]
    flags, running_count = _running(directory, liveness_dir, names)
    leaders = {}  # name -> "done" | "running" | "not running", for the leaders asked about
    for name in names or ():
        running = flags is not None and flags.get(name, (False, False))[0]
        leaders[name] = "done" if name in rules.counted else "running" if running else "not running"
    if args.json:
        import json

        doc = {
            "directory": directory,
            "boot_id": here.boot_id,
            "markers": [{**marker.as_dict(), "ignored": why} for marker, why in judged],
            "leaders": leaders,
            "running": running_count,
            "would_exit": would_exit,
        }
        _print(json.dumps(doc))
        return EXIT_OK
    lines = []
    for name, state in leaders.items():
        lines.append(f"done: {describe(rules.counted[name])}" if state == "done" else f"{name}: {state}")
    if names is None:
        if not markers:
            lines.append(f"{directory}: no markers")
        lines.extend(describe(marker) for marker, why in judged if why is None)
    lines.extend(f"ignored: {describe(marker)} ({why}: {WHY_IGNORED[why]})" for marker, why in judged if why)
    if names is None and running_count:
        lines.append(f"{running_count} leader(s) running")
    if would_exit:
        lines.append("followers would exit now")
    elif names is None:
        lines.append("followers would keep running: no marker counts")
    elif args.require == "any":
        lines.append(f"followers would keep running: waiting for any of {', '.join(names)}")
    else:
        awaited = ", ".join(name for name in names if name not in rules.counted)
        lines.append(f"followers would keep running: waiting for {awaited}")
    for line in lines:
        _print(line)
    return EXIT_OK


def _listed(directory: str) -> list[Marker]:
    """Every marker in ``directory``, none if it does not exist yet; ExitDirError if it cannot be listed
    (out of descriptors, a stale NFS handle), saying why and the fix."""
    from ._errno import explain
    from ._marker import list_markers

    try:
        return list_markers(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ExitDirError(f"cannot list exit directory {directory}: {explain(err)}") from None


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise _UsageError(f"no command given: exitdir {args.subcommand} [OPTIONS] -- CMD [ARGS...]")
    return command


def _reaping(args: argparse.Namespace) -> tuple[bool, bool]:
    """(reap_all, kill_descendants): whether orphans will be ours to reap (as PID 1 always, else with
    --subreaper or --kill-descendants where the platform allows it), and whether what the program leaves
    running can be found and stopped."""
    from ._linux import descendants_visible, set_child_subreaper

    kill = args.kill_descendants
    if os.getpid() != 1 and not (args.subreaper or kill):
        return False, False
    if os.getpid() != 1 and not set_child_subreaper():
        option = "--kill-descendants" if kill else "--subreaper"
        left = ", and processes that leave CMD's process group are not stopped" if kill else ""
        _say(
            args,
            f"{option} needs a child subreaper, which is not available here: orphans are not reaped{left}",
            event="no-subreaper",
        )
        return False, False
    if kill and not descendants_visible():
        _say(
            args,
            "--kill-descendants cannot find CMD's descendants: /proc is missing or shows another pid "
            "namespace (mount /proc for this one); processes that leave CMD's process group are not stopped",
            event="descendants-hidden",
        )
        return True, False
    return True, kill


def _check_lead_options(args: argparse.Namespace) -> None:
    """Refuse the combinations of ``lead``'s options that cannot mean anything, before CMD starts."""
    if args.wait_timeout is not None and not _dependencies(args):
        raise _UsageError("--wait-timeout bounds a wait: say what to wait for (--wait-http, --after...)")
    if args.after and resolve_directory(args.dir) is None:
        raise _UsageError(
            "--after waits for an announcement on the exit directory: set EXIT_DIR or pass --dir"
        )
    if not (args.kill_descendants or args.stop_on) and (args.signal is not None or args.grace is not None):
        raise _UsageError(
            "--signal and --grace say how to stop CMD or what it leaves: add --stop-on or --kill-descendants"
        )
    if args.stop_on and resolve_directory(args.dir) is None:
        raise _UsageError(
            "--stop-on watches the exit directory for a follower's marker: set EXIT_DIR or pass --dir"
        )
    if args.stop_on and args.name in args.stop_on:
        raise _UsageError(
            f"--stop-on {args.name} names this leader's own marker, written when CMD ends: give the --name "
            "of a follow --report-failure"
        )


def _cmd_lead(args: argparse.Namespace) -> int:
    from ._leader import Leadership
    from ._supervise import EXITED, NOT_STARTED, signal_relay, supervise

    command = _command(args)
    stops = _stop_actions(args)
    _check_lead_options(args)
    reap_all, kill_descendants = _reaping(args)  # first: it may load ctypes, which takes a descriptor
    run = Leadership(
        args.name,
        directory=args.dir,
        signal_on=args.signal_on,
        require_dir=args.require_dir,
        liveness_dir=args.liveness_dir,
    )
    # Everything needed to report the program's end is acquired before it starts: the directory kept
    # open for the final write, the liveness lock (held until the marker is written, so that followers
    # see this wrapper go if it is killed outright), the signal relay. In strict mode a missing
    # directory ends here too, before CMD runs.
    try:
        run.begin()
    except ExitDirError as err:
        if run.directory is None:
            raise  # strict mode and no directory: no marker to write either
        return _not_started(run, command[0], err)
    if run.directory is None:
        _say_no_directory(args, "followers will not be told")
    not_ready = _wait_for_dependencies(args, run, command[0])
    if not_ready is not None:
        return not_ready
    try:
        relay = signal_relay()
        watched = _failing_followers(args)  # --stop-on: only then is the follower's machinery loaded
    except ExitDirError as err:
        return _not_started(run, command[0], err)
    try:
        outcome = supervise(
            command,
            until=watched,
            relay=relay,
            watch_after_stop_request=False,  # --stop-on: a pod deleted stops the follower too; not a failure
            stop_signal=signal.SIGTERM if args.signal is None else args.signal,
            grace=10.0 if args.grace is None else args.grace,
            reap_all=reap_all,
            kill_descendants=kill_descendants,
            say=lambda message, event="info", **fields: _say(args, message, event, **fields),
        )
    except BaseException:
        run.finish(1, "exitdir lead failed")  # never leave followers waiting for a leader that is gone
        raise
    finally:
        if watched is not None:
            watched.close()
    if outcome.why not in (EXITED, NOT_STARTED):  # --stop-on: a follower failed, or cannot be watched
        return _stopped_for_follower(args, run, command[0], outcome=outcome, watched=watched, stops=stops)
    ended = outcome.child
    assert ended is not None
    if outcome.why == NOT_STARTED:
        _error(ended.reason, event="not-started", command=command[0], status=ended.code)
    elif run.directory is not None and not run.writes_marker(ended.code):
        _say(
            args,
            f"{command[0]} failed ({ended.reason}); --signal-on success: no marker written",
            event="marker-not-written",
            command=command[0],
            status=ended.code,
        )
    try:
        path = run.finish(ended.code, ended.reason)
    except ExitDirError as err:
        _error(str(err))
        return ended.code or EXIT_ERROR  # never report success when the followers were not told
    if path is not None:
        _say_written(args, path, ended.code)
    _after_stops(stops, ended.code, args)  # the program's status stands: the marker carries it
    return ended.code


def _failing_followers(args: argparse.Namespace) -> ExitToken | None:
    """``lead --stop-on NAME...``: the token that trips when one of those followers reports its helper's
    failure, or is gone without a marker; None without the option (nothing of the follower's loaded)."""
    if not args.stop_on:
        return None
    from ._token import followers_failing

    directory = resolve_directory(args.dir)
    assert directory is not None  # refused as a usage error before
    return followers_failing(directory, args.stop_on, liveness_dir=args.liveness_dir)


def _stopped_for_follower(
    args: argparse.Namespace,
    run: Leadership,
    command: str,
    *,
    outcome: Outcome,
    watched: ExitToken | None,
    stops: list[Callable[[], list[Stopped]]],
) -> int:
    """``lead --stop-on``: CMD was stopped (or not started) because a follower failed, or is gone: exit with
    the follower's status (1 when it is unknown or 0: CMD did not get to finish), and write the marker
    with it, naming the follower, so that every other follower ends too."""
    from ._marker import describe
    from ._supervise import FAILED

    if outcome.why == FAILED or watched is None or watched.marker is None:
        _error(str(outcome.error))
        code, why = EXIT_ERROR, f"cannot watch for the followers of --stop-on: {outcome.error}"
    else:
        marker = watched.marker
        code = marker.exit_status or EXIT_ERROR
        told = marker.reason if marker.reason and marker.reason.startswith(marker.name) else None
        why = told or describe(marker)
    if outcome.child is None:
        reason = f"{command} not started: {why}"
        _error(f"{command} not started: {why}", event="not-started", command=command)
    else:
        reason = f"stopped: {why}"
        _say(
            args,
            f"{command} stopped ({outcome.child.reason}) because {why}; exiting {code}",
            event="stopped-for-follower",
            command=command,
            status=code,
        )
    if not run.writes_marker(code) and run.directory is not None:
        _say(args, "--signal-on success: no marker written", event="marker-not-written")
    try:
        run.finish(code, reason)
    except ExitDirError as err:
        _error(str(err))
        return code
    return _after_stops(stops, code, args)


# The options that name dependencies, each with the kind it names, in the order they are probed.
_WAITS = (
    ("wait_ready", "preset"),
    ("wait_http", "http"),
    ("wait_tcp", "tcp"),
    ("wait_file", "file"),
    ("after", "after"),
)
_PROBES = (("ready_tcp", "tcp"), ("ready_http", "http"), ("ready_file", "file"), ("ready_cmd", "cmd"))


def _given(
    args: argparse.Namespace, options: Sequence[tuple[str, str]], **where: str | None
) -> list[Dependency]:
    """The dependencies ``options`` give (a target given twice, once), ``where`` to look for announcements."""
    wanted = [(kind, target) for option, kind in options for target in getattr(args, option) or ()]
    if not wanted:
        return []  # nothing imported: at a low `ulimit -n` every module file read counts
    from ._ready import READY_PRESETS, Dependency

    wanted = [
        ("http", READY_PRESETS[target]) if kind == "preset" else (kind, target) for kind, target in wanted
    ]
    return [Dependency(kind, target, **where) for kind, target in dict.fromkeys(wanted)]


def _dependencies(args: argparse.Namespace) -> list[Dependency]:
    """What ``lead --wait-*`` and ``--after`` wait for before starting the program."""
    return _given(args, _WAITS, directory=args.dir, liveness_dir=args.liveness_dir)


def _probes(args: argparse.Namespace) -> list[Dependency]:
    """What ``follow --ready-*`` probes before announcing its helper ready under ``--name``."""
    probes = _given(args, _PROBES)
    if probes and args.name is None:
        raise _UsageError("--ready-... probes announce a helper ready under a name: add --name NAME")
    if args.report_failure and args.name is None:
        raise _UsageError("--report-failure writes a marker named after this follower: add --name NAME")
    if not probes and not args.report_failure and args.name is not None:
        raise _UsageError(
            "--name says under which name a helper is announced ready, or its failure reported: add a "
            "--ready-... probe or --report-failure"
        )
    return probes


def _wait_for_dependencies(args: argparse.Namespace, run: Leadership, command: str) -> int | None:
    """Wait until every ``--wait-*`` dependency is ready; None then. Otherwise (``--wait-timeout`` ran out,
    or a terminating signal came) the program is not started: say why, write the marker saying it, and
    return the status to exit with."""
    dependencies = _dependencies(args)
    if not dependencies:
        return None
    import time

    from ._ready import probe_until_ready
    from ._signals import signal_name

    began = time.monotonic()
    missing = probe_until_ready(dependencies, 0)  # said only when there is something to wait for
    if not missing:
        return None
    _say(
        args,
        f"waiting for {', '.join(d.describe() for d in missing)} before starting {command}",
        event="waiting",
        command=command,
    )
    ending = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
    stopped_by: list[int] = []

    def pause(seconds: float) -> bool:
        """Sleep, unless a terminating signal (held since main) comes: the pod may be being deleted."""
        got = signal.sigtimedwait(ending, seconds)
        if got is not None:
            stopped_by.append(got.si_signo)
        return got is None

    left = None if args.wait_timeout is None else max(0.0, args.wait_timeout - (time.monotonic() - began))
    missing = probe_until_ready(list(missing), left, pause)
    if not missing:
        return None
    what = "; ".join(f"{dependency.target}: {why}" for dependency, why in missing.items())
    if stopped_by:
        code = 128 + stopped_by[0]
        reason = f"{command} not started: {signal_name(stopped_by[0])} while waiting for {what}"
    else:
        code = EXIT_ERROR
        reason = f"{command} not started: not ready within {args.wait_timeout:g} s: {what}"
    return _unstarted(run, code, reason, reason, command)


def _not_started(run: Leadership, command: str, lacking: ExitDirError) -> int:
    """``lead`` lacks what it needs to report the end of ``command``: say so, and do not run it; but its
    followers must not wait for it, so the marker is still written (status 1) if it can be."""
    return _unstarted(
        run,
        EXIT_ERROR,
        f"cannot start {command}: {lacking}",
        f"exitdir could not start {command}: {lacking}",
        command,
    )


def _unstarted(run: Leadership, code: int, said: str, reason: str, command: str) -> int:
    """The program is not run: say ``said``, and write the marker with ``code`` and ``reason`` all the same,
    so that followers do not wait for it (a failed write is said too, unless ``said`` already says it)."""
    _error(said, event="not-started", command=command, status=code)
    try:
        run.finish(code, reason)
    except ExitDirError as unwritten:
        if str(unwritten) not in said:  # the same problem (a directory in the way) is said once
            _error(str(unwritten))
    return code


FOLLOW_POLICIES = ("zero", "leader", "child")


def _check_follow_options(
    args: argparse.Namespace, probes: list[Dependency], stops: list[Callable[[], list[Stopped]]]
) -> None:
    """Refuse the combinations of ``follow``'s options that cannot mean anything, before anything starts."""
    if probes and resolve_directory(args.dir) is None:
        raise _UsageError("--ready-... announces on the exit directory: set EXIT_DIR or pass --dir")
    if args.report_failure and resolve_directory(args.dir) is None:
        raise _UsageError(
            "--report-failure writes its marker into the exit directory: set EXIT_DIR or pass --dir"
        )
    if not [arg for arg in args.command if arg != "--"]:
        if not stops:
            raise _UsageError(
                "nothing to follow: give -- CMD to run a helper, or what to stop when the marker appears "
                "(--post URL, --quit NAME, --process NAME, --pid-file PATH)"
            )
        if args.report_failure:
            raise _UsageError("--report-failure reports how a helper ended: run one with -- CMD")


def _cmd_follow(args: argparse.Namespace) -> int:
    # _token is loaded now, before the relay takes descriptors: at a low `ulimit -n` reading its source
    # later could fail where a clear "cannot start" line is owed.
    from . import _token  # noqa: F401
    from ._supervise import FAILED, MARKER, NOT_STARTED, TIMEOUT, signal_relay, supervise

    stops = _stop_actions(args)
    probes = _probes(args)
    _check_follow_options(args, probes, stops)
    if not [arg for arg in args.command if arg != "--"]:
        stop_announcing = _announce_when_ready(args, probes)
        try:
            return _follow_stop_only(args, stops, stop_announcing)
        finally:
            stop_announcing()
    command = _command(args)
    if args.report_failure:
        _forget_own_report(args)
    reap_all, kill_descendants = _reaping(args)
    # The relay's descriptors first: under a low `ulimit -n` the watch then sees what is really left, and
    # polls (which holds none) where inotify would leave no room to list the directory.
    try:
        relay = signal_relay()
    except ExitDirError as err:
        raise ExitDirError(f"cannot start {command[0]}: {err}") from None
    try:
        # In strict mode a missing directory is refused here, before the helper starts.
        with _follower_token(args) as token:
            if token.directory is None:
                _say_no_directory(args, "the helper runs until it exits")
            stop_announcing = _announce_when_ready(args, probes)
            try:
                outcome = _reporting(
                    args,
                    token,
                    relay,
                    lambda: supervise(
                        command,
                        until=token,
                        relay=relay,
                        timeout=args.timeout,
                        stop_signal=args.signal,
                        grace=args.grace,
                        reap_all=reap_all,
                        kill_descendants=kill_descendants,
                        hold_on_term=args.hold_on_term,
                        say=lambda message, event="info", **fields: _say(args, message, event, **fields),
                    ),
                )
            finally:
                stop_announcing()
    finally:
        relay.close()
    if outcome.why == FAILED:
        _error(str(outcome.error))
        return EXIT_ERROR
    if outcome.why not in (MARKER, TIMEOUT):
        assert outcome.child is not None
        if outcome.why == NOT_STARTED:
            _error(outcome.child.reason, event="not-started", command=command[0], status=outcome.child.code)
        elif outcome.on_purpose and args.exit_code != "child":
            return _stopped_on_purpose(args, command[0], outcome.child)
        # The helper ended on its own (or after a held SIGTERM, otherwise than by the signal it was sent),
        # or could not start: its status. The pod is being stopped, so no --post: the kubelet stops them all.
        return outcome.child.code
    if outcome.why == MARKER:
        status = _after_stops(stops, _follow_status(args.exit_code, token.marker, outcome.child), args)
    else:
        status = _after_stops(stops, EXIT_TIMEOUT, args)
    if args.linger and outcome.stop_request is None:  # a SIGTERM while stopping: the pod is going
        done = "stopped" if outcome.child is not None else "not started"
        return _linger(args, status, reap=reap_all, done=f"{command[0]} {done}")
    return status


def _stopped_on_purpose(args: argparse.Namespace, command: str, ended: ChildExit) -> int:
    """The wrapper was asked to stop (SIGTERM, SIGINT) and its helper ended by that: success, as the kubelet,
    `docker stop` or Ctrl-C meant it (--exit-code child keeps the helper's own status)."""
    _say(
        args,
        f"{command} {ended.reason} after exitdir was asked to stop: status 0 "
        f"(--exit-code child: {ended.code})",
        event="stopped-on-purpose",
        command=command,
        status=EXIT_OK,
    )
    return EXIT_OK


def _linger(args: argparse.Namespace, status: int, *, reap: bool, done: str) -> int:
    """``--linger``: the helper is stopped (or never started) because the leader is done; stay, idle and
    holding nothing, until SIGTERM or SIGINT, then exit with ``status``. Exiting now would make a native
    sidecar (restartPolicy: Always) or a compose service with `restart: always` start it again."""
    from ._signals import linger, signal_name

    said = f"{done}; lingering until a stop signal, then exiting with status {status} (--linger)"
    _say(args, said, event="lingering", status=status)
    ended_by = signal_name(linger(reap=reap))
    _say(
        args,
        f"{ended_by}: exiting with status {status}",
        event="linger-ended",
        signal=ended_by,
        status=status,
    )
    return status


def _forget_own_report(args: argparse.Namespace) -> None:
    """``follow --report-failure``: the marker of this follower's name is one an earlier run left (a
    restarted container, a rerun step): removed before watching, as a leader removes its own."""
    from ._leader import remove_own_marker

    directory = resolve_directory(args.dir)
    if directory is not None and os.path.lexists(os.path.join(directory, args.name)):
        remove_own_marker(directory, args.name)


def _reporting(
    args: argparse.Namespace, token: ExitToken, relay: SignalRelay, supervised: Callable[[], Outcome]
) -> Outcome:
    """Run ``supervised``; with ``--report-failure``, holding the lock that shows ``lead --stop-on NAME``
    this follower running, and after it report the helper's failure, *then* let the lock go: a follower
    is never seen gone without its report."""
    directory = token.directory
    if not args.report_failure or directory is None:
        return supervised()
    from ._config import resolve_liveness_dir
    from ._liveness import hold_reporting, release

    held = hold_reporting(directory, args.name, resolve_liveness_dir(args.liveness_dir, directory))
    try:
        outcome = supervised()
        _report_failure(args, token, outcome, relay)
    finally:
        for fd in held:
            release(fd)
    return outcome


def _report_failure(args: argparse.Namespace, token: ExitToken, outcome: Outcome, relay: SignalRelay) -> None:
    """``follow --report-failure``: when the helper failed on its own (a non-zero status, or it could not
    start; not stopped because of a marker, a timeout or a signal to the wrapper), before any marker that
    ends this follower, write the marker ``--name`` with its status, through the leader's writer."""
    from ._supervise import EXITED, NOT_STARTED
    from ._token import Waiter

    ended = outcome.child
    if outcome.why not in (EXITED, NOT_STARTED) or ended is None or ended.code == 0:
        return
    if any(relay.received(signum) for signum in {*STOP_SIGNALS, ended.signal or 0}):
        return  # asked to stop from outside (the pod deleted): not a failure of the helper's own
    if Waiter(token).look() or token.error is not None:
        return  # the leader is done already: the helper's end no longer matters to anyone
    how = ended.reason if outcome.why == EXITED else f"not started: {ended.reason}"
    reason = f"{args.name} {how}"
    from ._leader import write_marker

    try:
        write_marker(ended.code, reason=reason, name=args.name, directory=token.directory)
    except ExitDirError as err:
        _error(f"cannot report that {reason}: {err}", event="report-failed")
        return
    _say(
        args,
        f"reported the helper's failure as marker {args.name} (code {ended.code}): {reason}",
        event="failure-reported",
        status=ended.code,
    )


def _announce_when_ready(args: argparse.Namespace, probes: list[Dependency]) -> Callable[[], None]:
    """Probe in the background and announce the helper ready under ``--name`` once all pass; what to
    call to stop probing and withdraw the announcement."""
    if not probes:
        return lambda: None
    from ._ready import announce_when_ready

    return announce_when_ready(
        args.name,
        probes,
        directory=args.dir,
        liveness_dir=args.liveness_dir,
        say=lambda message, event="info", **fields: _say(args, message, event, **fields),
    )


def _stop_actions(args: argparse.Namespace) -> list[Callable[[], list[Stopped]]]:
    """What ``--post``, ``--quit``, ``--process`` and ``--pid-file`` ask to stop, each once, in the order
    given. A process is looked for when its action runs (after the marker), not now."""
    names = getattr(args, "process", None) or ()
    pid_files = getattr(args, "pid_file", None) or ()
    if not (args.quit or args.post or names or pid_files):
        return []  # nothing more is imported: a wrapper's start-up stays as lean as before
    from functools import partial

    from ._stops import QUIT_PRESETS, post

    urls = [QUIT_PRESETS[name] for name in args.quit or ()] + list(args.post or ())
    actions: list[Callable[[], list[Stopped]]] = [partial(_one, post, url) for url in dict.fromkeys(urls)]
    if names or pid_files:
        from ._targets import stop_process

        how = {"signal": args.signal, "grace": args.grace}
        actions += [partial(stop_process, name, **how) for name in dict.fromkeys(names)]
        actions += [partial(stop_process, pid_file=path, **how) for path in dict.fromkeys(pid_files)]
    return actions


def _one(action: Callable[[str], Stopped], target: str) -> list[Stopped]:
    return [action(target)]


def _after_stops(stops: list[Callable[[], list[Stopped]]], status: int, args: argparse.Namespace) -> int:
    """Run the stop actions, all at once; ``status``, or 1 in its place when one failed and it was 0."""
    failed = False
    from ._stops import in_parallel

    for results in in_parallel(stops):
        for result in results:
            what = {"target": result.target, "result": result.outcome}
            if result.done:
                _say(args, result.describe(), event="stopped", **what)
            else:
                _error(f"could not stop {result.describe()}", event="not-stopped", **what)
                failed = True
    return EXIT_ERROR if failed and status == EXIT_OK else status


def _follow_stop_only(
    args: argparse.Namespace, stops: list[Callable[[], list[Stopped]]], stop_announcing: Callable[[], None]
) -> int:
    """``exitdir follow`` with no command: wait for the marker, then stop the targets. Nothing of ours runs
    meanwhile, so a SIGTERM or SIGINT (the pod deleted) ends it at once, with 0: stopped on purpose."""

    if args.exit_code == "child":
        raise _UsageError("--exit-code child needs a helper to report on: run one with -- CMD")
    if args.hold_on_term is not None:
        raise _UsageError(
            "--hold-on-term holds a helper back from SIGTERM: run one with -- CMD (a sidecar you cannot "
            "wrap gets the kubelet's SIGTERM itself)"
        )
    _stop_on_sigterm()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    status = None
    try:
        marker = _marker_awaited(args, then=": stopping")
        if marker is None:
            status = _after_stops(stops, EXIT_TIMEOUT, args)
        else:
            status = _after_stops(stops, _follow_status(args.exit_code, marker, None), args)
        if args.linger:
            stop_announcing()  # nothing of ours may look alive while lingering
            return _linger(args, status, reap=os.getpid() == 1, done="the targets are stopped")
        return status
    except (_Terminated, KeyboardInterrupt):
        # Asked to stop (the pod deleted: the kubelet stops every container itself), or while lingering:
        # on purpose, so 0 while waiting, the status decided at the marker once it came.
        return EXIT_OK if status is None else status


def _follow_status(policy: str, marker: Marker | None, stopped: ChildExit | None) -> int:
    if policy == "leader":
        # A marker whose code cannot be read still means the leader ended, but not that it succeeded.
        return EXIT_ERROR if marker is None or marker.code is None else marker.code
    if policy == "child":
        return stopped.code if stopped is not None else EXIT_OK
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    if args.role == "busy":
        return _demo.busy(_print)
    return _demo.work(args.seconds, _print)


def _require_dir(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--require-dir",
        action="store_const",
        const=True,
        default=None,  # None: $EXITDIR_REQUIRE_DIR decides
        help="a missing exit directory is an error, not a silent no-op (also EXITDIR_REQUIRE_DIR=1)",
    )


def _readiness(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--wait-http", action="append", type=_url, metavar="URL", help="start CMD once URL answers 2xx to GET"
    )
    sub.add_argument(
        "--wait-tcp", action="append", type=_host_port, metavar="HOST:PORT", help="... once it accepts"
    )
    sub.add_argument("--wait-file", action="append", metavar="PATH", help="... once PATH exists")
    sub.add_argument(
        "--after",
        action="append",
        type=_name,
        metavar="NAME",
        help="... once `exitdir follow --name NAME --ready-...` has announced its helper ready",
    )
    sub.add_argument(
        "--wait-ready",
        action="append",
        type=_ready,
        metavar="{istio,linkerd,cloud-sql-proxy}",
        help="... once that sidecar's documented readiness endpoint answers (repeatable, as each --wait-*)",
    )
    sub.add_argument(
        "--wait-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up waiting after SECONDS: CMD is not started, the marker says why, status 1",
    )


def _announcing(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--name",
        type=_name,
        help="announce the helper ready under NAME once every --ready-* probe passes, for `exitdir lead "
        "--after NAME` and `exitdir wait --ready NAME` (a lock: nothing is written into the exit directory); "
        "and with --report-failure, the name of its marker",
    )
    sub.add_argument(
        "--report-failure",
        action="store_true",
        help="when the helper fails on its own (a non-zero status, before any marker), write the marker "
        "NAME with its status; `exitdir lead --stop-on NAME` then stops its program, as it does if this "
        "wrapper is killed",
    )
    sub.add_argument(
        "--ready-tcp", action="append", type=_port, metavar="[HOST:]PORT", help="... once it accepts"
    )
    sub.add_argument(
        "--ready-http", action="append", type=_url, metavar="URL", help="... once URL answers 2xx"
    )
    sub.add_argument("--ready-file", action="append", metavar="PATH", help="... once PATH exists")
    sub.add_argument(
        "--ready-cmd",
        action="append",
        type=_probe,
        metavar="COMMAND",
        help="... once COMMAND exits 0 (split into words as a shell would; no shell runs it)",
    )


def _stop_targets(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--post",
        action="append",
        type=_url,
        metavar="URL",
        help="once the marker is there, POST to this shutdown endpoint (repeatable; connection refused "
        "counts as absent, so done)",
    )
    sub.add_argument(
        "--quit",
        action="append",
        type=_quit,
        metavar="{istio,envoy,linkerd,cloud-sql-proxy}",
        help="the same for a known sidecar's documented endpoint (repeatable)",
    )


def _liveness(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--liveness-dir",
        metavar="LDIR",
        help="a directory beside the exit directory, on the same shared volume, where leaders hold locks "
        "that followers on other machines see: a leader killed outright is detected across nodes "
        "(default: $EXITDIR_LIVENESS_DIR)",
    )


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dir", metavar="DIR", help="exit directory (default: $EXIT_DIR)")
    sub.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    sub.add_argument(
        "--log-format",
        type=_log_format,
        metavar="{text,json}",
        help="exitdir's own messages on stderr: text lines, or one JSON object per line with time, "
        "severity, message and event (default: $EXITDIR_LOG_FORMAT, else text)",
    )
    sub.add_argument(
        "--timestamps",
        action="store_const",
        const=True,
        default=None,  # None: $EXITDIR_TIMESTAMPS decides
        help="start each text message with its RFC 3339 UTC time (also EXITDIR_TIMESTAMPS=1)",
    )


def _supervised(sub: argparse.ArgumentParser) -> None:
    _require_dir(sub)
    _common(sub)
    sub.add_argument(
        "--subreaper",
        action="store_true",
        help="reap orphaned descendants, as PID 1 does (automatic when running as PID 1)",
    )
    sub.add_argument(
        "--kill-descendants",
        action="store_true",
        help="when CMD ends or is stopped, stop every process it left running too, setsid() and "
        "double-forked daemons included: --signal, --grace seconds, then SIGKILL (implies --subreaper)",
    )
    sub.add_argument("command", nargs="...", metavar="-- CMD [ARGS...]")  # argparse.REMAINDER


def _configure_exit(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--code", type=_code, default=0, help="exit code to report (0..255, default 0)")
    sub.add_argument("--reason", help="a short text saying why")
    sub.add_argument("--name", type=_name, default=DEFAULT_NAME, help=f"marker name (default {DEFAULT_NAME})")
    sub.add_argument("-v", "--verbose", action="store_true", help="say which file was written")
    _require_dir(sub)
    _common(sub)
    sub.set_defaults(run=_cmd_exit)


def _leaders(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--leader",
        action="append",
        type=_name,
        metavar="NAME",
        help="only this leader's marker counts (repeatable; default: any marker)",
    )
    require = sub.add_mutually_exclusive_group()
    require.add_argument(
        "--all",
        dest="require",
        action="store_const",
        const="all",
        help="end when all --leader have (default)",
    )
    require.add_argument(
        "--any", dest="require", action="store_const", const="any", help="end when any --leader has"
    )
    sub.set_defaults(require="all")


def _configure_wait(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--timeout", type=_seconds, help="give up after SECONDS (exit status 124)")
    sub.add_argument(
        "--exit-code",
        choices=WAIT_POLICIES,
        default="zero",
        help="status once the marker is there: zero (default), or leader: the leader's code (1 if it "
        "vanished or its code is unknown; with --all, the first non-zero in the order of --leader; else a "
        "failure among the markers there wins), to gate a next step",
    )
    sub.add_argument(
        "--ready",
        action="append",
        type=_name,
        metavar="NAME",
        help="wait instead until `exitdir follow --name NAME --ready-...` has announced its helper ready "
        "(repeatable: all of them)",
    )
    _leaders(sub)
    sub.add_argument("-v", "--verbose", action="store_true", help="print the marker's code and reason")
    sub.add_argument("--json", action="store_true", help="print the marker as JSON")
    _liveness(sub)
    _common(sub)
    sub.set_defaults(run=_cmd_wait)


def _configure_status(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print JSON")
    _leaders(sub)  # judged as a follower with the same options would judge them
    _liveness(sub)
    _common(sub)
    sub.set_defaults(run=_cmd_status)


def _configure_lead(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--name", type=_name, default=DEFAULT_NAME, help=f"marker name (default {DEFAULT_NAME})")
    sub.add_argument(
        "--signal-on",
        type=_signal_on,
        metavar="{" + ",".join(SIGNAL_ON) + "}",
        default="always",
        help="write the marker always (default), or only when CMD succeeds (a leader that is restarted "
        "on failure, restartPolicy: OnFailure)",
    )
    sub.add_argument(
        "--signal",
        type=_signal,
        help="with --stop-on or --kill-descendants: the signal for CMD or what it left (default TERM)",
    )
    sub.add_argument(
        "--grace",
        type=_seconds,
        help="with --stop-on or --kill-descendants: seconds between that signal and SIGKILL (default 10); "
        "the marker is written once they are gone",
    )
    sub.add_argument(
        "--stop-on",
        action="append",
        type=_name,
        metavar="NAME",
        help="stop CMD (--signal, --grace, SIGKILL) when `exitdir follow --name NAME --report-failure` "
        "reports its helper failed, or is gone without a report; exit with its status (repeatable)",
    )
    _readiness(sub)
    _stop_targets(sub)
    _liveness(sub)
    _supervised(sub)
    sub.set_defaults(run=_cmd_lead)


def _configure_follow(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--signal", type=_signal, default=signal.SIGTERM, help="stop signal (default TERM)")
    sub.add_argument(
        "--grace",
        type=_seconds,
        default=10.0,
        help="seconds between the stop signal and SIGKILL (default 10)",
    )
    sub.add_argument(
        "--exit-code",
        choices=FOLLOW_POLICIES,
        default="zero",
        help="status after stopping the helper: zero (default), leader (marker's code), child (helper's)",
    )
    sub.add_argument(
        "--timeout", type=_seconds, help="stop the helper anyway after SECONDS (exit status 124)"
    )
    sub.add_argument(
        "--hold-on-term",
        type=_seconds,
        metavar="SECONDS",
        help="on SIGTERM, keep the helper running (not forwarded) until the marker appears or SECONDS pass, "
        "then stop it (--signal, --grace); a second SIGTERM stops it at once. The pod's "
        "terminationGracePeriodSeconds must exceed SECONDS + --grace",
    )
    sub.add_argument(
        "--linger",
        action="store_true",
        help="after stopping the helper (or not starting it) because of the marker, stay idle until SIGTERM "
        "or SIGINT, then exit: for a native sidecar (restartPolicy: Always) or `restart: always`, which "
        "would restart it. Never in a Job's regular container: it would never exit, nor the Job complete",
    )
    _leaders(sub)
    _stop_targets(sub)
    sub.add_argument(
        "--process",
        action="append",
        type=_program,
        metavar="NAME",
        help="once the marker is there, stop every process called NAME (shareProcessNamespace: true): "
        "--signal, --grace seconds, then SIGKILL (repeatable)",
    )
    sub.add_argument(
        "--pid-file", action="append", metavar="PATH", help="the same for the process whose pid PATH holds"
    )
    _announcing(sub)
    _liveness(sub)
    _supervised(sub)
    sub.set_defaults(run=_cmd_follow)


def _configure_demo(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("role", choices=("busy", "work"))
    sub.add_argument("--seconds", type=_seconds, default=5.0, help="how long work works (default 5)")
    sub.set_defaults(run=_cmd_demo)


_COMMANDS = {
    "exit": ("write a marker: tell the followers to exit", _configure_exit),
    "wait": ("block until a marker appears", _configure_wait),
    "status": (
        "list the markers, which of them followers ignore and why, and whether followers would exit now",
        _configure_status,
    ),
    "lead": (
        "run the main program; when it ends, however it ends, write a marker with its status",
        _configure_lead,
    ),
    "follow": (
        "run a helper; when a marker appears, stop it (signal, grace period, SIGKILL)",
        _configure_follow,
    ),
    "demo": ("the seed's demo programs: busy (follower), work (leader)", _configure_demo),
}


def _subcommand(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, as argparse will read it (the top level's one option taking a value is
    ``--log-format FORMAT``)."""
    after_option = False
    for arg in argv:
        if not arg.startswith("-") and not after_option:
            return arg
        after_option = arg == "--log-format"
    return None


def _prescanned_style(argv: Sequence[str]) -> tuple[str, bool]:
    """The log style ``argv`` and the environment ask for, read before argparse has (a usage error must
    honour it too): ``--log-format FORMAT``, ``--log-format=FORMAT`` and ``--timestamps`` before ``--``. A
    value that is not valid is left for the parser to refuse, and said meanwhile in plain text."""
    log_format: str | None = None
    timestamps: bool | None = None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--timestamps":
            timestamps = True
        elif arg.startswith("--log-format="):
            log_format = arg.partition("=")[2]
        elif arg == "--log-format" and index + 1 < len(argv):
            log_format = argv[index + 1]
    try:
        return log_style(None if log_format is None else validate_log_format(log_format), timestamps)
    except ExitDirError:
        return "text", timestamps is True


# Every option can be set as $EXITDIR_<OPTION> instead, but demo's: they are no settings.
_NOT_FROM_ENVIRONMENT = ("demo",)
_ENVIRONMENT_EPILOG = (
    "Every option can also be set as EXITDIR_<OPTION> (--grace: EXITDIR_GRACE; on/off options: 1 or 0; "
    "repeatable ones: comma-separated, \\, for a comma); a flag wins."
)
# Read where they are used, as before: EXITDIR_REQUIRE_DIR by the library, only when there is no exit
# directory (a leader that has one always writes its marker); the log style's two by _config.log_style,
# before the arguments are parsed, so that even a usage error is said in the style asked for.
_READ_BY_THE_LIBRARY = (ENV_REQUIRE_DIR, ENV_LOG_FORMAT, ENV_TIMESTAMPS)
# The options this run took from their variables ({"--name": "EXITDIR_NAME"}), for its usage errors.
_set_by_variable: dict[str, str] = {}


def _variable(action: argparse.Action) -> str | None:
    """The variable that sets an option: EXITDIR_ and its long name, upper case, dashes as underscores
    (``--hold-on-term``: EXITDIR_HOLD_ON_TERM); None for a positional argument and for --help."""
    import argparse

    long = [option for option in action.option_strings if option.startswith("--")]
    if not long or action.default is argparse.SUPPRESS:
        return None
    return "EXITDIR_" + long[0][2:].upper().replace("-", "_")


def _variables_set(
    actions: Sequence[argparse.Action],
) -> dict[str, list[tuple[argparse.Action, str, str]]]:
    """The options whose variable is set, by destination: (option, variable, text). An empty or blank
    variable is unset, as for most tools."""
    found: dict[str, list[tuple[argparse.Action, str, str]]] = {}
    for action in actions:
        variable = _variable(action)
        text = os.environ.get(variable, "") if variable else ""
        if variable and text.strip() and variable not in _READ_BY_THE_LIBRARY:
            found.setdefault(action.dest, []).append((action, variable, text))
    return found


def _naming_variables(message: str) -> str:
    """A usage error that names an option this run took from its variable says so: the user wrote
    EXITDIR_NAME, not --name (an EXITDIR_NAME set for the whole pod reaches a follower too)."""
    import re  # loaded with argparse already

    named = dict.fromkeys(re.findall(r"--[a-z][a-z-]*", message))
    notes = [
        f"{option} is set by {_set_by_variable[option]}" for option in named if option in _set_by_variable
    ]
    return f"{message} ({'; '.join(notes)})" if notes else message


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    import argparse

    _set_by_variable.clear()

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            # One line, not argparse's usage dump: it ends up in container logs.
            raise _UsageError(f"{message} (see '{self.prog} --help')")

        def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> tuple[argparse.Namespace, list[str]]:
            """Parse, then give each option whose flag was not given the value of its variable, if set."""
            wanted = self.prog.rpartition(" ")[2] not in _NOT_FROM_ENVIRONMENT
            settings = _variables_set(self._actions) if wanted else {}
            if not settings:
                return super().parse_known_args(args, namespace)
            # Their defaults become one marker object while parsing, so "no flag given" is seen by
            # identity afterwards, even when a flag gives the default's own value. After parsing, not
            # before: --help still works, and a flag makes its variable irrelevant, even a bad one.
            unset: list[str] = []  # a list: an append action copies its default and appends to it
            defaults = {dest: self.get_default(dest) for dest in settings}
            self.set_defaults(**dict.fromkeys(settings, unset))
            try:
                parsed, extras = super().parse_known_args(args, namespace)
            finally:
                self.set_defaults(**defaults)
            for dest, given in settings.items():
                if getattr(parsed, dest) is unset:
                    setattr(parsed, dest, self.from_variables(given, defaults[dest]))
            return parsed, extras

        def from_variables(self, given: list[tuple[argparse.Action, str, str]], default: object) -> object:
            """What the variables ``given`` for one destination make of it, as their flags would: each
            value through the flag's own type and choices, a list item by item; ``default`` if none sets
            it. Two variables for one destination (EXITDIR_ALL, EXITDIR_ANY) are a usage error."""
            lists = tuple(self._registry_get("action", kind) for kind in ("append", "extend"))
            value, set_by = default, {}
            for action, variable, text in given:
                option = next(option for option in action.option_strings if option.startswith("--"))
                scratch = argparse.Namespace(**{action.dest: default})
                try:
                    if action.nargs == 0:  # an on/off option: "yes" does what the flag does
                        if not validate_switch(text, option):
                            continue
                        action(self, scratch, [], option)
                    else:
                        items = split_list(text) if isinstance(action, lists) else [text]
                        if not items:  # only commas and blanks: unset, as an empty variable is
                            continue
                        for item in items:
                            action(self, scratch, self._get_values(action, [item]), option)
                except argparse.ArgumentError as err:
                    self.error(f"{variable}={text}: {err.message}")
                except ExitDirError as err:
                    self.error(f"{variable}={text}: {err}")
                value = getattr(scratch, action.dest)
                set_by[option] = variable
            if len(set_by) > 1:
                options = ", ".join(option for action, _, _ in given for option in action.option_strings)
                both = " and ".join(set_by.values())
                self.error(f"{both} are both set, for one choice ({options}): unset one")
            _set_by_variable.update(set_by)
            return value

    parser = _Parser(
        prog="exitdir", description="Tell processes to exit through a shared directory ($EXIT_DIR)."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"exitdir {__version__}")
    # Also before the command (`exitdir --log-format json follow ...`), as a log setting reads; their own
    # dests, since a command's defaults would overwrite the same dest.
    parser.add_argument("--log-format", dest="log_format_before", type=_log_format, metavar="{text,json}")
    parser.add_argument("--timestamps", dest="timestamps_before", action="store_const", const=True)
    # prog given: otherwise argparse builds a help formatter, importing shutil, on every start.
    commands = parser.add_subparsers(
        dest="subcommand", metavar="COMMAND", parser_class=_Parser, prog="exitdir"
    )
    # Only the command being run gets its arguments: building all of them costs a wrapper ~3 ms per start.
    wanted = _subcommand(argv)
    for name, (text, configure) in _COMMANDS.items():
        epilog = None if name in _NOT_FROM_ENVIRONMENT else _ENVIRONMENT_EPILOG
        sub = commands.add_parser(name, help=text, epilog=epilog)
        if wanted not in _COMMANDS or name == wanted:
            configure(sub)
    return parser


class _Terminated(Exception):
    """SIGTERM arrived while ``wait`` or ``demo`` ran in the foreground."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def _stop_on_sigterm() -> _Handler:
    """Make SIGTERM end the command with 143 after cleanup. As PID 1 in a container the kernel ignores a
    SIGTERM that has no handler, so without this a pod waits out its whole grace period, then SIGKILLs."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # main() called from a thread other than the main one: leave signals alone
        return None


def _open_closed_std_fds() -> None:
    """Put /dev/null on whichever of fds 0, 1 and 2 is closed. Otherwise the first file we open takes
    that number (a lock, the inotify fd), and a program we start writes its errors into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
        except OSError:
            return  # no /dev/null here: nothing better to do
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    If stdout fails, the command still does what it must (a leader writes its marker), then exits with
    141 when its reader went away (as if SIGPIPE had ended it, without a traceback) or 1 for any other
    write error, instead of reporting success for output nobody got.
    """
    exiting_after = argv is None  # the `exitdir` program itself, not a caller that goes on (tests)
    if argv is None:
        argv = sys.argv[1:]
    # First, before anything else is imported or done: from here a signal to `lead` or `follow` is held
    # until the program exists, then delivered to it (or dropped if it never starts), instead of ending the
    # wrapper with no marker. Python's own start-up, before this line, is the one window left
    # (docs/failure-modes.md).
    held = hold() if _subcommand(argv) in ("lead", "follow") else None
    try:
        status = _main_held(argv)
    finally:
        if held is not None:
            # The program's status is decided: a signal from now on is dropped, not left to end us.
            release(held, restore=not exiting_after)
    return status


def _main_held(argv: Sequence[str]) -> int:
    global _stdout, _stderr
    _stdout, _stderr = _Output("stdout"), _Output("stderr")
    _open_closed_std_fds()
    status = _main(argv)
    if _stdout.failure is None or status != EXIT_OK:
        return status
    if _stdout.broken_pipe:
        return EXIT_BROKEN_PIPE
    _error(f"{_stdout.failure}; the output is lost: give exitdir a stdout it can write to")
    return EXIT_ERROR


def _main(argv: Sequence[str]) -> int:
    previous_sink = _log.sink
    previous_term: _Handler = None
    _stderr.style = _prescanned_style(argv)
    try:
        args = _parser(argv).parse_args(argv)
        try:
            _stderr.style = log_style(
                getattr(args, "log_format", None) or args.log_format_before,
                getattr(args, "timestamps", None) or args.timestamps_before,
            )
        except ExitDirError as err:  # a bad EXITDIR_LOG_FORMAT or EXITDIR_TIMESTAMPS
            raise _UsageError(str(err)) from None
        if args.subcommand is None:
            raise _UsageError("a command is required (see 'exitdir --help')")
        _log.sink = lambda message: _say(args, message, event="warning")
        if args.run in (_cmd_wait, _cmd_demo):
            previous_term = _stop_on_sigterm()
        status: int = args.run(args)
        return status
    except _Terminated:
        return 128 + signal.SIGTERM
    except _UsageError as err:
        _emit("ERROR", "usage", f"usage: {_naming_variables(str(err))}", {})
        return EXIT_USAGE
    except ExitDirError as err:
        _error(str(err))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    finally:
        _log.sink = previous_sink
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
