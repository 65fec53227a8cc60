"""The trip rules (``exitdir._rules``), checked with hypothesis against a reference model.

:class:`TripRules` is incremental: it keeps a dict of counted markers and sets of leaders seen and marked
restartable, and updates them on every call. The reference model here deliberately keeps no state at all:
the expected answer to event ``i`` is computed from the whole history ``events[:i + 1]`` by scanning it
("the last lock event before ``i`` in which this leader was running, and whether it was restartable
there"). A model that mirrored the implementation's sets would share its mistakes; one that re-derives
every answer from the history in a different shape only agrees with it if both say what the rules say.

Besides the model test, each rule has its own property (so a failure names the rule that broke), and
three plain examples show the rules as a reader would use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from exitdir._config import DEFAULT_NAME
from exitdir._marker import FOLLOWER_GONE_REASON, KIND_VANISHED, VANISHED_REASON, Marker
from exitdir._rules import (
    COUNTED,
    LOST,
    LOST_AFTER_LOOKS,
    LOST_AFTER_SECONDS,
    NOT_NAMED,
    RETRY,
    STALE,
    TRIP,
    Looks,
    TripRules,
    Vantage,
)

# A small alphabet so that generated histories repeat names, which is where the rules get interesting.
# DEFAULT_NAME is a leader name like any other (a leader that never set one), so it may be named too.
LEADERS = ("a", "b", "c", "d", DEFAULT_NAME)
BOOT_IDS = (None, "b1", "b2")
HOSTNAMES = (None, "node-a", "node-b")
# The model test checks everything at once and gets the most examples; the focused ones fewer.
MODEL_EXAMPLES = 300
EXAMPLES = 150


# --- scenarios ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarkerSeen:
    """The follower read a marker ``name`` whose content carried ``boot_id`` and ``hostname``."""

    name: str
    boot_id: str | None
    hostname: str | None = None


@dataclass(frozen=True)
class LocksSeen:
    """The follower looked at the liveness locks: ``flags[key] = (running, restartable)``."""

    flags: dict[str | None, tuple[bool, bool]]


Event = MarkerSeen | LocksSeen


@dataclass(frozen=True)
class Scenario:
    names: tuple[str, ...] | None
    require: str
    boot_id: str | None  # this machine's
    events: tuple[Event, ...]
    hostname: str | None = None  # this machine's
    local: bool = True  # the directory is on a filesystem no other machine writes to

    @property
    def keys(self) -> tuple[str | None, ...]:
        # Spelled out here rather than read from TripRules.leader_keys: that is part of what is tested.
        return self.names if self.names is not None else (None,)


@dataclass(frozen=True)
class Run:
    answers: list[str | None]  # a verdict per marker, the vanished leader's name (or None) per lock look
    fed: list[Marker | None]  # the Marker object given to consider() at each marker event
    vanished: list[Marker]  # every marker observe_locks() returned
    rules: TripRules


named_configs = st.lists(st.sampled_from(LEADERS), min_size=1, max_size=4, unique=True).map(tuple)
names_configs = st.none() | named_configs
requires = st.sampled_from(("all", "any"))
boot_ids = st.sampled_from(BOOT_IDS)
hostnames = st.sampled_from(HOSTNAMES)
marker_events = st.builds(MarkerSeen, st.sampled_from(LEADERS), boot_ids, hostnames)


def lock_events(keys: tuple[str | None, ...]) -> st.SearchStrategy[LocksSeen]:
    # Restartable one time in four: a leader is only reported vanished if it was not, at its last sighting.
    pair = st.tuples(st.booleans(), st.sampled_from((False, False, False, True)))
    return st.fixed_dictionaries({key: pair for key in keys}).map(LocksSeen)


@st.composite
def scenarios(
    draw: st.DrawFn,
    names: st.SearchStrategy[tuple[str, ...] | None] = names_configs,
    max_events: int = 30,
) -> Scenario:
    chosen = draw(names)
    keys = chosen if chosen is not None else (None,)
    markers = marker_events
    if chosen is not None:
        # Mostly the named leaders' markers: uniform names would rarely complete a require="all".
        markers = st.builds(MarkerSeen, st.sampled_from(chosen), boot_ids, hostnames) | marker_events
    locks = lock_events(keys)
    # Length and mix drawn per scenario: st.lists alone keeps most histories too short to trip "all" or
    # to vanish, and a fixed mix either counts every named leader early (so none can vanish) or rarely
    # completes "all". In tenths, how many events are markers:
    length = draw(st.integers(0, max_events))
    marker_tenths = draw(st.integers(1, 9))
    events: list[Event] = []
    for _ in range(length):
        events.append(draw(markers) if draw(st.integers(0, 9)) < marker_tenths else draw(locks))
    here = draw(hostnames)
    return Scenario(chosen, draw(requires), draw(boot_ids), tuple(events), here, draw(st.booleans()))


named_scenarios = scenarios(names=named_configs)


def run(scenario: Scenario) -> Run:
    """Feed ``scenario`` to a fresh TripRules, recording what it answered to each event."""
    here = Vantage(scenario.boot_id, scenario.hostname, local=scenario.local)
    rules = TripRules(scenario.names, scenario.require, vantage=here)
    answers: list[str | None] = []
    fed: list[Marker | None] = []
    vanished: list[Marker] = []
    for event in scenario.events:
        if isinstance(event, MarkerSeen):
            marker = Marker(
                event.name, kind="exitdir", code=0, boot_id=event.boot_id, hostname=event.hostname
            )
            fed.append(marker)
            answers.append(rules.consider(marker))
        else:
            fed.append(None)
            found = rules.observe_locks(dict(event.flags))
            answers.append(None if found is None else found.name)
            if found is not None:
                vanished.append(found)
    return Run(answers, fed, vanished, rules)


# --- the reference model: every answer re-derived from the history -----------------------------------


def model_is_stale(scenario: Scenario, event: MarkerSeen) -> bool:
    # A marker without a boot id (an empty file) is never stale; nor is any marker on a machine whose
    # boot id is unknown. Otherwise it is stale when it was written here before a reboot: another boot id,
    # and here means a local directory, or a marker that names this host.
    written_here = scenario.local or (event.hostname is not None and event.hostname == scenario.hostname)
    return (
        None not in (event.boot_id, scenario.boot_id) and event.boot_id != scenario.boot_id and written_here
    )


def model_counts(scenario: Scenario, event: Event) -> bool:
    """Whether ``event`` is a marker the rules record as a named leader's."""
    return (
        isinstance(event, MarkerSeen)
        and scenario.names is not None
        and event.name in scenario.names
        and not model_is_stale(scenario, event)
    )


def model_verdict(scenario: Scenario, history: Sequence[Event]) -> str:
    """What the rules answer to the marker ``history[-1]``."""
    marker = history[-1]
    assert isinstance(marker, MarkerSeen)
    if model_is_stale(scenario, marker):
        return STALE
    if scenario.names is None:
        return TRIP
    if marker.name not in scenario.names:
        return NOT_NAMED
    if scenario.require == "any":
        return TRIP
    # No latch: "all" keeps answering TRIP once every name has had a counting marker, at any time.
    have = {
        event.name for event in history if isinstance(event, MarkerSeen) and model_counts(scenario, event)
    }
    return TRIP if have == set(scenario.names) else COUNTED


def model_vanished(scenario: Scenario, history: Sequence[Event]) -> str | None:
    """The leader the lock look ``history[-1]`` reports as crashed, by name, or None."""
    now = history[-1]
    assert isinstance(now, LocksSeen)
    earlier = history[:-1]
    for key in scenario.keys:
        running_now, _ = now.flags[key]
        if running_now:
            continue
        sightings = [e.flags[key][1] for e in earlier if isinstance(e, LocksSeen) and e.flags[key][0]]
        if not sightings:
            continue  # never seen running: it may simply not have started yet
        if sightings[-1]:
            continue  # restartable when last seen: its restart is expected
        if any(isinstance(e, MarkerSeen) and e.name == key and model_counts(scenario, e) for e in earlier):
            continue  # it said goodbye before going
        return DEFAULT_NAME if key is None else key
    return None


def model_answer(scenario: Scenario, i: int) -> str | None:
    history = scenario.events[: i + 1]
    if isinstance(history[-1], MarkerSeen):
        return model_verdict(scenario, history)
    return model_vanished(scenario, history)


def model_counted(scenario: Scenario) -> dict[str, int]:
    """Which event's marker each named leader has on record at the end: the last one that counted."""
    last: dict[str, int] = {}
    for i, event in enumerate(scenario.events):
        if isinstance(event, MarkerSeen) and model_counts(scenario, event):
            last[event.name] = i
    return last


# --- the model test ----------------------------------------------------------------------------------


@settings(max_examples=MODEL_EXAMPLES, deadline=None)
@given(scenarios())
def test_rules_agree_with_the_history_model(scenario: Scenario) -> None:
    result = run(scenario)
    expected = [model_answer(scenario, i) for i in range(len(scenario.events))]
    assert result.answers == expected
    # The counted marker is the very object last given for that name: later markers replace earlier ones.
    assert {name: id(marker) for name, marker in result.rules.counted.items()} == {
        name: id(result.fed[i]) for name, i in model_counted(scenario).items()
    }
    assert result.rules.leader_keys == scenario.keys
    for marker in result.vanished:  # a crash is reported, not made up: no exit code, no leader details
        assert (marker.kind, marker.code, marker.reason) == (KIND_VANISHED, None, VANISHED_REASON)
        assert (marker.pid, marker.boot_id, marker.problem) == (None, None, None)


# --- one property per rule ---------------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenarios())
def test_stale_markers_never_trip_and_are_never_counted(scenario: Scenario) -> None:
    result = run(scenario)
    for event, answer in zip(scenario.events, result.answers, strict=True):
        if isinstance(event, MarkerSeen) and model_is_stale(scenario, event):
            assert answer == STALE
    assert not any(
        model_is_stale(scenario, MarkerSeen(m.name, m.boot_id, m.hostname))
        for m in result.rules.counted.values()
    )
    # Stronger: stale markers are invisible. Without them every other event gets the same answer.
    fresh = tuple(
        e for e in scenario.events if not (isinstance(e, MarkerSeen) and model_is_stale(scenario, e))
    )
    kept = [
        answer
        for event, answer in zip(scenario.events, result.answers, strict=True)
        if not (isinstance(event, MarkerSeen) and model_is_stale(scenario, event))
    ]
    assert run(replace(scenario, events=fresh)).answers == kept


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    names=named_configs,
    boot_id=boot_ids,
    noise=st.lists(marker_events, max_size=8),
    data=st.data(),
)
def test_all_trips_when_the_last_named_leader_arrives_whatever_the_order(
    names: tuple[str, ...], boot_id: str | None, noise: list[MarkerSeen], data: st.DataObject
) -> None:
    # One fresh marker per named leader, among markers that may be stale, unnamed or repeats.
    fresh = [MarkerSeen(name, data.draw(st.sampled_from((None, boot_id)))) for name in names]
    arrivals = data.draw(st.permutations([*fresh, *noise]))
    scenario = Scenario(names, "all", boot_id, tuple(arrivals))
    answers = run(scenario).answers
    # The first trip comes exactly when the last named leader's first fresh marker arrives.
    complete = max(
        min(i for i, e in enumerate(arrivals) if e.name == name and model_counts(scenario, e))
        for name in names
    )
    assert TRIP not in answers[:complete]
    assert answers[complete] == TRIP


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    names=named_configs,
    require=requires,
    boot_id=boot_ids,
    markers=st.lists(marker_events, max_size=12),
    data=st.data(),
)
def test_arrival_order_never_changes_whether_the_rules_trip(
    names: tuple[str, ...],
    require: str,
    boot_id: str | None,
    markers: list[MarkerSeen],
    data: st.DataObject,
) -> None:
    shuffled = data.draw(st.permutations(markers))
    first = run(Scenario(names, require, boot_id, tuple(markers)))
    second = run(Scenario(names, require, boot_id, tuple(shuffled)))
    assert (TRIP in first.answers) == (TRIP in second.answers)
    assert first.rules.counted.keys() == second.rules.counted.keys()


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_a_leader_never_seen_running_is_never_reported_vanished(
    scenario: Scenario, data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(scenario.keys))
    # Whatever else happens, this leader's lock is never held.
    events = tuple(
        LocksSeen({**e.flags, key: (False, e.flags[key][1])}) if isinstance(e, LocksSeen) else e
        for e in scenario.events
    )
    reported = {m.name for m in run(replace(scenario, events=events)).vanished}
    assert (DEFAULT_NAME if key is None else key) not in reported


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenarios())
def test_a_leader_last_seen_restartable_is_never_reported_vanished(scenario: Scenario) -> None:
    result = run(scenario)
    for i, (event, answer) in enumerate(zip(scenario.events, result.answers, strict=True)):
        if not isinstance(event, LocksSeen) or answer is None:
            continue
        key = None if scenario.names is None else answer
        sightings = [
            e.flags[key][1] for e in scenario.events[:i] if isinstance(e, LocksSeen) and e.flags[key][0]
        ]
        assert sightings, "reported a leader never seen running"
        assert not sightings[-1], "reported a leader whose last sighting was restartable"


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenario=named_scenarios, data=st.data())
def test_a_leader_with_a_counted_marker_is_never_reported_vanished(
    scenario: Scenario, data: st.DataObject
) -> None:
    assert scenario.names is not None
    name = data.draw(st.sampled_from(scenario.names))
    # The leader's marker (no boot id: never stale) arrives somewhere in the history: from then on, a
    # missing lock means it exited cleanly, not that it crashed.
    position = data.draw(st.integers(0, len(scenario.events)))
    events = (*scenario.events[:position], MarkerSeen(name, None), *scenario.events[position:])
    result = run(replace(scenario, events=events))
    assert name not in result.answers[position + 1 :]
    assert name in result.rules.counted


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenario=scenarios(names=st.none()), name=st.sampled_from(LEADERS))
def test_without_names_a_marker_without_boot_id_always_trips(scenario: Scenario, name: str) -> None:
    # Go parity: an empty exitFile ends the wait on any machine, whatever came before it.
    for position in range(len(scenario.events) + 1):
        events = (*scenario.events[:position], MarkerSeen(name, None))
        assert run(replace(scenario, events=events)).answers[-1] == TRIP


# --- examples ----------------------------------------------------------------------------------------


def test_example_all_waits_for_every_named_leader_and_ignores_stale_markers() -> None:
    rules = TripRules(("db", "api"), "all", vantage=Vantage("b1"))
    assert rules.consider(Marker("db", kind="empty", code=0)) == COUNTED  # no boot id: never stale
    assert rules.consider(Marker("cache", kind="empty", code=0)) == NOT_NAMED
    assert rules.consider(Marker("api", kind="exitdir", code=0, boot_id="b0")) == STALE  # before a reboot
    assert sorted(rules.counted) == ["db"]
    assert rules.consider(Marker("api", kind="exitdir", code=0, boot_id="b1")) == TRIP
    # No latch: the rules keep answering; stopping after the first trip is the token's job.
    assert rules.consider(Marker("db", kind="exitdir", code=1, boot_id="b1")) == TRIP
    assert rules.counted["db"].code == 1


def test_example_a_leader_that_loses_its_lock_without_a_marker_has_crashed() -> None:
    rules = TripRules(("db", "api"), "any", vantage=Vantage(None))
    # Nobody seen yet: a missing lock means "not started", not "crashed".
    assert rules.observe_locks({"db": (False, False), "api": (False, False)}) is None
    assert rules.observe_locks({"db": (True, False), "api": (False, False)}) is None
    # db's lock is gone and it wrote no marker: it crashed. api is seen running in the same look.
    vanished = rules.observe_locks({"db": (False, False), "api": (True, False)})
    assert vanished is not None
    assert (vanished.name, vanished.kind, vanished.code) == ("db", KIND_VANISHED, None)
    # db's marker turns up late: a leader with a counted marker exited cleanly, so only api is reported.
    assert rules.consider(Marker("db", kind="empty", code=0)) == TRIP
    vanished = rules.observe_locks({"db": (False, False), "api": (False, False)})
    assert vanished is not None
    assert vanished.name == "api"
    # A restartable leader that goes away is expected back: no crash.
    assert rules.observe_locks({"db": (False, False), "api": (True, True)}) is None
    assert rules.observe_locks({"db": (False, False), "api": (False, True)}) is None


def test_example_without_names_the_lone_leader_is_reported_as_exit_file() -> None:
    rules = TripRules(None, "all", vantage=Vantage("b1"))
    assert rules.leader_keys == (None,)
    assert rules.observe_locks({None: (True, False)}) is None
    vanished = rules.observe_locks({None: (False, False)})
    assert vanished is not None
    assert vanished.name == DEFAULT_NAME


# --- failed looks (Looks) ------------------------------------------------------------------------------

# A look at the directory: "ok" (complete), "lacking" (ran out of something), "lost" (ESTALE, ENOTCONN).
LOOK_KINDS = ("ok", "lacking", "lost")
looks_histories = st.lists(
    st.tuples(st.sampled_from(LOOK_KINDS), st.floats(min_value=0.0, max_value=0.6)), max_size=30
)


def model_lost(history: Sequence[tuple[str, float]]) -> bool:
    """Whether the last look (a lost one) fails the follower, from the whole history and no state: the
    lost looks after the last complete one span LOST_AFTER_SECONDS, and there are LOST_AFTER_LOOKS."""
    lost_times = [at for kind, at in history[_after_last_ok(history) :] if kind == "lost"]
    return len(lost_times) >= LOST_AFTER_LOOKS and lost_times[-1] - lost_times[0] >= LOST_AFTER_SECONDS


def _after_last_ok(history: Sequence[tuple[str, float]]) -> int:
    oks = [i for i, (kind, _) in enumerate(history) if kind == "ok"]
    return oks[-1] + 1 if oks else 0


@settings(max_examples=MODEL_EXAMPLES)
@given(looks_histories, st.sampled_from([0.01, 0.25, 1.0]))
def test_failed_looks_match_a_stateless_model(steps: list[tuple[str, float]], interval: float) -> None:
    looks = Looks(interval)
    now = 0.0
    history: list[tuple[str, float]] = []
    for kind, gap in steps:
        now += gap
        history.append((kind, now))
        if kind == "ok":
            looks.completed()
            assert looks.retry_at is None  # nothing is left to retry
            assert not looks.due(now + 1e9)
            continue
        answer = looks.failed(lost=kind == "lost", now=now)
        assert looks.retry_at == now + interval  # every failed look is looked at again
        assert not looks.due(now) or interval == 0
        assert looks.due(now + interval)
        expected = LOST if kind == "lost" and model_lost(history) else RETRY
        assert answer == expected, history
        if answer == LOST:
            return  # the follower has failed: nothing more is asked of the rules


def test_a_moment_of_estale_is_only_retried() -> None:
    looks = Looks(0.25)
    assert [looks.failed(lost=True, now=t) for t in (0.0, 0.25, 0.5, 0.75)] == [RETRY] * 4  # under 1 s
    looks.completed()  # the server came back
    assert [looks.failed(lost=True, now=t) for t in (2.0, 2.5, 3.0)] == [RETRY, RETRY, LOST]


def test_running_out_of_descriptors_never_fails_a_follower() -> None:
    looks = Looks(0.25)
    assert {looks.failed(lost=False, now=t / 4) for t in range(400)} == {RETRY}


def test_a_marker_from_another_machine_on_a_shared_directory_is_fresh() -> None:
    """Issue 12: on NFS or SMB every marker written on another node has another boot id; ignoring those
    as "written before this machine last booted" made 0 of 8 cross-node markers trip a follower."""
    here = Vantage("b-node-b", "node-b", local=False)
    rules = TripRules(None, "all", vantage=here)
    from_node_a = Marker("exitFile", kind="exitdir", code=0, boot_id="b-node-a", hostname="node-a")
    assert rules.consider(from_node_a) == TRIP
    # The same marker in a local directory (a hostPath, an emptyDir) was written here, before a reboot.
    assert TripRules(None, "all", vantage=Vantage("b-node-b", "node-b")).consider(from_node_a) == STALE
    # On the shared directory, a marker naming this host and another boot id is this host's, from before.
    ours_before = Marker("exitFile", kind="exitdir", code=0, boot_id="b-old", hostname="node-b")
    assert TripRules(None, "all", vantage=here).consider(ours_before) == STALE


def test_example_a_follower_reporting_failure_that_goes_without_its_marker_is_gone() -> None:
    """lead --stop-on proxy: the same rules over the followers' locks; only the reason differs."""
    rules = TripRules(("proxy",), "any", vantage=Vantage(None), followers=True)
    assert rules.observe_locks({"proxy": (False, False)}) is None  # never seen: nothing happens
    assert rules.observe_locks({"proxy": (True, False)}) is None
    gone = rules.observe_locks({"proxy": (False, False)})
    assert gone is not None
    assert (gone.name, gone.kind, gone.code, gone.exit_status) == ("proxy", KIND_VANISHED, None, 1)
    assert gone.reason == f"proxy: {FOLLOWER_GONE_REASON}"
    # Its report, when it is there, trips first, and a lock gone after it is no crash.
    reported = TripRules(("proxy",), "any", vantage=Vantage(None), followers=True)
    assert reported.observe_locks({"proxy": (True, False)}) is None
    assert reported.consider(Marker("proxy", kind="exitdir", code=3)) == TRIP
    assert reported.observe_locks({"proxy": (False, False)}) is None
    # Another leader's marker came: the follower may well have ended because of it, on purpose.
    ended = TripRules(("proxy",), "any", vantage=Vantage(None), followers=True)
    assert ended.observe_locks({"proxy": (True, False)}) is None
    assert ended.consider(Marker("other", kind="exitdir", code=0)) == NOT_NAMED
    assert ended.observe_locks({"proxy": (False, False)}) is None
    # For leaders it changes nothing: a named leader gone without its marker has crashed.
    leaders = TripRules(("db",), "any", vantage=Vantage(None))
    assert leaders.observe_locks({"db": (True, False)}) is None
    assert leaders.consider(Marker("other", kind="exitdir", code=0)) == NOT_NAMED
    assert leaders.observe_locks({"db": (False, False)}) is not None


def _status_marker(name: str, code: int | None) -> Marker:
    if code is None:
        return Marker(name, kind=KIND_VANISHED, code=None, reason=VANISHED_REASON)
    return Marker(name, kind="exitdir", code=code)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    codes=st.dictionaries(st.sampled_from(LEADERS), st.integers(0, 255), min_size=1),
    require=st.sampled_from(["all", "any"]),
    vanished=st.booleans(),
)
def test_the_exit_status_is_the_first_failure_in_the_order_given(
    codes: dict[str, int], require: str, vanished: bool
) -> None:
    """wait --exit-code leader: under "all", the first non-zero status in the order of the names (a
    vanished leader is 1), else 0; under "any", the status of the marker that tripped."""
    names = tuple(codes)
    rules = TripRules(names, require, vantage=Vantage(None))
    ended = {name: _status_marker(name, code) for name, code in codes.items()}
    if vanished:  # the last named leader crashed instead of writing its marker
        ended[names[-1]] = _status_marker(names[-1], None)
    tripped = None
    for name in names:
        if ended[name].kind == KIND_VANISHED:
            tripped = ended[name]
            break
        if rules.consider(ended[name]) == TRIP:
            tripped = ended[name]
            break
    assert tripped is not None
    if require == "any":
        expected = tripped.exit_status
    else:
        statuses = [1 if ended[name].code is None else ended[name].code for name in names]
        expected = next((status for status in statuses if status), 0)
    assert rules.exit_status(tripped) == expected
