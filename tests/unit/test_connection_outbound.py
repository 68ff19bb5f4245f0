"""A connection's outbound path against a transport played by hand: frames framed once and
written as bytes, batched per event-loop turn, queued (bounded, in order) only while the
transport does not take data, no task while idle, 4008 on overflow, nothing written to a
closed or closing socket, and the same bytes for every receiver of a fanned-out message."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bankhub.broker import user_channel
from bankhub.delivery.connection import Connection
from bankhub.delivery.registry import ConnectionRegistry
from bankhub.models import Role, Session, User
from bankhub.protocol.frames import CloseCode, Message, TextBody
from bankhub.protocol.wire import payload_of, text_frame
from bankhub.signals import MessageSignal, encode_signal
from starlette.websockets import WebSocketState


class FakeOutlet:
    """The transport: takes data while ``writable``; ``open`` False once closed or closing."""

    def __init__(self) -> None:
        self.writable = True
        self.open = True
        self.writes: list[bytes] = []
        self._drained = asyncio.Event()

    def ready(self) -> bool:
        return self.open and self.writable

    def write_wire(self, data: bytes) -> bool:
        if not self.ready():
            return False
        self.writes.append(data)
        return True

    def open_for_data(self) -> bool:
        return self.open

    async def until_writable(self) -> None:
        while self.open and not self.writable:
            self._drained.clear()
            await self._drained.wait()

    def drain(self) -> None:
        self.writable = True
        self._drained.set()

    def close(self) -> None:
        self.open = False
        self._drained.set()

    def texts(self) -> list[str]:
        """Every text frame written, parsed back from the bytes as a client would."""
        reader = StreamReader()
        reader.feed_data(b"".join(self.writes))
        reader.feed_eof()
        out: list[str] = []
        while reader.buffer:  # what is left unparsed
            frame = _parse(reader)
            assert frame.opcode is Opcode.TEXT and frame.fin
            out.append(bytes(frame.data).decode())
        return out


def _parse(reader: StreamReader) -> Frame:
    gen = Frame.parse(reader.read_exact, mask=False)
    try:
        next(gen)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


class FakeWebSocket:
    def __init__(self, outlet: FakeOutlet) -> None:
        self.scope: dict[str, Any] = {"extensions": {"bankhub.outlet": outlet}}
        self.application_state = WebSocketState.CONNECTED
        self.closes: list[tuple[int, str]] = []
        self.outlet = outlet

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.application_state = WebSocketState.DISCONNECTED
        self.outlet.close()


def _session(name: str = "c.li") -> Session:
    return Session(f"s-{name}", User(f"u-{name}", name, name, Role.CUSTOMER, "bj"), dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))


async def _no_gap(conversation_id: str, after: int, upto: int) -> list[Message]:
    return []


def _conn(limit: int = 8, name: str = "c.li") -> tuple[Connection, FakeWebSocket, FakeOutlet]:
    outlet = FakeOutlet()
    ws = FakeWebSocket(outlet)
    conn = Connection(f"conn-{name}", ws, _session(name), queue_limit=limit, fill_gap=_no_gap)  # type: ignore[arg-type]
    return conn, ws, outlet


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_idle_connection_has_no_task_and_a_turn_s_frames_go_out_in_one_write() -> None:
    conn, _, outlet = _conn()
    assert not conn.writing
    for i in range(3):
        conn.push(json.dumps({"type": "pong", "n": i}))
    assert outlet.writes == [] and not conn.writing  # batched until the end of the turn, no task
    await _turns()
    assert len(outlet.writes) == 1  # one write (one system call) for the turn's three frames
    assert [json.loads(t)["n"] for t in outlet.texts()] == [0, 1, 2]
    assert not conn.writing and conn.queued == 0


async def test_frames_queue_while_the_transport_is_full_and_keep_their_order() -> None:
    conn, _, outlet = _conn()
    conn.push('{"n":0}')
    await _turns()
    outlet.writable = False
    conn.push('{"n":1}')
    conn.push('{"n":2}')
    await _turns()
    assert conn.queued == 2 and conn.writing  # a writer task only while something is queued
    conn.push('{"n":3}')  # behind the queued ones, never around them
    outlet.drain()
    await _turns()
    conn.push('{"n":4}')  # idle again: straight to the transport
    await _turns()
    assert [json.loads(t)["n"] for t in outlet.texts()] == [0, 1, 2, 3, 4]
    assert conn.queued == 0 and not conn.writing  # the writer task ended with the queue


async def test_a_full_queue_closes_with_4008_and_nothing_more_is_written() -> None:
    conn, ws, outlet = _conn(limit=3)
    outlet.writable = False
    for i in range(4):
        conn.push(f'{{"n":{i}}}')
    assert conn.close_code == CloseCode.SLOW_CONSUMER
    await _turns()
    assert ws.closes == [(CloseCode.SLOW_CONSUMER, "outbound queue overflow: reconnect and sync")]
    assert outlet.writes == []  # the queue was dropped, not written
    conn.push('{"n":9}')
    await _turns()
    assert outlet.writes == []


async def test_a_closed_or_closing_transport_is_never_written() -> None:
    conn, _, outlet = _conn()
    conn.push('{"n":0}')
    outlet.close()  # the peer's close arrived before the end of the turn
    await _turns()
    assert outlet.writes == []
    conn.push('{"n":1}')
    await _turns()
    assert outlet.writes == []
    assert conn.close_code == CloseCode.GOING_AWAY  # the writer found the socket gone


async def test_a_flushing_close_writes_what_is_queued_then_closes() -> None:
    conn, ws, outlet = _conn()
    outlet.writable = False
    conn.push('{"n":0}')
    conn.push('{"n":1}')
    conn.close(CloseCode.SERVICE_RESTART, "restart", flush=True)
    outlet.drain()
    await asyncio.wait_for(conn.closed.wait(), 1)
    assert [json.loads(t)["n"] for t in outlet.texts()] == [0, 1]
    assert ws.closes == [(CloseCode.SERVICE_RESTART, "restart")]
    assert conn.closed.is_set()


async def test_a_close_without_writes_pending_closes_the_socket_and_the_task_ends() -> None:
    conn, ws, _ = _conn()
    conn.close(CloseCode.POLICY_VIOLATION, "revoked")
    await asyncio.wait_for(conn.closed.wait(), 1)
    assert ws.closes == [(CloseCode.POLICY_VIOLATION, "revoked")]
    await conn.finish(1)


async def test_a_group_message_is_framed_once_and_every_member_gets_the_same_bytes() -> None:
    registry = ConnectionRegistry(None, None)  # type: ignore[arg-type]
    members = [_conn(name=n) for n in ("c.li", "c.zhang", "c.zhou")]
    for conn, _, _ in members:
        registry.by_user[conn.user.id] = {conn}
    message = Message("conv-1", "m-1", 1, "u-rm.wang", "cm-1", TextBody("hello 你好"), 1000)
    payload = encode_signal(MessageSignal(message=message))
    for conn, _, _ in members:  # one signal per member channel, the same bytes
        registry.on_signal(user_channel(conn.user.id), payload)
    await _turns()
    writes = [outlet.writes for _, _, outlet in members]
    assert all(len(w) == 1 for w in writes)
    assert writes[0][0] is writes[1][0] is writes[2][0]  # one framing for all receivers
    frame = json.loads(members[0][2].texts()[0])
    assert frame["type"] == "message" and frame["message"]["body"]["text"] == "hello 你好"


async def test_a_notice_is_written_at_once_to_an_idle_socket_and_after_what_waits_before_it() -> None:
    conn, _, outlet = _conn()
    conn.send_now(text_frame(b'{"n":0}'))
    assert len(outlet.writes) == 1  # idle: at once, no end-of-turn callback
    conn.push('{"n":1}')  # batched for the end of the turn
    conn.send_now(text_frame(b'{"n":2}'))  # behind it, not around it
    assert len(outlet.writes) == 1
    await _turns()
    outlet.writable = False
    conn.send_now(text_frame(b'{"n":3}'))  # the transport is full: queued
    assert conn.queued == 1
    outlet.drain()
    await _turns()
    assert [json.loads(t)["n"] for t in outlet.texts()] == [0, 1, 2, 3]


def test_the_frame_bytes_parse_as_the_same_text_frame_at_every_length() -> None:
    for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        text = ("x" * n).encode()
        wire = text_frame(text)
        reader = StreamReader()
        reader.feed_data(wire)
        reader.feed_eof()
        frame = _parse(reader)
        assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, text)
        assert not reader.buffer
        assert payload_of(wire) == text.decode()


class BufferingOutlet(FakeOutlet):
    """A transport whose peer stopped reading: it keeps every byte written and pauses once
    its buffer passes the high-water mark (as asyncio's and uvloop's transports do)."""

    HIGH_WATER = 64 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.buffered = 0

    def write_wire(self, data: bytes) -> bool:
        if not super().write_wire(data):
            return False
        self.buffered += len(data)
        if self.buffered > self.HIGH_WATER:
            self.writable = False  # pause_writing
        return True


async def test_a_slow_reader_s_transport_holds_at_most_one_batch_over_its_high_water_mark() -> None:
    from bankhub.delivery.connection import BATCH_BYTES

    conn, _, outlet = _conn(limit=1024)
    outlet = BufferingOutlet()
    conn._out = outlet
    frame = '{"pad":"' + "a" * 1000 + '"}'
    for _ in range(600):  # one broker read's worth for one busy client, ~600 KB, in one turn
        conn.push(frame)
    await _turns()
    # the transport took one batch past its high-water mark; the rest waits in the bounded queue
    assert outlet.buffered <= outlet.HIGH_WATER + BATCH_BYTES + len(frame) + 10
    assert conn.queued == 600 - len(outlet.texts()) and conn.close_code is None
    assert [len(t) for t in outlet.texts()] == [len(frame)] * len(outlet.texts())


async def test_a_frame_is_never_written_around_older_queued_ones_once_the_transport_drains() -> None:
    conn, _, outlet = _conn()
    outlet.writable = False
    conn.push('{"n":0}')
    conn.push('{"n":1}')
    await _turns()
    outlet.writable = True  # the transport drained, and the writer has not run yet
    conn.push('{"n":2}')
    conn.send_now(text_frame(b'{"n":3}'))
    assert outlet.writes == []  # nothing jumps the queue
    outlet.drain()
    await _turns()
    assert [json.loads(t)["n"] for t in outlet.texts()] == [0, 1, 2, 3]


async def test_a_batch_that_reaches_the_queue_limit_is_written_within_the_turn() -> None:
    conn, _, outlet = _conn(limit=4)
    for i in range(10):
        conn.push(f'{{"n":{i}}}')
    assert len(outlet.writes) == 2  # at 4 and at 8 frames: the batch does not grow without bound
    await _turns()
    assert [json.loads(t)["n"] for t in outlet.texts()] == list(range(10))
    assert conn.close_code is None  # a client that keeps up is not cut for a long burst


async def test_a_flushing_close_writes_the_frames_batched_in_the_same_turn() -> None:
    conn, ws, outlet = _conn()
    conn.push('{"n":0}')  # answers of this turn, not yet written
    conn.push('{"n":1}')
    conn.close(CloseCode.POLICY_VIOLATION, "abuse", flush=True)
    await asyncio.wait_for(conn.closed.wait(), 1)
    assert [json.loads(t)["n"] for t in outlet.texts()] == [0, 1]
    assert ws.closes == [(CloseCode.POLICY_VIOLATION, "abuse")]


class RaisingOutlet(FakeOutlet):
    def write_wire(self, data: bytes) -> bool:
        raise OSError("broken socket")


async def test_a_write_that_raises_closes_that_connection_only_and_the_others_are_written() -> None:
    broken, _, _ = _conn(name="c.li")
    broken._out = RaisingOutlet()
    others = [_conn(name=n) for n in ("c.zhang", "c.zhou")]
    broken.push('{"n":0}')
    for conn, _, _ in others:
        conn.push('{"n":0}')
    await _turns()
    assert broken.close_code == CloseCode.GOING_AWAY
    for conn, _, outlet in others:
        assert conn.close_code is None and len(outlet.texts()) == 1
        conn.push('{"n":1}')  # and their next turns are written too
    await _turns()
    assert all(len(outlet.texts()) == 2 for _, _, outlet in others)


def test_two_event_loops_in_one_process_keep_their_own_batches() -> None:
    import threading

    pushed_a = threading.Event()
    pushed_b = threading.Event()
    results: dict[str, list[str]] = {}

    async def on_loop(name: str, mine: threading.Event, theirs: threading.Event, wait: bool) -> None:
        conn, _, outlet = _conn(name=name)
        conn.push('{"n":0}')  # batched for the end of this loop's turn
        mine.set()
        if wait:  # the other loop batches while this one's turn has not ended
            assert theirs.wait(5)
        await _turns()
        results[name] = outlet.texts()

    def run(name: str, mine: threading.Event, theirs: threading.Event, wait: bool) -> None:
        asyncio.run(on_loop(name, mine, theirs, wait))

    first = threading.Thread(target=run, args=("c.li", pushed_a, pushed_b, True))
    first.start()
    assert pushed_a.wait(5)
    second = threading.Thread(target=run, args=("c.zhang", pushed_b, pushed_a, False))
    second.start()
    first.join(5)
    second.join(5)
    assert results == {"c.li": ['{"n":0}'], "c.zhang": ['{"n":0}']}


async def test_a_connection_s_writer_task_carries_its_own_log_ids() -> None:
    from bankhub import logs

    seen: dict[str, str | None] = {}

    class Recording(FakeOutlet):
        async def until_writable(self) -> None:
            seen.update({k: logs._IDS[k].get() for k in ("connection_id", "user_id", "request_id")})
            await super().until_writable()

    conn, _, _ = _conn(name="c.zhang")
    outlet = Recording()
    outlet.writable = False
    conn._out = outlet
    tokens = logs.bind(connection_id="conn-other", user_id="u-other", request_id="req-other")
    try:
        conn.push('{"n":0}')  # the writer starts here, in another connection's context
    finally:
        logs.unbind(tokens)
    await _turns()
    assert seen == {"connection_id": "conn-c.zhang", "user_id": "u-c.zhang", "request_id": None}
    outlet.drain()
    await _turns()
