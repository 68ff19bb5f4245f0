"""Groups: creating them, owner and admin roles, invite, remove, leave, rename; org groups.

A hand-made group has one owner and any number of admins. The owner and admins invite and
remove members and rename the group; the owner promotes and demotes admins and may hand
ownership on; when the owner leaves, the longest-standing admin (else member) becomes the
owner. Customers make groups with their contacts (``hub.contacts``), staff with staff; the
size cap is ``Settings.group_max_members``.

An org group is bound to an org: its members are the active staff of that org and every
org below it, and nobody joins, leaves or is removed by hand. :func:`reconcile_user` (called
by the user actions when a user is created or changes role) and :func:`reconcile_all` (a
periodic job of every node: disabling, org moves made outside the hub) keep it so.

Each change is one transaction that locks the group's row (:meth:`GroupStore.lock`), asks
the policy with every principal's facts (contacts and blocks read in it, under that lock),
writes, and appends a ``system`` message saying what changed (events ``group_*``,
:data:`bankhub.desk.system.GROUP_EVENTS`) in the same transaction, so neither commits
without the other. After commit the members' devices learn: ``conversation_added`` /
``conversation_removed`` to those who gained or lost the group (the latter cut off on every
node at once), and the message, live and through sync. (:func:`reconcile_user` alone posts
after its commit; see there.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import msgspec

from .. import policy
from ..desk.system import SystemEvent
from ..hub import Hub
from ..models import ConversationSummary, Membership, Role, User
from ..outbox import Transaction
from ..protocol.frames import ConversationAdded, ConversationRemoved, ErrorCode, SystemBody
from ..signals import MessageSignal
from ..storage import NewMessage
from ..storage.barriers import BarrierStore
from ..storage.contacts import ContactStore
from ..storage.db import Conn
from ..storage.groups import GroupRow, GroupStore
from . import dlp, routing, supervision, system_posts
from .audit import record
from .errors import ActionError, require

__all__ = [
    "ORG_GROUP_CREATED",
    "MAX_TITLE_CHARS",
    "MAX_INVITE",
    "GroupView",
    "MemberView",
    "create_group",
    "create_org_group",
    "view",
    "rename",
    "invite",
    "remove",
    "leave",
    "set_role",
    "members",
    "reconcile_user",
    "reconcile_group",
    "reconcile_all",
]

log = logging.getLogger("bankhub.groups")

ORG_GROUP_CREATED = "group.org_created"  # audit action
_body = msgspec.json.Encoder()
MAX_TITLE_CHARS = 100
MAX_INVITE = 100  # usernames in one invitation


class GroupView(msgspec.Struct):
    """A group as its members (and an org group's administrators) see it.

    ``org``: the org code of an org group (None: a hand-made group). ``my_role``: the
    caller's role (None: an administrator of the org who is no member). ``max_members``:
    the cap of a hand-made group (None: an org group, which follows the org tree)."""

    conversation_id: str
    title: str | None
    org: str | None
    my_role: str | None
    members: int
    max_members: int | None


class MemberView(msgspec.Struct):
    """A fellow member: names and role, nothing else about the account."""

    user_id: str
    username: str
    display_name: str
    role: str


def _no_group() -> ActionError:
    return ActionError("not_found", "no such group")


def _conv_id(conversation_id: str) -> str:
    try:
        return str(uuid.UUID(conversation_id))
    except ValueError:
        raise _no_group() from None


def _title(title: str) -> str:
    title = title.strip()
    if not 1 <= len(title) <= MAX_TITLE_CHARS:
        raise ActionError("invalid_request", f"a group title has 1 to {MAX_TITLE_CHARS} characters")
    return title


def _membership(conversation_id: str, user_id: str, role: str | None) -> Membership | None:
    return None if role is None else Membership(conversation_id, "group", user_id, role, 0, 0)


async def _contact_ids(conn: Conn, actor: User, others: Sequence[User]) -> set[str]:
    """Which of ``others`` are the actor's contacts (accepted, no block either way); only a
    customer's contacts matter to the policy. Read in the change's transaction (after the
    group's row lock): a block or unfriending committed before it is seen."""
    if actor.role is not Role.CUSTOMER:
        return set()
    return {o.id for o in others if o.id != actor.id and await ContactStore.are_contacts_in(conn, actor.id, o.id)}


async def _users(hub: Hub, actor: User, usernames: Sequence[str]) -> list[User]:
    """The users named, in order. An unknown name is ``not_found`` for staff. For a customer
    it stands as a disabled account no one has as a contact, so the policy answers it where
    and as it answers a non-contact (after the group checks, in order): nothing tells a
    customer whether an account exists."""
    found: list[User] = []
    for name in dict.fromkeys(usernames):
        user = await hub.users.by_username(name)
        if user is None:
            if actor.role is Role.CUSTOMER:
                found.append(User(str(uuid.uuid4()), name, name, Role.CUSTOMER, "", disabled=True))
                continue
            raise ActionError("not_found", f"no such user: {name}")
        found.append(user)
    return found


def _view(group: GroupRow, my_role: str | None, cap: int) -> GroupView:
    return GroupView(
        conversation_id=group.id,
        title=group.title,
        org=group.org_code,
        my_role=my_role,
        members=group.members,
        max_members=None if group.org_id is not None else cap,
    )


def _names(users: Sequence[User]) -> str:
    return ", ".join(u.display_name for u in users)


def _data(actor: User | None, **more: str) -> dict[str, str]:
    data = {} if actor is None else {"actor": actor.username, "actor_id": actor.id, "actor_name": actor.display_name}
    data.update(more)
    return data


def _granted(tx: Transaction, user_ids: Sequence[str], conversation_id: str, reason: str) -> None:
    for uid in user_ids:
        tx.emit(*routing.access(uid, conversation_id, True, ConversationAdded(conversation_id=conversation_id, kind="group", reason=reason)))


def _revoked(tx: Transaction, user_ids: Sequence[str], conversation_id: str, reason: str) -> None:
    for uid in user_ids:
        tx.emit(*routing.access(uid, conversation_id, False, ConversationRemoved(conversation_id=conversation_id, reason=reason)))


async def _post_txn(hub: Hub, tx: Transaction, system: User, conversation_id: str, event: str, text: str, data: dict[str, str]) -> None:
    """The group's ``system`` message about a change, appended in the change's own
    transaction, so neither commits without the other. The caller holds the group's
    ``conversations`` row lock (:meth:`GroupStore.lock`, taken first);
    :meth:`~bankhub.storage.MessageStore.lock_txn` takes that same row again and reads the
    members as this transaction left them (the message reaches who is a member after the
    change). Its signal leaves with the transaction's others, after commit.

    No message when nobody is left to read it (the last member left), nor into a group
    whose history was erased (``gone``): the change itself still stands. A data key that
    cannot be had is ``unavailable``: nothing changes, the caller retries."""
    body = SystemBody(event=event, text=text, data=data)
    new = NewMessage(
        sender=system, conversation_id=conversation_id, client_msg_id=f"sys:{uuid.uuid4()}", kind="system", body=_body.encode(body)
    )
    locked = await hub.messages.lock_txn(tx.conn, [new])
    decision = policy.may_post_system(system, locked.membership(new), event)
    if not decision.allowed:
        return  # no member left
    [result] = await hub.messages.append_txn(tx.conn, [new], locked, [decision])
    if result.message is None:
        if result.code == ErrorCode.GONE:
            return
        raise ActionError(result.code or "unavailable", result.reason or "the group's message could not be stored; nothing was changed, retry")
    tx.emit_to_users(result.recipients, MessageSignal(message=result.message, origin=None))


async def _post(hub: Hub, conversation_id: str, event: str, text: str, data: dict[str, str]) -> None:
    """The group's ``system`` message about a committed change (logged, never raised: the
    change itself is committed and every device already learnt of it). Only for the changes
    :func:`reconcile_user` makes to several groups at once without their row locks (see there)."""
    try:
        await system_posts.post(hub, conversation_id, event, text, data)
    except Exception:
        log.warning("group event %s not posted", event, exc_info=True)


async def _locked(tx: Transaction, conversation_id: str) -> GroupRow:
    group = await GroupStore.lock(tx.conn, conversation_id)
    if group is None:
        raise _no_group()
    return group


# --- hand-made groups ------------------------------------------------------------------------


async def create_group(hub: Hub, actor: User, title: str, usernames: Sequence[str]) -> ConversationSummary:
    """Create a group with ``actor`` as its owner (see :func:`bankhub.policy.may_create_group`);
    the other members' devices learn of it (``conversation_added``, reason ``group_created``)."""
    title = _title(title)
    cap = hub.settings.group_max_members
    if len(set(usernames)) > cap:
        raise ActionError("group_full", f"a group has at most {cap} members")
    members = await _users(hub, actor, usernames)
    # data-loss prevention: the title is text every member reads (masked, or refused sensitive_data)
    title = dlp.screen_text(hub.settings, actor, [(m.role, m.visitor) for m in members if m.id != actor.id], title)
    async with hub.transaction("group_create") as tx:
        contacts = await _contact_ids(tx.conn, actor, members)
        require(policy.may_create_group(actor, members, contacts=contacts, max_members=cap))
        # information barriers: no two of the members (the creator included) may be separated by one
        barrier = await BarrierStore.facts_txn(tx.conn, [actor.id, *(m.id for m in members)])
        require(policy.may_join([actor, *members], (), barrier, actor=actor))
        conv_id = await GroupStore.create_txn(tx.conn, actor.id, title, [m.id for m in members])
        await supervision.flag_title_txn(hub, tx.conn, actor, conv_id, title)  # supervision: the title meets the rules
        _granted(tx, [m.id for m in members if m.id != actor.id], conv_id, "group_created")
    for c in await hub.conversations.list_for_user(actor.id):
        if c.id == conv_id:
            return c
    raise _no_group()  # pragma: no cover - just created


async def view(hub: Hub, actor: User, conversation_id: str) -> GroupView:
    """The group's title, org, size and my role: members (and an org group's administrators)."""
    conv = _conv_id(conversation_id)
    group = await hub.groups.group(conv)
    if group is None:
        raise _no_group()
    membership = await hub.conversations.membership(conv, actor.id)
    decision = policy.may_view_group(actor, membership)
    if not decision.allowed and group.org_id is not None:
        # an org group's administrators see it (to rename it) without being members
        decision = policy.may_rename_group(actor, None, await hub.users.org_ancestry(group.org_id))
    require(decision)
    return _view(group, None if membership is None else membership.role, hub.settings.group_max_members)


async def rename(hub: Hub, actor: User, conversation_id: str, title: str) -> GroupView:
    """Rename; the members see ``group_renamed`` (data ``title``)."""
    conv, title = _conv_id(conversation_id), _title(title)
    system = await hub.desk.system()
    async with hub.transaction("group_rename") as tx:
        group = await _locked(tx, conv)
        role = await GroupStore.role_of(tx.conn, conv, actor.id)
        org_path = None if group.org_id is None else await hub.users.org_ancestry_in(tx.conn, group.org_id)
        require(policy.may_rename_group(actor, _membership(conv, actor.id, role), org_path))
        # information barriers: the title is free text every member reads, refused as a send is
        barred = await BarrierStore.barred_txn(tx.conn, [(conv, actor.id)])
        require(policy.may_send_across(actor, policy.ALLOW, barred=bool(barred)))
        title = await dlp.screen_title_txn(hub.settings, tx.conn, actor, conv, title)  # data-loss prevention, as for a send
        await GroupStore.rename_txn(tx.conn, conv, title)
        await supervision.flag_title_txn(hub, tx.conn, actor, conv, title)  # supervision: the title meets the rules
        await _post_txn(hub, tx, system, conv, SystemEvent.GROUP_RENAMED, f"{actor.display_name} renamed the group to “{title}”", _data(actor, title=title))
    return await view(hub, actor, conv)


async def invite(hub: Hub, actor: User, conversation_id: str, usernames: Sequence[str]) -> GroupView:
    """Invite members (owner and admins); each invitee gains the group
    (``conversation_added``, reason ``group_invited``) and the members see
    ``group_members_added``. Inviting a member already there is ``conflict``."""
    conv = _conv_id(conversation_id)
    if not 1 <= len(usernames) <= MAX_INVITE:
        raise ActionError("invalid_request", f"invite 1 to {MAX_INVITE} users at a time")
    invitees = await _users(hub, actor, usernames)
    cap = hub.settings.group_max_members
    system = await hub.desk.system()
    async with hub.transaction("group_invite") as tx:
        group = await _locked(tx, conv)
        membership = _membership(conv, actor.id, await GroupStore.role_of(tx.conn, conv, actor.id))
        current = set(await GroupStore.member_ids(tx.conn, conv))
        contacts = await _contact_ids(tx.conn, actor, invitees)
        # who the invitees would reach: a customer brings customers only to staff whose book holds them
        staff = await GroupStore.staff_members(tx.conn, conv)
        for n, invitee in enumerate(invitees):
            require(
                policy.may_invite_to_group(
                    actor,
                    membership,
                    invitee,
                    org_bound=group.org_id is not None,
                    is_contact=invitee.id in contacts,
                    already_member=invitee.id in current,
                    members=group.members + n,
                    max_members=cap,
                    staff=staff,
                )
            )
        # information barriers: no invitee separated from a member or from another invitee
        barrier = await BarrierStore.facts_txn(tx.conn, [*current, *(u.id for u in invitees)])
        require(policy.may_join(invitees, current, barrier, actor=actor))
        added = await GroupStore.add_txn(tx.conn, conv, [u.id for u in invitees])
        _granted(tx, added, conv, "group_invited")
        names = _names(invitees)
        await _post_txn(
            hub,
            tx,
            system,
            conv,
            SystemEvent.GROUP_MEMBERS_ADDED,
            f"{actor.display_name} invited {names}",
            _data(actor, users=",".join(u.username for u in invitees), user_ids=",".join(u.id for u in invitees), names=names),
        )
    return await view(hub, actor, conv)


async def remove(hub: Hub, actor: User, conversation_id: str, username: str) -> GroupView:
    """Remove a member (see :func:`bankhub.policy.may_remove_from_group`): they lose the
    group on every device at once (``conversation_removed``, reason ``group_removed``);
    the members see ``group_member_removed``."""
    conv = _conv_id(conversation_id)
    target = await hub.users.by_username(username)
    system = await hub.desk.system()
    async with hub.transaction("group_remove") as tx:
        group = await _locked(tx, conv)
        membership = _membership(conv, actor.id, await GroupStore.role_of(tx.conn, conv, actor.id))
        target_role = None if target is None else await GroupStore.role_of(tx.conn, conv, target.id)
        target_m = None if target is None else _membership(conv, target.id, target_role)
        require(policy.may_remove_from_group(actor, membership, target_m, org_bound=group.org_id is not None))
        assert target is not None
        await GroupStore.remove_txn(tx.conn, conv, target.id)
        _revoked(tx, [target.id], conv, "group_removed")
        await _post_txn(
            hub,
            tx,
            system,
            conv,
            SystemEvent.GROUP_MEMBER_REMOVED,
            f"{actor.display_name} removed {target.display_name}",
            _data(actor, user=target.username, user_id=target.id, name=target.display_name),
        )
    return await view(hub, actor, conv)


async def leave(hub: Hub, actor: User, conversation_id: str) -> None:
    """Leave a hand-made group. The members see ``group_member_left``; an owner who leaves
    hands ownership to the longest-standing admin, else member (``group_owner_changed``)."""
    conv = _conv_id(conversation_id)
    successor: User | None = None
    system = await hub.desk.system()
    async with hub.transaction("group_leave") as tx:
        group = await _locked(tx, conv)
        role = await GroupStore.role_of(tx.conn, conv, actor.id)
        require(policy.may_leave_group(actor, _membership(conv, actor.id, role), org_bound=group.org_id is not None))
        await GroupStore.remove_txn(tx.conn, conv, actor.id)
        if role == "owner":
            heir = await GroupStore.successor_txn(tx.conn, conv)
            if heir is not None:
                await GroupStore.set_role_txn(tx.conn, conv, heir, "owner")
                successor = (await hub.users.by_ids([heir])).get(heir)
        _revoked(tx, [actor.id], conv, "group_left")
        await _post_txn(hub, tx, system, conv, SystemEvent.GROUP_MEMBER_LEFT, f"{actor.display_name} left the group", _data(actor))
        if successor is not None:
            await _post_txn(
                hub,
                tx,
                system,
                conv,
                SystemEvent.GROUP_OWNER_CHANGED,
                f"{successor.display_name} is now the group's owner",
                _data(None, user=successor.username, user_id=successor.id, name=successor.display_name, previous=actor.username),
            )


async def set_role(hub: Hub, actor: User, conversation_id: str, username: str, role: str) -> GroupView:
    """The owner makes a member an admin (``role`` ``admin``), an admin a member again
    (``member``), or hands ownership on (``owner``: the actor becomes an admin). The members
    see ``group_role_changed`` (data ``role``) or ``group_owner_changed``."""
    conv = _conv_id(conversation_id)
    target = await hub.users.by_username(username)
    system = await hub.desk.system()
    async with hub.transaction("group_set_role") as tx:
        group = await _locked(tx, conv)
        membership = _membership(conv, actor.id, await GroupStore.role_of(tx.conn, conv, actor.id))
        target_m = None if target is None else _membership(conv, target.id, await GroupStore.role_of(tx.conn, conv, target.id))
        require(policy.may_set_group_role(actor, membership, target_m, target, role, org_bound=group.org_id is not None))
        assert target is not None and target_m is not None
        if target_m.role == role:
            return _view(group, "owner", hub.settings.group_max_members)  # nothing changes: no message
        await GroupStore.set_role_txn(tx.conn, conv, target.id, role)
        if role == "owner":
            await GroupStore.set_role_txn(tx.conn, conv, actor.id, "admin")
        who = _data(actor, user=target.username, user_id=target.id, name=target.display_name, role=role)
        if role == "owner":
            text = f"{actor.display_name} made {target.display_name} the group's owner"
            await _post_txn(hub, tx, system, conv, SystemEvent.GROUP_OWNER_CHANGED, text, who)
        else:
            text = f"{actor.display_name} made {target.display_name} an admin" if role == "admin" else f"{target.display_name} is no longer an admin"
            await _post_txn(hub, tx, system, conv, SystemEvent.GROUP_ROLE_CHANGED, text, who)
    return await view(hub, actor, conv)


async def members(
    hub: Hub, actor: User, conversation_id: str, *, after: tuple[int, str] | None, limit: int
) -> list[tuple[MemberView, tuple[int, str]]]:
    """A page of the group's members in join order (members only: names of fellow members)."""
    conv = _conv_id(conversation_id)
    require(policy.may_view_group(actor, await hub.conversations.membership(conv, actor.id)))
    page = await hub.groups.members_page(conv, after=after, limit=limit)
    return [(MemberView(m.user_id, m.username, m.display_name, m.role), key) for m, key in page]


# --- org groups ------------------------------------------------------------------------------


async def create_org_group(hub: Hub, actor: User, title: str, org_code: str) -> GroupView:
    """An administrator creates a group of all active staff of ``org_code`` and below
    (see :func:`bankhub.policy.may_create_org_group`), audited (``group.org_created``);
    the members gain it (reason ``group_org``) and see ``group_created``."""
    title = _title(title)
    orgs = await hub.users.org_ids_by_code([org_code])
    org_id = orgs.get(org_code)
    if org_id is None:
        # everyone but head office gets the answer of an org out of their reach (403): nothing
        # about other branches' org codes leaks; head office, which reaches every org, learns
        # that there is no such org (404)
        require(policy.may_create_org_group(actor, []))
        raise ActionError("not_found", f"no org with code {org_code!r}")
    decision = policy.may_create_org_group(actor, await hub.users.org_ancestry(org_id))
    require(decision)
    system = await hub.desk.system()
    title = dlp.screen_text(hub.settings, actor, [(Role.AGENT, False)], title)  # data-loss prevention: read by staff
    async with hub.transaction("group_create_org") as tx:
        conv = await GroupStore.create_txn(tx.conn, actor.id, title, [], org_id)
        await supervision.flag_title_txn(hub, tx.conn, actor, conv, title)  # supervision: the title meets the rules
        added, _ = await GroupStore.reconcile_group_txn(tx.conn, conv, org_id)
        _granted(tx, added, conv, "group_org")
        # an administrator reaching every member of staff of a subtree: on the audit chain
        await record(hub, actor=actor, action=ORG_GROUP_CREATED, target=f"conversation:{conv}",
                     details={"org": org_code, "members": len(added)}, conn=tx.conn)
        await _post_txn(hub, tx, system, conv, SystemEvent.GROUP_CREATED,
                        f"{actor.display_name} created the group “{title}” for all staff of {org_code}", _data(actor, title=title, org=org_code))
    return await view(hub, actor, conv)


async def _org_changes(hub: Hub, joined: Sequence[str], left: Sequence[str]) -> list[tuple[str, str, dict[str, str]]]:
    """The org group's messages (event, text, data) about members who joined or left the org tree."""
    if not joined and not left:
        return []
    users = await hub.users.by_ids([*joined, *left])
    out: list[tuple[str, str, dict[str, str]]] = []
    if joined:
        who = [users[u] for u in joined if u in users]
        out.append((
            SystemEvent.GROUP_MEMBERS_ADDED, f"{_names(who)} joined",
            _data(None, users=",".join(u.username for u in who), user_ids=",".join(u.id for u in who), names=_names(who), reason="org"),
        ))
    for uid in left:
        user = users.get(uid)
        name = user.display_name if user else "A member"
        out.append((
            SystemEvent.GROUP_MEMBER_REMOVED, f"{name} is no longer a member",
            _data(None, user=user.username if user else "", user_id=uid, name=name, reason="org"),
        ))
    return out


async def _announce(hub: Hub, conv: str, joined: Sequence[str], left: Sequence[str]) -> None:
    """:func:`_org_changes` posted after the commit (see :func:`reconcile_user`)."""
    for event, text, data in await _org_changes(hub, joined, left):
        await _post(hub, conv, event, text, data)


async def reconcile_user(hub: Hub, user_id: str) -> None:
    """Make the user a member of exactly the org groups they belong in now: after they were
    created, disabled, or changed role or org. Their devices gain or lose those groups.

    The groups' messages follow the commit: this transaction changes memberships of several
    groups without taking their ``conversations`` row locks first, and taking them afterwards
    (to append in it) would break the lock order every other group change and the group
    committer keep (that row first). A crash in between loses a message, not a membership;
    the periodic :func:`reconcile_group` posts its own in its transaction."""
    async with hub.transaction("group_reconcile_user") as tx:
        joined, left = await GroupStore.reconcile_user_txn(tx.conn, user_id)
        for conv in joined:
            _granted(tx, [user_id], conv, "group_org")
        for conv in left:
            _revoked(tx, [user_id], conv, "group_org")
    for conv in joined:
        await _announce(hub, conv, [user_id], [])
    for conv in left:
        await _announce(hub, conv, [], [user_id])


async def reconcile_group(hub: Hub, conversation_id: str) -> tuple[list[str], list[str]]:
    """Make one org group's members the active staff of its org's subtree; returns
    ``(added, removed)`` user ids. The members' messages about it are appended in the same
    transaction, under the group's row lock."""
    system = await hub.desk.system()
    async with hub.transaction("group_reconcile") as tx:
        group = await GroupStore.lock(tx.conn, conversation_id)
        if group is None or group.org_id is None:
            return [], []
        added, removed = await GroupStore.reconcile_group_txn(tx.conn, conversation_id, group.org_id)
        _granted(tx, added, conversation_id, "group_org")
        _revoked(tx, removed, conversation_id, "group_org")
        for event, text, data in await _org_changes(hub, added, removed):
            await _post_txn(hub, tx, system, conversation_id, event, text, data)
    return added, removed


async def reconcile_all(hub: Hub) -> None:
    """Every org group reconciled (the periodic safety net behind :func:`reconcile_user`)."""
    for conv in await hub.groups.org_group_ids():
        await reconcile_group(hub, conv)
