"""The marker: what a leader writes into the exit directory and how followers read it.

The format is documented in ``docs/format.md``. Reading is defensive: a marker is any regular file whose
name is not reserved, and whatever it contains (nothing, our JSON, garbage, something unreadable) it still
means "exit"; only the details it carries depend on the content.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from ._config import is_marker_name
from ._errno import lacking, lost
from ._linux import boot_id as this_boot_id
from ._text import printable

try:  # the C function json.dumps(ensure_ascii=False) quotes strings with, without importing json (~1 ms)
    from _json import encode_basestring as _quoted
except ImportError:  # an interpreter without the C accelerator
    from json.encoder import py_encode_basestring as _quoted

FORMAT_VERSION = 1
# Markers are a few hundred bytes; reading more would let a hostile file cost us memory.
MAX_MARKER_BYTES = 64 * 1024
MAX_REASON_CHARS = 4096

KIND_EXITDIR = "exitdir"  # our JSON
KIND_EMPTY = "empty"  # Go exitdir's Exit(), `touch`, `echo >`
KIND_UNKNOWN = "unknown"  # anything else: still a marker
KIND_VANISHED = "vanished"  # no file: the leader's liveness lock went away without a marker (it crashed)
VANISHED_REASON = "leader exited without signalling"
# A follower reporting failure (``follow --report-failure``) whose lock went without a marker.
FOLLOWER_GONE_REASON = (
    "follower ended without reporting a failure "
    "(killed outright, stopped from outside, or its helper exited 0)"
)


class Marker:
    """A marker found in the exit directory: the leader asked its followers to exit.

    ``code`` is the leader's exit status (0 for an empty marker, as Go's ``Exit()`` writes; None when the
    content is not ours). ``kind`` is ``"exitdir"``, ``"empty"`` or ``"unknown"``, and ``problem`` says
    what was wrong with content that was not fully understood.

    >>> import exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = exitdir.exit(3, reason="tests failed", directory=d)
    >>> token = exitdir.aware(d)
    >>> token.marker.code, token.marker.reason, token.marker.name
    (3, 'tests failed', 'exitFile')
    >>> token.close()
    """

    __slots__ = ("boot_id", "code", "hostname", "kind", "name", "pid", "problem", "reason", "time")

    def __init__(
        self,
        name: str,
        *,
        kind: str,
        code: int | None,
        reason: str | None = None,
        pid: int | None = None,
        hostname: str | None = None,
        time: str | None = None,
        boot_id: str | None = None,
        problem: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.code = code
        self.reason = reason
        self.pid = pid
        self.hostname = hostname
        self.time = time
        self.boot_id = boot_id
        self.problem = problem

    @property
    def exit_status(self) -> int:
        """The status a step gated on this leader should exit with: its ``code``, or 1 when the code is
        unknown (content that is not ours, or a leader that vanished without a marker), since then the
        leader ended but cannot be said to have succeeded. An empty marker (Go's ``Exit()``) is 0.

        >>> Marker("build", kind="exitdir", code=3).exit_status
        3
        >>> Marker("build", kind="empty", code=0).exit_status
        0
        >>> Marker("build", kind="vanished", code=None).exit_status
        1
        """
        return 1 if self.code is None else self.code

    def as_dict(self) -> dict[str, object]:
        """The marker's fields as a plain dict (what ``exitdir status --json`` prints)."""
        return {field: getattr(self, field) for field in _FIELD_ORDER}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Marker):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.name, self.kind, self.code, self.reason, self.time))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items() if v is not None)
        return f"Marker({shown})"


def describe(marker: Marker | None) -> str:
    """One line for people: ``exitFile: code 3: 2 tests failed``.

    Whatever the marker holds, the line is safe to print: control characters and lone surrogates in its
    name, reason or problem are escaped (see ``_text.printable``), so a marker cannot drive the terminal.

    >>> describe(Marker("exitFile", kind="exitdir", code=3, reason="2 tests failed"))
    'exitFile: code 3: 2 tests failed'
    >>> print(describe(Marker("exitFile", kind="exitdir", code=1, reason="\\x1b[2Jgone\\nx\\ud800")))
    exitFile: code 1: \\x1b[2Jgone\\x0ax\\ud800
    """
    if marker is None:
        return "no marker"
    code = "unknown code" if marker.code is None else f"code {marker.code}"
    reason = f": {marker.reason}" if marker.reason else ""
    problem = f" ({marker.problem})" if marker.problem else ""
    return printable(f"{marker.name}: {code}{reason}{problem}")


_FIELD_ORDER = ("name", "kind", "code", "reason", "pid", "hostname", "time", "boot_id", "problem")


def utc_timestamp(now: float | None = None) -> str:
    """RFC 3339 UTC with microseconds, without importing datetime."""
    if now is None:
        now = time.time()
    whole = int(now)
    micros = int((now - whole) * 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def utf8_text(text: str) -> str:
    """``text`` with every code point UTF-8 cannot carry (a lone surrogate, such as the ``\\udcff`` Python
    makes of an undecodable byte in argv) replaced by U+FFFD, so a reason is never refused for its text.

    >>> utf8_text("caf\\udce9 \\ud800!") == "caf\\ufffd \\ufffd!"
    True
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    return text


def encode(code: int, reason: str | None, name: str) -> bytes:
    """The JSON document a leader writes (one line, newline-terminated, so `cat` shows it nicely).

    ``name`` was validated (it is valid Unicode); text that comes from elsewhere (the reason, the host
    name) is made UTF-8-safe, so writing the marker never fails on its characters.
    """
    if reason is not None:
        reason = utf8_text(reason)
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "\u2026"
    # Byte for byte what json.dumps(doc, ensure_ascii=False, separators=(",", ":")) gives for this one
    # shape (tests/test_marker_encoding.py checks it on random text), at a fraction of its cold cost: a
    # leader's exit() is often the one call it makes, so nothing here is warm (docs/performance.md).
    boot_id = this_boot_id()
    text = (
        f'{{"exitdir":{FORMAT_VERSION},"code":{code},"reason":{_json_text(reason)},"name":{_quoted(name)},'
        f'"pid":{os.getpid()},"hostname":{_quoted(utf8_text(os.uname().nodename))},'
        f'"time":{_quoted(utc_timestamp())},"boot_id":{_json_text(boot_id)}}}\n'
    )
    return text.encode()


def _json_text(text: str | None) -> str:
    return "null" if text is None else _quoted(text)


def _typed(doc: dict[str, object], key: str, kind: type, problems: list[str]) -> object:
    value = doc.get(key)
    # bool is an int subclass; a code of `true` is a mistake, not 1.
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    problems.append(f"{key!r} is {type(value).__name__}, expected {kind.__name__}")
    return None


def parse(name: str, data: bytes) -> Marker:
    """Interpret a marker's content. Never raises: unknown content gives ``kind="unknown"``.

    >>> parse("exitFile", b"").code
    0
    >>> parse("exitFile", b"\\xff").kind
    'unknown'
    """
    if data.strip() == b"":
        return Marker(name, kind=KIND_EMPTY, code=0)
    import json  # loaded already: _token, the follower's machinery, imports it (a leader never needs it)

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Marker(name, kind=KIND_UNKNOWN, code=None, problem="content is not exitdir JSON")
    if not isinstance(doc, dict) or "exitdir" not in doc:
        return Marker(name, kind=KIND_UNKNOWN, code=None, problem="content is not exitdir JSON")
    problems: list[str] = []
    code = _typed(doc, "code", int, problems)
    if isinstance(code, int) and not 0 <= code <= 255:
        problems.append(f"'code' {code} is outside 0..255")
        code = None
    reason = _typed(doc, "reason", str, problems)
    pid = _typed(doc, "pid", int, problems)
    hostname = _typed(doc, "hostname", str, problems)
    when = _typed(doc, "time", str, problems)
    boot_id = _typed(doc, "boot_id", str, problems)
    return Marker(
        name,
        kind=KIND_EXITDIR,
        code=code if isinstance(code, int) else None,
        reason=reason if isinstance(reason, str) else None,
        pid=pid if isinstance(pid, int) else None,
        hostname=hostname if isinstance(hostname, str) else None,
        time=when if isinstance(when, str) else None,
        boot_id=boot_id if isinstance(boot_id, str) else None,
        problem="; ".join(problems) or None,
    )


def read_marker(directory: str, name: str) -> Marker | None:
    """The marker ``name`` in ``directory``, or None if that entry is not (or no longer) a marker.

    Symlinks are never followed and FIFOs or devices are never opened: only regular files are markers.
    Raises OSError when the look itself failed for want of a resource (EMFILE...) or on a stale handle:
    then nothing is known about the entry yet.
    """
    if not is_marker_name(name):
        return None
    path = os.path.join(directory, name)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        # O_NONBLOCK: if the entry was swapped for a FIFO after the lstat, opening it must not block.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # gone again (a temp file renamed away, a marker cleaned up)
    except OSError as err:
        if err.errno == errno.ELOOP:  # became a symlink between lstat and open
            return None
        if lacking(err) or lost(err):
            raise  # out of fds, a stale handle: this look tells nothing; the caller looks again
        # It exists and is a regular file, so it is a marker, even if we may not read it.
        return Marker(name, kind=KIND_UNKNOWN, code=None, problem=f"unreadable: {err.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MAX_MARKER_BYTES)
    except OSError as err:
        if lacking(err) or lost(err):
            raise
        return Marker(name, kind=KIND_UNKNOWN, code=None, problem=f"unreadable: {err.strerror}")
    finally:
        os.close(fd)
    return parse(name, data)


def list_markers(directory: str) -> list[Marker]:
    """Every marker in ``directory``, sorted by name. Raises OSError if the directory cannot be listed."""
    names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if is_marker_name(entry.name) and entry.is_file(follow_symlinks=False)
    )
    markers = (read_marker(directory, name) for name in names)
    return [marker for marker in markers if marker is not None]
