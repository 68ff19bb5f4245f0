"""Storage for the service widget: partners, their visitors, token nonces
(``widget_partners``, ``widget_visitors``, ``widget_nonces``; delta 0018).

A partner's HMAC secret is stored only wrapped under a KEK (``kek_id``, ``wrapped_secret``),
as a calling system's is (:mod:`bankhub.storage.alert_systems`). A visitor is a user row
(role customer, ``widget_visitor``) created on a partner's first token for them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from ..models import User
from .alert_systems import WrappedSecret
from .db import Conn, Database
from .users import user_from_row

__all__ = ["WidgetStore", "WidgetPartner", "PartnerCredentials", "VISITOR_PASSWORD_HASH"]

VISITOR_PASSWORD_HASH = "!widget-visitor: no password sign-in"
"""What a visitor row holds as its password hash: no Argon2 hash, so no password ever matches."""

AuditHook = Callable[[Conn, "WidgetPartner"], Awaitable[None]]


class WidgetPartner(msgspec.Struct, frozen=True):
    """A registered widget partner (never its secret)."""

    id: str
    name: str
    origins: list[str]
    org_id: str
    enabled: bool
    created_at: dt.datetime
    rotated_at: dt.datetime | None = None


class PartnerCredentials(msgspec.Struct, frozen=True):
    partner: WidgetPartner
    secret: WrappedSecret


_COLS = "id, name, origins, org_id, enabled, created_at, rotated_at"


def _partner(row: Any) -> WidgetPartner:
    return WidgetPartner(
        id=str(row["id"]),
        name=row["name"],
        origins=list(row["origins"]),
        org_id=str(row["org_id"]),
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
        rotated_at=row["rotated_at"],
    )


class WidgetStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, *, name: str, origins: Sequence[str], org_id: str | None, secret: WrappedSecret, audit: AuditHook | None = None
    ) -> WidgetPartner | None:
        """A new partner (its visitors in ``org_id``, else the head office); None when the name is taken."""
        async with self.db.transaction("widget_partner_create") as conn:
            org = uuid.UUID(org_id) if org_id else await conn.fetchval("SELECT id FROM orgs WHERE parent_id IS NULL")
            if org is None:
                raise LookupError("no head office org yet")
            row = await conn.fetchrow(
                f"""INSERT INTO widget_partners (id, name, origins, org_id, kek_id, wrapped_secret)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING {_COLS}""",
                uuid.uuid4(), name, list(origins), org, secret.kek_id, secret.wrapped,
            )
            if row is None:
                return None
            partner = _partner(row)
            if audit is not None:
                await audit(conn, partner)
        return partner

    async def credentials(self, partner_id: str) -> PartnerCredentials | None:
        """The partner and its wrapped secret, by id."""
        async with self.db.connection("widget_partner_credentials") as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLS}, kek_id, wrapped_secret FROM widget_partners WHERE id = $1", uuid.UUID(partner_id)
            )
        return None if row is None else PartnerCredentials(_partner(row), WrappedSecret(row["kek_id"], row["wrapped_secret"]))

    async def partner(self, partner_id: str) -> WidgetPartner | None:
        async with self.db.connection("widget_partner") as conn:
            row = await conn.fetchrow(f"SELECT {_COLS} FROM widget_partners WHERE id = $1", uuid.UUID(partner_id))
        return None if row is None else _partner(row)

    async def all(self, limit: int = 500) -> list[WidgetPartner]:
        """Every partner by name (at most ``limit``)."""
        async with self.db.connection("widget_partners_list") as conn:
            rows = await conn.fetch(f"SELECT {_COLS} FROM widget_partners ORDER BY name LIMIT $1", limit)
        return [_partner(r) for r in rows]

    async def set_enabled(
        self, name: str, enabled: bool, audit: AuditHook | None = None, *, revoked: dict[str, list[str]] | None = None
    ) -> WidgetPartner | None:
        """Enable or disable a partner. Disabling also revokes its visitors' sessions in the same
        transaction (their sockets close at each node's next session re-check, or at once when
        the caller signals them); ``revoked``, when given, receives user id -> revoked session ids."""
        async with self.db.transaction("widget_partner_enable") as conn:
            row = await conn.fetchrow(f"UPDATE widget_partners SET enabled = $2 WHERE name = $1 RETURNING {_COLS}", name, enabled)
            if row is None:
                return None
            partner = _partner(row)
            if not enabled:
                rows = await conn.fetch(
                    """UPDATE sessions SET revoked_at = now(), revoked_reason = 'widget partner disabled'
                       WHERE revoked_at IS NULL AND user_id IN (SELECT user_id FROM widget_visitors WHERE partner_id = $1)
                       RETURNING user_id, id""",
                    uuid.UUID(partner.id),
                )
                if revoked is not None:
                    for r in rows:
                        revoked.setdefault(str(r["user_id"]), []).append(str(r["id"]))
            if audit is not None:
                await audit(conn, partner)
        return partner

    async def rotate(self, name: str, secret: WrappedSecret, audit: AuditHook | None = None) -> WidgetPartner | None:
        """Install a new secret at once: tokens signed with the old one are refused from now on."""
        async with self.db.transaction("widget_partner_rotate") as conn:
            row = await conn.fetchrow(
                f"""UPDATE widget_partners SET kek_id = $2, wrapped_secret = $3, rotated_at = now()
                    WHERE name = $1 RETURNING {_COLS}""",
                name, secret.kek_id, secret.wrapped,
            )
            if row is None:
                return None
            partner = _partner(row)
            if audit is not None:
                await audit(conn, partner)
        return partner

    async def use_nonce(self, partner_id: str, nonce: str, expires_at: dt.datetime) -> bool:
        """Record a token's nonce; False if this partner's token with it was exchanged before.
        The partner's nonces whose tokens have expired are forgotten first (bounded table)."""
        async with self.db.transaction("widget_nonce") as conn:
            await conn.execute(
                "DELETE FROM widget_nonces WHERE partner_id = $1 AND expires_at < now()", uuid.UUID(partner_id)
            )
            fresh = await conn.fetchval(
                """INSERT INTO widget_nonces (partner_id, nonce, expires_at) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING RETURNING true""",
                uuid.UUID(partner_id), nonce, expires_at,
            )
        return bool(fresh)

    async def visitor(self, partner: WidgetPartner, external_id: str, display_name: str) -> User:
        """The user standing for the partner's visitor ``external_id``, created on first use;
        its display name follows the latest token."""
        async with self.db.transaction("widget_visitor") as conn:
            # one visitor row per (partner, external id), even for two first exchanges at once
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 18))", f"{partner.id} {external_id}")
            row = await conn.fetchrow(
                """UPDATE users u SET display_name = $3
                   FROM widget_visitors v
                   WHERE v.partner_id = $1 AND v.external_id = $2 AND u.id = v.user_id
                   RETURNING u.id, u.username, u.display_name, u.role, u.org_id, u.rm_id, u.disabled, u.segment, u.tags,
                             u.widget_visitor""",
                uuid.UUID(partner.id), external_id, display_name,
            )
            if row is not None:
                await conn.execute(
                    "UPDATE widget_visitors SET last_seen_at = now() WHERE partner_id = $1 AND external_id = $2",
                    uuid.UUID(partner.id), external_id,
                )
                return user_from_row(row)
            user_id = uuid.uuid4()
            row = await conn.fetchrow(
                """INSERT INTO users (id, username, display_name, role, org_id, password_hash, widget_visitor)
                   VALUES ($1, $2, $3, 'customer', $4, $5, true)
                   RETURNING id, username, display_name, role, org_id, rm_id, disabled, segment, tags, widget_visitor""",
                user_id, f"w.{user_id.hex[:24]}", display_name, uuid.UUID(partner.org_id), VISITOR_PASSWORD_HASH,
            )
            await conn.execute(
                "INSERT INTO widget_visitors (partner_id, external_id, user_id) VALUES ($1, $2, $3)",
                uuid.UUID(partner.id), external_id, user_id,
            )
        return user_from_row(row)
