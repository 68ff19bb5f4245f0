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
    relations = await conn.fetch(
        """SELECT c.relname, c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname""",
        schema,
    )
    tables = [r["relname"] for r in relations if not r["relispartition"]]
    # a partition (delta 0027: messages_p00, message_revisions_p00, ...) is reached through its
    # parent, whose privileges are the ones checked; a grant on the partition itself would let
    # the hub bypass them (DELETE on a partition of the append-only message_revisions)
    partitions = [r["relname"] for r in relations if r["relispartition"]]
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
        for table in partitions:
            await conn.execute(f"REVOKE ALL ON {nsp}.{await conn.fetchval('SELECT quote_ident($1)', table)} FROM {quote}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {nsp} TO {quote}")
        for table in APPEND_ONLY_TABLES:
            if table not in tables:
                continue
            # privileges can also come through PUBLIC or a group role: refuse rather than pretend.
            # Checked on the table and on every partition of it (delta 0027): a DELETE granted on
            # a partition deletes its rows whatever the parent's privileges say
            leaked = await conn.fetch(
                """SELECT t.relid::regclass::text AS rel, array_agg(p ORDER BY p) AS privs
                   FROM pg_partition_tree(format('%I.%I', $2::text, $3::text)::regclass) t,
                        unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) p
                   WHERE has_table_privilege($1, t.relid, p)
                   GROUP BY t.relid ORDER BY 1""",
                role,
                schema,
                table,
            )
            if leaked:
                where = "; ".join(f"{', '.join(r['privs'])} on {r['rel']}" for r in leaked)
                raise AppRoleError(f"role {role!r} still has {where} through PUBLIC or a group role")
    return GrantResult(
        role=role,
        read_write=read_write,
        append_only=[t for t in tables if t in APPEND_ONLY_TABLES],
        read_only=[t for t in tables if t in READ_ONLY_TABLES],
    )
