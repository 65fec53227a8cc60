"""Logging without paying for ``import logging`` until something is actually logged."""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_said: set[str] = set()
# The CLI routes warnings here ("exitdir: ..." on stderr, or nowhere with --quiet) instead of logging.
sink: Callable[[str], None] | None = None


def debug_once(key: str, message: str) -> None:
    """Log ``message`` at debug level the first time ``key`` is seen in this process."""
    if key in _said:
        return
    _said.add(key)
    if sink is not None:
        return  # the CLI has no debug output
    import logging

    logging.getLogger("exitdir").debug(message)


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
    import logging

    logging.getLogger("exitdir").warning(message)
