"""Information barriers: the pure rules (bankhub.compliance.barriers) and the policy's
barrier decisions, over every pair of segment memberships."""

from __future__ import annotations

import itertools

import pytest

from bankhub import policy
from bankhub.compliance.barriers import (
    NO_FACTS,
    BarrierError,
    BarrierFacts,
    barred,
    barred_from,
    check_segment_name,
    check_title,
    policy_pair,
    separating,
    valid_segment_name,
)
from bankhub.desk.system import SYSTEM_USER_ID
from bankhub.models import Role, User

IB_RESEARCH = frozenset({policy_pair("ib", "research")})
# every membership a user can have among the three segments (none, one, two, all three)
SEGMENTS = ("ib", "research", "retail")
MEMBERSHIPS = [frozenset(c) for n in range(4) for c in itertools.combinations(SEGMENTS, n)]


def _expected(a: frozenset[str], b: frozenset[str]) -> bool:
    return ("ib" in a and "research" in b) or ("research" in a and "ib" in b)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(MEMBERSHIPS, MEMBERSHIPS)), ids=lambda s: "+".join(sorted(s)) or "none")
def test_barred_over_every_pair_of_memberships(a: frozenset[str], b: frozenset[str]) -> None:
    assert barred(a, b, IB_RESEARCH) is _expected(a, b)
    assert barred(b, a, IB_RESEARCH) is barred(a, b, IB_RESEARCH)  # symmetric
    assert barred(a, b, frozenset()) is False  # no policy: nobody barred
    assert (separating(a, b, IB_RESEARCH) == [policy_pair("ib", "research")]) is _expected(a, b)


def test_same_segment_and_unsegmented_users_are_never_barred() -> None:
    for seg in SEGMENTS:
        assert not barred({seg}, {seg}, IB_RESEARCH)
        assert not barred({seg}, set(), IB_RESEARCH)
        assert not barred(set(), {seg}, IB_RESEARCH)


def test_several_policies_and_users_in_several_segments() -> None:
    policies = frozenset({policy_pair("ib", "research"), policy_pair("retail", "wealth")})
    assert barred({"retail"}, {"wealth"}, policies)
    assert barred({"ib", "retail"}, {"research"}, policies)
    assert not barred({"ib", "retail"}, {"ib", "retail"}, policies)
    assert not barred({"ib"}, {"retail", "ib"}, policies)
    assert separating({"ib", "retail"}, {"research", "wealth"}, policies) == sorted(policies, key=sorted)


def test_policy_pair_is_symmetric_and_refuses_a_segment_with_itself() -> None:
    assert policy_pair("ib", "research") == policy_pair("research", "ib")
    with pytest.raises(BarrierError, match="two different segments"):
        policy_pair("ib", "ib")
    with pytest.raises(BarrierError):
        policy_pair("IB", "research")
    # a malformed pair in stored facts separates nobody
    assert not barred({"ib"}, {"ib"}, frozenset({frozenset({"ib"})}))


@pytest.mark.parametrize(
    ("name", "ok"),
    [("ib", True), ("research", True), ("retail_2", True), ("a-b", True), ("a" * 32, True), ("a" * 33, False),
     ("i", False), ("", False), ("1ib", False), ("IB", False), ("ib research", False), ("ib\n", False), ("_ib", False),
     ("résumé", False)],
)
def test_segment_names(name: str, ok: bool) -> None:
    assert valid_segment_name(name) is ok
    if ok:
        assert check_segment_name(name) == name
    else:
        with pytest.raises(BarrierError):
            check_segment_name(name)


def test_titles() -> None:
    assert check_title("  Investment banking ") == "Investment banking"
    for bad in ("", "   ", "x" * 101, "a\x00b", "line\nbreak"):
        with pytest.raises(BarrierError):
            check_title(bad)


def test_barred_from_and_facts() -> None:
    segments = {"u1": frozenset({"ib"}), "u2": frozenset({"research"}), "u3": frozenset({"retail"})}
    assert barred_from("u1", ["u1", "u2", "u3", "u4"], segments, IB_RESEARCH) == {"u2"}
    assert barred_from("u4", ["u1", "u2"], segments, IB_RESEARCH) == set()
    facts = BarrierFacts(segments=segments, policies=IB_RESEARCH)
    assert facts.between("u1", "u2") and facts.between("u2", "u1")
    assert not facts.between("u1", "u3") and not facts.between("u1", "u4")
    assert not NO_FACTS.between("u1", "u2")


def _user(uid: str, role: Role = Role.STAFF, username: str | None = None) -> User:
    return User(uid, username or uid, uid.title(), role, "org")


def test_policy_communicate_and_join_check_every_principal() -> None:
    facts = BarrierFacts(segments={"a": frozenset({"ib"}), "b": frozenset({"research"}), "c": frozenset({"retail"})}, policies=IB_RESEARCH)
    a, b, c, d = _user("a"), _user("b"), _user("c"), _user("d")
    assert not policy.may_communicate(a, b, facts).allowed
    assert "information barrier" in policy.may_communicate(b, a, facts).reason
    assert policy.may_communicate(a, c, facts).allowed and policy.may_communicate(a, d, facts).allowed
    system = _user(SYSTEM_USER_ID)
    assert policy.may_communicate(system, a, facts).allowed
    # a group: every pair, not only the creator's
    assert policy.may_join([c, a, b], (), facts).code == "forbidden"
    assert policy.may_join([c, a, d], (), facts).allowed
    # an invite: the newcomer against the present members, and newcomers against each other
    assert not policy.may_join([b], ["c", "a"], facts).allowed
    assert policy.may_join([d], ["c", "a"], facts).allowed
    assert not policy.may_join([a, b], ["c"], facts).allowed
    assert policy.may_join([a, b], ["c"], NO_FACTS).allowed


def test_refusals_do_not_reveal_who_sits_behind_a_wall() -> None:
    """Where a refused user could probe, the answer is an unreachable peer's; elsewhere the
    refusal names neither user nor segment."""
    facts = BarrierFacts(segments={"a": frozenset({"ib"}), "b": frozenset({"research"})}, policies=IB_RESEARCH)
    a, b = _user("a", username="alice"), _user("b", username="bob")
    customer_a, customer_b = _user("a", Role.CUSTOMER, "alice"), _user("b", Role.CUSTOMER, "bob")
    # a contact accept or an invite code: as a block or a disabled account
    assert policy.may_befriend_across(a, b, facts) == policy.may_befriend(a, b, blocked=True)
    # a direct open: as a disabled peer (staff), as any unreachable peer (a customer)
    disabled = User("b", "bob", "Bob", Role.STAFF, "org", disabled=True)
    assert policy.may_open_direct_across(a, b, facts) == policy.may_open_direct(a, disabled)
    assert policy.may_open_direct_across(customer_a, customer_b, facts) == policy.may_open_direct(customer_a, None)
    # a group: names the newcomer the actor named, not the barrier nor the member behind it
    assert policy.may_join([b], ["a"], facts, actor=a).reason == "bob cannot join this group"
    assert policy.may_join([customer_b], ["a"], facts, actor=customer_a).reason == "bob is not one of your contacts"
    for d in (policy.may_befriend_across(a, b, facts), policy.may_open_direct_across(a, b, facts),
              policy.may_join([b], ["a"], facts, actor=a), policy.may_communicate(a, b, facts)):
        assert not d.allowed and d.code == "forbidden" and "alice" not in d.reason and "ib" not in d.reason.split()
    for d in (policy.may_befriend_across(a, b, facts), policy.may_open_direct_across(a, b, facts), policy.may_join([b], ["a"], facts, actor=a)):
        assert "barrier" not in d.reason
    assert policy.may_befriend_across(a, _user("c"), facts).allowed and policy.may_open_direct_across(a, _user("c"), facts).allowed


def test_policy_send_across_a_barrier() -> None:
    a = _user("a")
    refused = policy.may_send_across(a, policy.ALLOW, barred=True)
    assert refused == policy.BARRIER_SEND_REFUSED and refused.code == "forbidden" and "information barrier" in refused.reason
    assert policy.may_send_across(a, policy.ALLOW, barred=False).allowed
    # an earlier refusal wins (a non-member learns not_found, never of a barrier)
    not_member = policy.Decision(False, "not_found", "no such conversation")
    assert policy.may_send_across(a, not_member, barred=True) == not_member
    assert policy.may_send_across(_user(SYSTEM_USER_ID), policy.ALLOW, barred=True).allowed


@pytest.mark.parametrize("role", list(Role))
def test_only_active_compliance_officers_manage_barriers(role: Role) -> None:
    user = _user("x", role)
    assert policy.may_manage_barriers(user).allowed is (role is Role.COMPLIANCE)
    disabled = User("x", "x", "X", role, "org", disabled=True)
    assert not policy.may_manage_barriers(disabled).allowed


# --- the service desk: routing never gives a customer to an agent a barrier separates them from


def test_routing_skips_barred_agents_and_serves_the_customers_behind() -> None:
    from bankhub.desk.routing import AgentLoad, plan

    agents = [AgentLoad("a", "available", 2, 0), AgentLoad("b", "available", 2, 1)]
    # s1's customer is separated from a: b takes them although a is less loaded
    assert [(x.session_id, x.agent_id) for x in plan(agents, ["s1"], barred={"s1": {"a"}})] == [("s1", "b")]
    # separated from every free agent: s1 waits, s2 behind is served (nobody free could take s1)
    assert [(x.session_id, x.agent_id) for x in plan(agents, ["s1", "s2"], barred={"s1": {"a", "b"}})] == [("s2", "a")]
    # without barriers, as before
    assert [x.agent_id for x in plan(agents, ["s1", "s2"])] == ["a", "b"]
