"""The SDK's official-account bookkeeping (``bankhub_client.notices``), its notice
frames (``bankhub_client.wire``) and the account calls of ``Api`` over an injected
``httpx.MockTransport``. Pure code: no hub here (``tests/integration/test_sdk_accounts.py``
runs the same against a real node)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import msgspec
import pytest

from bankhub_client import (
    Api,
    ApiError,
    ArticleBody,
    Notice,
    NoticeRecalled,
    Target,
    TextBody,
    UnknownBody,
)
from bankhub_client.notices import NoticeInbox, SyncedAccount
from bankhub_client.wire import (
    AccountReceiptFrame,
    NoticeFrame,
    NoticeRecalledFrame,
    ReadNoticesFrame,
    SyncedFrame,
    SyncFrame,
    WireNotice,
    decode_server_frame,
    encode,
    to_notice,
)


def n(seq: int, account: str = "a1", recalled: bool = False, nid: str | None = None) -> Notice:
    return Notice(
        account_id=account,
        notice_id=nid or f"n{seq}",
        seq=seq,
        ts=seq * 1000,
        body=None if recalled else TextBody(text=f"t{seq}"),
        recalled=recalled,
        recalled_ts=seq * 1000 + 1 if recalled else None,
    )


def r(seq: int, event_seq: int, account: str = "a1") -> NoticeRecalled:
    return NoticeRecalled(account_id=account, notice_id=f"n{seq}", seq=seq, ts=event_seq * 1000, event_seq=event_seq)


def live(cursors: dict[str, int] | None = None) -> NoticeInbox:
    inbox = NoticeInbox(cursors)
    inbox.connection_started(live=True)
    return inbox


# --- live events --------------------------------------------------------------------------


def test_live_notices_advance_the_cursor_and_duplicates_are_dropped() -> None:
    inbox = live({"a1": 2})
    assert inbox.on_event(n(1)) == [] and inbox.on_event(n(2)) == []  # held already
    assert inbox.on_event(n(5)) == [n(5)]  # seqs 3-4 were for others: a gap proves nothing
    assert inbox.on_event(n(5)) == [] and inbox.on_event(n(4)) == []
    assert inbox.get("a1") == 5
    # an account without a cursor takes the first event it sees
    assert inbox.on_event(n(9, "a2")) == [n(9, "a2")]
    assert inbox.snapshot() == {"a1": 5, "a2": 9}


def test_a_recall_is_handed_out_once_and_moves_the_cursor_to_its_event_seq() -> None:
    inbox = live({"a1": 3})
    assert inbox.on_event(r(3, 4)) == [r(3, 4)]
    assert inbox.get("a1") == 4
    assert inbox.on_event(r(3, 4)) == []
    # the same notice recalled "again" at a later seq (a stale replay): not twice
    assert inbox.on_event(r(3, 6)) == [] and inbox.get("a1") == 6


def test_events_before_the_first_sync_are_held_then_replayed_without_overlap() -> None:
    inbox = NoticeInbox({"a1": 5})
    inbox.connection_started(live=False)
    # the hub pushes 7 and 8 live while the sync (from 5) is on its way
    assert inbox.on_event(n(7)) == [] and inbox.on_event(n(8)) == []
    assert inbox.held == 2
    synced = inbox.on_synced([SyncedAccount("a1", 7, [n(6), n(7)], has_more=False)])
    assert synced.delivered == [n(6), n(7)] and not synced.more
    # 7 came in the answer too; 8 was committed after the sync read storage
    assert inbox.go_live() == [n(8)]
    assert inbox.live and inbox.held == 0 and inbox.get("a1") == 8
    assert inbox.go_live() == []


def test_a_new_connection_drops_what_was_held_for_the_last_one() -> None:
    inbox = NoticeInbox({"a1": 1})
    inbox.connection_started(live=False)
    inbox.on_event(n(2))
    inbox.connection_started(live=False)  # dropped before its sync answered
    assert inbox.held == 0 and inbox.get("a1") == 1  # the next sync starts from 1 again


# --- sync ------------------------------------------------------------------------------


def test_sync_pages_until_every_account_is_caught_up() -> None:
    inbox = NoticeInbox({"a1": 0})
    first = inbox.on_synced(
        [SyncedAccount("a1", 2, [n(1), n(2)], True), SyncedAccount("a2", 4, [n(4, "a2")], False)]
    )
    assert first.more and first.delivered == [n(1), n(2), n(4, "a2")]
    assert inbox.snapshot() == {"a1": 2, "a2": 4}
    second = inbox.on_synced([SyncedAccount("a1", 4, [n(4)], False), SyncedAccount("a2", 4, [], False)])
    assert not second.more and second.delivered == [n(4)]
    # has_more without progress (a stale answer) does not loop forever
    assert not inbox.on_synced([SyncedAccount("a1", 3, [], True)]).more
    assert inbox.get("a1") == 4


def test_sync_reports_recalls_of_held_notices_and_withdrawn_new_ones() -> None:
    inbox = NoticeInbox({"a1": 3})
    got = inbox.on_synced(
        [SyncedAccount("a1", 6, [n(2, recalled=True), n(4), n(5, recalled=True)], False)]
    )
    # 2 was held: its recall; 4 is new; 5 was recalled before I got it: a withdrawn notice
    assert got.delivered == [
        NoticeRecalled(account_id="a1", notice_id="n2", seq=2, ts=2001),
        n(4),
        n(5, recalled=True),
    ]
    # the same recalls again (from another answer or live): not twice
    again = inbox.on_synced([SyncedAccount("a1", 6, [n(2, recalled=True), n(5, recalled=True)], False)])
    assert again.delivered == []
    assert inbox.go_live() == [] and inbox.on_event(r(5, 7)) == [] and inbox.get("a1") == 7


def test_a_sync_overlapping_live_events_on_a_live_connection() -> None:
    inbox = live({"a1": 5})
    assert inbox.on_event(n(6)) == [n(6)]
    # an answer for (5, 8]: 6 came live, 7 is the recall of 6, 8 is new
    got = inbox.on_synced([SyncedAccount("a1", 8, [n(6, recalled=True), n(8)], False)])
    assert got.delivered == [NoticeRecalled(account_id="a1", notice_id="n6", seq=6, ts=6001), n(8)]
    assert inbox.on_event(r(6, 7)) == [] and inbox.on_event(n(8)) == []


def test_forget_and_validation() -> None:
    inbox = NoticeInbox({"a1": 3})
    inbox.forget("a1")
    assert inbox.get("a1") is None and inbox.snapshot() == {}
    with pytest.raises(ValueError):
        inbox.seed("a1", -1)
    with pytest.raises(ValueError):
        NoticeInbox(recall_memory=0)
    inbox.connection_started(live=True)
    with pytest.raises(ValueError):
        inbox.on_event(NoticeRecalled(account_id="a1", notice_id="x", seq=1, ts=0))


def test_recall_memory_is_bounded() -> None:
    inbox = NoticeInbox(recall_memory=2)
    inbox.connection_started(live=True)
    for i in range(1, 4):
        assert inbox.on_event(r(i, 10 + i)) == [r(i, 10 + i)]
    # the oldest is forgotten: only a stale event for it could be handed out again
    assert len(inbox._recalled) == 2


# --- wire ------------------------------------------------------------------------------


def wire_notice(obj: dict[str, Any]) -> WireNotice:
    return msgspec.json.decode(json.dumps(obj), type=WireNotice)


def test_notice_frames_decode_leniently() -> None:
    article = {"kind": "article", "title": "New card", "summary": "s", "action_url": "bankhub://cards"}
    frame = decode_server_frame(
        json.dumps({"type": "notice", "notice": {"account_id": "a1", "notice_id": "x", "seq": 3, "ts": 9, "body": article, "new": 1}})
    )
    assert isinstance(frame, NoticeFrame)
    notice = to_notice(frame.notice)
    assert notice.body == ArticleBody(title="New card", summary="s", action_url="bankhub://cards")
    assert notice.text == "New card" and not notice.recalled
    video = to_notice(wire_notice({"account_id": "a1", "notice_id": "y", "seq": 4, "ts": 9, "body": {"kind": "video", "url": "u"}}))
    assert isinstance(video.body, UnknownBody) and video.body.kind == "video" and video.text is None
    withdrawn = to_notice(wire_notice({"account_id": "a1", "notice_id": "z", "seq": 5, "ts": 9, "recalled": True, "recalled_ts": 10}))
    assert withdrawn.body is None and withdrawn.recalled and withdrawn.recalled_ts == 10
    recalled = decode_server_frame(b'{"type":"notice_recalled","account_id":"a1","notice_id":"x","seq":3,"event_seq":6,"ts":1}')
    assert isinstance(recalled, NoticeRecalledFrame) and recalled.event_seq == 6
    receipt = decode_server_frame(b'{"type":"account_receipt","account_id":"a1","read_seq":3,"unread":0,"id":"n1"}')
    assert isinstance(receipt, AccountReceiptFrame) and receipt.id == "n1"
    synced = decode_server_frame(b'{"type":"synced","id":"y1","conversations":[]}')  # a hub without accounts
    assert isinstance(synced, SyncedFrame) and synced.accounts == []


def test_client_frames_encode_as_the_hub_expects() -> None:
    assert json.loads(encode(SyncFrame(id="y1", since={}, limit=100, accounts={"a1": 4}))) == {
        "type": "sync", "id": "y1", "since": {}, "limit": 100, "accounts": {"a1": 4}
    }
    assert "accounts" not in json.loads(encode(SyncFrame(id="y1", since={}, limit=100)))
    assert json.loads(encode(ReadNoticesFrame(id="n1", account_id="a1", seq=3))) == {
        "type": "read_notices", "id": "n1", "account_id": "a1", "seq": 3
    }


# --- Api (httpx.MockTransport) ----------------------------------------------------------

ACCOUNT = {"id": "a1", "handle": "bank.service", "name": "Service", "description": "", "audience": "customer",
           "is_default": True, "requires_approval": False, "following": True}
RECORD = {"id": "n1", "account_id": "a1", "status": "published", "body": {"kind": "text", "text": "hi"},
          "target": {"org_ids": ["o1"]}, "author_id": "u1", "created_at": "2030-01-01T09:00:00Z", "seq": 1,
          "approved_by": None, "rejected_by": None, "scheduled_at": None, "published_at": "2030-01-01T09:00:00Z",
          "recall_seq": None, "recalled_at": None, "recalled_by": None, "recall_reason": None, "delivered_online": 0}


async def test_account_calls_build_requests_and_decode_answers() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, str(request.url.copy_with(scheme="http", host="h")).removeprefix("http://h"), body))
        path, method = request.url.path, request.method
        if path == "/v1/accounts" and method == "GET":
            return httpx.Response(200, json={"accounts": [ACCOUNT]})
        if path == "/v1/me/accounts":
            return httpx.Response(200, json={"accounts": [{"account": ACCOUNT, "last_seq": 5, "read_seq": 2, "unread": 3}]})
        if path == "/v1/accounts/a1/follow":
            return httpx.Response(204) if method == "DELETE" else httpx.Response(200, json=ACCOUNT)
        if path == "/v1/accounts/a1/notices" and method == "GET":
            return httpx.Response(200, json={"has_more": True, "notices": [
                {"account_id": "a1", "notice_id": "n2", "seq": 2, "ts": 2, "recalled": True, "recalled_ts": 3},
                {"account_id": "a1", "notice_id": "n1", "seq": 1, "ts": 1, "body": {"kind": "text", "text": "one"}}]})
        if path == "/v1/accounts/a1/read":
            return httpx.Response(200, json={"account_id": "a1", "read_seq": 5, "unread": 0})
        if path in ("/v1/accounts/a1/notices", "/v1/notices/n1/approve", "/v1/notices/n1/recall"):
            return httpx.Response(201 if path == "/v1/accounts/a1/notices" else 200, json=RECORD)
        if path == "/v1/accounts/a1/outbox":
            return httpx.Response(200, json={"notices": [RECORD]})
        if path == "/v1/notices/n1/stats":
            stats = {"notice_id": "n1", "status": "published", "targeted_followers": 2, "delivered_online": 3, "read": 1}
            return httpx.Response(200, json={"notice": RECORD, "stats": stats})
        if path == "/v1/notices/n9/reject":
            return httpx.Response(409, json={"status": 409, "code": "conflict", "detail": "not pending"})
        return httpx.Response(404)

    async with Api("http://hub.test", "tok", transport=httpx.MockTransport(handler)) as api:
        assert [a.handle for a in await api.accounts("bank")] == ["bank.service"]
        mine = await api.my_accounts()
        assert (mine[0].account.id, mine[0].unread, mine[0].last_seq) == ("a1", 3, 5)
        assert (await api.follow("a1")).following is True
        await api.unfollow("a1")
        page = await api.notices("a1", before_seq=3, limit=2)
        assert page.has_more and [(x.seq, x.text, x.recalled) for x in page.notices] == [(2, None, True), (1, "one", False)]
        assert (await api.read_notices("a1", 99)).read_seq == 5
        at = dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)
        record = await api.publish_notice("a1", "hi", target=Target(org_codes=["BJ"], tags=["vip"]), scheduled_at=at)
        assert record.body == TextBody(text="hi") and record.seq == 1 and record.target.org_ids == ["o1"]
        assert record.created_at == at
        await api.publish_notice("a1", ArticleBody(title="T", action_url="https://x.example"))
        assert (await api.approve_notice("n1")).status == "published"
        await api.recall_notice("n1", "wrong rate")
        assert [x.id for x in await api.outbox("a1", status="published")] == ["n1"]
        assert (await api.notice_stats("n1")).delivered_online == 3
        with pytest.raises(ApiError) as err:
            await api.reject_notice("n9")
        assert (err.value.status, err.value.code) == (409, "conflict")
        with pytest.raises(ValueError):
            await api.publish_notice("a1", "x", scheduled_at=dt.datetime(2030, 1, 1, 9))  # naive: ambiguous
    assert seen == [
        ("GET", "/v1/accounts?q=bank&limit=200", None),  # every page: limit=200 until next_cursor is null
        ("GET", "/v1/me/accounts?limit=200", None),
        ("PUT", "/v1/accounts/a1/follow", None),
        ("DELETE", "/v1/accounts/a1/follow", None),
        ("GET", "/v1/accounts/a1/notices?limit=2&before_seq=3", None),
        ("PUT", "/v1/accounts/a1/read", {"seq": 99}),
        ("POST", "/v1/accounts/a1/notices", {"body": {"kind": "text", "text": "hi"},
                                             "target": {"org_codes": ["BJ"], "tags": ["vip"]},
                                             "scheduled_at": "2030-01-01T09:00:00Z"}),
        ("POST", "/v1/accounts/a1/notices", {"body": {"kind": "article", "title": "T", "action_url": "https://x.example"}}),
        ("POST", "/v1/notices/n1/approve", None),
        ("POST", "/v1/notices/n1/recall", {"reason": "wrong rate"}),
        ("GET", "/v1/accounts/a1/outbox?limit=50&status=published", None),
        ("GET", "/v1/notices/n1/stats", None),
        ("POST", "/v1/notices/n9/reject", None),
    ]
