"""What trips a follower: pure rules, no I/O, no clock, no threads.

The token feeds :class:`TripRules` what it observes (each marker it reads, and which leaders hold their
liveness locks) and trips when the answer says so. Keeping the rules apart from the waiting lets
``tests/test_rules.py`` check them with hypothesis against a reference model written independently.

The rules, in order:

1. **Stale**: a marker written *on this machine* whose ``boot_id`` differs from this machine's was
   written before the last boot (an ``emptyDir`` that survived a node reboot, kubernetes#53423); it is
   ignored. It was written here if the directory is on a local filesystem (only this machine writes
   there), or if the marker names this machine's hostname. On a shared filesystem a marker from another
   machine always carries another boot id, and is fresh. A marker without a boot id (Go's empty
   ``exitFile``, ``touch``) is never stale.
2. **Which markers count**: with no names, any marker trips (Go parity). With names, only those leaders'
   markers count: ``require="any"`` trips on the first, ``"all"`` once every named leader has one.
3. **Vanished leaders**: a leader seen holding its liveness lock, not marked restartable at the last
   sighting, whose lock is then gone while it has no counted marker, has crashed: that trips too, with a
   marker of kind ``"vanished"``. Rules made with ``followers=True`` (``exitdir lead --stop-on NAME``)
   watch the locks of followers reporting failure (``follow --name NAME --report-failure``) instead, which
   are never restartable: one seen running, then gone with no marker, trips the same way, unless another
   leader's marker has been seen meanwhile: a follower ends when a marker it follows appears, and which
   markers those are (its ``--leader``) the rules cannot know, so its going is then not a failure.

And what *fails* a follower, which is not "exit requested" (:class:`Looks`): a look at the directory that
fails is retried after the poll interval; only a directory lost for good (every look meeting a stale NFS
handle or a dead FUSE daemon, for a second and three looks) fails it.

>>> rules = TripRules(("db", "api"), "all", vantage=Vantage("b1"))
>>> rules.consider(Marker("db", kind="empty", code=0))
'counted'
>>> rules.consider(Marker("api", kind="exitdir", code=0, boot_id="b0"))
'stale'
>>> rules.consider(Marker("api", kind="exitdir", code=0, boot_id="b1"))
'trip'
"""

from __future__ import annotations

from ._config import DEFAULT_NAME, REQUIRE_ANY
from ._marker import FOLLOWER_GONE_REASON, KIND_VANISHED, VANISHED_REASON, Marker

# Not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# What consider() answers.
TRIP = "trip"  # this marker trips the follower
COUNTED = "counted"  # a named leader's marker, recorded; others are still awaited (require="all")
STALE = "stale"  # written before this machine last booted: ignored
NOT_NAMED = "not named"  # a marker of a leader nobody asked about: ignored
# Why an ignored marker does not count, in words (``exitdir status`` prints it beside the marker).
WHY_IGNORED = {
    STALE: "written before this machine last booted, its boot_id differs",
    NOT_NAMED: "not one of the leaders asked about",
}

# A leader's liveness, as its lock shows it: (running, restartable).
LockFlags = tuple[bool, bool]


class Vantage:
    """Where a follower judges markers from: this machine's ``boot_id`` and ``hostname``, and whether the
    directory is on a ``local`` filesystem (one no other machine writes to); ``filesystem`` names the shared
    one it is on otherwise, when known."""

    __slots__ = ("boot_id", "filesystem", "hostname", "local")

    def __init__(
        self,
        boot_id: str | None,
        hostname: str | None = None,
        *,
        local: bool = True,
        filesystem: str | None = None,
    ) -> None:
        self.boot_id = boot_id
        self.hostname = hostname
        self.local = local
        self.filesystem = filesystem

    def is_stale(self, marker: Marker) -> bool:
        """Whether ``marker`` was written on this machine before it last booted (rule 1).

        >>> here = Vantage("b1", "node-a", local=False)
        >>> here.is_stale(Marker("exitFile", kind="exitdir", code=0, boot_id="b0", hostname="node-b"))
        False
        >>> here.is_stale(Marker("exitFile", kind="exitdir", code=0, boot_id="b0", hostname="node-a"))
        True
        """
        if marker.boot_id is None or self.boot_id is None or marker.boot_id == self.boot_id:
            return False
        return self.local or (self.hostname is not None and marker.hostname == self.hostname)


class TripRules:
    """The state of one follower's rules: which named markers were counted, which leaders were seen."""

    def __init__(
        self, names: tuple[str, ...] | None, require: str, *, vantage: Vantage, followers: bool = False
    ) -> None:
        self.names = names
        self.require = require
        self.vantage = vantage
        # Whose locks observe_locks() is fed: leaders', or (True) those of followers reporting failure.
        self.followers = followers
        self.counted: dict[str, Marker] = {}
        # Leaders whose locks are watched; None stands for "any leader" when no names were given.
        self.leader_keys: tuple[str | None, ...] = names if names is not None else (None,)
        self._seen: set[str | None] = set()
        self._restartable: set[str | None] = set()
        self._other_marker_seen = False  # followers=True: a marker that may have ended them on purpose

    def consider(self, marker: Marker) -> str:
        """What ``marker`` means: TRIP, COUNTED, STALE or NOT_NAMED."""
        if self.vantage.is_stale(marker):
            return STALE
        if self.names is None:
            return TRIP
        if marker.name not in self.names:
            self._other_marker_seen = True
            return NOT_NAMED
        self.counted[marker.name] = marker
        if self.require == REQUIRE_ANY or len(self.counted) == len(self.names):
            return TRIP
        return COUNTED

    def observe_locks(self, flags: Mapping[str | None, LockFlags]) -> Marker | None:
        """Record each leader's lock; the ``vanished`` marker to trip with if a leader crashed, else None.

        ``flags`` has an entry for every key of :attr:`leader_keys`.
        """
        vanished = None
        for key in self.leader_keys:
            running, restartable = flags[key]
            if running:
                self._seen.add(key)
                if restartable:
                    self._restartable.add(key)
                else:
                    self._restartable.discard(key)
            elif (
                vanished is None
                and key in self._seen
                and key not in self._restartable
                and key not in self.counted
                and not (self.followers and self._other_marker_seen)
            ):
                name = key or DEFAULT_NAME
                reason = f"{name}: {FOLLOWER_GONE_REASON}" if self.followers else VANISHED_REASON
                vanished = Marker(name, kind=KIND_VANISHED, code=None, reason=reason)
        return vanished

    def exit_status(self, tripped: Marker) -> int:
        """The status a step gated on the leaders should exit with, once ``tripped`` has tripped: with
        several names under ``require="all"``, the first non-zero :attr:`Marker.exit_status` in the order
        the names were given (a leader that vanished is 1), else 0; otherwise ``tripped``'s own.

        >>> rules = TripRules(("build", "lint"), "all", vantage=Vantage(None))
        >>> rules.consider(Marker("lint", kind="exitdir", code=2))
        'counted'
        >>> rules.consider(Marker("build", kind="exitdir", code=0))
        'trip'
        >>> rules.exit_status(Marker("build", kind="exitdir", code=0))
        2
        """
        if self.names is None or self.require == REQUIRE_ANY:
            return tripped.exit_status
        ended = dict(self.counted)
        ended.setdefault(tripped.name, tripped)  # a vanished leader is not counted, but it ended
        statuses = (ended[name].exit_status for name in self.names if name in ended)
        return next((status for status in statuses if status != 0), 0)


# What Looks.failed() answers.
RETRY = "retry"  # look again after the interval: the directory may well be fine by then
LOST = "lost"  # the directory is lost for good: the follower fails

# A directory is lost for good only when looks have failed so for this long and this many times, with no
# complete look between: a moment of ESTALE while an NFS server fails over is only retried.
LOST_AFTER_SECONDS = 1.0
LOST_AFTER_LOOKS = 3


class Looks:
    """A follower's failed looks at its directory. Times are given (monotonic seconds), never read.

    Every failed look is retried ``interval`` seconds later (:attr:`retry_at`). A look that failed because
    the directory is unreachable until remounted (``lost=True``: ESTALE, ENOTCONN) answers LOST once such
    looks have lasted LOST_AFTER_SECONDS over LOST_AFTER_LOOKS looks since the last complete look; a look
    that failed for another reason (no file descriptor left) neither starts nor ends that streak. A
    complete look forgets every failure.

    >>> looks = Looks(interval=0.5)
    >>> looks.failed(lost=True, now=0.0), looks.retry_at
    ('retry', 0.5)
    >>> looks.failed(lost=True, now=0.5), looks.failed(lost=True, now=1.0)
    ('retry', 'lost')
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.retry_at: float | None = None  # when to look again; None while the last look was complete
        self.lost_since: float | None = None  # the first lost look of the current streak
        self.lost_looks = 0

    def failed(self, *, lost: bool, now: float) -> str:
        """A look failed at ``now``: RETRY, or LOST when the directory is lost for good."""
        self.retry_at = now + self.interval
        if not lost:
            return RETRY
        if self.lost_since is None:
            self.lost_since = now
        self.lost_looks += 1
        if self.lost_looks >= LOST_AFTER_LOOKS and now - self.lost_since >= LOST_AFTER_SECONDS:
            return LOST
        return RETRY

    def completed(self) -> None:
        """A whole look succeeded: nothing is left to retry."""
        self.retry_at = self.lost_since = None
        self.lost_looks = 0

    def due(self, now: float) -> bool:
        """Whether a failed look is to be retried by ``now``."""
        return self.retry_at is not None and now >= self.retry_at
