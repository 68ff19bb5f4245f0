"""Official accounts end to end: follow and auto-follow, targeted publishing (org subtree,
tags, segments, staff-only), scheduled send, recall, maker-checker, exact unread counts,
offline catch-up through sync, live follow changes and the publisher's figures."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

from bankhub.models import Role
from bankhub.runner import RunningNode

from ..conftest import Nodes, login
from ..support.desk import make_user
from ..support.wsclient import RawClient

pytestmark = pytest.mark.asyncio


class Api:
    """A signed-in user's HTTP calls, asserting the expected status."""

    def __init__(self, node: RunningNode, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = await self.http.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    async def account_id(self, handle: str) -> str:
        found = await self.call("GET", "/v1/accounts", params={"q": handle})
        return next(a["id"] for a in found["accounts"] if a["handle"] == handle)

    async def publish(self, account: str, text: str, status: int = 201, **extra: Any) -> Any:
        return await self.call("POST", f"/v1/accounts/{account}/notices", status, json={"body": {"kind": "text", "text": text}, **extra})

    async def unread(self, account: str) -> int:
        mine = await self.call("GET", "/v1/me/accounts")
        return next(int(a["unread"]) for a in mine["accounts"] if a["account"]["id"] == account)

    async def close(self) -> None:
        await self.http.aclose()


class World:
    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.apis: dict[str, Api] = {}
        self.tokens: dict[str, str] = {}
        self.sockets: list[RawClient] = []

    async def api(self, username: str, password: str | None = None) -> Api:
        if username not in self.apis:
            self.tokens[username] = await (login(self.node, username, password) if password else login(self.node, username))
            self.apis[username] = Api(self.node, self.tokens[username])
        return self.apis[username]

    async def ws(self, username: str) -> RawClient:
        await self.api(username)
        client = await RawClient.connect(self.node.ws_url, self.tokens[username])
        self.sockets.append(client)
        return client

    async def close(self) -> None:
        for s in self.sockets:
            await s.close()
        for a in self.apis.values():
            await a.close()


@pytest.fixture
async def world(nodes: Nodes) -> Any:
    w = World(await nodes.start(notice_scheduler_seconds=0.1, notice_stats_seconds=0.1))
    yield w
    await w.close()


async def test_demo_users_follow_the_default_accounts_of_their_audience(world: World) -> None:
    li = await world.api("c.li")
    handles = {a["account"]["handle"] for a in (await li.call("GET", "/v1/me/accounts"))["accounts"]}
    assert handles == {"bank.service", "bank.cards", "bank.wealth", "bj.branch"}
    wang = await world.api("rm.wang")
    staff = {a["account"]["handle"] for a in (await wang.call("GET", "/v1/me/accounts"))["accounts"]}
    assert staff == {"bank.internal"}
    # the staff account is invisible to customers: not found, not followable
    internal = await wang.account_id("bank.internal")
    await li.call("GET", f"/v1/accounts/{internal}", 404)
    await li.call("PUT", f"/v1/accounts/{internal}/follow", 404)
    assert "bank.internal" not in {a["handle"] for a in (await li.call("GET", "/v1/accounts"))["accounts"]}
    # and staff cannot unfollow the internal notice account
    await wang.call("DELETE", f"/v1/accounts/{internal}/follow", 403)


async def test_new_users_auto_follow_defaults_in_their_creation(world: World) -> None:
    admin = await world.api("br.admin")
    created = await admin.call(
        "POST",
        "/v1/users",
        201,
        json={"username": "c.new", "display_name": "New Customer", "role": "customer", "org": "BJ", "password": "a-long-password", "rm": "rm.wang"},
    )
    ho = await world.api("ho.admin")
    defaults = {await ho.account_id(h) for h in ("bank.service", "bank.cards", "bank.wealth")}
    assert set(created["followed_accounts"]) == defaults
    staff = await admin.call(
        "POST",
        "/v1/users",
        201,
        json={"username": "teller.ma", "display_name": "Ma", "role": "staff", "org": "BJ-HD", "password": "a-long-password"},
    )
    assert staff["followed_accounts"] == [await ho.account_id("bank.internal")]
    # a branch admin creates users in their own subtree only, and no administrators
    body = {"username": "c.other", "display_name": "X", "role": "customer", "org": "SH", "password": "a-long-password"}
    await admin.call("POST", "/v1/users", 403, json=body)
    await admin.call("POST", "/v1/users", 403, json={**body, "org": "BJ", "role": "branch_admin"})
    # the new customer signs in and sees a notice published to all customers
    new = await world.api("c.new", "a-long-password")
    service = await ho.account_id("bank.service")
    await ho.publish(service, "Welcome to the new app")
    page = await new.call("GET", f"/v1/accounts/{service}/notices")
    assert [n["body"]["text"] for n in page["notices"]] == ["Welcome to the new app"]
    assert await new.unread(service) == 1


async def test_branch_targeting_never_reaches_another_branch(world: World) -> None:
    ho = await world.api("ho.admin")
    service = await ho.account_id("bank.service")
    li, zhang, zhou = await world.ws("c.li"), await world.ws("c.zhang"), await world.ws("c.zhou")
    created = await ho.publish(service, "Beijing: branch closed on Monday", target={"org_codes": ["BJ"]})
    assert created["status"] == "published" and created["seq"] == 1
    for client in (li, zhang):  # BJ and its Haidian sub-branch
        event = await client.expect("notice")
        assert event["notice"]["body"]["text"] == "Beijing: branch closed on Monday"
        assert event["notice"]["account_id"] == service and event["notice"]["seq"] == 1
    assert await zhou.quiet("notice", 0.5)
    zhou_api = await world.api("c.zhou")
    assert (await zhou_api.call("GET", f"/v1/accounts/{service}/notices"))["notices"] == []
    assert await zhou_api.unread(service) == 0
    synced = await zhou.request({"type": "sync"})
    acc = next(a for a in synced["accounts"] if a["account_id"] == service)
    assert acc["notices"] == [] and acc["unread"] == 0 and acc["last_seq"] == 1

    # a branch admin publishes on their branch's account: their region only, by default
    br = await world.api("br.admin")
    bj_account = await br.account_id("bj.branch")
    await br.publish(bj_account, "Haidian open day")
    assert (await li.expect("notice"))["notice"]["body"]["text"] == "Haidian open day"
    # ... never to another region, never on head office's or another branch's account
    await br.publish(bj_account, "x", 403, target={"org_codes": ["SH"]})
    await br.publish(service, "x", 403)
    sh_account = await ho.account_id("sh.branch")
    await br.publish(sh_account, "x", 404)
    # a Shanghai customer cannot even see Beijing's account
    await zhou_api.call("PUT", f"/v1/accounts/{bj_account}/follow", 404)


async def test_staff_tag_and_segment_targeting(world: World) -> None:
    ho = await world.api("ho.admin")
    service = await ho.account_id("bank.service")
    li, zhang = await world.ws("c.li"), await world.ws("c.zhang")
    wang_api = await world.api("rm.wang")
    await wang_api.call("PUT", f"/v1/accounts/{service}/follow")
    wang = await world.ws("rm.wang")

    await ho.publish(service, "Staff: new scripts for the fee change", target={"staff_only": True})
    assert (await wang.expect("notice"))["notice"]["body"]["text"] == "Staff: new scripts for the fee change"
    assert await li.quiet("notice") and await zhang.quiet("notice")

    await ho.publish(service, "Wealth clients: private event", target={"tags": ["wealth_client"]})
    assert (await li.expect("notice"))["notice"]["body"]["text"] == "Wealth clients: private event"
    assert await zhang.quiet("notice") and await wang.quiet("notice")

    await ho.publish(service, "Mass segment in Beijing", target={"segments": ["mass"], "org_codes": ["BJ"]})
    assert (await zhang.expect("notice"))["notice"]["body"]["text"] == "Mass segment in Beijing"
    assert await li.quiet("notice")

    # the same rule holds in storage: history, unread and sync agree with live delivery
    li_api, zhang_api = await world.api("c.li"), await world.api("c.zhang")
    assert [n["seq"] for n in (await li_api.call("GET", f"/v1/accounts/{service}/notices"))["notices"]] == [2]
    assert [n["seq"] for n in (await zhang_api.call("GET", f"/v1/accounts/{service}/notices"))["notices"]] == [3]
    assert [n["seq"] for n in (await wang_api.call("GET", f"/v1/accounts/{service}/notices"))["notices"]] == [1]
    assert await li_api.unread(service) == 1 and await zhang_api.unread(service) == 1

    # the internal account's notices are staff-only whatever the publisher asks
    internal = await ho.account_id("bank.internal")
    created = await ho.publish(internal, "All staff: quarter close")
    assert created["target"]["staff_only"] is True
    assert (await wang.expect("notice"))["notice"]["account_id"] == internal


async def test_exact_unread_counts_and_read_receipts_across_devices(world: World) -> None:
    ho = await world.api("ho.admin")
    cards = await ho.account_id("bank.cards")
    li_api = await world.api("c.li")
    phone, tablet = await world.ws("c.li"), await world.ws("c.li")
    for i in range(3):
        await ho.publish(cards, f"offer {i}", target={"tags": ["card_holder"]})
    await ho.publish(cards, "not for Li", target={"tags": ["loan_client"]})  # seq 4, not Li's
    await ho.publish(cards, "offer 3", target={"tags": ["card_holder"]})  # seq 5
    seqs = [(await phone.expect("notice"))["notice"]["seq"] for _ in range(4)]
    assert seqs == [1, 2, 3, 5]
    assert await li_api.unread(cards) == 4

    receipt = await phone.request({"type": "read_notices", "account_id": cards, "seq": 2})
    assert receipt == {"type": "account_receipt", "account_id": cards, "read_seq": 2, "unread": 2, "id": receipt["id"]}
    other = await tablet.expect("account_receipt")
    assert other["read_seq"] == 2 and other["unread"] == 2
    # a lower position never moves it back; past the end is clamped
    assert (await phone.request({"type": "read_notices", "account_id": cards, "seq": 1}))["read_seq"] == 2
    done = await phone.request({"type": "read_notices", "account_id": cards, "seq": 999})
    assert done["read_seq"] == 5 and done["unread"] == 0
    assert await li_api.unread(cards) == 0
    # reading an account one does not follow: not found
    internal = await ho.account_id("bank.internal")
    denied = await phone.request({"type": "read_notices", "account_id": internal, "seq": 1})
    assert denied["type"] == "error" and denied["code"] == "not_found"
    # a recalled notice is no longer unread
    before = await li_api.unread(cards)
    fresh = await ho.publish(cards, "short-lived", target={"tags": ["card_holder"]})
    assert await li_api.unread(cards) == before + 1
    await ho.call("POST", f"/v1/notices/{fresh['id']}/recall", json={"reason": "wrong rate"})
    assert await li_api.unread(cards) == before


async def test_offline_followers_catch_up_through_sync_with_paging(world: World) -> None:
    ho = await world.api("ho.admin")
    wealth = await ho.account_id("bank.wealth")
    zhou = await world.ws("c.zhou")
    first = await zhou.request({"type": "sync"})
    cursor = next(a for a in first["accounts"] if a["account_id"] == wealth)["cursor"]
    await zhou.close()
    for i in range(5):
        await ho.publish(wealth, f"market view {i}")
    back = await world.ws("c.zhou")
    got: list[str] = []
    for _ in range(4):
        synced = await back.request({"type": "sync", "accounts": {wealth: cursor}, "limit": 2})
        acc = next(a for a in synced["accounts"] if a["account_id"] == wealth)
        got += [n["body"]["text"] for n in acc["notices"]]
        cursor = acc["cursor"]
        if not acc["has_more"]:
            break
    assert got == [f"market view {i}" for i in range(5)]
    assert acc["unread"] == 5 and acc["last_seq"] == 5
    # an account not listed in the sync starts at the read position: its unread notices
    fresh = await world.ws("c.zhou")
    unlisted = await fresh.request({"type": "sync"})
    acc = next(a for a in unlisted["accounts"] if a["account_id"] == wealth)
    assert [n["seq"] for n in acc["notices"]] == [1, 2, 3, 4, 5]


async def test_scheduled_notice_goes_out_at_its_time(world: World) -> None:
    ho = await world.api("ho.admin")
    service = await ho.account_id("bank.service")
    li = await world.ws("c.li")
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3.0)
    created = await ho.publish(service, "Maintenance tonight", scheduled_at=at.isoformat())
    assert created["status"] == "scheduled" and created["seq"] is None
    # not before its time (the quiet window ends well before it, however slow the publish was)
    assert await li.quiet("notice", max(0.0, (at - dt.datetime.now(dt.UTC)).total_seconds() - 0.3))
    event = await li.expect("notice", timeout=5.0)
    assert event["notice"]["body"]["text"] == "Maintenance tonight"
    assert event["notice"]["ts"] >= int(at.timestamp() * 1000)
    outbox = await ho.call("GET", f"/v1/accounts/{service}/outbox")
    assert outbox["notices"][0]["status"] == "published" and outbox["notices"][0]["seq"] == 1
    # a time without a zone is ambiguous for a bank spanning zones: refused
    await ho.publish(service, "x", 400, scheduled_at="2030-01-01T09:00:00")


async def test_recall_withdraws_the_notice_but_keeps_it_for_compliance(world: World) -> None:
    ho = await world.api("ho.admin")
    cards = await ho.account_id("bank.cards")
    li = await world.ws("c.li")
    zhou_api = await world.api("c.zhou")
    sync0 = await li.request({"type": "sync"})
    cursor = next(a for a in sync0["accounts"] if a["account_id"] == cards)["cursor"]
    created = await ho.publish(cards, "Rate 3.1% (typo)")
    assert (await li.expect("notice"))["notice"]["notice_id"] == created["id"]
    await ho.call("POST", f"/v1/notices/{created['id']}/recall", 400, json={"reason": " "})
    recalled = await ho.call("POST", f"/v1/notices/{created['id']}/recall", json={"reason": "wrong rate"})
    assert recalled["status"] == "recalled" and recalled["recall_seq"] == 2
    event = await li.expect("notice_recalled")
    assert event == {
        "type": "notice_recalled",
        "account_id": cards,
        "notice_id": created["id"],
        "seq": 1,
        "event_seq": 2,
        "ts": event["ts"],
    }
    # followers see it withdrawn, in history and in sync
    page = await zhou_api.call("GET", f"/v1/accounts/{cards}/notices")
    assert page["notices"] == [{"account_id": cards, "notice_id": created["id"], "seq": 1, "ts": page["notices"][0]["ts"], "recalled": True, "recalled_ts": page["notices"][0]["recalled_ts"]}]
    later = await world.ws("c.li")
    synced = await later.request({"type": "sync", "accounts": {cards: cursor}})
    acc = next(a for a in synced["accounts"] if a["account_id"] == cards)
    assert acc["cursor"] == 2 and len(acc["notices"]) == 1 and acc["notices"][0]["recalled"] is True
    assert "body" not in acc["notices"][0]
    # ... while the publishers' record keeps the original, who recalled it and why
    outbox = await ho.call("GET", f"/v1/accounts/{cards}/outbox")
    kept = outbox["notices"][0]
    assert kept["body"]["text"] == "Rate 3.1% (typo)" and kept["recall_reason"] == "wrong rate" and kept["recalled_by"]
    # a second recall is a conflict; a customer cannot recall
    await ho.call("POST", f"/v1/notices/{created['id']}/recall", 409, json={"reason": "again"})
    await zhou_api.call("POST", f"/v1/notices/{created['id']}/recall", 403, json={"reason": "mine"})


async def test_maker_checker_needs_a_second_administrator(world: World) -> None:
    ho = await world.api("ho.admin")
    # one administrator cannot make the second one alone (dual control: a pending request) ...
    await ho.call(
        "POST",
        "/v1/users",
        202,
        json={"username": "ho.checker", "display_name": "Checker", "role": "head_office_admin", "org": "HO", "password": "a-long-password"},
    )
    # ... so the checker is an existing second head-office admin, made by the operator
    await make_user(world.node, "ho.checker2", Role.HEAD_OFFICE_ADMIN, "HO")
    account = await ho.call(
        "POST",
        "/v1/accounts",
        201,
        json={"handle": "bank.rates", "name": "Rates", "requires_approval": True, "description": "Official rates"},
    )
    li_api = await world.api("c.li")
    await li_api.call("PUT", f"/v1/accounts/{account['id']}/follow")
    li = await world.ws("c.li")
    pending = await ho.publish(account["id"], "Deposit rate 1.5% from 1 Dec")
    assert pending["status"] == "pending_approval" and pending["seq"] is None
    assert await li.quiet("notice", 0.4)
    assert (await li_api.call("GET", f"/v1/accounts/{account['id']}/notices"))["notices"] == []
    # the maker cannot check their own notice
    await ho.call("POST", f"/v1/notices/{pending['id']}/approve", 403)
    checker = await world.api("ho.checker2")
    approved = await checker.call("POST", f"/v1/notices/{pending['id']}/approve")
    assert approved["status"] == "published" and approved["approved_by"] and approved["seq"] == 1
    assert (await li.expect("notice"))["notice"]["body"]["text"] == "Deposit rate 1.5% from 1 Dec"
    await checker.call("POST", f"/v1/notices/{pending['id']}/approve", 409)
    # a rejected notice never goes out
    second = await ho.publish(account["id"], "Deposit rate 15%")
    rejected = await checker.call("POST", f"/v1/notices/{second['id']}/reject")
    assert rejected["status"] == "rejected" and rejected["seq"] is None
    assert await li.quiet("notice", 0.4)
    # a branch admin cannot approve head office's notices
    third = await ho.publish(account["id"], "later")
    br = await world.api("br.admin")
    await br.call("POST", f"/v1/notices/{third['id']}/approve", 403)
    # the maker is a principal of the approval too: once the author may no longer publish
    # (demoted to staff), their pending notice can be rejected but never approved
    await checker.call("PUT", "/v1/users/ho.admin/role", json={"role": "staff"})
    refused = await checker.call("POST", f"/v1/notices/{third['id']}/approve", 409)
    assert "author" in refused["detail"]
    assert (await checker.call("POST", f"/v1/notices/{third['id']}/reject"))["status"] == "rejected"
    assert await li.quiet("notice", 0.3)


async def test_follow_and_unfollow_take_effect_on_live_connections(world: World) -> None:
    ho = await world.api("ho.admin")
    created = await ho.call("POST", "/v1/accounts", 201, json={"handle": "bank.news", "name": "Bank News"})
    li_api = await world.api("c.li")
    li = await world.ws("c.li")  # connected before following
    await ho.publish(created["id"], "before")
    assert await li.quiet("notice", 0.3)
    followed = await li_api.call("PUT", f"/v1/accounts/{created['id']}/follow")
    assert followed["following"] is True
    await li_api.call("PUT", f"/v1/accounts/{created['id']}/follow")  # idempotent
    assert await li_api.unread(created["id"]) == 0  # what came before is history, not unread
    await ho.publish(created["id"], "after")
    assert (await li.expect("notice"))["notice"]["body"]["text"] == "after"
    await li_api.call("DELETE", f"/v1/accounts/{created['id']}/follow", 204)
    await ho.publish(created["id"], "gone")
    assert await li.quiet("notice", 0.4)
    await li_api.call("GET", f"/v1/accounts/{created['id']}/notices", 404)


async def test_publisher_sees_delivered_online_and_read_counts(world: World) -> None:
    ho = await world.api("ho.admin")
    service = await ho.account_id("bank.service")
    li, _tablet, zhang = await world.ws("c.li"), await world.ws("c.li"), await world.ws("c.zhang")
    created = await ho.publish(service, "figures", target={"org_codes": ["BJ"]})
    await li.expect("notice")
    await zhang.expect("notice")
    await li.request({"type": "read_notices", "account_id": service, "seq": created["seq"]})
    figures: dict[str, Any] = {}
    for _ in range(50):  # nodes add their counts every notice_stats_seconds
        figures = (await ho.call("GET", f"/v1/notices/{created['id']}/stats"))["stats"]
        if figures["delivered_online"] == 3:
            break
        await asyncio.sleep(0.1)
    # Li's two devices and Zhang's one; BJ's customers are the targeted followers
    assert figures == {"notice_id": created["id"], "status": "published", "targeted_followers": 2, "delivered_online": 3, "read": 1}
    br = await world.api("br.admin")
    await br.call("GET", f"/v1/notices/{created['id']}/stats", 403)
    zhou = await world.api("c.zhou")
    await zhou.call("GET", f"/v1/notices/{created['id']}/stats", 403)


async def test_invalid_notices_get_problem_responses(world: World) -> None:
    ho = await world.api("ho.admin")
    service = await ho.account_id("bank.service")
    bad_link = {"body": {"kind": "article", "title": "t", "action_url": "javascript:alert(1)"}}
    await ho.call("POST", f"/v1/accounts/{service}/notices", 400, json=bad_link)
    await ho.call("POST", f"/v1/accounts/{service}/notices", 400, json={"body": {"kind": "text", "text": ""}})
    await ho.call("POST", f"/v1/accounts/{service}/notices", 400, json={"body": {"kind": "text", "text": "x"}, "target": {"org_codes": ["NOPE"]}})
    await ho.call("POST", "/v1/accounts/not-a-uuid/notices", 404, json={"body": {"kind": "text", "text": "x"}})
    await ho.call("POST", "/v1/accounts", 409, json={"handle": "bank.service", "name": "dup"})
    article = await ho.call(
        "POST",
        f"/v1/accounts/{service}/notices",
        201,
        json={
            "body": {
                "kind": "article",
                "title": "New card",
                "summary": "Cashback on groceries",
                "body": "Full terms ...",
                "image_url": "https://cdn.bank.example/card.png",
                "action_url": "bankhub://cards/apply",
                "action_label": "Apply",
            }
        },
    )
    li = await world.api("c.li")
    page = await li.call("GET", f"/v1/accounts/{service}/notices")
    assert page["notices"][0]["body"] == article["body"]
    customer = await world.api("c.zhang")
    await customer.publish(service, "x", 403)
    await customer.call("POST", "/v1/accounts", 403, json={"handle": "c.own", "name": "mine"})


async def test_notices_reach_followers_on_every_node(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    ho = Api(a, await login(a, "ho.admin"))
    li_token, zhou_token = await login(b, "c.li"), await login(b, "c.zhou")
    li_b = await RawClient.connect(b.ws_url, li_token)
    li_a = await RawClient.connect(a.ws_url, li_token)
    zhou_b = await RawClient.connect(b.ws_url, zhou_token)
    try:
        service = await ho.account_id("bank.service")
        await ho.publish(service, "to Beijing", target={"org_codes": ["BJ"]})
        for client in (li_a, li_b):
            assert (await client.expect("notice"))["notice"]["body"]["text"] == "to Beijing"
        assert await zhou_b.quiet("notice", 0.5)
    finally:
        for c in (li_a, li_b, zhou_b):
            await c.close()
        await ho.close()


async def test_storage_and_gateway_apply_the_same_targeting_rule(node: RunningNode) -> None:
    """Every combination of the targeting dimensions, published for real: the notices each
    demo user gets from storage (history, unread) are exactly those bankhub.targeting selects."""
    from bankhub.actions import accounts as account_actions
    from bankhub.protocol.frames import TextNotice
    from bankhub.models import Target
    from bankhub.targeting import matches

    hub = node.hub
    ho = await hub.users.by_username("ho.admin")
    assert ho is not None
    service = next(a for a in await hub.accounts.search("bank.service", 5) if a.handle == "bank.service")
    users = [await hub.users.by_username(n) for n in ("c.li", "c.zhang", "c.zhou", "rm.wang", "agent.zhao")]
    for u in users[3:]:
        assert u is not None
        async with hub.db.transaction("test_follow") as conn:
            await hub.accounts.follow(conn, service.id, u.id)
    orgs = await hub.users.org_ids_by_code(["HO", "BJ", "BJ-HD", "SH"])
    targets = [
        (codes, Target(tags=tags, segments=segments, staff_only=staff))
        for codes in (None, ["BJ"], ["BJ-HD"], ["SH"], ["HO"], ["BJ-HD", "SH"])
        for tags in (None, ["card_holder"], ["wealth_client", "loan_client"])
        for segments in (None, ["mass"], ["wealth"])
        for staff in (False, True)
    ]
    published: list[tuple[int, Target]] = []
    for i, (codes, target) in enumerate(targets):
        rec = await account_actions.publish(hub, ho, service.id, TextNotice(f"n{i}"), org_codes=codes, target=target)
        assert rec.seq is not None
        published.append((rec.seq, Target(org_ids=[orgs[c] for c in codes] if codes else None, tags=target.tags, segments=target.segments, staff_only=target.staff_only)))
    for user in users:
        assert user is not None
        path = await hub.users.org_ancestry(user.org_id)
        expected = {seq for seq, target in published if matches(target, user, path)}
        got = {n.seq for n in await hub.accounts.history(service.id, user.id, None, 500)}
        assert got == expected, user.username
        unread = next(f.unread for f in await hub.accounts.following(user.id) if f.account.id == service.id)
        assert unread == len(expected)
        assert 0 < len(expected) < len(published)
    # the publisher's figures count the same audience (computed from the org subtree side)
    paths = {u.id: await hub.users.org_ancestry(u.org_id) for u in users if u is not None}
    by_seq = {n.seq: n.notice_id for n in await hub.accounts.history(service.id, users[3].id, None, 500)}
    by_seq.update({n.seq: n.notice_id for n in await hub.accounts.history(service.id, users[0].id, None, 500)})
    for seq, target in published:
        if seq in by_seq:
            figures = await hub.accounts.stats(by_seq[seq])
            assert figures is not None
            assert figures.targeted_followers == sum(matches(target, u, paths[u.id]) for u in users if u is not None)
