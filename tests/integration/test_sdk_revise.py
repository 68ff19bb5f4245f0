"""The Python SDK's recall and edit against a real hub: ``Client.edit``/``Client.recall``
and the other side's :class:`MessageLog`, live and through sync and history."""

from __future__ import annotations

import asyncio

import pytest

from bankhub.runner import RunningNode
from bankhub_client import Client, ClientOptions, EditBody, Message, MessageLog, ProtocolError, RecallBody, RecalledBody, TextBody, login


async def _next_message(c: Client, timeout: float = 5.0) -> Message:
    async def first() -> Message:
        async for event in c.events():
            if isinstance(event, Message):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_edit_and_recall_live_through_sync_and_in_history(node: RunningNode) -> None:
    li = await login(node.http_url, "c.li", "bankhub-demo")
    wang = await login(node.http_url, "rm.wang", "bankhub-demo")
    async with Client.connect(node.http_url, token=li.token) as c, Client.connect(node.http_url, token=wang.token) as r:
        conv = await c.open_direct("rm.wang")
        seen = MessageLog()
        first = await c.send(conv, "meet at 3")
        second = await c.send(conv, "wrong account number 6222…")
        seen.apply(await _next_message(r))
        seen.apply(await _next_message(r))

        edit = await c.edit(conv, first.message_id, "meet at 4")
        assert edit.body == EditBody(message_id=first.message_id, body=TextBody(text="meet at 4")) and edit.seq == 3
        live = await _next_message(r)
        assert live.seq == 3 and isinstance(live.body, EditBody)
        changed = seen.apply(live)
        assert changed is not None and changed.message_id == first.message_id and changed.text == "meet at 4"

        recall = await c.recall(conv, second.message_id)
        assert recall.body == RecallBody(message_id=second.message_id)
        assert (await c.recall(conv, second.message_id)).seq == recall.seq  # answered again, not repeated
        changed = seen.apply(await _next_message(r))
        assert changed is not None and changed.body == RecalledBody()
        assert [m.text for m in seen.conversation(conv)] == ["meet at 4", None]

        # my own next send follows my change messages without a gap
        assert (await c.send(conv, "ok")).seq == 5
        seen.apply(await _next_message(r))

        # someone else's message: refused
        with pytest.raises(ProtocolError) as refused:
            await r.recall(conv, first.message_id)
        assert refused.value.code == "forbidden"

    # a device resuming from before the conversation: sync alone gives the same view
    async with Client.connect(node.http_url, token=wang.token, options=ClientOptions(cursors={conv: 0})) as r2:
        fresh = MessageLog()
        got: list[Message] = []
        while len(got) < 5:
            got.append(await _next_message(r2))
        for m in got:
            fresh.apply(m)
        assert [(m.seq, m.text, m.body) for m in fresh.conversation(conv)] == [
            (1, "meet at 4", TextBody(text="meet at 4")),
            (2, None, RecalledBody()),
            (5, "ok", TextBody(text="ok")),
        ]
        history = await r2.api.history(conv)
        by_seq = {m.seq: m for m in history.messages}
        assert by_seq[1].edited_ts == edit.ts and by_seq[2].body == RecalledBody()
