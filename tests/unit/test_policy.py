"""The authorization policy's decisions (the full role x resource matrix grows with later features)."""

from __future__ import annotations


from bankhub import policy
from bankhub.models import Membership, Role, User

RM = User("rm1", "rm.wang", "Wang", Role.RM, "bj")
RM2 = User("rm2", "rm.chen", "Chen", Role.RM, "sh")
LI = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1")
ZHOU = User("c2", "c.zhou", "Zhou", Role.CUSTOMER, "sh", rm_id="rm2")
AGENT = User("a1", "agent.zhao", "Zhao", Role.AGENT, "ho")
GONE = User("c3", "c.gone", "Gone", Role.CUSTOMER, "bj", rm_id="rm1", disabled=True)


def test_direct_conversations_follow_the_rm_book() -> None:
    assert policy.may_open_direct(LI, RM).allowed
    assert policy.may_open_direct(RM, LI).allowed
    assert policy.may_open_direct(LI, RM2).code == "forbidden"  # not my RM
    assert policy.may_open_direct(RM2, LI).code == "forbidden"  # not in his book
    assert policy.may_open_direct(LI, ZHOU).code == "forbidden"  # no customer-to-customer yet
    assert policy.may_open_direct(AGENT, LI).code == "forbidden"  # agents go through the service desk
    assert policy.may_open_direct(RM, AGENT).allowed  # staff to staff
    assert not policy.may_open_direct(RM, RM).allowed  # not with oneself
    assert not policy.may_open_direct(GONE, RM).allowed
    assert not policy.may_open_direct(RM, GONE).allowed


def test_groups_are_staff_made_and_hold_only_their_own_customers() -> None:
    assert policy.may_create_group(RM, [LI, AGENT]).allowed
    assert policy.may_create_group(RM, [ZHOU]).code == "forbidden"
    assert policy.may_create_group(LI, [RM]).code == "forbidden"
    assert policy.may_create_group(RM, [GONE]).code == "forbidden"


def test_conversation_access_is_membership_and_denials_do_not_reveal_existence() -> None:
    member = Membership("conv", "direct", LI.id, "member", 0, 3)
    assert policy.may_send(LI, member).allowed
    assert policy.may_read_conversation(LI, member).allowed
    assert policy.may_send(ZHOU, None).code == "not_found"
    assert policy.may_send(ZHOU, member).code == "not_found"  # someone else's membership
    assert policy.may_send(GONE, Membership("conv", "direct", GONE.id, "member", 0, 0)).code == "forbidden"
    assert policy.may_issue_ws_ticket(LI).allowed and not policy.may_issue_ws_ticket(GONE).allowed


def test_a_former_rm_keeps_no_book_after_a_role_change() -> None:
    """A role change leaves the customers' rm_id pointing at the former RM: every decision
    checks the role of that principal too, not only the id."""
    former = User("rm1", "rm.wang", "Wang", Role.STAFF, "bj")
    assert policy.may_create_group(RM, [LI]).allowed
    assert policy.may_create_group(former, [LI]).code == "forbidden"
    assert policy.may_view_customer_card(RM, LI, ["bj"], False).allowed
    assert policy.may_view_customer_card(former, LI, ["bj"], False).code == "not_found"
    assert policy.may_open_direct(LI, RM).allowed
    assert policy.may_open_direct(LI, former).code == "forbidden"
    assert policy.may_open_direct(former, LI).code == "forbidden"
