"""Key-encryption keys (KEKs): the :class:`KeyProvider` seam and the local key file.

Envelope encryption: every conversation has its own random data key (DEK, see
:mod:`bankhub.crypto.keyring`); the database stores that DEK only *wrapped* (encrypted)
under a KEK held by a key provider. The database alone therefore never suffices to read a
message, rotating the KEK re-wraps a few hundred bytes per conversation instead of
re-encrypting every message, and destroying one wrapped DEK (crypto-shredding) makes that
conversation unrecoverable.

Plugging an HSM or a cloud KMS
------------------------------
Write a class with the three methods of :class:`KeyProvider` and point
``BANKHUB_KEY_PROVIDER`` at a factory returning it (``"mybank.hsm:make_provider"``, called
with no arguments; read your own configuration from the environment)::

    class HsmKeys:
        blocking = True  # calls go over the network: the hub runs them in a worker thread

        def active_kek_id(self) -> str:
            return "hsm:bankhub-kek-2025"               # the label of the KEK new DEKs go under

        def wrap(self, dek: bytes) -> tuple[str, bytes]:
            kek = self.active_kek_id()
            return kek, self.session.wrap_key(kek, dek)  # e.g. PKCS#11 C_WrapKey, CKM_AES_KEY_WRAP

        def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
            return self.session.unwrap_key(kek_id, wrapped)  # C_UnwrapKey / KMS Decrypt

The KEK never leaves the HSM: the hub only ever sees DEKs (which it needs to encrypt
message bodies) and the opaque wrapped bytes, whatever algorithm the HSM uses. ``kek_id``
is stored next to every wrapped DEK, so a provider must keep answering ``unwrap`` for
every KEK id still referenced in ``conversation_keys`` (``bankhub keys status`` lists them).
To rotate, make a new KEK active in the HSM, then run ``bankhub keys rotate --rewrap-only``:
it re-wraps every DEK under the new KEK; after that the old KEK may be disabled. Methods
may raise any exception on failure; the hub answers ``unavailable`` (nothing stored or
read) rather than guessing. ``blocking`` (default true when absent) says whether calls may
block; the hub caches unwrapped DEKs, so ``unwrap`` runs about once per conversation.

The local key file
------------------
:class:`LocalKeyFile` is the default provider for a single organisation without an HSM and
for development: a JSON file ``{"active": "<id>", "keys": {"<id>": "<base64 32 bytes>"}}``,
mode 0600. Keep it off the database host and out of database backups — a backup holding
both the key file and the database holds the plaintext.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

__all__ = ["KeyProvider", "LocalKeyFile", "KeyFileError", "UnknownKek", "provider_from_settings", "KEK_BYTES"]

KEK_BYTES = 32  # AES-256 KEKs

# Why AES key wrap (RFC 3394) and not AES-GCM for wrapping DEKs:
# * it is the algorithm HSMs and KMSs implement natively for exactly this job (PKCS#11
#   CKM_AES_KEY_WRAP, NIST SP 800-38F "KW"), so the local file and an HSM behave the same
#   and a bank can move the KEKs into an HSM without re-wrapping anything by hand;
# * it needs no nonce: nothing to generate, store or ever repeat by mistake under a
#   long-lived KEK, and it still authenticates (a wrong KEK or altered bytes fail unwrap);
# * it is deterministic, so the same DEK under the same KEK always has the same wrapped
#   bytes — which is what the unwrapped-DEK cache is keyed on (a re-wrap under a new KEK
#   changes the bytes, a shredded DEK has none).
# Binding a wrapped DEK to its conversation (GCM's associated data) is not needed: every
# body is itself bound to its conversation id, so a DEK copied to another conversation's
# row opens nothing there.


class KeyFileError(ValueError):
    """The key file is missing, malformed, or readable by others."""


class UnknownKek(KeyError):
    """No KEK with this id is held by the provider (removed too early, or another key file)."""


@runtime_checkable
class KeyProvider(Protocol):
    """Holds the key-encryption keys; see the module docstring for plugging an HSM/KMS."""

    def active_kek_id(self) -> str:
        """The id of the KEK that new DEKs are wrapped under."""
        ...

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        """Wrap ``dek`` under the active KEK; returns ``(kek_id, wrapped)``."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        """The DEK that ``wrap`` returned ``wrapped`` for under ``kek_id``; raises if it can't."""
        ...


def _new_kek_id() -> str:
    return f"kek-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class LocalKeyFile:
    """KEKs in a local JSON file (mode 0600). See the module docstring.

    The file is re-read when it changes on disk (checked when a new DEK is wrapped and
    when an unknown KEK id turns up), so running nodes follow ``bankhub keys rotate`` run
    from another process without a restart.
    """

    blocking = False  # in-memory AES key wrap: cheap, never blocks

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._active = ""
        self._keys: dict[str, bytes] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._load()

    # --- file handling ----------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> LocalKeyFile:
        """Create a new key file holding one fresh KEK; refuses to overwrite an existing file."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        kek_id = _new_kek_id()
        doc = {"active": kek_id, "keys": {kek_id: _b64(secrets.token_bytes(KEK_BYTES))}}
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"key file {p} already exists; not overwriting it") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        return cls(p)

    def _stat_stamp(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise KeyFileError(f"key file {self.path} not found (create one: bankhub keys init --file {self.path})") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {self.path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"key file {self.path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"refusing to use it: chmod 600 {self.path}"
            )
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"key file {self.path} is unreadable: {exc}") from None
        self._active, self._keys = self._parse(doc)
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)

    def _parse(self, doc: Any) -> tuple[str, dict[str, bytes]]:
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not isinstance(doc.get("active"), str):
            raise KeyFileError(f'key file {self.path}: want {{"active": "<id>", "keys": {{"<id>": "<base64>"}}}}')
        keys: dict[str, bytes] = {}
        for kek_id, b64 in doc["keys"].items():
            try:
                raw = base64.b64decode(b64, validate=True) if isinstance(b64, str) else b""
            except binascii.Error:
                raw = b""
            if len(raw) != KEK_BYTES:
                raise KeyFileError(f"key file {self.path}: key {kek_id!r} is not base64 of {KEK_BYTES} bytes")
            keys[kek_id] = raw
        if doc["active"] not in keys:
            raise KeyFileError(f"key file {self.path}: active key {doc['active']!r} is not in keys")
        return doc["active"], keys

    def _reload_if_changed(self) -> None:
        try:
            if self._stat_stamp() != self._stamp:
                self._load()
        except FileNotFoundError:
            pass  # keep what we have: a file being replaced, or removed by mistake

    def _write(self, active: str, keys: dict[str, bytes]) -> None:
        """Replace the file atomically (temp file, fsync, rename), keeping mode 0600."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump({"active": active, "keys": {k: _b64(v) for k, v in keys.items()}}, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._load()

    def add_key(self) -> str:
        """Add a fresh KEK and make it active; older KEKs stay for unwrapping. Returns its id."""
        self._load()  # start from what is on disk now
        kek_id = _new_kek_id()
        while kek_id in self._keys:
            kek_id = _new_kek_id()
        self._write(kek_id, {**self._keys, kek_id: secrets.token_bytes(KEK_BYTES)})
        return kek_id

    def remove_key(self, kek_id: str) -> None:
        """Delete a retired KEK from the file (never the active one).

        Only safe once no ``conversation_keys`` row references it (``bankhub keys retire``
        checks); DEKs still wrapped under it become unrecoverable.
        """
        self._load()
        if kek_id == self._active:
            raise KeyFileError(f"{kek_id!r} is the active key; rotate first")
        if kek_id not in self._keys:
            raise UnknownKek(kek_id)
        self._write(self._active, {k: v for k, v in self._keys.items() if k != kek_id})

    def kek_ids(self) -> list[str]:
        return list(self._keys)

    # --- KeyProvider --------------------------------------------------------------------

    def active_kek_id(self) -> str:
        self._reload_if_changed()
        return self._active

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        kek_id = self.active_kek_id()
        return kek_id, aes_key_wrap(self._keys[kek_id], dek)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        if kek_id not in self._keys:
            self._reload_if_changed()
        kek = self._keys.get(kek_id)
        if kek is None:
            raise UnknownKek(f"KEK {kek_id!r} is not in key file {self.path}")
        try:
            return aes_key_unwrap(kek, wrapped)
        except InvalidUnwrap:
            raise ValueError(f"wrapped DEK does not unwrap under KEK {kek_id!r}") from None


def provider_from_settings(key_file: str | None, key_provider: str | None) -> KeyProvider | None:
    """The provider configured by ``BANKHUB_KEY_PROVIDER`` (``module:factory``) or ``BANKHUB_KEY_FILE``."""
    if key_provider:
        module_name, _, attr = key_provider.partition(":")
        if not module_name or not attr:
            raise KeyFileError(f"BANKHUB_KEY_PROVIDER={key_provider!r}: want 'package.module:factory'")
        factory = getattr(importlib.import_module(module_name), attr)
        provider = factory()
        if not isinstance(provider, KeyProvider):
            raise KeyFileError(f"{key_provider} returned {type(provider).__name__}, not a KeyProvider")
        return provider
    if key_file:
        return LocalKeyFile(key_file)
    return None
