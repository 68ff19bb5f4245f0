"""The authorization policy: every HTTP handler and every frame asks here, nowhere else.

Each function takes the facts (the acting user, their membership, the peer) and
returns a :class:`Decision`. Denials carry a stable error code; a resource the actor
may not see is reported as ``not_found`` rather than ``forbidden`` so that its
existence does not leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .models import STAFF_ROLES, AlertSystem, Membership, OfficialAccount, Role, User
from .desk.system import SYSTEM_USER_ID

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
    "may_create_account",
    "may_view_account",
    "may_follow_account",
    "may_unfollow_account",
    "may_read_notices",
    "may_manage_account",
    "may_decide_notice",
    "may_target",
    "may_list_orgs",
    "may_create_user",
    "DUAL_CONTROL_ROLES",
    "may_request_user",
    "may_request_role_change",
    "may_view_admin_request",
    "may_decide_admin_request",
    "may_use_inbox",
    "may_set_alert_preferences",
    "may_send_alert",
    "may_read_alert_status",
    "may_manage_alert_delivery",
    "may_post_system",
    "may_list_rms",
    "may_view_book",
    "may_read_book_messages",
    "may_see_my_rm",
    "may_set_rm_status",
    "may_view_customer_card",
    "may_handover_book",
    "may_use_service",
    "may_view_service_session",
    "may_handle_service_session",
    "may_transfer_to_agent",
    "may_rate_service_session",
    "may_set_agent_state",
    "may_supervise_desk",
]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    code: str | None = None
    reason: str = ""


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
        # the peer itself is checked too: an RM who became staff keeps no customers
        if peer.id == actor.rm_id and peer.role is Role.RM:
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
    """Create a group: staff only; customers in it must be in the creator's own book (the
    creator an RM now: a former RM's old customers still point at them)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is Role.CUSTOMER:
        return Decision(False, "forbidden", "customers cannot create groups yet")
    for m in members:
        if m.disabled:
            return Decision(False, "forbidden", f"{m.username} is disabled")
        if m.role is Role.CUSTOMER and (actor.role is not Role.RM or m.rm_id != actor.id):
            return Decision(False, "forbidden", f"{m.username} is not in your book")
    return ALLOW


def may_issue_ws_ticket(actor: User) -> Decision:
    """Any active user may exchange their session for a WebSocket ticket."""
    return _active(actor) or ALLOW


_BRANCH_GRANTABLE = frozenset({Role.CUSTOMER, Role.RM, Role.AGENT, Role.STAFF})

# Roles that approve what others do (notices: :func:`may_decide_notice`; accounts of these
# roles: :func:`may_decide_admin_request`) or read any conversation (compliance). Nobody
# grants one alone: creating such an account, or moving anyone into such a role, is a
# request that a second, existing administrator approves (dual control).
DUAL_CONTROL_ROLES = frozenset({Role.BRANCH_ADMIN, Role.HEAD_OFFICE_ADMIN, Role.COMPLIANCE})
_ADMIN_ROLES = (Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN)
_NEEDS_APPROVAL = Decision(False, "approval_required", "this role is granted only with a second administrator's approval")


def may_request_role_change(actor: User, target: User, new_role: Role, target_org_ancestry: Sequence[str]) -> Decision:
    """The maker's side of a role change: head office administers every user; a branch
    admin only users of their own subtree, and only between the non-administrative roles.
    Nobody changes their own role."""
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


def may_change_role(actor: User, target: User, new_role: Role, target_org_ancestry: Sequence[str]) -> Decision:
    """Change a role at once: :func:`may_request_role_change`, except that a role of
    :data:`DUAL_CONTROL_ROLES` is never granted directly (``approval_required``: the caller
    files a request for a second administrator instead)."""
    if not (decision := may_request_role_change(actor, target, new_role, target_org_ancestry)).allowed:
        return decision
    return _NEEDS_APPROVAL if new_role in DUAL_CONTROL_ROLES else ALLOW


def may_reassign_customer(
    actor: User, customer: User, new_rm: User, customer_ancestry: Sequence[str], rm_ancestry: Sequence[str]
) -> Decision:
    """Head office reassigns anyone; a branch admin only within their subtree (customer and RM).

    Every principal is checked, the actor's reach first (so nothing about another branch's
    users leaks): the customer must be a customer, the new RM an active RM."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in _ADMIN_ROLES:
        return Decision(False, "forbidden", "only administrators reassign customers")
    if actor.role is Role.BRANCH_ADMIN and not (actor.org_id in customer_ancestry and actor.org_id in rm_ancestry):
        return Decision(False, "not_found", "no such customer or RM in your branch")
    if customer.role is not Role.CUSTOMER:
        return Decision(False, "invalid_request", f"{customer.username} is not a customer")
    if new_rm.role is not Role.RM or new_rm.disabled:
        return Decision(False, "invalid_request", f"{new_rm.username} is not an active relationship manager")
    return ALLOW


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


# --- official accounts ---------------------------------------------------------------

_NO_ACCOUNT = Decision(False, "not_found", "no such account")


def _administers(actor: User, org_path: Sequence[str]) -> bool:
    """Head office administers every org; a branch admin their own subtree."""
    if actor.role is Role.HEAD_OFFICE_ADMIN:
        return True
    return actor.role is Role.BRANCH_ADMIN and actor.org_id in org_path


def may_create_account(actor: User, owner_org_path: Sequence[str]) -> Decision:
    """Head-office admins create accounts for any org; branch admins for their own subtree."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in (Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN):
        return Decision(False, "forbidden", "only administrators create official accounts")
    if not _administers(actor, owner_org_path):
        return Decision(False, "forbidden", "branch admins create accounts for their own branch only")
    return ALLOW


def may_view_account(actor: User, account: OfficialAccount, actor_org_path: Sequence[str]) -> Decision:
    """Who may find and see an account: staff-only accounts are invisible to customers, a
    branch's account to people outside that branch (its administrators and head office
    always see it)."""
    if (denied := _active(actor)) is not None:
        return denied
    if account.audience == "staff" and actor.role is Role.CUSTOMER:
        return _NO_ACCOUNT
    if _administers(actor, account.owner_org_path):
        return ALLOW
    if account.owner_org_id not in actor_org_path:
        return _NO_ACCOUNT
    return ALLOW


def may_follow_account(actor: User, account: OfficialAccount, actor_org_path: Sequence[str]) -> Decision:
    """Anyone who may see an account may follow it."""
    return may_view_account(actor, account, actor_org_path)


def may_unfollow_account(actor: User, account: OfficialAccount) -> Decision:
    """Internal notices are part of the job: staff cannot unfollow a default staff account."""
    if (denied := _active(actor)) is not None:
        return denied
    if account.audience == "staff" and account.is_default and actor.role is not Role.CUSTOMER:
        return Decision(False, "forbidden", "staff cannot unfollow the bank's internal notice account")
    return ALLOW


def may_read_notices(actor: User, following: bool) -> Decision:
    """An account's notices, read position and unread count: its followers (the storage
    query itself returns only the notices that target the reader)."""
    if (denied := _active(actor)) is not None:
        return denied
    return ALLOW if following else Decision(False, "not_found", "you do not follow this account")


def may_manage_account(actor: User, account: OfficialAccount) -> Decision:
    """Publish, recall, see the outbox and the figures: head-office admins for every
    account, branch admins for the accounts of their own subtree."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in (Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN):
        return Decision(False, "forbidden", "only administrators publish notices")
    if not _administers(actor, account.owner_org_path):
        return Decision(False, "forbidden", "this account belongs to another branch")
    return ALLOW


def may_decide_notice(actor: User, account: OfficialAccount, author: User | None, *, approve: bool = True) -> Decision:
    """Maker-checker: a second administrator of the account approves or rejects, never the author.

    Both principals are checked: a notice is approved only while its author (the maker)
    may still publish on the account — an author since disabled, demoted or moved out of
    the account's subtree leaves a notice that can only be rejected (``author`` is None
    when the author's account no longer exists)."""
    if (denied := may_manage_account(actor, account)).allowed is False:
        return denied
    if author is not None and actor.id == author.id:
        return Decision(False, "forbidden", "a notice needs a second administrator's approval, not its author's")
    if approve and (author is None or not may_manage_account(author, account).allowed):
        return Decision(False, "conflict", "the notice's author may no longer publish on this account; reject it instead")
    return ALLOW


def may_list_orgs(actor: User) -> Decision:
    """The org tree, for the targeting picker: administrators, who see the subtree they
    administer (head office all of it, a branch admin their own branch)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in (Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN):
        return Decision(False, "forbidden", "only administrators list the org tree")
    return ALLOW


def may_target(account: OfficialAccount, target_org_paths: Sequence[Sequence[str]], staff_only: bool) -> Decision:
    """A branch account speaks to its own region: every targeted org must lie in the owner's
    subtree. A staff account speaks to staff only."""
    owned_by_branch = len(account.owner_org_path) > 1
    if owned_by_branch and any(account.owner_org_id not in path for path in target_org_paths):
        return Decision(False, "forbidden", "a branch account can target its own branch's subtree only")
    if account.audience == "staff" and not staff_only:
        return Decision(False, "invalid_request", "notices of a staff account are staff-only")
    return ALLOW


def may_request_user(
    actor: User, role: Role, org_path: Sequence[str], rm: User | None = None, rm_path: Sequence[str] = ()
) -> Decision:
    """The maker's side of creating a user: head office creates any user; a branch admin
    non-administrative users in their subtree.

    Every principal is checked: a customer's relationship manager ``rm`` (its org path
    ``rm_path``) must be an active RM in an org the actor administers — head office
    anywhere (a customer may be served from another branch), a branch admin only in its
    own subtree, which also holds the customer. Whether the RM is missing, not an RM,
    disabled or out of reach gets one answer, so nothing about other branches' staff leaks."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is Role.HEAD_OFFICE_ADMIN:
        pass
    elif actor.role is Role.BRANCH_ADMIN:
        if actor.org_id not in org_path:
            return Decision(False, "forbidden", "branch admins create users in their own branch only")
        if role not in _BRANCH_GRANTABLE:
            return Decision(False, "forbidden", "branch admins cannot create administrators")
    else:
        return Decision(False, "forbidden", "only administrators create users")
    if rm is not None:
        if role is not Role.CUSTOMER:
            return Decision(False, "invalid_request", "only customers have an RM")
        if rm.role is not Role.RM or rm.disabled or not _administers(actor, rm_path):
            return Decision(False, "invalid_request", f"{rm.username!r} is not an active relationship manager you administer")
    return ALLOW


def may_create_user(
    actor: User, role: Role, org_path: Sequence[str], rm: User | None = None, rm_path: Sequence[str] = ()
) -> Decision:
    """Create a user at once: :func:`may_request_user`, except that an account of a role in
    :data:`DUAL_CONTROL_ROLES` is never created directly (``approval_required``)."""
    if not (decision := may_request_user(actor, role, org_path, rm, rm_path)).allowed:
        return decision
    return _NEEDS_APPROVAL if role in DUAL_CONTROL_ROLES else ALLOW


def may_view_admin_request(actor: User, requester_id: str, org_path: Sequence[str]) -> Decision:
    """A dual-control request (metadata only, never a password): the administrator who
    filed it, and administrators of the org the account is or will be in."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in _ADMIN_ROLES:
        return Decision(False, "forbidden", "only administrators see administrative requests")
    if actor.id == requester_id or _administers(actor, org_path):
        return ALLOW
    return Decision(False, "not_found", "no such request")


def may_decide_admin_request(
    actor: User,
    requester: User,
    role: Role,
    org_path: Sequence[str],
    *,
    approve: bool,
    target: User | None = None,
) -> Decision:
    """Dual control: approve or reject a request to create an account of ``role`` in the org
    of ``org_path`` (or to move ``target`` into ``role``), filed by ``requester``.

    Every principal is checked. The decider: an active administrator who is not the
    requester (the requester may only withdraw, i.e. reject, their own request) and not the
    target; head office decides every request; a branch admin only requests for a branch
    admin in their own subtree (never a role above their own). The requester must still be
    an active administrator entitled to make the request (checked by the caller with
    :func:`may_request_user` / :func:`may_request_role_change`)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in _ADMIN_ROLES:
        return Decision(False, "forbidden", "only administrators decide administrative requests")
    if actor.id == requester.id:
        if approve:
            return Decision(False, "forbidden", "a second administrator approves this request, never the one who filed it")
        return ALLOW  # withdrawing one's own request
    if target is not None and target.id == actor.id:
        return Decision(False, "forbidden", "nobody decides a request about their own account")
    if not _administers(actor, org_path):
        return Decision(False, "not_found", "no such request")
    if actor.role is Role.BRANCH_ADMIN and role is not Role.BRANCH_ADMIN:
        return Decision(False, "forbidden", "a branch admin cannot approve a role above their own")
    if approve and (requester.disabled or requester.role not in _ADMIN_ROLES):
        return Decision(False, "conflict", "the requester is no longer an active administrator")
    return ALLOW


# --- transactional alerts -----------------------------------------------------------


def may_use_inbox(actor: User) -> Decision:
    """List, sync, read and archive one's own alerts (the queries only touch one's own)."""
    return _active(actor) or ALLOW


def may_set_alert_preferences(actor: User, muted: Sequence[str]) -> Decision:
    """Choose one's own alert preferences. Security alerts can never be muted."""
    if (denied := _active(actor)) is not None:
        return denied
    if "security" in muted:
        return Decision(False, "invalid_request", "security alerts cannot be muted")
    return ALLOW


def may_send_alert(system: AlertSystem, category: str, recipient: User | None) -> Decision:
    """A calling system sends an alert: only in the categories it was registered for, and
    only to an existing, active user."""
    if system.disabled:
        return Decision(False, "system_disabled", f"system {system.name} is disabled")
    if category not in system.categories:
        return Decision(False, "forbidden", f"system {system.name} may not send {category} alerts")
    if recipient is None or recipient.disabled:
        return Decision(False, "recipient_not_found", "no such recipient, or the account is disabled")
    return ALLOW


def may_read_alert_status(system: AlertSystem, sender_system_id: str | None) -> Decision:
    """A calling system reads the delivery status of alerts it sent itself, nobody else's."""
    if system.disabled:
        return Decision(False, "system_disabled", f"system {system.name} is disabled")
    if sender_system_id != system.id:
        return Decision(False, "not_found", "no such alert")
    return ALLOW


def may_manage_alert_delivery(actor: User) -> Decision:
    """The fallback dead-letter list (read and replay): head-office administrators only."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.HEAD_OFFICE_ADMIN:
        return Decision(False, "forbidden", "the dead-letter list is for head-office administrators")
    return ALLOW


# --- relationship managers and the service desk ------------------------------------------

_NO_SESSION = Decision(False, "not_found", "no such service session")


def may_post_system(actor: User, membership: Membership | None) -> Decision:
    """The hub's system user posts ``system`` bodies (notices, bot answers, auto-replies)
    into direct and service conversations; nobody else posts as it, and it posts nowhere else.
    (``membership`` is the storage's fact for the system user: role ``system``.)"""
    if actor.id != SYSTEM_USER_ID or membership is None or membership.role != "system":
        return Decision(False, "forbidden", "only the hub posts as the system user")
    if membership.kind not in ("direct", "service"):
        return Decision(False, "forbidden", "system notices go into direct and service conversations only")
    return ALLOW


def may_list_rms(actor: User) -> Decision:
    """The directory of RMs (to pick a book, or the RM taking one over): head office sees
    every RM; a branch admin those of their own subtree (the query is scoped to it)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in (Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN):
        return Decision(False, "forbidden", "only administrators list relationship managers")
    return ALLOW


def may_view_book(actor: User, rm: User, rm_ancestry: Sequence[str]) -> Decision:
    """An RM's book (customers, cards, unread): the RM themselves; head office; a branch
    admin for RMs of their own subtree."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in (Role.RM, Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN):
        return Decision(False, "forbidden", "only the RM and administrators see an RM's book")
    if rm.role is not Role.RM:
        return Decision(False, "not_found", "no such relationship manager")
    if actor.id == rm.id or actor.role is Role.HEAD_OFFICE_ADMIN:
        return ALLOW
    if actor.role is Role.BRANCH_ADMIN and actor.org_id in rm_ancestry:
        return ALLOW
    if actor.role is Role.BRANCH_ADMIN:
        return Decision(False, "not_found", "no such relationship manager in your branch")
    return Decision(False, "forbidden", "an RM sees their own book only")


def may_read_book_messages(actor: User, rm: User) -> Decision:
    """The text of the last message on a book: the RM alone, who is a member of those
    conversations. Administrators see the book's metadata only (last activity, unread,
    who wrote last); message text reaches anyone else only through the reason-coded,
    audited compliance read (:func:`may_read_privileged`)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.id == rm.id and actor.role is Role.RM:
        return ALLOW
    return Decision(False, "forbidden", "message text is for the RM; compliance reads it with a reason code")


def may_see_my_rm(actor: User, rm: User) -> Decision:
    """A customer sees ``rm`` as their relationship manager only while ``rm`` still is one:
    an RM whose role changed, or who was disabled, serves no book even where the customer
    row still points at them (a handover is pending)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is Role.CUSTOMER and actor.rm_id == rm.id and rm.role is Role.RM and not rm.disabled:
        return ALLOW
    return Decision(False, "not_found", "you have no relationship manager")


def may_set_rm_status(actor: User) -> Decision:
    """Availability (online, away, off duty) is declared by RMs themselves."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.RM:
        return Decision(False, "forbidden", "only relationship managers declare an availability")
    return ALLOW


def may_view_customer_card(actor: User, customer: User, customer_ancestry: Sequence[str], serving: bool) -> Decision:
    """A customer's profile card: the customer; their own RM; the agent serving them now
    (``serving``); head office; a branch admin of the customer's subtree. Anyone else
    learns nothing (``not_found``)."""
    if (denied := _active(actor)) is not None:
        return denied
    if customer.role is not Role.CUSTOMER:
        return Decision(False, "not_found", "no such customer")
    if actor.id == customer.id or actor.role is Role.HEAD_OFFICE_ADMIN:
        return ALLOW
    if actor.id == customer.rm_id and actor.role is Role.RM:  # a former RM (now staff) sees no cards
        return ALLOW
    if actor.role is Role.AGENT and serving:
        return ALLOW
    if actor.role is Role.BRANCH_ADMIN and actor.org_id in customer_ancestry:
        return ALLOW
    return Decision(False, "not_found", "no such customer")


def may_handover_book(
    actor: User, from_rm: User, to_rm: User, from_ancestry: Sequence[str], to_ancestry: Sequence[str]
) -> Decision:
    """Hand an RM's book (or part of it) to another RM: head office for anyone; a branch
    admin when both RMs are in their subtree. The RM leaving may already be disabled; the
    one taking over must be an active RM. (Each customer is also checked with
    :func:`may_reassign_customer`.)"""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in (Role.HEAD_OFFICE_ADMIN, Role.BRANCH_ADMIN):
        return Decision(False, "forbidden", "only administrators hand over a book")
    if actor.role is Role.BRANCH_ADMIN and not (actor.org_id in from_ancestry and actor.org_id in to_ancestry):
        return Decision(False, "not_found", "no such RM in your branch")
    if from_rm.role is not Role.RM:
        return Decision(False, "invalid_request", f"{from_rm.username} is not a relationship manager")
    if to_rm.role is not Role.RM or to_rm.disabled:
        return Decision(False, "invalid_request", f"{to_rm.username} is not an active relationship manager")
    if from_rm.id == to_rm.id:
        return Decision(False, "invalid_request", "a book is handed to another RM")
    return ALLOW


def may_use_service(actor: User) -> Decision:
    """Open a service session, ask for a person, leave the queue: customers."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.CUSTOMER:
        return Decision(False, "forbidden", "the service desk serves customers")
    return ALLOW


def may_view_service_session(actor: User, customer_id: str, agent_id: str | None) -> Decision:
    """A service session: its customer, the agent serving it, desk supervisors (head office)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.id in (customer_id, agent_id) or actor.role is Role.HEAD_OFFICE_ADMIN:
        return ALLOW
    return _NO_SESSION


def may_handle_service_session(actor: User, agent_id: str | None) -> Decision:
    """Transfer or close a session: the agent serving it, or a desk supervisor (head office)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is Role.HEAD_OFFICE_ADMIN:
        return ALLOW
    if actor.role is Role.AGENT and agent_id is not None and actor.id == agent_id:
        return ALLOW
    return _NO_SESSION


def may_transfer_to_agent(actor: User, agent_id: str | None, target: User | None) -> Decision:
    """Transfer a served session straight to ``target``: who may handle the session
    (:func:`may_handle_service_session`), and the target must be an active service agent.
    A missing, disabled or non-agent target gets one answer."""
    if not (decision := may_handle_service_session(actor, agent_id)).allowed:
        return decision
    if target is None or target.disabled or target.role is not Role.AGENT:
        return Decision(False, "not_found", "no such agent on the service desk")
    return ALLOW


def may_rate_service_session(actor: User, customer_id: str) -> Decision:
    """The satisfaction rating after close: the session's customer only."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.id != customer_id:
        return _NO_SESSION
    return ALLOW


def may_set_agent_state(actor: User, on_desk: bool) -> Decision:
    """Agents declare their own state (available, busy, away) once they are on the desk."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.AGENT:
        return Decision(False, "forbidden", "only service agents have a desk state")
    if not on_desk:
        return Decision(False, "not_found", "you are not on the service desk yet: a supervisor adds you")
    return ALLOW


def may_supervise_desk(actor: User) -> Decision:
    """Desk figures and configuration (queues, hours, agents' skills and capacity):
    head-office administrators, who run the bank's service desk."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.HEAD_OFFICE_ADMIN:
        return Decision(False, "forbidden", "the service desk is supervised by head office")
    return ALLOW
