"""The SDK's bookkeeping, without I/O: everything here is plain, synchronous and
deterministic (clocks and randomness are passed in), so it is unit-tested directly.

* :func:`derive_endpoints` — the ``/v1/ws`` URL and the HTTP base from either one.
* :class:`CursorTracker` — per conversation, the highest seq held contiguously:
  deduplication, ordering and gap detection for incoming messages.
* :class:`PendingSends` — sends not yet acknowledged, resent after a reconnect with
  the same ``client_msg_id``.
* :class:`Inbox` — the two together: routes ``message``, ``sent`` and ``synced``
  frames to "yield", "drop", "gap" or "acknowledges my send".
* :class:`ReconnectPolicy`, :func:`classify_close`, :func:`classify_handshake_status`,
  :func:`send_retry_delay` — when and how fast to retry.
* :class:`Pacer` — a token bucket that keeps the client under ``hello.limits``.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from .models import Body, DlpNotice, Limits, Message, TextBody

__all__ = [
    "Endpoints",
    "derive_endpoints",
    "with_ticket",
    "Verdict",
    "CursorTracker",
    "PendingSend",
    "PendingSends",
    "Route",
    "Routed",
    "Acked",
    "SyncedConversation",
    "SyncResult",
    "Inbox",
    "CloseAction",
    "classify_close",
    "classify_handshake_status",
    "RETRYABLE_ERRORS",
    "send_retry_delay",
    "ReconnectPolicy",
    "Pacer",
    "validate_text",
    "validate_id",
    "FrameIds",
]

WS_PATH = "/v1/ws"

# --- URLs -------------------------------------------------------------------------


class Endpoints(NamedTuple):
    """Where a hub answers: ``http_base`` (no trailing slash) and ``ws_url`` (``.../v1/ws``)."""

    http_base: str
    ws_url: str


_HTTP_OF = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_OF = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def derive_endpoints(url: str) -> Endpoints:
    """Derive both endpoints from the HTTP base URL or the WebSocket URL.

    Accepts ``http(s)://host[:port][/prefix]``, ``ws(s)://host[:port][/prefix]`` and the
    same ending in ``/v1/ws`` or ``/v1`` (a trailing slash is ignored). A path prefix
    (a hub behind a reverse proxy at ``/chat``) is kept. TLS follows the scheme:
    ``https`` <-> ``wss``. Raises ``ValueError`` for another scheme, a missing host, a
    query string or a fragment.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_OF:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}: use http(s):// or ws(s)://")
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"URL {url!r} must not carry a query string or fragment")
    path = parts.path.rstrip("/")
    for suffix in (WS_PATH, "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    http_base = urlunsplit((_HTTP_OF[scheme], parts.netloc, path, "", ""))
    ws_url = urlunsplit((_WS_OF[scheme], parts.netloc, path + WS_PATH, "", ""))
    return Endpoints(http_base=http_base, ws_url=ws_url)


def with_ticket(ws_url: str, ticket: str) -> str:
    """The WebSocket URL authenticated by a single-use ticket (``?ticket=...``)."""
    return f"{ws_url}?ticket={quote(ticket, safe='')}"


# --- cursors ----------------------------------------------------------------------


class Verdict(enum.Enum):
    DELIVER = "deliver"  # the next seq: hand it out (the cursor advanced)
    DUPLICATE = "duplicate"  # already held: drop it
    GAP = "gap"  # seqs are missing before it: sync, do not hand it out


class CursorTracker:
    """Per conversation, the highest seq the client holds with no hole before it.

    A conversation without a cursor counts as position 0: its messages are expected
    from seq 1 (this matches ``sync``, which reads unlisted conversations from seq 1).
    Seqs held *beyond* a hole (my own sends, acknowledged while earlier messages of
    others are still on their way) are kept aside and absorbed once the hole fills.
    Cursors never move backwards.
    """

    __slots__ = ("_pos", "_ahead")

    def __init__(self, initial: Mapping[str, int] | None = None) -> None:
        self._pos: dict[str, int] = {}
        self._ahead: dict[str, set[int]] = {}
        for conversation_id, seq in (initial or {}).items():
            self.seed(conversation_id, seq)

    def get(self, conversation_id: str) -> int | None:
        """The cursor of a conversation, None if it has none yet."""
        return self._pos.get(conversation_id)

    def position(self, conversation_id: str) -> int:
        """The cursor, 0 if none."""
        return self._pos.get(conversation_id, 0)

    def snapshot(self) -> dict[str, int]:
        """All cursors (a copy): what ``sync`` sends as ``since``, and what to persist."""
        return dict(self._pos)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._pos

    def __len__(self) -> int:
        return len(self._pos)

    def seed(self, conversation_id: str, seq: int) -> None:
        """Declare that everything up to ``seq`` is held (or deliberately skipped)."""
        if seq < 0:
            raise ValueError("seq must be >= 0")
        if seq > self._pos.get(conversation_id, -1):
            self._pos[conversation_id] = seq
            self._absorb(conversation_id)

    def offer(self, conversation_id: str, seq: int) -> Verdict:
        """Judge a live ``message``: deliver only the next seq, never one twice."""
        pos = self.position(conversation_id)
        if seq <= pos or seq in self._ahead.get(conversation_id, ()):
            return Verdict.DUPLICATE
        if seq == pos + 1:
            self._pos[conversation_id] = seq
            self._absorb(conversation_id)
            return Verdict.DELIVER
        return Verdict.GAP

    def accept(self, conversation_id: str, seq: int) -> bool:
        """Take a message from a ``synced`` answer. True if it is new to the client.

        ``synced`` lists a conversation's messages after the cursor in seq order with no
        gaps, so it is authoritative: a seq beyond ``cursor + 1`` here is accepted (the
        seqs skipped do not exist), unlike in :meth:`offer`.
        """
        pos = self.position(conversation_id)
        ahead = self._ahead.get(conversation_id)
        if seq <= pos or (ahead is not None and seq in ahead):
            return False
        self._pos[conversation_id] = seq
        self._absorb(conversation_id)
        return True

    def hold(self, conversation_id: str, seq: int) -> bool:
        """Record one of my own sends as committed at ``seq`` (it is not handed out).

        Returns True when seqs before it are still missing (a hole); those are expected
        as live messages shortly, else a sync must fetch them (see :meth:`has_hole_before`).
        """
        pos = self.position(conversation_id)
        if seq <= pos:
            return False
        if seq == pos + 1:
            self._pos[conversation_id] = seq
            self._absorb(conversation_id)
            return False
        self._ahead.setdefault(conversation_id, set()).add(seq)
        return True

    def has_hole_before(self, conversation_id: str, seq: int) -> bool:
        """True if some seq below ``seq`` is neither held nor known to be skipped."""
        return self.position(conversation_id) + 1 < seq

    def holes(self) -> list[str]:
        """Conversations with seqs held beyond a hole."""
        return [c for c, ahead in self._ahead.items() if ahead]

    def _absorb(self, conversation_id: str) -> None:
        ahead = self._ahead.get(conversation_id)
        if not ahead:
            return
        pos = self._pos[conversation_id]
        for seq in [s for s in ahead if s <= pos]:
            ahead.discard(seq)
        while pos + 1 in ahead:
            pos += 1
            ahead.discard(pos)
        self._pos[conversation_id] = pos
        if not ahead:
            del self._ahead[conversation_id]


# --- pending sends ----------------------------------------------------------------


@dataclass(eq=False)
class PendingSend:
    """A send the server has not acknowledged yet.

    ``frame_id`` is the id of its transmission on the current connection (None when not
    transmitted on it yet); ``attempts`` counts transmissions; ``not_before`` is the
    clock time before which it must not be transmitted again (after ``rate_limited``).
    """

    conversation_id: str
    client_msg_id: str
    text: str
    frame_id: str | None = None
    attempts: int = 0
    not_before: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.conversation_id, self.client_msg_id)


class PendingSends:
    """Unacknowledged sends, in the order they were made.

    A send stays here until the server acknowledges it (``sent``, or the message
    itself seen in ``message``/``synced``), fails for good, or is given up. After a
    reconnect every entry is transmitted again with the same ``client_msg_id``: the
    server stores a ``client_msg_id`` once per sender and conversation, so a resend of
    a send that had in fact been committed is answered ``duplicate`` instead of
    storing a second copy.
    """

    __slots__ = ("_by_key", "_by_frame")

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], PendingSend] = {}
        self._by_frame: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[PendingSend]:
        return iter(list(self._by_key.values()))

    def add(self, conversation_id: str, client_msg_id: str, text: str) -> tuple[PendingSend, bool]:
        """Register a send. Returns ``(entry, created)``.

        A second send with the same conversation and ``client_msg_id`` while the first
        is pending joins it (``created`` is False). Raises ``ValueError`` if its text
        differs: the server would keep only the first one.
        """
        key = (conversation_id, client_msg_id)
        existing = self._by_key.get(key)
        if existing is not None:
            if existing.text != text:
                raise ValueError(f"client_msg_id {client_msg_id!r} is already pending with a different text")
            return existing, False
        entry = PendingSend(conversation_id, client_msg_id, text)
        self._by_key[key] = entry
        return entry, True

    def transmitting(self, entry: PendingSend, frame_id: str) -> None:
        """Record that ``entry`` is being transmitted as frame ``frame_id``."""
        if entry.frame_id is not None:
            self._by_frame.pop(entry.frame_id, None)
        entry.frame_id = frame_id
        entry.attempts += 1
        self._by_frame[frame_id] = entry.key

    def by_frame(self, frame_id: str) -> PendingSend | None:
        key = self._by_frame.get(frame_id)
        return None if key is None else self._by_key.get(key)

    def match(self, conversation_id: str, client_msg_id: str) -> PendingSend | None:
        return self._by_key.get((conversation_id, client_msg_id))

    def remove(self, entry: PendingSend) -> bool:
        """Forget an entry (acknowledged, failed or given up). True if it was pending."""
        if entry.frame_id is not None:
            self._by_frame.pop(entry.frame_id, None)
        return self._by_key.pop(entry.key, None) is not None

    def retry_later(self, entry: PendingSend, not_before: float) -> None:
        """The transmission was refused for now: transmit it again at ``not_before``."""
        if entry.frame_id is not None:
            self._by_frame.pop(entry.frame_id, None)
        entry.frame_id = None
        entry.not_before = not_before

    def connection_lost(self) -> None:
        """Every transmission's answer is lost with the connection: all are due again."""
        for entry in self._by_key.values():
            entry.frame_id = None
        self._by_frame.clear()

    def due(self, now: float) -> list[PendingSend]:
        """Entries to transmit on the current connection now, oldest first."""
        return [e for e in self._by_key.values() if e.frame_id is None and e.not_before <= now]

    def next_due_in(self, now: float) -> float | None:
        """Seconds until a deferred entry becomes due (0 if one is due), None if none waits."""
        waits = [e.not_before - now for e in self._by_key.values() if e.frame_id is None]
        return max(0.0, min(waits)) if waits else None


# --- routing incoming frames ------------------------------------------------------


class Route(enum.Enum):
    YIELD = "yield"  # new to the client: hand it to events()
    DROP = "drop"  # already held
    GAP = "gap"  # earlier seqs are missing: sync instead of handing it out
    ACK = "ack"  # it is one of my pending sends: complete that send


@dataclass(frozen=True, slots=True)
class Routed:
    route: Route
    pending: PendingSend | None = None
    hole: bool = False  # for ACK: seqs before it are still missing


@dataclass(frozen=True, slots=True)
class Acked:
    """A pending send completed by the server; ``hole`` as in :class:`Routed`."""

    pending: PendingSend
    message: Message
    hole: bool = False


class SyncedConversation(NamedTuple):
    conversation_id: str
    messages: Sequence[Message]
    has_more: bool


@dataclass(slots=True)
class SyncResult:
    """What one ``synced`` answer did: messages to yield (in order), sends it
    acknowledged, and whether another ``sync`` round is needed."""

    delivered: list[Message] = field(default_factory=list)
    acked: list[Acked] = field(default_factory=list)
    more: bool = False


class Inbox:
    """Cursors plus pending sends: decides what each incoming frame means.

    ``user_id`` is mine (from ``hello``); a message whose sender is me and whose
    ``(conversation_id, client_msg_id)`` is pending here is the commit of that send: it
    completes the send and is not handed to ``events()``. My messages sent from other
    devices (or by sends given up on) are handed out like anyone's.
    """

    def __init__(self, user_id: str | None = None, cursors: Mapping[str, int] | None = None) -> None:
        self.user_id = user_id
        self.cursors = CursorTracker(cursors)
        self.pending = PendingSends()

    def _own_pending(self, m: Message) -> PendingSend | None:
        if self.user_id is None or m.sender_id != self.user_id:
            return None
        return self.pending.match(m.conversation_id, m.client_msg_id)

    def on_message(self, m: Message) -> Routed:
        """Route a live ``message`` frame."""
        own = self._own_pending(m)
        if own is not None:
            self.pending.remove(own)
            return Routed(Route.ACK, own, self.cursors.hold(m.conversation_id, m.seq))
        verdict = self.cursors.offer(m.conversation_id, m.seq)
        if verdict is Verdict.DELIVER:
            return Routed(Route.YIELD)
        if verdict is Verdict.DUPLICATE:
            return Routed(Route.DROP)
        return Routed(Route.GAP)

    def on_sent(
        self,
        frame_id: str,
        conversation_id: str,
        client_msg_id: str,
        message_id: str,
        seq: int,
        ts: int,
        *,
        body: Body | None = None,
        dlp: tuple[DlpNotice, ...] = (),
    ) -> Acked | None:
        """Route a ``sent`` answer. None if it answers no pending send (given up, or
        already completed by the message itself); such a message is left to arrive
        like any other so it is not lost. ``body``: the stored body when the hub changed it
        (data-loss prevention masked it: ``dlp`` says what), else the text sent."""
        entry = self.pending.by_frame(frame_id)
        if entry is None or entry.key != (conversation_id, client_msg_id):
            return None
        self.pending.remove(entry)
        message = Message(
            conversation_id=conversation_id,
            message_id=message_id,
            seq=seq,
            sender_id=self.user_id or "",
            client_msg_id=client_msg_id,
            body=body if body is not None else TextBody(text=entry.text),
            ts=ts,
            dlp=dlp,
        )
        return Acked(entry, message, self.cursors.hold(conversation_id, seq))

    def on_synced(self, conversations: Iterable[SyncedConversation]) -> SyncResult:
        """Apply a ``synced`` answer (each conversation's messages in seq order)."""
        result = SyncResult()
        for conv in conversations:
            for m in sorted(conv.messages, key=lambda m: m.seq):
                if m.conversation_id != conv.conversation_id:
                    continue
                own = self._own_pending(m)
                if own is not None:
                    self.pending.remove(own)
                    self.cursors.accept(m.conversation_id, m.seq)
                    result.acked.append(Acked(own, m))
                elif self.cursors.accept(m.conversation_id, m.seq):
                    result.delivered.append(m)
            if conv.has_more and conv.messages:
                result.more = True
        return result


# --- retry policy -----------------------------------------------------------------


class CloseAction(enum.Enum):
    RECONNECT = "reconnect"  # transient: reconnect, sync, resend
    STOP = "stop"  # a normal close: end quietly
    AUTH = "auth"  # session refused/revoked or abuse: end with AuthError, never reconnect
    FATAL = "fatal"  # reconnecting cannot help: end with ConnectionLost


_RECONNECT_CODES = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1014, 4000, 4008})


def classify_close(code: int | None) -> CloseAction:
    """What to do after the connection closed with ``code`` (None: no close frame).

    1000 ends normally; 1008 (policy: session revoked or expired, abuse) is an auth
    failure; 1001/1011/1012/1013/1014/4000 (idle)/4008 and a connection lost without a close
    (1005/1006/None) are retried; anything else (1002, 1003, 1007, 1009 frame too big,
    unknown codes) is fatal.
    """
    if code is None or code in _RECONNECT_CODES:
        return CloseAction.RECONNECT
    if code == 1000:
        return CloseAction.STOP
    if code == 1008:
        return CloseAction.AUTH
    return CloseAction.FATAL


def classify_handshake_status(status: int) -> CloseAction:
    """What to do when the WebSocket handshake is answered with HTTP ``status``."""
    if status in (401, 403):
        return CloseAction.AUTH
    if status in (408, 425, 429) or status >= 500:
        return CloseAction.RECONNECT
    return CloseAction.FATAL


RETRYABLE_ERRORS = frozenset({"rate_limited", "unavailable"})
"""``error`` codes for which nothing was stored and trying again later is right."""


def send_retry_delay(code: str, retry_after_ms: int | None, attempts: int) -> float:
    """Seconds to wait before retransmitting a send refused with a retryable ``code``.

    ``retry_after_ms`` wins when the server gives it; otherwise 0.25 s doubling per
    attempt, capped at 8 s.
    """
    if retry_after_ms is not None and retry_after_ms >= 0:
        return retry_after_ms / 1000.0
    return min(8.0, 0.25 * 2.0 ** min(max(attempts - 1, 0), 10))


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Capped exponential backoff with jitter, bounded in attempts and/or time.

    Attempt ``n`` (from 1) waits ``min(max_delay, initial_delay * multiplier**(n-1))``
    reduced by up to ``jitter`` (a fraction) at random, so clients dropped together
    (a node restart, 1012) do not come back together. Reconnection gives up once
    ``max_attempts`` attempts failed or ``max_elapsed`` seconds passed since the drop
    (None: no bound).
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None
    max_elapsed: float | None = 300.0

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before attempt ``attempt`` (1-based); ``rand`` is uniform in [0, 1)."""
        exponent = max(0, attempt - 1)
        if exponent > 64:
            base = self.max_delay
        else:
            base = min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        return base * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))

    def allows(self, attempt: int, elapsed: float) -> bool:
        """Whether attempt ``attempt`` may start ``elapsed`` seconds after the drop."""
        if self.max_attempts is not None and attempt > self.max_attempts:
            return False
        if self.max_elapsed is not None and elapsed >= self.max_elapsed:
            return False
        return True


class Pacer:
    """A token bucket keeping outgoing frames under the server's rate limit.

    :meth:`reserve` books one frame and returns how long to wait before sending it;
    bookings queue up (the bucket may go negative), so concurrent senders are paced in
    the order they asked. :meth:`for_limits` leaves a 10 % margin below ``hello.limits``.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    @classmethod
    def for_limits(cls, limits: Limits, now: float) -> Pacer:
        rate = max(limits.frames_per_second * 0.9, 0.1)
        burst = max(1.0, math.floor(limits.frame_burst * 0.9))
        return cls(rate, burst, now)

    def reserve(self, now: float) -> float:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0.0 else -self._tokens / self.rate


# --- validation -------------------------------------------------------------------


def validate_text(text: str, limits: Limits) -> TextBody:
    """The body for ``text``, or ``ValueError`` if the server would refuse it."""
    if not isinstance(text, str):
        raise TypeError("text must be a str")
    if not text:
        raise ValueError("text must not be empty")
    if len(text) > limits.max_text_chars:
        raise ValueError(f"text has {len(text)} characters; this hub accepts at most {limits.max_text_chars}")
    return TextBody(text=text)


def validate_id(name: str, value: str) -> str:
    """Check a conversation id or client_msg_id (1..64 characters)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ValueError(f"{name} must be a string of 1 to 64 characters")
    return value


class FrameIds:
    """Request ids for client frames: ``<prefix><n>``, unique per client."""

    __slots__ = ("_counter",)

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter)}"
