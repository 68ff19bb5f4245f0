"""eDiscovery export throughput: messages per second from a real Postgres into a signed zip.

``python -m bench.exports [--messages 5000] [--conversations 10] [--edited 0.1]``

Starts an embedded Postgres (migrated, demo users), stores ``--messages`` text messages from
c.li and rm.wang in ``--conversations`` direct-and-group conversations through the hub's own
append path (sealed under each conversation's key), edits a share of them (so the export reads
kept originals too), then requests an export for custodian c.li as co.sun, approves it as
co.qian and times :func:`bankhub.actions.exports.build_export`: every message read, opened,
put in JSONL and the EML transcripts, the zip written and signed, sealed and stored in the
blob store. Prints one JSON line (messages, seconds, messages/s, zip bytes, verify seconds).

``python -m bench.exports --memory 50``: the peak memory of an export with 50 MiB of
attachments past the database reads (see :func:`memory`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .env import PgEnv


async def _run(dsn: str, tmp: Path, n_messages: int, n_convs: int, edited: float) -> dict[str, object]:
    import msgspec

    from bankhub.actions.exports import ExportDeps, approve_export, build_export, request_export
    from bankhub.blobs.local import LocalBlobStore
    from bankhub.compliance.export_format import verify_export
    from bankhub.crypto import LocalKeyFile
    from bankhub.crypto.keyring import Keyring
    from bankhub.demo import seed_demo
    from bankhub.policy import ALLOW
    from bankhub.protocol.frames import TextBody
    from bankhub.settings import Settings
    from bankhub.storage.alerts import AlertStore
    from bankhub.storage.db import Database
    from bankhub.storage.exports import ExportStore
    from bankhub.storage.media import MediaStore
    from bankhub.storage.messages import MessageStore, NewMessage
    from bankhub.storage.keys import ConversationKeyStore
    from bankhub.storage.revisions import RevisionStore, revision_associated_data
    from bankhub.storage.signing_keys import SigningKeyStore
    from bankhub.storage.users import UserStore

    await seed_demo(dsn)
    keyring = Keyring(LocalKeyFile.create(tmp / "keys.json"))
    db = Database(dsn, min_size=1, max_size=4)
    await db.open()
    settings = Settings(database_url=dsn, export_max_messages=max(n_messages * 2, 1))
    messages = MessageStore(db, keyring)
    users = UserStore(db)
    li, wang = await users.by_username("c.li"), await users.by_username("rm.wang")
    assert li is not None and wang is not None
    convs = [str(uuid.uuid4()) for _ in range(n_convs)]
    async with db.transaction("bench_convs") as conn:
        for i, cid in enumerate(convs):
            await conn.execute(
                "INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, 'group', $2, $3)",
                uuid.UUID(cid), f"bench group {i}", uuid.UUID(wang.id),
            )
            for u in (li, wang):
                await conn.execute("INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)", uuid.UUID(cid), uuid.UUID(u.id))
    batch = 500
    sent = 0
    while sent < n_messages:
        news = []
        for j in range(min(batch, n_messages - sent)):
            k = sent + j
            body = msgspec.json.encode(TextBody(text=f"message {k}: about the charge of ¥{k % 997}.00 on my card, please check"))
            news.append(NewMessage(sender=li if k % 2 else wang, conversation_id=convs[k % n_convs], client_msg_id=f"b-{k}", kind="text", body=body))
        async with db.transaction("bench_append") as conn:
            locked = await messages.lock_txn(conn, news)
            await messages.append_txn(conn, news, locked, [ALLOW] * len(news))
        sent += len(news)
    # a share of the messages edited: a kept original each (what the export reads per batch)
    n_edited = int(n_messages * edited)
    if n_edited:
        async with db.transaction("bench_edits") as conn:
            keys = (await ConversationKeyStore.data_keys(conn, keyring, convs)).keys
            rows = await conn.fetch("SELECT conversation_id, id, seq, created_at FROM messages ORDER BY id LIMIT $1", n_edited)
            kept = []
            for r in rows:
                cid, mid = str(r["conversation_id"]), str(r["id"])
                ad = revision_associated_data(cid, mid, 1, int(r["created_at"].timestamp() * 1000), "edit")
                nonce = os.urandom(12)
                original = msgspec.json.encode(TextBody(text=f"the original wording of {mid}"))
                kept.append((r["conversation_id"], r["id"], r["seq"], nonce + keys[cid].aead.encrypt(nonce, original, ad), r["created_at"]))
            await conn.executemany(
                """INSERT INTO message_revisions (conversation_id, message_id, revision, kind, change_seq, body, body_key_id, changed_at)
                   VALUES ($1, $2, 1, 'edit', $3, $4, 'crev1', $5)""",
                kept,
            )
    deps = ExportDeps(
        db=db, keyring=keyring, settings=settings, store=ExportStore(db), users=users, messages=messages,
        revisions=RevisionStore(messages, keyring), media=MediaStore(db), blobs=LocalBlobStore(str(tmp / "blobs")),
        signing=SigningKeyStore(db, keyring), alerts=AlertStore(db, keyring), auditor=db,
    )
    sun, qian = await users.by_username("co.sun"), await users.by_username("co.qian")
    assert sun is not None and qian is not None
    view = await request_export(
        deps, sun, custodians=["c.li"], conversation_ids=[], since=None, until=None, keywords=[], reason="internal_audit",
        case_ref="BENCH", ip=None,
    )
    await approve_export(deps, qian, view.export_id, None, build=False)
    start = time.perf_counter()
    data = await build_export(deps, view.export_id, by="bench")
    seconds = time.perf_counter() - start
    vstart = time.perf_counter()
    result = verify_export(data)
    verify_seconds = time.perf_counter() - vstart
    await db.close()
    assert result.ok, result.problems
    return {
        "messages": result.counts.get("messages"),
        "conversations": n_convs,
        "kept_originals": result.counts.get("revisions"),
        "seconds": round(seconds, 3),
        "messages_per_second": round(n_messages / seconds),
        "zip_bytes": len(data),
        "verify_seconds": round(verify_seconds, 3),
    }


def memory(attachments: int, mib: int) -> dict[str, object]:
    """Peak memory of the build past the database reads: ``attachments`` pictures of ``mib`` MiB
    (random: incompressible), each read one at a time, spooled by the builder, the zip written to
    a temporary file, sealed chunk by chunk into a local blob store, then a download's two passes
    (verify every chunk, stream them). Python allocations by tracemalloc, and the process's RSS."""
    import datetime as dt
    import gc
    import hashlib
    import resource
    import tracemalloc

    from bankhub.blobs.local import LocalBlobStore
    from bankhub.compliance import export_format as fmt
    from bankhub.compliance.export_sealing import CHUNK_BYTES, chunk_key, open_chunk, seal_chunk
    from bankhub.crypto.keyring import DataKey
    from bankhub.crypto.signing import SigningKey

    export_id, conv = str(uuid.uuid4()), str(uuid.uuid4())
    li = fmt.Person(str(uuid.uuid4()), "c.li", "Li", "customer")
    stays = [fmt.Stay(li.user_id, "c.li", "2026-12-01T00:00:00.000Z")]
    key = DataKey(os.urandom(32))
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp:
        blobs = LocalBlobStore(tmp)
        with fmt.ExportBuilder(export_id) as b:
            b.person(li)
            for i in range(attachments):
                media_id = str(uuid.uuid4())
                path = b.add_attachment(media_id, "image/png", os.urandom(mib << 20))
                b.add_message(
                    fmt.MessageRecord(
                        conversation_id=conv, conversation_kind="direct", conversation_title=None, seq=i + 1,
                        message_id=str(uuid.uuid4()), sender=li, created_at="2026-12-02T00:00:00.000Z", kind="image",
                        body={"kind": "image", "media_id": media_id}, members_at_send=stays,
                        attachments=[fmt.AttachmentRecord(media_id, "image/png", path, mib << 20)],
                    )
                )
            b.add_conversation(fmt.ConversationRecord(conv, "direct", None, "2026-12-01T00:00:00.000Z", stays))
            with tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES * 4) as zipped:
                b.write(zipped, created_at=dt.datetime.now(dt.timezone.utc), scope={}, key=SigningKey("bench", os.urandom(32)))
                b.close()
                size = zipped.tell()
                zipped.seek(0)
                digest = hashlib.sha256()
                count = max(1, -(-size // CHUNK_BYTES))
                for i in range(count):
                    chunk = zipped.read(CHUNK_BYTES)
                    digest.update(chunk)
                    asyncio.run(blobs.put(chunk_key("exports/x/t", i), seal_chunk(key, export_id, i, i == count - 1, chunk)))
        for _ in range(2):
            for i in range(count):
                open_chunk(key, export_id, i, i == count - 1, asyncio.run(blobs.get(chunk_key("exports/x/t", i))))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "attachment_mib": attachments * mib,
        "zip_mib": round(size / (1 << 20), 1),
        "tracemalloc_peak_mib": round(peak / (1 << 20), 1),
        "max_rss_growth_mib": round((rss - rss_before) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.exports", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--edited", type=float, default=0.1, help="share of messages with a kept original")
    parser.add_argument("--memory", type=int, metavar="MIB", help="instead: peak memory of an export with MIB MiB of attachments")
    args = parser.parse_args(argv)
    if args.memory:
        print(json.dumps(memory(args.memory, 1)), flush=True)
        return 0
    env = PgEnv(prefix="bankhub-bench-export-")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = asyncio.run(_run(env.dsn, Path(tmp), args.messages, args.conversations, args.edited))
    finally:
        env.stop()
    print(json.dumps(out), flush=True)
    print(f"export: {out['messages']} messages in {out['seconds']} s = {out['messages_per_second']} messages/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
