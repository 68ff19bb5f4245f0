"""Legal holds through the live hub: placing (by custodian, by conversation), dual-control
release with its audit trail, shredding refused while a hold covers a conversation (the
action and `bankhub keys shred`), the SQL rule purge embeds, and the lock that keeps a hold
from interleaving with a purge batch or a shred."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub.actions import audit
from bankhub.actions import holds as hold_actions
from bankhub.actions.errors import ActionError
from bankhub.actions.keys import ConversationHeld, shred_conversation
from bankhub.compliance.holds import HoldScope, holds_message
from bankhub.runner import RunningNode
from bankhub.storage.holds import (
    HELD_MESSAGE_SQL,
    holds_covering_conversation_txn,
    lock_holds_exclusive_txn,
    lock_holds_shared_txn,
)

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient

BANKHUB = Path(sys.executable).with_name("bankhub")
HOLDS = "/v1/compliance/holds"
HOLD_ACTIONS = (audit.HOLD_PLACED, audit.HOLD_RELEASE_REQUESTED, audit.HOLD_RELEASED, audit.HOLD_RELEASE_REJECTED)


def _client(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _send(node: RunningNode, token: str, conv: str, texts: list[str]) -> list[dict[str, Any]]:
    client = await RawClient.connect(node.ws_url, token)
    try:
        return [await client.expect("sent", frame_id=await client.send_text(conv, t)) for t in texts]
    finally:
        await client.close()


async def _hold_audit(node: RunningNode, hold_id: str) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """``(action, actor, reason, details)`` of the hold's audit rows, oldest first."""
    rows = [r for r in await node.hub.audit.recent(limit=200) if r.target == f"hold:{hold_id}"]
    return [(r.action, r.actor, r.reason, dict(r.details)) for r in reversed(rows)]


async def _shred_cli(dsn: str, conv: str) -> tuple[int, str, str]:
    env = {**os.environ, "BANKHUB_DATABASE_URL": dsn}
    proc = await asyncio.create_subprocess_exec(
        str(BANKHUB), "keys", "shred", "--conversation", conv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_officers_place_holds_by_custodian_and_by_conversation(node: RunningNode) -> None:
    sun, qian, admin, li = [await login(node, u) for u in ("co.sun", "co.qian", "ho.admin", "c.li")]
    conv = await open_direct(node, li, "rm.wang")
    async with _client(node, sun) as co, _client(node, admin) as ho, _client(node, li) as cust:
        r = await co.post(HOLDS, json={"name": "AML case 17", "case_ref": "AML-2026-17", "custodian": "c.li", "from": "2026-01-01T00:00:00+08:00"})
        assert r.status_code == 201, r.text
        by_custodian = r.json()
        li_id = (await node.hub.users.by_username("c.li")).id  # type: ignore[union-attr]
        assert by_custodian["custodian"] == {"user_id": li_id, "username": "c.li"}
        assert by_custodian["state"] == "active" and by_custodian["created_by"] == "co.sun"
        assert by_custodian["conversation_id"] is None and by_custodian["to"] is None
        assert dt.datetime.fromisoformat(by_custodian["from"]) == dt.datetime(2025, 12, 31, 16, tzinfo=dt.timezone.utc)
        assert by_custodian["release_requested_by"] is None and by_custodian["released_by"] is None

        r = await co.post(HOLDS, json={"name": "complaint 9", "conversation_id": conv})
        assert r.status_code == 201, r.text
        by_conversation = r.json()
        assert by_conversation["conversation_id"] == conv and by_conversation["custodian"] is None

        # bad input: a clear problem with a stable code, nothing stored
        for body, status, code in (
            ({"name": "no scope"}, 400, "invalid_request"),
            ({"name": "backwards", "custodian": "c.li", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 400, "invalid_request"),
            ({"name": "empty range", "custodian": "c.li", "from": "2026-02-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, 400, "invalid_request"),
            ({"name": "naive", "custodian": "c.li", "from": "2026-02-01T00:00:00"}, 400, "invalid_request"),
            ({"name": "year 0", "custodian": "c.li", "from": "0001-01-01T00:00:00+01:00"}, 400, "invalid_request"),
            ({"name": "year 10000", "custodian": "c.li", "to": "9999-12-31T23:00:00-02:00"}, 400, "invalid_request"),
            ({"name": "x" * 121, "custodian": "c.li"}, 400, "invalid_request"),
            ({"name": "two\nlines", "custodian": "c.li"}, 400, "invalid_request"),
            ({"name": "ok", "custodian": "c.li", "case_ref": "c" * 65}, 400, "invalid_request"),
            ({"name": "ok", "conversation_id": "not-a-uuid"}, 400, "invalid_request"),
            ({"name": "ok", "custodian": "c.li", "extra": 1}, 400, "invalid_request"),
            ({"name": "ghost", "custodian": "no.such.user"}, 404, "not_found"),
            ({"name": "ghost", "conversation_id": str(uuid.uuid4())}, 404, "not_found"),
        ):
            r = await co.post(HOLDS, json=body)
            assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")

        # anyone but a compliance officer: 403 on every route, whatever the body
        hold_id = by_custodian["hold_id"]
        forbidden: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
            ("POST", HOLDS, {"name": "mine", "custodian": "c.li"}),
            ("POST", HOLDS, {"name": "ghost", "custodian": "no.such.user"}),
            ("GET", HOLDS, None),
            ("GET", f"{HOLDS}/{hold_id}", None),
            ("POST", f"{HOLDS}/{hold_id}/release", {"reason": "done"}),
            ("POST", f"{HOLDS}/{hold_id}/release/approve", None),
            ("POST", f"{HOLDS}/{hold_id}/release/reject", None),
        )
        for http in (ho, cust):
            for method, path, sent in forbidden:
                r = await http.request(method, path, json=sent)
                assert (r.status_code, r.json()["code"]) == (403, "forbidden"), (method, path, r.text)

        # list (newest first, paged, by state) and get; a second officer sees them too
        async with _client(node, qian) as co2:
            r = await co2.get(HOLDS, params={"limit": 1})
            assert r.status_code == 200
            page = r.json()
            assert [h["hold_id"] for h in page["holds"]] == [by_conversation["hold_id"]] and page["next_cursor"]
            r = await co2.get(HOLDS, params={"limit": 1, "cursor": page["next_cursor"]})
            assert [h["hold_id"] for h in r.json()["holds"]] == [hold_id] and r.json()["next_cursor"] is None
            r = await co2.get(HOLDS, params={"state": "released"})
            assert r.json() == {"holds": [], "next_cursor": None}
            assert (await co2.get(HOLDS, params={"state": "bogus"})).json()["code"] == "invalid_request"
            assert (await co2.get(HOLDS, params={"cursor": "!!"})).status_code == 400
            r = await co2.get(f"{HOLDS}/{hold_id}")
            assert r.status_code == 200 and r.json() == by_custodian
            assert (await co2.get(f"{HOLDS}/{uuid.uuid4()}")).json()["code"] == "not_found"

    # audited, with the scope in the details, as the officer who placed it
    ((action, actor, _, details),) = await _hold_audit(node, hold_id)
    assert (action, actor) == ("hold.placed", "co.sun")
    assert details["custodian"] == "c.li" and details["custodian_id"] == li_id and details["case_ref"] == "AML-2026-17"
    assert details["conversation_id"] is None and details["to"] is None and details["from"].startswith("2025-12-31T16:00:00")
    ((action, actor, _, details),) = await _hold_audit(node, by_conversation["hold_id"])
    assert (action, actor, details["conversation_id"]) == ("hold.placed", "co.sun", conv)


async def test_release_needs_a_second_compliance_officer(node: RunningNode) -> None:
    sun, qian = await login(node, "co.sun"), await login(node, "co.qian")
    async with _client(node, sun) as a, _client(node, qian) as b:
        hold_id = (await a.post(HOLDS, json={"name": "fraud 3", "custodian": "c.zhang"})).json()["hold_id"]
        url = f"{HOLDS}/{hold_id}/release"
        assert (await a.post(f"{url}/approve")).json()["code"] == "conflict"  # nothing requested yet
        assert (await a.post(url, json={})).json()["code"] == "invalid_request"  # a reason is required
        assert (await a.post(url, json={"reason": " "})).json()["code"] == "invalid_request"

        # A asks, then withdraws: active again
        r = await a.post(url, json={"reason": "case closed"})
        assert r.status_code == 202 and r.json()["state"] == "release_pending"
        assert r.json()["release_requested_by"] == "co.sun" and r.json()["release_reason"] == "case closed"
        assert (await b.post(url, json={"reason": "me too"})).json()["code"] == "conflict"  # one request at a time
        r = await a.post(f"{url}/reject")
        assert r.status_code == 200 and r.json()["state"] == "active" and r.json()["release_requested_by"] is None

        # A asks again; B rejects; A asks a third time
        assert (await a.post(url, json={"reason": "closed, really"})).status_code == 202
        assert (await b.post(f"{url}/reject")).json()["state"] == "active"
        assert (await a.post(url, json={"reason": "court order 88"})).status_code == 202

        # A may not approve their own request
        r = await a.post(f"{url}/approve")
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert "second compliance officer" in r.json()["detail"]
        assert (await a.get(f"{HOLDS}/{hold_id}")).json()["state"] == "release_pending"  # still active

        # B approves: released, for good
        r = await b.post(f"{url}/approve")
        assert r.status_code == 200, r.text
        released = r.json()
        assert released["state"] == "released" and released["released_by"] == "co.qian" and released["released_at"]
        assert released["release_requested_by"] == "co.sun" and released["release_reason"] == "court order 88"
        assert (await b.post(f"{url}/approve")).json()["code"] == "conflict"
        assert (await a.post(url, json={"reason": "again"})).json()["code"] == "conflict"
        assert (await a.post(f"{url}/reject")).json()["code"] == "conflict"
        assert [h["hold_id"] for h in (await a.get(HOLDS, params={"state": "released"})).json()["holds"]] == [hold_id]
        assert (await a.get(HOLDS, params={"state": "active"})).json()["holds"] == []

    trail = await _hold_audit(node, hold_id)
    assert [(action, actor, reason) for action, actor, reason, _ in trail] == [
        ("hold.placed", "co.sun", None),
        ("hold.release_requested", "co.sun", "case closed"),
        ("hold.release_rejected", "co.sun", "case closed"),
        ("hold.release_requested", "co.sun", "closed, really"),
        ("hold.release_rejected", "co.qian", "closed, really"),
        ("hold.release_requested", "co.sun", "court order 88"),
        ("hold.released", "co.qian", "court order 88"),
    ]
    assert [d.get("withdrawn") for action, _, _, d in trail if action == "hold.release_rejected"] == [True, False]
    assert trail[-1][3]["requested_by"] == "co.sun" and trail[-1][3]["custodian"] == "c.zhang"
    # and the chain still verifies with them in it
    assert (await audit.verify(node.hub)).ok
    # holds are never deleted, not even by the database role that owns them
    conn = await asyncpg.connect(node.hub.settings.database_url)
    try:
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("DELETE FROM legal_holds WHERE id = $1", uuid.UUID(hold_id))
        with pytest.raises(asyncpg.RestrictViolationError):  # nor brought back to life
            await conn.execute("UPDATE legal_holds SET released_at = NULL, released_by = NULL WHERE id = $1", uuid.UUID(hold_id))
    finally:
        await conn.close()


async def test_the_approver_and_the_requester_are_checked_when_deciding(node: RunningNode) -> None:
    sun, qian = await login(node, "co.sun"), await login(node, "co.qian")
    async with _client(node, sun) as a:
        hold_id = (await a.post(HOLDS, json={"name": "audit 5", "custodian": "c.zhou"})).json()["hold_id"]
        assert (await a.post(f"{HOLDS}/{hold_id}/release", json={"reason": "done"})).status_code == 202
    # the requester left compliance after asking: their request cannot be approved any more
    sun_user = await node.hub.users.by_username("co.sun")
    qian_user = await node.hub.users.by_username("co.qian")
    assert sun_user is not None and qian_user is not None
    conn = await asyncpg.connect(node.hub.settings.database_url)
    try:
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'co.sun'")
        with pytest.raises(ActionError) as refused:
            await hold_actions.approve_release(node.hub, qian_user, hold_id)
        assert refused.value.code == "conflict"
        # an approver disabled after signing in is refused by the deciding transaction itself
        await conn.execute("UPDATE users SET disabled = false WHERE username = 'co.sun'")
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'co.qian'")
        with pytest.raises(ActionError) as refused:
            await hold_actions.approve_release(node.hub, qian_user, hold_id)  # qian_user: as read before
        assert refused.value.code == "forbidden"
        await conn.execute("UPDATE users SET disabled = false WHERE username = 'co.qian'")
    finally:
        await conn.close()
    assert (await hold_actions.get(node.hub, sun_user, hold_id)).state == "release_pending"
    assert (await hold_actions.approve_release(node.hub, qian_user, hold_id)).state == "released"


async def test_shredding_refuses_a_held_conversation_and_says_which_hold(node: RunningNode, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    await _send(node, li, conv, ["evidence 1", "evidence 2"])
    sun_user, qian_user = await node.hub.users.by_username("co.sun"), await node.hub.users.by_username("co.qian")
    assert sun_user is not None and qian_user is not None

    # a hold whose range ends before the messages covers nothing here: no refusal for it
    past = await hold_actions.place(node.hub, sun_user, name="old matter", custodian="c.li", to_at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    # a custodian hold on the customer covers the conversation
    hold = await hold_actions.place(node.hub, sun_user, name="AML case 17", case_ref="AML-17", custodian="c.li")

    with pytest.raises(ConversationHeld) as refused:
        await shred_conversation(node.hub.db, conv)
    assert [h.hold_id for h in refused.value.holds] == [hold.hold_id]
    assert hold.hold_id in str(refused.value) and past.hold_id not in str(refused.value)

    # the command: a clear message naming the hold, exit 1, no traceback
    code, out, err = await _shred_cli(dsn, conv)
    assert code == 1, (out, err)
    assert "under legal hold" in err and hold.hold_id in err and "AML case 17" in err and "AML-17" in err
    assert "Traceback" not in err and past.hold_id not in err

    # nothing was destroyed or recorded as shredded
    async with _client(node, li) as http:
        r = await http.get(f"/v1/conversations/{conv}/messages")
        assert [m["body"]["text"] for m in sorted(r.json()["messages"], key=lambda m: m["seq"])] == ["evidence 1", "evidence 2"]
    assert not await node.hub.audit.recent(action=audit.KEYS_SHREDDED)
    # but each refusal is: which conversation, which holds
    refusals = await node.hub.audit.recent(action=audit.HOLD_SHRED_REFUSED)
    assert [(r.target, r.details["hold_ids"]) for r in refusals] == [(f"conversation:{conv}", [hold.hold_id])] * 2

    # released by two officers: it protects nothing any more, and the shred goes through
    await hold_actions.request_release(node.hub, sun_user, hold.hold_id, "case closed")
    with pytest.raises(ConversationHeld):  # still active while the release waits
        await shred_conversation(node.hub.db, conv)
    await hold_actions.approve_release(node.hub, qian_user, hold.hold_id)
    code, out, err = await _shred_cli(dsn, conv)
    assert code == 0 and "shredded" in out, (out, err)
    assert await shred_conversation(node.hub.db, conv) == "already_shredded"


async def test_a_custodian_hold_covers_conversations_they_left(node: RunningNode) -> None:
    wang = await login(node, "rm.wang")
    zhao = await login(node, "agent.zhao")
    async with _client(node, wang) as w, _client(node, zhao) as z:
        r = await w.post("/v1/groups", json={"title": "desk handover", "members": ["agent.zhao"]})
        assert r.status_code == 201, r.text
        group = r.json()["conversation_id"]
        assert (await z.post(f"/v1/groups/{group}/leave")).status_code == 200
    await _send(node, wang, group, ["after zhao left"])
    sun_user = await node.hub.users.by_username("co.sun")
    assert sun_user is not None
    hold = await hold_actions.place(node.hub, sun_user, name="desk review", custodian="agent.zhao")
    with pytest.raises(ConversationHeld) as refused:
        await shred_conversation(node.hub.db, group)
    assert [h.hold_id for h in refused.value.holds] == [hold.hold_id]
    # a custodian who was never in a conversation does not hold it
    other = await open_direct(node, await login(node, "c.zhou"), "rm.chen")
    await _send(node, await login(node, "c.zhou"), other, ["unrelated"])
    assert await shred_conversation(node.hub.db, other) == "shredded"


async def test_the_sql_rule_is_the_pure_rule(node: RunningNode) -> None:
    """HELD_MESSAGE_SQL (what purge embeds) agrees with compliance.holds.holds_message,
    clause by clause, at the range boundaries (from inclusive, to exclusive)."""
    li, zhang = await login(node, "c.li"), await login(node, "c.zhang")
    li_conv, zhang_conv = await open_direct(node, li, "rm.wang"), await open_direct(node, zhang, "rm.wang")
    await _send(node, li, li_conv, ["one", "two", "three"])
    await _send(node, zhang, zhang_conv, ["four"])
    users = {u: (await node.hub.users.by_username(u)).id for u in ("c.li", "c.zhang", "rm.wang", "c.zhou")}  # type: ignore[union-attr]
    sun_user = await node.hub.users.by_username("co.sun")
    assert sun_user is not None
    conn = await asyncpg.connect(node.hub.settings.database_url)
    try:
        messages = await conn.fetch(
            "SELECT id, conversation_id, seq, created_at FROM messages WHERE conversation_id = ANY($1::uuid[]) AND kind = 'text'",
            [uuid.UUID(li_conv), uuid.UUID(zhang_conv)],
        )
        ever = {
            str(c): {str(r["user_id"]) for r in await conn.fetch("SELECT user_id FROM membership_log WHERE conversation_id = $1", c)}
            for c in {m["conversation_id"] for m in messages}
        }
        times = sorted(m["created_at"] for m in messages)
        by_text = {m["id"]: t for m, t in zip(sorted(messages, key=lambda m: m["created_at"]), ["one", "two", "three", "four"])}
        scopes = [  # with the texts each must hold
            (HoldScope(users["c.li"], None), {"one", "two", "three"}),
            (HoldScope(users["rm.wang"], None), {"one", "two", "three", "four"}),
            (HoldScope(users["c.zhou"], None), set()),
            (HoldScope(None, zhang_conv), {"four"}),
            (HoldScope(users["c.zhang"], li_conv), set()),
            # exactly the second message's instant .. the third's: from inclusive, to exclusive
            (HoldScope(users["c.li"], li_conv, times[1], times[2]), {"two"}),
            (HoldScope(None, li_conv, None, times[1]), {"one"}),
            (HoldScope(None, li_conv, times[2], None), {"three"}),
        ]
        for scope, expected in scopes:
            placed = await hold_actions.place(
                node.hub, sun_user, name="probe",
                custodian=next((u for u, i in users.items() if i == scope.custodian_id), None),
                conversation_id=scope.conversation_id, from_at=scope.from_at, to_at=scope.to_at,
            )
            sql_held = {
                r["id"]
                for r in await conn.fetch(
                    f"SELECT m.id FROM messages m WHERE m.conversation_id = ANY($1::uuid[]) AND m.kind = 'text' AND ({HELD_MESSAGE_SQL})",
                    [uuid.UUID(li_conv), uuid.UUID(zhang_conv)],
                )
            }
            pure_held = {
                m["id"]
                for m in messages
                if holds_message(scope, conversation_id=str(m["conversation_id"]), created_at=m["created_at"], ever_members=ever[str(m["conversation_id"])])
            }
            assert sql_held == pure_held, scope
            assert {by_text[i] for i in sql_held} == expected, scope
            # release it (two officers, straight in the database: only the rule is under test here)
            await conn.execute(
                "UPDATE legal_holds SET release_requested_by = $2, release_requested_at = now(), release_reason = 'probe', "
                "released_by = (SELECT id FROM users WHERE username = 'co.qian'), released_at = now() WHERE id = $1",
                uuid.UUID(placed.hold_id), uuid.UUID(sun_user.id),
            )
            assert not await conn.fetch(f"SELECT 1 FROM messages m WHERE ({HELD_MESSAGE_SQL})")  # a released hold holds nothing
    finally:
        await conn.close()
    assert len(times) == 4 and times[1] < times[2]


async def test_a_hold_cannot_interleave_with_a_purge_batch_or_a_shred(node: RunningNode) -> None:
    """A purge batch (any transaction holding the holds lock shared) that started before a
    hold finishes first: the hold waits for it. A shred that starts while a hold is being
    placed waits, then sees the hold."""
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    await _send(node, li, conv, ["held soon"])
    sun_user = await node.hub.users.by_username("co.sun")
    assert sun_user is not None
    dsn = node.hub.settings.database_url

    batch = await asyncpg.connect(dsn)
    try:
        async with batch.transaction():
            await lock_holds_shared_txn(batch)
            assert await holds_covering_conversation_txn(batch, conv) == []  # the batch's check: nothing held
            placing = asyncio.create_task(hold_actions.place(node.hub, sun_user, name="late", conversation_id=conv))
            await asyncio.sleep(0.5)
            assert not placing.done()  # the hold waits for the batch...
            assert await holds_covering_conversation_txn(batch, conv) == []  # ...which still sees no hold
        hold = await asyncio.wait_for(placing, 10)  # the batch committed: now the hold commits
        async with batch.transaction():
            await lock_holds_shared_txn(batch)
            assert [h.hold_id for h in await holds_covering_conversation_txn(batch, conv)] == [hold.hold_id]
    finally:
        await batch.close()

    # the other way round: a hold being placed (the exclusive lock held, its row not yet
    # committed) makes a shred wait; once it commits the shred sees it and refuses
    other = await open_direct(node, await login(node, "c.zhang"), "rm.wang")
    await _send(node, await login(node, "c.zhang"), other, ["also held soon"])
    placer = await asyncpg.connect(dsn)
    try:
        tx = placer.transaction()
        await tx.start()
        await lock_holds_exclusive_txn(placer)
        await placer.execute(
            "INSERT INTO legal_holds (id, name, conversation_id, created_by) VALUES ($1, 'in flight', $2, $3)",
            uuid.uuid4(), uuid.UUID(other), uuid.UUID(sun_user.id),
        )
        shredding = asyncio.create_task(shred_conversation(node.hub.db, other))
        await asyncio.sleep(0.5)
        assert not shredding.done()
        await tx.commit()
        with pytest.raises(ConversationHeld):
            await asyncio.wait_for(shredding, 10)
    finally:
        await placer.close()


async def _holds_cli(dsn: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "BANKHUB_DATABASE_URL": dsn}
    proc = await asyncio.create_subprocess_exec(
        str(BANKHUB), "holds", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_holds_command_acts_as_an_officer_under_the_same_rules(node: RunningNode, dsn: str) -> None:
    code, out, err = await _holds_cli(dsn, "place", "--as", "co.sun", "--name", "AML 21", "--custodian", "c.li", "--from", "2026-01-01T00:00:00Z")
    assert code == 0, (out, err)
    hold_id = out.splitlines()[1].split()[0]
    assert "custodian c.li" in out and "active" in out
    # a non-officer, an unknown custodian, a bad time: refused or not run, one line, no traceback
    for args, want, text in (
        (("place", "--as", "ho.admin", "--name", "x", "--custodian", "c.li"), 1, "compliance officers"),
        (("place", "--as", "co.sun", "--name", "x", "--custodian", "no.such.user"), 1, "no user"),
        (("place", "--as", "co.sun", "--name", "x", "--custodian", "c.li", "--from", "yesterday"), 2, "RFC 3339"),
        (("list", "--as", "c.li"), 1, "compliance officers"),
    ):
        code, out, err = await _holds_cli(dsn, *args)
        assert code == want and text in err and "Traceback" not in err, (args, out, err)

    assert (await _holds_cli(dsn, "release", "--as", "co.sun", "--hold", hold_id, "--reason", "closed"))[0] == 0
    # dual control: whoever runs the command names the officer, so it never approves, as anyone
    for who in ("co.sun", "co.qian"):
        code, out, err = await _holds_cli(dsn, "approve", "--as", who, "--hold", hold_id)
        assert code == 1 and "compliance console" in err and "cannot approve" in err, (out, err)
    code, out, _ = await _holds_cli(dsn, "list", "--as", "co.qian", "--state", "release_pending")
    assert code == 0 and hold_id in out and "release requested by co.sun" in out
    # the second officer approves signed in, through the HTTP API
    async with _client(node, await login(node, "co.qian")) as b:
        r = await b.post(f"{HOLDS}/{hold_id}/release/approve")
        assert r.status_code == 200 and r.json()["state"] == "released", r.text
    code, out, _ = await _holds_cli(dsn, "list", "--as", "co.qian", "--state", "released")
    assert code == 0 and hold_id in out and "released by co.qian" in out
    trail = await _hold_audit(node, hold_id)
    assert [(action, actor) for action, actor, _, _ in trail] == [
        ("hold.placed", "co.sun"), ("hold.release_requested", "co.sun"), ("hold.released", "co.qian")
    ]
    # what the command line did says so, and which operating-system user ran it
    assert [(d.get("via"), bool(d.get("os_user"))) for _, _, _, d in trail] == [("cli", True), ("cli", True), (None, False)]


async def test_a_release_request_past_its_ttl_is_not_approved(nodes: Nodes) -> None:
    node = await nodes.start(hold_release_ttl_hours=1)
    async with _client(node, await login(node, "co.sun")) as a, _client(node, await login(node, "co.qian")) as b:
        hold_id = (await a.post(HOLDS, json={"name": "stale 1", "custodian": "c.li"})).json()["hold_id"]
        url = f"{HOLDS}/{hold_id}/release"
        assert (await a.post(url, json={"reason": "closed"})).status_code == 202
        conn = await asyncpg.connect(node.hub.settings.database_url)
        try:
            await conn.execute(
                "UPDATE legal_holds SET release_requested_at = now() - interval '61 minutes' WHERE id = $1", uuid.UUID(hold_id)
            )
        finally:
            await conn.close()
        r = await b.post(f"{url}/approve")
        assert r.status_code == 409 and r.json()["code"] == "conflict" and "expired" in r.json()["detail"], r.text
        assert (await b.get(f"{HOLDS}/{hold_id}")).json()["state"] == "release_pending"  # still protects everything
        # rejected and asked again: a fresh request is approved
        assert (await b.post(f"{url}/reject")).status_code == 200
        assert (await a.post(url, json={"reason": "closed, again"})).status_code == 202
        r = await b.post(f"{url}/approve")
        assert r.status_code == 200 and r.json()["state"] == "released", r.text
