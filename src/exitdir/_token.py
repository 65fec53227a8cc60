"""The follower's side: a thread-safe, level-triggered token that trips when a marker appears."""

from __future__ import annotations

import os
import threading
import time

from ._config import resolve_directory, validate_timeout
from ._errors import ExitDirError
from ._log import warn_once
from ._marker import list_markers, read_marker
from ._watch import open_watch

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._marker import Marker
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
        self, directory: str | None, *, backend: str | None = None, poll_interval: float | None = None
    ) -> None:
        self._directory = directory
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

    def _on_change(self, names: list[str] | None) -> None:
        if self._set or self._closed:
            return
        directory = self._directory
        assert directory is not None
        try:
            if names is None:
                found = next(iter(list_markers(directory)), None)
            else:
                found = next((m for m in map(lambda n: read_marker(directory, n), names) if m), None)
        except (FileNotFoundError, NotADirectoryError):
            warn_once(
                f"missing:{directory}",
                f"exit directory {directory} does not exist yet; waiting for it to appear",
            )
            return
        except OSError as err:
            warn_once(f"unreadable:{directory}", f"cannot list exit directory {directory}: {err.strerror}")
            return
        if found is not None:
            self._trip(found)

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
) -> ExitToken:
    """Watch the exit directory (``directory``, else ``$EXIT_DIR``) and return a token that trips on a marker.

    A marker already present, or written while the watch is being set up, trips it too. With no directory
    configured the token never trips, as Go's ``exitdir.Aware(ctx)`` returns ``ctx`` unchanged. A directory
    that does not exist yet is waited for (with one warning). ``backend`` is ``"auto"`` (default),
    ``"inotify"`` or ``"poll"``; ``poll_interval`` is in seconds. Both default to ``$EXITDIR_BACKEND`` and
    ``$EXITDIR_POLL_INTERVAL``.

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
    resolved = resolve_directory(directory)
    if resolved is not None:
        check_watchable(resolved)
    return ExitToken(resolved, backend=backend, poll_interval=poll_interval)
