"""Logging without paying for ``import logging`` (~1.9 MiB and ~6 ms with what it pulls in) until a
program that uses logging can see the message.

A debug line is logged only when the program has imported ``logging`` itself: otherwise no handler can
exist to show it (``logging``'s last-resort handler shows warnings and above only), so importing it would
cost every waiting follower its memory for nothing. A warning goes through ``logging`` when the program
uses it, and otherwise straight to stderr, exactly as the last-resort handler would print it.
"""

from __future__ import annotations

import sys

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger

_said: set[str] = set()
# The CLI routes warnings here ("exitdir: ..." on stderr, or nowhere with --quiet) instead of logging.
sink: Callable[[str], None] | None = None


def _logger() -> Logger | None:
    """exitdir's logger, if the program uses ``logging`` (imported it), else None: nothing is imported."""
    logging = sys.modules.get("logging")
    if logging is None:
        return None
    logger: Logger = logging.getLogger("exitdir")
    return logger


def debug_once(key: str, message: str) -> None:
    """Log ``message`` at debug level the first time ``key`` is seen in this process.

    >>> debug_once("example", "shown only by a program that configured logging")
    """
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

    With logging not configured (or not used at all), the message is printed on stderr alone, as Python's
    last-resort handler prints it: what a sidecar's operator reads.
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
        return
    try:
        stderr = sys.stderr
        if stderr is not None:
            stderr.write(message + "\n")
            stderr.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stderr: a warning must never stop a follower or a leader
