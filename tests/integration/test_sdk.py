"""The Python SDK against a real hub: the README chat, and delivery across cut connections."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from bankhub.runner import RunningNode
from bankhub_client import Client, ClientOptions, Message, ReconnectPolicy, login

from ..support.proxy import CuttableProxy

FAST_RECONNECT = ClientOptions(reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.3, max_elapsed=30))


async def _next_message(c: Client, timeout: float = 5.0) -> Message:
    async def first() -> Message:
        async for event in c.events():
            if isinstance(event, Message):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_readme_chat_between_customer_and_rm(node: RunningNode) -> None:
    li = await login(node.http_url, "c.li", "bankhub-demo")
    wang = await login(node.http_url, "rm.wang", "bankhub-demo")
    async with Client.connect(node.http_url, token=li.token) as c, Client.connect(node.ws_url, token=wang.token) as r:
        conv = await c.open_direct("rm.wang")
        sent = await c.send(conv, "Hello, my card was declined abroad")
        assert sent.seq == 1 and sent.sender_id == c.user_id
        got = await _next_message(r)
        assert (got.message_id, got.seq) == (sent.message_id, 1)
        reply = await r.send(conv, "Let me check that for you")
        assert (await _next_message(c)).message_id == reply.message_id


async def test_receiver_cut_mid_stream_gets_everything_once_in_order(node: RunningNode) -> None:
    """The RM's connection is cut repeatedly while the customer sends: no loss, no duplicate."""
    proxy = await CuttableProxy(node.port).start()
    try:
        li = await login(node.http_url, "c.li", "bankhub-demo")
        wang = await login(node.http_url, "rm.wang", "bankhub-demo")
        async with Client.connect(node.http_url, token=li.token) as sender, Client.connect(
            proxy.http_url, token=wang.token, options=FAST_RECONNECT
        ) as receiver:
            conv = await sender.open_direct("rm.wang")
            total = 120
            received: list[Message] = []

            async def consume() -> None:
                async for event in receiver.events():
                    if isinstance(event, Message):
                        received.append(event)
                        if len(received) >= total:
                            return

            consumer = asyncio.create_task(consume())
            acked = []
            for i in range(total):
                acked.append(await sender.send(conv, f"m{i}"))
                if i % 25 == 10:
                    await proxy.wait_connected()
                    assert proxy.cut() >= 1
            await asyncio.wait_for(consumer, 30)
            assert proxy.cuts >= 4
            assert [m.seq for m in received] == list(range(1, total + 1))
            assert [m.message_id for m in received] == [a.message_id for a in acked]
    finally:
        await proxy.close()


async def test_sender_cut_mid_stream_loses_and_duplicates_nothing(node: RunningNode, dsn: str) -> None:
    """The customer's connection is cut while sends are in flight: each is resent and stored once."""
    proxy = await CuttableProxy(node.port).start()
    try:
        li = await login(node.http_url, "c.li", "bankhub-demo")
        async with Client.connect(proxy.http_url, token=li.token, options=FAST_RECONNECT) as sender:
            conv = await sender.open_direct("rm.wang")
            total = 60

            async def cutter() -> None:
                for _ in range(6):
                    await asyncio.sleep(0.05)
                    proxy.cut()

            cuts = asyncio.create_task(cutter())
            results = await asyncio.gather(*(sender.send(conv, f"n{i}", client_msg_id=f"k{i}") for i in range(total)))
            await cuts
        assert proxy.cuts >= 1
        assert sorted(m.seq for m in results) == list(range(1, total + 1))
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT client_msg_id FROM messages WHERE conversation_id = $1", uuid.UUID(conv))
        finally:
            await conn.close()
        assert sorted(r["client_msg_id"] for r in rows) == sorted(f"k{i}" for i in range(total))
    finally:
        await proxy.close()
