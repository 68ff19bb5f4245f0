"""Who may befriend, block and chat with whom (every role pair), and the normalization of
phone numbers and invite codes."""

from __future__ import annotations

import itertools

import pytest

from bankhub import policy
from bankhub.actions.contacts import normalize_code, normalize_phone
from bankhub.desk.system import system_user
from bankhub.models import Membership, Role, User

USERS = {role: User(f"id-{role.value}", f"u.{role.value}", role.value, role, "org") for role in Role}
OTHERS = {role: User(f"id2-{role.value}", f"v.{role.value}", role.value, role, "org") for role in Role}


def _side(role: Role) -> str:
    return "customer" if role is Role.CUSTOMER else "staff"


@pytest.mark.parametrize(("a", "b"), list(itertools.product(Role, Role)))
def test_befriend_every_role_pair(a: Role, b: Role) -> None:
    """Customers befriend customers, staff befriend staff; never across, either way."""
    actor, peer = USERS[a], OTHERS[b]
    decision = policy.may_befriend(actor, peer)
    assert decision.allowed is (_side(a) == _side(b)), (a, b)
    if not decision.allowed:
        assert decision.code == "forbidden"
    # the same rule the other way round: both principals are checked
    assert policy.may_befriend(peer, actor).allowed is decision.allowed
    # a block either way, a disabled user on either side: never
    assert not policy.may_befriend(actor, peer, blocked=True).allowed
    assert policy.may_befriend(User(actor.id, actor.username, "x", a, "org", disabled=True), peer).code == "forbidden"
    assert policy.may_befriend(actor, User(peer.id, peer.username, "x", b, "org", disabled=True)).code == "forbidden"


@pytest.mark.parametrize(("a", "b"), list(itertools.product(Role, Role)))
def test_block_every_role_pair(a: Role, b: Role) -> None:
    """Blocks are between users who could befriend each other: a customer's RM and the
    service desk stay reachable, and staff do not turn customers away."""
    decision = policy.may_block(USERS[a], OTHERS[b])
    assert decision.allowed is (_side(a) == _side(b)), (a, b)
    if not decision.allowed:
        assert decision.code == "forbidden"


def test_befriend_and_block_edge_cases() -> None:
    li = USERS[Role.CUSTOMER]
    staff = USERS[Role.STAFF]
    assert policy.may_befriend(li, None).code == "forbidden"  # no such user
    assert policy.may_befriend(li, li).code == "invalid_request"
    assert policy.may_befriend(staff, system_user("org")).code == "forbidden"  # the hub's system user
    assert policy.may_block(li, li).code == "invalid_request"
    assert policy.may_block(staff, system_user("org")).code == "not_found"
    assert policy.may_manage_contacts(li).allowed
    assert policy.may_manage_contacts(User("x", "c.x", "x", Role.CUSTOMER, "org", disabled=True)).code == "forbidden"


def test_customers_open_direct_conversations_with_contacts_only() -> None:
    rm = User("rm1", "rm.wang", "Wang", Role.RM, "bj")
    li = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1")
    zhang = User("c2", "c.zhang", "Zhang", Role.CUSTOMER, "bj", rm_id="rm1")
    agent = User("a1", "agent.zhao", "Zhao", Role.AGENT, "ho")
    assert policy.may_open_direct(li, zhang).code == "forbidden"
    assert policy.may_open_direct(li, zhang, contacts=True).allowed
    assert policy.may_open_direct(zhang, li, contacts=True).allowed
    assert not policy.may_open_direct(li, zhang, contacts=True, blocked=True).allowed
    # contacts do not open a conversation between a customer and staff
    assert policy.may_open_direct(li, agent, contacts=True).code == "forbidden"
    assert policy.may_open_direct(agent, li, contacts=True).code == "forbidden"
    # staff with staff, unless one blocks the other
    assert policy.may_open_direct(rm, agent).allowed
    assert policy.may_open_direct(rm, agent, blocked=True).code == "forbidden"
    # no such user: a customer hears what any unreachable user gets; staff hear not_found
    assert policy.may_open_direct(li, None) == policy.may_open_direct(li, zhang)
    assert policy.may_open_direct(rm, None).code == "not_found"
    # a disabled contact: no
    gone = User("c3", "c.gone", "Gone", Role.CUSTOMER, "bj", disabled=True)
    assert not policy.may_open_direct(li, gone, contacts=True).allowed


def test_a_customer_gets_one_answer_for_every_peer_they_cannot_reach() -> None:
    """No such user, disabled, a visitor, a block either way, not a contact: one decision."""
    li = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1")
    zhang = User("c2", "c.zhang", "Zhang", Role.CUSTOMER, "bj")
    gone = User("c3", "c.gone", "Gone", Role.CUSTOMER, "bj", disabled=True)
    guest = User("c4", "c.guest", "Guest", Role.CUSTOMER, "bj", visitor=True)
    stranger = policy.may_open_direct(li, zhang)
    assert not stranger.allowed
    for decision in (
        policy.may_open_direct(li, None),
        policy.may_open_direct(li, gone, contacts=True),
        policy.may_open_direct(li, guest, contacts=True),
        policy.may_open_direct(li, zhang, contacts=True, blocked=True),
    ):
        assert decision == stranger
    # staff still learn the facts (they are not customers probing accounts)
    rm = User("rm1", "rm.wang", "Wang", Role.RM, "bj")
    assert policy.may_open_direct(rm, None).code == "not_found"
    # groups: a disabled contact, a visitor and a blocked one are "not one of your contacts" alike
    owner = Membership("g", "group", "c1", "owner", 0, 0)
    for peer, contact in ((gone, True), (guest, False), (zhang, False)):
        expected = (False, "forbidden", f"{peer.username} is not one of your contacts")
        created = policy.may_create_group(li, [peer], contacts={peer.id} if contact else set())
        assert (created.allowed, created.code, created.reason) == expected
        invited = policy.may_invite_to_group(
            li, owner, peer, org_bound=False, is_contact=contact, already_member=False, members=2, max_members=10, staff=()
        )
        assert (invited.allowed, invited.code, invited.reason) == expected
    # befriending (an invite code): a block reads as a disabled account, not as a block
    assert policy.may_befriend(li, zhang, blocked=True) == policy.may_befriend(li, gone) == policy.may_befriend(li, None)
    # staff are told an account is disabled
    agent = User("a1", "agent.zhao", "Zhao", Role.AGENT, "ho")
    gone_staff = User("a2", "agent.gone", "Gone", Role.AGENT, "ho", disabled=True)
    assert policy.may_create_group(agent, [gone_staff]).reason == "agent.gone is disabled"


def test_nobody_sends_into_a_blocked_direct_conversation() -> None:
    li = User("c1", "c.li", "Li", Role.CUSTOMER, "bj")
    direct = Membership("conv", "direct", "c1", "member", 0, 0)
    group = Membership("conv", "group", "c1", "member", 0, 0)
    assert policy.may_send(li, direct).allowed
    assert policy.may_send(li, direct, blocked=True).code == "forbidden"
    assert policy.may_send(li, group, blocked=True).allowed  # blocks concern direct conversations
    assert policy.may_send(li, None, blocked=True).code == "not_found"  # membership is checked first


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("13800000001", "+8613800000001"),
        ("138 0000 0001", "+8613800000001"),
        ("+86 138-0000-0001", "+8613800000001"),
        ("008613800000001", "+8613800000001"),
        ("(+1) 415.555.0100", "+14155550100"),
        ("12345", None),
        ("+0123456789", None),
        ("4155550100", None),  # no country code and not a mainland mobile number
        ("+1234567890123456", None),  # over 15 digits
        ("+٨٦١٣٨٠٠٠٠٠٠٠١", None),  # non-ASCII digits
    ],
)
def test_phone_numbers_normalize_to_e164(raw: str, normal: str | None) -> None:
    assert normalize_phone(raw) == normal


def test_invite_codes_normalize() -> None:
    assert normalize_code("abcd-efgh-jkmn-pqrs") == "ABCDEFGHJKMNPQRS"
    assert normalize_code("bankhub://contact/ABCDEFGHJKMNPQRS") == "ABCDEFGHJKMNPQRS"
    assert normalize_code("oiL0 0000 0000 0000") == "0110000000000000"  # look-alikes read as digits
    assert normalize_code("ABCDEFGHJKMNPQR") is None  # too short
    assert normalize_code("ABCDEFGHJKMNPQRU") is None  # U is not in the alphabet
    assert normalize_code("https://evil.example/ABCDEFGHJKMNPQRS") is None
