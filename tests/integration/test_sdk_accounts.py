"""Official accounts through the Python SDK against a real node: live notices as typed
events, exactly-once catch-up across cut connections (the connection is cut by a real
TCP proxy, :class:`~tests.support.proxy.CuttableProxy`), recalls, read receipts across
devices, and the administrators' calls (publish, maker-checker, recall, figures)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from bankhub.runner import RunningNode
from bankhub_client import (
    AccountReceipt,
    Api,
    ApiError,
    ArticleBody,
    Client,
    ClientOptions,
    Disconnected,
    Event,
    Notice,
    NoticeRecalled,
    ProtocolError,
    Reconnected,
    ReconnectPolicy,
    Target,
    TextBody,
)

from ..conftest import Nodes, login
from ..support.proxy import CuttableProxy

FAST = ClientOptions(reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.05, max_elapsed=15.0))
WAIT = 10.0  # seconds: the bound on any single wait in these tests


@pytest.fixture
async def proxy(node: RunningNode) -> AsyncIterator[CuttableProxy]:
    p = await CuttableProxy(node.port).start()
    yield p
    await p.close()


async def take(c: Client, n: int, kinds: tuple[type, ...] = (Notice,), timeout: float = WAIT) -> list[Event]:
    """The next ``n`` events of the given kinds (others are skipped)."""
    out: list[Event] = []

    async def run() -> None:
        async for event in c.events():
            if isinstance(event, kinds):
                out.append(event)
                if len(out) >= n:
                    return
        raise AssertionError(f"event stream ended after {out}")

    await asyncio.wait_for(run(), timeout)
    return out


async def until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def next_notice(c: Client) -> Notice:
    (event,) = await take(c, 1)
    assert isinstance(event, Notice)
    return event


async def account_id(api: Api, handle: str) -> str:
    return next(a.id for a in await api.accounts(handle) if a.handle == handle)


async def test_live_notices_arrive_as_typed_events(node: RunningNode) -> None:
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, ho_token) as ho:
        service = await account_id(ho, "bank.service")
        before = await ho.publish_notice(service, "before the client connected")
        async with Client.connect(node.http_url, token=li_token, options=FAST) as li:
            # the snapshot: what was published before is history, not an event
            assert li.account_cursors[service] == before.seq == 1
            text = await ho.publish_notice(service, "Branch closed on Monday", target=Target(org_codes=["BJ"]))
            card = ArticleBody(
                title="New card", summary="Cashback on groceries", action_url="bankhub://cards/apply", action_label="Apply"
            )
            article = await ho.publish_notice(service, card)
            got = await take(li, 2)
            assert [(e.notice_id, e.seq) for e in got if isinstance(e, Notice)] == [(text.id, 2), (article.id, 3)]
            first, second = got
            assert isinstance(first, Notice) and isinstance(second, Notice)
            assert first.account_id == service and first.body == TextBody(text="Branch closed on Monday")
            assert first.text == "Branch closed on Monday" and not first.recalled
            assert second.body == card and second.text == "New card"
            # a notice for another region never reaches Li: the next one Li gets is the one after it
            await ho.publish_notice(service, "Shanghai only", target=Target(org_codes=["SH"]))
            last = await ho.publish_notice(service, "For everyone")
            assert (await next_notice(li)).notice_id == last.id
            assert li.account_cursors[service] == 5
            # the same notices over HTTP: history newest first, exact unread count
            page = await li.api.notices(service)
            assert [(x.seq, x.text) for x in page.notices] == [
                (5, "For everyone"),
                (3, "New card"),
                (2, "Branch closed on Monday"),
                (1, "before the client connected"),
            ]
            older = await li.api.notices(service, before_seq=3, limit=1)
            assert [x.seq for x in older.notices] == [2] and older.has_more
            mine = {f.account.handle: f for f in await li.api.my_accounts()}
            assert (mine["bank.service"].last_seq, mine["bank.service"].unread) == (5, 4)


async def test_notices_published_while_cut_arrive_once_after_reconnect(node: RunningNode, proxy: CuttableProxy) -> None:
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, ho_token) as ho, Client.connect(
        proxy.http_url, token=li_token, options=replace(FAST, sync_limit=2)
    ) as li:
        cards = await account_id(ho, "bank.cards")
        held = await ho.publish_notice(cards, "one")
        assert (await next_notice(li)).notice_id == held.id
        proxy.refusing = True  # Li cannot come back yet
        assert proxy.cut() >= 1
        (gone,) = await take(li, 1, (Disconnected,))
        assert isinstance(gone, Disconnected) and gone.will_reconnect
        two = await ho.publish_notice(cards, "two")  # seq 2
        await ho.publish_notice(cards, "Shanghai only", target=Target(org_codes=["SH"]))  # seq 3, not Li's
        gone_before_seen = await ho.publish_notice(cards, "withdrawn before Li saw it")  # seq 4
        four = await ho.publish_notice(cards, "four")  # seq 5
        await ho.recall_notice(held.id, "wrong rate")  # event 6: the recall of a notice Li holds
        await ho.recall_notice(gone_before_seen.id, "typo")  # event 7
        proxy.refusing = False
        events = await take(li, 5, (Reconnected, Notice, NoticeRecalled))
        assert isinstance(events[0], Reconnected)
        summary = [
            (type(e).__name__, e.notice_id, e.seq, e.text if isinstance(e, Notice) else None)
            for e in events[1:]
            if isinstance(e, Notice | NoticeRecalled)
        ]
        assert summary == [
            ("Notice", two.id, 2, "two"),
            ("Notice", gone_before_seen.id, 4, None),  # withdrawn already: its place, no body
            ("Notice", four.id, 5, "four"),
            ("NoticeRecalled", held.id, 1, None),
        ]
        withdrawn = events[2]
        assert isinstance(withdrawn, Notice) and withdrawn.recalled and withdrawn.body is None
        assert li.account_cursors[cards] == 7
        # nothing came twice: the next event is the next notice
        after = await ho.publish_notice(cards, "live again")
        assert (await next_notice(li)).notice_id == after.id
        # the resume sync carried the account cursor and followed has_more page by page
        link = proxy.ws_links[-1]
        syncs = [f for f in link.client_frames() if f["type"] == "sync"]
        assert [f["accounts"][cards] for f in syncs] == [1, 3, 5]
        more = [
            next(a["has_more"] for a in f["accounts"] if a["account_id"] == cards)
            for f in link.server_frames()
            if f["type"] == "synced"
        ]
        assert more == [True, True, False]


async def test_a_live_notice_overtaking_the_resume_sync_waits_for_it(node: RunningNode, proxy: CuttableProxy) -> None:
    """After a reconnect the hub pushes a new notice before the client's sync reaches it.

    A follower's seqs have gaps (notices for others), so the client cannot tell that the
    notice published while it was away is missing: it must hold the live one back until
    the sync answered, or it would skip the missed one."""
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, ho_token) as ho, Client.connect(proxy.http_url, token=li_token, options=FAST) as li:
        cards = await account_id(ho, "bank.cards")
        first = await ho.publish_notice(cards, "before the cut")
        assert (await next_notice(li)).notice_id == first.id
        proxy.refusing = True
        proxy.cut()
        missed = await ho.publish_notice(cards, "while away")
        proxy.hold_frames()  # the next connection is registered, but its sync stays here
        proxy.refusing = False
        await take(li, 1, (Reconnected,))
        await proxy.wait_held(up=True)
        overtaking = await ho.publish_notice(cards, "pushed before the sync answered")
        link = proxy.ws_links[-1]
        await until(lambda: any(f["type"] == "notice" for f in link.server_frames()), "the live notice reached the client")
        assert not any(f["type"] == "synced" for f in link.server_frames())
        proxy.release()
        got = await take(li, 2)
        assert [e.notice_id for e in got if isinstance(e, Notice)] == [missed.id, overtaking.id]
        assert li.account_cursors[cards] == 3
        sentinel = await ho.publish_notice(cards, "after")
        assert (await next_notice(li)).notice_id == sentinel.id


async def test_notices_under_repeated_cuts_are_yielded_once_in_order(node: RunningNode, proxy: CuttableProxy) -> None:
    """Li's connection is cut again and again while head office publishes: each notice once, in order."""
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, ho_token) as ho, Client.connect(proxy.http_url, token=li_token, options=FAST) as li:
        wealth = await account_id(ho, "bank.wealth")
        total = 40
        received: list[Notice] = []

        async def consume() -> None:
            async for event in li.events():
                if isinstance(event, Notice):
                    received.append(event)
                    if len(received) >= total:
                        return

        consumer = asyncio.create_task(consume())
        published = []
        for i in range(total):
            published.append(await ho.publish_notice(wealth, f"market view {i}"))
            if i % 9 == 4:
                await proxy.wait_connected()
                assert proxy.cut() >= 1
        await asyncio.wait_for(consumer, 30)
        assert proxy.cuts >= 4
        assert [(n.seq, n.notice_id) for n in received] == [(p.seq, p.id) for p in published]
        sentinel = await ho.publish_notice(wealth, "the end")
        assert (await next_notice(li)).notice_id == sentinel.id


async def test_live_recall_and_read_receipts_across_devices(node: RunningNode) -> None:
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, ho_token) as ho, Client.connect(
        node.http_url, token=li_token, options=FAST
    ) as phone, Client.connect(node.http_url, token=li_token, options=FAST) as tablet:
        cards = await account_id(ho, "bank.cards")
        notices = [await ho.publish_notice(cards, f"offer {i}") for i in range(3)]
        for device in (phone, tablet):
            assert [e.seq for e in await take(device, 3) if isinstance(e, Notice)] == [1, 2, 3]
        recalled = await ho.recall_notice(notices[1].id, "wrong rate")
        assert recalled.status == "recalled" and recalled.recall_seq == 4
        for device in (phone, tablet):
            (event,) = await take(device, 1, (NoticeRecalled,))
            assert isinstance(event, NoticeRecalled) and event.ts > 0
            assert event == NoticeRecalled(account_id=cards, notice_id=notices[1].id, seq=2, ts=event.ts, event_seq=4)
            assert device.account_cursors[cards] == 4
        # reading on the phone: its receipt, and an event on the tablet; unread excludes the recalled one
        receipt = await phone.read_notices(cards, 1)
        assert (receipt.account_id, receipt.read_seq, receipt.unread) == (cards, 1, 1) and receipt.id
        (seen,) = await take(tablet, 1, (AccountReceipt,))
        assert isinstance(seen, AccountReceipt) and (seen.read_seq, seen.unread, seen.id) == (1, 1, None)
        # over HTTP too; a lower position never moves it back, past the end is clamped
        assert (await tablet.api.read_notices(cards, 0)).read_seq == 1
        done = await tablet.api.read_notices(cards, 999)
        assert (done.read_seq, done.unread) == (4, 0)
        receipts = [e for e in await take(phone, 3, (AccountReceipt,)) if isinstance(e, AccountReceipt)]
        assert [(r.read_seq, r.unread) for r in receipts] == [(1, 1), (1, 1), (4, 0)]
        # an account Li does not follow: not found
        internal = (await ho.create_account("bank.test-only", "Test only", audience="staff")).id
        with pytest.raises(ProtocolError) as err:
            await phone.read_notices(internal, 1)
        assert err.value.code == "not_found"


async def test_follow_unfollow_and_resume_from_saved_account_cursors(node: RunningNode) -> None:
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, ho_token) as ho:
        news = await ho.create_account("bank.news", "Bank News", description="What is new")
        async with Client.connect(node.http_url, token=li_token, options=FAST) as li:
            found = await li.api.account(news.id)
            assert found.following is False and found.handle == "bank.news"
            assert (await li.follow(news.id)).following is True
            first = await ho.publish_notice(news.id, "first")
            assert (await next_notice(li)).notice_id == first.id
            saved = li.account_cursors
            assert saved[news.id] == 1
        # offline: two more notices; resuming from the saved cursors yields exactly those
        second = await ho.publish_notice(news.id, "second")
        third = await ho.publish_notice(news.id, "third")
        async with Client.connect(node.http_url, token=li_token, options=replace(FAST, account_cursors=saved)) as li:
            got = await take(li, 2)
            assert [e.notice_id for e in got if isinstance(e, Notice)] == [second.id, third.id]
            await li.unfollow(news.id)
            assert news.id not in li.account_cursors
            assert not [a for a in await li.api.my_accounts() if a.account.id == news.id]
            await ho.publish_notice(news.id, "not for a former follower")
            service = await account_id(ho, "bank.service")
            sentinel = await ho.publish_notice(service, "sentinel")
            assert (await next_notice(li)).notice_id == sentinel.id


async def test_administrators_publish_approve_reject_and_recall_through_the_api(nodes: Nodes) -> None:
    node = await nodes.start(notice_stats_seconds=0.1)
    br_token, ho_token, li_token = await login(node, "br.admin"), await login(node, "ho.admin"), await login(node, "c.li")
    async with Api(node.http_url, br_token) as br, Api(node.http_url, ho_token) as ho, Client.connect(
        node.http_url, token=li_token, options=FAST
    ) as li:
        rates = await br.create_account("bj.rates", "Beijing rates", requires_approval=True)
        assert rates.requires_approval and rates.audience == "customer"
        await li.follow(rates.id)
        # maker: the branch admin; checker: head office (never the maker)
        pending = await br.publish_notice(rates.id, "Deposit rate 1.5% from 1 Dec")
        assert (pending.status, pending.seq, pending.body) == ("pending_approval", None, TextBody(text="Deposit rate 1.5% from 1 Dec"))
        with pytest.raises(ApiError) as own:
            await br.approve_notice(pending.id)
        assert own.value.status == 403
        approved = await ho.approve_notice(pending.id)
        assert approved.status == "published" and approved.seq == 1 and approved.approved_by
        notice = await next_notice(li)
        assert (notice.notice_id, notice.text) == (pending.id, "Deposit rate 1.5% from 1 Dec")
        # a rejected notice never goes out
        wrong = await br.publish_notice(rates.id, "Deposit rate 15%")
        rejected = await ho.reject_notice(wrong.id)
        assert rejected.status == "rejected" and rejected.seq is None and rejected.rejected_by
        # the outbox keeps every notice with its state
        outbox = {r.id: r.status for r in await br.outbox(rates.id)}
        assert outbox == {pending.id: "published", wrong.id: "rejected"}
        assert [r.id for r in await br.outbox(rates.id, status="rejected")] == [wrong.id]
        # figures: Li's one device had it pushed; nobody has read it yet
        figures = await ho.notice_stats(pending.id)
        for _ in range(50):  # nodes add their counts every notice_stats_seconds
            if figures.delivered_online == 1:
                break
            await asyncio.sleep(0.1)
            figures = await ho.notice_stats(pending.id)
        assert (figures.targeted_followers, figures.delivered_online, figures.read) == (1, 1, 0)
        await li.read_notices(rates.id, notice.seq)
        assert (await ho.notice_stats(pending.id)).read == 1
        # recall: followers are told, the record keeps the body, who and why
        recalled = await br.recall_notice(pending.id, "superseded")
        assert (recalled.status, recalled.recall_reason, recalled.body) == (
            "recalled",
            "superseded",
            TextBody(text="Deposit rate 1.5% from 1 Dec"),
        )
        (event,) = await take(li, 1, (NoticeRecalled,))
        assert isinstance(event, NoticeRecalled) and event.notice_id == pending.id and event.event_seq == 2
