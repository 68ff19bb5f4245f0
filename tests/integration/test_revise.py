"""Recall and edit of one's own message, end to end: real gateway, Postgres and outbox.

A recall or edit is a message of its own in the seq stream (live and through ``sync``);
the target row reads as its current body in history; the replaced text is kept sealed in
``message_revisions`` and shown only by the reason-coded, audited compliance path.
"""

from __future__ import annotations

import datetime as dt
import types
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub.actions.keys import shred_conversation
from bankhub.runner import RunningNode
from bankhub.storage import messages as messages_storage

from ..conftest import Nodes, login, open_direct
from .test_audit import bankhub, dsn_as
from ..support.wsclient import RawClient

SECRET = "my PIN is 4321, sorry"


class _ClockOff:
    """A node's wall clock ``offset`` seconds off the true time: ``module`` stands in for
    the ``datetime`` module of the code under test."""

    def __init__(self, offset: float) -> None:
        delta = dt.timedelta(seconds=offset)

        class _DateTime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> Any:
                return dt.datetime.now(tz) + delta

        self.module = types.SimpleNamespace(**{k: getattr(dt, k) for k in dir(dt) if not k.startswith("__")})
        self.module.datetime = _DateTime
        self._delta = delta

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self._delta


async def _history(node: RunningNode, token: str, conv: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.get(f"/v1/conversations/{conv}/messages", params={"limit": 200})
        assert r.status_code == 200, r.text
        return sorted(r.json()["messages"], key=lambda m: m["seq"])


async def _pair(node: RunningNode) -> tuple[str, RawClient, RawClient, str]:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    return conv, li, wang, li_token


async def _send(c: RawClient, conv: str, text: str) -> dict[str, Any]:
    sent = await c.expect("sent", frame_id=await c.send_text(conv, text))
    return sent


def _edit(conv: str, mid: str, text: str, cmid: str | None = None) -> dict[str, Any]:
    return {
        "type": "edit",
        "conversation_id": conv,
        "message_id": mid,
        "client_msg_id": cmid or f"e-{uuid.uuid4()}",
        "body": {"kind": "text", "text": text},
    }


def _recall(conv: str, mid: str) -> dict[str, Any]:
    return {"type": "recall", "conversation_id": conv, "message_id": mid}


async def _age(dsn: str, message_id: str, seconds: float) -> None:
    """Move a message's commit time ``seconds`` into the past: time passing, as the
    database's clock (the one the windows are measured by) sees it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE messages SET created_at = created_at - make_interval(secs => $2) WHERE id = $1",
            uuid.UUID(message_id),
            seconds,
        )
    finally:
        await conn.close()


async def test_edit_and_recall_reach_the_other_side_live_and_history_shows_the_current_body(node: RunningNode) -> None:
    conv, li, wang, li_token = await _pair(node)
    assert "edit" in li.hello["features"]
    first = await _send(li, conv, "see you at 3pm")
    second = await _send(li, conv, SECRET)
    assert [m["message_id"] for m in await wang.messages(2)] == [first["message_id"], second["message_id"]]

    edited = await li.request(_edit(conv, first["message_id"], "see you at 4pm"))
    assert edited["type"] == "sent" and edited["seq"] == second["seq"] + 1 and not edited.get("duplicate")
    [live] = await wang.messages(1)
    assert live["seq"] == edited["seq"] and live["sender_id"] == li.hello["user_id"]
    assert live["body"] == {"kind": "edit", "message_id": first["message_id"], "body": {"kind": "text", "text": "see you at 4pm"}}

    recalled = await li.request(_recall(conv, second["message_id"]))
    assert recalled["type"] == "sent" and recalled["seq"] == edited["seq"] + 1
    [live] = await wang.messages(1)
    assert live["body"] == {"kind": "recall", "message_id": second["message_id"]}

    # history: the targets read as their current body; the change messages follow in the stream
    wang_token = await login(node, "rm.wang")
    history = await _history(node, wang_token, conv)
    assert [m["seq"] for m in history] == list(range(1, recalled["seq"] + 1))  # gap-free
    by_id = {m["message_id"]: m for m in history}
    assert by_id[first["message_id"]]["body"] == {"kind": "text", "text": "see you at 4pm"}
    assert by_id[first["message_id"]]["edited_ts"] == edited["ts"]  # the edit message's time
    assert by_id[second["message_id"]]["body"] == {"kind": "recalled"}
    assert "edited_ts" not in by_id[second["message_id"]]
    assert SECRET not in str(history) and "3pm" not in str(history)

    # sync from scratch carries the same
    synced = await wang.request({"type": "sync", "since": {}})
    [entry] = [c for c in synced["conversations"] if c["conversation_id"] == conv]
    assert [m["body"]["kind"] for m in entry["messages"]][-2:] == ["edit", "recall"]
    assert {m["message_id"]: m["body"] for m in entry["messages"]}[second["message_id"]] == {"kind": "recalled"}
    assert SECRET not in str(synced)
    # and a sync from before the changes
    resumed = await wang.request({"type": "sync", "since": {conv: second["seq"]}, "listed_only": True})
    assert [m["body"]["kind"] for m in resumed["conversations"][0]["messages"]] == ["edit", "recall"]
    for c in (li, wang):
        await c.close()


async def test_a_later_recall_rewrites_earlier_edit_messages_of_the_same_target(node: RunningNode) -> None:
    conv, li, wang, li_token = await _pair(node)
    sent = await _send(li, conv, "draft one")
    e1 = await li.request(_edit(conv, sent["message_id"], "draft two"))
    e2 = await li.request(_edit(conv, sent["message_id"], "draft three"))
    history = await _history(node, li_token, conv)
    # an older edit message never shows a replaced text: it carries the current body
    assert [m["body"] for m in history if m["seq"] in (e1["seq"], e2["seq"])] == [
        {"kind": "edit", "message_id": sent["message_id"], "body": {"kind": "text", "text": "draft three"}}
    ] * 2
    await li.request(_recall(conv, sent["message_id"]))
    history = await _history(node, li_token, conv)
    assert "draft" not in str(history)
    assert [m["body"] for m in history if m["seq"] in (e1["seq"], e2["seq"])] == [
        {"kind": "edit", "message_id": sent["message_id"], "body": {"kind": "recalled"}}
    ] * 2
    for c in (li, wang):
        await c.close()


async def test_edit_is_idempotent_and_a_resent_recall_is_answered_not_repeated(node: RunningNode) -> None:
    conv, li, wang, _ = await _pair(node)
    sent = await _send(li, conv, "hello")
    frame = _edit(conv, sent["message_id"], "hello there", cmid="edit-1")
    first = await li.request(frame)
    again = await li.request(frame)
    assert again["duplicate"] is True and again["seq"] == first["seq"] and again["message_id"] == first["message_id"]
    r1 = await li.request(_recall(conv, sent["message_id"]))
    r2 = await li.request(_recall(conv, sent["message_id"]))
    assert r2["duplicate"] is True and r2["seq"] == r1["seq"] and r2["message_id"] == r1["message_id"]
    # no message was stored for the resends
    after = await _send(li, conv, "next")
    assert after["seq"] == r1["seq"] + 1
    # an edit of a recalled message is refused
    refused = await li.request(_edit(conv, sent["message_id"], "back again"))
    assert refused["type"] == "error" and refused["code"] == "forbidden" and "recalled" in refused["message"]
    for c in (li, wang):
        await c.close()


async def test_refusals_someone_elses_message_after_the_window_system_unknown(node: RunningNode, dsn: str) -> None:
    conv, li, wang, _ = await _pair(node)
    mine = await _send(li, conv, "mine")
    theirs = await _send(wang, conv, "theirs")
    # someone else's message: forbidden, nothing stored
    for frame in (_recall(conv, theirs["message_id"]), _edit(conv, theirs["message_id"], "hijacked")):
        err = await li.request(frame)
        assert err["type"] == "error" and err["code"] == "forbidden" and "sender" in err["message"]
    # unknown message, malformed ids, a conversation I am not in
    for frame in (
        _recall(conv, str(uuid.uuid4())),
        _recall(conv, "not-a-uuid"),
        _recall("nope", mine["message_id"]),
        _recall(str(uuid.uuid4()), mine["message_id"]),
    ):
        err = await li.request(frame)
        assert err["type"] == "error" and err["code"] == "not_found", err
    # a message of another conversation is not found here
    zhang = await login(node, "c.zhang")
    other = await open_direct(node, zhang, "rm.wang")
    zc = await RawClient.connect(node.ws_url, zhang)
    elsewhere = await _send(zc, other, "zhang's")
    err = await zc.request(_recall(other, mine["message_id"]))
    assert err["code"] == "not_found"
    err = await li.request(_recall(conv, elsewhere["message_id"]))
    assert err["code"] == "not_found"
    # after the window (121 s pass by the database's clock): forbidden, with the window named
    await _age(dsn, mine["message_id"], 121)
    err = await li.request(_recall(conv, mine["message_id"]))
    assert err["type"] == "error" and err["code"] == "forbidden" and "recall window (2 minutes" in err["message"]
    edited = await li.request(_edit(conv, mine["message_id"], "still editable"))
    assert edited["type"] == "sent"
    await _age(dsn, mine["message_id"], 15 * 60 + 1 - 121)
    err = await li.request(_edit(conv, mine["message_id"], "too late"))
    assert err["code"] == "forbidden" and "edit window (15 minutes" in err["message"]
    # an edit message itself is not a target
    err = await li.request(_recall(conv, edited["message_id"]))
    assert err["code"] == "forbidden"
    # nothing but the one edit was stored: seqs stay gap-free
    assert (await _send(li, conv, "last"))["seq"] == edited["seq"] + 1
    # an over-long edit is refused at the boundary
    err = await li.request(_edit(conv, mine["message_id"], "x" * 4001))
    assert err["code"] == "invalid_frame"
    for c in (li, wang, zc):
        await c.close()


async def test_the_windows_run_on_the_database_clock_not_a_nodes(
    node: RunningNode, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv, li, wang, _ = await _pair(node)
    # a node whose clock lags the database's by an hour commits a message: it is stamped by
    # the database, so its sender may still recall it at once (the window does not shrink)
    lagging = _ClockOff(-3600)
    monkeypatch.setattr(messages_storage, "dt", lagging.module)
    early = await _send(li, conv, "sent through a lagging node")
    monkeypatch.setattr(messages_storage, "dt", dt)
    assert abs(early["ts"] / 1000 - dt.datetime.now(dt.timezone.utc).timestamp()) < 60
    assert (await li.request(_recall(conv, early["message_id"])))["type"] == "sent"
    # nor does a lagging node stretch it: 121 s after the commit, a recall through it fails
    late = await _send(li, conv, "recalled too late")
    await _age(dsn, late["message_id"], 121)
    monkeypatch.setattr(node.hub.revisions, "clock", lagging.now, raising=False)  # the node's own clock
    err = await li.request(_recall(conv, late["message_id"]))
    assert err["type"] == "error" and err["code"] == "forbidden" and "recall window" in err["message"]
    for c in (li, wang):
        await c.close()


async def test_original_only_through_the_audited_compliance_path(node: RunningNode, dsn: str) -> None:
    conv, li, wang, li_token = await _pair(node)
    sent = await _send(li, conv, SECRET)
    await li.request(_edit(conv, sent["message_id"], "my PIN is ****"))
    await li.request(_recall(conv, sent["message_id"]))
    # members: never the originals
    assert SECRET not in str(await _history(node, li_token, conv))
    assert "****" not in str(await _history(node, li_token, conv))
    officer = await login(node, "co.sun")
    url = f"/v1/compliance/conversations/{conv}/messages"
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {officer}"}) as http:
        assert (await http.get(url)).status_code == 400  # no reason: nothing shown
        r = await http.get(url, params={"reason": "complaint_investigation", "case_ref": "CASE-7"})
        assert r.status_code == 200, r.text
        page = r.json()
    assert [(v["message_id"], v["revision"], v["kind"], v["body"]) for v in page["revisions"]] == [
        (sent["message_id"], 1, "edit", {"kind": "text", "text": SECRET}),
        (sent["message_id"], 2, "recall", {"kind": "text", "text": "my PIN is ****"}),
    ]
    conn = await asyncpg.connect(dsn)
    try:
        audited = await conn.fetch("SELECT target, reason FROM audit_log WHERE action = 'privileged_read'")
        # at rest: sealed, never the text
        stored = await conn.fetch("SELECT body, body_key_id FROM message_revisions")
    finally:
        await conn.close()
    assert [(a["target"], a["reason"]) for a in audited] == [(f"conversation:{conv}", "complaint_investigation")]
    assert len(stored) == 2 and all(s["body_key_id"] == "crev1" and b"PIN" not in s["body"] for s in stored)
    for c in (li, wang):
        await c.close()


async def test_a_kept_body_moved_to_another_revision_row_is_undecryptable(node: RunningNode, dsn: str) -> None:
    conv, li, wang, _ = await _pair(node)
    a = await _send(li, conv, "alpha")
    await li.request(_edit(conv, a["message_id"], "alpha 2"))
    await li.request(_edit(conv, a["message_id"], "alpha 3"))
    conn = await asyncpg.connect(dsn)
    try:
        # copy revision 1's sealed body over revision 2's: bound to its row, it must not open there
        await conn.execute(
            """UPDATE message_revisions SET body = (SELECT body FROM message_revisions WHERE revision = 1)
               WHERE revision = 2"""
        )
    finally:
        await conn.close()
    officer = await login(node, "co.sun")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {officer}"}) as http:
        r = await http.get(f"/v1/compliance/conversations/{conv}/messages", params={"reason": "internal_audit"})
    assert [v["body"] for v in r.json()["revisions"]] == [{"kind": "text", "text": "alpha"}, {"kind": "undecryptable"}]
    for c in (li, wang):
        await c.close()


async def test_shredded_conversation_refuses_changes_and_its_originals_are_gone(node: RunningNode) -> None:
    conv, li, wang, _ = await _pair(node)
    sent = await _send(li, conv, SECRET)
    await li.request(_edit(conv, sent["message_id"], "redacted"))
    assert await shred_conversation(node.hub.db, conv) == "shredded"
    for frame in (_recall(conv, sent["message_id"]), _edit(conv, sent["message_id"], "again")):
        err = await li.request(frame)
        assert err["type"] == "error" and err["code"] == "gone", err
    officer = await login(node, "co.sun")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {officer}"}) as http:
        r = await http.get(f"/v1/compliance/conversations/{conv}/messages", params={"reason": "internal_audit"})
    assert [v["body"] for v in r.json()["revisions"]] == [{"kind": "shredded"}]
    assert SECRET not in r.text
    for c in (li, wang):
        await c.close()


async def test_the_app_role_may_add_kept_texts_but_never_change_or_delete_them(nodes: Nodes, dsn: str) -> None:
    role = f"bankhub_app_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(dsn)
    await owner.execute(f"CREATE ROLE {role} LOGIN")
    try:
        code, out = await bankhub(dsn, "db", "grant-app-role", role)
        assert code == 0 and "message_revisions" in out, out
        nodes.dsn = dsn_as(dsn, role)
        node = await nodes.start("app")
        conv, li, wang, _ = await _pair(node)
        sent = await _send(li, conv, SECRET)
        assert (await li.request(_edit(conv, sent["message_id"], "fixed")))["type"] == "sent"
        for c in (li, wang):
            await c.close()
        app = await asyncpg.connect(nodes.dsn)
        try:
            for sql in ("UPDATE message_revisions SET kind = 'edit'", "DELETE FROM message_revisions", "TRUNCATE message_revisions"):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await app.execute(sql)
        finally:
            await app.close()
        assert await owner.fetchval("SELECT count(*) FROM message_revisions") == 1
    finally:
        await nodes.stop_all()
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()
