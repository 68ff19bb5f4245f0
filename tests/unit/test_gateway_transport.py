"""The ``bankhub.outlet`` writes against uvicorn's real WebSocket protocol state
(:class:`~bankhub.gateway.transport.HubWebSocketProtocol` on a transport played by hand):
nothing is written before the socket is accepted, after a refused handshake, while the
transport is paused, after a close frame (sent or received), or to a transport whose write
raises; and every middleware of the app passes a WebSocket through untouched (the gateway
hands ``/v1/ws`` to the endpoint around them)."""

from __future__ import annotations

import asyncio
import base64
import os
from types import SimpleNamespace
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from bankhub.gateway.transport import HubWebSocketProtocol
from bankhub.protocol.wire import text_frame

FRAME = text_frame(b'{"type":"pong"}')


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closing = False
        self.aborted = False
        self.broken = False

    def write(self, data: Any) -> None:
        if self.broken:
            raise OSError("broken pipe")
        assert not self.closing, "a write to a closing transport"
        self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def frames(self) -> list[Frame]:
        """The WebSocket frames written after the handshake response, as a client parses them."""
        head, _, rest = bytes(self.data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        reader = StreamReader()
        reader.feed_data(rest)
        reader.feed_eof()
        out: list[Frame] = []
        while reader.buffer:
            gen = Frame.parse(reader.read_exact, mask=False)
            try:
                next(gen)
            except StopIteration as done:
                out.append(done.value)
            else:
                raise AssertionError("incomplete frame")
        return out


class Peer:
    """One socket: the protocol, its transport, and the ASGI app's side (accept, refuse, close)."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.outlet: HubWebSocketProtocol | None = None
        self.before_accept: bool | None = None
        self.accepted = asyncio.Event()
        self.to_close = asyncio.Event()
        self.done = asyncio.Event()
        config = Config(app=self.app, interface="asgi3", ws="websockets-sansio", lifespan="off", ws_per_message_deflate=False, proxy_headers=False)
        config.load()
        self.proto = HubWebSocketProtocol(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
        self.transport = FakeTransport()
        self.proto.connection_made(self.transport)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            self.outlet = scope["extensions"]["bankhub.outlet"]
            assert (await receive())["type"] == "websocket.connect"
            self.before_accept = self.outlet.write_wire(FRAME)
            if self.refuse:
                await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
                await send({"type": "websocket.http.response.body", "body": b"no"})
                return
            await send({"type": "websocket.accept"})
            self.accepted.set()
            await self.to_close.wait()
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
        finally:
            self.done.set()

    async def open(self) -> HubWebSocketProtocol:
        key = base64.b64encode(os.urandom(16)).decode()
        self.proto.data_received(
            f"GET /v1/ws HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert self.outlet is self.proto
        return self.proto


async def test_nothing_is_written_before_accept_and_a_paused_transport_is_not_written() -> None:
    peer = Peer()
    proto = await peer.open()
    await asyncio.wait_for(peer.accepted.wait(), 1)
    assert peer.before_accept is False  # the handshake was not complete: nothing written
    assert proto.ready() and proto.write_wire(FRAME)
    proto.pause_writing()  # the transport passed its high-water mark
    size = len(peer.transport.data)
    assert not proto.ready() and not proto.write_wire(FRAME) and proto.open_for_data()
    assert len(peer.transport.data) == size
    waiter = asyncio.ensure_future(proto.until_writable())
    await asyncio.sleep(0)
    assert not waiter.done()
    proto.resume_writing()
    await asyncio.wait_for(waiter, 1)
    assert proto.write_wire(FRAME)
    assert [bytes(f.data) for f in peer.transport.frames()] == [b'{"type":"pong"}'] * 2
    peer.to_close.set()
    await asyncio.wait_for(peer.done.wait(), 1)


async def test_no_byte_follows_the_close_frame_sent_even_while_paused() -> None:
    peer = Peer()
    proto = await peer.open()
    await asyncio.wait_for(peer.accepted.wait(), 1)
    proto.write_wire(FRAME)
    proto.pause_writing()  # a reader that stopped: the close frame skips the writable wait
    peer.to_close.set()
    await asyncio.wait_for(peer.done.wait(), 1)
    assert proto.close_sent and not proto.open_for_data()
    proto.resume_writing()
    assert not proto.ready() and not proto.write_wire(FRAME)
    frames = peer.transport.frames()
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]  # the close frame is the last
    assert proto.close_timer is not None
    proto.close_timer.cancel()


async def test_nothing_is_written_after_the_peer_s_close_frame() -> None:
    peer = Peer()
    proto = await peer.open()
    await asyncio.wait_for(peer.accepted.wait(), 1)
    close = Frame(Opcode.CLOSE, Close(1000, "bye").serialize())
    proto.data_received(close.serialize(mask=True))  # the client closes
    assert not proto.write_wire(FRAME) and not proto.open_for_data()
    assert [f.opcode for f in peer.transport.frames()] == [Opcode.CLOSE]  # the echo, and nothing after
    peer.to_close.set()
    await asyncio.wait_for(peer.done.wait(), 1)


async def test_a_refused_handshake_is_never_written() -> None:
    peer = Peer(refuse=True)
    proto = await peer.open()
    await asyncio.wait_for(peer.done.wait(), 1)
    assert peer.before_accept is False
    assert bytes(peer.transport.data).startswith(b"HTTP/1.1 403")
    size = len(peer.transport.data)
    assert not proto.ready() and not proto.open_for_data() and not proto.write_wire(FRAME)
    assert len(peer.transport.data) == size


async def test_a_write_that_raises_aborts_the_transport_and_says_false() -> None:
    peer = Peer()
    proto = await peer.open()
    await asyncio.wait_for(peer.accepted.wait(), 1)
    peer.transport.broken = True
    assert proto.write_wire(FRAME) is False  # never raises into the fan-out that called it
    assert peer.transport.aborted and not proto.open_for_data()  # so no writer waits on it
    peer.to_close.set()
    await asyncio.wait_for(peer.done.wait(), 1)


async def test_every_app_middleware_passes_a_websocket_through_untouched() -> None:
    # the gateway hands /v1/ws straight to the endpoint (DirectWebSocket): that skips nothing
    # only while no middleware acts on a WebSocket. One that does (an allow-list, a rate limit)
    # must be applied in the endpoint too, and this test changed with it.
    from bankhub.app import create_app

    hub = SimpleNamespace(settings=SimpleNamespace(node_name="hub-a"))
    app = create_app(hub)  # type: ignore[arg-type]
    assert app.user_middleware, "the app has middlewares: each is checked below"
    for middleware in app.user_middleware:
        calls: list[tuple[Any, Any, Any]] = []

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            calls.append((scope, receive, send))

        async def receive() -> Any:
            raise AssertionError("a middleware read from a WebSocket")

        async def send(message: Any) -> None:
            raise AssertionError(f"a middleware sent {message['type']} on a WebSocket")

        scope = {"type": "websocket", "path": "/v1/ws", "headers": [], "client": ("10.0.0.1", 1), "app": app}
        before = dict(scope)
        instance = middleware.cls(inner, *middleware.args, **middleware.kwargs)
        await instance(scope, receive, send)
        name = getattr(middleware.cls, "__name__", repr(middleware.cls))
        assert calls == [(scope, receive, send)], f"{name} does not pass a WebSocket through untouched"
        assert calls[0][0] is scope and scope == before, f"{name} changed a WebSocket's scope"


async def test_a_connection_refused_for_a_broker_outage_closes_through_the_connection() -> None:
    from bankhub.delivery.connection import Connection
    from bankhub.gateway.endpoint import _serve
    from bankhub.protocol.frames import CloseCode
    from bankhub.protocol.session import SessionLimits
    from tests.unit.test_connection_outbound import FakeOutlet, FakeWebSocket, _session

    class Socket(FakeWebSocket):
        async def accept(self, subprotocol: str | None = None) -> None:
            pass

    added: list[Connection] = []

    async def add(conn: Connection) -> bool:
        added.append(conn)
        raise ConnectionError("broker down")

    async def no_range(conversation_id: str, after: int, upto: int) -> list[Any]:
        return []

    hub = SimpleNamespace(
        session_limits=SessionLimits(),
        settings=SimpleNamespace(node_name="hub-a"),
        messages=SimpleNamespace(range=no_range),
        registry=SimpleNamespace(add=add),
    )
    ws = Socket(FakeOutlet())
    await asyncio.wait_for(_serve(hub, ws, _session()), 2)  # type: ignore[arg-type]
    for _ in range(10):
        await asyncio.sleep(0)
    (conn,) = added
    # the connection's state is the socket's: closed with 1011 once, no stray writer left
    assert ws.closes == [(CloseCode.INTERNAL_ERROR, "broker unavailable")]
    assert conn.close_code == CloseCode.INTERNAL_ERROR and conn.closed.is_set()
    assert conn._writer is not None and conn._writer.done()  # the close was carried out, and ended
