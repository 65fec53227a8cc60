"""Choosing a watch backend: explicit argument, then ``$EXITDIR_BACKEND``, then automatic.

Automatic is inotify on Linux, except on filesystems where inotify does not see other clients' writes,
and polling wherever inotify cannot be set up (instance or watch limits, seccomp) or does not exist.
"""

from __future__ import annotations

import os
import sys

from .._config import validate_interval
from .._errno import FallbackRequired, lacking
from .._errors import ExitDirError
from .._linux import shared_filesystem
from .._log import debug_once, warn_once
from ._poll import PollWatch

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._base import OnChange, Watch

ENV_BACKEND = "EXITDIR_BACKEND"
ENV_POLL_INTERVAL = "EXITDIR_POLL_INTERVAL"
BACKENDS = ("auto", "inotify", "poll")
DEFAULT_POLL_INTERVAL = 0.25


def poll_reason(directory: str) -> str | None:
    """Why automatic choice must poll ``directory``, or None if inotify can be trusted there: it cannot on
    a filesystem shared with other clients (``_linux.SHARED_FILESYSTEMS``), blind to their writes."""
    if not sys.platform.startswith("linux"):
        return f"no inotify on {sys.platform}"
    blind = shared_filesystem(directory)
    if blind is not None:
        return f"{directory} is on {blind}, where inotify misses other clients' writes"
    return None


def _warn_if_blind(directory: str, backend: str | None) -> None:
    """Warn, once per directory, that inotify was forced where it cannot see other clients' writes.

    A warning, not an error: inotify does see writes made through this same mount, so forcing it can be
    legitimate (every leader on this machine, writing through this mount).
    """
    blind = shared_filesystem(directory)  # always None off Linux
    if blind is None:
        return
    if backend is None:
        forced, fix = f"{ENV_BACKEND}=inotify", f"set {ENV_BACKEND}=auto or poll"
    else:
        forced, fix = "backend='inotify'", "use backend='auto' or 'poll'"
    missed = (
        "beneath it (in the FUSE filesystem's backing store)"
        if blind == "fuse"
        else "on other machines that share it (or on its server)"
    )
    warn_once(
        f"blind:{directory}",
        f"{forced} on {directory}, which is on {blind}: inotify sees only changes made through this "
        f"mount, so this follower will miss markers written {missed}; {fix} to poll it instead",
    )


def configured_backend(backend: str | None) -> str:
    choice = backend if backend is not None else os.environ.get(ENV_BACKEND, "") or "auto"
    if choice not in BACKENDS:
        source = "backend=" if backend is not None else f"{ENV_BACKEND}="
        raise ExitDirError(f"unknown watch backend {source}{choice!r}: use one of {', '.join(BACKENDS)}")
    return choice


def configured_interval(poll_interval: float | None) -> float:
    if poll_interval is not None:
        return validate_interval(poll_interval, "poll interval")
    text = os.environ.get(ENV_POLL_INTERVAL, "")
    return validate_interval(text, f"{ENV_POLL_INTERVAL}=") if text else DEFAULT_POLL_INTERVAL


def _polling(directory: str, on_change: OnChange, interval: float, why: str, *, trusted: bool) -> PollWatch:
    """``trusted``: a Linux filesystem where inotify (and so a stat) sees every change."""
    debug_once(f"backend:{directory}", f"polling {directory} every {interval} s: {why}")
    return PollWatch(directory, on_change, interval=interval, list_when_changed=trusted)


def open_watch(
    directory: str,
    on_change: OnChange,
    *,
    backend: str | None = None,
    poll_interval: float | None = None,
    look_every_interval: bool = False,
) -> Watch:
    """Start watching ``directory``; ``on_change(None)`` is called once the watch is in place.

    ``look_every_interval``: call ``on_change([])`` at least every poll interval, even where events come
    (inotify), for what no event announces: a lock released on a file server, by another machine.
    """
    choice = configured_backend(backend)
    interval = configured_interval(poll_interval)
    if choice == "poll":
        return _polling(directory, on_change, interval, "requested", trusted=poll_reason(directory) is None)
    if choice == "auto":
        reason = poll_reason(directory)
        if reason is not None:
            return _polling(directory, on_change, interval, reason, trusted=False)
    if choice == "inotify":
        _warn_if_blind(directory, backend)
    try:
        from ._inotify import InotifyWatch

        watch = InotifyWatch(
            directory, on_change, retry_interval=interval, look_every_interval=look_every_interval
        )
    except (FallbackRequired, ImportError, OSError) as err:
        if isinstance(err, OSError) and not lacking(err):
            raise
        # OSError: no descriptor even to import ctypes (a low `ulimit -n`).
        if choice == "inotify":
            raise ExitDirError(
                f"inotify was requested but cannot watch {directory}: {err}; "
                f"use backend 'auto' (unset {ENV_BACKEND}) to fall back to polling"
            ) from None
        # Only "auto" gets here, so poll_reason found the filesystem trustworthy.
        return _polling(directory, on_change, interval, f"inotify: {err}", trusted=True)
    debug_once(f"backend:{directory}", f"watching {directory} with inotify")
    return watch
