"""The follower's side: a thread-safe, level-triggered token that trips when a marker appears."""

from __future__ import annotations

import os
import threading
import time

from ._config import DEFAULT_NAME, resolve_directory, validate_name, validate_timeout
from ._errors import ExitDirError
from ._liveness import LeaderState, held_offsets
from ._log import warn_once
from ._marker import KIND_VANISHED, VANISHED_REASON, Marker, current_boot_id, list_markers, read_marker
from ._watch import open_watch

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from ._watch._base import Watch


class ExitToken:
    """Trips once a marker appears in the exit directory, and stays tripped.

    Thread-safe and level-triggered, like ``threading.Event``: :meth:`is_set` and :meth:`wait` do the
    watching in the caller's own thread (no helper thread, no hand-over latency). A helper thread exists
    only while callbacks registered with :meth:`add_callback` are pending. It has ``is_set()``, so it works
    as the ``stop_event`` of watchfiles and similar APIs. Create it with :func:`exitdir.aware`.

    "Exit requested" is all a token says; whether any work was interrupted is the caller's business.
    :meth:`close` stops watching and is idempotent; a closed token that never tripped stays un-set.

    >>> import exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with exitdir.aware(d) as token:
    ...     token.wait(timeout=0.01)
    ...     _ = exitdir.exit(directory=d)
    ...     token.wait(timeout=5)
    False
    True
    """

    def __init__(
        self,
        directory: str | None,
        *,
        backend: str | None = None,
        poll_interval: float | None = None,
        names: tuple[str, ...] | None = None,
        require: str = "all",
    ) -> None:
        self._directory = directory
        self._names = names
        self._require = require
        self._markers: dict[str, Marker] = {}
        self._leaders = LeaderState(names)
        self._liveness_lock = threading.Lock()
        self._lock = threading.Lock()
        self._set = False
        self._closed = False
        self._marker: Marker | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._set_hooks: list[Callable[[], None]] = []
        self._callback_thread: threading.Thread | None = None
        self._closed_event = threading.Event()
        self._watch: Watch | None = None
        self._backend: str | None = None
        if directory is not None:
            # open_watch scans once the watch is in place, so this may trip before it returns.
            watch = open_watch(directory, self._on_change, backend=backend, poll_interval=poll_interval)
            self._backend = watch.backend
            self._watch = watch

    @property
    def directory(self) -> str | None:
        """The absolute exit directory watched, or None for a token that never trips."""
        return self._directory

    @property
    def backend(self) -> str | None:
        """``"inotify"`` or ``"poll"``: how the directory is watched (None without a directory)."""
        return self._backend

    @property
    def marker(self) -> Marker | None:
        """The marker that tripped the token, or None while it has not tripped."""
        return self._marker

    @property
    def markers(self) -> dict[str, Marker]:
        """The markers seen so far of the leaders named in ``aware(names=...)``, by name.

        >>> import exitdir, tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = exitdir.exit(name="db", directory=d)
        >>> token = exitdir.aware(d, names=["db", "api"])
        >>> sorted(token.markers), token.is_set()
        (['db'], False)
        >>> token.close()
        """
        with self._lock:
            return dict(self._markers)

    def _on_change(self, names: list[str] | None) -> None:
        if self._set or self._closed:
            return
        directory = self._directory
        assert directory is not None
        found: Iterable[Marker]
        if names is None:
            try:
                found = list_markers(directory)
            except (FileNotFoundError, NotADirectoryError):
                warn_once(
                    f"missing:{directory}",
                    f"exit directory {directory} does not exist yet; waiting for it to appear",
                )
                return
            except OSError as err:
                warn_once(
                    f"unreadable:{directory}", f"cannot list exit directory {directory}: {err.strerror}"
                )
                return
        else:
            # Lazily: the first name is usually the marker that trips us, and the rest (such as the
            # anonymous name O_TMPFILE's close reports) then cost no lstat on the way to the caller.
            found = (m for m in (read_marker(directory, n) for n in names) if m is not None)
        for marker in found:
            if self._consider(marker):
                return
        self._check_leaders(directory)

    def _consider(self, marker: Marker) -> bool:
        """Record ``marker``; trip if it completes what this token waits for. True if tripped."""
        boot_id = current_boot_id()
        if marker.boot_id is not None and boot_id is not None and marker.boot_id != boot_id:
            warn_once(
                f"stale:{self._directory}/{marker.name}",
                f"ignoring marker {marker.name} in {self._directory}: written before this machine last "
                "booted (its boot_id differs); remove it, or let the leader replace it",
            )
            return False
        if self._names is None:
            self._trip(marker)
            return True
        if marker.name not in self._names:
            return False
        with self._lock:
            self._markers[marker.name] = marker
            complete = self._require == "any" or len(self._markers) == len(self._names)
        if complete:
            self._trip(marker)
        return complete

    def _check_leaders(self, directory: str) -> None:
        """Trip if a leader seen running has lost its liveness lock without writing a marker."""
        held = held_offsets(directory)
        if held is None:
            return
        with self._liveness_lock:
            vanished = self._leaders.vanished(held)
        with self._lock:
            vanished = [name for name in vanished if name not in self._markers]
        if vanished:
            name = vanished[0] or DEFAULT_NAME
            self._trip(Marker(name, kind=KIND_VANISHED, code=None, reason=VANISHED_REASON))

    def _trip(self, marker: Marker) -> None:
        with self._lock:
            if self._set:
                return
            self._marker = marker
            self._set = True
            hooks = list(self._set_hooks)
        for hook in hooks:
            hook()
        # The watch is kept until close(): releasing it here would put syscalls between "event arrived"
        # and "caller told". Threads asleep in a poll backend's timer are woken; inotify waiters are
        # woken by the thread that dispatched the event.
        watch = self._watch
        if watch is not None and watch.poll_interval is not None:
            watch.wake()

    def _release_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def is_set(self) -> bool:
        """Whether exit was requested. Never blocks; checks for new events each call.

        >>> import exitdir, tempfile
        >>> exitdir.aware(tempfile.mkdtemp()).is_set()
        False
        """
        if self._set:
            return True
        watch = self._watch
        if watch is not None:
            watch.pump(0)
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Block until exit is requested or ``timeout`` seconds pass; return :meth:`is_set`.

        ``None`` waits forever. Returns early, False, if the token is closed meanwhile.

        >>> import exitdir, tempfile
        >>> exitdir.aware(tempfile.mkdtemp()).wait(timeout=0.01)
        False
        """
        timeout = validate_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set and not self._closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            watch = self._watch
            if watch is None:
                if not self._set:  # a token with no directory: only close() ends the wait
                    self._closed_event.wait(remaining)
            else:
                watch.pump(remaining)
        return self._set

    def add_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when exit is requested: now if it already was.

        Callbacks run in a helper thread started for them (keep them short; exceptions are logged and do
        not stop later callbacks). They never run if the token is closed before it trips.

        >>> import exitdir, tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = exitdir.exit(directory=d)
        >>> exitdir.aware(d).add_callback(lambda: print("exit requested"))
        exit requested
        """
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                if self._callback_thread is None and not self._closed:
                    self._callback_thread = threading.Thread(
                        target=self._run_callbacks, name="exitdir-callbacks", daemon=True
                    )
                    self._callback_thread.start()
                return
        callback()

    def _run_callbacks(self) -> None:
        self.wait()
        with self._lock:
            if not self._set:
                return
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                import logging

                logging.getLogger("exitdir").exception("exit callback %r raised", callback)

    def _add_set_hook(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Internal: call ``hook()`` from whichever thread trips the token. Returns an undo function."""
        with self._lock:
            self._set_hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._set_hooks:
                    self._set_hooks.remove(hook)

        return remove

    def _watch_for_loop(self) -> Watch | None:
        """Internal (asyncio front): the live watch, if any."""
        return self._watch

    def close(self) -> None:
        """Stop watching and wake every waiter. Idempotent; the token keeps its state.

        >>> import exitdir, tempfile
        >>> token = exitdir.aware(tempfile.mkdtemp())
        >>> token.close(); token.close()
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._release_watch()
        self._closed_event.set()

    def __enter__(self) -> ExitToken:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "set" if self._set else "closed" if self._closed else "waiting"
        return f"<ExitToken {state} directory={self._directory!r} backend={self._backend!r}>"


def check_watchable(directory: str) -> None:
    """Raise ExitDirError if a follower can never watch ``directory``; a missing one is fine (waited for)."""
    if os.path.islink(directory) and not os.path.exists(directory):
        raise ExitDirError(
            f"exit directory {directory} is a symlink to {os.readlink(directory)}, which does not exist: "
            "point EXIT_DIR at the real directory"
        )
    if not os.path.exists(directory):
        return
    if not os.path.isdir(directory):
        raise ExitDirError(
            f"exit directory {directory} is not a directory: point EXIT_DIR (or --dir) at the directory "
            "the leader writes its marker into"
        )
    if not os.access(directory, os.R_OK | os.X_OK):
        raise ExitDirError(
            f"cannot read exit directory {directory}: permission denied; a follower needs read and "
            f"search access (uid {os.getuid()}); make it readable, for example with fsGroup"
        )


def aware(
    directory: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    poll_interval: float | None = None,
    names: Iterable[str] | None = None,
    require: str = "all",
) -> ExitToken:
    """Watch the exit directory (``directory``, else ``$EXIT_DIR``) and return a token that trips on a marker.

    A marker already present, or written while the watch is being set up, trips it too. With no directory
    configured the token never trips, as Go's ``exitdir.Aware(ctx)`` returns ``ctx`` unchanged. A directory
    that does not exist yet is waited for (with one warning). ``backend`` is ``"auto"`` (default),
    ``"inotify"`` or ``"poll"``; ``poll_interval`` is in seconds. Both default to ``$EXITDIR_BACKEND`` and
    ``$EXITDIR_POLL_INTERVAL``.

    With ``names``, only those leaders' markers count: ``require="all"`` (default) trips once every one
    has written its marker, ``"any"`` on the first. A leader seen running (it holds its liveness lock)
    that ends without a marker trips the token too, with a marker of kind ``"vanished"``. A marker written
    before the machine last booted is stale and ignored, with a warning.

    >>> import exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> token = exitdir.aware(d)
    >>> token.is_set()
    False
    >>> _ = exitdir.exit(directory=d)
    >>> token.wait(timeout=5)
    True
    >>> token.close()
    """
    leaders = leader_names(names, require)
    resolved = resolve_directory(directory)
    if resolved is not None:
        check_watchable(resolved)
    return ExitToken(resolved, backend=backend, poll_interval=poll_interval, names=leaders, require=require)


def leader_names(names: Iterable[str] | None, require: str) -> tuple[str, ...] | None:
    """Validated ``names`` for :func:`aware` (None: any marker ends the wait, as in Go)."""
    if require not in ("all", "any"):
        raise ExitDirError(f"require={require!r} is not one of 'all', 'any': pass require='all' or 'any'")
    if names is None:
        return None
    if isinstance(names, str):
        raise ExitDirError(f"names={names!r} is a string: pass a list of leader names, e.g. [{names!r}]")
    leaders = tuple(dict.fromkeys(validate_name(name) for name in names))
    if not leaders:
        raise ExitDirError("names is empty: pass at least one leader name, or None for any marker")
    return leaders
