"""Logging without paying for ``import logging`` until something is actually logged."""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger

_said: set[str] = set()
# The CLI routes warnings here ("exitdir: ..." on stderr, or nowhere with --quiet) instead of logging.
sink: Callable[[str], None] | None = None


def _logger() -> Logger | None:
    # Best effort: a process out of file descriptors cannot read logging's source, and a fallback that
    # is working around exactly that must not crash on its way to saying so.
    try:
        import logging
    except (ImportError, OSError):
        return None
    return logging.getLogger("exitdir")


def debug_once(key: str, message: str) -> None:
    """Log ``message`` at debug level the first time ``key`` is seen in this process."""
    if key in _said:
        return
    _said.add(key)
    if sink is not None:
        return  # the CLI has no debug output
    logger = _logger()
    if logger is not None:
        logger.debug(message)


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process.

    With no logging configured, Python's last-resort handler prints it to stderr, which is what a sidecar's
    operator reads.
    """
    if key in _said:
        return
    _said.add(key)
    if sink is not None:
        sink(message)
        return
    logger = _logger()
    if logger is not None:
        logger.warning(message)
