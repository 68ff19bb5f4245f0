"""The bare servers the hub is compared with, each in its own process.

    python -m bench.bare ws    --port P        # websockets server: fan-out and idle memory
    python -m bench.bare relay --port P --map F # Starlette/uvicorn relay: 1:1 latency

``ws`` — ``websockets.asyncio.server.serve`` with ``compression=None``, the
``bankhub.v1`` subprotocol, the hub's frame size limit and ping settings. Every
connection gets a small ``hello`` frame (so that the same clients work against it)
and is then held open. A connection to ``/send`` is the sender: every frame it sends
goes to all other connections with ``websockets.broadcast()`` — the whole fan-out of
a group message, minus everything the hub does around it (storage, membership,
ordering, per-connection queues).

``relay`` — a Starlette app served by uvicorn with the hub's transport settings
(httptools, the websockets sans-I/O protocol, no compression, 64 KiB frames, pings
every 20 s). ``/v1/ws`` looks the bearer token up in an in-memory dict (from the JSON
file ``--map``: token -> [user id, conversation id, peer user id]), answers ``hello``,
and for every ``send`` frame writes a ``message`` frame straight to the peer's socket
(found in a dict) and a ``sent`` frame back: the protocol's shapes, none of its work
(no database, no batching, no queues).

Both run on uvloop with the hub's garbage-collector settings (``bankhub.gctune``:
higher thresholds, start-up heap frozen; ``--default-gc`` keeps CPython's), so that
the difference measured is the hub's code path, not its configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["BareProcess"]

_ROOT = Path(__file__).resolve().parents[1]
_HELLO = '{"type":"hello","protocol":1,"node":"bare"}'


class BareProcess:
    """A bare server (``mode`` ``ws`` or ``relay``) on 127.0.0.1:``port``; same interface as
    :class:`~bench.hubproc.HubProcess` (``pid``, ``ws_url``, ``wait_ready``, ``stop``)."""

    def __init__(self, mode: str, port: int, log_path: Path, args: list[str] | None = None) -> None:
        # BENCH_BARE_WS=picows: the fan-out/memory baseline is a bare picows server instead
        # (BENCH_BARE_PYTHON: a Python that has picows; it is not a dependency of the hub)
        if mode == "ws" and os.environ.get("BENCH_BARE_WS") == "picows":
            mode = "picows"
        self.mode = mode
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        python = os.environ.get("BENCH_BARE_PYTHON") or sys.executable
        argv = [python, "-m", "bench.bare", mode, "--port", str(port), *(args or [])]
        self.proc = subprocess.Popen(argv, cwd=_ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def send_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/send"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bare {self.mode} server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"bare {self.mode} server not listening after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> int | None:
        from .hubproc import terminate  # lazy, like raise_nofile_limit: the server side stays light

        try:
            return terminate(self.proc, timeout)
        finally:
            self._log.close()


# --- ws: websockets + broadcast() -----------------------------------------------------------------


async def _serve_ws(port: int, gc_tune: bool) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    receivers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/send":
            async for frame in ws:
                broadcast(receivers, frame)
            return
        receivers.add(ws)
        try:
            await ws.send(_HELLO)
            await ws.wait_closed()
        finally:
            receivers.discard(ws)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        subprotocols=["bankhub.v1"],  # type: ignore[list-item]
        max_size=64 * 1024,
        ping_interval=20.0,
        ping_timeout=20.0,
        backlog=2048,  # uvicorn's default, as the hub has
    ):
        if gc_tune:
            _tune_gc()
        print(f"bare ws server ready on 127.0.0.1:{port} (pid {os.getpid()})", flush=True)
        await stop


# --- picows: the same as ws, on picows -------------------------------------------------------------


async def _serve_picows(port: int, gc_tune: bool) -> None:
    """``ws`` on picows (not a dependency: run with a Python that has it, BENCH_BARE_PYTHON).
    A frame from ``/send`` is framed once and its bytes written to every receiver's transport
    (server frames are unmasked: the same bytes for all), as the hub does."""
    import picows  # type: ignore[import-not-found,unused-ignore]

    receivers: set[Any] = set()
    hello = _HELLO.encode()

    class Receiver(picows.WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_connected(self, transport: Any) -> None:
            receivers.add(transport)
            transport.send(picows.WSMsgType.TEXT, hello)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == picows.WSMsgType.CLOSE:  # pings are answered by picows itself
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: Any) -> None:
            receivers.discard(transport)

    class Sender(Receiver):
        def on_ws_connected(self, transport: Any) -> None:
            pass

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == picows.WSMsgType.TEXT:
                payload = frame.get_payload_as_bytes()
                n = len(payload)
                head = bytes((0x81, n)) if n < 126 else bytes((0x81, 126, n >> 8, n & 0xFF)) if n < 65536 else bytes((0x81, 127)) + n.to_bytes(8, "big")
                wire = head + payload
                for t in receivers:
                    if not t.is_close_frame_sent:
                        t.underlying_transport.write(wire)
            else:
                super().on_ws_frame(transport, frame)

    def factory(request: Any) -> Any:
        listener = Sender() if request.path == b"/send" or request.path == "/send" else Receiver()
        protocols = request.headers.get("sec-websocket-protocol", "") if hasattr(request, "headers") else ""
        if "bankhub.v1" in str(protocols):
            response = picows.WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": "bankhub.v1"})
            return picows.WSUpgradeResponseWithListener(response, listener)
        return listener

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    server = await picows.ws_create_server(
        factory, "127.0.0.1", port, max_frame_size=64 * 1024, backlog=2048,
        enable_auto_ping=True, auto_ping_idle_timeout=20.0, auto_ping_reply_timeout=20.0,  # as ``ws``'s pings
    )
    if gc_tune:
        _tune_gc()
    print(f"bare picows server ready on 127.0.0.1:{port} (pid {os.getpid()})", flush=True)
    try:
        await stop
    finally:
        server.close()


# --- relay: Starlette on uvicorn ----------------------------------------------------------------------


class _Body(msgspec.Struct):
    kind: str
    text: str


class _Send(msgspec.Struct, tag="send", tag_field="type"):
    id: str
    conversation_id: str
    client_msg_id: str
    body: _Body


def _relay_app(mapping: dict[str, list[str]]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    decode = msgspec.json.Decoder(_Send).decode
    encode = msgspec.json.Encoder().encode
    conns: dict[str, WebSocket] = {}
    seqs: dict[str, int] = {}

    async def endpoint(ws: WebSocket) -> None:
        auth = ws.headers.get("authorization", "")
        entry = mapping.get(auth.partition(" ")[2])
        if entry is None:
            await ws.close(1008)
            return
        user, conv, peer = entry
        await ws.accept(subprotocol="bankhub.v1")
        conns[user] = ws
        await ws.send_text(_HELLO)
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                frame = decode(msg["text"])
                seq = seqs[conv] = seqs.get(conv, 0) + 1
                mid = str(uuid.uuid4())
                ts = int(time.time() * 1000)
                target = conns.get(peer)
                if target is not None:
                    out: dict[str, Any] = {"conversation_id": conv, "message_id": mid, "seq": seq, "sender_id": user}
                    out |= {"client_msg_id": frame.client_msg_id, "body": frame.body, "ts": ts}
                    try:
                        await target.send_text(encode({"type": "message", "message": out}).decode())
                    except Exception:
                        pass  # the peer went away
                ack: dict[str, Any] = {"type": "sent", "id": frame.id, "conversation_id": conv, "client_msg_id": frame.client_msg_id}
                ack |= {"message_id": mid, "seq": seq, "ts": ts}
                await ws.send_text(encode(ack).decode())
        finally:
            if conns.get(user) is ws:
                del conns[user]

    async def readyz(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[WebSocketRoute("/v1/ws", endpoint), Route("/readyz", readyz)])


def _serve_relay(port: int, mapping_file: Path, gc_tune: bool) -> None:
    import uvicorn

    mapping = json.loads(mapping_file.read_text())
    config = uvicorn.Config(
        _relay_app(mapping),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        http="httptools",
        loop="auto",
        ws_max_size=64 * 1024,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if gc_tune:
                _tune_gc()
            print(f"bare relay ready on 127.0.0.1:{port} (pid {os.getpid()})", flush=True)

    Server(config).run()


def _tune_gc() -> None:
    try:
        from bankhub import gctune
    except ImportError:  # pragma: no cover - the hub is installed in the bench's venv
        return
    gctune.tune_for_serving()
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["ws", "picows", "relay"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--map", type=Path, help="relay: JSON file, token -> [user id, conversation id, peer user id]")
    p.add_argument("--default-gc", action="store_true", help="keep CPython's GC thresholds (default: the hub's)")
    a = p.parse_args(argv)
    from .hubproc import raise_nofile_limit

    raise_nofile_limit()
    if a.mode == "ws":
        import uvloop

        uvloop.run(_serve_ws(a.port, not a.default_gc))
    elif a.mode == "picows":
        import uvloop

        uvloop.run(_serve_picows(a.port, not a.default_gc))
    else:
        if a.map is None:
            p.error("relay needs --map")
        _serve_relay(a.port, a.map, not a.default_gc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
