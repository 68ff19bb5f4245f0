"""The Python SDK's contacts against a real hub: a request seen live, accepted, an invite
code redeemed, a block, and the chat that follows."""

from __future__ import annotations

import asyncio

import pytest

from bankhub.runner import RunningNode
from bankhub_client import Api, ApiError, Client, ContactEvent, Message, login


async def _next(c: Client, kind: type, event: str | None = None, timeout: float = 5.0) -> object:
    async def first() -> object:
        async for e in c.events():
            if isinstance(e, kind) and (event is None or getattr(e, "event", None) == event):
                return e
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_request_accept_chat_invite_and_block(node: RunningNode) -> None:
    li, zhang, zhou = [await login(node.http_url, u, "bankhub-demo") for u in ("c.li", "c.zhang", "c.zhou")]
    async with (
        Api(node.http_url, li.token) as li_api,
        Api(node.http_url, zhang.token) as zhang_api,
        Api(node.http_url, zhou.token) as zhou_api,
        Client.connect(node.http_url, token=li.token) as li_c,
        Client.connect(node.http_url, token=zhang.token) as zhang_c,
    ):
        with pytest.raises(ValueError):
            await li_api.request_contact()
        await li_api.request_contact(phone="13800000002")
        asked = await _next(zhang_c, ContactEvent, "request")
        assert isinstance(asked, ContactEvent) and asked.user.username == "c.li" and asked.request_id
        assert [r.user.username for r in await zhang_api.incoming_requests()] == ["c.li"]
        assert [r.handle for r in await li_api.outgoing_requests()] == ["+8613800000002"]
        contact = await zhang_api.accept_request(asked.request_id)
        assert contact.user.username == "c.li"
        accepted = await _next(li_c, ContactEvent, "accepted")
        assert isinstance(accepted, ContactEvent) and accepted.user.username == "c.zhang"
        assert [c.user.username for c in await li_api.contacts()] == ["c.zhang"]
        conv = await li_c.open_direct("c.zhang")
        sent = await li_c.send(conv, "hi, friend")
        got = await _next(zhang_c, Message)
        assert isinstance(got, Message) and got.message_id == sent.message_id
        # an invite code, redeemed through its link
        invite = await li_api.create_invite()
        assert invite.link.endswith(invite.code)
        assert (await zhou_api.redeem_invite(invite.link)).user.username == "c.li"
        with pytest.raises(ApiError) as used:
            await zhou_api.redeem_invite(invite.code)
        assert used.value.code == "not_found"
        assert await li_api.revoke_invites() == 0
        # a block
        zhou_id = (await zhou_api.me()).id
        await li_api.block(zhou_id)
        assert [b.user.username for b in await li_api.blocked()] == ["c.zhou"]
        assert [c.user.username for c in await li_api.contacts()] == ["c.zhang"]
        await li_api.unblock(zhou_id)
        assert await li_api.blocked() == []
        await li_api.remove_contact((await zhang_api.me()).id)
        assert await li_api.contacts() == []
