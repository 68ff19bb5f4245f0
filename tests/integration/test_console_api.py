"""The console's API: the org tree for the targeting picker (GET /v1/orgs) and the live
audience count of a draft (POST /v1/accounts/{id}/audience), which must equal the targeted
followers the published notice's figures then report, for every kind of target."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import Nodes
from .test_official_accounts import World

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def world(nodes: Nodes) -> Any:
    w = World(await nodes.start())
    yield w
    await w.close()


TARGETS: list[dict[str, Any]] = [
    {},
    {"org_codes": ["BJ"]},
    {"org_codes": ["BJ-HD"]},
    {"org_codes": ["SH"]},
    {"org_codes": ["BJ", "SH"]},
    {"tags": ["card_holder"]},
    {"segments": ["wealth"]},
    {"org_codes": ["BJ"], "tags": ["loan_client"]},
    {"staff_only": True},
]


async def test_audience_count_is_what_the_published_notice_targets(world: World) -> None:
    ho = await world.api("ho.admin")
    service = await ho.account_id("bank.service")
    counts = {}
    for target in TARGETS:
        count = (await ho.call("POST", f"/v1/accounts/{service}/audience", json={"target": target}))["count"]
        created = await ho.publish(service, f"audience {target}", target=target)
        figures = (await ho.call("GET", f"/v1/notices/{created['id']}/stats"))["stats"]
        assert figures["targeted_followers"] == count, target
        counts[str(target)] = count
    # the demo customers: c.li (BJ, wealth, card_holder), c.zhang (BJ-HD, card_holder), c.zhou (SH, loan_client)
    assert counts[str({"org_codes": ["BJ"]})] == 2
    assert counts[str({"org_codes": ["BJ-HD"]})] == 1
    assert counts[str({"org_codes": ["SH"]})] == 1
    assert counts[str({"segments": ["wealth"]})] == 1
    assert counts[str({"org_codes": ["BJ"], "tags": ["loan_client"]})] == 0
    assert counts[str({})] >= 3
    # no body: the whole audience
    assert (await ho.call("POST", f"/v1/accounts/{service}/audience", json={}))["count"] == counts[str({})]


async def test_audience_is_checked_like_publishing(world: World) -> None:
    ho, br, li = await world.api("ho.admin"), await world.api("br.admin"), await world.api("c.li")
    service, branch = await ho.account_id("bank.service"), await ho.account_id("bj.branch")
    # a branch admin counts for their own branch's account, never outside its subtree
    assert (await br.call("POST", f"/v1/accounts/{branch}/audience", json={"target": {"org_codes": ["BJ-HD"]}}))["count"] == 1
    await br.call("POST", f"/v1/accounts/{branch}/audience", 403, json={"target": {"org_codes": ["SH"]}})
    await br.call("POST", f"/v1/accounts/{service}/audience", 403, json={})
    # a customer may not count anyone (the account is visible to them, so 403, not 404)
    await li.call("POST", f"/v1/accounts/{service}/audience", 403, json={})
    # bad input: clear problems
    problem = await ho.call("POST", f"/v1/accounts/{service}/audience", 400, json={"target": {"org_codes": ["NOPE"]}})
    assert problem["code"] == "invalid_request"
    await ho.call("POST", f"/v1/accounts/{service}/audience", 400, json={"target": {"org_codes": []}})
    await ho.call("POST", f"/v1/accounts/{service}/audience", 400, json={"target": {"colour": "red"}})
    await ho.call("POST", "/v1/accounts/00000000-0000-4000-8000-000000000000/audience", 404, json={})


async def test_orgs_lists_the_subtree_an_administrator_may_target(world: World) -> None:
    ho, br, li = await world.api("ho.admin"), await world.api("br.admin"), await world.api("c.li")
    everything = await ho.call("GET", "/v1/orgs")
    assert [(o["code"], o["parent_code"]) for o in everything["orgs"]] == [("BJ", "HO"), ("BJ-HD", "BJ"), ("HO", None), ("SH", "HO")]
    assert everything["next_cursor"] is None
    mine = await br.call("GET", "/v1/orgs")
    assert [o["code"] for o in mine["orgs"]] == ["BJ", "BJ-HD"]
    # paged by code
    first = await ho.call("GET", "/v1/orgs", params={"limit": 3})
    assert [o["code"] for o in first["orgs"]] == ["BJ", "BJ-HD", "HO"]
    rest = await ho.call("GET", "/v1/orgs", params={"limit": 3, "cursor": first["next_cursor"]})
    assert [o["code"] for o in rest["orgs"]] == ["SH"] and rest["next_cursor"] is None
    await ho.call("GET", "/v1/orgs", 400, params={"cursor": "not-a-cursor"})
    # an account names its owning org by the id the org list gives
    ids = {o["code"]: o["id"] for o in everything["orgs"]}
    accounts = {a["handle"]: a for a in (await br.call("GET", "/v1/accounts"))["accounts"]}
    assert accounts["bank.service"]["owner_org_id"] == ids["HO"] and accounts["bj.branch"]["owner_org_id"] == ids["BJ"]
    assert (await li.call("GET", "/v1/orgs", 403))["code"] == "forbidden"
