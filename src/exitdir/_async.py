"""The asyncio front: no thread; the token's plan is kept on the running loop as a reader and a timer.

asyncio is imported inside the functions, so ``import exitdir`` does not pay ~30 ms for it.
"""

from __future__ import annotations

import os
import sys
import threading

from ._config import validate_timeout
from ._token import ExitToken, Waiter, aware

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
_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, set[_LoopWaiter]]] | None = None


def _loop_readers(loop: asyncio.AbstractEventLoop) -> dict[int, set[_LoopWaiter]]:
    global _readers  # noqa: PLW0603 - a lazily created module-level registry
    if _readers is None:
        import weakref

        _readers = weakref.WeakKeyDictionary()
    return _readers.setdefault(loop, {})


def _on_readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    # The first refresh reads the events and dispatches them to every token; for the rest it is a flag test.
    for waiter in list(_loop_readers(loop).get(fd, ())):
        waiter.refresh()


class _LoopWaiter:
    """The waiting contract run by the loop: ``refresh()`` delivers, then puts a reader on the plan's fd
    and a timer on its timeout, so every callback re-reads the plan. ``on_done()`` is called once, from a
    loop callback, when the token trips or closes."""

    def __init__(self, token: ExitToken, on_done: Callable[[], None]) -> None:
        import asyncio

        self._loop = loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._on_done = on_done
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._finished = False  # on_done() has run: nothing more to deliver, only clean-up is left
        self._waiter = Waiter(token, self._wake)
        # The first look is a loop callback too: on_done() must never run inside the caller's own step.
        loop.call_soon(self.refresh)

    def _wake(self) -> None:
        if self._closed:
            return
        # From the loop's own thread (another token's dispatch) no self-pipe write is needed.
        if threading.get_ident() == self._thread:
            self._loop.call_soon(self.refresh)
        else:
            self._loop.call_soon_threadsafe(self.refresh)

    def refresh(self) -> None:
        if self._closed or self._finished:
            return
        if self._waiter.deliver() or self._waiter.done():
            # The caller first: on_done() wakes it (its task is scheduled now), and the reader and timer
            # come off the loop in a callback after that step, not on the way to it.
            self._finished = True
            self._on_done()
            self._loop.call_soon(self.close)
            return
        fd, timeout = self._waiter.plan()
        if fd != self._fd:
            self._drop_reader()
            if fd is not None:
                by_fd = _loop_readers(self._loop)
                if fd not in by_fd:
                    by_fd[fd] = set()
                    self._loop.add_reader(fd, _on_readable, self._loop, fd)
                by_fd[fd].add(self)
                self._fd = fd
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if timeout is not None:
            self._timer = self._loop.call_later(timeout, self.refresh)

    def _drop_reader(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        by_fd = _loop_readers(self._loop)
        waiters = by_fd.get(fd)
        if waiters is None:
            return
        waiters.discard(self)
        if not waiters:
            del by_fd[fd]
            self._loop.remove_reader(fd)

    @property
    def finished(self) -> bool:
        """Whether ``on_done()`` has run because the token tripped or closed (clean-up then follows in a
        loop callback of its own)."""
        return self._finished

    def look(self) -> bool:
        """Look at the directory now (see :meth:`Waiter.look`); whether the token has tripped."""
        return self._waiter.look()

    def close(self) -> None:
        """Take the reader and timer off the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._waiter.close()
        self._drop_reader()
        if self._timer is not None:
            self._timer.cancel()


async def _wait_token(token: ExitToken, timeout: float | None) -> Marker | None:
    import asyncio

    if token.is_set():
        return token.marker
    loop = asyncio.get_running_loop()
    tripped: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not tripped.done():
            tripped.set_result(None)

    driver = _LoopWaiter(token, wake)
    timer = None if timeout is None else loop.call_later(timeout, wake)
    try:
        await tripped
    except BaseException:
        driver.close()  # cancelled: now, as the cancellation unwinds
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if driver.finished:
        pass  # it takes itself off the loop in its own callback, after this step
    else:
        driver.close()  # the timeout woke us: the reader is still on the loop
    error = token.error
    if error is not None:
        raise error.with_traceback(None)
    return token.marker


async def wait_for_exit(
    directory: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = None,
    backend: str | None = None,
    poll_interval: float | None = None,
    require_dir: bool | None = None,
) -> Marker | None:
    """Wait, without a thread, until a marker appears; return it (None if ``timeout`` seconds passed).

    ``directory`` defaults to ``$EXIT_DIR``; with none configured this waits forever (or until the
    timeout), as a follower with nothing to follow would, unless ``require_dir`` makes that an error (as
    in :func:`exitdir.aware`). Cancel the task to stop waiting. Raises ExitDirError if the directory is
    lost for good while waiting (see :attr:`ExitToken.error`).

    >>> import asyncio, exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = exitdir.exit(5, directory=d)
    >>> asyncio.run(exitdir.wait_for_exit(d)).code
    5
    """
    import asyncio

    timeout = validate_timeout(timeout)
    token = aware(directory, backend=backend, poll_interval=poll_interval, require_dir=require_dir)
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
    marker, or None. If the directory is lost for good while the block runs (the token *fails*, see
    :attr:`ExitToken.error`), the block is cancelled too, and its end raises that ExitDirError.

    Scopes nest, as ``asyncio.timeout()`` does: the ``CancelledError`` is absorbed by the outermost scope
    whose cancel it carries, and goes on past it when someone else (an outer timeout, ``task.cancel()``)
    asked too (on Python 3.11+; before, the innermost scope that asked absorbs it). Each scope reports on
    its own block:

    >>> import asyncio, exitdir, tempfile
    >>> d = tempfile.mkdtemp()
    >>> async def nested() -> None:
    ...     async with exitdir.cancel_on_exit(d) as outer:
    ...         async with exitdir.cancel_on_exit(d) as inner:
    ...             exitdir.exit(directory=d)
    ...             await asyncio.sleep(3600)  # interrupted at once
    ...     print(inner.interrupted, outer.interrupted)
    >>> asyncio.run(nested())
    True True
    """

    def __init__(self, token: ExitToken) -> None:
        self._token = token
        self._task: asyncio.Task[object] | None = None
        self._inside = False
        self._cancelling = False
        self._cancels_before = 0  # the task's pending cancel requests when the block began (3.11+)
        self._driver: _LoopWaiter | None = None
        self.exit_requested = False
        self.interrupted = False

    @property
    def marker(self) -> Marker | None:
        return self._token.marker

    def _request_exit(self) -> None:
        # Runs as a loop callback, so the task is suspended inside the block: the cancel lands there.
        if self._inside and not self._cancelling and self._task is not None:
            self.exit_requested = self._token.error is None  # else the watch failed: no exit was asked
            self._cancelling = True
            self._task.cancel(msg="exitdir: exit requested")

    async def __aenter__(self) -> CancelOnExit:
        import asyncio

        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("cancel_on_exit() must be used inside an asyncio task")
        self._task = task
        if sys.version_info >= (3, 11):
            self._cancels_before = task.cancelling()
        self._inside = True
        # Its first look is a loop callback, never this step: a block with no await must not be left
        # with a cancel pending past its end.
        self._driver = _LoopWaiter(self._token, self._request_exit)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        import asyncio

        self._inside = False
        cut_short = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        if self._driver is not None:
            # Cut short by a cancel we did not ask for (an enclosing scope's, say): had the marker come
            # already, with a watch that polls and had not looked yet? Look once, now.
            if cut_short and not self._cancelling:
                self._driver.look()
            self._driver.close()
        self._token.close()
        error = self._token.error
        if error is None and self._token.is_set():
            self.exit_requested = True
        ours = False
        if self._cancelling and self._task is not None:
            # On 3.11+, uncancel() withdraws our request and tells what else is pending: an enclosing
            # scope's, an outer timeout's, a task.cancel(). They share the one CancelledError (a task is
            # thrown one, however many are pending), so it goes on to them, as asyncio.timeout does.
            others = self._task.uncancel() if sys.version_info >= (3, 11) else 0
            ours = cut_short and others <= self._cancels_before
        if error is not None and (exc_type is None or ours):
            raise error.with_traceback(None) from None  # cannot watch any more: never a silent end
        # Cut short while exit was requested: by our cancel, or by one that the same marker caused.
        self.interrupted = cut_short and self.exit_requested
        return ours


def cancel_on_exit(
    directory: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    poll_interval: float | None = None,
    require_dir: bool | None = None,
) -> CancelOnExit:
    """Cancel the enclosed block when a marker appears, and let the block end normally.

    Like ``asyncio.timeout()``: the ``CancelledError`` raised inside the block is absorbed at its end.
    Afterwards ``scope.exit_requested`` tells whether exit was asked for and ``scope.interrupted`` whether
    the block was cut short. ``require_dir`` is :func:`exitdir.aware`'s.

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
    return CancelOnExit(
        aware(directory, backend=backend, poll_interval=poll_interval, require_dir=require_dir)
    )
