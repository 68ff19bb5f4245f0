"""The server side of one protocol v1 connection, without I/O.

Feed every received WebSocket message to :meth:`ServerSession.receive` and act on the
result:

* :class:`Accept` — a valid client frame: run the request and answer it.
* :class:`Reject` — send ``reject.error`` back; the connection stays open.
* :class:`Close` — close the WebSocket with ``close.code`` (1008 abuse, 1009 too big).

The session enforces the frame size limit, a token-bucket rate limit and an abuse
budget: every rejected frame is a *strike*; more than ``max_strikes`` strikes within
``strike_window`` seconds closes the connection with 1008. The clock is injected, so
tests drive time explicitly.

:meth:`ServerSession.receive` never raises: whatever bytes arrive (deeply nested JSON
that exhausts the decoder's recursion limit included), the answer is an outcome, and a
frame that cannot be decoded is a ``malformed`` rejection. After a :class:`Close` the
caller stops reading, lets the requests it already accepted finish and be answered,
and then closes (the close is the last thing the client receives).
"""

from __future__ import annotations

import time
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from ..text import explain
from .frames import MAX_TEXT_CHARS, ClientFrame, CloseCode, Edit, Error, ErrorCode, Limits, Send, TextBody

__all__ = ["Accept", "Reject", "Close", "Outcome", "SessionLimits", "ServerSession", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class Accept:
    frame: ClientFrame


@dataclass(frozen=True, slots=True)
class Reject:
    error: Error


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


Outcome = Accept | Reject | Close


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection limits. ``as_limits`` is what ``hello`` announces.

    The defaults are the protocol's; a node builds its own from its settings
    (:meth:`bankhub.settings.Settings.session_limits`, ``BANKHUB_WS_*``).
    """

    max_frame_bytes: int = 64 * 1024
    max_text_chars: int = MAX_TEXT_CHARS  # at most the protocol's MAX_TEXT_CHARS
    max_sync_limit: int = 500
    frames_per_second: float = 50.0
    frame_burst: int = 100
    outbound_queue: int = 1024
    max_strikes: int = 20
    strike_window: float = 10.0
    # seconds without a frame from the client (a message or a WebSocket ping) before the
    # connection is closed with 4000; well above the SDK's 20 s keep-alive ping
    idle_timeout: float = 90.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_text_chars <= MAX_TEXT_CHARS:
            raise ValueError(f"max_text_chars must be within 1..{MAX_TEXT_CHARS} (the protocol's maximum)")
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")

    def as_limits(self) -> Limits:
        return Limits(
            max_frame_bytes=self.max_frame_bytes,
            max_text_chars=self.max_text_chars,
            max_sync_limit=self.max_sync_limit,
            frames_per_second=self.frames_per_second,
            frame_burst=self.frame_burst,
            outbound_queue=self.outbound_queue,
            max_strikes=self.max_strikes,
            strike_window=self.strike_window,
            idle_timeout=self.idle_timeout,
        )


class TokenBucket:
    """A classic token bucket: ``rate`` tokens per second, at most ``burst`` saved."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        """Take one token. Returns 0.0 on success, else the seconds until one is available."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


_decoder = msgspec.json.Decoder(ClientFrame)
_CLIENT_TYPES = frozenset(t.__struct_config__.tag for t in typing.get_args(ClientFrame))


_UNDECODABLE = object()
"""What :func:`_peek` says a frame's ``type`` is when the frame is no JSON it can read."""


def _peek(data: bytes) -> tuple[str | None, object]:
    """Best-effort read of ``id`` and ``type`` from a frame that failed validation.

    Never raises: a frame it cannot decode at all (not JSON, invalid UTF-8 in a string,
    nested past the decoder's recursion limit, ...) gives ``(None, _UNDECODABLE)``.
    """
    try:
        obj = msgspec.json.decode(data)
    except Exception:
        return None, _UNDECODABLE
    if not isinstance(obj, dict):
        return None, None
    frame_id = obj.get("id")
    if not (isinstance(frame_id, str) and 0 < len(frame_id) <= 64):
        frame_id = None
    return frame_id, obj.get("type")


class ServerSession:
    """Validates and meters the frames of one connection. Pure: no I/O, injected clock."""

    __slots__ = ("limits", "_clock", "_bucket", "_strikes", "closed")  # one per open connection

    def __init__(self, limits: SessionLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or SessionLimits()
        self._clock = clock
        self._bucket = TokenBucket(self.limits.frames_per_second, self.limits.frame_burst, clock())
        self._strikes: deque[float] | None = None  # created at the first strike: most sessions have none
        self.closed: Close | None = None

    def receive(self, data: str | bytes | None, *, binary: bool = False) -> Outcome:
        """Classify one received WebSocket message. After a :class:`Close`, everything closes."""
        if self.closed is not None:
            return self.closed
        if data is None:
            return self._strike(None, ErrorCode.MALFORMED, "empty frame")
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if len(raw) > self.limits.max_frame_bytes:
            self.closed = Close(CloseCode.MESSAGE_TOO_BIG, f"frame exceeds {self.limits.max_frame_bytes} bytes")
            return self.closed
        now = self._clock()
        wait = self._bucket.take(now)
        if wait > 0.0:
            frame_id, _ = _peek(raw)
            return self._strike(frame_id, ErrorCode.RATE_LIMITED, "too many frames", retry_after=wait)
        if binary:
            return self._strike(None, ErrorCode.MALFORMED, "binary frames are not accepted; send JSON text")
        try:
            frame = _decoder.decode(raw)
        except msgspec.ValidationError as exc:
            frame_id, frame_type = _peek(raw)
            if frame_type is _UNDECODABLE:
                return self._strike(None, ErrorCode.MALFORMED, "frame is not valid JSON or is nested too deeply")
            if frame_type is None and frame_id is None and not raw.lstrip().startswith(b"{"):
                return self._strike(None, ErrorCode.MALFORMED, "frame must be a JSON object")
            if not isinstance(frame_type, str) or frame_type not in _CLIENT_TYPES:
                shown = frame_type if isinstance(frame_type, str) and len(frame_type) <= 32 else None
                return self._strike(frame_id, ErrorCode.UNKNOWN_TYPE, f"unknown frame type {shown!r}")
            return self._strike(frame_id, ErrorCode.INVALID_FRAME, explain(str(exc)))
        except msgspec.DecodeError:
            return self._strike(None, ErrorCode.MALFORMED, "frame is not valid JSON")
        except RecursionError:  # e.g. "[" * 30000: the decoder's depth limit, not ours to crash on
            return self._strike(None, ErrorCode.MALFORMED, "frame is nested too deeply")
        except Exception:  # anything else the decoder may raise is still the client's bad frame
            return self._strike(None, ErrorCode.MALFORMED, "frame could not be decoded")
        # only a text body has text (a card, picture or voice note is bounded by its own type)
        if isinstance(frame, Send) and isinstance(frame.body, TextBody) and len(frame.body.text) > self.limits.max_text_chars:
            return self._strike(frame.id, ErrorCode.INVALID_FRAME, f"text over {self.limits.max_text_chars} characters")
        if isinstance(frame, Edit) and len(frame.body.text) > self.limits.max_text_chars:
            return self._strike(frame.id, ErrorCode.INVALID_FRAME, f"text over {self.limits.max_text_chars} characters")
        return Accept(frame)

    def _strike(self, frame_id: str | None, code: str, message: str, retry_after: float | None = None) -> Outcome:
        now = self._clock()
        window_start = now - self.limits.strike_window
        strikes = self._strikes
        if strikes is None:
            strikes = self._strikes = deque()
        while strikes and strikes[0] < window_start:
            strikes.popleft()
        strikes.append(now)
        if len(strikes) > self.limits.max_strikes:
            self.closed = Close(CloseCode.POLICY_VIOLATION, "too many invalid or rate-limited frames")
            return self.closed
        retry_ms = None if retry_after is None else max(1, int(retry_after * 1000))
        return Reject(Error(code=code, message=message, id=frame_id, retry_after_ms=retry_ms))
