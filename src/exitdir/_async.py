"""The asyncio front: no thread, the inotify fd sits on the running loop with ``add_reader``.

asyncio is imported inside the functions, so ``import exitdir`` does not pay ~30 ms for it.
"""

from __future__ import annotations

import os
import sys

from ._config import validate_timeout
from ._token import ExitToken, aware

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import weakref
    from collections.abc import Callable
    from types import TracebackType

    from ._marker import Marker

# One reader callback per (loop, fd): add_reader keeps only the last callback for an fd, and every token
# in the process shares the inotify fd. Created on first use: weakref is not free to import.
_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, set[ExitToken]]] | None = None


def _loop_readers(loop: asyncio.AbstractEventLoop) -> dict[int, set[ExitToken]]:
    global _readers  # noqa: PLW0603 - a lazily created module-level registry
    if _readers is None:
        import weakref

        _readers = weakref.WeakKeyDictionary()
    return _readers.setdefault(loop, {})


def _on_readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    for token in list(_loop_readers(loop).get(fd, ())):
        token.is_set()  # reads the events once and dispatches them to every token; the rest is a flag test


def _drive(token: ExitToken, wake: Callable[[], None]) -> Callable[[], None]:
    """Make the running loop pump ``token``'s watch and call ``wake()`` once it trips. Returns an undo."""
    import asyncio

    loop = asyncio.get_running_loop()

    # Set from another thread (a sync waiter sharing the inotify fd) must still reach this loop.
    def wake_from_any_thread() -> None:
        loop.call_soon_threadsafe(wake)

    remove_hook = token._add_set_hook(wake_from_any_thread)
    watch = token._watch_for_loop()
    if watch is None:
        return remove_hook
    fd = watch.fileno()
    if fd is not None:
        by_fd = _loop_readers(loop)
        if fd not in by_fd:
            by_fd[fd] = set()
            loop.add_reader(fd, _on_readable, loop, fd)
        by_fd[fd].add(token)

        def undo_reader() -> None:
            remove_hook()
            tokens = by_fd.get(fd)
            if tokens is None:
                return
            tokens.discard(token)
            if not tokens:
                del by_fd[fd]
                loop.remove_reader(fd)

        return undo_reader

    interval = watch.poll_interval or 0.25
    handle: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal handle
        if not token.is_set():
            handle = loop.call_later(interval, tick)

    handle = loop.call_later(interval, tick)

    def undo_timer() -> None:
        remove_hook()
        if handle is not None:
            handle.cancel()

    return undo_timer


async def _wait_token(token: ExitToken, timeout: float | None) -> Marker | None:
    import asyncio

    if token.is_set():
        return token.marker
    loop = asyncio.get_running_loop()
    tripped: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not tripped.done():
            tripped.set_result(None)

    undo = _drive(token, wake)
    timer = None if timeout is None else loop.call_later(timeout, wake)
    try:
        if not token.is_set():  # it may have tripped between the first check and the reader going on
            await tripped
    finally:
        undo()
        if timer is not None:
            timer.cancel()
    return token.marker


async def wait_for_exit(
    directory: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = None,
    backend: str | None = None,
    poll_interval: float | None = None,
) -> Marker | None:
    """Wait, without a thread, until a marker appears; return it (None if ``timeout`` seconds passed).

    ``directory`` defaults to ``$EXIT_DIR``; with none configured this waits forever (or until the
    timeout), as a follower with nothing to follow would. Cancel the task to stop waiting.

    >>> import asyncio, exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = exitdir.exit(5, directory=d)
    >>> asyncio.run(exitdir.wait_for_exit(d)).code
    5
    """
    import asyncio

    timeout = validate_timeout(timeout)
    token = aware(directory, backend=backend, poll_interval=poll_interval)
    try:
        marker = await _wait_token(token, timeout)
    except BaseException:
        token.close()
        raise
    # Closed just after the caller is told, not before: nothing between "event arrived" and "caller told".
    asyncio.get_running_loop().call_soon(token.close)
    return marker


class CancelOnExit:
    """The scope returned by :func:`cancel_on_exit`.

    ``exit_requested`` says a marker appeared while the block ran (even if the block finished before it
    could be interrupted); ``interrupted`` says the block was cut short because of it. ``marker`` is the
    marker, or None.
    """

    def __init__(self, token: ExitToken) -> None:
        self._token = token
        self._task: asyncio.Task[object] | None = None
        self._inside = False
        self._cancelling = False
        self._undo: Callable[[], None] | None = None
        self.exit_requested = False
        self.interrupted = False

    @property
    def marker(self) -> Marker | None:
        return self._token.marker

    def _request_exit(self) -> None:
        # Runs as a loop callback, so the task is suspended inside the block: the cancel lands there.
        if self._inside and not self._cancelling and self._task is not None:
            self.exit_requested = True
            self._cancelling = True
            self._task.cancel(msg="exitdir: exit requested")

    async def __aenter__(self) -> CancelOnExit:
        import asyncio

        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("cancel_on_exit() must be used inside an asyncio task")
        self._task = task
        self._inside = True
        self._undo = _drive(self._token, self._request_exit)
        if self._token.is_set():
            # Not cancelled from here: a block with no await would leave the cancel pending past its end.
            asyncio.get_running_loop().call_soon(self._request_exit)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        import asyncio

        self._inside = False
        if self._undo is not None:
            self._undo()
        self._token.close()
        if self._token.is_set():
            self.exit_requested = True
        if not self._cancelling or self._task is None:
            return False
        # On 3.11+, uncancel() tells our cancel apart from someone else's (an outer timeout, task.cancel()).
        others = self._task.uncancel() if sys.version_info >= (3, 11) else 0
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError) and others == 0:
            self.interrupted = True
            return True
        return False


def cancel_on_exit(
    directory: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    poll_interval: float | None = None,
) -> CancelOnExit:
    """Cancel the enclosed block when a marker appears, and let the block end normally.

    Like ``asyncio.timeout()``: the ``CancelledError`` raised inside the block is absorbed at its end.
    Afterwards ``scope.exit_requested`` tells whether exit was asked for and ``scope.interrupted`` whether
    the block was cut short.

    >>> import asyncio, exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> async def serve() -> None:
    ...     async with exitdir.cancel_on_exit(d) as scope:
    ...         exitdir.exit(directory=d)
    ...         await asyncio.sleep(3600)  # interrupted at once
    ...     print(scope.exit_requested, scope.interrupted, scope.marker.code)
    >>> asyncio.run(serve())
    True True 0
    """
    return CancelOnExit(aware(directory, backend=backend, poll_interval=poll_interval))
