"""Storage for the org tree and users (tables ``orgs``, ``users``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from ..models import Role, User
from .db import Conn, Database

__all__ = ["UserStore", "user_from_row"]

_USER_COLS = "id, username, display_name, role, org_id, rm_id, disabled"


def user_from_row(row: Any) -> User:
    return User(
        id=str(row["id"]),
        username=row["username"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        org_id=str(row["org_id"]),
        rm_id=str(row["rm_id"]) if row["rm_id"] is not None else None,
        disabled=row["disabled"],
    )


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_org(self, conn: Conn, *, kind: str, code: str, name: str, parent_id: str | None) -> str:
        org_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO orgs (id, parent_id, kind, code, name) VALUES ($1, $2, $3, $4, $5)",
            org_id,
            uuid.UUID(parent_id) if parent_id else None,
            kind,
            code,
            name,
        )
        return str(org_id)

    async def create_user(
        self,
        conn: Conn,
        *,
        username: str,
        display_name: str,
        role: Role,
        org_id: str,
        password_hash: str,
        rm_id: str | None = None,
    ) -> User:
        row = await conn.fetchrow(
            f"""INSERT INTO users (id, username, display_name, role, org_id, rm_id, password_hash)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_USER_COLS}""",
            uuid.uuid4(),
            username,
            display_name,
            role.value,
            uuid.UUID(org_id),
            uuid.UUID(rm_id) if rm_id else None,
            password_hash,
        )
        return user_from_row(row)

    async def credentials(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, for a login attempt."""
        async with self.db.connection("user_credentials") as conn:
            row = await conn.fetchrow(f"SELECT {_USER_COLS}, password_hash FROM users WHERE username = $1", username)
        return None if row is None else (user_from_row(row), row["password_hash"])

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self.db.connection("user_rehash_password") as conn:
            await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", uuid.UUID(user_id), password_hash)

    async def by_username(self, username: str) -> User | None:
        async with self.db.connection("user_by_username") as conn:
            row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE username = $1", username)
        return None if row is None else user_from_row(row)

    async def by_ids(self, ids: Iterable[str]) -> dict[str, User]:
        keys: Sequence[uuid.UUID] = [uuid.UUID(i) for i in set(ids)]
        async with self.db.connection("users_by_ids") as conn:
            rows = await conn.fetch(f"SELECT {_USER_COLS} FROM users WHERE id = ANY($1::uuid[])", keys)
        return {str(r["id"]): user_from_row(r) for r in rows}

    async def count(self) -> int:
        async with self.db.connection("users_count") as conn:
            return int(await conn.fetchval("SELECT count(*) FROM users"))
