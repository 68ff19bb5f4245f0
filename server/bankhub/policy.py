"""The authorization policy: every HTTP handler and every frame asks here, nowhere else.

Each function takes the facts (the acting user, their membership, the peer) and
returns a :class:`Decision`. Denials carry a stable error code; a resource the actor
may not see is reported as ``not_found`` rather than ``forbidden`` so that its
existence does not leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .models import STAFF_ROLES, Membership, Role, User

__all__ = [
    "Decision",
    "ALLOW",
    "may_send",
    "may_read_conversation",
    "may_open_direct",
    "may_create_group",
    "may_issue_ws_ticket",
    "may_read_conversation_list",
    "may_change_role",
    "may_reassign_customer",
    "may_read_privileged",
    "PRIVILEGED_READ_REASONS",
]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    code: str | None = None
    reason: str = ""

    def as_tuple(self) -> tuple[bool, str | None, str]:
        return self.allowed, self.code, self.reason


ALLOW = Decision(True)
_NOT_FOUND = Decision(False, "not_found", "no such conversation")


def _active(actor: User) -> Decision | None:
    return Decision(False, "forbidden", "account disabled") if actor.disabled else None


def may_read_conversation(actor: User, membership: Membership | None) -> Decision:
    """Read history, sync, move the read position: members only."""
    if (denied := _active(actor)) is not None:
        return denied
    if membership is None or membership.user_id != actor.id:
        return _NOT_FOUND
    return ALLOW


def may_send(actor: User, membership: Membership | None) -> Decision:
    """Post into a conversation: members only."""
    return may_read_conversation(actor, membership)


def may_open_direct(actor: User, peer: User) -> Decision:
    """Open (or reopen) the direct conversation between ``actor`` and ``peer``.

    A customer may open one only with their own relationship manager; an RM only with
    customers of their own book; staff with other staff. Customer-to-customer chat
    (friends) is not open yet.
    """
    if (denied := _active(actor)) is not None:
        return denied
    if peer.disabled or peer.id == actor.id:
        return Decision(False, "forbidden", "cannot open a conversation with this user")
    if actor.role is Role.CUSTOMER:
        if peer.id == actor.rm_id:
            return ALLOW
        return Decision(False, "forbidden", "customers may open a direct conversation only with their own RM")
    if peer.role is Role.CUSTOMER:
        if actor.role is Role.RM and peer.rm_id == actor.id:
            return ALLOW
        return Decision(False, "forbidden", "this customer is not in your book")
    if actor.role in STAFF_ROLES and peer.role in STAFF_ROLES:
        return ALLOW
    return Decision(False, "forbidden", "not allowed")


def may_create_group(actor: User, members: Sequence[User]) -> Decision:
    """Create a group: staff only; customers in it must be in the creator's own book."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is Role.CUSTOMER:
        return Decision(False, "forbidden", "customers cannot create groups yet")
    for m in members:
        if m.disabled:
            return Decision(False, "forbidden", f"{m.username} is disabled")
        if m.role is Role.CUSTOMER and m.rm_id != actor.id:
            return Decision(False, "forbidden", f"{m.username} is not in your book")
    return ALLOW


def may_issue_ws_ticket(actor: User) -> Decision:
    """Any active user may exchange their session for a WebSocket ticket."""
    return _active(actor) or ALLOW


_BRANCH_GRANTABLE = frozenset({Role.CUSTOMER, Role.RM, Role.AGENT, Role.STAFF})


def may_change_role(actor: User, target: User, new_role: Role, target_org_ancestry: Sequence[str]) -> Decision:
    """Head office administers every user; a branch admin only users of their own subtree,
    and only between the non-administrative roles. Nobody changes their own role."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.id == target.id:
        return Decision(False, "forbidden", "you cannot change your own role")
    if actor.role is Role.HEAD_OFFICE_ADMIN:
        return ALLOW
    if actor.role is Role.BRANCH_ADMIN:
        if actor.org_id not in target_org_ancestry:
            return Decision(False, "not_found", "no such user in your branch")
        if target.role not in _BRANCH_GRANTABLE or new_role not in _BRANCH_GRANTABLE:
            return Decision(False, "forbidden", "branch admins cannot grant or remove administrative roles")
        return ALLOW
    return Decision(False, "forbidden", "only administrators change roles")


def may_reassign_customer(
    actor: User, customer: User, new_rm: User, customer_ancestry: Sequence[str], rm_ancestry: Sequence[str]
) -> Decision:
    """Head office reassigns anyone; a branch admin only within their subtree (customer and RM)."""
    if (denied := _active(actor)) is not None:
        return denied
    if customer.role is not Role.CUSTOMER:
        return Decision(False, "invalid_request", f"{customer.username} is not a customer")
    if new_rm.role is not Role.RM or new_rm.disabled:
        return Decision(False, "invalid_request", f"{new_rm.username} is not an active relationship manager")
    if actor.role is Role.HEAD_OFFICE_ADMIN:
        return ALLOW
    if actor.role is Role.BRANCH_ADMIN:
        if actor.org_id in customer_ancestry and actor.org_id in rm_ancestry:
            return ALLOW
        return Decision(False, "not_found", "no such customer or RM in your branch")
    return Decision(False, "forbidden", "only administrators reassign customers")


PRIVILEGED_READ_REASONS = frozenset(
    {"complaint_investigation", "fraud_investigation", "regulatory_request", "legal_hold", "internal_audit"}
)


def may_read_privileged(actor: User, reason: str) -> Decision:
    """Reading conversations one is not part of: compliance officers only, with a reason code."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.COMPLIANCE:
        return Decision(False, "forbidden", "privileged reads are for compliance officers")
    if reason not in PRIVILEGED_READ_REASONS:
        return Decision(False, "invalid_request", f"a reason code is required: one of {sorted(PRIVILEGED_READ_REASONS)}")
    return ALLOW


def may_read_conversation_list(actor: User) -> Decision:
    """List or sync one's own conversations (the query itself only returns one's own)."""
    return _active(actor) or ALLOW
