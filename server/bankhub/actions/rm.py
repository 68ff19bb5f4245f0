"""Relationship managers: the book (workbench), profile cards, availability with
auto-replies, and handovers of one customer or a whole book.

A handover moves each customer's direct conversation, with its whole history, to the new
RM and removes the old RM in the same transaction — one transaction for the whole book,
with one ``customer.reassigned`` audit row per customer and one ``rm.book_handed_over``
row, so it happens entirely or not at all. After the commit the old RM's connections on
every node drop the conversation at once (``conversation_removed``), the new RM's gain it
(``conversation_added``), each customer gets ``rm_changed`` and a ``system`` message in
the conversation says who their RM is now.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import msgspec

from .. import policy
from ..desk.system import SYSTEM_USER_ID
from ..desk.system import SystemEvent
from ..hub import Hub
from ..models import Role, User
from ..protocol.frames import ConversationAdded, ConversationRemoved, CustomerCard, Message, RmChanged, StaffCard
from ..broker import BROADCAST_CHANNEL
from ..outbox import Emitted
from ..signals import PrincipalSignal
from ..models import BookKey, RmListed
from ..storage.barriers import BarrierStore
from ..storage.db import Conn
from ..storage.rm import RM_STATUSES, HandedOver, RmStatus, RmStore
from .audit import CUSTOMER_REASSIGNED, record
from . import dlp, routing, system_posts
from .errors import ActionError, require

__all__ = [
    "RM_BOOK_HANDED_OVER",
    "BookCustomer",
    "Book",
    "RmStatusView",
    "CardView",
    "MyRm",
    "Handover",
    "book",
    "managers",
    "card",
    "my_rm",
    "set_status",
    "hand_over_book",
    "reassign",
    "notify_handover",
    "auto_reply",
]

RM_BOOK_HANDED_OVER = "rm.book_handed_over"
MAX_HANDOVER = 5000  # customers in one handover transaction


class RmStatusView(msgspec.Struct, omit_defaults=True):
    status: str
    message: str | None = None
    since: int | None = None


class BookCustomer(msgspec.Struct):
    """One customer on the RM's workbench.

    ``last_message`` (its text) is for the RM alone; administrators get the metadata:
    ``last_message_ts``, ``unread`` and ``last_sender`` (``customer``, ``rm``, ``system``,
    or ``other`` — e.g. a previous RM) and read text, if they must, through the
    reason-coded, audited compliance read."""

    customer: CustomerCard
    conversation_id: str | None = None
    unread: int = 0
    last_message_ts: int | None = None
    last_message: Message | None = None
    last_sender: str | None = None


class Book(msgspec.Struct):
    rm: StaffCard
    availability: RmStatusView
    customers: list[BookCustomer]
    next_cursor: str | None = None  # set by the HTTP layer: more customers follow (pass it as ?cursor=)


class CardView(msgspec.Struct, omit_defaults=True):
    """A customer's profile card, with the conversation and unread count of the viewing RM."""

    customer: CustomerCard
    conversation_id: str | None = None
    unread: int | None = None


class MyRm(msgspec.Struct, omit_defaults=True):
    """A customer's own RM: who, and whether they are available."""

    rm: StaffCard
    availability: RmStatusView
    conversation_id: str | None = None


class Handover(msgspec.Struct):
    from_rm: str
    to_rm: str
    customers: list[str]  # usernames handed over
    conversations: list[str]  # direct conversations that passed to the new RM




def _status_view(s: RmStatus) -> RmStatusView:
    return RmStatusView(status=s.status, message=s.message, since=None if s.since is None else int(s.since.timestamp() * 1000))


def _sender_kind(sender_id: str | None, customer_id: str, rm_id: str) -> str | None:
    if sender_id is None:
        return None
    if sender_id == customer_id:
        return "customer"
    if sender_id == rm_id:
        return "rm"
    return "system" if sender_id == SYSTEM_USER_ID else "other"


async def _rm_by_name(hub: Hub, username: str) -> User:
    user = await hub.users.by_username(username)
    if user is None or user.role is not Role.RM:
        raise ActionError("not_found", "no such relationship manager")
    return user


async def managers(hub: Hub, actor: User, *, after: str | None, limit: int) -> list[RmListed]:
    """The RMs an administrator may hand books between, by username: every RM for head
    office, those of the admin's own org subtree for a branch admin. Fetch ``limit + 1``
    to learn whether a page follows."""
    require(policy.may_list_rms(actor))
    root = None if actor.role is Role.HEAD_OFFICE_ADMIN else actor.org_id
    # RMs an information barrier separates from the administrator are omitted
    return await hub.desk.rm.managers(root, after=after, limit=limit, viewer_id=actor.id)


async def book(
    hub: Hub, actor: User, rm_username: str | None = None, *, after: BookKey | None = None, limit: int | None = None
) -> tuple[Book, BookKey | None]:
    """The RM's workbench: customers with their card, the RM's unread count and the
    last message of their direct conversation (its text for the RM only: see
    :class:`BookCustomer`), most recent first. RMs see their own book;
    administrators pass ``rm_username``. All customers, or a page of up to ``limit`` after
    the sort key ``after``; returns the book and the key to continue from (None: no more)."""
    rm = actor if rm_username is None or rm_username == actor.username else await _rm_by_name(hub, rm_username)
    require(policy.may_view_book(actor, rm, await hub.users.org_ancestry(rm.org_id)))
    entries = await hub.desk.rm.book(rm.id, after=after, limit=None if limit is None else limit + 1)
    more = limit is not None and len(entries) > limit
    entries = entries[:limit] if limit is not None else entries
    next_key = entries[-1].key if more and entries else None
    latest: dict[str, Message] = {}
    if policy.may_read_book_messages(actor, rm).allowed:  # others: nothing is even decrypted
        latest = await hub.messages.latest([e.conversation_id for e in entries if e.conversation_id and e.last_seq])
    status = await hub.desk.rm.status(rm.id)
    return (
        Book(
            rm=routing.staff_card(rm),
            availability=_status_view(status),
            customers=[
                BookCustomer(
                    customer=e.customer,
                    conversation_id=e.conversation_id,
                    unread=e.unread,
                    last_message_ts=e.last_message_ts,
                    last_message=latest.get(e.conversation_id) if e.conversation_id else None,
                    last_sender=_sender_kind(e.last_sender_id, e.customer.user_id, rm.id),
                )
                for e in entries
            ],
        ),
        next_key,
    )


async def card(hub: Hub, actor: User, customer_username: str) -> CardView:
    """A customer's profile card (name, branch, segment, account class), for their RM, the
    agent serving them, administrators of their branch and themselves."""
    customer = await hub.users.by_username(customer_username)
    if customer is None or customer.role is not Role.CUSTOMER:
        raise ActionError("not_found", "no such customer")
    serving = actor.role is Role.AGENT and await hub.desk.store.serving(actor.id, customer.id)
    require(policy.may_view_customer_card(actor, customer, await hub.users.org_ancestry(customer.org_id), serving))
    found = await hub.desk.rm.card(customer.id)
    if found is None:
        raise ActionError("not_found", "no such customer")
    view = CardView(customer=found)
    if actor.role is Role.RM and customer.rm_id == actor.id:
        for e in await hub.desk.rm.book(actor.id):
            if e.customer.user_id == customer.id:
                view.conversation_id, view.unread = e.conversation_id, e.unread
    return view


async def my_rm(hub: Hub, actor: User) -> MyRm:
    """For a customer: their RM and the RM's availability."""
    if actor.role is not Role.CUSTOMER or actor.rm_id is None:
        raise ActionError("not_found", "you have no relationship manager")
    rm = (await hub.users.by_ids([actor.rm_id])).get(actor.rm_id)
    if rm is None:
        raise ActionError("not_found", "you have no relationship manager")
    require(policy.may_see_my_rm(actor, rm))
    conv = None
    for c in await hub.conversations.list_for_user(actor.id):
        if c.kind == "direct" and rm.id in c.members:
            conv = c.id
    return MyRm(rm=routing.staff_card(rm), availability=_status_view(await hub.desk.rm.status(rm.id)), conversation_id=conv)


async def set_status(hub: Hub, actor: User, status: str, message: str | None) -> RmStatusView:
    """Declare my availability. While away or off duty, each customer who writes gets one
    auto-reply (``message``, or a default one) per period."""
    require(policy.may_set_rm_status(actor))
    if status not in RM_STATUSES:
        raise ActionError("invalid_request", f"status is one of {', '.join(RM_STATUSES)}")
    text = (message or "").strip() or None
    if text is not None and len(text) > 500:
        raise ActionError("invalid_request", "an auto-reply has at most 500 characters")
    if text is not None:  # data-loss prevention: posted to customers (staff to customer)
        text = dlp.screen_auto_reply(hub.settings, actor, text)
    saved = await hub.desk.rm.set_status(actor.id, status, text)
    await routing.broadcast_rm_status(hub, actor.id, status)
    return _status_view(saved)


async def _check_customers(
    hub: Hub, conn: Conn, actor: User, customer_ids: Sequence[str], new_rm: User, rm_ancestry: Sequence[str]
) -> None:
    users = await hub.users.by_ids(customer_ids)
    ancestry: dict[str, list[str]] = {}
    for cid in customer_ids:
        customer = users[cid]
        if customer.org_id not in ancestry:
            ancestry[customer.org_id] = await hub.users.org_ancestry(customer.org_id)
        require(policy.may_reassign_customer(actor, customer, new_rm, ancestry[customer.org_id], rm_ancestry))
    # information barriers: no customer handed to an RM a policy separates them from (read in the handover's transaction)
    barrier = await BarrierStore.facts_txn(conn, [new_rm.id, *customer_ids])
    for cid in customer_ids:
        require(policy.may_communicate(new_rm, users[cid], barrier))


async def hand_over_book(
    hub: Hub, actor: User, from_username: str, to_username: str, customers: Sequence[str] | None = None, *, ip: str | None = None
) -> Handover:
    """Hand ``from_username``'s book — or only ``customers`` of it — to ``to_username`` in one
    transaction (an RM leaving, a book split). See the module docstring."""
    from_rm, to_rm = await _rm_by_name(hub, from_username), await _rm_by_name(hub, to_username)
    to_ancestry = await hub.users.org_ancestry(to_rm.org_id)
    require(policy.may_handover_book(actor, from_rm, to_rm, await hub.users.org_ancestry(from_rm.org_id), to_ancestry))
    wanted = None if customers is None else sorted(set(customers))
    if wanted is not None and not 1 <= len(wanted) <= MAX_HANDOVER:
        raise ActionError("invalid_request", f"name 1 to {MAX_HANDOVER} customers, or none for the whole book")
    batch = str(uuid.uuid4())
    async with hub.db.transaction("rm_book_handover") as conn:
        locked = await RmStore.book_of(conn, from_rm.id, wanted)
        if wanted is not None and (missing := sorted(set(wanted) - {name for _, name in locked})):
            raise ActionError("not_found", f"not in {from_rm.username}'s book: {', '.join(missing)}")
        if len(locked) > MAX_HANDOVER:
            raise ActionError("invalid_request", f"a book of over {MAX_HANDOVER} customers is handed over in parts (name them)")
        await _check_customers(hub, conn, actor, [cid for cid, _ in locked], to_rm, to_ancestry)
        await RmStore.lock_direct_conversations(conn, [cid for cid, _ in locked], from_rm.id)
        moved: list[HandedOver] = []
        for cid, name in locked:
            done = await RmStore.hand_over(conn, cid, name, from_rm.id, to_rm.id)
            moved.append(done)
            await record(
                hub,
                actor=actor,
                action=CUSTOMER_REASSIGNED,
                target=f"user:{cid}",
                ip=ip,
                details={"from_rm": from_rm.id, "to_rm": to_rm.id, "conversation": _handed(done), "handover": batch},
                conn=conn,
            )
        await record(
            hub,
            actor=actor,
            action=RM_BOOK_HANDED_OVER,
            target=f"user:{from_rm.id}",
            ip=ip,
            details={"to_rm": to_rm.id, "customers": len(moved), "whole_book": wanted is None, "handover": batch},
            conn=conn,
        )
    await notify_handover(hub, moved, to_rm)
    return Handover(
        from_rm=from_rm.username,
        to_rm=to_rm.username,
        customers=[m.customer_username for m in moved],
        conversations=[m.conversation_id for m in moved if m.conversation_id],
    )


def _handed(m: HandedOver) -> str | None:
    """The conversation that passed to the new RM (None when none did)."""
    return m.old_conversation_id if m.old_conversation_id is not None and m.old_conversation_id == m.conversation_id else None


async def reassign(hub: Hub, actor: User, customer: User, new_rm: User, *, ip: str | None = None) -> HandedOver:
    """One customer to ``new_rm`` (policy already checked by the caller), audited in the
    same transaction, then the handover notices."""
    async with hub.db.transaction("customer_reassign") as conn:
        old_rm = await RmStore.lock_customer(conn, customer.id)
        # information barriers: an RM serves their customers in chat (read in this transaction)
        require(policy.may_communicate(new_rm, customer, await BarrierStore.facts_txn(conn, [new_rm.id, customer.id])))
        moved = await RmStore.hand_over(conn, customer.id, customer.username, old_rm, new_rm.id)
        await record(
            hub,
            actor=actor,
            action=CUSTOMER_REASSIGNED,
            target=customer,
            ip=ip,
            details={"from_rm": moved.old_rm_id, "to_rm": new_rm.id, "conversation": _handed(moved)},
            conn=conn,
        )
    await notify_handover(hub, [moved], new_rm)
    return moved


async def notify_handover(hub: Hub, moved: Sequence[HandedOver], new_rm: User) -> None:
    """After the commit: cut the old RMs off on every node, give the new RM the
    conversations, tell each customer (an event and a message in the conversation)."""
    items: list[Emitted] = []
    for m in moved:
        if m.old_rm_id is not None and m.old_rm_id != new_rm.id and m.old_conversation_id is not None:
            items.append(
                routing.access(m.old_rm_id, m.old_conversation_id, False, ConversationRemoved(conversation_id=m.old_conversation_id, reason="handover"))
            )
        if m.conversation_id is not None:
            items.append(
                routing.access(new_rm.id, m.conversation_id, True, ConversationAdded(conversation_id=m.conversation_id, kind="direct", reason="handover"))
            )
        items.append(routing.push(m.customer_id, RmChanged(rm=routing.staff_card(new_rm), conversation_id=m.conversation_id, previous_rm_id=m.old_rm_id)))
        # cached sessions carry the customer's RM: every node drops them
        items.append((BROADCAST_CHANNEL, PrincipalSignal(user_id=m.customer_id)))
        hub.session_cache.forget_user(m.customer_id)
    await routing.publish(hub, items)
    text = f"Your relationship manager is now {new_rm.display_name}, who can see your earlier messages here and will continue from them."
    data = {"rm": new_rm.username, "rm_name": new_rm.display_name}
    stamp = uuid.uuid4().hex[:12]
    await asyncio.gather(
        *(
            system_posts.post(hub, m.conversation_id, SystemEvent.RM_CHANGED, text, {**data, "previous_rm_id": m.old_rm_id or ""}, key=f"rm:{new_rm.id}:{stamp}")
            for m in moved
            if m.conversation_id is not None
        )
    )


async def auto_reply(hub: Hub, conversation_id: str, customer: User, rm_id: str) -> None:
    """A customer wrote to an away or off-duty RM: one auto-reply per away period."""
    status = await hub.desk.rm.claim_auto_reply(rm_id, customer.id)
    if status is None:
        return
    rm = (await hub.users.by_ids([rm_id])).get(rm_id)
    if rm is None:
        return
    text: str | None = None
    if status.message:
        try:  # screened when set; again now, under today's policy
            text = dlp.screen_auto_reply(hub.settings, rm, status.message)
        except ActionError:
            text = None  # the policy now refuses it: the standard reply instead
    if text is None and status.status == "off_duty":
        text = (
            f"{rm.display_name} is off duty now and will reply on their next working day. "
            "For anything urgent, the service desk is available in the app or at 95588."
        )
    elif text is None:
        text = f"{rm.display_name} is away at the moment and will reply as soon as possible."
    await system_posts.post(
        hub,
        conversation_id,
        SystemEvent.RM_AUTO_REPLY,
        text,
        {"rm": rm.username, "status": status.status},
        key=f"auto:{rm_id}:{status.period}",
    )
