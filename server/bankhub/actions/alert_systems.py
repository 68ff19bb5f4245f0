"""Managing calling systems (register, rotate a secret, disable, list; audited) and the key
material of alerts under KEK rotation.

These run from the CLI (``bankhub systems ...``) against the database and the key
provider, without a running hub. A secret is 32 random bytes, shown once in its printed
form (``bhs_`` + base64url) and stored only wrapped under the active KEK; the hub unwraps it
to check signatures. Nothing here ever logs or records a secret.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from ..alerts.rules import CATEGORIES
from ..delivery.alerting import secret_text
from ..crypto import KeyProvider
from ..crypto.keyring import call_provider
from ..models import AlertSystem
from ..storage.alert_systems import AlertSystemStore, WrappedSecret
from ..storage.alerts import AlertStore
from ..storage.db import Conn, Database
from ..text import is_username
from . import audit
from .errors import ActionError

__all__ = [
    "SYSTEM_ADDED",
    "SYSTEM_SECRET_ROTATED",
    "SYSTEM_DISABLED",
    "SYSTEM_ENABLED",
    "add_system",
    "rotate_secret",
    "set_disabled",
    "list_systems",
    "rewrap_secrets",
    "rewrap_alert_keys",
]

SYSTEM_ADDED = "alerts.system_added"
SYSTEM_SECRET_ROTATED = "alerts.system_secret_rotated"
SYSTEM_DISABLED = "alerts.system_disabled"
SYSTEM_ENABLED = "alerts.system_enabled"
SECRET_BYTES = 32


async def _new_secret(provider: KeyProvider) -> tuple[WrappedSecret, str]:
    raw = secrets.token_bytes(SECRET_BYTES)
    kek_id, wrapped = await call_provider(provider, provider.wrap, raw)
    return WrappedSecret(kek_id, wrapped), secret_text(raw)


def _audit(db: Database, action: str, actor: audit.Actor, details: dict[str, Any]) -> Any:
    async def hook(conn: Conn, system: AlertSystem) -> None:
        await audit.record(db, actor=actor, action=action, target=f"alert_system:{system.id}", details={"name": system.name, **details}, conn=conn)

    return hook


async def add_system(
    db: Database,
    provider: KeyProvider,
    name: str,
    categories: Sequence[str],
    *,
    description: str = "",
    rate_per_second: float = 50.0,
    burst: int = 100,
    actor: audit.Actor = audit.SYSTEM,
) -> tuple[AlertSystem, str]:
    """Register a calling system; returns it and its secret (to be shown once, then forgotten)."""
    if not is_username(name):  # system names follow the username rule
        raise ActionError("invalid_request", "a system name is 2-64 of a-z 0-9 . _ - (starting with a letter or digit)")
    cats = list(dict.fromkeys(categories))
    if not cats or any(c not in CATEGORIES for c in cats):
        raise ActionError("invalid_request", f"categories: one or more of {', '.join(CATEGORIES)}")
    if not (rate_per_second > 0 and burst >= 1):
        raise ActionError("invalid_request", "the rate must be > 0 per second and the burst >= 1")
    wrapped, text = await _new_secret(provider)
    system = await AlertSystemStore(db).create(
        name=name,
        description=description[:200],
        categories=cats,
        secret=wrapped,
        rate_per_second=rate_per_second,
        burst=burst,
        audit=_audit(db, SYSTEM_ADDED, actor, {"categories": cats, "kek_id": wrapped.kek_id}),
    )
    if system is None:
        raise ActionError("conflict", f"a system called {name} exists already")
    return system, text


async def rotate_secret(
    db: Database, provider: KeyProvider, name: str, *, grace: dt.timedelta = dt.timedelta(hours=24), actor: audit.Actor = audit.SYSTEM
) -> tuple[AlertSystem, str]:
    """A new secret for ``name``; the old one keeps working for ``grace`` (zero: stops now)."""
    if grace < dt.timedelta(0) or grace > dt.timedelta(days=30):
        raise ActionError("invalid_request", "the grace period is 0 to 30 days")
    wrapped, text = await _new_secret(provider)
    hook = _audit(db, SYSTEM_SECRET_ROTATED, actor, {"grace_seconds": int(grace.total_seconds()), "kek_id": wrapped.kek_id})
    system = await AlertSystemStore(db).rotate(name, wrapped, grace, audit=hook)
    if system is None:
        raise ActionError("not_found", f"no system called {name}")
    return system, text


async def set_disabled(db: Database, name: str, disabled: bool, *, actor: audit.Actor = audit.SYSTEM) -> AlertSystem:
    """Disable (every request refused at once, on every node) or re-enable a system."""
    hook = _audit(db, SYSTEM_DISABLED if disabled else SYSTEM_ENABLED, actor, {})
    system = await AlertSystemStore(db).set_disabled(name, disabled, audit=hook)
    if system is None:
        raise ActionError("not_found", f"no system called {name}")
    return system


async def list_systems(db: Database) -> list[tuple[AlertSystem, dict[str, Any]]]:
    return await AlertSystemStore(db).all()


async def rewrap_secrets(db: Database, provider: KeyProvider) -> tuple[int, list[str]]:
    """Re-wrap every system secret under the active KEK (part of ``bankhub keys rotate``).

    The secrets themselves do not change: calling systems notice nothing. Returns how
    many were re-wrapped and the failures (system id and error; never key material).
    """
    store = AlertSystemStore(db)
    target = provider.active_kek_id()
    done = 0
    failed: list[str] = []
    for system_id, which, old in await store.not_under(target):
        try:
            raw = await call_provider(provider, provider.unwrap, old.kek_id, old.wrapped)
            kek_id, wrapped = await call_provider(provider, provider.wrap, raw)
        except Exception as exc:
            failed.append(f"{system_id} ({which}): {type(exc).__name__}")
            continue
        done += await store.rewrap(system_id, which, old, WrappedSecret(kek_id, wrapped))
    return done, failed


async def rewrap_alert_keys(db: Database, provider: KeyProvider, batch_size: int = 500) -> tuple[int, list[str]]:
    """Re-wrap every recipient's alert data key under the active KEK (``bankhub keys rotate``).

    Alert rows are not touched. Returns how many keys were re-wrapped and the failures.
    """
    store = AlertStore(db)
    target = provider.active_kek_id()
    done = 0
    failed: list[str] = []
    after: uuid.UUID | None = None
    while True:
        page = await store.keys_not_under(target, after, batch_size)
        if not page:
            return done, failed
        after = page[-1][0]
        items = []
        for user_id, kek_id, wrapped in page:
            try:
                dek = await call_provider(provider, provider.unwrap, kek_id, wrapped)
                new_kek, new_wrapped = await call_provider(provider, provider.wrap, dek)
            except Exception as exc:
                failed.append(f"alert key of {user_id}: {type(exc).__name__}")
                continue
            items.append((user_id, kek_id, wrapped, new_kek, new_wrapped))
        done += await store.rewrap_keys(items)
