"""What every watch backend provides to the token (imported for type checking only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    # Called with names that may be new markers, or None when the whole directory must be rescanned (the
    # watch was just set up, the directory was replaced, the event queue overflowed, a poll is due), or an
    # empty list when nothing new appeared but a process closed the directory (a leader may have died).
    OnChange = Callable[[list[str] | None], None]


class Watch(Protocol):
    """One follower's watch on one exit directory."""

    backend: str
    # Seconds between scans for backends that poll, None for event-driven ones.
    poll_interval: float | None

    def fileno(self) -> int | None:
        """A file descriptor that becomes readable when events may be pending (for asyncio), or None."""

    def pump(self, timeout: float | None) -> None:
        """Deliver pending changes, blocking up to ``timeout`` seconds (None: until something happens)."""

    def wake(self) -> None:
        """Make every thread blocked in :meth:`pump` return soon."""

    def close(self) -> None:
        """Stop watching. Idempotent."""
