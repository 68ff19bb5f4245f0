"""Traffic and witnesses for the chaos tests.

* :class:`Member` — one user's SDK client (:class:`bankhub_client.Client`: reconnects and
  syncs by itself), recording every event it yields and every acknowledgement it got,
  each with its arrival time.
* :class:`RawWitness` — a raw protocol-v1 connection that never reconnects: it records every
  frame the server sent it (with the time) and the answer to every request by frame id,
  so a test sees exactly what crossed the wire, without SDK smoothing.
* :func:`stored` — what Postgres holds: the truth every stream is checked against.
* :func:`assert_exactly_once` — a stream of delivered messages against the acknowledged ones.

All times are ``time.monotonic()`` of the test process, so latencies can be computed
across clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bankhub_client import Client, ClientOptions, Disconnected, Event, Message, Reconnected, ReconnectPolicy

__all__ = [
    "Member",
    "RawWitness",
    "StoredMessage",
    "stored",
    "assert_exactly_once",
    "login_all",
    "create_group",
    "eventually",
    "p50",
]

DEMO_PASSWORD = "bankhub-demo"


async def login_all(http_url: str, usernames: Iterable[str]) -> dict[str, str]:
    """Sign each user in once (login is rate-limited: reuse the tokens); returns username → token."""
    tokens: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=http_url, timeout=10) as http:
        for username in usernames:
            r = await http.post("/v1/sessions", json={"username": username, "password": DEMO_PASSWORD})
            assert r.status_code == 201, r.text
            tokens[username] = r.json()["token"]
    return tokens


async def create_group(http_url: str, token: str, title: str, members: Iterable[str]) -> str:
    async with httpx.AsyncClient(base_url=http_url, headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
        r = await http.post("/v1/conversations", json={"kind": "group", "title": title, "members": list(members)})
        assert r.status_code == 201, r.text
        cid: str = r.json()["conversation"]["id"]
        return cid


async def eventually(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.02) -> float:
    """Poll ``check`` until it holds; returns how long it took. Fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - start


def p50(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


# --- the SDK side --------------------------------------------------------------------------


class Member:
    """One user's SDK client with a recorder of everything it yields."""

    def __init__(self, username: str, client: Client) -> None:
        self.username = username
        self.client = client
        self.first_node = client.hello.node
        self.events: list[tuple[float, Event]] = []
        self.acks: list[tuple[float, float, Message]] = []  # (send called, ack came back, the committed message)
        self.error: BaseException | None = None
        self._consumer = asyncio.create_task(self._consume(), name=f"member-{username}")

    @classmethod
    async def connect(cls, url: str, username: str, token: str, *, reconnect: ReconnectPolicy, **kwargs: Any) -> Member:
        client = await Client.connect(url, token=token, options=ClientOptions(reconnect=reconnect, **kwargs))
        return cls(username, client)

    async def _consume(self) -> None:
        try:
            async for event in self.client.events():
                self.events.append((time.monotonic(), event))
        except Exception as exc:  # the client ended (gave up, auth): the test reports it
            self.error = exc

    @property
    def user_id(self) -> str:
        return self.client.user_id

    async def send(self, conversation_id: str, text: str, client_msg_id: str) -> Message:
        """Send through the SDK (which resends across reconnects until acknowledged)."""
        started = time.monotonic()
        sent = await self.client.send(conversation_id, text, client_msg_id=client_msg_id)
        self.acks.append((started, time.monotonic(), sent))
        return sent

    def messages(self, conversation_id: str) -> list[tuple[float, Message]]:
        return [(t, e) for t, e in self.events if isinstance(e, Message) and e.conversation_id == conversation_id]

    def notices(self) -> list[tuple[float, Disconnected | Reconnected]]:
        return [(t, e) for t, e in self.events if isinstance(e, Disconnected | Reconnected)]

    async def close(self) -> None:
        await self.client.close()
        self._consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._consumer


# --- the wire side -------------------------------------------------------------------------


class RawWitness:
    """A raw protocol connection that records every frame it receives; never reconnects."""

    def __init__(self, name: str, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.name = name
        self.ws = ws
        self.hello = hello
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.sent_at: dict[str, float] = {}  # frame id -> when it was written
        self.answers: dict[str, tuple[float, dict[str, Any]]] = {}  # frame id -> (when, answer)
        self.duplicate_answers: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self._reader = asyncio.create_task(self._read(), name=f"witness-{name}")

    @classmethod
    async def connect(cls, name: str, ws_url: str, token: str) -> RawWitness:
        ws = await connect(
            ws_url,
            subprotocols=["bankhub.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token}"},
            max_queue=None,  # read everything at once: a witness is never a slow reader
            max_size=32 * 1024 * 1024,  # a `synced` page of big messages is several megabytes
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello", hello
        return cls(name, ws, hello)

    @property
    def node(self) -> str:
        node: str = self.hello["node"]
        return node

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.ws.recv()
                now = time.monotonic()
                frame = json.loads(raw)
                self.frames.append((now, frame))
                fid = frame.get("id")
                if fid is not None and frame["type"] in ("sent", "error", "receipt", "synced", "pong"):
                    if fid in self.answers:
                        self.duplicate_answers.append(frame)
                    else:
                        self.answers[fid] = (now, frame)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
        finally:
            self.closed_at = time.monotonic()

    @property
    def open(self) -> bool:
        return self.closed_at is None

    async def send_text(self, conversation_id: str, text: str, client_msg_id: str) -> None:
        """Write one ``send`` (frame id = ``client_msg_id``); the answer lands in :attr:`answers`."""
        frame = {
            "type": "send",
            "id": client_msg_id,
            "conversation_id": conversation_id,
            "client_msg_id": client_msg_id,
            "body": {"kind": "text", "text": text},
        }
        self.sent_at[client_msg_id] = time.monotonic()
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    def messages(self, conversation_id: str) -> list[tuple[float, dict[str, Any]]]:
        """The ``message`` frames of one conversation, in arrival order."""
        return [
            (t, f["message"])
            for t, f in self.frames
            if f["type"] == "message" and f["message"]["conversation_id"] == conversation_id
        ]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# --- the truth -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    message_id: str
    client_msg_id: str
    sender_id: str


async def stored(dsn: str, conversation_id: str) -> list[StoredMessage]:
    """Every message Postgres holds in the conversation, in seq order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT seq, id, client_msg_id, sender_id FROM messages WHERE conversation_id = $1 ORDER BY seq",
            uuid.UUID(conversation_id),
        )
    finally:
        await conn.close()
    return [StoredMessage(r["seq"], str(r["id"]), r["client_msg_id"], str(r["sender_id"])) for r in rows]


def assert_exactly_once(who: str, delivered: list[tuple[int, str]], expected: Mapping[str, int]) -> None:
    """``delivered`` — ``(seq, message_id)`` in the order shown — holds every message of
    ``expected`` (message_id → seq) exactly once, in seq order, and nothing else."""
    ids = [mid for _, mid in delivered]
    dupes = sorted(mid for mid, n in Counter(ids).items() if n > 1)
    assert not dupes, f"{who}: {len(dupes)} message(s) delivered more than once: {dupes[:5]}"
    missing = sorted(set(expected) - set(ids), key=lambda m: expected[m])
    assert not missing, f"{who}: {len(missing)} acknowledged message(s) never delivered, seqs {[expected[m] for m in missing][:20]}"
    extra = sorted(set(ids) - set(expected))
    assert not extra, f"{who}: {len(extra)} unexpected message(s) delivered: {extra[:5]}"
    wrong = [(seq, mid) for seq, mid in delivered if expected[mid] != seq]
    assert not wrong, f"{who}: messages delivered with another seq than acknowledged: {wrong[:5]}"
    seqs = [seq for seq, _ in delivered]
    assert seqs == sorted(seqs), f"{who}: delivered out of seq order: {seqs}"
