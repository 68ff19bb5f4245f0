"""Secrets kept in a table only wrapped under the key provider's KEK: one way to count and
re-wrap them.

The hub's card/notice signing keys, the DLP compliance key, the supervision sampling key and
the service widget partners' token secrets are each a column of wrapped bytes beside the id
of the KEK that wraps them. ``bankhub keys rotate`` re-wraps every such secret not yet under
the active KEK (the secret itself does not change, so nothing that uses it notices), and
``bankhub keys retire`` refuses a KEK any of them still needs. Each table declares its column
once, as a :class:`WrappedColumn`; :data:`WRAPPED_COLUMNS` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.keyring import call_provider
from ..crypto.keys import KeyProvider
from .db import Database

__all__ = ["WrappedColumn", "SIGNING_KEYS", "WIDGET_SECRETS", "DLP_KEYS", "SAMPLING_KEY", "WRAPPED_COLUMNS", "kek_counts", "rewrap"]


@dataclass(frozen=True)
class WrappedColumn:
    """Where a kind of wrapped secret lives. The names are this module's constants, never
    input: they are written into the SQL."""

    what: str  # named in a failure ("signing key 3 (KEK k1): …"), never with its bytes
    audit_name: str  # the rotation's audit details count it as <audit_name>_rewrapped / _failed
    table: str
    id_column: str
    wrapped_column: str
    kek_column: str = "kek_id"


SIGNING_KEYS = WrappedColumn("signing key", "signing_keys", "signing_keys", "id", "wrapped_private")
WIDGET_SECRETS = WrappedColumn("widget partner secret", "widget_secrets", "widget_partners", "id", "wrapped_secret")
DLP_KEYS = WrappedColumn("compliance key", "dlp_keys", "dlp_keys", "id", "wrapped_key")
SAMPLING_KEY = WrappedColumn("supervision sampling key", "sampling_keys", "supervision_state", "id", "wrapped_sample_key")
WRAPPED_COLUMNS: tuple[WrappedColumn, ...] = (SIGNING_KEYS, WIDGET_SECRETS, DLP_KEYS, SAMPLING_KEY)


async def kek_counts(db: Database, column: WrappedColumn) -> dict[str, int]:
    """``{kek_id: secrets of this column wrapped under it}``."""
    c = column
    async with db.connection(f"{c.table}_kek_counts") as conn:
        rows = await conn.fetch(
            f"SELECT {c.kek_column} AS kek_id, count(*) AS n FROM {c.table} "
            f"WHERE {c.wrapped_column} IS NOT NULL GROUP BY {c.kek_column}"
        )
    return {r["kek_id"]: int(r["n"]) for r in rows}


async def rewrap(db: Database, provider: KeyProvider, column: WrappedColumn) -> tuple[int, list[str]]:
    """Re-wrap every secret of ``column`` not under the active KEK. Returns ``(re-wrapped,
    failures)``. A row changes only if it still holds exactly the bytes read (a secret
    replaced meanwhile is left to the next run)."""
    c = column
    target = provider.active_kek_id()
    async with db.connection(f"{c.table}_not_under") as conn:
        rows = await conn.fetch(
            f"SELECT {c.id_column} AS id, {c.kek_column} AS kek_id, {c.wrapped_column} AS wrapped FROM {c.table} "
            f"WHERE {c.wrapped_column} IS NOT NULL AND {c.kek_column} <> $1",
            target,
        )
    done, failed = 0, []
    for r in rows:
        try:
            secret = await call_provider(provider, provider.unwrap, r["kek_id"], bytes(r["wrapped"]))
            kek_id, wrapped = await call_provider(provider, provider.wrap, secret)
        except Exception as exc:
            failed.append(f"{c.what} {r['id']} (KEK {r['kek_id']}): {type(exc).__name__}")
            continue
        async with db.connection(f"{c.table}_rewrap") as conn:
            status = await conn.execute(
                f"UPDATE {c.table} SET {c.kek_column} = $2, {c.wrapped_column} = $3 "
                f"WHERE {c.id_column} = $1 AND {c.kek_column} = $4 AND {c.wrapped_column} = $5",
                r["id"], kek_id, wrapped, r["kek_id"], r["wrapped"],
            )
        done += int(status.rsplit(" ", 1)[-1])
    return done, failed
