"""The group commit's round trips per batch, whatever the batch holds: BEGIN (with the shared
barrier lock), the conversations' lock, one write that checks for resends, COMMIT — plus the
barrier query only while a barrier policy exists, and one more write only when the batch
holds a resend. Each send's outcome is what it was with more round trips. (Counted here: the
statements between BEGIN and COMMIT.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from bankhub.actions import barriers as barrier_actions
from bankhub.actions.messages import commit
from bankhub.hub import Pending
from bankhub.runner import RunningNode
from bankhub.storage import NewMessage
from bankhub.storage.barriers import BARRIER_LOCK_KEY

from ..conftest import login, open_direct


async def _counting(node: RunningNode) -> list[str]:
    """Record the statements of the hub's "append_messages" transactions between BEGIN and COMMIT."""
    db = node.hub.db
    original = db.transaction
    seen: list[str] = []

    def log(record: Any) -> None:
        # asyncpg's type introspection (once per pooled connection and type) is not the hub's
        if "typeinfo_tree" not in record.query and "current_setting('jit')" not in record.query:
            seen.append(record.query)

    @asynccontextmanager
    async def transaction(name: str, **kwargs: Any) -> AsyncIterator[Any]:
        async with original(name, **kwargs) as conn:
            if name != "append_messages":
                yield conn
                return
            conn.add_query_logger(log)
            try:
                yield conn
            finally:
                await asyncio.sleep(0.05)  # asyncpg calls query loggers soon after, not at once
                conn.remove_query_logger(log)

    db.transaction = transaction  # type: ignore[method-assign]
    return seen


def _text(sender: Any, conv: str, cmid: str) -> Pending:
    body = msgspec.json.encode({"kind": "text", "text": f"hello {cmid}"})
    return Pending(new=NewMessage(sender=sender, conversation_id=conv, client_msg_id=cmid, kind="text", body=body), origin=None)


async def test_a_batch_commits_in_four_round_trips_and_its_outcome_stays(node: RunningNode) -> None:
    hub = node.hub
    li, zhang = await hub.users.by_username("c.li"), await hub.users.by_username("c.zhang")
    assert li is not None and zhang is not None
    li_conv = await open_direct(node, await login(node, "c.li"), "rm.wang")
    zhang_conv = await open_direct(node, await login(node, "c.zhang"), "rm.wang")
    seen = await _counting(node)
    # each conversation's first message makes its data key; the first batch loads the supervision rules
    await commit(hub, [_text(li, li_conv, "first"), _text(zhang, zhang_conv, "first")])
    seen.clear()

    batch = [_text(li, li_conv, f"a{i}") for i in range(3)] + [_text(zhang, zhang_conv, f"b{i}") for i in range(3)]
    results = await commit(hub, batch)
    assert [r.status for r in results] == ["stored"] * 6
    assert [r.message.seq for r in results if r.message] == [2, 3, 4, 2, 3, 4]
    # (BEGIN with the shared barrier lock, then) the conversations' lock and the write
    assert len(seen) == 2, seen
    assert not any("advisory" in q for q in seen)

    # a resend (and one new message): the write finds it, writes nothing, and the batch is written again
    seen.clear()
    results = await commit(hub, [_text(li, li_conv, "a1"), _text(li, li_conv, "a9")])
    assert [(r.status, r.message.seq if r.message else None) for r in results] == [("duplicate", 3), ("stored", 5)]
    assert len(seen) == 3, seen

    # a barrier policy (between people not in these conversations): the barred query joins, under the same lock
    co = await hub.users.by_username("co.sun")
    assert co is not None
    await barrier_actions.create_segment(hub, co, "research", "Research")
    await barrier_actions.create_segment(hub, co, "sales", "Sales")
    await barrier_actions.add_member(hub, co, "research", "agent.zhao")
    await barrier_actions.add_policy(hub, co, "research", "sales")
    seen.clear()
    results = await commit(hub, [_text(zhang, zhang_conv, "b9")])
    assert [r.status for r in results] == ["stored"]
    assert len(seen) == 3, seen
    assert sum("barrier_policies bp" in q for q in seen) == 1


async def test_shared_locks_hold_until_the_transaction_ends_and_a_failure_rolls_back(node: RunningNode) -> None:
    db = node.hub.db
    try_exclusive = "SELECT pg_try_advisory_xact_lock($1)"
    async with db.transaction("test_shared", shared_locks=(BARRIER_LOCK_KEY,)) as conn:
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 1
        async with db.transaction("test_exclusive") as other:
            assert await other.fetchval(try_exclusive, BARRIER_LOCK_KEY) is False  # an officer's change waits
    with pytest.raises(RuntimeError):
        async with db.transaction("test_shared_failed", shared_locks=(BARRIER_LOCK_KEY,)) as conn:
            await conn.execute("UPDATE users SET display_name = 'Renamed' WHERE username = 'c.li'")
            raise RuntimeError("the block failed")
    li = await node.hub.users.by_username("c.li")
    assert li is not None and li.display_name != "Renamed"  # rolled back
    async with db.transaction("test_exclusive") as other:
        assert await other.fetchval(try_exclusive, BARRIER_LOCK_KEY) is True  # released with it
