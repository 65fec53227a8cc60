"""Every rule about what a user may pass, and the one message for each; and where the exit directory is.

The library's entry points and the command line both call these, so a value is accepted or refused for
the same reason, with the same words, wherever it comes from. Each error names the value and the fix.
"""

from __future__ import annotations

import os

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

ENV_DIR = "EXIT_DIR"
DEFAULT_NAME = "exitFile"
REQUIRE_ALL = "all"
REQUIRE_ANY = "any"
SIGNAL_ON = ("always", "success")
# NAME_MAX on every filesystem we care about.
_NAME_MAX_BYTES = 255


def _error(message: str) -> Exception:
    from ._errors import ExitDirError

    return ExitDirError(message)


def resolve_directory(directory: str | os.PathLike[str] | None) -> str | None:
    """The absolute exit directory, from ``directory`` or ``$EXIT_DIR``; None when neither is set.

    Relative paths are resolved once, now, so a later ``chdir`` cannot move the directory.
    """
    if directory is None:
        directory = os.environ.get(ENV_DIR, "")
    path = os.fspath(directory)
    if path == "":
        return None
    if "\0" in path:
        raise _error(f"exit directory {path!r} contains a NUL byte: give a real directory path")
    # abspath also drops a trailing slash, so "/x/" and "/x" are the same directory.
    return os.path.abspath(path)


def check_watchable(directory: str) -> None:
    """Raise ExitDirError if a follower can never watch ``directory``; a missing one is fine (waited for)."""
    if os.path.islink(directory) and not os.path.exists(directory):
        raise _error(
            f"exit directory {directory} is a symlink to {os.readlink(directory)}, which does not exist: "
            "point EXIT_DIR at the real directory"
        )
    if not os.path.exists(directory):
        return
    if not os.path.isdir(directory):
        raise _error(
            f"exit directory {directory} is not a directory: point EXIT_DIR (or --dir) at the directory "
            "the leader writes its marker into"
        )
    if not os.access(directory, os.R_OK | os.X_OK):
        raise _error(
            f"cannot read exit directory {directory}: permission denied; a follower needs read and "
            f"search access (uid {os.getuid()}); make it readable, for example with fsGroup"
        )


def is_marker_name(name: str) -> bool:
    """Whether a directory entry with this name can be a marker (regular files only; checked elsewhere)."""
    return not name.startswith(".") and name != "lost+found"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_name(name: str) -> str:
    """Return ``name`` if a leader may write a marker under it, else raise ExitDirError saying why."""
    if not isinstance(name, str) or name == "":
        raise _error(f"marker name {name!r} is empty: use a plain file name such as 'exitFile'")
    if "\0" in name:
        raise _error(f"marker name {name!r} contains a NUL byte: use a plain file name")
    if not _is_unicode(name):
        # Python's stand-in for undecodable bytes (\udc80-\udcff): a marker's name must read the same to
        # every follower, Go's and JSON's included, so it must be real text.
        raise _error(
            f"marker name {name!r} is not valid UTF-8 text (it holds undecodable bytes or lone surrogates): "
            "use a plain file name such as 'exitFile'"
        )
    if "/" in name or name in {".", ".."}:
        raise _error(
            f"marker name {name!r} is a path, not a file name: use a plain name such as 'exitFile' "
            "and put the directory in EXIT_DIR or --dir"
        )
    if not is_marker_name(name):
        raise _error(
            f"marker name {name!r} is reserved (names starting with '.' and 'lost+found' are never "
            "markers, so followers would ignore it): choose another name"
        )
    if len(os.fsencode(name)) > _NAME_MAX_BYTES:
        raise _error(f"marker name {name[:20]!r}... is longer than 255 bytes: choose a shorter name")
    return name


def leader_names(names: Iterable[str] | None) -> tuple[str, ...] | None:
    """Validated leader ``names`` for a follower (None: any marker ends the wait, as in Go)."""
    if names is None:
        return None
    if isinstance(names, str):
        raise _error(f"names={names!r} is a string: pass a list of leader names, e.g. [{names!r}]")
    leaders = tuple(dict.fromkeys(validate_name(name) for name in names))
    if not leaders:
        raise _error("names is empty: pass at least one leader name, or None for any marker")
    return leaders


def validate_require(require: str) -> str:
    """``require`` if it is "all" or "any": how many named leaders must have signalled."""
    if require not in (REQUIRE_ALL, REQUIRE_ANY):
        raise _error(f"require={require!r} is not one of 'all', 'any': pass require='all' or 'any'")
    return require


def validate_code(code: object) -> int:
    """Return ``code`` if it is a process exit status (0..255), else raise ExitDirError."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise _error(f"exit code {code!r} is not an integer: use an integer from 0 to 255")
    if not 0 <= code <= 255:
        raise _error(f"exit code {code} is outside 0..255: use an integer from 0 to 255")
    return code


def _named(what: str, value: object) -> str:
    """``timeout -1`` for an argument; ``VAR='soon'`` for a variable (``what`` ends in =)."""
    return f"{what}{value!r}" if what.endswith("=") else f"{what} {value!r}"


def validate_seconds(value: object, what: str) -> float:
    """``value`` (a number, or text as typed) as float seconds >= 0. ``inf`` is accepted: forever."""
    try:
        seconds = float(value)  # type: ignore[arg-type]  # anything float() takes; the rest is refused
    except (TypeError, ValueError):
        raise _error(f"{_named(what, value)} is not a number of seconds: give zero or more seconds") from None
    if not seconds >= 0:  # also catches NaN
        raise _error(f"{_named(what, value)} is invalid: give zero or more seconds")
    return seconds


def validate_timeout(timeout: object, what: str = "timeout") -> float | None:
    """Float seconds, or None for forever; negative or NaN is a mistake, not 'no time'."""
    return None if timeout is None else validate_seconds(timeout, what)


def validate_interval(value: object, what: str) -> float:
    """A poll interval: seconds > 0 and finite (a scan must come eventually)."""
    seconds = validate_seconds(value, what)
    if not 0 < seconds < float("inf"):
        raise _error(f"{_named(what, value)} is invalid: give seconds > 0, for example 0.2")
    return seconds


def validate_signal(value: object) -> int:
    """A signal given as ``TERM``, ``SIGTERM``, ``term``, ``15`` or a number: its number."""
    import signal

    if isinstance(value, int) and not isinstance(value, bool):
        number: int | None = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        number = None
        name = str(value).strip().upper()
        try:
            number = int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
        except KeyError:
            pass
    if number is None or number == 0 or number not in signal.valid_signals():
        raise _error(f"{value!r} is not a signal: use a name such as TERM, INT, QUIT or a number")
    return number


def validate_signal_on(signal_on: str) -> str:
    """When a leader writes its marker: "always", or only on "success" (it is restarted on failure)."""
    if signal_on not in SIGNAL_ON:
        raise _error(f"signal_on={signal_on!r} is not one of {', '.join(SIGNAL_ON)}: pass one of them")
    return signal_on
