"""What nodes tell each other over the broker, after a commit.

Signals are published on the per-user channels of everyone concerned. A message signal
carries the committed message (the Redis broker seals it with the cluster key, so Redis
never holds plaintext); a lost signal costs only latency, because receivers fill seq
gaps from Postgres.
"""

from __future__ import annotations

import msgspec

from .protocol.frames import Message

__all__ = ["MessageSignal", "ReceiptSignal", "RevokeSignal", "Signal", "encode_signal", "decode_signal"]


class MessageSignal(msgspec.Struct, tag="m", tag_field="t", gc=False):
    message: Message
    origin: str | None = None  # the connection that sent it: it already has a ``sent`` frame


class ReceiptSignal(msgspec.Struct, tag="r", tag_field="t", gc=False):
    conversation_id: str
    user_id: str
    read_seq: int
    last_seq: int


class RevokeSignal(msgspec.Struct, tag="x", tag_field="t", gc=False):
    """Close the user's connections that belong to ``session_ids`` (all of them when None)."""

    user_id: str
    session_ids: list[str] | None
    reason: str


Signal = MessageSignal | ReceiptSignal | RevokeSignal

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Signal)


def encode_signal(signal: Signal) -> bytes:
    return _encoder.encode(signal)


def decode_signal(data: bytes) -> Signal:
    signal: Signal = _decoder.decode(data)
    return signal
