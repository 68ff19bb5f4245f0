"""Sealing of broker payloads: AES-256-GCM bound to the channel name."""

from __future__ import annotations

import base64
import os

import pytest

from bankhub.broker.sealing import Sealer, SealError, generate_key_b64

CHANNEL = "bh:u:alice"


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(os.urandom(32))


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(256)) * 40])
def test_round_trip(sealer: Sealer, payload: bytes) -> None:
    sealed = sealer.seal(CHANNEL, payload)
    assert sealer.open(CHANNEL, sealed) == payload
    if payload:
        assert payload not in sealed


def test_nonce_is_fresh_each_time(sealer: Sealer) -> None:
    assert sealer.seal(CHANNEL, b"same") != sealer.seal(CHANNEL, b"same")


@pytest.mark.parametrize("index", [0, 11, 12, -1])  # nonce, first ciphertext byte, tag
def test_tampering_is_detected(sealer: Sealer, index: int) -> None:
    sealed = bytearray(sealer.seal(CHANNEL, b"transfer 100 EUR"))
    sealed[index] ^= 0x01
    with pytest.raises(SealError):
        sealer.open(CHANNEL, bytes(sealed))


@pytest.mark.parametrize("data", [b"", b"x" * 27])
def test_truncated_input_is_rejected(sealer: Sealer, data: bytes) -> None:
    with pytest.raises(SealError):
        sealer.open(CHANNEL, data)


def test_payload_replayed_on_another_channel_fails(sealer: Sealer) -> None:
    sealed = sealer.seal(CHANNEL, b"for alice only")
    with pytest.raises(SealError):
        sealer.open("bh:u:mallory", sealed)


def test_wrong_key_fails(sealer: Sealer) -> None:
    sealed = sealer.seal(CHANNEL, b"secret")
    with pytest.raises(SealError):
        Sealer(os.urandom(32)).open(CHANNEL, sealed)


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Sealer(b"short")


def test_from_b64_accepts_generated_keys_and_both_alphabets() -> None:
    key_b64 = generate_key_b64()
    raw = base64.urlsafe_b64decode(key_b64)
    assert len(raw) == 32
    sealed = Sealer.from_b64(key_b64).seal(CHANNEL, b"x")
    # The same key in the standard alphabet without padding opens it.
    standard = base64.b64encode(raw).decode().rstrip("=")
    assert Sealer.from_b64(standard).open(CHANNEL, sealed) == b"x"


def test_from_b64_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        Sealer.from_b64("not base64 at all!")
    with pytest.raises(ValueError):
        Sealer.from_b64(base64.b64encode(b"16 bytes only!!!").decode())
