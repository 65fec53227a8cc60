"""The leader's side: write a marker so that every follower exits."""

from __future__ import annotations

import _thread
import errno
import os
import stat

from ._config import (
    DEFAULT_NAME,
    ENV_LIVENESS_DIR,
    denied_hint,
    path_problem,
    require_directory,
    resolve_directory,
    resolve_liveness_dir,
    validate_code,
    validate_decorated,
    validate_directory,
    validate_name,
    validate_require_dir,
    validate_signal_on,
)
from ._errno import explain, lacking, lost
from ._errors import ExitDirError
from ._linux import HAVE_PROC_FD, boot_id, proc_fd_path
from ._liveness import hold_liveness_file, lock_leader, release
from ._log import warn_once
from ._marker import encode, read_marker

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


_MARKER_MODE = 0o644  # followers may run as another user; a marker is not a secret
# Filesystems without O_TMPFILE answer one of these; then the temp+rename path is used.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# Decided once: O_TMPFILE exists in this os module (Linux), and /proc is there for linkat to go through.
_HAVE_TMPFILE = bool(getattr(os, "O_TMPFILE", 0)) and HAVE_PROC_FD


def _publish_tmpfile(dir_fd: int, name: str, data: bytes) -> bool:
    """Write an anonymous file, then link it in: one directory event, content already complete.

    Returns False when this filesystem or kernel cannot do it, or a marker of that name already exists
    (linkat never replaces); the caller then uses temp+rename.
    """
    if not _HAVE_TMPFILE:
        return False
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, _MARKER_MODE, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in _NO_TMPFILE:
            return False
        raise
    try:
        _write_all(fd, data)
        os.fchmod(fd, _MARKER_MODE)  # the umask must not hide the marker from other users
        try:
            os.link(proc_fd_path(fd), name, dst_dir_fd=dir_fd, follow_symlinks=True)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno in _NO_TMPFILE:
                return False
            raise
        return True
    finally:
        os.close(fd)


def _publish_rename(dir_fd: int, name: str, data: bytes) -> None:
    """Write a dot-named temp file (never a marker), then rename it over ``name`` atomically."""
    temp = f".exitdir-{os.getpid()}-{os.urandom(6).hex()}.tmp"
    # O_EXCL|O_NOFOLLOW: a symlink or file planted at the temp name makes us fail, never write through it.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, _MARKER_MODE, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, _MARKER_MODE)
        finally:
            os.close(fd)
        # rename replaces whatever is at `name`, a symlink included, and never follows it.
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def publish(directory: str, name: str, data: bytes, *, dir_fd: int | None = None) -> None:
    """Make ``directory/name`` appear with ``data`` in one step. Creates ``directory`` if missing.

    ``dir_fd``: the directory, opened earlier by the caller (and left open), so that the write needs one
    descriptor only; used while it still is the directory at that path (not one deleted or replaced
    since, which followers no longer watch).

    No fsync: the marker is a message between live processes that share one page cache (or, on NFS,
    close-to-open consistency); a marker that survived a machine crash would be stale anyway.
    """
    if dir_fd is not None and _is_directory_at(dir_fd, directory):
        try:
            _publish(dir_fd, name, data)
        except OSError as err:
            raise _publish_error(directory, err, name) from None
        return
    try:
        opened = _open_directory(directory)
    except OSError as err:
        raise _publish_error(directory, err) from None
    try:
        _publish(opened, name, data)
    except OSError as err:
        raise _publish_error(directory, err, name) from None
    finally:
        os.close(opened)


def _open_directory(directory: str) -> int:
    """The exit directory, opened; created first if missing."""
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:  # created only when missing: makedirs costs syscalls on every call
        os.makedirs(directory, exist_ok=True)
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _publish(dir_fd: int, name: str, data: bytes) -> None:
    if not _publish_tmpfile(dir_fd, name, data):
        _publish_rename(dir_fd, name, data)


def _is_directory_at(dir_fd: int, directory: str) -> bool:
    try:
        held, there = os.fstat(dir_fd), os.stat(directory)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def _publish_error(directory: str, err: OSError, name: str | None = None) -> ExitDirError:
    """The one-line error for a marker that could not be written, with its fix. ``name``: the marker, when
    the directory itself was opened."""
    if lacking(err) or lost(err):
        return ExitDirError(f"cannot write a marker in {directory}: {explain(err)}")
    if name is not None and err.errno == errno.EISDIR:
        return _in_the_way(directory, name)
    return path_problem(directory) or _write_error(directory, err)


def _write_problem(dir_fd: int, directory: str, name: str) -> ExitDirError | None:
    """Why the marker ``name`` could not be written into ``dir_fd``, found before a leader's run starts,
    or None: a directory in its way, or no permission to write. Creates no entry (a Go follower fires on
    any new one): it opens an anonymous O_TMPFILE, or asks access() where the filesystem has none."""
    try:
        if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
            return _in_the_way(directory, name)
    except OSError:
        pass  # nothing there (as usual), or the write will say what is wrong
    if _HAVE_TMPFILE:
        try:
            os.close(os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, _MARKER_MODE, dir_fd=dir_fd))
            return None
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return _write_error(directory, err)
            if err.errno not in _NO_TMPFILE:
                return None  # not about writing (no descriptor left): the caller's look finds that
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return _write_error(directory, OSError(errno.EROFS if read_only else errno.EACCES, "denied"))


def _in_the_way(directory: str, name: str) -> ExitDirError:
    return ExitDirError(
        f"cannot write the marker {os.path.join(directory, name)}: a directory of that name is in the way; "
        "remove it (a marker is a file)"
    )


def _write_error(directory: str, err: OSError) -> ExitDirError:
    if err.errno in (errno.EACCES, errno.EPERM):
        hint = denied_hint(directory, "write")
        return ExitDirError(f"cannot write a marker in {directory}: permission denied; {hint}")
    if err.errno == errno.EROFS:
        return ExitDirError(
            f"cannot write a marker in {directory}: read-only filesystem; mount a writable volume there"
        )
    return ExitDirError(f"cannot write a marker in {directory}: {err.strerror or err}")


def exit(
    code: int = 0,
    *,
    reason: str | None = None,
    name: str = DEFAULT_NAME,
    directory: str | os.PathLike[str] | None = None,
    require_dir: bool | None = None,
) -> pathlib.Path | None:
    """Tell every follower to exit: write the marker ``name`` into the exit directory.

    The directory is ``directory``, else ``$EXIT_DIR``; with neither set this does nothing and returns
    None, as Go's ``exitdir.Exit()`` does, so it is safe to call unconditionally. ``require_dir=True``
    (or, when it is None, ``$EXITDIR_REQUIRE_DIR=1``) makes that an ExitDirError instead. The marker
    appears atomically with its content complete. Calling it again replaces the marker.

    >>> import exitdir, os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> exitdir.exit(directory=d).name
    'exitFile'
    >>> os.listdir(d)
    ['exitFile']
    """
    path = write_marker(code, reason=reason, name=name, directory=directory, require_dir=require_dir)
    if path is None:
        return None
    import pathlib

    return pathlib.Path(path)


def write_marker(
    code: int,
    *,
    reason: str | None,
    name: str,
    directory: str | os.PathLike[str] | None,
    require_dir: bool | None = None,
    dir_fd: int | None = None,
) -> str | None:
    """:func:`exit` without building a ``pathlib.Path`` (importing pathlib costs the CLI ~6 ms).
    ``dir_fd``: see :func:`publish`."""
    code = validate_code(code)
    name = validate_name(name)
    if reason is not None and not isinstance(reason, str):
        raise ExitDirError(f"reason {reason!r} is not a string: pass text or None")
    resolved = require_directory(resolve_directory(directory), validate_require_dir(require_dir))
    if resolved is None:
        return None
    publish(resolved, name, encode(code, reason, name), dir_fd=dir_fd)
    return os.path.join(resolved, name)


def remove_own_marker(directory: str, name: str) -> None:
    """Remove the marker ``name`` that an earlier run of this writer left (a restarted container, a rerun
    step): left there, it would stop followers that start now. Said once; a failure is left alone."""
    try:
        os.unlink(os.path.join(directory, name))
        warn_once(f"stale-own:{directory}/{name}", f"removed {name} left in {directory} by an earlier run")
    except OSError:
        pass


class Leadership:
    """One run of a leader, for both :class:`leader` and ``exitdir lead``: the one place that orders it.

    ``begin()``: acquire what writing the marker will need (the directory, held open, and a spare
    descriptor: however many files the run opens, its end can be reported), remove a marker of our name
    left by an earlier run (a restarted container, a rerun step; left there, it would stop followers that
    start now), then take the liveness lock, so that a leader killed outright still ends its followers.
    ``finish(code, reason)``: write the marker, *then* release the lock; in the other order a follower
    could see the leader gone with no marker and report it as crashed. With ``signal_on="success"`` a
    failure writes no marker, and the lock tells followers that this leader may be restarted.

    >>> import exitdir, tempfile
    >>> run = Leadership(directory=tempfile.mkdtemp())
    >>> run.begin()
    >>> os.path.basename(run.finish(0, None))
    'exitFile'
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        directory: str | os.PathLike[str] | None = None,
        signal_on: str = "always",
        require_dir: bool | None = None,
        liveness_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = validate_name(name)
        self.signal_on = validate_signal_on(signal_on)
        self.require_dir = validate_require_dir(require_dir)
        self._given = validate_directory(directory)
        self._given_liveness = validate_directory(liveness_dir, "liveness directory", ENV_LIVENESS_DIR)
        self.directory: str | None = None  # the absolute exit directory, once begin() has resolved it
        self.liveness_dir: str | None = None  # likewise, the liveness directory if one is configured
        self._liveness_fd: int | None = None  # our locked file there, from begin() to finish()
        # The directory, open from begin() to finish(): the liveness lock is taken on it, and the marker
        # is written through it. The spare is a duplicate, closed just before the write to make room for
        # the marker's own descriptor; closing a duplicate drops no lock and raises no inotify event.
        self._dir_fd: int | None = None
        self._spare_fd: int | None = None

    def again(self) -> Leadership:
        """A new run with these settings (a :class:`leader` keeps one run as its validated settings, and
        starts a copy of it in each thread that enters)."""
        return Leadership(
            self.name,
            directory=self._given,
            signal_on=self.signal_on,
            require_dir=self.require_dir,
            liveness_dir=self._given_liveness,
        )

    def writes_marker(self, code: int) -> bool:
        """Whether :meth:`finish` with ``code`` writes a marker."""
        return self.directory is not None and (code == 0 or self.signal_on == "always")

    def begin(self) -> None:
        """Resolve the directory (now: ``$EXIT_DIR`` may be set after a decorator was applied), acquire
        what the final write needs, remove our own stale marker, take the liveness lock.

        In strict mode a missing directory raises ExitDirError here, before the leader's work starts: it
        could not report its end. So does a lacking resource (no file descriptor left), holding nothing,
        once ``directory`` is set: then too the end of the run could not be reported.
        """
        self.directory = directory = require_directory(resolve_directory(self._given), self.require_dir)
        if directory is None:
            return
        self.liveness_dir = resolve_liveness_dir(self._given_liveness, directory)
        try:
            self._dir_fd = _open_directory(directory)
            problem = _write_problem(self._dir_fd, directory, self.name)
            self._spare_fd = os.dup(self._dir_fd)
            boot_id()  # read once per process, now: the marker's write must not need a descriptor for it
            own = read_marker(directory, self.name)
        except OSError as err:
            self._release()
            if lacking(err):
                raise ExitDirError(
                    f"no file descriptor left to keep {directory} open for the marker: {explain(err)}"
                ) from None
            raise _publish_error(directory, err) from None
        if problem is not None:  # the end of the run could not be reported: it must not start
            self._release()
            raise problem
        if own is not None:
            remove_own_marker(directory, self.name)
        restartable = self.signal_on == "success"
        lock_leader(self._dir_fd, directory, self.name, restartable=restartable)
        if self.liveness_dir is not None:
            self._liveness_fd = hold_liveness_file(self.liveness_dir, self.name, restartable=restartable)

    def finish(self, code: int, reason: str | None) -> str | None:
        """Write the marker (when :meth:`writes_marker`), then release the lock. The marker's path, or None.

        Raises ExitDirError if the marker cannot be written; the lock is released all the same.
        """
        try:
            if not self.writes_marker(code):
                return None
            spare, self._spare_fd = self._spare_fd, None
            if spare is not None:
                os.close(spare)
            return write_marker(
                code, reason=reason, name=self.name, directory=self.directory, dir_fd=self._dir_fd
            )
        finally:
            self._release()

    def _release(self) -> None:
        """Close the directory and our file in the liveness directory: the locks go with them."""
        for fd in (self._spare_fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        if self._liveness_fd is not None:
            release(self._liveness_fd)
        self._spare_fd = self._dir_fd = self._liveness_fd = None


def outcome(exc: BaseException | None) -> tuple[int, str | None]:
    """The exit code and reason a block ending with ``exc`` should report."""
    if exc is None:
        return 0, None
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0, None
        if isinstance(exc.code, int) and not isinstance(exc.code, bool):
            return exc.code & 0xFF, None  # what the process will really exit with
        return 1, _text_of(exc.code)
    if isinstance(exc, KeyboardInterrupt):
        return 130, "KeyboardInterrupt"  # as a shell reports a SIGINT death
    message = _text_of(exc)
    return 1, f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _text_of(value: object) -> str:
    """``str(value)``, or "" if its ``__str__`` fails: a broken exception must not cost the marker."""
    try:
        return str(value)
    except Exception:
        return ""


class leader:
    """Write the marker when a block ends, however it ends: the Python form of ``defer exitdir.Exit()``.

    Normal end: code 0. ``SystemExit``: its code. ``KeyboardInterrupt``: 130. Any other exception: code 1
    with the exception's type and message as the reason. The exception still propagates. Works as a
    context manager (sync or async) and as a decorator on any callable (``async def`` functions, and
    partials or callable objects of them, get an async wrapper).

    While the block runs it holds a liveness lock on the exit directory, so that if the process is killed
    outright (SIGKILL, the OOM killer) its followers still end, and keeps what writing the marker needs,
    so that a block that ran out of file descriptors still reports its end. If even that cannot be had
    on entry, the block does not run: entering raises ExitDirError after trying to write a marker with
    code 1 saying so. On entry it removes a marker of its own
    name left by an earlier run. ``signal_on="success"`` writes the marker only when the block succeeds,
    for a leader that its orchestrator restarts on failure (``restartPolicy: OnFailure``).
    ``require_dir=True`` (or ``$EXITDIR_REQUIRE_DIR=1``) makes a missing exit directory an ExitDirError
    on entry, before the block runs. ``liveness_dir`` (or ``$EXITDIR_LIVENESS_DIR``), a directory beside
    the exit directory on the same shared volume, makes the lock one that followers on other machines see
    too (NFSv4, SMB): see docs/kubernetes.md, "Several nodes".

    One ``leader`` object is reentrant per thread, like an ``RLock``: the outermost entry in a thread
    begins a run, nested entries of the same object in that thread (a decorated function that recurses,
    nested ``with``) only count, and the outermost exit ends the run: it writes the marker, with that
    exit's outcome, then releases the lock. Entries from different threads are independent runs, each
    with its own lock and its own marker at its end. The tasks of one asyncio loop share its thread: their
    overlapping entries are one run, ended by the last to leave.

    >>> import exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with exitdir.leader(directory=d):
    ...     pass  # the main work
    >>> exitdir.aware(d).marker.code
    0

    >>> @exitdir.leader(directory=d)
    ... def main() -> None:
    ...     raise SystemExit(4)

    >>> @exitdir.leader(directory=d, name="walk")
    ... def walk(depth: int) -> None:
    ...     if depth:
    ...         walk(depth - 1)  # nested: no marker yet
    ...     else:
    ...         assert not os.path.exists(os.path.join(d, "walk"))
    >>> walk(3)  # the outermost call ends the run
    >>> exitdir.aware(d, names=["walk"]).is_set()
    True
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        directory: str | os.PathLike[str] | None = None,
        signal_on: str = "always",
        require_dir: bool | None = None,
        liveness_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        # Validated now, as the settings of a run never begun; each entering thread begins a copy of it, and
        # the directory is resolved (and, in strict mode, required) then.
        self._settings = Leadership(
            name, directory=directory, signal_on=signal_on, require_dir=require_dir, liveness_dir=liveness_dir
        )
        # The run of each thread inside the block, by thread id: [depth, its Leadership].
        self._runs: dict[int, list[Any]] = {}
        self._runs_lock = _thread.allocate_lock()

    def _enter(self) -> None:
        thread = _thread.get_ident()
        with self._runs_lock:
            entered = self._runs.get(thread)
            if entered is not None:
                entered[0] += 1
                return
        run = self._settings.again()
        _begin(run)  # raises, holding nothing, if the block must not run
        with self._runs_lock:
            self._runs[thread] = [1, run]

    def _exit(self, exc: BaseException | None) -> None:
        with self._runs_lock:
            entered = self._runs.get(_thread.get_ident())
            if entered is None:  # an exit without its entry: there is no run to end
                return
            entered[0] -= 1
            if entered[0]:
                return
            del self._runs[_thread.get_ident()]
        entered[1].finish(*outcome(exc))

    def __enter__(self) -> leader:
        self._enter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> leader:
        self._enter()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    def __call__(self, func: F) -> F:
        import functools

        validate_decorated(func)
        if _is_async(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _begin(run: Leadership) -> None:
    """``run.begin()``; if that fails with a directory known, the block will not run: say so in a marker."""
    try:
        run.begin()
    except ExitDirError as err:
        if run.directory is None:
            raise  # strict mode and no directory: no marker to write either
        # The block will not run: its followers must not wait for it.
        try:
            run.finish(1, f"exitdir could not start the leader's block: {err}")
        except ExitDirError:
            pass  # the error raised says why; the marker's own failure would say the same
        raise ExitDirError(f"cannot start the leader's block: {err}") from None


def _is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine: an ``async def`` function or method, a partial of
    one, or an object whose ``__call__`` is one. (inspect costs ~5 ms: imported when decorating.)"""
    import functools
    import inspect

    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    if isinstance(func, type) or inspect.isroutine(func):
        return False  # calling a class makes an instance, whatever its __call__ is
    return inspect.iscoroutinefunction(type(func).__call__)  # callable: its type has __call__
