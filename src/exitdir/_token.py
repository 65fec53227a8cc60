"""The follower's side: a thread-safe, level-triggered token that trips when a marker appears.

:class:`ExitToken` keeps the latch, the waiting and the callbacks; what trips it is decided by
:mod:`exitdir._rules`, and how the directory is watched by :mod:`exitdir._watch`. Every front-end waits on
a token through one seam, :class:`Waiter`, which carries the waiting contract of ``_watch/_base.py``.
"""

from __future__ import annotations

import json  # noqa: F401  # for _marker.parse: loaded now, not when a follower wakes and every µs counts
import os
import threading
import time

from ._clock import sooner, wait_seconds
from ._config import (
    ENV_LIVENESS_DIR,
    REQUIRE_ALL,
    REQUIRE_ANY,
    check_watchable,
    leader_names,
    require_directory,
    resolve_directory,
    resolve_liveness_dir,
    validate_callback,
    validate_poll_interval,
    validate_require,
    validate_require_dir,
    validate_timeout,
)
from ._errno import errno_text, explain, lacking, lost
from ._errors import ExitDirError
from ._linux import boot_id, bypass_client_caches, shared_filesystem
from ._liveness import liveness_of
from ._log import warn_once
from ._marker import Marker, list_markers, read_marker
from ._rules import LOST, STALE, TRIP, Looks, TripRules, Vantage
from ._watch import configured_interval, open_watch

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from ._watch._base import Plan, Watch


class ExitToken:
    """Trips once a marker appears in the exit directory, and stays tripped.

    Thread-safe and level-triggered, like ``threading.Event``: :meth:`is_set` and :meth:`wait` do the
    watching in the caller's own thread (no helper thread, no hand-over latency). A helper thread exists
    only while callbacks registered with :meth:`add_callback` are pending. It has ``is_set()``, so it works
    as the ``stop_event`` of watchfiles and similar APIs. Create it with :func:`exitdir.aware`.

    "Exit requested" is all a token says; whether any work was interrupted is the caller's business.
    :meth:`close` stops watching and is idempotent; a closed token that never tripped stays un-set.

    A token that can no longer watch is *failed*, which is not "exit requested": when the directory is
    lost for good (a stale NFS handle or a dead FUSE daemon, persisting over several looks for a second
    or more), :attr:`error` holds an :class:`~exitdir.ExitDirError` saying what happened and the fix, and
    from then on :meth:`wait` and :meth:`is_set` raise it, every call, and callbacks never run. A look
    that fails for want of a resource (no file descriptor left) is only retried, never a failure.

    A token may be inherited by ``fork()`` (gunicorn or ``multiprocessing`` workers): a child process gets
    a watch of its own, set up at its first :meth:`wait` or :meth:`is_set`, and every process trips.
    Callbacks registered before the fork run in the parent only, as threads do not survive a fork.

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
        require: str = REQUIRE_ALL,
        liveness_dir: str | None = None,
        followers: bool = False,
    ) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        here = vantage(directory)
        # followers: the locks watched are those of followers reporting failure (see followers_failing).
        self._liveness = (
            None if directory is None else liveness_of(directory, liveness_dir, followers=followers)
        )
        self._rules = TripRules(names, require, vantage=here, followers=followers)
        self._followers = followers
        self._set = False
        self._closed = False
        self._marker: Marker | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._callback_thread: threading.Thread | None = None
        self._waiters: list[Waiter] = []  # blocked outside the token: told when it trips or re-plans
        self._closed_event = threading.Event()
        self._error: ExitDirError | None = None  # set once: the token failed (see the class docstring)
        self._lack: OSError | None = None  # why the last look failed, if for want of a resource
        self._watch: Watch | None = None
        self._backend: str | None = None
        self._plan_shape: tuple[int | None, bool] = (None, False)
        # Failed looks are retried after the poll interval, whichever backend watches.
        self._looks = Looks(configured_interval(poll_interval))
        if directory is not None:
            # open_watch scans once the watch is in place, so this may trip before it returns.
            # No event says that a lock on a file server went: inotify must look at the locks on a timer too.
            watch = open_watch(
                directory,
                self._on_change,
                backend=backend,
                poll_interval=poll_interval,
                look_every_interval=liveness_dir is not None,
            )
            self._backend = watch.backend
            self._watch = watch
            self._plan_shape = _shape(self._plan())
            if not here.local:
                _warn_crashes_unseen(directory, here.filesystem, liveness_dir)

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
    def followers(self) -> bool:
        """Whether the token watches followers that report failure (``exitdir lead --stop-on``), not leaders.

        >>> import exitdir, tempfile
        >>> exitdir.aware(tempfile.mkdtemp()).followers
        False
        """
        return self._followers

    @property
    def exit_status(self) -> int | None:
        """The status a step gated on the leaders should exit with, once the token has tripped (None
        before): the :attr:`Marker.exit_status` of the marker that tripped it (1 when its code is unknown or
        the leader vanished); with several ``names`` under ``require="all"``, the first non-zero one in the
        order the names were given, else 0. What ``exitdir wait --exit-code leader`` exits with.

        >>> import exitdir, tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = exitdir.exit(0, name="build", directory=d)
        >>> _ = exitdir.exit(2, name="lint", directory=d)
        >>> with exitdir.aware(d, names=["build", "lint"]) as token:
        ...     token.wait(timeout=5), token.exit_status
        (True, 2)
        """
        marker = self._marker
        if marker is None:
            return None
        with self._lock:
            return self._rules.exit_status(marker)

    @property
    def error(self) -> ExitDirError | None:
        """Why the token can no longer watch its directory (it *failed*), or None.

        A failed token never trips; :meth:`wait` and :meth:`is_set` raise this error.

        >>> import exitdir, tempfile
        >>> exitdir.aware(tempfile.mkdtemp()).error is None
        True
        """
        return self._error

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
            return dict(self._rules.counted)

    def _on_change(self, names: list[str] | None) -> None:
        """The watch's delivery: ``names`` that may be new markers, or None to rescan (see OnChange).

        A look that fails (no file descriptor left, a stale handle...) is looked at again after the
        watch's interval: :meth:`_plan` carries the timer, so every front-end wakes for it.
        """
        if self._set or self._closed or self._error is not None:
            return
        try:
            self._look(names)
        except OSError as err:
            self._looked(names, err)
        else:
            self._looked(names, None)

    def _look(self, names: list[str] | None) -> None:
        directory = self._directory
        assert directory is not None
        # The lock table is read only after a complete look at the markers (a failed look raises): a leader
        # that wrote its marker and then released its lock must not be taken for one that vanished.
        if self._consider(directory, names):
            return
        assert self._liveness is not None
        flags = self._liveness.flags(self._rules.leader_keys)
        if flags is not None:  # a leader seen running that lost its lock without a marker has crashed
            with self._lock:
                vanished = self._rules.observe_locks(flags)
            if vanished is not None:
                # Unless its marker came between our listing and the lock read: a leader writes the marker
                # before it releases the lock, so a second look finds it (failure-modes.md), one that asks
                # the server on a shared filesystem, whose client may answer from the listing it cached.
                if not self._rules.vantage.local:
                    bypass_client_caches(directory)
                if self._consider(directory, None):
                    return
                with self._lock:
                    vanished = self._rules.observe_locks(flags)
            if vanished is not None:
                self._trip(vanished)

    def _looked(self, names: list[str] | None, err: OSError | None) -> None:
        """After a look: a failed one is retried on a timer; one lost for good fails the token."""
        if self._set:
            return
        looks = self._looks
        had_timer = looks.retry_at is not None
        watch = self._watch
        if err is not None:
            now = time.monotonic()
            self._lack = err if lacking(err) else None
            if looks.failed(lost=lost(err), now=now) == LOST:
                self._fail(_lost_error(self._directory, err, looks, now))
                return
            _warn_failed_look(self._directory, err, looks.interval)
        elif names is None:  # a whole rescan succeeded: nothing is left to retry
            looks.completed()
            self._lack = None
        if watch is not None and (names is None or had_timer != (looks.retry_at is not None)):
            # A rescan follows every change of the watch's plan, and a failed look changes ours: wake the
            # waiters still blocked on the old one.
            shape = _shape(self._plan())
            if shape != self._plan_shape:
                self._plan_shape = shape
                self._tell_waiters(watch)

    def _consider(self, directory: str, names: list[str] | None) -> bool:
        """Put the markers among ``names`` (None: all) to the rules; whether one tripped the token."""
        for marker in _markers_in(directory, names):
            with self._lock:
                verdict = self._rules.consider(marker)
            if verdict == TRIP:
                self._trip(marker)
                return True
            if verdict == STALE:
                _warn_stale(directory, marker)
        return False

    def _retry_if_due(self) -> None:
        if self._looks.due(time.monotonic()):
            self._on_change(None)

    def _plan(self) -> Plan:
        """The watch's plan, with the timer of a failed look's retry: what every waiter blocks on."""
        watch = self._watch
        if watch is None or self._set or self._closed or self._error is not None:
            return None, None
        fd, timeout = watch.plan()
        retry_at = self._looks.retry_at
        if retry_at is not None:
            timeout = sooner(timeout, max(0.0, retry_at - time.monotonic()))
        return fd, timeout

    def _fail(self, error: ExitDirError) -> None:
        with self._lock:
            if self._set or self._error is not None:
                return
            self._error = error
        self._tell_waiters(self._watch)

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is not None:
            raise error.with_traceback(None)  # level-triggered: raised afresh by every call

    def _trip(self, marker: Marker) -> None:
        with self._lock:
            if self._set:
                return
            self._marker = marker
            self._set = True
        # The watch is kept until close(): releasing it here would put syscalls between "event arrived"
        # and "caller told". Waking costs no syscall when this thread is the only one reading.
        self._tell_waiters(self._watch)

    def _tell_waiters(self, watch: Watch | None) -> None:
        """After a trip, a close or a new plan: wake threads blocked in the watch, and every Waiter."""
        if watch is not None:
            watch.wake()
        # Under the lock: once Waiter.close() has returned, its wake-up is never called again (its pipe
        # or loop may be gone). The wake-ups only schedule or write; they never block or take this lock.
        with self._lock:
            for waiter in self._waiters:
                waiter.wake()

    def is_set(self) -> bool:
        """Whether exit was requested. Never blocks; checks for new events each call.

        Raises the token's :attr:`error` once it has failed.

        >>> import exitdir, tempfile
        >>> exitdir.aware(tempfile.mkdtemp()).is_set()
        False
        """
        if not self._deliver():
            self._raise_if_failed()
        return self._set

    def _deliver(self) -> bool:
        """Deliver what is pending and retry a failed look if due, without blocking; whether tripped."""
        if self._set:
            return True
        watch = self._watch
        if watch is not None and self._error is None:
            watch.pump(0)
            self._retry_if_due()
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Block until exit is requested or ``timeout`` seconds pass; return :meth:`is_set`.

        ``None`` waits forever. Returns early, False, if the token is closed meanwhile. Raises the
        token's :attr:`error` once it has failed (a blocked call is woken to raise it).

        >>> import exitdir, tempfile
        >>> exitdir.aware(tempfile.mkdtemp()).wait(timeout=0.01)
        False
        """
        timeout = validate_timeout(timeout)
        if self._set:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = Waiter(self)
        while not waiter.done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            waiter.block(remaining)
        if not self._set:
            self._raise_if_failed()
        return self._set

    def add_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when exit is requested: now if it already was.

        Callbacks run in a helper thread started for them (keep them short; exceptions are logged and do
        not stop later callbacks). They never run if the token is closed before it trips, nor if it
        fails (that is logged as an error). Raises the token's :attr:`error` if it has failed already,
        and ExitDirError if the helper thread cannot be started (a process or thread limit).

        >>> import exitdir, tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = exitdir.exit(directory=d)
        >>> exitdir.aware(d).add_callback(lambda: print("exit requested"))
        exit requested

        What cannot be called is refused here, not when the token trips:

        >>> try:
        ...     exitdir.aware(d).add_callback(5)
        ... except exitdir.ExitDirError as err:
        ...     print(str(err).partition(":")[0])
        exit callback 5 is not callable
        """
        validate_callback(callback)
        with self._lock:
            if not self._set:
                self._raise_if_failed()
                self._callbacks.append(callback)
                if self._callback_thread is None and not self._closed:
                    thread = threading.Thread(
                        target=self._run_callbacks, name="exitdir-callbacks", daemon=True
                    )
                    try:
                        thread.start()
                    except RuntimeError as err:  # "can't start new thread": EAGAIN at a limit
                        self._callbacks.remove(callback)
                        raise ExitDirError(
                            f"cannot start the thread that runs exit callbacks: {err}; raise the process "
                            "limit (ulimit -u, or the container's pids limit), or call wait() in a thread "
                            "of your own"
                        ) from None
                    self._callback_thread = thread
                return
        callback()

    def _run_callbacks(self) -> None:
        try:
            self.wait()
        except ExitDirError as err:
            import logging

            logging.getLogger("exitdir").error("exit callbacks not run: %s", err)
            return
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
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        if self._liveness is not None:
            self._liveness.close()
        self._closed_event.set()
        self._tell_waiters(None)  # close() has woken the watch's own threads

    def __enter__(self) -> ExitToken:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "set" if self._set else "failed" if self._error else "closed" if self._closed else "waiting"
        return f"<ExitToken {state} directory={self._directory!r} backend={self._backend!r}>"


def vantage(directory: str | None) -> Vantage:
    """Where a follower of ``directory`` judges markers from (see :class:`~exitdir._rules.Vantage`): on a
    shared filesystem, only a marker naming this host can be stale, since other machines' boot ids differ."""
    filesystem = None if directory is None else shared_filesystem(directory)
    return Vantage(boot_id(), os.uname().nodename, local=filesystem is None, filesystem=filesystem)


def followers_failing(
    directory: str, names: Iterable[str], *, liveness_dir: str | os.PathLike[str] | None
) -> ExitToken:
    """The token of ``exitdir lead --stop-on NAME...``: trips on the first marker of any follower ``NAME``
    (``follow --name NAME --report-failure`` writes it when its helper fails), or when one seen running
    (its lock, in a region apart from the leaders') is gone without one: ``"vanished"``."""
    liveness = resolve_liveness_dir(liveness_dir, directory)
    check_watchable(directory)
    return ExitToken(
        directory, names=leader_names(names), require=REQUIRE_ANY, liveness_dir=liveness, followers=True
    )


def _markers_in(directory: str, names: list[str] | None) -> Iterable[Marker]:
    """The markers among ``names`` in ``directory``, or all of them for None (a rescan).

    Raises OSError when the look fails (it is retried), except for a directory that does not exist yet.
    """
    if names is not None:
        # Lazily: the first name is usually the marker that trips us, and the rest (such as the anonymous
        # name O_TMPFILE's close reports) then cost no lstat on the way to the caller.
        return (m for m in (read_marker(directory, n) for n in names) if m is not None)
    try:
        return list_markers(directory)
    except (FileNotFoundError, NotADirectoryError):
        warn_once(
            f"missing:{directory}", f"exit directory {directory} does not exist yet; waiting for it to appear"
        )
    return ()


def _warn_failed_look(directory: str | None, err: OSError, interval: float) -> None:
    warn_once(
        f"look:{directory}:{err.errno}",
        f"cannot list exit directory {directory}: {explain(err)}; looking again every {interval:g} s",
    )


def _lost_error(directory: str | None, err: OSError, looks: Looks, now: float) -> ExitDirError:
    seconds = 0.0 if looks.lost_since is None else now - looks.lost_since
    return ExitDirError(
        f"exit directory {directory} is lost: {errno_text(err.errno)} for {seconds:.1f} s over "
        f"{looks.lost_looks} looks (an NFS directory deleted and recreated on the server, or a FUSE "
        "daemon that died); remount it and restart this follower"
    )


def _warn_crashes_unseen(directory: str, filesystem: str | None, liveness_dir: str | None) -> None:
    """Say once when a leader on another machine that is killed outright would go unnoticed: the lock on
    the exit directory stays in its own kernel (NFS and SMB clients keep a lock on a directory local), so
    only a liveness directory on the shared volume shows it. FUSE is left out: most FUSE filesystems
    (bindfs, overlays) are this machine's alone."""
    if filesystem in (None, "fuse"):
        return
    if liveness_dir is None:
        fix = (
            f"set {ENV_LIVENESS_DIR} (or --liveness-dir) to a directory beside it on the same volume, for "
            "leaders and followers alike, to detect that (docs/kubernetes.md), or use --timeout as a bound"
        )
    elif shared_filesystem(liveness_dir) is None:
        fix = f"liveness directory {liveness_dir} is not on a shared filesystem: put it on the same volume"
    else:
        return
    warn_once(
        f"crashes-unseen:{directory}",
        f"{directory} is on {filesystem}, shared with other machines: a leader on another machine that is "
        f"killed outright (SIGKILL, OOM, its node lost) cannot be detected, and its followers wait for its "
        f"marker; {fix}",
    )


def _warn_stale(directory: str, marker: Marker) -> None:
    warn_once(
        f"stale:{directory}/{marker.name}",
        f"ignoring marker {marker.name} in {directory}: written before this machine last booted (its "
        "boot_id differs); remove it, or let the leader replace it",
    )


def _shape(plan: Plan) -> tuple[int | None, bool]:
    """What about a plan a blocked waiter must learn of: its fd, and whether it has a timer at all."""
    return plan[0], plan[1] is not None


class Waiter:
    """The one way to wait on an :class:`ExitToken`: its own :meth:`~ExitToken.wait`, the asyncio driver
    and the supervisor all wait through this seam, so they all keep the same contract.

    The contract (the watch's, in ``_watch/_base.py``, as the token presents it)::

        waiter = Waiter(token, wake)    # wake(): called from any thread when the token trips,
                                        # fails, closes or changes its plan, while this waiter is open
        while not waiter.done():
            fd, timeout = waiter.plan() # re-read before *every* block: it changes mid-wait
            <block until fd is readable (None: no fd), at most timeout seconds (None: no limit),
             or until wake() is called>
            waiter.deliver()            # never blocks
        waiter.close()                  # then token.error says whether it failed

    The token's plan is the watch's, plus the timer of a failed look's retry. A thread that can block
    inside the token calls ``waiter.block(timeout)`` in place of the three lines
    of the loop's body; it needs no ``wake``, since the token wakes threads blocked inside it.
    """

    def __init__(self, token: ExitToken, wake: Callable[[], None] | None = None) -> None:
        self._token = token
        self._wake = wake
        if wake is not None:
            with token._lock:
                token._waiters.append(self)

    def done(self) -> bool:
        """True once the token has tripped, failed or been closed: there is nothing left to wait for."""
        token = self._token
        return token._set or token._closed or token._error is not None

    def plan(self) -> Plan:
        """``(fd, timeout)`` to block on now (see the contract)."""
        return self._token._plan()

    def deliver(self) -> bool:
        """Deliver whatever is pending without blocking; whether the token has tripped. Never raises."""
        return self._token._deliver()

    def look(self) -> bool:
        """Look at the directory now, whether or not the plan has a look due; whether the token has
        tripped. Never blocks for long (one listing) and never raises. For a front-end that must know, at a
        given moment, what a watch that polls has not looked at yet."""
        if not self.done():
            self._token._on_change(None)
        return self._token._set

    def lacking(self) -> ExitDirError | None:
        """Why the token cannot look at its directory for want of a resource, after looking once more
        now (with everything its caller holds already held), or None if it can."""
        token = self._token
        if token._lack is not None:
            self.look()
        lack = token._lack
        if lack is None or self.done():  # a look that tripped or failed the token tells more
            return None
        return ExitDirError(f"exit directory {token._directory} cannot be listed: {explain(lack)}")

    def block(self, timeout: float | None) -> None:
        """Block in this thread as the plan says, for at most ``timeout`` seconds, then deliver."""
        token = self._token
        watch = token._watch
        if watch is None:
            if not token._set:  # a token with no directory: only close() ends the wait
                token._closed_event.wait(wait_seconds(timeout))
            return
        plan = token._plan()
        shape = _shape(plan)

        def stale() -> bool:  # checked by the watch just before it blocks: see the contract
            return self.done() or _shape(token._plan()) != shape

        watch.pump(sooner(timeout, plan[1]), stale)
        token._retry_if_due()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake()

    def close(self) -> None:
        """Stop being told. Idempotent."""
        token = self._token
        with token._lock:
            if self in token._waiters:
                token._waiters.remove(self)


def aware(
    directory: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    poll_interval: float | None = None,
    names: Iterable[str] | None = None,
    require: str = REQUIRE_ALL,
    require_dir: bool | None = None,
    liveness_dir: str | os.PathLike[str] | None = None,
) -> ExitToken:
    """Watch the exit directory (``directory``, else ``$EXIT_DIR``) and return a token that trips on a marker.

    A marker already present, or written while the watch is being set up, trips it too. With no directory
    configured the token never trips, as Go's ``exitdir.Aware(ctx)`` returns ``ctx`` unchanged, unless
    ``require_dir=True`` (or, when it is None, ``$EXITDIR_REQUIRE_DIR=1``) makes that an ExitDirError. A
    directory that does not exist yet is waited for (with one warning). ``backend`` is ``"auto"`` (default),
    ``"inotify"`` or ``"poll"``; ``poll_interval`` is in seconds. Both default to ``$EXITDIR_BACKEND`` and
    ``$EXITDIR_POLL_INTERVAL``.

    With ``names``, only those leaders' markers count: ``require="all"`` (default) trips once every one
    has written its marker, ``"any"`` on the first. A leader seen running (it holds its liveness lock)
    that ends without a marker trips the token too, with a marker of kind ``"vanished"``. A marker written
    before the machine last booted is stale and ignored, with a warning. A leader on another machine is
    seen running only through its lock in the *liveness directory* that it and its followers are given
    (``liveness_dir``, else ``$EXITDIR_LIVENESS_DIR``): see docs/kubernetes.md, "Several nodes".

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
    leaders = leader_names(names)
    validate_require(require)
    poll_interval = validate_poll_interval(poll_interval)
    resolved = require_directory(resolve_directory(directory), validate_require_dir(require_dir))
    liveness = resolve_liveness_dir(liveness_dir, resolved)
    if resolved is not None:
        check_watchable(resolved)
    return ExitToken(
        resolved,
        backend=backend,
        poll_interval=poll_interval,
        names=leaders,
        require=require,
        liveness_dir=liveness,
    )
