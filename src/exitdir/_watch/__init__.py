"""Choosing a watch backend: explicit argument, then ``$EXITDIR_BACKEND``, then automatic.

Automatic is inotify on Linux, except on filesystems where inotify does not see other clients' writes,
and polling wherever inotify cannot be set up (instance or watch limits, seccomp) or does not exist.
"""

from __future__ import annotations

import os
import sys

from .._config import validate_interval
from .._errno import FallbackRequired
from .._errors import ExitDirError
from .._linux import filesystem_type
from .._log import debug_once
from ._poll import PollWatch

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._base import OnChange, Watch

ENV_BACKEND = "EXITDIR_BACKEND"
ENV_POLL_INTERVAL = "EXITDIR_POLL_INTERVAL"
BACKENDS = ("auto", "inotify", "poll")
DEFAULT_POLL_INTERVAL = 0.25

# statfs f_type of filesystems where a change made by another client (another node, the host, a FUSE
# daemon's backing store) raises no inotify event here.
BLIND_FILESYSTEMS = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFE534D42: "smb2",
    0xFF534D42: "cifs",
    0x65735546: "fuse",
    0x01021997: "9p",
    0x00C36400: "ceph",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x5346414F: "afs",
    0x6B414653: "kafs",
    0x73757245: "coda",
    0x564C: "ncp",
    0x7461636F: "ocfs2",
    0x01161970: "gfs2",
}


def poll_reason(directory: str) -> str | None:
    """Why automatic choice must poll ``directory``, or None if inotify can be trusted there."""
    if not sys.platform.startswith("linux"):
        return f"no inotify on {sys.platform}"
    fs_type = filesystem_type(directory)
    if fs_type in BLIND_FILESYSTEMS:
        return f"{directory} is on {BLIND_FILESYSTEMS[fs_type]}, where inotify misses other clients' writes"
    return None


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
    directory: str, on_change: OnChange, *, backend: str | None = None, poll_interval: float | None = None
) -> Watch:
    """Start watching ``directory``; ``on_change(None)`` is called once the watch is in place."""
    choice = configured_backend(backend)
    interval = configured_interval(poll_interval)
    if choice == "poll":
        return _polling(directory, on_change, interval, "requested", trusted=poll_reason(directory) is None)
    if choice == "auto":
        reason = poll_reason(directory)
        if reason is not None:
            return _polling(directory, on_change, interval, reason, trusted=False)
    try:
        from ._inotify import InotifyWatch

        watch = InotifyWatch(directory, on_change, retry_interval=interval)
    except (FallbackRequired, ImportError) as err:
        if choice == "inotify":
            raise ExitDirError(
                f"inotify was requested but cannot watch {directory}: {err}; "
                f"use backend 'auto' (unset {ENV_BACKEND}) to fall back to polling"
            ) from None
        # Only "auto" gets here, so poll_reason found the filesystem trustworthy.
        return _polling(directory, on_change, interval, f"inotify: {err}", trusted=True)
    debug_once(f"backend:{directory}", f"watching {directory} with inotify")
    return watch
