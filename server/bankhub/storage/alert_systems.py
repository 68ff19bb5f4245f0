"""Storage for calling systems and their request nonces (``alert_systems``, ``alert_nonces``).

A system's HMAC secret is stored only wrapped under a KEK (``kek_id``, ``wrapped_secret``),
by the same key provider that wraps conversation keys; after a rotation the previous
secret stays usable until ``prev_valid_until``. Nonces are kept for the signature's
timestamp window and pruned after it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from ..models import AlertSystem
from .db import Conn, Database

__all__ = ["AlertSystemStore", "WrappedSecret", "SystemCredentials"]

AuditHook = Callable[[Conn, AlertSystem], Awaitable[None]]


class WrappedSecret(NamedTuple):
    kek_id: str
    wrapped: bytes


class SystemCredentials(NamedTuple):
    """A system and the secrets a signature may be made with: the current one, then the
    previous one while its grace period lasts."""

    system: AlertSystem
    secrets: list[WrappedSecret]


_COLS = "id, name, description, categories, rate_per_second, burst, disabled"


def _system(row: Any) -> AlertSystem:
    return AlertSystem(
        id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        categories=tuple(row["categories"]),
        rate_per_second=float(row["rate_per_second"]),
        burst=int(row["burst"]),
        disabled=bool(row["disabled"]),
    )


class AlertSystemStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        name: str,
        description: str,
        categories: Sequence[str],
        secret: WrappedSecret,
        rate_per_second: float,
        burst: int,
        audit: AuditHook | None = None,
    ) -> AlertSystem | None:
        """A new system; None when the name is taken. ``audit`` runs in the same transaction."""
        async with self.db.transaction("alert_system_create") as conn:
            row = await conn.fetchrow(
                f"""INSERT INTO alert_systems (id, name, description, categories, kek_id, wrapped_secret, rate_per_second, burst)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING RETURNING {_COLS}""",
                uuid.uuid4(),
                name,
                description,
                list(categories),
                secret.kek_id,
                secret.wrapped,
                rate_per_second,
                burst,
            )
            if row is None:
                return None
            system = _system(row)
            if audit is not None:
                await audit(conn, system)
        return system

    async def credentials(self, name: str) -> SystemCredentials | None:
        """The system called ``name`` with its usable wrapped secrets (current first)."""
        async with self.db.connection("alert_system_credentials") as conn:
            row = await conn.fetchrow(
                f"""SELECT {_COLS}, kek_id, wrapped_secret, prev_kek_id, prev_wrapped,
                           prev_valid_until > now() AS prev_valid
                    FROM alert_systems WHERE name = $1""",
                name,
            )
        if row is None:
            return None
        secrets = [WrappedSecret(row["kek_id"], row["wrapped_secret"])]
        if row["prev_wrapped"] is not None and row["prev_valid"]:
            secrets.append(WrappedSecret(row["prev_kek_id"], row["prev_wrapped"]))
        return SystemCredentials(_system(row), secrets)

    async def by_name(self, name: str) -> AlertSystem | None:
        async with self.db.connection("alert_system_by_name") as conn:
            row = await conn.fetchrow(f"SELECT {_COLS} FROM alert_systems WHERE name = $1", name)
        return None if row is None else _system(row)

    async def all(self) -> list[tuple[AlertSystem, dict[str, Any]]]:
        """Every system with its bookkeeping (created/rotated times, KEK ids, grace period)."""
        async with self.db.connection("alert_systems_list") as conn:
            rows = await conn.fetch(
                f"""SELECT {_COLS}, created_at, rotated_at, kek_id,
                           CASE WHEN prev_valid_until > now() THEN prev_valid_until END AS prev_valid_until
                    FROM alert_systems ORDER BY name"""
            )
        return [
            (
                _system(r),
                {
                    "created_at": r["created_at"],
                    "rotated_at": r["rotated_at"],
                    "kek_id": r["kek_id"],
                    "previous_secret_valid_until": r["prev_valid_until"],
                },
            )
            for r in rows
        ]

    async def rotate(self, name: str, secret: WrappedSecret, grace: dt.timedelta, audit: AuditHook | None = None) -> AlertSystem | None:
        """Install a new secret; the current one stays valid for ``grace`` (zero: revoked now)."""
        async with self.db.transaction("alert_system_rotate") as conn:
            row = await conn.fetchrow(
                f"""UPDATE alert_systems SET prev_kek_id = kek_id, prev_wrapped = wrapped_secret,
                           prev_valid_until = now() + $4::interval, kek_id = $2, wrapped_secret = $3, rotated_at = now()
                    WHERE name = $1 RETURNING {_COLS}""",
                name,
                secret.kek_id,
                secret.wrapped,
                grace,
            )
            if row is None:
                return None
            system = _system(row)
            if audit is not None:
                await audit(conn, system)
        return system

    async def set_disabled(self, name: str, disabled: bool, audit: AuditHook | None = None) -> AlertSystem | None:
        async with self.db.transaction("alert_system_disable") as conn:
            row = await conn.fetchrow(
                f"UPDATE alert_systems SET disabled = $2 WHERE name = $1 RETURNING {_COLS}", name, disabled
            )
            if row is None:
                return None
            system = _system(row)
            if audit is not None:
                await audit(conn, system)
        return system

    async def use_nonce(self, system_id: str, nonce: str) -> bool:
        """Record a nonce; False if this system used it before (a replay)."""
        async with self.db.connection("alert_nonce") as conn:
            fresh = await conn.fetchval(
                "INSERT INTO alert_nonces (system_id, nonce) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                uuid.UUID(system_id),
                nonce,
            )
        return bool(fresh)

    @staticmethod
    async def states_txn(conn: Conn, system_ids: Sequence[str]) -> dict[str, tuple[bool, list[WrappedSecret]]]:
        """For each system that exists: ``(disabled, the secrets valid now)`` (the current one,
        and the previous one while its grace period lasts), in the caller's transaction: what
        a signature checked against cached credentials is held to."""
        rows = await conn.fetch(
            """SELECT id, disabled, kek_id, wrapped_secret, prev_kek_id, prev_wrapped, prev_valid_until > now() AS prev_valid
               FROM alert_systems WHERE id = ANY($1::uuid[])""",
            [uuid.UUID(i) for i in set(system_ids)],
        )
        out: dict[str, tuple[bool, list[WrappedSecret]]] = {}
        for r in rows:
            valid = [WrappedSecret(r["kek_id"], r["wrapped_secret"])]
            if r["prev_wrapped"] is not None and r["prev_valid"]:
                valid.append(WrappedSecret(r["prev_kek_id"], r["prev_wrapped"]))
            out[str(r["id"])] = (r["disabled"], valid)
        return out

    @staticmethod
    async def use_nonces_txn(conn: Conn, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Record ``(system id, nonce)`` pairs in the caller's transaction; returns those not
        seen before (the others are replays). Inserted in key order: two transactions never
        wait on each other in a cycle."""
        if not pairs:
            return set()
        ordered = sorted(set(pairs))
        rows = await conn.fetch(
            """INSERT INTO alert_nonces (system_id, nonce)
               SELECT * FROM unnest($1::uuid[], $2::text[]) ORDER BY 1, 2
               ON CONFLICT DO NOTHING RETURNING system_id, nonce""",
            [uuid.UUID(s) for s, _ in ordered],
            [n for _, n in ordered],
        )
        return {(str(r["system_id"]), r["nonce"]) for r in rows}

    async def prune(self, nonces_older_than: dt.timedelta, requests_older_than: dt.timedelta) -> tuple[int, int]:
        """Forget nonces past the signature window and idempotency keys past their retention."""
        async with self.db.connection("alert_prune") as conn:
            n = await conn.execute("DELETE FROM alert_nonces WHERE seen_at < now() - $1::interval", nonces_older_than)
            r = await conn.execute("DELETE FROM alert_requests WHERE created_at < now() - $1::interval", requests_older_than)
        return int(n.rsplit(" ", 1)[-1]), int(r.rsplit(" ", 1)[-1])

    async def not_under(self, kek_id: str) -> list[tuple[uuid.UUID, str, WrappedSecret]]:
        """System secrets (current, and previous while still valid) wrapped under another KEK:
        ``(system id, "current" | "previous", wrapped)``."""
        async with self.db.connection("alert_system_secrets_to_rewrap") as conn:
            rows = await conn.fetch(
                """SELECT id, kek_id, wrapped_secret, prev_kek_id, prev_wrapped, prev_valid_until > now() AS prev_valid
                   FROM alert_systems WHERE kek_id <> $1 OR (prev_kek_id <> $1 AND prev_valid_until > now())""",
                kek_id,
            )
        out: list[tuple[uuid.UUID, str, WrappedSecret]] = []
        for r in rows:
            if r["kek_id"] != kek_id:
                out.append((r["id"], "current", WrappedSecret(r["kek_id"], r["wrapped_secret"])))
            if r["prev_kek_id"] is not None and r["prev_kek_id"] != kek_id and r["prev_valid"]:
                out.append((r["id"], "previous", WrappedSecret(r["prev_kek_id"], r["prev_wrapped"])))
        return out

    async def rewrap(self, system_id: uuid.UUID, which: str, old: WrappedSecret, new: WrappedSecret) -> bool:
        """Replace one wrapped secret (the same secret under another KEK), if it is still ``old``."""
        async with self.db.connection("alert_system_secret_rewrap") as conn:
            if which == "current":
                status = await conn.execute(
                    """UPDATE alert_systems SET kek_id = $4, wrapped_secret = $5
                       WHERE id = $1 AND kek_id = $2 AND wrapped_secret = $3""",
                    system_id, old.kek_id, old.wrapped, new.kek_id, new.wrapped,
                )
            else:
                status = await conn.execute(
                    """UPDATE alert_systems SET prev_kek_id = $4, prev_wrapped = $5
                       WHERE id = $1 AND prev_kek_id = $2 AND prev_wrapped = $3""",
                    system_id, old.kek_id, old.wrapped, new.kek_id, new.wrapped,
                )
        return status.endswith(" 1")

    async def kek_counts(self) -> dict[str, int]:
        """How many system secrets (current or previous) each KEK wraps."""
        async with self.db.connection("alert_system_kek_counts") as conn:
            rows = await conn.fetch(
                """SELECT k, count(*) AS n FROM (
                       SELECT kek_id AS k FROM alert_systems
                       UNION ALL SELECT prev_kek_id FROM alert_systems
                       WHERE prev_kek_id IS NOT NULL AND prev_valid_until > now()) s GROUP BY k"""
            )
        return {r["k"]: int(r["n"]) for r in rows}
