"""Opening direct conversations, creating groups, listing and reading history."""

from __future__ import annotations

import uuid

from .. import policy
from ..hub import Hub
from ..models import ConversationSummary, User
from ..protocol.frames import Message
from ..storage.barriers import BarrierStore
from ..storage.db import Conn
from ..models import ConversationKey
from . import groups
from .errors import ActionError, require

__all__ = ["open_direct", "create_group", "list_conversations", "history", "summary"]

MAX_GROUP_MEMBERS = 500
MAX_HISTORY_PAGE = 200


async def summary(hub: Hub, actor: User, conversation_id: str) -> ConversationSummary:
    for c in await hub.conversations.list_for_user(actor.id):
        if c.id == conversation_id:
            return c
    raise ActionError("not_found", "no such conversation")


async def open_direct(hub: Hub, actor: User, peer_username: str) -> tuple[ConversationSummary, bool]:
    """The direct conversation with ``peer_username`` (created on first use). Returns ``(summary, created)``."""
    peer = await hub.users.by_username(peer_username)
    if peer is None:  # the policy answers (a customer learns nothing about the name)
        require(policy.may_open_direct(actor, None))
        raise ActionError("not_found", "no such user")
    # the contact and block facts between the two (customers chat with their contacts; a block bars it)
    contacts, blocked = await hub.contacts.relation(actor.id, peer.id)
    require(policy.may_open_direct(actor, peer, contacts=contacts, blocked=blocked))

    async def no_barrier(conn: Conn) -> None:
        # an information barrier between the two, read in the opening transaction (sends are
        # refused too, should the conversation exist already); answered as an unreachable peer is
        require(policy.may_open_direct_across(actor, peer, await BarrierStore.facts_txn(conn, [actor.id, peer.id])))

    conv_id, created = await hub.conversations.get_or_create_direct(actor.id, peer.id, no_barrier)
    return await summary(hub, actor, conv_id), created


async def create_group(hub: Hub, actor: User, title: str, usernames: list[str]) -> ConversationSummary:
    """Create a group with ``actor`` as its owner (:func:`bankhub.actions.groups.create_group`)."""
    return await groups.create_group(hub, actor, title, usernames)


async def list_conversations(
    hub: Hub, actor: User, *, after: ConversationKey | None = None, limit: int | None = None
) -> list[tuple[ConversationSummary, ConversationKey]]:
    """A page of my conversations, most recent activity first, each with its sort key:
    all of them, or up to ``limit`` after the key ``after``."""
    return await hub.conversations.page_for_user(actor.id, after=after, limit=limit)


async def history(
    hub: Hub, actor: User, conversation_id: str, before_seq: int | None, limit: int
) -> tuple[list[Message], bool]:
    """A page of messages before ``before_seq``, newest first, and whether older ones exist."""
    try:
        uuid.UUID(conversation_id)
    except ValueError:
        raise ActionError("not_found", "no such conversation") from None
    require(policy.may_read_conversation(actor, await hub.conversations.membership(conversation_id, actor.id)))
    limit = max(1, min(limit, MAX_HISTORY_PAGE))
    page = await hub.messages.history(conversation_id, before_seq, limit)
    return page, bool(page) and page[-1].seq > 1
