"""Legal holds, pure: validation, the matching rule clause by clause, state, and the policy."""

from __future__ import annotations

import datetime as dt

import pytest

from bankhub import policy
from bankhub.compliance.holds import (
    HoldInvalid,
    HoldScope,
    hold_state,
    holds_message,
    validate_hold,
    validate_release_reason,
)
from bankhub.models import Role, User
from bankhub.storage.holds import HELD_MESSAGE_SQL, HOLD_LOCK_KEY

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
T1 = dt.datetime(2026, 4, 1, tzinfo=UTC)
CONV = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
ALICE = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
BOB = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"


# --- validation ---------------------------------------------------------------------------


def test_a_hold_names_a_custodian_or_a_conversation() -> None:
    with pytest.raises(HoldInvalid, match="custodian, a conversation"):
        validate_hold("case", None, HoldScope(None, None))
    validate_hold("case", None, HoldScope(ALICE, None))
    validate_hold("case", None, HoldScope(None, CONV))
    validate_hold("case", None, HoldScope(ALICE, CONV))


def test_from_must_be_before_to() -> None:
    validate_hold("case", None, HoldScope(ALICE, None, T0, T1))
    validate_hold("case", None, HoldScope(ALICE, None, T0, None))
    validate_hold("case", None, HoldScope(ALICE, None, None, T1))
    for start, end in ((T1, T0), (T0, T0)):
        with pytest.raises(HoldInvalid, match="from must be before to"):
            validate_hold("case", None, HoldScope(ALICE, None, start, end))


def test_times_carry_an_offset() -> None:
    with pytest.raises(HoldInvalid, match="offset"):
        validate_hold("case", None, HoldScope(ALICE, None, dt.datetime(2026, 1, 1), None))


def test_times_are_within_the_representable_range() -> None:
    early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # before year 1 in UTC
    late = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # after 9999 in UTC
    with pytest.raises(HoldInvalid, match="from is out of range"):
        validate_hold("case", None, HoldScope(ALICE, None, early, None))
    with pytest.raises(HoldInvalid, match="to is out of range"):
        validate_hold("case", None, HoldScope(ALICE, None, None, late))


@pytest.mark.parametrize("name", ["", "x" * 121, "   ", "two\nlines", "tab\there", "nul\x00", "bidi\u202eevil", "\u2028"])
def test_names_are_one_printable_line_of_1_to_120(name: str) -> None:
    with pytest.raises(HoldInvalid, match="name"):
        validate_hold(name, None, HoldScope(ALICE, None))


def test_names_at_the_bounds_and_in_any_script() -> None:
    validate_hold("x", None, HoldScope(ALICE, None))
    validate_hold("x" * 120, None, HoldScope(ALICE, None))
    validate_hold("反洗钱调查 2026-17", None, HoldScope(ALICE, None))


@pytest.mark.parametrize("case_ref", ["", "c" * 65, "a\nb", " "])
def test_case_ref_is_bounded(case_ref: str) -> None:
    with pytest.raises(HoldInvalid, match="case_ref"):
        validate_hold("case", case_ref, HoldScope(ALICE, None))
    validate_hold("case", "c" * 64, HoldScope(ALICE, None))


def test_a_release_needs_a_reason() -> None:
    for bad in ("", " ", "r" * 501, "a\rb"):
        with pytest.raises(HoldInvalid, match="reason"):
            validate_release_reason(bad)
    assert validate_release_reason("case closed by court order 17") == "case closed by court order 17"


# --- matching -----------------------------------------------------------------------------


def held(scope: HoldScope, *, conversation: str = CONV, at: dt.datetime = T0, members: tuple[str, ...] = (ALICE,), released: bool = False) -> bool:
    return holds_message(scope, conversation_id=conversation, created_at=at, ever_members=members, released=released)


def test_conversation_clause() -> None:
    scope = HoldScope(None, CONV)
    assert held(scope)
    assert held(scope, members=())  # membership does not matter without a custodian
    assert not held(scope, conversation=OTHER)


def test_custodian_clause_covers_every_conversation_they_were_ever_in() -> None:
    scope = HoldScope(ALICE, None)
    # ever_members is the membership history: a custodian who left is still in it
    assert held(scope, members=(ALICE, BOB))
    assert held(scope, conversation=OTHER, members=(ALICE,))
    assert not held(scope, members=(BOB,))
    assert not held(scope, members=())


def test_custodian_and_conversation_both_must_hold() -> None:
    scope = HoldScope(ALICE, CONV)
    assert held(scope, members=(ALICE,))
    assert not held(scope, members=(BOB,))
    assert not held(scope, conversation=OTHER, members=(ALICE,))


def test_date_range_from_inclusive_to_exclusive() -> None:
    scope = HoldScope(None, CONV, T0, T1)
    tick = dt.timedelta(microseconds=1)
    assert held(scope, at=T0)  # from: inclusive
    assert not held(scope, at=T0 - tick)
    assert held(scope, at=T1 - tick)
    assert not held(scope, at=T1)  # to: exclusive
    # open ends
    assert held(HoldScope(None, CONV, T0, None), at=T1 + dt.timedelta(days=3650))
    assert not held(HoldScope(None, CONV, T0, None), at=T0 - tick)
    assert held(HoldScope(None, CONV, None, T1), at=dt.datetime(1990, 1, 1, tzinfo=UTC))
    assert not held(HoldScope(None, CONV, None, T1), at=T1)


def test_offsets_compare_as_instants() -> None:
    beijing = dt.timezone(dt.timedelta(hours=8))
    scope = HoldScope(None, CONV, dt.datetime(2026, 3, 1, 8, 0, tzinfo=beijing), None)  # == T0
    assert held(scope, at=T0)
    assert not held(scope, at=T0 - dt.timedelta(seconds=1))


def test_a_released_hold_holds_nothing() -> None:
    assert not held(HoldScope(None, CONV), released=True)


def test_state() -> None:
    assert hold_state(released=False, release_requested=False) == "active"
    assert hold_state(released=False, release_requested=True) == "release_pending"
    assert hold_state(released=True, release_requested=True) == "released"


def test_the_sql_interface_is_what_the_contract_names() -> None:
    # purge embeds the expression for a message aliased m; only m and its own aliases appear
    assert "m.conversation_id" in HELD_MESSAGE_SQL and "m.created_at" in HELD_MESSAGE_SQL
    assert "released_at IS NULL" in HELD_MESSAGE_SQL
    assert ">= _lh.from_at" in HELD_MESSAGE_SQL and "< _lh.to_at" in HELD_MESSAGE_SQL
    assert -(2**63) <= HOLD_LOCK_KEY < 2**63


# --- policy -------------------------------------------------------------------------------


def officer(uid: str, *, role: Role = Role.COMPLIANCE, disabled: bool = False) -> User:
    return User(id=uid, username=f"u{uid[:4]}", display_name="x", role=role, org_id=CONV, disabled=disabled)


A, B = officer(ALICE), officer(BOB)


def test_only_active_compliance_officers_place_and_see_holds() -> None:
    assert policy.may_place_hold(A).allowed and policy.may_view_holds(A).allowed
    for who in (officer(ALICE, role=Role.HEAD_OFFICE_ADMIN), officer(ALICE, role=Role.RM), officer(ALICE, disabled=True)):
        assert policy.may_place_hold(who).code == "forbidden"
        assert policy.may_view_holds(who).code == "forbidden"


def test_release_requests() -> None:
    assert policy.may_request_hold_release(A, released=False, release_pending=False).allowed
    assert policy.may_request_hold_release(A, released=False, release_pending=True).code == "conflict"
    assert policy.may_request_hold_release(A, released=True, release_pending=False).code == "conflict"
    assert policy.may_request_hold_release(officer(ALICE, role=Role.BRANCH_ADMIN), released=False, release_pending=False).code == "forbidden"


def test_dual_control_approval_checks_both_officers() -> None:
    assert policy.may_approve_hold_release(B, A, released=False, release_pending=True).allowed
    own = policy.may_approve_hold_release(A, A, released=False, release_pending=True)
    assert own.code == "forbidden" and "second compliance officer" in own.reason
    assert policy.may_approve_hold_release(officer(BOB, disabled=True), A, released=False, release_pending=True).code == "forbidden"
    assert policy.may_approve_hold_release(officer(BOB, role=Role.HEAD_OFFICE_ADMIN), A, released=False, release_pending=True).code == "forbidden"
    # the requester must still be an active compliance officer when B decides
    assert policy.may_approve_hold_release(B, officer(ALICE, disabled=True), released=False, release_pending=True).code == "conflict"
    assert policy.may_approve_hold_release(B, officer(ALICE, role=Role.RM), released=False, release_pending=True).code == "conflict"
    assert policy.may_approve_hold_release(B, None, released=False, release_pending=False).code == "conflict"
    assert policy.may_approve_hold_release(B, A, released=True, release_pending=True).code == "conflict"


def test_anyone_of_the_officers_may_reject_including_the_requester() -> None:
    assert policy.may_reject_hold_release(A, released=False, release_pending=True).allowed
    assert policy.may_reject_hold_release(B, released=False, release_pending=True).allowed
    assert policy.may_reject_hold_release(B, released=False, release_pending=False).code == "conflict"
    assert policy.may_reject_hold_release(officer(BOB, role=Role.CUSTOMER), released=False, release_pending=True).code == "forbidden"
