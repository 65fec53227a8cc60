"""The ``exitdir`` command line. ``main(argv)`` returns the exit status, so tests can call it in-process."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, NoReturn

from ._config import DEFAULT_NAME, resolve_directory
from ._errors import ExitDirError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._marker import Marker

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


def _code(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..255")
    return value


def _describe(marker: Marker) -> str:
    code = "unknown code" if marker.code is None else f"code {marker.code}"
    reason = f": {marker.reason}" if marker.reason else ""
    problem = f" ({marker.problem})" if marker.problem else ""
    return f"{marker.name}: {code}{reason}{problem}"


def _cmd_exit(args: argparse.Namespace) -> int:
    from ._leader import exit as signal_exit

    path = signal_exit(args.code, reason=args.reason, name=args.name, directory=args.dir)
    if path is None:
        _say(args, "no exit directory (EXIT_DIR is unset and no --dir): no marker written")
    elif args.verbose:
        _say(args, f"wrote {path} (code {args.code})")
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace) -> int:
    from ._token import aware

    if resolve_directory(args.dir) is None:
        raise _UsageError("nothing to wait for: set EXIT_DIR or pass --dir")
    with aware(args.dir) as token:
        if not token.wait(args.timeout):
            _say(args, f"timed out after {args.timeout:g} s waiting for a marker in {token.directory}")
            return EXIT_TIMEOUT
        marker = token.marker
    assert marker is not None
    if args.json:
        print(json.dumps(marker.as_dict()), flush=True)
    elif args.verbose:
        print(_describe(marker), flush=True)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from ._marker import list_markers
    from ._token import check_watchable

    directory = resolve_directory(args.dir)
    if directory is None:
        raise _UsageError("no exit directory: set EXIT_DIR or pass --dir")
    check_watchable(directory)
    try:
        markers = list_markers(directory)
    except FileNotFoundError:
        markers = []
    if args.json:
        print(json.dumps({"directory": directory, "markers": [m.as_dict() for m in markers]}), flush=True)
    elif not markers:
        print(f"{directory}: no markers (followers keep running)", flush=True)
    else:
        for marker in markers:
            print(_describe(marker), flush=True)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    if args.role == "busy":
        return _demo.busy()
    return _demo.work(args.seconds)


def _parser() -> _Parser:
    parser = _Parser(
        prog="exitdir",
        description="Tell processes to exit through a shared directory ($EXIT_DIR).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"exitdir {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--dir", metavar="DIR", help="exit directory (default: $EXIT_DIR)")
        sub.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    sub = commands.add_parser("exit", help="write a marker: tell the followers to exit")
    sub.add_argument("--code", type=_code, default=0, help="exit code to report (0..255, default 0)")
    sub.add_argument("--reason", help="a short text saying why")
    sub.add_argument("--name", default=DEFAULT_NAME, help=f"marker name (default {DEFAULT_NAME})")
    sub.add_argument("-v", "--verbose", action="store_true", help="say which file was written")
    common(sub)
    sub.set_defaults(run=_cmd_exit)

    sub = commands.add_parser("wait", help="block until a marker appears")
    sub.add_argument("--timeout", type=_seconds, help="give up after SECONDS (exit status 124)")
    sub.add_argument("-v", "--verbose", action="store_true", help="print the marker's code and reason")
    sub.add_argument("--json", action="store_true", help="print the marker as JSON")
    common(sub)
    sub.set_defaults(run=_cmd_wait)

    sub = commands.add_parser("status", help="list the markers in the exit directory")
    sub.add_argument("--json", action="store_true", help="print JSON")
    common(sub)
    sub.set_defaults(run=_cmd_status)

    sub = commands.add_parser("demo", help="the seed's demo programs: busy (follower), work (leader)")
    sub.add_argument("role", choices=("busy", "work"))
    sub.add_argument("--seconds", type=_seconds, default=5.0, help="how long work works (default 5)")
    sub.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise _UsageError("a command is required (see 'exitdir --help')")
        status: int = args.run(args)
        return status
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
