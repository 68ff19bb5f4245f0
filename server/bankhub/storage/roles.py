"""Privileges of the role the hub runs as (``bankhub db grant-app-role``).

The schema is owned by the role that runs ``bankhub migrate``. The hub itself should run
as a separate LOGIN role that owns nothing: it can read and write the tables it works
with, may only INSERT and SELECT ``audit_log`` (never UPDATE, DELETE or TRUNCATE it), and
may only read ``schema_migrations``. Because it owns nothing it cannot disable the
append-only trigger, alter or drop the tables. Re-run the grant after every migration
that adds tables (it is idempotent); new tables get no privileges by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from .db import Conn

__all__ = ["AppRoleError", "GrantResult", "grant_app_role", "APPEND_ONLY_TABLES", "READ_ONLY_TABLES"]

# message_revisions: the texts recalls and edits replaced, kept for compliance; the hub only
# ever adds one (crypto-shredding is how they go, or a retention purge of their messages: by
# ON DELETE CASCADE, which runs as the table's owner, delta 0022)
APPEND_ONLY_TABLES = ("audit_log", "message_revisions")
# shredding a data key is an UPDATE (wrapped_dek := NULL, recorded with shredded_at and an
# audit row); the app may never silently DELETE the row instead. Legal holds are never
# deleted either: a released hold stays, with who released it (delta 0021)
NO_DELETE_TABLES = frozenset({"conversation_keys", "legal_holds"})
READ_ONLY_TABLES = ("schema_migrations",)


class AppRoleError(Exception):
    pass


@dataclass(frozen=True)
class GrantResult:
    role: str
    read_write: list[str]
    append_only: list[str]
    read_only: list[str]


async def grant_app_role(conn: Conn, role: str, *, schema: str = "public") -> GrantResult:
    """Grant ``role`` what the hub needs on every table of ``schema``, in one transaction."""
    info = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role)
    if info is None:
        raise AppRoleError(f"role {role!r} does not exist: CREATE ROLE {role} LOGIN PASSWORD '...' first")
    if info["rolsuper"]:
        raise AppRoleError(f"role {role!r} is a superuser: the hub must run as an ordinary role")
    owned = await conn.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND pg_has_role($2, c.relowner, 'USAGE')""",
        schema,
        role,
    )
    if owned:
        names = ", ".join(sorted(r["relname"] for r in owned))
        raise AppRoleError(f"role {role!r} owns (or inherits ownership of) {names}: run the hub as a role that owns nothing")
    tables = [
        r["relname"]
        for r in await conn.fetch(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname""",
            schema,
        )
    ]
    if "audit_log" not in tables:
        raise AppRoleError("table audit_log not found: run `bankhub migrate` first")
    quote = await conn.fetchval("SELECT quote_ident($1)", role)
    nsp = await conn.fetchval("SELECT quote_ident($1)", schema)
    read_write: list[str] = []
    async with conn.transaction():
        await conn.execute(f"GRANT USAGE ON SCHEMA {nsp} TO {quote}")
        for table in tables:
            ident = f"{nsp}.{await conn.fetchval('SELECT quote_ident($1)', table)}"
            # start from nothing, so a re-run also takes back anything granted by hand
            await conn.execute(f"REVOKE ALL ON {ident} FROM {quote}")
            if table in APPEND_ONLY_TABLES:
                await conn.execute(f"GRANT SELECT, INSERT ON {ident} TO {quote}")
            elif table in READ_ONLY_TABLES:
                await conn.execute(f"GRANT SELECT ON {ident} TO {quote}")
            elif table in NO_DELETE_TABLES:
                await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {ident} TO {quote}")
                read_write.append(table)
            else:
                await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {ident} TO {quote}")
                read_write.append(table)
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {nsp} TO {quote}")
        for table in APPEND_ONLY_TABLES:
            # privileges can also come through PUBLIC or a group role: refuse rather than pretend
            leaked = await conn.fetchval(
                """SELECT array_agg(p) FROM unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) p
                   WHERE has_table_privilege($1, $2, p)""",
                role,
                f"{schema}.{table}",
            )
            if leaked:
                raise AppRoleError(f"role {role!r} still has {', '.join(leaked)} on {table} through PUBLIC or a group role")
    return GrantResult(
        role=role,
        read_write=read_write,
        append_only=[t for t in tables if t in APPEND_ONLY_TABLES],
        read_only=[t for t in tables if t in READ_ONLY_TABLES],
    )
