"""Contacts (friends): requests, accepting and declining, removing, blocking, invite codes.

Who may befriend or block whom is :func:`bankhub.policy.may_befriend` /
:func:`bankhub.policy.may_block`, asked with both users as they are inside the changing
transaction. An add by username or phone never reveals whether the account exists: every
such request is answered the same (HTTP 202) and shown the same in its sender's outgoing
list, whether it reached a user, reached nobody (no such account, a user the sender may not
befriend, a block either way, an information barrier between the two, a full incoming list)
or was declined later. Invite codes are explicit, since their holder was given the code.

The outgoing list shows one row per handle typed, whatever it resolved to: a second handle
of someone I already asked, or of my contact, is stored like a handle of nobody (it reaches
no one), so the list never shows which handles belong to one account. Requests are
rate-limited per sender (:data:`REQUESTS_PER_USER`), and a withdrawn request keeps counting
against its sender's pending limit until it would have lapsed: request, withdraw and request
again cannot notify anyone without bound. A block reads to the blocked user's outgoing list
as a decline.

Both sides' devices learn of every change through a ``contact`` frame
(:class:`~bankhub.protocol.frames.ContactEvent`) emitted into the outbox, published after
the commit. Every list a user can grow is bounded (``BANKHUB_CONTACTS_*``).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterable

from .. import policy
from ..hub import Hub
from ..models import User
from ..outbox import Transaction
from ..protocol.frames import ContactEvent, ContactUser, encode
from ..ratelimit import Limit
from ..signals import PushSignal
from ..storage.barriers import BarrierStore
from ..storage.contacts import ContactRow, ContactStore, IncomingRow, OutgoingRow
from ..storage.users import UserStore
from .errors import ActionError, require
from .limits import enforce

__all__ = [
    "INVITE_LINK_PREFIX",
    "REQUESTS_PER_USER",
    "normalize_phone",
    "normalize_code",
    "contact_user",
    "request",
    "accept",
    "decline",
    "withdraw",
    "remove",
    "block",
    "unblock",
    "create_invite",
    "revoke_invites",
    "redeem",
    "list_contacts",
    "list_incoming",
    "list_outgoing",
    "list_blocked",
]

INVITE_LINK_PREFIX = "bankhub://contact/"
# Crockford's base32 (no I, L, O, U): read aloud and typed without confusion
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS = 16  # 80 random bits
_CODE_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_PHONE_SEPARATORS = str.maketrans("", "", " -().")
_NO_INVITE = "no such invite code, or it was used or has expired"
REQUESTS_PER_USER = Limit(rate=1 / 30, burst=20)
"""Contact requests one user may send: 20 at once, then one every 30 seconds (``rate_limited``,
429 with ``Retry-After``). Each request may notify someone, so this bounds the notifications a
user can push; the limiter failing lets requests through (the pending limit still holds)."""


def normalize_phone(raw: str) -> str | None:
    """``raw`` as an E.164 number (``+8613800000001``), or None when it is not one.

    Spaces, dashes, dots and brackets are dropped; a leading ``00`` reads as ``+``; an
    11-digit number starting with 1 and no country code is a mainland China mobile number
    (the bank's home market), so ``138 0000 0001`` and ``+86 13800000001`` are one number."""
    s = raw.strip().translate(_PHONE_SEPARATORS)
    if s.startswith("00"):
        s = "+" + s[2:]
    if not s.startswith("+"):
        if len(s) == 11 and s.startswith("1") and s.isascii() and s.isdigit():
            s = "+86" + s
        else:
            return None
    digits = s[1:]
    if not (digits.isascii() and digits.isdigit()) or not 7 <= len(digits) <= 15 or digits[0] == "0":
        return None
    return s


def normalize_code(raw: str) -> str | None:
    """An invite code as typed or scanned (the code, or its ``bankhub://contact/`` link;
    any case, dashes and spaces, O for 0 and I or L for 1) in its canonical form, or None
    when it cannot be one."""
    s = raw.strip()
    if s.lower().startswith(INVITE_LINK_PREFIX):
        s = s[len(INVITE_LINK_PREFIX) :]
    s = s.replace("-", "").replace(" ", "").upper().translate(_CODE_LOOKALIKES)
    if len(s) != _CODE_CHARS or any(c not in _CODE_ALPHABET for c in s):
        return None
    return s


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_CHARS))


def contact_user(user: User) -> ContactUser:
    """How another user appears in my contacts, requests and events."""
    return ContactUser(id=user.id, username=user.username, display_name=user.display_name)


def _emit(tx: Transaction, user_ids: Iterable[str], event: str, about: User, request_id: str | None = None) -> None:
    """Tell the devices of ``user_ids`` that their contacts changed (``about`` the other side)."""
    ids = list(user_ids)
    frame = encode(ContactEvent(event=event, user=contact_user(about), request_id=request_id)).decode()
    tx.emit_to_users(ids, PushSignal(user_id=ids[0], frame=frame))


def _request_ttl(hub: Hub) -> dt.timedelta:
    return dt.timedelta(days=hub.settings.contacts_request_ttl_days)


def _uuid_or_404(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ActionError("not_found", f"no such {what}") from None


async def _fresh(tx: Transaction, *ids: str) -> dict[str, User]:
    """The users as they are now, share-locked until the transaction ends (a role change or
    disabling waits): the policy decides on these, never on a session's copy."""
    return await UserStore.lock_shared(tx.conn, ids)


async def _caps(hub: Hub, tx: Transaction, a: User, b: User) -> None:
    limit = hub.settings.contacts_max_contacts
    if await ContactStore.count_contacts(tx.conn, a.id) >= limit:
        raise ActionError("conflict", f"you have {limit} contacts, the most allowed: remove one first")
    if await ContactStore.count_contacts(tx.conn, b.id) >= limit:
        raise ActionError("conflict", "this user has the most contacts allowed")


async def request(hub: Hub, actor: User, *, username: str | None = None, phone: str | None = None) -> None:
    """Ask the user with ``username`` or ``phone`` to become my contact.

    Answered the same whatever happens to it (see the module docstring); only my own
    state is ever refused: a disabled account (403), a malformed phone number (400), my
    pending-request limit (409), my request rate (429). If they already asked me, we become
    contacts at once. One row per typed handle: asking again by the same handle changes
    nothing; a handle of someone I already asked, or of a contact, is stored reaching nobody."""
    require(policy.may_manage_contacts(actor))
    await enforce(hub, f"contact-request:{actor.id}", REQUESTS_PER_USER, fail_closed=False)
    if (username is None) == (phone is None):
        raise ActionError("invalid_request", "give exactly one of username and phone")
    handle: str
    if phone is not None:
        normalized = normalize_phone(phone)
        if normalized is None:
            raise ActionError("invalid_request", "phone must be a phone number, e.g. +8613800000001")
        handle = normalized
    else:
        assert username is not None
        handle = username
    ttl = _request_ttl(hub)
    async with hub.transaction("contact_request") as tx:
        found = (
            await ContactStore.user_by_phone(tx.conn, handle)
            if phone is not None
            else await ContactStore.user_by_username(tx.conn, handle)
        )
        if found is not None and found.id == actor.id:
            raise ActionError("invalid_request", "you cannot add yourself")
        await ContactStore.lock_users(tx.conn, actor.id, *([found.id] if found is not None else []))
        await ContactStore.purge_lapsed(tx.conn, actor.id, ttl)
        if await ContactStore.count_outgoing(tx.conn, actor.id) >= hub.settings.contacts_max_pending:
            raise ActionError(
                "conflict", f"you have {hub.settings.contacts_max_pending} unanswered requests, the most allowed: withdraw one"
            )
        to_id: str | None = None
        if found is not None:
            users = await _fresh(tx, actor.id, found.id)
            me, peer = users[actor.id], users.get(found.id)
            blocked = await ContactStore.blocked_either_way_in(tx.conn, actor.id, found.id)
            # an information barrier between us: stored reaching nobody, answered as always (never revealed)
            barrier = await BarrierStore.facts_txn(tx.conn, [actor.id, found.id])
            if (
                peer is not None
                and policy.may_befriend(me, peer, blocked=blocked).allowed
                and policy.may_communicate(me, peer, barrier).allowed
            ):
                if await ContactStore.is_contact(tx.conn, me.id, peer.id):
                    pass  # contacts already: stored reaching nobody, listed like any other handle
                elif await ContactStore.has_request_to(tx.conn, me.id, peer.id):
                    pass  # asked already (by another handle): this one is stored reaching nobody
                elif await ContactStore.pending_from(tx.conn, peer.id, me.id, ttl) is not None:
                    # they asked me first: both asked, so both agreed
                    if await ContactStore.count_contacts(tx.conn, me.id) < hub.settings.contacts_max_contacts and (
                        await ContactStore.count_contacts(tx.conn, peer.id) < hub.settings.contacts_max_contacts
                    ):
                        await ContactStore.befriend(tx.conn, me.id, peer.id)
                        _emit(tx, [me.id], "accepted", peer)
                        _emit(tx, [peer.id], "accepted", me)
                        return
                    # a full incoming list keeps the request from them (its sender is answered as always)
                    if await ContactStore.count_incoming(tx.conn, peer.id, ttl) < hub.settings.contacts_max_incoming:
                        to_id = peer.id
                elif await ContactStore.count_incoming(tx.conn, peer.id, ttl) < hub.settings.contacts_max_incoming:
                    to_id = peer.id
        rid = await ContactStore.add_request(tx.conn, actor.id, to_id, handle)
        if rid is not None and to_id is not None:
            _emit(tx, [to_id], "request", users[actor.id], rid)


async def accept(hub: Hub, actor: User, request_id: str) -> User:
    """Accept a pending request to me: we become contacts; both sides' devices learn it.
    Returns the new contact. 404 for a request that is not pending for me."""
    require(policy.may_manage_contacts(actor))
    rid = _uuid_or_404(request_id, "contact request")
    ttl = _request_ttl(hub)
    async with hub.transaction("contact_accept") as tx:
        # the sender first (no lock), then the users' locks, then the row: the order every path keeps
        sender_id = await ContactStore.request_sender(tx.conn, rid)
        if sender_id is None:
            raise ActionError("not_found", "no such contact request")
        await ContactStore.lock_users(tx.conn, actor.id, sender_id)
        from_id = await ContactStore.take_incoming(tx.conn, rid, actor.id, ttl)
        if from_id is None:
            raise ActionError("not_found", "no such contact request")
        users = await _fresh(tx, actor.id, from_id)
        me, peer = users[actor.id], users.get(from_id)
        blocked = await ContactStore.blocked_either_way_in(tx.conn, actor.id, from_id)
        require(policy.may_befriend(me, peer, blocked=blocked))
        assert peer is not None
        # a request sent before a barrier policy between us existed is refused now
        require(policy.may_befriend_across(me, peer, await BarrierStore.facts_txn(tx.conn, [me.id, peer.id])))
        await _caps(hub, tx, me, peer)
        await ContactStore.befriend(tx.conn, me.id, peer.id)
        _emit(tx, [me.id], "accepted", peer, rid)
        _emit(tx, [peer.id], "accepted", me)
    return peer


async def decline(hub: Hub, actor: User, request_id: str) -> None:
    """Decline a pending request to me. Its sender is not told (their request lapses)."""
    require(policy.may_manage_contacts(actor))
    rid = _uuid_or_404(request_id, "contact request")
    async with hub.transaction("contact_decline") as tx:
        from_id = await ContactStore.decline(tx.conn, rid, actor.id, _request_ttl(hub))
        if from_id is None:
            raise ActionError("not_found", "no such contact request")
        sender = await ContactStore.user_by_id(tx.conn, from_id)
        if sender is not None:
            _emit(tx, [actor.id], "declined", sender, rid)


async def withdraw(hub: Hub, actor: User, request_id: str) -> None:
    """Withdraw a request I sent (404 if it is not mine, or withdrawn already). It leaves my
    outgoing list and the addressee's incoming list, but counts against my pending limit
    until it would have lapsed."""
    require(policy.may_manage_contacts(actor))
    rid = _uuid_or_404(request_id, "contact request")
    async with hub.transaction("contact_withdraw") as tx:
        found, addressee = await ContactStore.withdraw(tx.conn, rid, actor.id)
        if not found:
            raise ActionError("not_found", "no such contact request")
        if addressee is not None:
            _emit(tx, [addressee], "request_withdrawn", actor, rid)


async def remove(hub: Hub, actor: User, user_id: str) -> None:
    """End the contact with ``user_id``; both sides' devices learn it (404: not my contact).
    A direct conversation stays readable; reopening one between customers needs them to be
    contacts again."""
    require(policy.may_manage_contacts(actor))
    other_id = _uuid_or_404(user_id, "contact")
    async with hub.transaction("contact_remove") as tx:
        await ContactStore.lock_users(tx.conn, actor.id, other_id)
        other = await ContactStore.user_by_id(tx.conn, other_id)
        if other is None or not await ContactStore.unfriend(tx.conn, actor.id, other_id):
            raise ActionError("not_found", "no such contact")
        _emit(tx, [actor.id], "removed", other)
        _emit(tx, [other.id], "removed", actor)


async def block(hub: Hub, actor: User, user_id: str) -> None:
    """Block ``user_id`` (idempotent): they can no longer message me in our direct
    conversation (nor I them), open one, add me, or see my presence. A contact between us
    ends; their request to me reads to them as declined, mine to them is withdrawn."""
    require(policy.may_manage_contacts(actor))
    peer_id = _uuid_or_404(user_id, "user")
    async with hub.transaction("contact_block") as tx:
        peer = await ContactStore.user_by_id(tx.conn, peer_id)
        if peer is None:
            raise ActionError("not_found", "no such user")
        require(policy.may_block(actor, peer))
        await ContactStore.lock_users(tx.conn, actor.id, peer.id)
        limit = hub.settings.contacts_max_blocks
        if await ContactStore.count_blocks(tx.conn, actor.id) >= limit and not await ContactStore.blocked_either_way_in(
            tx.conn, actor.id, peer.id
        ):
            raise ActionError("conflict", f"you block {limit} users, the most allowed: unblock one first")
        new, withdrawn = await ContactStore.block(tx.conn, actor.id, peer.id)
        if not new:
            return  # blocked already
        for rid in withdrawn:  # as if I had withdrawn them: nothing tells them of the block
            _emit(tx, [peer.id], "request_withdrawn", actor, rid)
        if await ContactStore.unfriend(tx.conn, actor.id, peer.id):
            _emit(tx, [peer.id], "removed", actor)
        _emit(tx, [actor.id], "blocked", peer)


async def unblock(hub: Hub, actor: User, user_id: str) -> None:
    """Unblock ``user_id`` (idempotent). The contact is not restored: either side asks again."""
    require(policy.may_manage_contacts(actor))
    peer_id = _uuid_or_404(user_id, "user")
    async with hub.transaction("contact_unblock") as tx:
        if await ContactStore.unblock(tx.conn, actor.id, peer_id):
            peer = await ContactStore.user_by_id(tx.conn, peer_id)
            if peer is not None:
                _emit(tx, [actor.id], "unblocked", peer)


async def create_invite(hub: Hub, actor: User) -> tuple[str, str, dt.datetime]:
    """A new single-use invite code of mine: ``(code, link, expires_at)``. Only its hash is
    stored; 409 when I hold ``BANKHUB_CONTACTS_MAX_INVITES`` usable codes already."""
    require(policy.may_manage_contacts(actor))
    code = _new_code()
    async with hub.transaction("contact_invite") as tx:
        await ContactStore.lock_users(tx.conn, actor.id)
        expires = await ContactStore.add_invite(
            tx.conn,
            actor.id,
            code,
            dt.timedelta(seconds=hub.settings.contacts_invite_ttl_seconds),
            hub.settings.contacts_max_invites,
        )
    if expires is None:
        raise ActionError(
            "conflict", f"you hold {hub.settings.contacts_max_invites} unused invite codes, the most allowed: revoke them first"
        )
    return code, INVITE_LINK_PREFIX + code, expires


async def revoke_invites(hub: Hub, actor: User) -> int:
    """Revoke all my invite codes; returns how many could still have been used."""
    require(policy.may_manage_contacts(actor))
    async with hub.transaction("contact_invites_revoke") as tx:
        await ContactStore.lock_users(tx.conn, actor.id)
        return await ContactStore.revoke_invites(tx.conn, actor.id)


async def redeem(hub: Hub, actor: User, raw_code: str) -> User:
    """Redeem an invite code (or its link): its owner and I become contacts at once (they
    consented by handing it out), and the code is spent. Explicit answers: 404 for an
    unknown, used or expired code (one answer), 400 for my own, 403 when the policy refuses
    (the code stays usable), 409 at a contact limit. Returns the new contact."""
    require(policy.may_manage_contacts(actor))
    code = normalize_code(raw_code)
    if code is None:
        raise ActionError("not_found", _NO_INVITE)
    async with hub.transaction("contact_redeem") as tx:
        # the owner first (no lock), then the users' locks, then the row: the order every path keeps
        first = await ContactStore.take_invite_owner(tx.conn, code)
        if first is None:
            raise ActionError("not_found", _NO_INVITE)
        if first == actor.id:
            raise ActionError("invalid_request", "this is your own invite code: give it to the person you want to add")
        await ContactStore.lock_users(tx.conn, actor.id, first)
        invite = await ContactStore.take_invite(tx.conn, code)
        if invite is None or not invite.usable or invite.user_id != first:
            raise ActionError("not_found", _NO_INVITE)
        users = await _fresh(tx, actor.id, first)
        me, owner = users[actor.id], users.get(first)
        blocked = await ContactStore.blocked_either_way_in(tx.conn, actor.id, first)
        require(policy.may_befriend(me, owner, blocked=blocked))
        assert owner is not None
        # an information barrier between us: answered as a block is (the code stays usable)
        require(policy.may_befriend_across(me, owner, await BarrierStore.facts_txn(tx.conn, [me.id, owner.id])))
        if await ContactStore.is_contact(tx.conn, me.id, owner.id):
            return owner  # contacts already: the code stays usable for someone else
        await _caps(hub, tx, me, owner)
        await ContactStore.use_invite(tx.conn, code, me.id)
        await ContactStore.befriend(tx.conn, me.id, owner.id)
        _emit(tx, [me.id], "accepted", owner)
        _emit(tx, [owner.id], "accepted", me)
    return owner


async def list_contacts(hub: Hub, actor: User, *, after: str | None, limit: int) -> list[ContactRow]:
    """A page of my contacts, by username."""
    require(policy.may_manage_contacts(actor))
    return await hub.contacts.list_contacts(actor.id, after=after, limit=limit)


async def list_incoming(
    hub: Hub, actor: User, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> list[IncomingRow]:
    """A page of the pending requests to me, newest first."""
    require(policy.may_manage_contacts(actor))
    return await hub.contacts.list_incoming(actor.id, _request_ttl(hub), after=after, limit=limit)


async def list_outgoing(
    hub: Hub, actor: User, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> list[OutgoingRow]:
    """A page of the requests I sent that have not lapsed, newest first."""
    require(policy.may_manage_contacts(actor))
    return await hub.contacts.list_outgoing(actor.id, _request_ttl(hub), after=after, limit=limit)


async def list_blocked(hub: Hub, actor: User, *, after: str | None, limit: int) -> list[ContactRow]:
    """A page of the users I block, by username."""
    require(policy.may_manage_contacts(actor))
    return await hub.contacts.list_blocked(actor.id, after=after, limit=limit)
