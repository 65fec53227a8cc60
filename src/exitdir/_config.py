"""Where the exit directory is, and which names and codes are acceptable."""

from __future__ import annotations

import os

ENV_DIR = "EXIT_DIR"
DEFAULT_NAME = "exitFile"
# NAME_MAX on every filesystem we care about.
_NAME_MAX_BYTES = 255


def resolve_directory(directory: str | os.PathLike[str] | None) -> str | None:
    """The absolute exit directory, from ``directory`` or ``$EXIT_DIR``; None when neither is set.

    Relative paths are resolved once, now, so a later ``chdir`` cannot move the directory.
    """
    if directory is None:
        directory = os.environ.get(ENV_DIR, "")
    path = os.fspath(directory)
    if path == "":
        return None
    from ._errors import ExitDirError

    if "\0" in path:
        raise ExitDirError(f"exit directory {path!r} contains a NUL byte: give a real directory path")
    # abspath also drops a trailing slash, so "/x/" and "/x" are the same directory.
    return os.path.abspath(path)


def is_marker_name(name: str) -> bool:
    """Whether a directory entry with this name can be a marker (regular files only; checked elsewhere)."""
    return not name.startswith(".") and name != "lost+found"


def validate_name(name: str) -> str:
    """Return ``name`` if a leader may write a marker under it, else raise ExitDirError saying why."""
    from ._errors import ExitDirError

    if not isinstance(name, str) or name == "":
        raise ExitDirError(f"marker name {name!r} is empty: use a plain file name such as 'exitFile'")
    if "\0" in name:
        raise ExitDirError(f"marker name {name!r} contains a NUL byte: use a plain file name")
    if "/" in name or name in {".", ".."}:
        raise ExitDirError(
            f"marker name {name!r} is a path, not a file name: use a plain name such as 'exitFile' "
            "and put the directory in EXIT_DIR or --dir"
        )
    if not is_marker_name(name):
        raise ExitDirError(
            f"marker name {name!r} is reserved (names starting with '.' and 'lost+found' are never "
            "markers, so followers would ignore it): choose another name"
        )
    if len(os.fsencode(name)) > _NAME_MAX_BYTES:
        raise ExitDirError(f"marker name {name[:20]!r}... is longer than 255 bytes: choose a shorter name")
    return name


def validate_code(code: int) -> int:
    """Return ``code`` if it is a process exit status (0..255), else raise ExitDirError."""
    from ._errors import ExitDirError

    if isinstance(code, bool) or not isinstance(code, int):
        raise ExitDirError(f"exit code {code!r} is not an integer: use an integer from 0 to 255")
    if not 0 <= code <= 255:
        raise ExitDirError(f"exit code {code} is out of range: use an integer from 0 to 255")
    return code


def validate_timeout(timeout: float | None, what: str = "timeout") -> float | None:
    """Float seconds or None for forever; negative or NaN is a mistake, not 'no time'."""
    if timeout is None:
        return None
    from ._errors import ExitDirError

    value = float(timeout)
    if not value >= 0:  # also catches NaN
        raise ExitDirError(f"{what} {timeout!r} is invalid: use seconds >= 0, or None to wait forever")
    return value
