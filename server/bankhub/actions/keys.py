"""Key management: KEK rotation and retirement, crypto-shredding a conversation.

Called by ``bankhub keys ...`` (:mod:`bankhub.cli.keys`) and by tests. These run against
the database directly (no hub needed): running nodes need no signal, because every read
and every append reads the conversation's current wrapped key from Postgres, and a
:class:`~bankhub.crypto.LocalKeyFile` re-reads its file when it changes.

Rotation (``rotate``): add a new active KEK, then re-wrap every live conversation DEK under
it, a batch of rows per transaction. Message rows are never touched — a DEK does not
change when it is re-wrapped. Interrupted? Run it again with ``new_kek=False``: it only
picks rows not yet under the active KEK. Once ``remaining`` is empty, the old KEK can be
retired (``retire_kek``), after which database backups taken before the rotation can no
longer be read with the key file alone.

Shredding (``shred_conversation``): the wrapped DEK is set to NULL. From that commit on,
on every node, reads return ``{"kind": "shredded"}`` bodies and sends are refused with
``gone``. Limits, stated plainly: copies of the wrapped DEK in database backups, WAL
archives and replicas outlive the shred until they expire; to make those unreadable too,
rotate and retire the KEK that wrapped it (the backups then hold a DEK wrapped under a
destroyed KEK). Running nodes may hold the unwrapped DEK in memory until it ages out of
their cache, but can no longer reach it: lookups are keyed by wrapped bytes that no longer
exist.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..crypto.keyring import call_provider
from ..crypto.keys import KeyFileError, KeyProvider, LocalKeyFile
from ..storage.alert_systems import AlertSystemStore
from ..storage.alerts import AlertStore
from ..storage.db import Conn, Database
from ..storage.holds import ConversationHeld
from ..storage.keys import ConversationKeyStore, RewrapItem
from ..storage import wrapped_secrets
from . import audit
from .alert_systems import rewrap_alert_keys, rewrap_secrets

__all__ = [
    "ConversationHeld",
    "RotationReport",
    "KekInUse",
    "init_key_file",
    "rotate",
    "retire_kek",
    "shred_conversation",
    "key_status",
]

log = logging.getLogger("bankhub.actions.keys")

MAX_PASSES = 3


class KekInUse(Exception):
    """A KEK still wraps live conversation keys (or is the active one): not retiring it."""


@dataclass
class RotationReport:
    kek_id: str  # the active KEK everything was re-wrapped under
    added_kek: bool  # a new KEK was created by this run
    rewrapped: int = 0  # conversation keys re-wrapped by this run
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (conversation id, kek id, error)
    remaining: dict[str, int] = field(default_factory=dict)  # live keys still under other KEKs, by KEK
    under_active: int = 0  # live keys under the active KEK at the end
    shredded: int = 0  # shredded conversations (nothing to re-wrap)
    passes: int = 0

    @property
    def complete(self) -> bool:
        return not self.failed and not self.remaining


def init_key_file(path: str | Path) -> LocalKeyFile:
    """Create a new key file (mode 0600) with one active KEK; refuses to overwrite."""
    key_file = LocalKeyFile.create(path)
    # audit: record the creation of a key file (actor: the operator / SYSTEM, target: the
    # path, details: the active KEK id — never key material).
    return key_file


async def rotate(
    db: Database, provider: KeyProvider, *, new_kek: bool = True, batch_size: int = 500, actor: audit.Actor = audit.SYSTEM
) -> RotationReport:
    """Make a new KEK active (``new_kek``; local key files only) and re-wrap every live DEK under the active KEK."""
    if new_kek:
        if not isinstance(provider, LocalKeyFile):
            raise KeyFileError(
                "this key provider manages its own KEKs (HSM/KMS): make a new KEK active there, "
                "then re-wrap with new_kek=False (bankhub keys rotate --rewrap-only)"
            )
        provider.add_key()
    store = ConversationKeyStore(db)
    target = provider.active_kek_id()
    report = RotationReport(kek_id=target, added_kek=new_kek)
    failed_ids: set[uuid.UUID] = set()
    for _ in range(MAX_PASSES):
        report.passes += 1
        after: uuid.UUID | None = None
        while True:
            page = await store.not_under(target, after, batch_size)
            if not page:
                break
            after = page[-1][0]
            items: list[RewrapItem] = []
            for conv_id, kek_id, wrapped in page:
                if conv_id in failed_ids:
                    continue
                try:
                    dek = await call_provider(provider, provider.unwrap, kek_id, wrapped)
                    new_id, new_wrapped = await call_provider(provider, provider.wrap, dek)
                except Exception as exc:
                    failed_ids.add(conv_id)
                    report.failed.append((str(conv_id), kek_id, f"{type(exc).__name__}: {exc}"))
                    log.error("re-wrapping the key of conversation %s (KEK %s) failed: %s", conv_id, kek_id, exc)
                    continue
                items.append(RewrapItem(conv_id, kek_id, wrapped, new_id, new_wrapped))
            report.rewrapped += await store.rewrap(items)
        counts, report.shredded = await store.counts()
        report.under_active = counts.pop(target, 0)
        report.remaining = counts
        # rows created under the old KEK while we walked (a node that had not yet seen
        # the new key file) sit behind our cursor: walk again
        if sum(counts.values()) <= len(failed_ids):
            break
    # the HMAC secrets of alert-sending systems and the alert data keys are wrapped under the same KEKs
    secrets_rewrapped, secrets_failed = await rewrap_secrets(db, provider)
    alert_keys_rewrapped, alert_keys_failed = await rewrap_alert_keys(db, provider, batch_size)
    # and so are the hub's signing key, the widget partners' secrets, the DLP compliance key
    # and supervision's sampling key (storage/wrapped_secrets.py)
    others: dict[str, tuple[int, list[str]]] = {}
    for column in wrapped_secrets.WRAPPED_COLUMNS:
        others[column.audit_name] = await wrapped_secrets.rewrap(db, provider, column)
    for failure in secrets_failed + alert_keys_failed + [f for _, failures in others.values() for f in failures]:
        log.error("re-wrapping failed: %s", failure)
    # written even when report.failed is not empty: a partial rotation is an auditable event too
    await audit.record(
        db,
        actor=actor,
        action=audit.KEYS_ROTATED,
        target=f"kek:{report.kek_id}",
        details={
            "kek_id": report.kek_id,
            "added_kek": report.added_kek,
            "rewrapped": report.rewrapped,
            "failed": len(report.failed),
            "remaining": report.remaining,
            "passes": report.passes,
            "system_secrets_rewrapped": secrets_rewrapped,
            "system_secrets_failed": len(secrets_failed),
            "alert_keys_rewrapped": alert_keys_rewrapped,
            "alert_keys_failed": len(alert_keys_failed),
            **{f"{name}_rewrapped": done for name, (done, _) in others.items()},
            **{f"{name}_failed": len(failures) for name, (_, failures) in others.items()},
        },
    )
    return report


async def retire_kek(db: Database, key_file: LocalKeyFile, kek_id: str, *, actor: audit.Actor = audit.SYSTEM) -> None:
    """Delete ``kek_id`` from the key file, once no live conversation key is wrapped under it."""
    if kek_id == key_file.active_kek_id():
        raise KekInUse(f"{kek_id} is the active KEK: rotate first")
    counts, _ = await ConversationKeyStore(db).counts()
    if counts.get(kek_id):
        raise KekInUse(f"{kek_id} still wraps {counts[kek_id]} conversation key(s): run bankhub keys rotate --rewrap-only first")
    secrets = (await AlertSystemStore(db).kek_counts()).get(kek_id)
    if secrets:
        raise KekInUse(f"{kek_id} still wraps {secrets} calling system secret(s): run bankhub keys rotate --rewrap-only first")
    alert_keys = (await AlertStore(db).key_counts()).get(kek_id)
    if alert_keys:
        raise KekInUse(f"{kek_id} still wraps {alert_keys} alert data key(s): run bankhub keys rotate --rewrap-only first")
    for column in wrapped_secrets.WRAPPED_COLUMNS:
        held = (await wrapped_secrets.kek_counts(db, column)).get(kek_id)
        if held:
            raise KekInUse(f"{kek_id} still wraps {held} {column.what}(s): run bankhub keys rotate --rewrap-only first")
    key_file.remove_key(kek_id)
    await audit.record(db, actor=actor, action=audit.KEYS_RETIRED, target=f"kek:{kek_id}")


async def shred_conversation(
    db: Database,
    conversation_id: str,
    *,
    in_transaction: Callable[[Conn], Awaitable[None]] | None = None,
    actor: audit.Actor = audit.SYSTEM,
    reason: str | None = None,
) -> str:
    """Crypto-shred one conversation; returns ``"shredded"``, ``"already_shredded"`` or ``"not_found"``.

    ``in_transaction`` runs inside the shredding transaction, after the key is destroyed
    and only when it was: the place for the audit record, so both commit together.

    Raises :class:`~bankhub.storage.holds.ConversationHeld` (naming the holds) when an
    active legal hold covers the conversation: nothing is destroyed, and the refusal is
    audited (``hold.shred_refused``, details ``hold_ids``). The check
    runs in the shredding transaction under the holds lock (shared), so it cannot miss a
    hold that committed before, and a hold being placed waits for the shred to end.
    """
    try:
        uuid.UUID(conversation_id)
    except ValueError:
        return "not_found"

    async def audited(conn: Conn) -> None:
        # in the shredding transaction: the audit row commits or rolls back with the shred itself
        if in_transaction is not None:
            await in_transaction(conn)
        await audit.record(
            db, actor=actor, action=audit.KEYS_SHREDDED, target=f"conversation:{conversation_id}", reason=reason, conn=conn
        )

    try:
        return await ConversationKeyStore(db).shred(conversation_id, in_transaction=audited)
    except ConversationHeld as held:
        # the refusal is recorded too, in a transaction of its own (the shred's rolled back)
        await audit.record(
            db, actor=actor, action=audit.HOLD_SHRED_REFUSED, target=f"conversation:{conversation_id}", reason=reason,
            details={"hold_ids": [h.hold_id for h in held.holds]},
        )
        raise


async def key_status(db: Database, provider: KeyProvider) -> tuple[str, dict[str, int], int]:
    """``(active KEK id, {kek id: live conversation keys under it}, shredded conversations)``."""
    counts, shredded = await ConversationKeyStore(db).counts()
    return provider.active_kek_id(), counts, shredded
