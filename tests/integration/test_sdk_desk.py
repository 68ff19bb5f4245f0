"""The SDK's RM and service-desk methods and events against a real hub."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from bankhub.runner import RunningNode
from bankhub_client import (
    AgentState,
    Api,
    Client,
    ConversationRemoved,
    Message,
    RmChanged,
    ServiceAssigned,
    ServiceStatus,
    SystemBody,
)

from ..support.desk import token_for

E = TypeVar("E")


async def _next(client: Client, kind: type[E], where: Callable[[E], bool] = lambda e: True, timeout: float = 10.0) -> E:
    async def first() -> E:
        async for event in client.events():
            if isinstance(event, kind) and where(event):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


def _system(event: str) -> Callable[[Message], bool]:
    return lambda m: isinstance(m.body, SystemBody) and m.body.event == event


async def test_a_customer_and_an_agent_through_the_sdk(node: RunningNode) -> None:
    li_token, zhao_token, admin_token = await token_for(node, "c.li"), await token_for(node, "agent.zhao"), await token_for(node, "ho.admin")
    async with Api(node.http_url, admin_token) as admin:
        agent = await admin.configure_agent("agent.zhao", capacity=2, queues=["cards", "general"])
        assert agent.capacity == 2 and agent.queues == ["cards", "general"]
        cards = next(q for q in await admin.service_queues() if q.code == "cards")
        assert cards.open_now and cards.hours == "every day, 24 hours"
    async with Client.connect(node.http_url, token=li_token) as li, Client.connect(node.ws_url, token=zhao_token) as zhao:
        session = await li.api.open_service("cards")
        assert session.state == "bot" and session.queue == "cards"
        greeting = await _next(li, Message, _system("bot_greeting"))
        assert isinstance(greeting.body, SystemBody) and greeting.text is None

        await li.send(session.conversation_id, "how do I activate my card?")
        answer = await _next(li, Message, _system("bot_answer"))
        assert isinstance(answer.body, SystemBody) and answer.body.data["faq"] == "card_activation"

        waiting = await li.api.ask_for_agent(session.session_id)
        assert waiting.state == "waiting" and waiting.position == 1 and waiting.estimated_wait_s is None
        status = await _next(li, ServiceStatus, lambda s: s.state == "waiting")
        assert status.position == 1 and status.waiting == 1

        desk = await zhao.api.set_agent_state("available")
        assert desk.state == "available"
        assigned = await _next(zhao, ServiceAssigned)
        assert assigned.customer.username == "c.li" and assigned.customer.account_class == "I"
        assert (await _next(zhao, AgentState, lambda s: s.active == 1)).capacity == 2
        served = await _next(li, ServiceStatus, lambda s: s.state == "active")
        assert served.agent is not None and served.agent.username == "agent.zhao"
        assert (await zhao.api.customer_card("c.li")).customer.branch == "BJ"

        await zhao.send(session.conversation_id, "Done: the card is active.")
        assert (await _next(li, Message, lambda m: m.text is not None and m.sender_id == zhao.user_id)).text == "Done: the card is active."
        assert "card_activation" in await zhao.api.service_tags()
        closed = await zhao.api.close_session(session.session_id, ["card_activation"], note="activated")
        assert closed.state == "closed" and closed.csat_pending
        removed = await _next(zhao, ConversationRemoved)
        assert (removed.conversation_id, removed.reason) == (session.conversation_id, "closed")
        rated = await li.api.rate_service(session.session_id, 5, "thanks")
        assert rated.csat == 5 and not rated.csat_pending
    async with Api(node.http_url, admin_token) as admin:
        figures = await admin.desk_figures(since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
        cards_figures = next(q for q in figures.queues if q.queue == "cards")
        assert (cards_figures.handled, cards_figures.csat_avg, cards_figures.csat_count) == (1, 5.0, 1)
        detail = await admin.service_session_detail(session.session_id)
        assert detail.customer is not None and [n.text for n in detail.notes] == ["activated"]


async def test_rm_book_availability_and_handover_through_the_sdk(node: RunningNode) -> None:
    li_token, wang_token = await token_for(node, "c.li"), await token_for(node, "rm.wang")
    async with Client.connect(node.http_url, token=li_token) as li, Client.connect(node.http_url, token=wang_token) as wang:
        conv = await li.open_direct("rm.wang")
        await li.send(conv, "a question about my deposit")
        await _next(wang, Message)
        book = await wang.api.book()
        entry = next(e for e in book.customers if e.customer.username == "c.li")
        assert entry.unread == 1 and entry.last_message is not None and entry.last_message.text == "a question about my deposit"
        assert (await wang.api.set_availability("away", "Back at 2 pm.")).status == "away"
        mine = await li.api.my_rm()
        assert mine.rm.username == "rm.wang" and mine.availability.status == "away" and mine.conversation_id == conv
        await li.send(conv, "hello?")
        reply = await _next(li, Message, _system("rm_auto_reply"))
        assert reply.body == SystemBody(event="rm_auto_reply", text="Back at 2 pm.", data={"rm": "rm.wang", "status": "away"})
        async with Api(node.http_url, await token_for(node, "ho.admin")) as admin:
            handover = await admin.hand_over_book("rm.wang", "rm.chen", ["c.li"])
            assert handover.customers == ["c.li"] and handover.conversations == [conv]
        changed = await _next(li, RmChanged)
        assert changed.rm.username == "rm.chen" and changed.conversation_id == conv
        removed = await _next(wang, ConversationRemoved)
        assert removed.reason == "handover"
        notice = await _next(li, Message, _system("rm_changed"))
        assert isinstance(notice.body, SystemBody) and notice.body.data["rm"] == "rm.chen"


def test_unknown_extra_fields_in_desk_events_are_ignored() -> None:
    from bankhub_client.wire import decode_desk_event

    event: Any = decode_desk_event(b'{"type":"agent_state","state":"busy","capacity":3,"active":1,"later":"field"}')
    assert event == AgentState(state="busy", capacity=3, active=1)
    assert decode_desk_event(b'{"type":"message","message":{}}') is None
