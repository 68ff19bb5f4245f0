"""The publisher figures of a notice (``GET /v1/notices/{id}/stats``) are counters kept by the
transactions that follow, unfollow, read and publish (delta 0026): they must equal a recount
from the followers' rows after any mix of those, sequential or concurrent, and reading them
must not touch the followers."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bankhub.actions import accounts as account_actions
from bankhub.models import Role, Target, User
from bankhub.protocol.frames import TextNotice
from bankhub.storage.accounts import AccountStore
from bankhub.storage.db import Conn

from bankhub.runner import RunningNode

_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"


async def _world(node: RunningNode, followers: int) -> tuple[User, str, list[User]]:
    hub = node.hub
    ho = await hub.users.by_username("ho.admin")
    assert ho is not None
    orgs = await hub.users.org_ids_by_code(["BJ", "SH"])
    users: list[User] = []
    async with hub.db.transaction("test_users") as conn:
        for i in range(followers):
            users.append(
                await hub.users.create_user(
                    conn, username=f"count.{i:03d}", display_name=f"Counted {i}", role=Role.CUSTOMER,
                    org_id=orgs["BJ" if i % 2 else "SH"], password_hash=_HASH,
                )
            )
        account = await hub.accounts.create(
            handle="bank.counted", name="Counted", description="", owner_org_id=ho.org_id, audience="customer",
            is_default=False, requires_approval=False, created_by=ho.id, conn=conn,
        )
    assert account is not None
    return ho, account.id, users


async def _assert_counters_equal_recount(node: RunningNode, notices: list[str]) -> None:
    for notice_id in notices:
        figures = await node.hub.accounts.stats(notice_id)
        recount = await node.hub.accounts.recount(notice_id)
        assert figures is not None and recount is not None
        assert (figures.targeted_followers, figures.read) == recount, notice_id


async def test_counters_equal_a_recount_after_follows_unfollows_publishes_and_reads(node: RunningNode) -> None:
    hub = node.hub
    ho, account, users = await _world(node, 24)
    rng = random.Random(16)
    notices: list[str] = []
    seqs: list[int] = []
    following: set[str] = set()

    async def publish(target: Target | None = None, org_codes: list[str] | None = None) -> None:
        rec = await account_actions.publish(hub, ho, account, TextNotice(f"n{len(notices)}"), org_codes=org_codes, target=target or Target())
        assert rec.seq is not None
        notices.append(rec.id)
        seqs.append(rec.seq)

    async def op(u: User, kind: str) -> None:
        if kind == "follow":
            await account_actions.follow(hub, u, account)
            following.add(u.id)
        elif kind == "unfollow" and u.id in following:
            following.discard(u.id)
            await account_actions.unfollow(hub, u, account)
        elif kind == "read" and u.id in following and seqs:
            await account_actions.read(hub, u, account, rng.choice(seqs))
        elif kind == "publish":
            await publish()

    # sequential: a notice before anyone follows, followers before and after each notice,
    # reads up to different notices (and a read that would lower the position), unfollows
    await publish()
    for u in users[:16]:
        await op(u, "follow")
    await publish()
    await publish(org_codes=["BJ"])  # targeted: counted at query time, the same rule
    for u in users[:10]:
        await op(u, "read")
    for u in users[16:20]:
        await op(u, "follow")
    await publish()
    for u in users[:20]:
        await op(u, "read")
    for u in users[2:6]:
        await op(u, "unfollow")
    await op(users[3], "follow")  # again: counted only in notices published after this follow
    await publish()
    await _assert_counters_equal_recount(node, notices)
    figures = await hub.accounts.stats(notices[1])
    assert figures is not None and figures.targeted_followers == 16 - 4  # four unfollowed (one came back later)
    assert (await hub.accounts.stats(notices[0])) is not None and (await hub.accounts.stats(notices[0])).targeted_followers == 0  # type: ignore[union-attr]
    newest = await hub.accounts.stats(notices[-1])
    assert newest is not None and (newest.targeted_followers, newest.read) == (len(following), 0)

    # concurrent: every kind at once, in rounds, each user doing several things
    for _ in range(4):
        batch = [op(u, rng.choice(["follow", "unfollow", "read", "read"])) for u in users]
        batch += [op(users[0], "publish") for _ in range(3)]
        rng.shuffle(batch)
        await asyncio.gather(*batch)
        await _assert_counters_equal_recount(node, notices)
    # everyone reads everything: every counted notice's read figure is its targeted figure
    await asyncio.gather(*(account_actions.read(hub, u, account, max(seqs)) for u in users if u.id in following))
    await _assert_counters_equal_recount(node, notices)
    for notice_id in notices[3:]:
        f = await hub.accounts.stats(notice_id)
        assert f is not None and f.read == f.targeted_followers


class _OneConnection:
    """A Database stand-in that hands every store call the same open transaction, so that
    what the call read shows in that transaction's own statistics."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    @asynccontextmanager
    async def connection(self, name: str, **_: Any) -> AsyncIterator[Conn]:
        yield self.conn

    @asynccontextmanager
    async def transaction(self, name: str, **_: Any) -> AsyncIterator[Conn]:
        yield self.conn


async def test_the_figures_query_reads_no_follower_row(node: RunningNode) -> None:
    hub = node.hub
    ho, account, users = await _world(node, 12)
    for u in users:
        await account_actions.follow(hub, u, account)
    rec = await account_actions.publish(hub, ho, account, TextNotice("counted"))
    await account_actions.read(hub, users[0], account, rec.seq or 0)
    async with hub.db.transaction("test_figures_scan") as conn:
        # this backend's counts not yet reported (earlier statements included): compared before and after
        scans_sql = """SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
                       WHERE relname = 'account_follows'"""
        before = await conn.fetchval(scans_sql)
        store = AccountStore(_OneConnection(conn))  # type: ignore[arg-type]
        figures = await store.stats(rec.id)
        assert figures is not None and (figures.targeted_followers, figures.read) == (12, 1)
        assert await conn.fetchval(scans_sql) == before  # O(1): the notice row, whatever the number of followers
        assert await store.recount(rec.id) == (12, 1)
        assert await conn.fetchval(scans_sql) > before  # (the recount does read them: the check can see a scan)


def _slot(user_id: str) -> int:
    """The counter slot of a follower (delta 0026's follow_slot)."""
    return uuid.UUID(user_id).bytes[15] & 63


async def test_readers_and_followers_on_different_slots_do_not_wait_on_each_other(node: RunningNode, dsn: str) -> None:
    """No hot row: a reader of a notice (or a new follower of an account) whose transaction is
    still open does not hold up another reader (follower) on a different slot."""
    hub = node.hub
    ho, account, users = await _world(node, 24)
    by_slot: dict[int, User] = {}
    for u in users:
        by_slot.setdefault(_slot(u.id), u)
    assert len(by_slot) >= 4, "24 random ids fall on at least 4 of 64 slots"
    a, b, c, d = list(by_slot.values())[:4]
    for u in (a, b):
        await account_actions.follow(hub, u, account)
    rec = await account_actions.publish(hub, ho, account, TextNotice("read by many"))
    assert rec.seq is not None
    holder = await asyncpg.connect(dsn)
    other = await asyncpg.connect(dsn)
    try:
        for first, second in (
            (lambda conn: AccountStore.read(conn, account, a.id, rec.seq or 0), lambda conn: AccountStore.read(conn, account, b.id, rec.seq or 0)),
            (lambda conn: AccountStore.follow(conn, account, c.id), lambda conn: AccountStore.follow(conn, account, d.id)),
        ):
            held = holder.transaction()
            await held.start()
            await first(holder)  # counted, not committed: its locks are held
            async with other.transaction():
                await other.execute("SET LOCAL lock_timeout = '2s'")
                await second(other)  # waiting on the first transaction's row would time out here
            await held.commit()
    finally:
        await holder.close()
        await other.close()
    await _assert_counters_equal_recount(node, [rec.id])
    figures = await hub.accounts.stats(rec.id)
    assert figures is not None and (figures.targeted_followers, figures.read) == (2, 2)
