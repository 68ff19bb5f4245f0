"""Direct-SQL set-up for the benchmark: bench users, direct conversations, sessions.

Seeding goes around the API on purpose: signing in 2,000 users would mean 2,000
argon2 hashes (deliberately slow). Rows are written with ``COPY`` in one transaction.
Users come in pairs — a relationship manager and one customer of their book — and each
pair shares one direct conversation, exactly as ``POST /v1/conversations`` would make it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Callable

import asyncpg

from bankhub.ids import new_token, token_hash, uuid7

from .model import BenchClient

__all__ = ["seed_clients", "seed_groups", "seed_history", "source_address", "raw_insert_baseline", "db_counters", "hot_table_stats"]

# Any text does: nobody signs in with a password here (sessions are seeded directly).
_PASSWORD_HASH = "bench-no-login"


def source_address(i: int) -> str:
    """The ``i``-th client's own loopback source address: 127.1.1.1, 127.1.1.2, ..."""
    return f"127.{1 + i // 62_500}.{1 + (i // 250) % 250}.{1 + i % 250}"


async def seed_clients(dsn: str, n_clients: int) -> list[BenchClient]:
    """Create ``n_clients`` users (rounded up to even) in ``n/2`` direct conversations."""
    n_pairs = (n_clients + 1) // 2
    org_id = uuid.uuid4()
    now = dt.datetime.now(dt.timezone.utc)
    expires = now + dt.timedelta(days=1)

    rms: list[tuple[object, ...]] = []
    customers: list[tuple[object, ...]] = []
    conversations: list[tuple[object, ...]] = []
    members: list[tuple[object, ...]] = []
    sessions: list[tuple[object, ...]] = []
    clients: list[BenchClient] = []
    for i in range(n_pairs):
        rm, cust, conv = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        rms.append((rm, f"bench-rm-{i:06d}", f"Bench RM {i}", "rm", org_id, None, _PASSWORD_HASH))
        customers.append((cust, f"bench-c-{i:06d}", f"Bench Customer {i}", "customer", org_id, rm, _PASSWORD_HASH))
        direct_key = ":".join(sorted((str(rm), str(cust))))
        conversations.append((conv, "direct", rm, direct_key))
        members.append((conv, rm, "member"))
        members.append((conv, cust, "member"))
        for user, peer in ((rm, cust), (cust, rm)):
            token = new_token()
            sessions.append((uuid.uuid4(), user, token_hash(token), expires))
            clients.append(BenchClient(str(user), token, str(conv), str(peer), source_address(len(clients))))

    user_cols = ["id", "username", "display_name", "role", "org_id", "rm_id", "password_hash"]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO orgs (id, parent_id, kind, code, name) VALUES ($1, NULL, 'head_office', $2, 'Bench Head Office')",
                org_id,
                f"BENCH-{org_id.hex[:8]}",
            )
            # RMs first: customers reference them (rm_id)
            await conn.copy_records_to_table("users", records=rms, columns=user_cols)
            await conn.copy_records_to_table("users", records=customers, columns=user_cols)
            await conn.copy_records_to_table(
                "conversations", records=conversations, columns=["id", "kind", "created_by", "direct_key"]
            )
            await conn.copy_records_to_table(
                "conversation_members", records=members, columns=["conversation_id", "user_id", "role"]
            )
            await conn.copy_records_to_table(
                "sessions", records=sessions, columns=["id", "user_id", "token_hash", "expires_at"]
            )
        await conn.execute("ANALYZE orgs, users, conversations, conversation_members, sessions")
    finally:
        await conn.close()
    return clients


async def seed_groups(dsn: str, sizes: list[int]) -> tuple[BenchClient, dict[int, tuple[str, list[BenchClient]]]]:
    """One sender and ``max(sizes)`` members, with a group conversation per size.

    The API caps groups at 500 members, so the groups are written here: conversation
    kind ``'group'``, one ``conversation_members`` row per member (the sender is the
    owner of each). The group of size ``n`` holds the sender and the first ``n``
    members (a member may be in several groups). The sender is an RM; the members are
    customers of their book, each with a live session and their own source address.

    Returns ``(sender, {n: (conversation_id, members)})``; each member's
    ``conversation_id`` is the largest group, ``peer_user_id`` the sender.
    """
    n_members = max(sizes)
    org_id = uuid.uuid4()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    sender_id = uuid.uuid4()
    groups = {n: uuid.uuid4() for n in sorted(set(sizes))}
    biggest = str(groups[n_members])
    users: list[tuple[object, ...]] = []
    sessions: list[tuple[object, ...]] = []
    members: list[BenchClient] = []
    token = new_token()
    sessions.append((uuid.uuid4(), sender_id, token_hash(token), expires))
    # the sender's address is outside the members' range (source_address(i) for i < n)
    sender = BenchClient(str(sender_id), token, biggest, str(sender_id), source_address(n_members + 10))
    for i in range(n_members):
        uid = uuid.uuid4()
        users.append((uid, f"bench-g-{i:06d}", f"Bench Member {i}", "customer", org_id, sender_id, _PASSWORD_HASH))
        token = new_token()
        sessions.append((uuid.uuid4(), uid, token_hash(token), expires))
        members.append(BenchClient(str(uid), token, biggest, str(sender_id), source_address(i)))
    rows: list[tuple[object, ...]] = []
    for n, conv in groups.items():
        rows.append((conv, sender_id, "owner"))
        rows.extend((conv, uuid.UUID(m.user_id), "member") for m in members[:n])

    user_cols = ["id", "username", "display_name", "role", "org_id", "rm_id", "password_hash"]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO orgs (id, parent_id, kind, code, name) VALUES ($1, NULL, 'head_office', $2, 'Bench Head Office')",
                org_id,
                f"BENCH-{org_id.hex[:8]}",
            )
            await conn.execute(
                """INSERT INTO users (id, username, display_name, role, org_id, password_hash)
                   VALUES ($1, 'bench-sender', 'Bench Sender', 'rm', $2, $3)""",
                sender_id,
                org_id,
                _PASSWORD_HASH,
            )
            await conn.copy_records_to_table("users", records=users, columns=user_cols)
            await conn.copy_records_to_table(
                "conversations",
                records=[(conv, "group", f"bench group of {n}", sender_id) for n, conv in groups.items()],
                columns=["id", "kind", "title", "created_by"],
            )
            await conn.copy_records_to_table("conversation_members", records=rows, columns=["conversation_id", "user_id", "role"])
            await conn.copy_records_to_table("sessions", records=sessions, columns=["id", "user_id", "token_hash", "expires_at"])
        await conn.execute("ANALYZE orgs, users, conversations, conversation_members, sessions")
    finally:
        await conn.close()
    return sender, {n: (str(conv), members[:n]) for n, conv in groups.items()}


async def seed_history(dsn: str, rows: int, body_bytes: int, conversations: int = 100) -> None:
    """``rows`` older messages in ``conversations`` filler groups the bench clients are not in.

    A hub meets a ``messages`` table that already holds data and has statistics, as in
    steady state. Against an empty table, each pooled connection caches a generic plan
    for the hub's duplicate check that scans all of ``messages`` and keeps it until
    autoanalyze invalidates it (see bench/README.md): that cold-start cost is real, but it
    is not what this benchmark measures unless ``--history-rows 0`` asks for it.
    The bodies are random bytes: nothing ever reads them.
    """
    if rows <= 0:
        return
    conn = await asyncpg.connect(dsn)
    try:
        org_id = await conn.fetchval("SELECT id FROM orgs WHERE code LIKE 'BENCH-%' LIMIT 1")
        owner = uuid.uuid4()
        convs = [uuid.uuid4() for _ in range(conversations)]
        now = dt.datetime.now(dt.timezone.utc)
        records: list[tuple[object, ...]] = []
        for k in range(rows):
            conv = convs[k % conversations]
            seq = k // conversations + 1
            records.append((conv, seq, uuid7(), owner, f"history-{k}", "text", os.urandom(body_bytes), None, now))
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO users (id, username, display_name, role, org_id, password_hash)
                   VALUES ($1, $2, 'Bench history owner', 'staff', $3, $4)""",
                owner,
                f"bench-history-{owner.hex[:8]}",
                org_id,
                _PASSWORD_HASH,
            )
            await conn.copy_records_to_table(
                "conversations",
                # message k is seq k // n + 1 of conversation k % n
                records=[(c, "group", "bench history", owner, rows // conversations + (i < rows % conversations)) for i, c in enumerate(convs)],
                columns=["id", "kind", "title", "created_by", "last_seq"],
            )
            await conn.copy_records_to_table(
                "conversation_members", records=[(c, owner, "owner") for c in convs], columns=["conversation_id", "user_id", "role"]
            )
            await conn.copy_records_to_table(
                "messages",
                records=records,
                columns=["conversation_id", "seq", "id", "sender_id", "client_msg_id", "kind", "body", "body_key_id", "created_at"],
            )
        await conn.execute("ANALYZE messages, conversations, conversation_members, users")
    finally:
        await conn.close()


_SCRATCH_DDL = """
DROP TABLE IF EXISTS bench_raw_messages;
CREATE TABLE bench_raw_messages (
    conversation_id uuid NOT NULL,
    seq             bigint NOT NULL,
    id              uuid NOT NULL UNIQUE,
    sender_id       uuid NOT NULL,
    client_msg_id   text NOT NULL,
    kind            text NOT NULL,
    body            bytea NOT NULL,
    body_key_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);
"""


async def raw_insert_baseline(
    dsn: str, clients: list[BenchClient], rows: int, batch: int, body: bytes, on_done: Callable[[], object] | None = None
) -> dict[str, float]:
    """Rows/s of plain ``executemany`` inserts into a ``messages``-shaped scratch table.

    Same columns and the same three unique indexes as ``messages`` (no foreign keys),
    ``batch`` rows per transaction, rows spread round-robin over the bench conversations
    as the load generator spreads its sends. This is the ceiling for durably storing
    messages from one Python process on this Postgres; the hub does more per batch
    (row locks, membership check, seq allocation, read positions).
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_SCRATCH_DDL)
        next_seq: dict[str, int] = {}
        records: list[tuple[object, ...]] = []
        for k in range(rows):
            c = clients[k % len(clients)]
            seq = next_seq.get(c.conversation_id, 0) + 1
            next_seq[c.conversation_id] = seq
            records.append(
                (uuid.UUID(c.conversation_id), seq, uuid7(), uuid.UUID(c.user_id), f"raw-{k}", "text", body, None)
            )
        insert = """INSERT INTO bench_raw_messages
                    (conversation_id, seq, id, sender_id, client_msg_id, kind, body, body_key_id, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())"""
        started = time.perf_counter()
        for i in range(0, rows, batch):
            async with conn.transaction():
                await conn.executemany(insert, records[i : i + batch])
        elapsed = time.perf_counter() - started
        if on_done is not None:
            on_done()  # e.g. a CPU snapshot, while this connection's backend still exists
        stored = await conn.fetchval("SELECT count(*) FROM bench_raw_messages")
        await conn.execute("DROP TABLE bench_raw_messages")
    finally:
        await conn.close()
    return {"rows": float(stored), "seconds": elapsed, "rows_per_s": stored / elapsed if elapsed > 0 else 0.0}


async def db_counters(dsn: str) -> tuple[int, int]:
    """(next transaction id, WAL bytes written so far).

    The difference between two readings counts the *writing* transactions in between —
    nearly all of them the hub's group-commit batches — exactly and without the lag of
    ``pg_stat_database`` (reading a snapshot assigns no transaction id).
    """
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS wal"
        )
        assert row is not None
        return int(row["xid"]), int(row["wal"])
    finally:
        await conn.close()


_HOT_TABLES = ("conversations", "conversation_members", "messages")


async def hot_table_stats(dsn: str) -> dict[str, dict[str, int]]:
    """Churn on the tables every send touches: each message updates its conversation's row
    (``last_seq``) and the sender's membership row (``read_seq``) — dead tuples pile up on a
    few hot pages until (auto)vacuum or page pruning clears them. Counters lag by ~1 s.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT relname, n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,
                      pg_relation_size(relid) AS heap_bytes
               FROM pg_stat_user_tables WHERE relname = ANY($1::text[])""",
            list(_HOT_TABLES),
        )
        return {r["relname"]: {k: int(v) for k, v in dict(r).items() if k != "relname"} for r in rows}
    finally:
        await conn.close()
