"""Encryption at rest, the pure parts: key files, key wrap, the keyring cache and the body codec."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bankhub.bodies import BODY_KEY_ID, AesGcmBodyCodec, BodyUnreadable
from bankhub.crypto import DataKey, KeyFileError, Keyring, KeyringError, KeyProvider, LocalKeyFile, UnknownKek
from bankhub.crypto.keys import provider_from_settings

# --- the key file -------------------------------------------------------------------------


def test_create_writes_a_0600_json_file_with_one_active_32_byte_key(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    kf = LocalKeyFile.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert set(doc) == {"active", "keys"} and list(doc["keys"]) == [doc["active"]]
    assert len(base64.b64decode(doc["keys"][doc["active"]])) == 32
    assert kf.active_kek_id() == doc["active"] and LocalKeyFile(path).active_kek_id() == doc["active"]


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    LocalKeyFile.create(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        LocalKeyFile.create(path)
    assert path.read_bytes() == before


def test_create_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        LocalKeyFile.create(tmp_path / "keys.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_a_group_or_world_accessible_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.json"
    LocalKeyFile.create(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="group or others"):
        LocalKeyFile(path)


def test_a_missing_or_malformed_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        LocalKeyFile(tmp_path / "nope.json")
    path = tmp_path / "keys.json"
    good = base64.b64encode(os.urandom(32)).decode()
    for doc in (
        "not json",
        json.dumps({"active": "a", "keys": {"a": base64.b64encode(os.urandom(16)).decode()}}),  # 128-bit key
        json.dumps({"active": "a", "keys": {"a": "%%%"}}),
        json.dumps({"active": "b", "keys": {"a": good}}),  # active not among keys
        json.dumps({"keys": {"a": good}}),
    ):
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, doc.encode())
        os.close(fd)
        with pytest.raises(KeyFileError):
            LocalKeyFile(path)


def test_wrap_unwrap_round_trip_with_aes_key_wrap(tmp_path: Path) -> None:
    kf = LocalKeyFile.create(tmp_path / "keys.json")
    dek = os.urandom(32)
    kek_id, wrapped = kf.wrap(dek)
    assert kek_id == kf.active_kek_id()
    assert len(wrapped) == 40 and dek not in wrapped  # RFC 3394: 8 bytes longer, no plaintext
    assert kf.wrap(dek) == (kek_id, wrapped)  # deterministic: what the DEK cache is keyed on
    assert kf.unwrap(kek_id, wrapped) == dek
    assert isinstance(kf, KeyProvider)


def test_unwrap_fails_under_another_kek_or_with_altered_bytes(tmp_path: Path) -> None:
    kf = LocalKeyFile.create(tmp_path / "a.json")
    other = LocalKeyFile.create(tmp_path / "b.json")
    kek_id, wrapped = kf.wrap(os.urandom(32))
    with pytest.raises(UnknownKek):
        other.unwrap(kek_id, wrapped)  # other file: no such KEK id
    with pytest.raises(ValueError, match="does not unwrap"):
        other.unwrap(other.active_kek_id(), wrapped)  # a wrong KEK is detected, not a garbage DEK
    flipped = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(ValueError, match="does not unwrap"):
        kf.unwrap(kek_id, flipped)


def test_add_key_makes_a_new_active_kek_and_keeps_the_old_for_unwrapping(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    kf = LocalKeyFile.create(path)
    old = kf.active_kek_id()
    dek = os.urandom(32)
    _, wrapped_old = kf.wrap(dek)
    new = kf.add_key()
    assert new != old and kf.active_kek_id() == new and set(kf.kek_ids()) == {old, new}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    new_id, wrapped_new = kf.wrap(dek)
    assert new_id == new and wrapped_new != wrapped_old
    assert kf.unwrap(old, wrapped_old) == dek == kf.unwrap(new, wrapped_new)
    with pytest.raises(KeyFileError, match="active"):
        kf.remove_key(new)
    kf.remove_key(old)
    with pytest.raises(UnknownKek):
        kf.unwrap(old, wrapped_old)
    assert kf.unwrap(new, wrapped_new) == dek
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temp files left behind


def test_a_running_provider_follows_a_rotation_done_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    node = LocalKeyFile.create(path)
    ops = LocalKeyFile(path)  # e.g. `bankhub keys rotate` in another process
    new = ops.add_key()
    dek = os.urandom(32)
    _, wrapped = ops.wrap(dek)
    assert node.unwrap(new, wrapped) == dek  # unknown KEK id: re-reads the file
    assert node.active_kek_id() == new  # new DEKs go under the new KEK at once


def test_provider_from_settings(tmp_path: Path) -> None:
    assert provider_from_settings(None, None) is None
    path = tmp_path / "keys.json"
    LocalKeyFile.create(path)
    assert isinstance(provider_from_settings(str(path), None), LocalKeyFile)
    hsm = provider_from_settings(None, "tests.unit.test_crypto:make_fake_hsm")
    assert isinstance(hsm, FakeHsm)
    with pytest.raises(KeyFileError, match="not a KeyProvider"):
        provider_from_settings(None, "tests.unit.test_crypto:not_a_provider")
    with pytest.raises(KeyFileError, match="module:factory"):
        provider_from_settings(None, "no_colon_here")


# --- the keyring ----------------------------------------------------------------------------


class FakeHsm:
    """An HSM stand-in: wraps with AES-GCM under a key it never hands out; calls may block."""

    blocking = True

    def __init__(self) -> None:
        self._kek = AESGCM(AESGCM.generate_key(bit_length=256))
        self.threads: set[int] = set()
        self.unwrap_calls = 0

    def active_kek_id(self) -> str:
        return "hsm:kek-1"

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        self.threads.add(threading.get_ident())
        nonce = os.urandom(12)
        return "hsm:kek-1", nonce + self._kek.encrypt(nonce, dek, b"dek")

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        self.threads.add(threading.get_ident())
        self.unwrap_calls += 1
        if kek_id != "hsm:kek-1":
            raise KeyError(kek_id)
        return self._kek.decrypt(wrapped[:12], wrapped[12:], b"dek")


def make_fake_hsm() -> FakeHsm:
    return FakeHsm()


def not_a_provider() -> object:
    return object()


async def test_keyring_caches_by_wrapped_bytes_and_calls_a_blocking_provider_off_the_loop() -> None:
    hsm = FakeHsm()
    ring = Keyring(hsm, cache_size=2)
    kek_id, wrapped, key = await ring.create()
    assert threading.get_ident() not in hsm.threads  # the HSM never blocks the event loop
    assert await ring.unwrap(kek_id, wrapped) is key and hsm.unwrap_calls == 0  # created keys are cached
    ring.forget_all()
    first = await ring.unwrap(kek_id, wrapped)
    assert await ring.unwrap(kek_id, wrapped) is first and hsm.unwrap_calls == 1
    # other wrapped bytes of the same DEK (a re-wrap) are another entry: never keyed by conversation
    _, _, k2 = await ring.create()
    _, _, k3 = await ring.create()  # cache_size 2: the least recently used entry goes
    await ring.unwrap(kek_id, wrapped)
    assert hsm.unwrap_calls == 2
    with pytest.raises(KeyringError, match="unwrapping"):
        await ring.unwrap("hsm:gone", wrapped)
    many = await ring.unwrap_many([(kek_id, wrapped), (kek_id, wrapped)])
    assert len(many) == 1


async def test_keyring_errors_are_keyring_errors(tmp_path: Path) -> None:
    kf = LocalKeyFile.create(tmp_path / "keys.json")
    ring = Keyring(kf)
    with pytest.raises(KeyringError):
        await ring.unwrap(kf.active_kek_id(), os.urandom(40))
    with pytest.raises(KeyringError):
        await ring.unwrap("kek-unknown", os.urandom(40))


# --- the body codec -------------------------------------------------------------------------


def _row() -> tuple[str, str, int]:
    return str(uuid.uuid4()), str(uuid.uuid4()), 7


def test_codec_round_trip_stores_nonce_and_ciphertext_only() -> None:
    codec, key = AesGcmBodyCodec(), DataKey(os.urandom(32))
    conv, mid, seq = _row()
    body = b'{"kind":"text","text":"card 4929 1234 5678 9012"}'
    stored, key_id = codec.seal(key, conv, mid, seq, body)
    assert key_id == BODY_KEY_ID
    assert len(stored) == 12 + len(body) + 16 and b"4929" not in stored
    assert codec.open(key, conv, mid, seq, stored, key_id) == body
    again, _ = codec.seal(key, conv, mid, seq, body)
    assert again[:12] != stored[:12] and again != stored  # a fresh nonce every time


def test_codec_binds_the_ciphertext_to_its_row() -> None:
    codec, key = AesGcmBodyCodec(), DataKey(os.urandom(32))
    conv, mid, seq = _row()
    stored, key_id = codec.seal(key, conv, mid, seq, b'{"kind":"text","text":"x"}')
    for other in ((str(uuid.uuid4()), mid, seq), (conv, str(uuid.uuid4()), seq), (conv, mid, seq + 1)):
        with pytest.raises(BodyUnreadable, match="authentication"):
            codec.open(key, *other, stored, key_id)


def test_codec_refuses_a_wrong_key_tampering_plaintext_and_unknown_key_ids() -> None:
    codec, key = AesGcmBodyCodec(), DataKey(os.urandom(32))
    conv, mid, seq = _row()
    body = b'{"kind":"text","text":"x"}'
    stored, key_id = codec.seal(key, conv, mid, seq, body)
    with pytest.raises(BodyUnreadable):
        codec.open(DataKey(os.urandom(32)), conv, mid, seq, stored, key_id)
    with pytest.raises(BodyUnreadable):
        codec.open(key, conv, mid, seq, stored[:-1] + bytes([stored[-1] ^ 1]), key_id)
    with pytest.raises(BodyUnreadable, match="key id"):
        codec.open(key, conv, mid, seq, body, None)  # a plaintext row is never taken for a body
    with pytest.raises(BodyUnreadable, match="key id"):
        codec.open(key, conv, mid, seq, stored, "other")
    with pytest.raises(BodyUnreadable, match="short"):
        codec.open(key, conv, mid, seq, b"tiny", key_id)


def test_a_data_key_must_be_256_bits() -> None:
    with pytest.raises(KeyringError):
        DataKey(os.urandom(16))


async def test_keyring_and_codec_together() -> None:
    ring = Keyring(FakeHsm())
    kek_id, wrapped, key = await ring.create()
    conv, mid, seq = _row()
    stored, key_id = AesGcmBodyCodec().seal(key, conv, mid, seq, b"{}")
    ring.forget_all()
    assert AesGcmBodyCodec().open(await ring.unwrap(kek_id, wrapped), conv, mid, seq, stored, key_id) == b"{}"
