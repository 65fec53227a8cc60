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

    from ._errors import ExitDirError

ENV_DIR = "EXIT_DIR"
ENV_REQUIRE_DIR = "EXITDIR_REQUIRE_DIR"
ENV_LIVENESS_DIR = "EXITDIR_LIVENESS_DIR"
ENV_LOG_FORMAT = "EXITDIR_LOG_FORMAT"
ENV_TIMESTAMPS = "EXITDIR_TIMESTAMPS"
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off", ""})
DEFAULT_NAME = "exitFile"
REQUIRE_ALL = "all"
REQUIRE_ANY = "any"
SIGNAL_ON = ("always", "success")
LOG_FORMATS = ("text", "json")
# NAME_MAX on every filesystem we care about.
_NAME_MAX_BYTES = 255


def _error(message: str) -> ExitDirError:
    from ._errors import ExitDirError

    return ExitDirError(message)


def resolve_directory(directory: str | os.PathLike[str] | None) -> str | None:
    """The absolute exit directory, from ``directory`` or ``$EXIT_DIR``; None when neither is set.

    Relative paths are resolved once, now, so a later ``chdir`` cannot move the directory.
    """
    return _resolved(directory, "exit directory", ENV_DIR)


def _resolved(given: object, what: str, env: str) -> str | None:
    """``given`` (else ``$env``) as an absolute path; None when neither is set."""
    path = validate_directory(given, what, env)
    if path is None:
        path = os.environ.get(env, "")
    if path == "":
        return None
    if "\0" in path:
        raise _error(f"{what} {path!r} contains a NUL byte: give a real directory path")
    # abspath also drops a trailing slash, so "/x/" and "/x" are the same directory.
    return os.path.abspath(path)


def validate_directory(directory: object, what: str = "exit directory", env: str = ENV_DIR) -> str | None:
    """``directory`` as a str path (bytes are decoded as the os module does), or None; not resolved.
    ``what`` and ``env`` name it, and the variable that gives it otherwise, in the error."""
    if directory is None:
        return None
    try:
        path = os.fspath(directory)  # type: ignore[call-overload]  # anything fspath takes; the rest refused
    except TypeError:
        raise _error(
            f"{what} {directory!r} is not a path: pass a str or os.PathLike, or None for ${env}"
        ) from None
    return os.fsdecode(path)


def resolve_liveness_dir(given: str | os.PathLike[str] | None, exit_dir: str | None) -> str | None:
    """The absolute liveness directory (cross-machine crash detection), from ``given`` or
    ``$EXITDIR_LIVENESS_DIR``; None when neither is set, or when there is no exit directory to go with it.

    It must be outside the exit directory: Go exitdir followers fire on any entry made there.

    >>> resolve_liveness_dir("/shared/live", "/shared/exit")
    '/shared/live'
    """
    if exit_dir is None:
        validate_directory(given, "liveness directory", ENV_LIVENESS_DIR)
        return None
    path = _resolved(given, "liveness directory", ENV_LIVENESS_DIR)
    if path is None:
        return None
    # Compared as given and with symlinks resolved (as far as the paths exist): a link into the exit
    # directory is inside it too.
    pairs = ((path, exit_dir), (os.path.realpath(path), os.path.realpath(exit_dir)))
    if any(p == e or p.startswith(e.rstrip(os.sep) + os.sep) for p, e in pairs):
        raise _error(
            f"liveness directory {path} is inside the exit directory {exit_dir}: Go exitdir followers "
            f"would stop at its first file; give a directory beside it, such as "
            f"{exit_dir.rstrip(os.sep)}-liveness"
        )
    return path


def validate_url(url: str) -> str:
    """``url`` if it is an http:// or https:// URL with a host: where a stop action may POST.

    >>> validate_url("http://127.0.0.1:15020/quitquitquit")
    'http://127.0.0.1:15020/quitquitquit'
    """
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(
            f"{url!r} is not an http:// or https:// URL with a host: give one such as "
            "http://127.0.0.1:15020/quitquitquit"
        )
    return url


def validate_choice(value: str, choices: Iterable[str], what: str) -> str:
    """``value`` if it is one of ``choices``.

    >>> validate_choice("istio", ("istio", "linkerd"), "sidecar")
    'istio'
    """
    known = tuple(choices)
    if value not in known:
        raise _error(f"unknown {what} {value!r}: use one of {', '.join(known)}")
    return value


def validate_host_port(target: str) -> str:
    """``target`` if it is ``HOST:PORT`` (``[::1]:80`` for IPv6) with a port from 1 to 65535.

    >>> validate_host_port("127.0.0.1:5432")
    '127.0.0.1:5432'
    """
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _error(f"{target!r} is not HOST:PORT: give one such as 127.0.0.1:5432 ([::1]:5432 for IPv6)")
    return target


def validate_port_or_host_port(target: str) -> str:
    """``HOST:PORT`` for ``target``, which is that or a bare ``PORT`` on this pod's loopback.

    >>> validate_port_or_host_port("15021")
    '127.0.0.1:15021'
    """
    return validate_host_port(f"127.0.0.1:{target}" if target.isdigit() else target)


def validate_probe_command(command: str) -> list[str]:
    """The words of ``command``, a command line split as a shell would split it (quotes, no expansion).

    >>> validate_probe_command("pg_isready -h 'db host'")
    ['pg_isready', '-h', 'db host']
    """
    import shlex

    try:
        words = shlex.split(command) if isinstance(command, str) else None
    except ValueError as err:  # an unclosed quote
        raise _error(f"command {command!r} cannot be split into words ({err}): close its quotes") from None
    if not words:
        raise _error(f"command {command!r} names no program: give one such as 'pg_isready -h 127.0.0.1'")
    return words


def validate_attempts(attempts: object) -> int:
    """``attempts`` if it is a whole number of at least 1: how many times a stop action is tried.

    >>> validate_attempts(3)
    3
    """
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise _error(f"attempts={attempts!r} is not a whole number of at least 1: use 1 to try once")
    return attempts


def validate_file_dependency(path: object) -> str:
    """``path`` if it can name a file that a dependency waits for.

    >>> validate_file_dependency("/run/ready")
    '/run/ready'
    """
    if not isinstance(path, str):
        raise _error(f"file dependency {path!r} is not a path: give one such as '/run/ready'")
    return path


def validate_switch(text: str, option: str) -> bool:
    """``text`` as yes (1, true, yes, on) or no (0, false, no, off, or nothing), in any case: an on/off
    ``option`` given by a variable instead of its flag.

    >>> validate_switch("Yes", "--quiet"), validate_switch(" off ", "--quiet")
    (True, False)
    """
    value = text.strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise _error(f"{text!r} is not yes or no: give 1, true, yes or on for {option}, or 0, false, no or off")


def split_list(text: str) -> list[str]:
    r"""The items of a repeatable option given by one variable: comma-separated, ``\,`` for a comma
    inside an item. Whitespace around an item is dropped, and so is an empty item (a trailing comma).

    >>> split_list(r"db, api,, sh -c 'a\, b'")
    ['db', 'api', "sh -c 'a, b'"]
    """
    # A variable cannot hold a NUL byte, so NUL stands for the escaped commas while the text is split.
    items = (item.strip() for item in text.replace("\\,", "\0").split(","))
    return [item.replace("\0", ",") for item in items if item]


def validate_require_dir(require_dir: object) -> bool | None:
    """``require_dir`` if it is True, False or None (None: ``$EXITDIR_REQUIRE_DIR`` decides)."""
    if require_dir is None or isinstance(require_dir, bool):
        return require_dir
    raise _error(
        f"require_dir={require_dir!r} is not True, False or None: pass require_dir=True to make a missing "
        "exit directory an error"
    )


def require_directory(resolved: str | None, require_dir: bool | None) -> str | None:
    """``resolved`` (the exit directory, None for none), unless there is none and one is required.

    Strict mode: ``require_dir``, or when it is None ``$EXITDIR_REQUIRE_DIR`` (1, true, yes, on; 0, false,
    no, off or empty for no; any case). The variable is read only when there is no directory: a leader
    that has one always writes its marker, whatever the variable holds.

    >>> require_directory("/run/exit", True)
    '/run/exit'
    >>> require_directory(None, False) is None
    True
    """
    if resolved is not None or require_dir is False:
        return resolved
    if require_dir is None:
        text = os.environ.get(ENV_REQUIRE_DIR, "")
        value = text.strip().lower()
        if value in _NO:
            return None
        if value not in _YES:
            raise _error(
                f"{ENV_REQUIRE_DIR}={text!r} is not a yes/no value: set it to 1, true, yes or on to require "
                "an exit directory, or to 0, false, no, off or nothing"
            )
        required = f", and {ENV_REQUIRE_DIR}={text.strip()} requires one"
    else:
        required = ", and one is required"
    raise _error(
        f"no exit directory{required}: {ENV_DIR} is unset or empty and no directory was given; set "
        f"{ENV_DIR} (or pass --dir, directory=)"
    )


def validate_log_format(log_format: str) -> str:
    """``log_format`` if it names a format of the wrapper's messages: ``text`` or ``json``.

    >>> validate_log_format("json")
    'json'
    """
    return validate_choice(log_format, LOG_FORMATS, "log format")


def log_style(log_format: str | None, timestamps: bool | None) -> tuple[str, bool]:
    """How the command line writes its messages: (``text`` or ``json``, whether a text line starts with a
    timestamp). An option given wins; else ``$EXITDIR_LOG_FORMAT`` (text, json; any case; empty is text)
    and ``$EXITDIR_TIMESTAMPS`` (yes/no words as ``$EXITDIR_REQUIRE_DIR``), a bad value refused naming
    the variable.

    >>> log_style("json", False)
    ('json', False)
    """
    if log_format is None:
        text = os.environ.get(ENV_LOG_FORMAT, "")
        log_format = text.strip().lower() or LOG_FORMATS[0]
        if log_format not in LOG_FORMATS:
            raise _error(f"{ENV_LOG_FORMAT}={text!r} is invalid: set it to {' or '.join(LOG_FORMATS)}")
    if timestamps is None:
        text = os.environ.get(ENV_TIMESTAMPS, "")
        value = text.strip().lower()
        if value not in _YES | _NO:
            raise _error(
                f"{ENV_TIMESTAMPS}={text!r} is not a yes/no value: set it to 1, true, yes or on for "
                "timestamped lines, or to 0, false, no, off or nothing"
            )
        timestamps = value in _YES
    return log_format, timestamps


def path_problem(directory: str) -> ExitDirError | None:
    """Why ``directory`` cannot be an exit directory as the path stands, or None: the one message for
    leaders and followers alike. A path that merely does not exist yet is no problem (a leader creates it,
    a follower waits for it); a dangling symlink, a symlink loop, or a file where a directory must be is.

    >>> "is not a directory" in str(path_problem("/etc/hostname")), path_problem("/no/such/dir")
    (True, None)
    """
    import errno
    import stat

    try:
        mode = os.stat(directory).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return _error(
                f"exit directory {directory} goes round a symlink loop: point EXIT_DIR (or --dir) at a real "
                "directory"
            )
        if err.errno == errno.ENOTDIR:
            return _error(
                f"exit directory {directory} cannot exist: a part of the path above it is a file, not a "
                "directory; point EXIT_DIR (or --dir) at a directory"
            )
        if err.errno == errno.ENOENT and os.path.islink(directory):
            try:
                target = os.readlink(directory)
            except OSError:
                target = "a path"
            return _error(
                f"exit directory {directory} is a symlink to {target}, which does not exist: create it, or "
                "point EXIT_DIR (or --dir) at the real directory"
            )
        return None
    if not stat.S_ISDIR(mode):
        return _error(
            f"exit directory {directory} is not a directory: point EXIT_DIR (or --dir) at the directory "
            "the leader writes its marker into"
        )
    return None


def check_watchable(directory: str) -> None:
    """Raise ExitDirError if a follower can never watch ``directory``; a missing one is fine (waited for)."""
    try:
        os.stat(directory)
    except PermissionError:
        # Not "missing": it may well exist, and waiting for it to appear would never end.
        raise _error(
            f"cannot reach exit directory {directory}: permission denied; a follower needs search access "
            f"to it and the directories above it; {denied_hint(directory, 'read')}"
        ) from None
    except OSError:
        pass  # not there yet (waited for), unless path_problem says it never can be
    problem = path_problem(directory)
    if problem is not None:
        raise problem
    if not os.path.isdir(directory):
        return  # not there yet: waited for; a look that fails otherwise is the watch's, which retries
    if not os.access(directory, os.R_OK | os.X_OK):
        raise _error(
            f"cannot read exit directory {directory}: permission denied; a follower needs read and "
            f"search access; {denied_hint(directory, 'read')}"
        )


# Shared filesystems whose server, not this kernel, checks access, and may map root to an unprivileged
# identity (root squash): there, uid 0 on this machine grants nothing. (ocfs2 and gfs2 share a block
# device, not a server: their root is root.)
_SERVER_CHECKED = frozenset({"nfs", "smb", "smb2", "cifs", "9p", "ceph", "lustre", "gpfs", "afs", "kafs"})
_SMB = frozenset({"smb", "smb2", "cifs"})


def denied_hint(directory: str, access: str) -> str:
    """How to fix "permission denied" on ``directory`` for ``access`` ("read" for a follower, "write" for a
    leader), as it fits this process's uid and the filesystem the directory is on.

    >>> "writable by uid" in denied_hint("/tmp", "write")
    True
    """
    from ._linux import shared_filesystem

    filesystem = shared_filesystem(directory)
    uid = os.geteuid()
    able = "writable" if access == "write" else "readable"
    if filesystem == "fuse" and not _can_stat(directory):
        # The kernel refuses a FUSE mount to everyone but the user who mounted it, unless allow_other.
        return (
            f"{directory} is a FUSE mount that only the user who mounted it may use, root included: mount "
            "it with -o allow_other (user_allow_other in /etc/fuse.conf), or run this as the user who "
            "mounted it"
        )
    if filesystem == "nfs" and uid == 0:
        return (
            "the NFS server maps root to an unprivileged identity (root_squash, the default), so uid 0 "
            f"grants nothing there: make the directory {able} by that identity on the server (for example "
            f"group- or world-{able}), or export it with no_root_squash, or with all_squash and an anonuid "
            f"that may {access}; Kubernetes' fsGroup does not apply to NFS volumes"
        )
    if filesystem == "nfs":
        return (
            f"make the directory {able} by uid {uid} on the NFS server; Kubernetes' fsGroup does not apply "
            "to NFS volumes"
        )
    if filesystem in _SMB:
        return (
            f"the SMB server checks the account the share was mounted with, not uid {uid}: give that "
            f"account {access} access to the directory, and mount the share so that uid {uid} may {access} "
            "it (its uid=, gid=, dir_mode= options)"
        )
    if filesystem in _SERVER_CHECKED and uid == 0:
        return (
            f"the {filesystem} server may map root to an unprivileged identity (root squash), so uid 0 "
            f"grants nothing there: make the directory {able} by that identity on the server"
        )
    if filesystem in _SERVER_CHECKED:
        return f"make the directory {able} by uid {uid} on the {filesystem} server"
    if filesystem == "fuse":
        return (
            f"the FUSE filesystem refused uid {uid}: make the directory {able} as that filesystem sees it "
            "(for bindfs, the source directory; for sshfs, by the remote user)"
        )
    if uid == 0:
        return (
            "uid 0 was refused: without CAP_DAC_OVERRIDE (capabilities dropped, or a user namespace that "
            "does not map the directory's owner) root is bound by the permission bits like any user, and an "
            "immutable directory or a security module (SELinux, AppArmor) refuses root too; make the "
            f"directory {able} by uid 0 (in Kubernetes, set fsGroup or use an emptyDir)"
        )
    return f"make the directory {able} by uid {uid} (in Kubernetes, set fsGroup or use an emptyDir)"


def _can_stat(path: str) -> bool:
    try:
        os.stat(path)
    except PermissionError:
        return False
    except OSError:
        pass
    return True


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
    if not isinstance(name, str):
        raise _error(f"marker name {name!r} is not a string: use a plain file name such as 'exitFile'")
    if name == "":
        raise _error("marker name '' is empty: use a plain file name such as 'exitFile'")
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
    try:
        given = iter(names)
    except TypeError:
        raise _error(
            f"names={names!r} is not a list of leader names: pass one, e.g. ['db'], or None for any marker"
        ) from None
    leaders = tuple(dict.fromkeys(validate_name(name) for name in given))
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


def validate_seconds(value: object, what: str, expected: str = "zero or more seconds") -> float:
    """``value`` (a number, or text as typed) as float seconds >= 0. ``inf`` is accepted: forever.
    ``expected`` is what the message asks for instead."""
    try:
        seconds = float(value)  # type: ignore[arg-type]  # anything float() takes; the rest is refused
    except (TypeError, ValueError):
        raise _error(f"{_named(what, value)} is not a number of seconds: give {expected}") from None
    if not seconds >= 0:  # also catches NaN
        raise _error(f"{_named(what, value)} is invalid: give {expected}")
    return seconds


def _library_seconds(value: object, what: str, fix: str) -> None:
    """Refuse what is not a number where the library takes seconds: ``timeout="5"`` or ``True`` is a slip
    that float() would accept (the command line's text is checked by validate_seconds alone)."""
    if isinstance(value, (str, bytes, bool)) or not hasattr(value, "__float__"):
        raise _error(f"{_named(what, value)} is not a number of seconds: {fix}")


def validate_timeout(timeout: object, what: str = "timeout") -> float | None:
    """Float seconds, or None for forever; negative or NaN is a mistake, not 'no time'. A number only."""
    if timeout is None:
        return None
    _library_seconds(timeout, what, "give zero or more seconds as a number, or None to wait forever")
    return validate_seconds(timeout, what)


def validate_poll_interval(poll_interval: object) -> float | None:
    """The library's ``poll_interval``: a number of seconds > 0 and finite, or None for the default."""
    if poll_interval is None:
        return None
    _library_seconds(poll_interval, "poll_interval=", "give a number of seconds > 0, such as 0.2")
    return validate_interval(poll_interval, "poll_interval=")


def validate_interval(value: object, what: str) -> float:
    """A poll interval: seconds > 0 and finite (a scan must come eventually)."""
    expected = "a finite number of seconds > 0, for example 0.2"
    seconds = validate_seconds(value, what, expected)
    if not 0 < seconds < float("inf"):
        raise _error(f"{_named(what, value)} is invalid: give {expected}")
    return seconds


def validate_signal(value: object) -> int:
    """A signal given as ``TERM``, ``SIGTERM``, ``term``, ``15`` or a number: its number."""
    import signal

    if isinstance(value, int) and not isinstance(value, bool):
        number: int | None = value
    elif isinstance(value, str) and value.strip().isdecimal():  # not isdigit: int() refuses '²'
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


def validate_decorated(func: object) -> None:
    """Raise ExitDirError unless ``leader()`` can decorate ``func``: anything callable."""
    if not callable(func):
        raise _error(
            f"leader() cannot decorate {func!r}: it is not callable; decorate a function, or use "
            "'with exitdir.leader(...):' around the block"
        )


def validate_callback(callback: object) -> None:
    """Raise ExitDirError unless ``callback`` can be called when a token trips."""
    if not callable(callback):
        raise _error(
            f"exit callback {callback!r} is not callable: pass a function taking no arguments, such as "
            "token.add_callback(lambda: server.shutdown())"
        )


# The kernel's pid_max is at most 2**22; anything above is not a pid on any Linux.
_PID_MAX = 2**22


def validate_pid_file(path: str, data: bytes) -> int:
    """The pid a pid file holds: one positive decimal integer, with whitespace and a trailing newline
    tolerated. Anything else is an ExitDirError naming the file.

    >>> validate_pid_file("/run/proxy.pid", b"1234\\n")
    1234
    """
    text = data.strip()
    if text.isdigit() and 0 < int(text) <= _PID_MAX:
        return int(text)
    shown = "nothing" if not text else repr(text[:40].decode(errors="backslashreplace"))
    raise _error(
        f"pid file {path!r} holds {shown}, not a process id: it must hold the target's pid alone, "
        "such as 1234 (write it with 'echo $$ > FILE' in the target's start script)"
    )


def pid_file_unreadable(path: str, reason: str) -> ExitDirError:
    """The error for a pid file that exists but cannot be read (a directory, not readable by us)."""
    return _error(f"cannot read pid file {path!r}: {reason}: give a regular file this user may read")


def validate_program_name(name: object) -> str:
    """A program's name to look for among running processes: its file name as it runs, not a path.

    >>> validate_program_name("envoy")
    'envoy'
    """
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        raise _error(
            f"program name {name!r} cannot name a running program: give its file name as it runs, "
            "such as envoy (no directory, not empty)"
        )
    return name


def validate_pid(pid: object) -> int:
    """A process id: a positive integer."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _PID_MAX:
        raise _error(f"pid {pid!r} is not a process id: give a positive integer, such as 1234")
    return pid
