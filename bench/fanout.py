"""Fan-out: many cheap receivers in their own processes, and one sender.

A fan-out test must not measure its receivers. A ``websockets`` client costs tens of
microseconds of Python per received frame — as much as the server's work for it — so
with 5000 receivers on a 2-core machine the receivers, not the server, would set the
rate, and the hub and the bare server would come out equal. Each receiver here is a
plain ``asyncio.Protocol`` instead: it performs the HTTP upgrade itself (the same
request a ``websockets`` client sends: subprotocol ``bankhub.v1``,
``Authorization: Bearer``, no compression; from its own 127.x source address), then
only splits the byte stream into frames (server frames are unmasked: a 2–10 byte
header and a length), counts the text frames that start with ``{"type":"message"``
(or another prefix: the official-account fan-out counts ``{"type":"notice"``) and notes
the arrival time (``time.time_ns()`` once per read) of the *k*-th one. It answers pings
(the servers ping every 20 s) and close frames; nothing else is parsed. Both servers
get exactly the same receivers.

The orchestrator drives a receiver process through a pipe: ``("arm", k, timeout_s)``
(forget counts; expect ``k`` messages on every connection), ``("stop",)``; the process
answers on a queue: ``("connected", ...)``, ``("armed", worker)``,
``("fanout_progress", worker, received)`` once a second and ``("fanout_result", worker, {...})``
when every connection has its ``k`` messages or the timeout passed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import msgspec

from .hubproc import raise_nofile_limit
from .model import BenchClient

__all__ = ["receiver_main", "hub_burst", "bare_burst"]

_NS = 1_000_000_000
_TRIES = 5
_MESSAGE = b'{"type":"message"'
_CLOSE_1000 = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (zero key) close frame, code 1000
_IDLE_LIMIT_S = 900.0


class _Refused(Exception):
    pass


class _Receiver(asyncio.Protocol):
    """One receiving connection: upgrade, then frame counting (see the module docstring)."""

    __slots__ = ("pool", "slot", "request", "transport", "buf", "opened", "upgraded", "count", "closed", "prefix")

    def __init__(self, pool: _Pool, slot: int, request: bytes) -> None:
        self.pool = pool
        self.slot = slot
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.count = 0
        self.closed = False
        self.prefix = pool.prefix

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection lost during the handshake"))
        elif self.pool.armed:
            self.pool.closed_while_armed += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b"?"
            if status != b"101":
                if not self.opened.done():
                    self.opened.set_exception(_Refused(f"HTTP {status.decode(errors='replace')}"))
                if self.transport is not None:
                    self.transport.close()
                return
            self.upgraded = True
        now = 0
        pos = 0
        n = len(buf)
        pool = self.pool
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                start = pos + 2
            elif b1 == 126:
                if n - pos < 4:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + b1
            if end > n:
                break
            op = buf[pos] & 0x0F
            if op == 1:
                if buf.startswith(self.prefix, start):
                    if not now:
                        now = time.time_ns()
                    self.count += 1
                    pool.on_message(self, now, buf, start, end)
                elif not self.opened.done():
                    self.opened.set_result(None)  # hello
                else:
                    pool.other_frames += 1
            elif op == 9:  # ping -> pong with the same payload, masked with a zero key
                payload = bytes(buf[start:end])
                if self.transport is not None and len(payload) < 126:
                    self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload)
            elif op == 8:
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(_CLOSE_1000)
                    self.transport.close()
                pool.close_frames[int.from_bytes(buf[start : start + 2], "big") if end - start >= 2 else 1005] += 1
            pos = end
        if pos:
            del buf[:pos]


class _Pool:
    """A process's receivers and what they counted since the last ``arm``."""

    def __init__(self, worker: int, port: int, path: str, infos: list[BenchClient], prefix: bytes = _MESSAGE) -> None:
        self.worker = worker
        self.prefix = prefix
        self.port = port
        self.path = path
        self.infos = infos
        self.receivers: list[_Receiver] = []
        self.armed = False
        self.k = 0
        self.arrivals: list[array[int]] = []
        self.remaining = 0
        self.done: asyncio.Event = asyncio.Event()
        self.received = 0
        self.other_frames = 0
        self.closed_while_armed = 0
        self.close_frames: Counter[int] = Counter()
        self.sample = b""

    def _request(self, info: BenchClient) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bankhub.v1\r\n"
            f"Authorization: Bearer {info.token}\r\nUser-Agent: bankhub-bench-receiver\r\n\r\n"
        ).encode()

    async def connect_all(self, concurrency: int = 50, timeout: float = 180.0) -> tuple[int, int, float, dict[str, int]]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        gate = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        got: dict[int, _Receiver] = {}

        async def one(i: int, info: BenchClient) -> None:
            async with gate:
                for attempt in range(_TRIES):
                    rec = _Receiver(self, i, self._request(info))
                    try:
                        await loop.create_connection(lambda: rec, "127.0.0.1", self.port, local_addr=(info.source_ip, 0))
                        await asyncio.wait_for(rec.opened, 15)
                        got[i] = rec
                        return
                    except Exception as exc:
                        failures[str(exc)[:80] if isinstance(exc, _Refused) else f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                        if rec.transport is not None:
                            rec.transport.abort()
                        if attempt < _TRIES - 1:
                            await asyncio.sleep(0.25 * 2**attempt)

        await asyncio.wait_for(asyncio.gather(*(one(i, c) for i, c in enumerate(self.infos))), timeout)
        self.receivers = [got[i] for i in sorted(got)]
        for slot, rec in enumerate(self.receivers):
            rec.slot = slot
        return len(self.receivers), len(self.infos) - len(self.receivers), time.perf_counter() - started, dict(failures)

    def arm(self, k: int) -> None:
        n = len(self.receivers)
        self.k = k
        self.arrivals = [array("q", bytes(8 * n)) for _ in range(k)]
        for rec in self.receivers:
            rec.count = 0
        self.remaining = n
        self.received = 0
        self.other_frames = 0
        self.closed_while_armed = 0
        self.close_frames.clear()
        self.sample = b""
        self.done = asyncio.Event()
        self.armed = True
        if n == 0:
            self.done.set()

    def on_message(self, rec: _Receiver, now: int, buf: bytearray, start: int, end: int) -> None:
        if not self.armed:
            return
        self.received += 1
        c = rec.count
        if c <= self.k:
            self.arrivals[c - 1][rec.slot] = now
            if c == self.k:
                self.remaining -= 1
                if self.remaining == 0:
                    self.done.set()
        if not self.sample:
            self.sample = bytes(buf[start:end])

    def result(self) -> dict[str, Any]:
        self.armed = False
        counts = [rec.count for rec in self.receivers]
        return {
            "receivers": len(self.receivers),
            "k": self.k,
            "complete": sum(1 for c in counts if c >= self.k),
            "received": self.received,
            "missing": sum(max(0, self.k - c) for c in counts),
            "extra": sum(max(0, c - self.k) for c in counts),
            "other_frames": self.other_frames,
            "closed": self.closed_while_armed,
            "close_codes": dict(self.close_frames),
            "arrivals": [a.tobytes() for a in self.arrivals],
            "sample": self.sample,
        }

    def close_all(self) -> None:
        for rec in self.receivers:
            if rec.transport is not None and not rec.transport.is_closing():
                rec.transport.write(_CLOSE_1000)
                rec.transport.close()


async def _main(
    worker: int, port: int, path: str, infos: list[BenchClient], commands: Connection, reports: Queue[Any], prefix: bytes
) -> None:
    pool = _Pool(worker, port, path, infos, prefix)
    loop = asyncio.get_running_loop()
    parent = os.getppid()
    ok, failed, secs, reasons = await pool.connect_all()
    reports.put(("connected", worker, ok, failed, secs, reasons))
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < _IDLE_LIMIT_S and os.getppid() == parent:
            if not await loop.run_in_executor(None, commands.poll, 1.0):
                continue
            cmd = commands.recv()
            if cmd[0] == "arm":
                _, k, timeout_s = cmd
                pool.arm(k)
                reports.put(("armed", worker))
                deadline = time.monotonic() + timeout_s
                while not pool.done.is_set() and time.monotonic() < deadline:
                    try:
                        await asyncio.wait_for(pool.done.wait(), min(1.0, max(0.01, deadline - time.monotonic())))
                    except TimeoutError:
                        reports.put(("fanout_progress", worker, pool.received))
                reports.put(("fanout_result", worker, pool.result()))
            elif cmd[0] == "stop":
                break
            idle_since = time.monotonic()
    finally:
        pool.close_all()
        await asyncio.sleep(0.5)  # let the close frames go out


def receiver_main(
    worker: int, port: int, path: str, infos: list[BenchClient], commands: Connection, reports: Queue[Any], prefix: bytes = _MESSAGE
) -> None:
    """Entry point of a receiver process (multiprocessing, spawn); counts text frames starting with ``prefix``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile_limit()
    import uvloop

    uvloop.run(_main(worker, port, path, infos, commands, reports, prefix))


# --- the senders (run in the orchestrator) ------------------------------------------------------


async def hub_burst(
    ws_url: str, sender: BenchClient, conversation_id: str, k: int, text_bytes: int, timeout: float = 120.0, *, chatter: bool = False
) -> dict[str, Any]:
    """Send ``k`` messages to the group as fast as the socket takes them; wait for the ``sent`` acks.

    ``chatter``: also a ``typing`` frame before every other message and, after the acks, a
    typing stop and a ``read`` up to the last seq, as a chatting user's client sends them (the hub forwards
    typing and read positions to every member of a group of up to 100; above that they stay
    with the sender). ``k`` plus that chatter must stay within the hub's per-connection burst
    (100 frames): ``k`` <= 64 with chatter.
    """
    from websockets.asyncio.client import connect

    enc = msgspec.json.Encoder()
    async with connect(
        ws_url,
        subprotocols=["bankhub.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {sender.token}"},
        compression=None,
        ping_interval=None,
        open_timeout=15,
        local_addr=(sender.source_ip, 0),
    ) as ws:
        hello = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 10))
        if hello.get("type") != "hello":
            raise RuntimeError(f"sender: first frame was {hello.get('type')!r}")
        run = os.urandom(4).hex()
        frames = []
        for i in range(k):
            cmid = f"f{run}.{i}"
            if chatter and i % 2 == 0:
                frames.append(enc.encode({"type": "typing", "conversation_id": conversation_id, "active": True}).decode())
            head = f"fanout {cmid} "
            frames.append(
                enc.encode(
                    {"type": "send", "id": cmid, "conversation_id": conversation_id, "client_msg_id": cmid,
                     "body": {"kind": "text", "text": head + "x" * max(0, text_bytes - len(head))}}
                ).decode()
            )
        send_ns: list[int] = []
        for f in frames:
            send_ns.append(time.time_ns())
            await ws.send(f)
        ack_ns: list[int] = []
        errors: Counter[str] = Counter()
        last_seq = 0
        deadline = time.monotonic() + timeout
        while len(ack_ns) + sum(errors.values()) < k and time.monotonic() < deadline:
            frame = msgspec.json.decode(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
            if frame.get("type") == "sent":
                ack_ns.append(time.time_ns())
                last_seq = max(last_seq, int(frame.get("seq", 0)))
            elif frame.get("type") == "error":
                errors[frame.get("code", "?")] += 1
        if chatter and last_seq:
            # done typing (the hub forwards a stop after a start, so the next round's first start goes out again)
            await ws.send(enc.encode({"type": "typing", "conversation_id": conversation_id, "active": False}).decode())
            await ws.send(enc.encode({"type": "read", "id": f"r{run}", "conversation_id": conversation_id, "seq": last_seq}).decode())
            while time.monotonic() < deadline:  # the receipt answers it (after its commit)
                frame = msgspec.json.decode(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
                if frame.get("type") == "receipt" and frame.get("id") == f"r{run}":
                    break
                if frame.get("type") == "error":
                    errors[frame.get("code", "?")] += 1
                    break
        return {"send_ns": send_ns, "ack_ns": ack_ns, "errors": dict(errors)}


async def bare_burst(send_url: str, payload: bytes, k: int) -> dict[str, Any]:
    """Send ``k`` copies of ``payload`` to the bare server's ``/send``: it broadcasts each."""
    from websockets.asyncio.client import connect

    text = payload.decode()
    async with connect(send_url, subprotocols=["bankhub.v1"], compression=None, ping_interval=None, open_timeout=15) as ws:  # type: ignore[list-item]
        send_ns: list[int] = []
        for _ in range(k):
            send_ns.append(time.time_ns())
            await ws.send(text)
        return {"send_ns": send_ns, "ack_ns": [], "errors": {}}
