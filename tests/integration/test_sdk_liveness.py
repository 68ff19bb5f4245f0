"""The SDK's typing, presence and privacy calls against a real hub."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from bankhub.runner import RunningNode
from bankhub_client import Api, Client, PresenceEvent, TypingEvent

from ..conftest import login

E = TypeVar("E")


async def _next(client: Client, kind: type[E], timeout: float = 10.0) -> E:
    async def first() -> E:
        async for event in client.events():
            if isinstance(event, kind):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_typing_presence_and_privacy_through_the_sdk(node: RunningNode) -> None:
    li_t, wang_t = await login(node, "c.li"), await login(node, "rm.wang")
    async with Api(node.http_url, li_t) as li_api, Api(node.http_url, wang_t) as wang_api:
        conv = (await li_api.open_direct("rm.wang")).id
        wang_id = (await wang_api.me()).id
        async with Client.connect(node.ws_url, token=li_t) as li:
            seen = await li.watch_presence([wang_id])
            assert seen[0].user_id == wang_id and seen[0].online is False
            async with Client.connect(node.ws_url, token=wang_t) as wang:
                assert await _next(li, PresenceEvent) == PresenceEvent(user_id=wang_id, online=True)
                await li.typing(conv)
                event = await _next(wang, TypingEvent)
                assert event.conversation_id == conv and event.user_id == li.user_id and event.active
                await li.typing(conv, active=False)
                assert (await _next(wang, TypingEvent)).active is False
            gone = await _next(li, PresenceEvent)
            assert gone.online is False and gone.last_seen is not None
        assert (await li_api.privacy()).share_read_receipts is True
        changed = await li_api.set_privacy(last_seen="nobody")
        assert changed.last_seen == "nobody" and changed.share_read_receipts is True
        (info,) = await wang_api.presence([li.user_id])
        assert info.online is False and info.last_seen is None  # hidden
        positions = await li_api.read_positions(conv)
        assert {p.user_id for p in positions} == {li.user_id, wang_id}
