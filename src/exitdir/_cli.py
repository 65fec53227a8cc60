"""The ``exitdir`` command line. ``main(argv)`` returns the exit status, so tests can call it in-process."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from . import _log
from ._config import DEFAULT_NAME, resolve_directory, validate_name
from ._errors import ExitDirError
from ._supervise import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, signal_name

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import Any, NoReturn

    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

    from ._marker import Marker
    from ._supervise import ChildExit, Supervisor
    from ._token import ExitToken

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124  # as GNU timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: it ends up in container logs.
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"exitdir: {message}", file=sys.stderr, flush=True)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be zero or more seconds")
    return value


def _signal(text: str) -> int:
    from ._supervise import parse_signal

    try:
        return parse_signal(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _code(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..255")
    return value


def _describe(marker: Marker | None) -> str:
    if marker is None:
        return "no marker"
    code = "unknown code" if marker.code is None else f"code {marker.code}"
    reason = f": {marker.reason}" if marker.reason else ""
    problem = f" ({marker.problem})" if marker.problem else ""
    return f"{marker.name}: {code}{reason}{problem}"


def _cmd_exit(args: argparse.Namespace) -> int:
    from ._leader import write_marker

    path = write_marker(args.code, reason=args.reason, name=args.name, directory=args.dir)
    if path is None:
        _say(args, "no exit directory (EXIT_DIR is unset and no --dir): no marker written")
    elif args.verbose:
        _say(args, f"wrote {path} (code {args.code})")
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace) -> int:
    from ._token import aware

    if resolve_directory(args.dir) is None:
        raise _UsageError("nothing to wait for: set EXIT_DIR or pass --dir")
    with aware(args.dir, names=args.leader, require=args.require) as token:
        if not token.wait(args.timeout):
            _say(args, f"timed out after {args.timeout:g} s waiting for a marker in {token.directory}")
            return EXIT_TIMEOUT
        marker = token.marker
    assert marker is not None
    if args.json:
        import json

        print(json.dumps(marker.as_dict()), flush=True)
    elif args.verbose:
        print(_describe(marker), flush=True)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from ._liveness import held_offsets, leader_flags, running_leaders
    from ._marker import list_markers
    from ._token import check_watchable, leader_names

    directory = resolve_directory(args.dir)
    if directory is None:
        raise _UsageError("no exit directory: set EXIT_DIR or pass --dir")
    check_watchable(directory)
    names = leader_names(args.leader, "all")
    try:
        markers = list_markers(directory)
    except FileNotFoundError:
        markers = []
    held = held_offsets(directory) if os.path.isdir(directory) else set()
    by_name = {marker.name: marker for marker in markers}
    leaders = {}  # name -> "done" | "running" | "not running", for the leaders asked about
    for name in names or ():
        running = held is not None and leader_flags(held, name)[0]
        leaders[name] = "done" if name in by_name else "running" if running else "not running"
    running_count = None if held is None else running_leaders(held)
    if args.json:
        import json

        doc = {
            "directory": directory,
            "markers": [m.as_dict() for m in markers],
            "leaders": leaders,
            "running": running_count,
        }
        print(json.dumps(doc), flush=True)
        return EXIT_OK
    for name, state in leaders.items():
        print(f"done: {_describe(by_name[name])}" if state == "done" else f"{name}: {state}", flush=True)
    if names is None:
        if not markers:
            print(f"{directory}: no markers (followers keep running)", flush=True)
        for marker in markers:
            print(_describe(marker), flush=True)
        if running_count:
            print(f"{running_count} leader(s) running", flush=True)
    return EXIT_OK


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise _UsageError(f"no command given: exitdir {args.subcommand} [OPTIONS] -- CMD [ARGS...]")
    return command


def _supervisor(args: argparse.Namespace, command: list[str]) -> Supervisor:
    from ._supervise import Supervisor, set_subreaper

    reap_all = os.getpid() == 1
    if args.subreaper and not reap_all:
        reap_all = set_subreaper()
        if not reap_all:
            _say(args, "--subreaper is not supported on this platform; orphans are not reaped")
    return Supervisor(command, warn=lambda message: _say(args, message), reap_all=reap_all)


def _cmd_lead(args: argparse.Namespace) -> int:
    from ._leader import begin_leading, write_marker

    command = _command(args)
    name = validate_name(args.name)
    directory = resolve_directory(args.dir)
    if directory is None:
        _say(args, "no exit directory (EXIT_DIR is unset and no --dir): followers will not be told")
    # Held until the marker is written; if this wrapper is killed outright, followers see it go.
    lock = begin_leading(directory, name, restartable=args.signal_on == "success")
    try:
        with _supervisor(args, command) as supervisor:
            ended = supervisor.spawn()
            if ended is None:
                supervisor.wait()
                ended = supervisor.finish()
            elif ended.code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
                print(f"exitdir: error: {ended.reason}", file=sys.stderr, flush=True)
        if directory is not None:
            if ended.code != 0 and args.signal_on == "success":
                _say(args, f"{command[0]} failed ({ended.reason}); --signal-on success: no marker written")
                return ended.code
            try:
                write_marker(ended.code, reason=ended.reason, name=name, directory=directory)
            except ExitDirError as err:
                print(f"exitdir: error: {err}", file=sys.stderr, flush=True)
                return ended.code or EXIT_ERROR  # never report success when the followers were not told
        return ended.code
    finally:
        if lock is not None:
            lock.release()


FOLLOW_POLICIES = ("zero", "leader", "child")


def _cmd_follow(args: argparse.Namespace) -> int:
    from ._token import aware

    command = _command(args)
    directory = resolve_directory(args.dir)
    if directory is None:
        _say(args, "no exit directory (EXIT_DIR is unset and no --dir): the helper runs until it exits")
    with aware(directory, names=args.leader, require=args.require) as token:
        if token.is_set():
            _say(args, f"leader already signalled ({_describe(token.marker)}): not starting {command[0]}")
            return _follow_status(args.exit_code, token, None)
        with _supervisor(args, command) as supervisor:
            ended = supervisor.spawn()
            if ended is not None:
                print(f"exitdir: error: {ended.reason}", file=sys.stderr, flush=True)
                return ended.code
            deadline = None if args.timeout is None else time.monotonic() + args.timeout
            if supervisor.wait(deadline=deadline, token=token):
                return supervisor.finish().code  # the helper ended on its own: its status
            if token.is_set():
                why = f"leader signalled ({_describe(token.marker)})"
            else:
                why = f"no marker within {args.timeout:g} s"
            _say(args, f"{why}; stopping {command[0]} (pid {supervisor.pid}) with {signal_name(args.signal)}")
            supervisor.stop(args.signal, args.grace, what=command[0])
            stopped = supervisor.finish()
    if not token.is_set():
        return EXIT_TIMEOUT
    return _follow_status(args.exit_code, token, stopped)


def _follow_status(policy: str, token: ExitToken, stopped: ChildExit | None) -> int:
    if policy == "leader":
        marker = token.marker
        # A marker whose code cannot be read still means the leader ended, but not that it succeeded.
        return EXIT_ERROR if marker is None or marker.code is None else marker.code
    if policy == "child":
        return stopped.code if stopped is not None else EXIT_OK
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    if args.role == "busy":
        return _demo.busy()
    return _demo.work(args.seconds)


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dir", metavar="DIR", help="exit directory (default: $EXIT_DIR)")
    sub.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _supervised(sub: argparse.ArgumentParser) -> None:
    _common(sub)
    sub.add_argument(
        "--subreaper",
        action="store_true",
        help="reap orphaned descendants, as PID 1 does (automatic when running as PID 1)",
    )
    sub.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


def _configure_exit(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--code", type=_code, default=0, help="exit code to report (0..255, default 0)")
    sub.add_argument("--reason", help="a short text saying why")
    sub.add_argument("--name", default=DEFAULT_NAME, help=f"marker name (default {DEFAULT_NAME})")
    sub.add_argument("-v", "--verbose", action="store_true", help="say which file was written")
    _common(sub)
    sub.set_defaults(run=_cmd_exit)


def _leaders(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--leader",
        action="append",
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
    _leaders(sub)
    sub.add_argument("-v", "--verbose", action="store_true", help="print the marker's code and reason")
    sub.add_argument("--json", action="store_true", help="print the marker as JSON")
    _common(sub)
    sub.set_defaults(run=_cmd_wait)


def _configure_status(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--leader", action="append", metavar="NAME", help="show this leader (repeatable)")
    _common(sub)
    sub.set_defaults(run=_cmd_status)


def _configure_lead(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--name", default=DEFAULT_NAME, help=f"marker name (default {DEFAULT_NAME})")
    sub.add_argument(
        "--signal-on",
        choices=("always", "success"),
        default="always",
        help="write the marker always (default), or only when CMD succeeds (a leader that is restarted "
        "on failure, restartPolicy: OnFailure)",
    )
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
    _leaders(sub)
    _supervised(sub)
    sub.set_defaults(run=_cmd_follow)


def _configure_demo(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("role", choices=("busy", "work"))
    sub.add_argument("--seconds", type=_seconds, default=5.0, help="how long work works (default 5)")
    sub.set_defaults(run=_cmd_demo)


_COMMANDS = {
    "exit": ("write a marker: tell the followers to exit", _configure_exit),
    "wait": ("block until a marker appears", _configure_wait),
    "status": ("list the markers in the exit directory", _configure_status),
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


def _parser(argv: Sequence[str]) -> _Parser:
    parser = _Parser(
        prog="exitdir", description="Tell processes to exit through a shared directory ($EXIT_DIR)."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"exitdir {__version__}")
    # prog given: otherwise argparse builds a help formatter, importing shutil, on every start.
    commands = parser.add_subparsers(
        dest="subcommand", metavar="COMMAND", parser_class=_Parser, prog="exitdir"
    )
    # Only the command being run gets its arguments: building all of them costs a wrapper ~3 ms per start.
    wanted = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (text, configure) in _COMMANDS.items():
        sub = commands.add_parser(name, help=text)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    previous_sink = _log.sink
    previous_term: _Handler = None
    try:
        if argv is None:
            argv = sys.argv[1:]
        args = _parser(argv).parse_args(argv)
        if args.subcommand is None:
            raise _UsageError("a command is required (see 'exitdir --help')")
        _log.sink = lambda message: _say(args, message)
        if args.run in (_cmd_wait, _cmd_demo):
            previous_term = _stop_on_sigterm()
        status: int = args.run(args)
        return status
    except _Terminated:
        return 128 + signal.SIGTERM
    except _UsageError as err:
        print(f"exitdir: usage: {err}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except ExitDirError as err:
        print(f"exitdir: error: {err}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    finally:
        _log.sink = previous_sink
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
