"""The Python SDK's widget calls against a real node: a partner's minted visitor token exchanged
for a visitor session with ``open_visitor_session``, which then works for the service desk."""

from __future__ import annotations

import pytest

from bankhub.actions import widget as widget_actions
from bankhub.runner import RunningNode
from bankhub_client import Api, ApiError
from bankhub_client.widget import VisitorSession, mint_visitor_token, open_visitor_session, token_partner_id


async def test_open_visitor_session_exchanges_a_minted_token_once(node: RunningNode) -> None:
    partner, secret = await widget_actions.add_partner(
        node.hub.db, node.hub.keyring.provider, "sdk-shop", ["https://shop.example"]
    )
    token = mint_visitor_token(secret, partner.id, "member-2001", "Visitor Qian")
    assert token_partner_id(token) == partner.id

    # the partner id is read from the token when not given
    visitor = await open_visitor_session(node.http_url, token)
    assert isinstance(visitor, VisitorSession)
    assert visitor.partner == "sdk-shop"
    assert (visitor.user.display_name, visitor.user.role) == ("Visitor Qian", "customer")
    async with Api(node.http_url, visitor.token) as api:
        assert (await api.me()).id == visitor.user.id
        opened = await api.open_service()
        assert opened.conversation_id

    # the hub exchanges each token once; the SDK surfaces its code
    with pytest.raises(ApiError) as replayed:
        await open_visitor_session(node.http_url, token, partner.id)
    assert (replayed.value.status, replayed.value.code) == (401, "visitor_token_replayed")

    # a token signed with another secret is refused, with the partner id given explicitly
    forged = mint_visitor_token("not-the-secret", partner.id, "member-2001", "Visitor Qian")
    with pytest.raises(ApiError) as refused:
        await open_visitor_session(node.http_url, forged, partner.id)
    assert (refused.value.status, refused.value.code) == (401, "invalid_visitor_token")


def test_token_partner_id_refuses_what_is_not_a_visitor_token() -> None:
    for bad in ("", "bhw1.x", "jwt.eyJwIjoxfQ.sig", "bhw1.!!!.sig", "bhw1.eyJwIjoibm90LWEtdXVpZCJ9.sig"):
        with pytest.raises(ValueError):
            token_partner_id(bad)
