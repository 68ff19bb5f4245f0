"""Retention rules without I/O: which policies apply, longest wins, no policy keeps, the
floor, cutoffs from the database clock; and the purge's per-conversation cutoffs."""

from __future__ import annotations

import datetime as dt

import pytest

from bankhub.actions.retention import cutoffs_for
from bankhub.compliance import retention as rules
from bankhub.compliance.retention import ConversationFacts, Policy, PolicyError
from bankhub.settings import Settings
from bankhub.storage.retention import ConvFacts

NOW = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.timezone.utc)
RM_CHAT = ConversationFacts("direct", frozenset({"u-li", "u-wang"}), frozenset({"customer", "rm"}))
PRIVATE = ConversationFacts("direct", frozenset({"u-li", "u-zhang"}), frozenset({"customer"}))
DESK = ConversationFacts("service", frozenset({"u-li", "u-zhao"}), frozenset({"customer", "agent"}))


def test_each_scope_applies_to_what_it_names() -> None:
    kind, role, user = Policy("kind", "service", 2000), Policy("role", "rm", 3000), Policy("user", "u-zhang", 2500)
    assert rules.applicable([kind, role, user], RM_CHAT) == [role]
    assert rules.applicable([kind, role, user], PRIVATE) == [user]
    assert rules.applicable([kind, role, user], DESK) == [kind]


def test_the_longest_applicable_policy_wins() -> None:
    policies = [Policy("kind", "direct", 1900), Policy("role", "rm", 3650), Policy("user", "u-li", 2200)]
    assert rules.effective_days(policies, RM_CHAT) == 3650
    # the RM's rule does not apply to a chat without an RM: the account's rule is the longest there
    assert rules.effective_days(policies, PRIVATE) == 2200
    # order does not matter
    assert rules.effective_days(list(reversed(policies)), RM_CHAT) == 3650


def test_a_conversation_no_policy_applies_to_is_kept_forever() -> None:
    assert rules.effective_days([], RM_CHAT) is None
    assert rules.effective_days([Policy("kind", "group", 1900), Policy("user", "u-nobody", 1900)], RM_CHAT) is None
    assert rules.cutoff(NOW, None) is None
    assert not rules.is_due(dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc), NOW, None)


def test_the_floor_refuses_shorter_policies() -> None:
    rules.validate_days(1825, 1825)
    rules.validate_days(36500, 1825)
    with pytest.raises(PolicyError) as below:
        rules.validate_days(1824, 1825)
    assert below.value.code == "below_floor"
    for bad in (0, -1, 36501, True):
        with pytest.raises(PolicyError) as exc:
            rules.validate_days(bad, 1)
        assert exc.value.code == "invalid_request"


def test_the_default_floor_covers_five_calendar_years_from_any_day() -> None:
    # five years after any day of a 28-year cycle (every leap-day position) is no later than
    # the default floor: a record is never due before its fifth anniversary
    day = dt.date(2000, 1, 1)
    while day < dt.date(2028, 1, 1):
        fifth = day.replace(year=day.year + 5) if not (day.month == 2 and day.day == 29) else dt.date(day.year + 5, 3, 1)
        assert (fifth - day).days <= rules.DEFAULT_FLOOR_DAYS, day
        day += dt.timedelta(days=1)
    assert Settings().retention_floor_days == rules.DEFAULT_FLOOR_DAYS


def test_values_are_checked_per_scope() -> None:
    rules.validate_value("kind", "service")
    rules.validate_value("role", "compliance")
    rules.validate_value("user", "any-id")  # checked by lookup
    for scope, value in (("kind", "channel"), ("role", "pirate"), ("team", "x")):
        with pytest.raises(PolicyError):
            rules.validate_value(scope, value)


def test_cutoffs_count_back_from_the_database_clock() -> None:
    assert rules.cutoff(NOW, 30) == dt.datetime(2026, 11, 7, 8, 0, tzinfo=dt.timezone.utc)
    just_before = NOW - dt.timedelta(days=30, microseconds=1)
    exactly = NOW - dt.timedelta(days=30)
    assert rules.is_due(just_before, NOW, 30) and not rules.is_due(exactly, NOW, 30)
    with pytest.raises(ValueError):
        rules.cutoff(NOW.replace(tzinfo=None), 30)


def test_the_purge_computes_one_cutoff_per_conversation_with_a_policy() -> None:
    facts = [
        ConvFacts("c1", "direct", frozenset({"u-li", "u-wang"}), frozenset({"customer", "rm"})),
        ConvFacts("c2", "group", frozenset({"u-li"}), frozenset({"customer"})),
        ConvFacts("c3", "direct", frozenset({"u-li", "u-zhang"}), frozenset({"customer"})),
    ]
    out = cutoffs_for([("kind", "direct", 100), ("role", "rm", 400)], facts, NOW, 30)
    assert out == [("c1", NOW - dt.timedelta(days=400)), ("c3", NOW - dt.timedelta(days=100))]
    # a floor raised since the policies were set lengthens the shorter ones, and only those
    out = cutoffs_for([("kind", "direct", 100), ("role", "rm", 400)], facts, NOW, 365)
    assert out == [("c1", NOW - dt.timedelta(days=400)), ("c3", NOW - dt.timedelta(days=365))]


def test_the_floor_in_force_bounds_every_retention_from_below() -> None:
    policies = [Policy("kind", "direct", 100)]
    assert rules.retention_days(policies, PRIVATE, 30) == 100
    assert rules.retention_days(policies, PRIVATE, 1825) == 1825
    assert rules.retention_days([], PRIVATE, 1825) is None


def test_a_fill_steps_over_seqs_a_purge_deleted_below_a_stored_row() -> None:
    """A client at seq 2 whose next messages 3..9 were purged: the live seq 11 asks for
    (2, 11]; storage returns 10 only. 10 was committed after 3..9 (seqs are allocated under
    the conversation's row lock, in commit order), so they are gone, not late: 10 and 11 are
    delivered, no retry waits for 3..9 forever."""
    from bankhub.protocol.streams import Fetch, StreamFollower

    follower: StreamFollower[int] = StreamFollower(lambda s: s)
    follower.cursors.set("c", 2)
    fetch = follower.offer("c", 11, 11)
    assert fetch == Fetch("c", 2, 11)
    filled = follower.filled(fetch, [10])
    assert filled.deliver == [10, 11] and filled.fetch is None
    assert follower.cursors.get("c") == 11
    # a hole ABOVE what storage returned is still only late: the fill is retried
    follower.cursors.set("d", 2)
    fetch = follower.offer("d", 6, 6)
    assert isinstance(fetch, Fetch)
    again = follower.filled(fetch, [3])
    assert again.deliver == [3] and again.fetch == Fetch("d", 3, 6, 1)


def test_a_production_node_purges_at_most_once_a_minute() -> None:
    base = dict(database_url="postgresql://x/y", key_file="/k.json")
    Settings(**base, retention_purge_interval_seconds=0).validate()  # type: ignore[arg-type]
    Settings(**base, retention_purge_interval_seconds=60).validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 60"):
        Settings(**base, retention_purge_interval_seconds=0.5).validate()  # type: ignore[arg-type]


# --- the erasure verdict (PIPL art. 47) -------------------------------------------------------


@pytest.mark.parametrize("staff", ["rm", "agent", "staff", "branch_admin", "head_office_admin", "compliance"])
@pytest.mark.parametrize("kind", ["direct", "group"])
def test_a_conversation_staff_was_ever_in_is_a_record(kind: str, staff: str) -> None:
    from bankhub.compliance.retention import erasure_verdict

    assert erasure_verdict(kind, {"customer", staff}, 0) == "records"
    # records wins over shared and held: it is kept for its retention whatever else is true
    assert erasure_verdict(kind, {"customer", staff}, 3, held=True) == "records"


def test_a_service_desk_conversation_is_a_record_even_with_customers_only() -> None:
    from bankhub.compliance.retention import erasure_verdict

    assert erasure_verdict("service", {"customer"}, 0) == "records"


def test_a_customer_group_others_are_still_in_is_shared() -> None:
    from bankhub.compliance.retention import erasure_verdict

    assert erasure_verdict("group", {"customer"}, 1) == "shared"
    assert erasure_verdict("group", {"customer"}, 2, held=True) == "shared"


def test_a_customer_only_chat_is_shredded_unless_held() -> None:
    from bankhub.compliance.retention import ERASURE_REFUSALS, erasure_verdict

    assert erasure_verdict("direct", {"customer"}, 1) is None  # both parties' copy goes
    assert erasure_verdict("group", {"customer"}, 0) is None  # the subject is its last member
    assert erasure_verdict("direct", {"customer"}, 1, held=True) == "held"
    assert erasure_verdict("group", set(), 0, held=True) == "held"
    assert ERASURE_REFUSALS == ("records", "shared", "held")
