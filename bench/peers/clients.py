"""The clients of the peer benchmark: one driver, two protocol adapters.

The same asyncio code (one process, uvloop) drives both servers: it brings N users
online, runs the closed loop (K senders, each waiting for its send's acknowledgement
before the next) and the open loop (a fixed rate over the same K senders), and times
every message with one clock (``time.time_ns``). Only the adapter differs:

- :class:`SynapseClients`: per user an ``httpx.AsyncClient`` (its own 127.x source
  address); "online" is a ``/sync`` long-poll loop (``since`` token, ``timeout=30000``,
  a timeline-only filter uploaded once); a send is ``PUT
  /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}``, acked by its 200.
- :class:`HubClients`: per user a ``websockets`` client (``bankhub.v1``, its own 127.x
  source address); "online" is the open socket after ``hello``; a send is a ``send``
  frame, acked by its ``sent`` frame.

A message carries its id as the first word after ``bench`` in its text, so a receiver
recognises it on either server. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import msgspec
import psutil  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..stats import latency_summary
from .config import rss_settled

__all__ = ["User", "Peer", "SynapseClients", "HubClients", "closed_loop", "open_loop", "settle_rss", "bring_online", "message_id", "Session"]

_NS = 1_000_000_000
_SEND_TIMEOUT_S = 30.0
_CONNECT_CONCURRENCY = 25

OnMessage = Callable[[int, str, int], None]  # (receiving user's index, message id, arrival ns)


@dataclass(frozen=True)
class User:
    """One bench user as both servers know it: ``room`` is its direct room/conversation."""

    index: int
    user_id: str
    token: str
    room: str
    peer_index: int
    source_ip: str


def message_text(msg_id: str, size: int) -> str:
    head = f"bench {msg_id} "
    return head + "x" * max(0, size - len(head))


def message_id(text: str) -> str | None:
    """The id in a bench message's text, or None for any other text."""
    if not text.startswith("bench "):
        return None
    return text[6:].split(" ", 1)[0] or None


class Peer(Protocol):
    name: str
    errors: Counter[str]

    async def online(self, user: User, on_message: OnMessage) -> None: ...
    def online_count(self) -> int: ...
    async def offline(self, user: User) -> None: ...
    async def send(self, sender: User, msg_id: str, text: str) -> bool: ...
    async def close(self) -> None: ...


# --- Synapse ------------------------------------------------------------------------------------------------


class SynapseClients:
    name = "synapse"

    def __init__(self, base_url: str, filter_json: dict[str, Any]) -> None:
        self.base_url = base_url
        self.filter_json = filter_json
        self.errors: Counter[str] = Counter()
        self._http: dict[int, httpx.AsyncClient] = {}
        self._loops: dict[int, asyncio.Task[None]] = {}

    def _client(self, user: User) -> httpx.AsyncClient:
        http = self._http.get(user.index)
        if http is None:
            http = self._http[user.index] = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {user.token}"},
                transport=httpx.AsyncHTTPTransport(local_address=user.source_ip),
                timeout=httpx.Timeout(60.0, connect=15.0),
            )
        return http

    async def online(self, user: User, on_message: OnMessage) -> None:
        http = self._client(user)
        r = await http.post(f"/_matrix/client/v3/user/{quote(user.user_id)}/filter", json=self.filter_json)
        r.raise_for_status()
        filter_id = r.json()["filter_id"]
        r = await http.get("/_matrix/client/v3/sync", params={"filter": filter_id, "timeout": "0"})
        r.raise_for_status()
        since = r.json()["next_batch"]
        self._loops[user.index] = asyncio.create_task(self._sync_loop(user, http, filter_id, since, on_message))

    def online_count(self) -> int:
        return sum(1 for t in self._loops.values() if not t.done())

    async def _sync_loop(self, user: User, http: httpx.AsyncClient, filter_id: str, since: str, on_message: OnMessage) -> None:
        params = {"filter": filter_id, "timeout": "30000", "since": since}
        failures = 0
        while failures < 5:  # bounded: the task is cancelled at the end of the run anyway
            try:
                r = await http.get("/_matrix/client/v3/sync", params=params)
                now = time.time_ns()
                if r.status_code != 200:
                    self.errors[f"sync HTTP {r.status_code}"] += 1
                    failures += 1
                    await asyncio.sleep(0.5)
                    continue
                body = r.json()
            except httpx.HTTPError as exc:
                self.errors[f"sync {type(exc).__name__}"] += 1
                failures += 1
                await asyncio.sleep(0.5)
                continue
            params["since"] = body["next_batch"]
            for room in body.get("rooms", {}).get("join", {}).values():
                for ev in room.get("timeline", {}).get("events", []):
                    if ev.get("type") == "m.room.message" and ev.get("sender") != user.user_id:
                        mid = message_id(ev.get("content", {}).get("body", ""))
                        if mid is not None:
                            on_message(user.index, mid, now)

    async def offline(self, user: User) -> None:
        task = self._loops.pop(user.index, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        http = self._http.pop(user.index, None)
        if http is not None:
            await http.aclose()

    async def send(self, sender: User, msg_id: str, text: str) -> bool:
        path = f"/_matrix/client/v3/rooms/{quote(sender.room)}/send/m.room.message/{msg_id}"
        body = {"msgtype": "m.text", "body": text}
        try:
            r = await self._client(sender).put(path, json=body)
        except httpx.TransportError as exc:
            # a kept-alive connection the server closed: a PUT with the same transaction id is
            # idempotent (the spec's retry), so send it once more, as a Matrix client does
            self.errors[f"send retried after {type(exc).__name__}"] += 1
            try:
                r = await self._client(sender).put(path, json=body)
            except httpx.HTTPError as exc2:
                self.errors[f"send {type(exc2).__name__}"] += 1
                return False
        except httpx.HTTPError as exc:
            self.errors[f"send {type(exc).__name__}"] += 1
            return False
        if r.status_code != 200:
            self.errors[f"send HTTP {r.status_code}"] += 1
            return False
        return True

    async def close(self) -> None:
        for task in self._loops.values():
            task.cancel()
        await asyncio.gather(*self._loops.values(), return_exceptions=True)
        self._loops.clear()
        https, self._http = list(self._http.values()), {}
        await asyncio.gather(*(h.aclose() for h in https), return_exceptions=True)


# --- bankhub ----------------------------------------------------------------------------------------------------


class _Frame(msgspec.Struct):
    type: str
    id: str | None = None
    code: str | None = None
    message: dict[str, Any] | None = None


_decode = msgspec.json.Decoder(_Frame).decode
_encode = msgspec.json.Encoder().encode


class HubClients:
    name = "bankhub"

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.errors: Counter[str] = Counter()
        self._ws: dict[int, ClientConnection] = {}
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._acks: dict[str, asyncio.Future[bool]] = {}

    async def online(self, user: User, on_message: OnMessage) -> None:
        ws = await connect(
            self.ws_url,
            subprotocols=["bankhub.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {user.token}"},
            compression=None,
            ping_interval=None,  # the hub pings
            open_timeout=15,
            close_timeout=2,
            max_queue=None,
            local_addr=(user.source_ip, 0),
        )
        try:
            first = _decode(await asyncio.wait_for(ws.recv(), 10))
            if first.type != "hello":
                raise RuntimeError(f"first frame was {first.type!r}, not hello")
        except BaseException:
            ws.transport.abort()
            raise
        self._ws[user.index] = ws
        self._readers[user.index] = asyncio.create_task(self._read(user, ws, on_message))

    def online_count(self) -> int:
        return sum(1 for t in self._readers.values() if not t.done())

    async def _read(self, user: User, ws: ClientConnection, on_message: OnMessage) -> None:
        try:
            async for raw in ws:
                now = time.time_ns()
                frame = _decode(raw)
                if frame.type == "message" and frame.message is not None:
                    if frame.message.get("sender_id") != user.user_id:
                        # the text carries the id too; the client_msg_id is the id itself
                        on_message(user.index, str(frame.message.get("client_msg_id", "")), now)
                elif frame.type in ("sent", "error") and frame.id is not None:
                    fut = self._acks.pop(frame.id, None)
                    if frame.type == "error":
                        self.errors[f"error {frame.code}"] += 1
                    if fut is not None and not fut.done():
                        fut.set_result(frame.type == "sent")
        except ConnectionClosed:
            pass

    async def offline(self, user: User) -> None:
        task = self._readers.pop(user.index, None)
        ws = self._ws.pop(user.index, None)
        if ws is not None:
            await ws.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def send(self, sender: User, msg_id: str, text: str) -> bool:
        ws = self._ws.get(sender.index)
        if ws is None:
            self.errors["send from a client not online"] += 1
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        cmid = msg_id
        self._acks[cmid] = fut
        frame = {"type": "send", "id": cmid, "conversation_id": sender.room, "client_msg_id": cmid, "body": {"kind": "text", "text": text}}
        try:
            await ws.send(_encode(frame).decode())
            return await asyncio.wait_for(fut, _SEND_TIMEOUT_S)
        except (ConnectionClosed, TimeoutError) as exc:
            self._acks.pop(cmid, None)
            self.errors[f"send {type(exc).__name__}"] += 1
            return False

    async def close(self) -> None:
        wss, self._ws = list(self._ws.values()), {}
        if wss:
            await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in wss], timeout=10)
        for t in self._readers.values():
            t.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        self._readers.clear()


# --- the driver -----------------------------------------------------------------------------------------------


@dataclass
class _Ledger:
    """Every message of one loop: sent, acked, delivered (to its receiver)."""

    receivers: dict[str, int] = field(default_factory=dict)  # msg id -> receiving user's index
    sent_ns: dict[str, int] = field(default_factory=dict)
    acked_ns: dict[str, int] = field(default_factory=dict)
    delivered_ns: dict[str, int] = field(default_factory=dict)
    failed_ids: set[str] = field(default_factory=set)
    extra: int = 0  # deliveries of unknown or already delivered ids

    def on_message(self, receiver: int, msg_id: str, now: int) -> None:
        if self.receivers.get(msg_id) != receiver or msg_id in self.delivered_ns:
            self.extra += 1
            return
        self.delivered_ns[msg_id] = now


    def summary(self, w0: int, w1: int) -> dict[str, Any]:
        measured = [m for m, t in self.sent_ns.items() if w0 <= t < w1]
        acked_in_window = sum(1 for t in self.acked_ns.values() if w0 <= t < w1)
        lost = sum(1 for m in self.acked_ns if m not in self.delivered_ns)
        return {
            "sent": len(self.sent_ns),
            "acked": len(self.acked_ns),
            "acked_in_window": acked_in_window,
            "delivered": len(self.delivered_ns),
            "failed": len(self.failed_ids),
            # neither acked nor refused by the end of the drain
            "unacked": sum(1 for m in self.sent_ns if m not in self.acked_ns and m not in self.failed_ids),
            "lost": lost,
            "extra_deliveries": self.extra,
            "ack_ms": latency_summary([(self.acked_ns[m] - self.sent_ns[m]) // 1000 for m in measured if m in self.acked_ns]),
            "deliver_ms": latency_summary([(self.delivered_ns[m] - self.sent_ns[m]) // 1000 for m in measured if m in self.delivered_ns]),
        }


class Session:
    """A peer with its users; routes deliveries to the current loop's ledger."""

    def __init__(self, peer: Peer, users: Sequence[User]) -> None:
        self.peer = peer
        self.users = list(users)
        self.ledger = _Ledger()

    def on_message(self, receiver: int, msg_id: str, now: int) -> None:
        self.ledger.on_message(receiver, msg_id, now)

    def senders(self, pairs: int) -> list[User]:
        """The K senders: the first user of each of the first K pairs (users 0, 2, 4, ...)."""
        return [self.users[2 * i] for i in range(pairs)]

    async def _send(self, tag: str, sender: User, text_bytes: int) -> None:
        led = self.ledger
        msg_id = tag
        led.receivers[msg_id] = sender.peer_index
        led.sent_ns[msg_id] = time.time_ns()
        ok = await self.peer.send(sender, msg_id, message_text(msg_id, text_bytes))
        if ok:
            led.acked_ns[msg_id] = time.time_ns()
        else:
            led.failed_ids.add(msg_id)

    async def _drain(self, drain_s: float) -> None:
        deadline = time.monotonic() + drain_s
        led = self.ledger
        while time.monotonic() < deadline:
            if all(m in led.delivered_ns or m in led.failed_ids for m in led.sent_ns) and all(
                m in led.acked_ns or m in led.failed_ids for m in led.sent_ns
            ):
                return
            await asyncio.sleep(0.05)


async def bring_online(session: Session, users: Sequence[User], timeout: float = 600.0) -> dict[str, Any]:
    """Bring ``users`` online, ``_CONNECT_CONCURRENCY`` at a time (bounded by ``timeout``)."""
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)
    failures: Counter[str] = Counter()
    started = time.perf_counter()

    async def one(u: User) -> None:
        async with gate:
            for attempt in range(3):
                try:
                    await session.peer.online(u, session.on_message)
                    return
                except Exception as exc:
                    failures[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                    await asyncio.sleep(0.25 * 2**attempt)

    await asyncio.wait_for(asyncio.gather(*(one(u) for u in users)), timeout)
    return {"clients": len(users), "seconds": round(time.perf_counter() - started, 2), "failed_attempts": dict(failures)}


async def closed_loop(session: Session, pairs: int, warmup_s: float, duration_s: float, drain_s: float, text_bytes: int) -> dict[str, Any]:
    """K senders, each sending its next message when the previous one was acknowledged."""
    session.ledger = _Ledger()
    start = time.time_ns()
    w0 = start + int(warmup_s * _NS)
    w1 = w0 + int(duration_s * _NS)

    async def pump(k: int, sender: User) -> None:
        n = 0
        while time.time_ns() < w1:
            n += 1
            await session._send(f"d{k}.{n}", sender, text_bytes)

    await asyncio.wait_for(
        asyncio.gather(*(pump(k, s) for k, s in enumerate(session.senders(pairs)))), warmup_s + duration_s + _SEND_TIMEOUT_S + 5
    )
    await session._drain(drain_s)
    out = session.ledger.summary(w0, w1)
    out["acked_per_s"] = round(out["acked_in_window"] / duration_s, 1)
    out.update(senders=pairs, warmup_s=warmup_s, duration_s=duration_s)
    return out


async def open_loop(session: Session, pairs: int, rate: float, warmup_s: float, duration_s: float, drain_s: float, text_bytes: int) -> dict[str, Any]:
    """Message k is due at ``start + k / rate``, from sender ``k % K``; nobody waits for acks."""
    session.ledger = _Ledger()
    senders = session.senders(pairs)
    start = time.time_ns() + _NS // 10
    w0 = start + int(warmup_s * _NS)
    w1 = w0 + int(duration_s * _NS)
    total = int(rate * (warmup_s + duration_s))
    tasks: list[asyncio.Task[None]] = []
    late = 0
    for k in range(total):
        due = start + int(k * _NS / rate)
        now = time.time_ns()
        if due > now:
            await asyncio.sleep((due - now) / _NS)
        elif now - due > 5_000_000:
            late += 1
        tasks.append(asyncio.create_task(session._send(f"o{k}", senders[k % len(senders)], text_bytes)))
    if tasks:
        await asyncio.wait(tasks, timeout=_SEND_TIMEOUT_S + 5)
    await session._drain(drain_s)
    for t in tasks:
        t.cancel()
    out = session.ledger.summary(w0, w1)
    out.update(senders=pairs, offered_rate=rate, warmup_s=warmup_s, duration_s=duration_s, late_sends=late)
    out["acked_per_s"] = round(out["acked_in_window"] / duration_s, 1)
    # the server kept up when every send was acked, the last within 1 s of the schedule's
    # end: otherwise the latency is the queue it built (late sends are the client's, counted apart)
    led = session.ledger
    last_ack = max(led.acked_ns.values(), default=0)
    schedule_end = start + int(total * _NS / rate)
    out["kept_up"] = bool(total) and len(led.acked_ns) == total and last_ack - schedule_end <= _NS
    return out


async def settle_rss(pid: int, min_s: float = 3.0, max_s: float = 30.0, every_s: float = 0.5) -> dict[str, Any]:
    """Read ``pid``'s RSS every ``every_s`` until it stops moving (:func:`rss_settled`), bounded by ``max_s``."""
    proc = psutil.Process(pid)
    samples: list[float] = []
    started = time.monotonic()
    while True:
        mem = proc.memory_full_info()
        samples.append(float(mem.rss))
        elapsed = time.monotonic() - started
        if (elapsed >= min_s and rss_settled(samples)) or elapsed >= max_s:
            return {"rss": int(samples[-1]), "uss": int(mem.uss), "settled": rss_settled(samples), "seconds": round(elapsed, 1)}
        await asyncio.sleep(every_s)
