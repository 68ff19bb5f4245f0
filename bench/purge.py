"""Retention purge throughput: messages deleted per second by ``run_purge``.

    .venv/bin/python -m bench.purge                      # 20,000 due messages, batch 1000
    .venv/bin/python -m bench.purge --messages 50000 --batch 2000 --held 0.1
    .venv/bin/python -m bench.purge --due 0.05           # most messages not due (5% are)

Starts its own embedded Postgres (migrated and seeded like the tests), writes
``--conversations`` staff conversations (an RM and a customer each) holding ``--messages``
messages by SQL — the first ``--due`` share of each conversation dated 400 days ago, the rest
in the last days (not due) — plus one recent message each (kept), places a
conversation hold on a ``--held`` share of them, sets a 40-day retention for RMs' chats and
times a purge run end to end: every batch takes the holds' lock, resolves the retention of
its conversations, selects, refuses the held, deletes revisions, media and messages, and
saves its progress. Prints one JSON line: deleted messages/s and the run's counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bankhub.actions import retention
from bankhub.blobs import LocalBlobStore
from bankhub.demo import seed_demo
from bankhub.embedded import start_postgres
from bankhub.settings import Settings
from bankhub.storage.db import Database
from bankhub.storage.migrate import migrate

__all__ = ["main"]


async def _seed(dsn: str, conversations: int, messages: int, held_share: float, due_share: float) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        rm = await conn.fetchval("SELECT id FROM users WHERE username = 'rm.wang'")
        customer = await conn.fetchval("SELECT id FROM users WHERE username = 'c.li'")
        officer = await conn.fetchval("SELECT id FROM users WHERE username = 'co.sun'")
        per = messages // conversations
        held = 0
        for c in range(conversations):
            cid = uuid.uuid4()
            await conn.execute(
                "INSERT INTO conversations (id, kind, title, created_by, last_seq) VALUES ($1, 'group', 'bench', $2, $3)",
                cid, rm, per + 1,
            )
            await conn.execute(
                "INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2), ($1, $3)", cid, rm, customer
            )
            rows = [
                (cid, seq, uuid.uuid4(), rm if seq % 2 else customer, f"b{seq}", "text", b'{"kind":"text","text":"x"}')
                for seq in range(1, per + 2)
            ]
            await conn.copy_records_to_table(
                "messages", records=rows,
                columns=["conversation_id", "seq", "id", "sender_id", "client_msg_id", "kind", "body"],
            )
            due = round(per * due_share)
            await conn.execute(
                "UPDATE messages SET created_at = now() - interval '400 days' WHERE conversation_id = $1 AND seq <= $2",
                cid, due,
            )
            # the rest: recent, in seq order (a minute apart), not due
            await conn.execute(
                """UPDATE messages SET created_at = now() - make_interval(mins => ($3 - seq)::int)
                   WHERE conversation_id = $1 AND seq > $2""",
                cid, due, per + 1,
            )
            if c < conversations * held_share:
                held += due
                await conn.execute(
                    "INSERT INTO legal_holds (id, name, conversation_id, created_by) VALUES ($1, 'bench', $2, $3)",
                    uuid.uuid4(), cid, officer,
                )
        await conn.execute("ANALYZE")
        return held
    finally:
        await conn.close()


async def _run(args: argparse.Namespace, dsn: str, media_dir: Path) -> dict[str, object]:
    await migrate(dsn)
    await seed_demo(dsn)
    held = await _seed(dsn, args.conversations, args.messages, args.held, args.due)
    settings = Settings(database_url=dsn, retention_floor_days=30, retention_purge_batch=args.batch)
    db = Database(dsn, max_size=4)
    await db.open()
    try:
        await retention.set_policy(db, settings, None, "role", "rm", 40)
        run = await retention.start_purge(db, settings, None, args.batch)
        start = time.perf_counter()
        final = await retention.run_purge(db, LocalBlobStore(media_dir), run, floor_days=settings.retention_floor_days)
        seconds = time.perf_counter() - start
    finally:
        await db.close()
    return {
        "scenario": "purge",
        "messages": args.messages - args.messages % args.conversations,
        "messages_due": round(args.messages // args.conversations * args.due) * args.conversations,
        "held": held,
        "conversations": args.conversations,
        "batch": args.batch,
        "seconds": round(seconds, 3),
        "deleted_messages": final.deleted_messages,
        "refused_held": final.refused_held,
        "batches": final.batches,
        "messages_per_s": round(final.scanned / seconds, 1),
        "stored_messages_per_s": round((args.messages - args.messages % args.conversations) / seconds, 1),
        "deleted_per_s": round(final.deleted_messages / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.purge", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--conversations", type=int, default=200)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--held", type=float, default=0.1, help="share of conversations under a hold")
    p.add_argument("--due", type=float, default=1.0, help="share of each conversation's messages that is due")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bankhub-bench-purge-"))
    server = start_postgres(tmp, delete_on_stop=True)
    try:
        result = asyncio.run(_run(args, server.dsn("bankhub"), tmp / "media"))
    finally:
        server.stop()
    print(json.dumps(result))
    print(
        f"purge: {result['deleted_messages']} deleted + {result['refused_held']} refused (held) in "
        f"{result['seconds']} s, {result['batches']} batches: {result['messages_per_s']} messages/s scanned, "
        f"{result['deleted_per_s']} deleted/s ({result['messages']} stored, {result['messages_due']} due)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
