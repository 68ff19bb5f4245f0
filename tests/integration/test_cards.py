"""Verified service cards and signed notices end to end: who may send a card, the hub's
signature at commit (checked with the key published at /v1/signing-keys), forged and moved
copies, the link allow-list, and the signature of official-account notices."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from bankhub.crypto.signing import unb64url, verify
from bankhub.protocol.cards import card_payload, notice_payload
from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.ids import other_id
from ..support.wsclient import RawClient

pytestmark = pytest.mark.asyncio

CARD: dict[str, Any] = {
    "kind": "card",
    "template": "offer",
    "title": "Wealth product 7-day",
    "fields": [{"label": "Yield", "value": "2.35%"}, {"label": "Term", "value": "7 days"}],
    "image_url": "https://www.icbc.com.cn/img/wealth.png",
    "actions": [{"label": "Buy", "url": "bankhub://wealth/products/7d"}, {"label": "Details", "url": "https://www.icbc.com.cn/wealth/7d"}],
    "classes": ["I"],
}


async def _keys(node: RunningNode) -> dict[str, bytes]:
    async with httpx.AsyncClient(base_url=node.http_url) as http:  # no credentials needed
        r = await http.get("/v1/signing-keys")
    assert r.status_code == 200, r.text
    keys = r.json()["keys"]
    assert keys and keys[0]["status"] == "active" and keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519"
    return {k["kid"]: unb64url(k["x"]) for k in keys}


def _card_verifies(keys: dict[str, bytes], m: dict[str, Any]) -> bool:
    sig = m["body"].get("signature")
    if not sig or sig["key_id"] not in keys:
        return False
    payload = card_payload(sig["key_id"], m["conversation_id"], m["message_id"], m["sender_id"], m["ts"], m["body"])
    return verify(keys[sig["key_id"]], payload, sig["sig"])


async def _send(client: RawClient, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return await client.request(
        {"type": "send", "conversation_id": conversation_id, "client_msg_id": f"card-{id(body)}-{len(str(body))}", "body": body}
    )


async def test_rm_card_is_signed_at_commit_and_verifies_with_the_published_key(node: RunningNode) -> None:
    wang_token, li_token = await login(node, "rm.wang"), await login(node, "c.li")
    cid = await open_direct(node, li_token, "rm.wang")
    wang = await RawClient.connect(node.ws_url, wang_token)
    li = await RawClient.connect(node.ws_url, li_token)
    try:
        assert "cards" in wang.hello["features"]
        sent = await _send(wang, cid, CARD)
        assert sent["type"] == "sent", sent
        live = (await li.expect("message"))["message"]
        assert live["message_id"] == sent["message_id"] and live["body"]["signature"]["key_id"]
        keys = await _keys(node)
        assert _card_verifies(keys, live)
        # history and sync carry the same signed body
        async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {li_token}"}) as http:
            page = (await http.get(f"/v1/conversations/{cid}/messages")).json()["messages"]
        assert page[0]["body"] == live["body"] and _card_verifies(keys, page[0])

        # a forged copy: moved to another conversation, another message, altered fields, another sender
        for field, value in (("conversation_id", other_id(cid)), ("message_id", other_id(sent["message_id"])),
                             ("sender_id", other_id(live["sender_id"])), ("ts", live["ts"] + 1)):
            assert not _card_verifies(keys, {**live, field: value}), field
        altered = copy.deepcopy(live)
        altered["body"]["fields"][0]["value"] = "23.5%"
        assert not _card_verifies(keys, altered)
        ungated = copy.deepcopy(live)
        del ungated["body"]["classes"]  # stripping the account-class gate breaks the signature too
        assert not _card_verifies(keys, ungated)
    finally:
        await wang.close()
        await li.close()


async def test_a_customer_cannot_send_a_card_and_nobody_supplies_a_signature(node: RunningNode) -> None:
    li_token, wang_token = await login(node, "c.li"), await login(node, "rm.wang")
    cid = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, wang_token)
    try:
        refused = await _send(li, cid, CARD)
        assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
        assert await wang.quiet("message")
        # a signature is the hub's to make: a client's is an invalid frame, even from staff
        forged = {**CARD, "signature": {"key_id": "sig-000000000000", "sig": "A" * 86}}
        for client in (li, wang):
            answer = await _send(client, cid, forged)
            assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), answer
    finally:
        await li.close()
        await wang.close()


async def test_card_links_and_images_must_be_on_allow_listed_domains(node: RunningNode) -> None:
    wang_token = await login(node, "rm.wang")
    cid = await open_direct(node, wang_token, "c.li")
    wang = await RawClient.connect(node.ws_url, wang_token)
    try:
        for body in (
            {**CARD, "image_url": "https://evil.example/x.png"},
            {**CARD, "actions": [{"label": "Pay", "url": "https://icbc.com.cn.evil.example/pay"}]},
            {**CARD, "actions": [{"label": "Pay", "url": "https://www.icbc.com.cn@evil.example/pay"}]},
            {**CARD, "actions": [{"label": "Pay", "url": "javascript:alert(1)"}]},
        ):
            answer = await _send(wang, cid, body)
            assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), (body, answer)
        assert (await _send(wang, cid, {**CARD, "template": "bill_reminder", "classes": []}))["type"] == "sent"
    finally:
        await wang.close()


async def test_official_account_notices_carry_a_verifiable_signature(node: RunningNode) -> None:
    ho_token, li_token = await login(node, "ho.admin"), await login(node, "c.li")
    li = await RawClient.connect(node.ws_url, li_token)
    try:
        async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {ho_token}"}) as http:
            found = (await http.get("/v1/accounts", params={"q": "bank.service"})).json()["accounts"]
            account = next(a["id"] for a in found if a["handle"] == "bank.service")
            r = await http.post(
                f"/v1/accounts/{account}/notices",
                json={"body": {"kind": "article", "title": "Fee change", "summary": "From May", "action_url": "https://www.icbc.com.cn/fees"}},
            )
            assert r.status_code == 201, r.text
        notice = (await li.expect("notice"))["notice"]
        keys = await _keys(node)
        sig = notice["signature"]
        good = notice_payload(sig["key_id"], notice["account_id"], notice["notice_id"], notice["body"])
        assert verify(keys[sig["key_id"]], good, sig["sig"])
        # a look-alike: the same body under another account, or with another title, does not verify
        other = notice_payload(sig["key_id"], other_id(notice["account_id"]), notice["notice_id"], notice["body"])
        assert not verify(keys[sig["key_id"]], other, sig["sig"])
        altered = notice_payload(sig["key_id"], notice["account_id"], notice["notice_id"], {**notice["body"], "title": "Fee refund"})
        assert not verify(keys[sig["key_id"]], altered, sig["sig"])
        # the follower's history carries the same signature
        async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {li_token}"}) as http:
            page = (await http.get(f"/v1/accounts/{account}/notices")).json()["notices"]
        assert page[0]["signature"] == sig
    finally:
        await li.close()


async def test_every_node_signs_with_one_key_and_a_rotated_key_still_verifies(nodes: Any) -> None:
    a, b = await nodes.start("node-a"), await nodes.start("node-b")
    assert await _keys(a) == await _keys(b)  # the first key, created once for the cluster
    assert a.hub.signing.current.key_id == b.hub.signing.current.key_id
    wang_token = await login(a, "rm.wang")
    cid = await open_direct(a, wang_token, "c.li")
    wang = await RawClient.connect(a.ws_url, wang_token)
    try:
        first = await _send(wang, cid, {**CARD, "title": "Before rotation"})
        old_id = a.hub.signing.current.key_id
        new_id = await b.hub.signing.rotate()
        a.hub.signing.recheck()  # node a re-reads the active key now rather than within a minute
        second = await _send(wang, cid, {**CARD, "title": "After rotation"})
        assert first["type"] == second["type"] == "sent"
        keys = await _keys(b)
        assert set(keys) == {old_id, new_id}
        async with httpx.AsyncClient(base_url=b.http_url, headers={"authorization": f"Bearer {wang_token}"}) as http:
            page = (await http.get(f"/v1/conversations/{cid}/messages")).json()["messages"]
        by_title = {m["body"]["title"]: m for m in page}
        assert by_title["Before rotation"]["body"]["signature"]["key_id"] == old_id
        assert by_title["After rotation"]["body"]["signature"]["key_id"] == new_id
        assert all(_card_verifies(keys, m) for m in page)
    finally:
        await wang.close()


async def test_a_signing_key_whose_private_half_does_not_match_is_never_used(node: RunningNode, dsn: str) -> None:
    import asyncpg

    from bankhub.crypto.signing import SigningKey, new_seed

    wang_token = await login(node, "rm.wang")
    cid = await open_direct(node, wang_token, "c.li")
    conn = await asyncpg.connect(dsn)
    try:  # the stored public key swapped for another: the wrapped seed no longer belongs to it
        await conn.execute("UPDATE signing_keys SET public_key = $1 WHERE state = 'active'", SigningKey("x", new_seed()).public_key)
    finally:
        await conn.close()
    node.hub.signing._active = None  # as after a restart: the key is loaded again
    node.hub.signing.recheck()
    wang = await RawClient.connect(node.ws_url, wang_token)
    try:
        answer = await _send(wang, cid, CARD)
        assert (answer["type"], answer["code"]) == ("error", "unavailable"), answer
    finally:
        await wang.close()


async def test_a_bank_system_sends_a_signed_card_through_the_signed_api(node: RunningNode) -> None:
    from ..support.alerts import register, signed

    marketing = await register(node, "wealth-platform", ("marketing",))
    li_token = await login(node, "c.li")
    li = await RawClient.connect(node.ws_url, li_token)
    try:
        offer = {k: v for k, v in CARD.items() if k != "kind"} | {"kind": "card"}
        r = await signed(node, marketing, "POST", "/v1/cards", {"recipient": "c.li", "card": offer}, key="offer-2026-05-01")
        assert r.status_code == 201, r.text
        out = r.json()
        live = (await li.expect("message"))["message"]
        assert live["message_id"] == out["message_id"] and live["body"]["title"] == CARD["title"]
        assert _card_verifies(await _keys(node), live)  # signed by the hub like a staff card
        # a retry with the same key stores nothing new
        again = await signed(node, marketing, "POST", "/v1/cards", {"recipient": "c.li", "card": offer}, key="offer-2026-05-01")
        assert again.status_code == 200 and again.json()["message_id"] == out["message_id"] and again.json()["duplicate"]
        # only the categories it was registered for; only to active customers; links on the allow-list
        bill = {**offer, "template": "bill_reminder"}
        refusals = [
            ({"recipient": "c.li", "card": bill}, 403, "forbidden"),
            ({"recipient": "rm.wang", "card": offer}, 404, "recipient_not_found"),
            ({"recipient": "nobody.here", "card": offer}, 404, "recipient_not_found"),
            ({"recipient": "c.li", "card": {**offer, "image_url": "https://evil.example/a.png"}}, 400, "invalid_request"),
            ({"recipient": "c.li", "card": {**offer, "signature": {"key_id": "k", "sig": "s"}}}, 400, "invalid_request"),
        ]
        for body, status, code in refusals:
            r = await signed(node, marketing, "POST", "/v1/cards", body)
            assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
        assert await li.quiet("message")
    finally:
        await li.close()
