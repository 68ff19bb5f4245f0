"""The authorization policy: every HTTP handler and every frame asks here, nowhere else.

Each function takes the facts (the acting user, their membership, the peer) and
returns a :class:`Decision`. Denials carry a stable error code; a resource the actor
may not see is reported as ``not_found`` rather than ``forbidden`` so that its
existence does not leak.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from .models import STAFF_ROLES, AlertSystem, Membership, OfficialAccount, Role, User
from .models import RevisionTarget
from .desk.system import GROUP_EVENTS, SYSTEM_USER_ID
from .protocol.frames import ErrorCode
from .compliance import barriers
from .compliance.barriers import BarrierFacts

__all__ = [
    "dlp_action",
    "dlp_direction",
    "dlp_refusal",
    "DLP_ACTIONS",
    "DLP_DIRECTIONS",
    "may_search_dlp",
    "may_read_dlp_figures",
    "DlpVerdict",
    "may_revise",
    "REVISABLE_KINDS",
    "Decision",
    "ALLOW",
    "may_send",
    "may_send_card",
    "CARD_SENDER_ROLES",
    "may_send_system_card",
    "CARD_CATEGORIES",
    "may_read_conversation",
    "may_open_direct",
    "may_befriend",
    "may_manage_contacts",
    "may_block",
    "may_create_group",
    "GROUP_ROLES",
    "may_create_org_group",
    "may_view_group",
    "may_rename_group",
    "may_invite_to_group",
    "may_remove_from_group",
    "may_leave_group",
    "may_set_group_role",
    "may_issue_ws_ticket",
    "may_read_conversation_list",
    "may_change_role",
    "may_reassign_customer",
    "may_read_privileged",
    "may_check_audit_chain",
    "supervised",
    "may_supervise",
    "may_decide_flag",
    "SUPERVISION_SAMPLED_ROLES",
    "SUPERVISION_DECISIONS",
    "may_manage_retention",
    "may_approve_retention_request",
    "may_reject_retention_request",
    "may_place_hold",
    "may_view_holds",
    "may_request_hold_release",
    "may_approve_hold_release",
    "may_reject_hold_release",
    "PRIVILEGED_READ_REASONS",
    "may_request_export",
    "may_view_exports",
    "may_approve_export",
    "may_reject_export",
    "may_download_export",
    "may_retry_export",
    "may_run_export",
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
    "WIDGET_VISITOR_ROUTES",
    "WIDGET_VISITOR_FRAMES",
    "may_call_route",
    "may_use_frame",
    "may_enter_widget",
    "may_manage_widget_partners",
    "may_type",
    "may_manage_barriers",
    "may_befriend_across",
    "may_open_direct_across",
    "BARRIER_REFUSED",
    "may_communicate",
    "may_join",
    "may_send_across",
    "BARRIER_SEND_REFUSED",
    "may_set_privacy",
    "may_see_presence",
    "last_seen_visible",
    "receipt_audience",
    "visible_read_positions",
    "may_upload_media",
    "may_view_media",
    "may_attach_media",
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


def _compliance_officer(actor: User, refusal: str) -> Decision | None:
    """None for an active compliance officer; otherwise the refusal: the inactive account's,
    or ``forbidden`` with ``refusal`` (each compliance area says whose it is)."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.COMPLIANCE:
        return Decision(False, "forbidden", refusal)
    return None


def may_read_conversation(actor: User, membership: Membership | None) -> Decision:
    """Read history, sync, move the read position: members only."""
    if (denied := _active(actor)) is not None:
        return denied
    if membership is None or membership.user_id != actor.id:
        return _NOT_FOUND
    if actor.visitor and membership.kind != "service":  # a widget visitor talks to the service desk only
        return _NOT_FOUND
    return ALLOW


def may_send(actor: User, membership: Membership | None, *, blocked: bool = False) -> Decision:
    """Post into a conversation: members only. ``blocked``: one member of this direct
    conversation blocks the other (either way) — nobody posts into it while that lasts."""
    if not (decision := may_read_conversation(actor, membership)).allowed:
        return decision
    if blocked and membership is not None and membership.kind == "direct":
        return _BLOCKED
    return ALLOW


CARD_SENDER_ROLES = frozenset({Role.RM, Role.AGENT})
"""Who may send a service card (``card`` body) into a conversation they are a member of:
relationship managers and service-desk agents, the staff who serve customers in chat.
Administrators speak through official accounts (whose notices are signed too); customers
and other staff never send cards."""


def may_send_card(actor: User, membership: Membership | None) -> Decision:
    """Send a ``card``: a member of the conversation whose role is in :data:`CARD_SENDER_ROLES`."""
    if not (decision := may_read_conversation(actor, membership)).allowed:
        return decision
    if actor.role not in CARD_SENDER_ROLES:
        return Decision(False, "forbidden", "only relationship managers and service-desk agents send service cards")
    return ALLOW


CARD_CATEGORIES = {"offer": "marketing", "bill_reminder": "transaction", "appointment": "service"}
"""The alert category a calling system must be registered for to send a card of each template."""


def may_send_system_card(system: AlertSystem, template: str, recipient: User | None, rm: User | None) -> Decision:
    """A bank system (a calling system of the alert API) sends a customer a card: only a
    template whose category (:data:`CARD_CATEGORIES`) it was registered for, only to an
    active customer, into their conversation with their own RM (``rm``: that RM, active)."""
    if system.disabled:
        return Decision(False, "system_disabled", f"system {system.name} is disabled")
    category = CARD_CATEGORIES.get(template)
    if category is None or category not in system.categories:
        return Decision(False, "forbidden", f"system {system.name} may not send {template} cards ({category} not registered)")
    if recipient is None or recipient.disabled or recipient.role is not Role.CUSTOMER:
        return Decision(False, "recipient_not_found", "no such customer, or the account is disabled")
    if rm is None or rm.disabled or rm.role is not Role.RM or recipient.rm_id != rm.id:
        return Decision(False, "conflict", "this customer has no active relationship manager to receive the card through")
    return ALLOW


def may_open_direct(actor: User, peer: User | None, *, contacts: bool = False, blocked: bool = False) -> Decision:
    """Open (or reopen) the direct conversation between ``actor`` and ``peer``.

    A customer may open one with their own relationship manager, and with another customer
    who is their contact (``contacts``: accepted, see :func:`may_befriend`); an RM only with
    customers of their own book; staff with other staff. Nobody opens one with a user who
    blocks them or whom they block (``blocked``, either way). A customer gets one answer
    (``_CUSTOMER_DIRECT``) for every peer they may not reach — no such user (``peer``
    None), a disabled account, a visitor, a block either way, not a contact — so that no
    username, account state or block is confirmed to them; staff learn ``not_found``.
    """
    if (denied := _active(actor)) is not None:
        return denied
    if peer is None:
        return _CUSTOMER_DIRECT if actor.role is Role.CUSTOMER else Decision(False, "not_found", "no such user")
    if peer.id == actor.id or actor.visitor:
        return Decision(False, "forbidden", "cannot open a conversation with this user")
    if actor.role is Role.CUSTOMER:
        if peer.disabled or peer.visitor or blocked:
            return _CUSTOMER_DIRECT
        # the peer itself is checked too: an RM who became staff keeps no customers
        if peer.id == actor.rm_id and peer.role is Role.RM:
            return ALLOW
        if peer.role is Role.CUSTOMER and contacts:
            return ALLOW
        return _CUSTOMER_DIRECT
    if peer.disabled or peer.visitor:
        return Decision(False, "forbidden", "cannot open a conversation with this user")
    if blocked:
        return _BLOCKED
    if peer.role is Role.CUSTOMER:
        if actor.role is Role.RM and peer.rm_id == actor.id:
            return ALLOW
        return Decision(False, "forbidden", "this customer is not in your book")
    if actor.role in STAFF_ROLES and peer.role in STAFF_ROLES:
        return ALLOW
    return Decision(False, "forbidden", "not allowed")


_BLOCKED = Decision(False, "forbidden", "one of you blocks the other")


def _not_contact(username: str) -> Decision:
    """A customer's one answer for a group member they may not add (see :func:`may_create_group`)."""
    return Decision(False, "forbidden", f"{username} is not one of your contacts")
_CUSTOMER_DIRECT = Decision(
    False, "forbidden", "customers open a direct conversation with their own RM or with a customer who is their contact"
)


def _same_side(a: User, b: User) -> bool:
    """Customers with customers, staff with staff: the only pairs that befriend or block.
    A customer reaches staff through their RM or the service desk, never as a contact."""
    return (a.role is Role.CUSTOMER) == (b.role is Role.CUSTOMER)


def may_befriend(actor: User, peer: User | None, *, blocked: bool = False) -> Decision:
    """Ask ``peer`` to become a contact, accept their request, or redeem their invite code.

    Both principals are checked: both active; customers befriend customers and staff befriend
    staff (no request between a customer and staff, either way); never oneself or the hub's
    system user; never across a block (``blocked``: either blocks the other). ``peer`` None:
    no such user. The refusals are ``forbidden`` here; an add by username or phone answers
    its sender the same whatever this says (nothing about the account leaks)."""
    if (denied := _active(actor)) is not None:
        return denied
    if peer is None or peer.disabled or peer.id == SYSTEM_USER_ID or peer.visitor or actor.visitor:
        return _CANNOT_ADD
    if peer.id == actor.id:
        return Decision(False, "invalid_request", "you cannot add yourself")
    if not _same_side(actor, peer):
        return Decision(
            False, "forbidden", "customers and bank staff are not contacts: customers reach staff through their RM or the service desk"
        )
    if blocked:
        return _CANNOT_ADD  # as for a disabled account: a redeemed invite code must not tell of a block
    return ALLOW


_CANNOT_ADD = Decision(False, "forbidden", "this user cannot be added")


def may_manage_contacts(actor: User) -> Decision:
    """List and change one's own contacts, requests, blocks and invite codes (the queries
    only touch one's own): any active user. Each change with another user asks
    :func:`may_befriend` or :func:`may_block` too."""
    return _active(actor) or ALLOW


def may_block(actor: User, peer: User) -> Decision:
    """Block ``peer``: no message, contact request or direct conversation between us, and
    no presence of mine for them. Between users who could befriend each other only
    (customers block customers, staff block staff): a customer's RM and the service desk
    stay reachable, and staff do not turn customers away by blocking them. Unblocking is
    always allowed."""
    if (denied := _active(actor)) is not None:
        return denied
    if peer.id == actor.id:
        return Decision(False, "invalid_request", "you cannot block yourself")
    if peer.id == SYSTEM_USER_ID:
        return Decision(False, "not_found", "no such user")
    if not _same_side(actor, peer):
        return Decision(False, "forbidden", "customers and bank staff do not block each other: report abuse to the bank")
    return ALLOW


def may_create_group(
    actor: User, members: Sequence[User], *, contacts: Collection[str] = (), max_members: int | None = None
) -> Decision:
    """Create a group whose members its owner and admins manage.

    Every member is checked. Staff create groups with staff, and an RM with customers of
    their own book too (the creator an RM now: a former RM's old customers still point at
    them). A customer creates one with other customers who are their contacts
    (``contacts``: the ids among ``members`` that are the actor's accepted contacts with no
    block either way). ``max_members``: the cap, the creator counted (``group_full``)."""
    if (denied := _active(actor)) is not None:
        return denied
    if max_members is not None and len({m.id for m in members} | {actor.id}) > max_members:
        return Decision(False, "group_full", f"a group has at most {max_members} members")
    for m in members:
        if m.id == actor.id:
            continue
        if actor.role is Role.CUSTOMER:
            # one answer for a disabled account, a visitor, a block, a stranger (and, in
            # actions.groups, no such user): nothing tells a customer which it is
            if m.disabled or m.role is not Role.CUSTOMER or m.id not in contacts:
                return _not_contact(m.username)
        elif m.disabled:
            return Decision(False, "forbidden", f"{m.username} is disabled")
        elif m.role is Role.CUSTOMER and (actor.role is not Role.RM or m.rm_id != actor.id):
            return Decision(False, "forbidden", f"{m.username} is not in your book")
    return ALLOW


# --- groups: roles, membership changes, org groups ------------------------------------------

GROUP_ROLES = ("owner", "admin", "member")
"""A group member's roles: one owner, any number of admins, members."""

_NO_GROUP = Decision(False, "not_found", "no such group")
_ORG_BOUND = Decision(False, "forbidden", "an org group's members follow the org tree: nobody joins, leaves or is removed by hand")


def _in_group(actor: User, membership: Membership | None) -> Decision | None:
    """Denied unless ``actor`` is active and ``membership`` is their own, of a group."""
    if (denied := _active(actor)) is not None:
        return denied
    if membership is None or membership.user_id != actor.id or membership.kind != "group":
        return _NO_GROUP
    return None


def may_create_org_group(actor: User, org_path: Sequence[str]) -> Decision:
    """Create a staff-internal group bound to an org (``org_path``: the org and its
    ancestors): head office anywhere, a branch admin for an org of their own subtree."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role not in _ADMIN_ROLES:
        return Decision(False, "forbidden", "only administrators create org groups")
    if not _administers(actor, org_path):
        return Decision(False, "forbidden", "branch admins create org groups for their own subtree only")
    return ALLOW


def may_view_group(actor: User, membership: Membership | None) -> Decision:
    """A group's facts and member list (names and roles): its members only."""
    return _in_group(actor, membership) or ALLOW


def may_rename_group(actor: User, membership: Membership | None, org_path: Sequence[str] | None) -> Decision:
    """Rename: the owner or an admin of a hand-made group; an org group (``org_path``: its
    org's path) an administrator of its org, member or not."""
    if org_path is not None:
        if (denied := _active(actor)) is not None:
            return denied
        if _administers(actor, org_path):
            return ALLOW
        if membership is not None and membership.user_id == actor.id:
            return Decision(False, "forbidden", "an org group is renamed by an administrator of its org")
        return _NO_GROUP
    if (denied := _in_group(actor, membership)) is not None:
        return denied
    assert membership is not None
    if membership.role not in ("owner", "admin"):
        return Decision(False, "forbidden", "only the group's owner and admins rename it")
    return ALLOW


def may_invite_to_group(
    actor: User,
    membership: Membership | None,
    invitee: User,
    *,
    org_bound: bool,
    is_contact: bool,
    already_member: bool,
    members: int,
    max_members: int,
    staff: Sequence[User],
) -> Decision:
    """Invite ``invitee`` into a group of ``members`` members: its owner or an admin; never
    into an org group. The invitee as for :func:`may_create_group` (a customer invites
    their contacts, staff invite staff and an RM their own book's customers); the cap
    (``max_members``) holds after the invitation (``group_full``).

    ``staff``: the group's members who are bank staff. A customer who invites a customer
    into a group with staff in it brings the invitee to those staff members, so each of
    them is checked as :func:`may_create_group` checks a creator: every one must be an RM
    whose book holds the invitee (a customer reaches staff only through their RM or the
    service desk). Staff who invite vouch for the invitee themselves, as at creation."""
    if (denied := _in_group(actor, membership)) is not None:
        return denied
    assert membership is not None
    if org_bound:
        return _ORG_BOUND
    if membership.role not in ("owner", "admin"):
        return Decision(False, "forbidden", "only the group's owner and admins invite")
    if already_member:
        return Decision(False, "conflict", f"{invitee.username} is a member already")
    if actor.role is Role.CUSTOMER:
        if invitee.disabled or invitee.role is not Role.CUSTOMER or not is_contact:
            return _not_contact(invitee.username)  # one answer, as in may_create_group
        if any(s.role is not Role.RM or invitee.rm_id != s.id for s in staff):
            return Decision(
                False, "forbidden", f"{invitee.username} cannot join this group: its bank staff take only their own customers"
            )
    elif invitee.disabled:
        return Decision(False, "forbidden", f"{invitee.username} is disabled")
    elif invitee.role is Role.CUSTOMER and (actor.role is not Role.RM or invitee.rm_id != actor.id):
        return Decision(False, "forbidden", f"{invitee.username} is not in your book")
    if members + 1 > max_members:
        return Decision(False, "group_full", f"a group has at most {max_members} members")
    return ALLOW


def may_remove_from_group(actor: User, membership: Membership | None, target: Membership | None, *, org_bound: bool) -> Decision:
    """Remove a member: the owner removes anyone else, an admin members only (not the
    owner, not another admin); nobody removes themselves (they leave); never in an org group."""
    if (denied := _in_group(actor, membership)) is not None:
        return denied
    assert membership is not None
    if org_bound:
        return _ORG_BOUND
    if membership.role not in ("owner", "admin"):
        return Decision(False, "forbidden", "only the group's owner and admins remove members")
    if target is None or target.conversation_id != membership.conversation_id:
        return Decision(False, "not_found", "no such member of this group")
    if target.user_id == actor.id:
        return Decision(False, "invalid_request", "to leave a group, leave it")
    if membership.role == "owner" or target.role == "member":
        return ALLOW
    return Decision(False, "forbidden", "admins remove members, not the owner or other admins")


def may_leave_group(actor: User, membership: Membership | None, *, org_bound: bool) -> Decision:
    """Leave a group: any member, of a hand-made group only (an owner who leaves hands
    ownership on; see :mod:`bankhub.actions.groups`)."""
    if (denied := _in_group(actor, membership)) is not None:
        return denied
    return _ORG_BOUND if org_bound else ALLOW


def may_set_group_role(
    actor: User, membership: Membership | None, target: Membership | None, target_user: User | None, role: str, *, org_bound: bool
) -> Decision:
    """Promote a member to admin, demote an admin, or hand ownership on (``role``
    ``owner``: the actor becomes an admin): the owner only, of a hand-made group, about
    another member; a new owner must be active."""
    if (denied := _in_group(actor, membership)) is not None:
        return denied
    assert membership is not None
    if org_bound:
        return Decision(False, "forbidden", "an org group has no owner or admins")
    if membership.role != "owner":
        return Decision(False, "forbidden", "only the group's owner changes roles")
    if role not in GROUP_ROLES:
        return Decision(False, "invalid_request", f"a role is one of {list(GROUP_ROLES)}")
    if target is None or target_user is None or target.conversation_id != membership.conversation_id or target.user_id != target_user.id:
        return Decision(False, "not_found", "no such member of this group")
    if target.user_id == actor.id:
        return Decision(False, "invalid_request", "the owner hands ownership to another member")
    if role == "owner" and target_user.disabled:
        return Decision(False, "forbidden", f"{target_user.username} is disabled")
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
    if target.visitor:
        return Decision(False, "forbidden", "a service-widget visitor has no role but visitor")
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
    if customer.role is not Role.CUSTOMER or customer.visitor:
        return Decision(False, "invalid_request", f"{customer.username} is not a customer")
    if new_rm.role is not Role.RM or new_rm.disabled:
        return Decision(False, "invalid_request", f"{new_rm.username} is not an active relationship manager")
    return ALLOW


PRIVILEGED_READ_REASONS = frozenset(
    {"complaint_investigation", "fraud_investigation", "regulatory_request", "legal_hold", "internal_audit"}
)


def may_read_privileged(actor: User, reason: str) -> Decision:
    """Reading conversations one is not part of: compliance officers only, with a reason code."""
    if (denied := _compliance_officer(actor, "privileged reads are for compliance officers")) is not None:
        return denied
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
    """Anyone who may see an account may follow it (a widget visitor follows none)."""
    if actor.visitor:
        return _NO_ACCOUNT
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
    if recipient is None or recipient.disabled or recipient.visitor:
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


def may_post_system(actor: User, membership: Membership | None, event: str | None = None) -> Decision:
    """The hub's system user posts ``system`` bodies (notices, bot answers, auto-replies)
    into direct and service conversations, and the group events of
    :data:`~bankhub.desk.system.GROUP_EVENTS` (``event``: the body's code) into groups;
    nobody else posts as it, and it posts nowhere else.
    (``membership`` is the storage's fact for the system user: role ``system``.)"""
    if actor.id != SYSTEM_USER_ID or membership is None or membership.role != "system":
        return Decision(False, "forbidden", "only the hub posts as the system user")
    if membership.kind == "group" and event in GROUP_EVENTS:
        return ALLOW
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


# --- read receipts, typing, presence ------------------------------------------------


def may_type(actor: User, membership: Membership | None, *, blocked: bool = False) -> Decision:
    """Say I am typing in a conversation: members only, and not in a direct conversation
    whose members block one another (``blocked``, either way) — exactly as for sending."""
    return may_send(actor, membership, blocked=blocked)


def may_set_privacy(actor: User) -> Decision:
    """Read or change my own read-receipt and last-seen privacy: any active user."""
    return _active(actor) or ALLOW


def _serves(rm: User, customer: User) -> bool:
    """``rm`` is ``customer``'s relationship manager now: an active RM the customer's
    ``rm_id`` points at (a pointer left on a user who is no longer an RM counts for nothing)."""
    return rm.role is Role.RM and not rm.disabled and customer.role is Role.CUSTOMER and customer.rm_id == rm.id


def may_see_presence(viewer: User, target: User | None, *, contact: bool, blocked: bool) -> Decision:
    """Whether ``viewer`` learns if ``target`` is online (and, per the target's setting,
    when last seen). Presence travels only along relationships: an accepted contact
    (``contact``), my RM, my customers — both sides checked on their current rows: the RM
    side must be an active user of role ``rm`` (as :func:`may_open_direct` requires), so a
    former RM whose old customers still point at them sees none of them, nor they him. A
    block either way (``blocked``) hides it; a disabled, unknown (``target`` None) or
    service-widget target has none. A denial is indistinguishable from an unknown user
    (``not_found``)."""
    if (denied := _active(viewer)) is not None:
        return denied
    hidden = Decision(False, "not_found", "no presence for this user")
    if target is None or blocked or target.id == viewer.id or target.disabled or target.visitor or viewer.visitor:
        return hidden
    if contact or _serves(viewer, target) or _serves(target, viewer):
        return ALLOW
    return hidden


def last_seen_visible(target_setting: str, *, contact: bool, viewer_setting: str) -> bool:
    """Whether a viewer allowed to see a user's presence also sees their last-seen time.

    ``target_setting``: ``everyone`` (every related user), ``contacts`` (accepted contacts
    only) or ``nobody``. As peers do, a viewer who hides their own last seen from everybody
    (``nobody``) sees nobody's."""
    if viewer_setting == "nobody":
        return False
    if target_setting == "everyone":
        return True
    return target_setting == "contacts" and contact


def receipt_audience(
    actor_id: str, members: Sequence[str], opted_out: set[str], max_members: int, *, blocked: bool = False
) -> list[str]:
    """Whose devices learn that ``actor_id``'s read position moved.

    Always the actor's own devices. Other members only when the conversation has at most
    ``max_members`` members, the actor shares read receipts, and the member does too (one
    who opted out neither shows nor sees read positions) — and never in a direct
    conversation whose members block one another (``blocked``, either way)."""
    if blocked or len(members) > max_members or actor_id in opted_out:
        return [actor_id]
    return [m for m in members if m == actor_id or m not in opted_out]


def visible_read_positions(
    viewer_id: str,
    positions: Sequence[tuple[str, int, bool]],
    member_count: int,
    max_members: int,
    *,
    blocked: bool = False,
) -> list[tuple[str, int]]:
    """The read positions ``viewer_id`` (a member) sees when opening a conversation:
    ``positions`` are ``(user_id, read_seq, shares)``. Mine always; the others' only under
    the same rules as :func:`receipt_audience` (``blocked``: a direct conversation whose
    members block one another)."""
    mine = [(u, seq) for u, seq, _ in positions if u == viewer_id]
    viewer_shares = all(shares for u, _, shares in positions if u == viewer_id)
    if blocked or member_count > max_members or not viewer_shares:
        return mine
    return [(u, seq) for u, seq, shares in positions if u == viewer_id or shares]


# --- recall and edit of one's own message ------------------------------------------------

REVISABLE_KINDS = frozenset({"text"})
"""Stored body kinds a sender may recall or edit: text only (not a system notice, a card,
or an edit/recall message itself)."""


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minute{'' if seconds == 60 else 's'}" if seconds >= 60 else f"{seconds:g} seconds"


def may_revise(
    actor: User,
    membership: Membership | None,
    target: RevisionTarget | None,
    change: str,
    elapsed_seconds: float,
    window_seconds: float,
    max_edits: int,
    *,
    blocked: bool = False,
) -> Decision:
    """Recall (``change`` ``"recall"``) or edit (``"edit"``) message ``target``.

    Only a member of the conversation (else ``not_found``), only the message's own sender
    (someone else's message, even an admin's view of it: ``forbidden``), only a text
    message (not a system notice, card or an edit/recall message), not one already
    withdrawn, at most ``max_edits`` edits, and only while ``elapsed_seconds`` (the time
    since the message's commit, measured by the database that stamped it — one clock for
    both ends, whatever the node's clock says) is at most ``window_seconds`` — the window's
    last instant included. A target that is not in the conversation is ``not_found``. ``blocked`` (one
    member of this direct conversation blocks the other) refuses an edit, which posts new
    text, but not a recall, which only withdraws it.
    """
    member = may_send(actor, membership, blocked=blocked and change == "edit")
    if not member.allowed or membership is None:
        return member if not member.allowed else _NOT_FOUND
    if target is None or target.conversation_id != membership.conversation_id:
        return Decision(False, "not_found", "no such message in this conversation")
    if target.sender_id != actor.id:
        return Decision(False, "forbidden", f"only its sender may {change} a message")
    if target.recalled:
        return Decision(False, "forbidden", "this message was recalled")
    if target.kind not in REVISABLE_KINDS:
        return Decision(False, "forbidden", f"only a text message can be {'recalled' if change == 'recall' else 'edited'}")
    if not target.readable:
        return Decision(False, "forbidden", "this message cannot be read, so it cannot be changed")
    if change == "edit" and target.edits >= max_edits:
        return Decision(False, "forbidden", f"a message can be edited at most {max_edits} times")
    if elapsed_seconds > window_seconds:
        what = "recall" if change == "recall" else "edit"
        return Decision(False, "forbidden", f"the {what} window ({_minutes(window_seconds)} after sending) has passed")
    return ALLOW


# --- the embeddable service widget (docs/widget.md) ------------------------------------------

WIDGET_VISITOR_ROUTES = frozenset(
    {
        ("GET", "/v1/me"),
        ("DELETE", "/v1/sessions/current"),
        ("POST", "/v1/ws-tickets"),
        ("GET", "/v1/conversations/{conversation_id}/messages"),
        ("POST", "/v1/service/sessions"),
        ("GET", "/v1/service/sessions/current"),
        ("GET", "/v1/service/sessions/{session_id}"),
        ("POST", "/v1/service/sessions/{session_id}/human"),
        ("POST", "/v1/service/sessions/{session_id}/cancel"),
        ("POST", "/v1/service/sessions/{session_id}/csat"),
    }
)
"""The HTTP operations (method, path template) a widget visitor's session may call: the
service desk, its conversation's history, a WebSocket ticket, sign-out. Nothing else."""

WIDGET_VISITOR_FRAMES = frozenset({"send", "read", "sync", "ping"})
"""The WebSocket frames a widget visitor may send (``send``/``read`` are further limited to
service conversations by :func:`may_read_conversation`)."""

_VISITOR_ONLY_DESK = Decision(False, "forbidden", "a service-widget visitor may only talk to the service desk")


def may_call_route(actor: User, method: str, path: str) -> Decision:
    """Every authenticated HTTP operation asks this first (``path``: the route's template).
    A widget visitor may call :data:`WIDGET_VISITOR_ROUTES` only; everyone else passes (the
    operation's own policy decides)."""
    if actor.visitor and (method, path) not in WIDGET_VISITOR_ROUTES:
        return _VISITOR_ONLY_DESK
    return ALLOW


def may_use_frame(actor: User, frame_type: str) -> Decision:
    """Every WebSocket request asks this first: a widget visitor sends
    :data:`WIDGET_VISITOR_FRAMES` only."""
    if actor.visitor and frame_type not in WIDGET_VISITOR_FRAMES:
        return _VISITOR_ONLY_DESK
    return ALLOW


def may_enter_widget(partner_enabled: bool, visitor: User) -> Decision:
    """Exchange a verified visitor token for a session: the partner is enabled, and the
    user standing for the visitor is an active widget visitor (an administrator may have
    disabled it)."""
    if not partner_enabled:
        return Decision(False, "forbidden", "this widget partner is disabled")
    if not visitor.visitor or visitor.role is not Role.CUSTOMER:
        return Decision(False, "forbidden", "not a widget visitor")
    if visitor.disabled:
        return Decision(False, "forbidden", "this visitor is disabled")
    return ALLOW


def may_manage_widget_partners(actor: User) -> Decision:
    """Register, list, enable and disable widget partners: head-office administrators."""
    if (denied := _active(actor)) is not None:
        return denied
    if actor.role is not Role.HEAD_OFFICE_ADMIN:
        return Decision(False, "forbidden", "widget partners are managed by head office")
    return ALLOW


_NO_MEDIA = Decision(False, "not_found", "no such media")


def may_upload_media(actor: User, membership: Membership | None) -> Decision:
    """Upload a picture or voice note into a conversation: its members (as for reading it).
    Sending it is a ``send``, decided by :func:`may_send` (blocks included)."""
    return may_read_conversation(actor, membership)


def may_view_media(actor: User, *, member: bool, visible: bool, uploader_id: str, attached: bool) -> Decision:
    """See a media item (its facts, its signed URLs, its bytes): members of its conversation
    *now*, only while it is ``visible`` (ready: never a quarantined or rejected item's bytes).
    Until a message carries it (``attached``) an item is its uploader's draft: nobody else sees
    it, whoever learns its id. Anything else is ``not_found``, the same answer as for an id that
    does not exist."""
    if (denied := _active(actor)) is not None:
        return denied
    if not member or not visible or (not attached and uploader_id != actor.id):
        return _NO_MEDIA
    return ALLOW


def may_attach_media(actor: User, *, uploader_id: str, media_conversation_id: str, conversation_id: str, state: str) -> Decision:
    """Send a media item as a message body: the sender uploaded it, into this very conversation,
    and it is ``ready`` (``media_not_ready`` while quarantined, ``media_rejected`` after the
    scanner refused it). Someone else's item, or one from another conversation, is ``not_found``."""
    if (denied := _active(actor)) is not None:
        return denied
    if uploader_id != actor.id or media_conversation_id != conversation_id:
        return _NO_MEDIA
    if state == "quarantined":
        return Decision(False, ErrorCode.MEDIA_NOT_READY, "the media is still being scanned; send it once it is ready")
    if state != "ready":
        return Decision(False, ErrorCode.MEDIA_REJECTED, "the media was rejected by the scanner and cannot be sent")
    return ALLOW


# --- compliance console (audit-chain check) ---


def may_check_audit_chain(actor: User) -> Decision:
    """Read the audit-chain head or re-verify the chain from the compliance console:
    active compliance officers only (the head is what they anchor outside the hub)."""
    if (denied := _compliance_officer(actor, "not a compliance officer: the audit chain is for compliance officers")) is not None:
        return denied
    return ALLOW


# --- legal holds ---




def may_place_hold(actor: User) -> Decision:
    """Place a legal hold: active compliance officers only (any user may be its custodian;
    an unknown one is the action's ``not_found``)."""
    return _compliance_officer(actor, "placing a legal hold is for compliance officers") or ALLOW


def may_view_holds(actor: User) -> Decision:
    """List and read legal holds: active compliance officers only."""
    return _compliance_officer(actor, "legal holds is for compliance officers") or ALLOW


def may_request_hold_release(actor: User, *, released: bool, release_pending: bool) -> Decision:
    """Ask for a hold's release (the first of two officers): an active compliance officer,
    on a hold that is active and has no release waiting."""
    if (denied := _compliance_officer(actor, "releasing a legal hold is for compliance officers")) is not None:
        return denied
    if released:
        return Decision(False, "conflict", "the hold is already released")
    if release_pending:
        return Decision(False, "conflict", "a release of this hold is already waiting for a second officer")
    return ALLOW


def may_approve_hold_release(
    actor: User, requester: User | None, *, released: bool, release_pending: bool, expired: bool = False
) -> Decision:
    """Dual control: approve a requested release. Every principal is checked at decision
    time: the approver is an active compliance officer who is NOT the requester, and the
    requester is still an active compliance officer (a request filed by someone who has
    since left the function does not count: reject it and file a new one). A request older
    than ``BANKHUB_HOLD_RELEASE_TTL_HOURS`` (``expired``) is not approved either."""
    if (denied := _compliance_officer(actor, "releasing a legal hold is for compliance officers")) is not None:
        return denied
    if released:
        return Decision(False, "conflict", "the hold is already released")
    if not release_pending or requester is None:
        return Decision(False, "conflict", "no release of this hold is waiting for approval")
    if requester.id == actor.id:
        return Decision(False, "forbidden", "a second compliance officer must approve the release of a legal hold")
    if requester.disabled or requester.role is not Role.COMPLIANCE:
        return Decision(False, "conflict", "the release was requested by someone who is no longer an active compliance officer")
    if expired:
        return Decision(False, "conflict", "the release request has expired (BANKHUB_HOLD_RELEASE_TTL_HOURS): reject it and ask again")
    return ALLOW


def may_reject_hold_release(actor: User, *, released: bool, release_pending: bool) -> Decision:
    """Reject (or, for the requester, withdraw) a requested release: any active compliance
    officer, the requester included; the hold stays active."""
    if (denied := _compliance_officer(actor, "releasing a legal hold is for compliance officers")) is not None:
        return denied
    if released:
        return Decision(False, "conflict", "the hold is already released")
    if not release_pending:
        return Decision(False, "conflict", "no release of this hold is waiting for approval")
    return ALLOW


# --- information barriers ---


def may_manage_barriers(actor: User) -> Decision:
    """Create segments, put users in them and take them out, add and remove barrier
    policies, and list them: active compliance officers only (every change is audited)."""
    if (denied := _compliance_officer(actor, "information barriers are managed by compliance officers")) is not None:
        return denied
    return ALLOW


def _separated(a: User, b: User, facts: BarrierFacts) -> bool:
    """Whether a barrier policy separates ``a`` and ``b`` (the hub's system user never is)."""
    if a.id == SYSTEM_USER_ID or b.id == SYSTEM_USER_ID or a.id == b.id:
        return False
    return barriers.barred(facts.of(a.id), facts.of(b.id), facts.policies)


BARRIER_REFUSED = Decision(False, "forbidden", "an information barrier forbids this: nothing was changed")
"""The refusal where the actor administers (an RM assignment, a book handover, a service-desk
transfer): it names no user and no segment."""


def may_communicate(a: User, b: User, facts: BarrierFacts) -> Decision:
    """Whether ``a`` and ``b`` may reach each other at all (an RM serving a customer, an
    agent taking a session): refused (:data:`BARRIER_REFUSED`, which names neither user nor
    segment) when a barrier policy separates any segment of one from any segment of the
    other (:func:`bankhub.compliance.barriers.barred`, symmetric). Both principals'
    segments come from ``facts``; a user in no segment is never barred; the hub's system
    user never is. Paths where the refused user could probe who sits behind a wall answer
    as they answer an unreachable peer instead: :func:`may_befriend_across`,
    :func:`may_open_direct_across`, :func:`may_join`."""
    return BARRIER_REFUSED if _separated(a, b, facts) else ALLOW


def may_befriend_across(actor: User, peer: User, facts: BarrierFacts) -> Decision:
    """Accept a contact request or redeem an invite code across a barrier: refused with the
    answer a blocked or disabled peer gets (``this user cannot be added``), so the barrier is
    not revealed."""
    return _CANNOT_ADD if _separated(actor, peer, facts) else ALLOW


def may_open_direct_across(actor: User, peer: User, facts: BarrierFacts) -> Decision:
    """Open a direct conversation across a barrier: refused with the answer a peer the actor
    may not reach gets (a customer: :data:`_CUSTOMER_DIRECT`; staff: as for a disabled
    account), so the barrier is not revealed."""
    if not _separated(actor, peer, facts):
        return ALLOW
    if actor.role is Role.CUSTOMER:
        return _CUSTOMER_DIRECT
    return Decision(False, "forbidden", "cannot open a conversation with this user")


def may_join(newcomers: Sequence[User], present: Collection[str], facts: BarrierFacts, *, actor: User | None = None) -> Decision:
    """Bring ``newcomers`` into a conversation whose members are ``present`` (ids; empty for a
    group being created, whose creator is then among the newcomers): refused when a barrier
    policy separates any newcomer from any present member or from another newcomer — every
    pair of principals who would share the conversation is checked, not only the actor's.

    The refusal names the newcomer (the actor named them) but neither the barrier nor the
    member behind it: a customer ``actor`` gets the answer a non-contact gets, staff
    ``<username> cannot join this group``."""
    if not facts.policies:
        return ALLOW
    seen: list[str] = list(dict.fromkeys(p for p in present if p != SYSTEM_USER_ID))
    for user in newcomers:
        if user.id == SYSTEM_USER_ID:
            continue
        if any(facts.between(user.id, other) for other in seen if other != user.id):
            if actor is not None and actor.role is Role.CUSTOMER:
                return _not_contact(user.username)
            return Decision(False, "forbidden", f"{user.username} cannot join this group")
        seen.append(user.id)
    return ALLOW


BARRIER_SEND_REFUSED = Decision(
    False,
    "forbidden",
    "an information barrier separates you from a member of this conversation: nothing was sent",
)
"""The send (and edit) refusal when a barrier separates the sender from any current member."""


def may_send_across(sender: User, decision: Decision, *, barred: bool) -> Decision:
    """A send already decided by :func:`may_send` (``decision``), then the barrier:
    ``barred`` (storage's fact) — a barrier policy separates the sender from a current member
    of the conversation, even one who was a member before the policy existed. Sends are
    refused from then on; the hub's own notices are not (the system user is in no segment).
    A refusal of the ordinary rules comes first (a non-member learns ``not_found``, never of
    a barrier)."""
    if not decision.allowed or not barred or sender.id == SYSTEM_USER_ID:
        return decision
    return BARRIER_SEND_REFUSED



# --- eDiscovery exports ---


def _export_officer(actor: User) -> Decision | None:
    return _compliance_officer(actor, "eDiscovery exports are for compliance officers")


def may_request_export(actor: User, reason: str) -> Decision:
    """Request an eDiscovery export: an active compliance officer, with a reason code."""
    if (denied := _export_officer(actor)) is not None:
        return denied
    if reason not in PRIVILEGED_READ_REASONS:
        return Decision(False, "invalid_request", f"a reason code is required: one of {sorted(PRIVILEGED_READ_REASONS)}")
    return ALLOW


def may_view_exports(actor: User) -> Decision:
    """List and read export requests (metadata only): active compliance officers."""
    return _export_officer(actor) or ALLOW


def may_approve_export(actor: User, requester: User | None, *, state: str, expired: bool = False) -> Decision:
    """Dual control: approve a requested export. The approver is an active compliance
    officer who is NOT the requester, the request is still pending, and its requester is
    still an active compliance officer (checked now, not when it was filed). A request older
    than ``BANKHUB_EXPORT_REQUEST_TTL_HOURS`` (``expired``) is not approved: file it again."""
    if (denied := _export_officer(actor)) is not None:
        return denied
    if requester is not None and requester.id == actor.id:
        return Decision(False, "forbidden", "a second compliance officer must approve an export")
    if state != "pending_approval":
        return Decision(False, "conflict", "the export is not waiting for approval")
    if requester is None or requester.disabled or requester.role is not Role.COMPLIANCE:
        return Decision(False, "conflict", "the export was requested by someone who is no longer an active compliance officer")
    if expired:
        return Decision(False, "conflict", "the export request has expired (BANKHUB_EXPORT_REQUEST_TTL_HOURS): file it again")
    return ALLOW


def may_reject_export(actor: User, *, state: str) -> Decision:
    """Reject a requested export (the requester: withdraw it): an active compliance officer,
    while it waits for approval."""
    if (denied := _export_officer(actor)) is not None:
        return denied
    if state != "pending_approval":
        return Decision(False, "conflict", "the export is not waiting for approval")
    return ALLOW


def may_download_export(actor: User, *, requested_by: str, approved_by: str | None, state: str) -> Decision:
    """Download a built export: only its requester or its approver, both still active
    compliance officers, once it is ``ready`` (``not_ready`` before)."""
    if (denied := _export_officer(actor)) is not None:
        return denied
    if actor.id not in (requested_by, approved_by):
        return Decision(False, "forbidden", "only the officer who requested an export or the one who approved it may download it")
    if state == "expired":
        return Decision(False, "gone", "the export expired (BANKHUB_EXPORT_RETENTION_DAYS): its copy was destroyed")
    if state != "ready":
        return Decision(False, "not_ready", f"the export is {state.replace('_', ' ')}, not ready")
    return ALLOW


def may_retry_export(actor: User, *, requested_by: str, approved_by: str | None, state: str) -> Decision:
    """Rebuild a failed export (interrupted, a key or the blob store unavailable): only its
    requester or its approver, an active compliance officer, and only from ``failed``."""
    if (denied := _export_officer(actor)) is not None:
        return denied
    if actor.id not in (requested_by, approved_by):
        return Decision(False, "forbidden", "only the officer who requested an export or the one who approved it may retry it")
    if state != "failed" or approved_by is None:
        return Decision(False, "conflict", f"the export is {state.replace('_', ' ')}: only a failed export is retried")
    return ALLOW


def may_run_export(actor: User, *, requested_by: str, approved_by: str | None, state: str) -> Decision:
    """Build an export in the command line's own process (``bankhub export run``): the file it
    writes is a download, so only its requester or its approver (an active compliance officer),
    once a second officer approved it. A ``ready`` export is never rebuilt (``conflict``): a
    rebuild gives new bytes, and every earlier download would no longer match its record."""
    if (denied := _export_officer(actor)) is not None:
        return denied
    if actor.id not in (requested_by, approved_by):
        return Decision(False, "forbidden", "only the officer who requested an export or the one who approved it may build it")
    if state == "ready":
        return Decision(False, "conflict", "the export is ready and is never rebuilt: download it")
    if approved_by is None or state not in ("running", "failed"):
        return Decision(False, "conflict", f"the export is {state.replace('_', ' ')}: only an approved export is built")
    return ALLOW


# --- data-loss prevention (docs/compliance.md, "Data-loss prevention") -------------------------

DLP_ACTIONS = ("allow", "mask", "refuse")
"""What a send carrying sensitive data gets, weakest first."""
DLP_DIRECTIONS = ("customer_to_staff", "staff_to_customer", "customer_to_customer", "staff_to_staff")
_DLP_STRENGTH = {a: i for i, a in enumerate(DLP_ACTIONS)}
_DLP_CODES = frozenset({"cvv", "otp"})
_DLP_NAMES = {
    "card": "a card number",
    "resident_id": "a resident ID number",
    "bank_account": "a bank account number",
    "cvv": "a card security code (CVV)",
    "otp": "a one-time code",
}


def _dlp_customer(role: Role | str, visitor: bool) -> bool:
    # a service-widget visitor is a customer whatever their row says
    return visitor or role == Role.CUSTOMER  # Role is a str enum: a role read from a row compares too


def dlp_direction(sender_is_customer: bool, recipient_is_customer: bool) -> str:
    """The direction of a send from one side to the other (one of :data:`DLP_DIRECTIONS`)."""
    return f"{'customer' if sender_is_customer else 'staff'}_to_{'customer' if recipient_is_customer else 'staff'}"


@dataclass(frozen=True, slots=True)
class DlpVerdict:
    """:func:`dlp_action`'s answer: the ``action`` and the ``direction`` that decided it."""

    action: str
    direction: str


def dlp_action(
    sender: User,
    recipients: Collection[tuple[Role | str, bool]],
    kinds: Collection[str],
    configured: Mapping[str, str],
) -> DlpVerdict:
    """What a send of ``sender`` carrying values of ``kinds`` (:mod:`bankhub.compliance.dlp`)
    gets: ``allow``, ``mask`` or ``refuse``.

    ``recipients``: the (role, widget visitor) of every other member of the conversation (none:
    the sender's own side); ``configured``: the action of each direction
    (``BANKHUB_DLP_*``). The strictest verdict over every recipient applies (refuse > mask >
    allow). A CVV or a one-time code is never passed on as typed: at least masked in every
    direction, and refused from staff to a customer — a bank never sends a customer a code or
    a security code, so such a message is a mistake or a fraud either way. Nothing found: allow.
    """
    sender_customer = _dlp_customer(sender.role, sender.visitor)
    sides = sorted({_dlp_customer(role, visitor) for role, visitor in recipients} or {sender_customer})
    if not kinds:
        return DlpVerdict("allow", dlp_direction(sender_customer, sides[0]))
    codes = bool(_DLP_CODES.intersection(kinds))
    verdict, decided = -1, ""
    for recipient_customer in sides:
        direction = dlp_direction(sender_customer, recipient_customer)
        # an unknown configured value reads as the strictest: never weaker than intended
        action = _DLP_STRENGTH.get(configured.get(direction, "refuse"), _DLP_STRENGTH["refuse"])
        if codes:
            action = max(action, _DLP_STRENGTH["mask"])
            if not sender_customer and recipient_customer:
                action = _DLP_STRENGTH["refuse"]
        if action > verdict:
            verdict, decided = action, direction
    return DlpVerdict(DLP_ACTIONS[verdict], decided)


def dlp_refusal(kinds: Collection[str]) -> Decision:
    """The refusal of a send carrying ``kinds``: code ``sensitive_data``, saying what was found
    (never the value)."""
    found = ", ".join(_DLP_NAMES.get(k, k) for k in sorted(set(kinds), key=lambda k: (k not in _DLP_NAMES, list(_DLP_NAMES).index(k) if k in _DLP_NAMES else 0, k)))
    return Decision(
        False,
        ErrorCode.SENSITIVE_DATA,
        f"not sent: the message contains {found}; card numbers, ID numbers, account numbers, "
        "security codes and one-time codes may not be sent in this conversation",
    )


def may_search_dlp(actor: User, reason: str) -> Decision:
    """Search the fingerprints of masked values: a privileged read (active compliance officers,
    with a reason code)."""
    return may_read_privileged(actor, reason)


def may_read_dlp_figures(actor: User) -> Decision:
    """Counts of masked values and refused sends (no message, no value): active compliance officers."""
    if (denied := _compliance_officer(actor, "data-loss prevention figures are for compliance officers")) is not None:
        return denied
    return ALLOW


# --- retention, purge and erasure ---


def may_manage_retention(actor: User) -> Decision:
    """Read and set retention policies, start or resume a purge, file an erasure request:
    active compliance officers only (a purge and an erasure destroy records)."""
    if (denied := _compliance_officer(actor, "retention and erasure are for compliance officers")) is not None:
        return denied
    return ALLOW


def may_approve_retention_request(actor: User, requester: User | None, *, pending: bool, expired: bool) -> Decision:
    """Dual control: approve a policy change that creates, shortens or removes retention, or an
    erasure. The approver is an active compliance officer who is NOT the requester; the
    requester is still an active compliance officer; the request is pending and younger than
    ``BANKHUB_RETENTION_REQUEST_TTL_HOURS``."""
    if not (officer := may_manage_retention(actor)).allowed:
        return officer
    if not pending or requester is None:
        return Decision(False, "conflict", "this request is no longer waiting for approval")
    if requester.id == actor.id:
        return Decision(False, "forbidden", "a second compliance officer must approve this request")
    if requester.disabled or requester.role is not Role.COMPLIANCE:
        return Decision(False, "conflict", "the request was filed by someone who is no longer an active compliance officer")
    if expired:
        return Decision(False, "conflict", "the request has expired (BANKHUB_RETENTION_REQUEST_TTL_HOURS): reject it and ask again")
    return ALLOW


def may_reject_retention_request(actor: User, *, pending: bool) -> Decision:
    """Reject (or, for the requester, withdraw) a pending request: any active compliance officer."""
    if not (officer := may_manage_retention(actor)).allowed:
        return officer
    if not pending:
        return Decision(False, "conflict", "this request is no longer waiting for approval")
    return ALLOW


# --- supervision (docs/compliance.md, "Supervision") ---

SUPERVISION_SAMPLED_ROLES = frozenset({Role.RM, Role.AGENT})
"""Whose messages are sampled: the staff who advise and serve customers (RMs and
service-desk agents); their supervision is what the review sample is for."""

SUPERVISION_DECISIONS = {"escalate": "escalated", "close": "closed"}


def supervised(sender: User) -> tuple[bool, bool]:
    """Whether the rules apply to what ``sender`` writes, and whether it may be sampled.

    The rules apply to every person — staff, customers and widget visitors alike: a
    customer's "add me on WeChat" is an off-channel request the bank must see as much as an
    RM's (incoming correspondence is reviewed too). The hub's own notices are not
    supervised. Only RMs and service-desk agents are sampled; customers never are."""
    if sender.id == SYSTEM_USER_ID:
        return False, False
    return True, sender.role in SUPERVISION_SAMPLED_ROLES


def may_supervise(actor: User) -> Decision:
    """Manage supervision rules, see the review queue and the figures: active compliance officers."""
    if (denied := _compliance_officer(actor, "supervision is for compliance officers")) is not None:
        return denied
    return ALLOW


def may_decide_flag(
    actor: User, state: str, decision: str, *, sender_id: str | None = None, escalated_by: str | None = None
) -> Decision:
    """Escalate or close a flag: a compliance officer, on an open flag (escalate or close) or
    an escalated one (close). A closed flag is final, and an escalated one is not escalated
    again (``conflict``). Every principal is checked: nobody decides a flag raised on their
    own message (``sender_id``), and an escalated flag is closed by a second officer, not the
    one who escalated it (``escalated_by``: four eyes) — both ``forbidden``."""
    if not (allowed := may_supervise(actor)).allowed:
        return allowed
    if decision not in SUPERVISION_DECISIONS:
        return Decision(False, "invalid_request", "decision must be escalate or close")
    if sender_id is not None and sender_id == actor.id:
        return Decision(False, "forbidden", "this flag was raised on your own message: another compliance officer decides it")
    if state == "closed":
        return Decision(False, "conflict", "this flag is closed: a closed flag is not decided again")
    if state == "escalated" and decision == "escalate":
        return Decision(False, "conflict", "this flag is escalated already")
    if state == "escalated" and escalated_by is not None and escalated_by == actor.id:
        return Decision(False, "forbidden", "you escalated this flag: a second compliance officer closes it")
    return ALLOW
