"""The SDK's HTTP ``Api`` decoding, over an injected ``httpx.MockTransport``.

These check request building and response/problem decoding only. The WebSocket
``Client`` is tested against real hubs under real faults in
``tests/integration/test_sdk_faults.py`` (and ``test_sdk.py``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bankhub_client import Api, ApiError, login


# --- HTTP API (httpx.MockTransport) -------------------------------------------------


def _http(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


async def test_login_and_api_calls() -> None:
    seen: list[tuple[str, str, str | None]] = []
    conv = {"id": "c1", "kind": "direct", "title": None, "last_seq": 3, "read_seq": 1, "unread": 2,
            "members": ["u-alice", "u-bob"], "last_message_ts": 5}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        path = request.url.path
        if path == "/v1/sessions":
            assert json.loads(request.content) == {"username": "alice", "password": "pw"}
            return httpx.Response(201, json={"token": "tok", "session_id": "s1", "expires_at": "2030-01-01T00:00:00Z",
                                             "user": {"id": "u-alice", "username": "alice",
                                                      "display_name": "Alice", "role": "rm"}})
        if path == "/v1/conversations" and request.method == "POST":
            body = json.loads(request.content)
            assert body in ({"kind": "direct", "peer": "bob"},
                            {"kind": "group", "title": "Desk", "members": ["bob", "carol"]})
            return httpx.Response(201, json={"conversation": conv})
        if path == "/v1/conversations":
            return httpx.Response(200, json={"conversations": [conv]})
        if path == "/v1/conversations/c1/messages":
            assert request.url.params["limit"] == "2" and request.url.params["before_seq"] == "3"
            return httpx.Response(200, json={"has_more": True, "messages": [
                {"conversation_id": "c1", "message_id": "m2", "seq": 2, "sender_id": "u-bob", "client_msg_id": "k2",
                 "body": {"kind": "text", "text": "two"}, "ts": 2},
                {"conversation_id": "c1", "message_id": "m1", "seq": 1, "sender_id": "u-bob", "client_msg_id": "k1",
                 "body": {"kind": "text", "text": "one"}, "ts": 1}]})
        if path == "/v1/me":
            return httpx.Response(200, json={"id": "u-alice", "username": "alice", "display_name": "Alice",
                                             "role": "rm", "org_id": "o1", "rm_id": None})
        if path == "/v1/sessions/current":
            return httpx.Response(204)
        return httpx.Response(404)

    session = await login("ws://hub.test/v1/ws", "alice", "pw", transport=_http(handler))
    assert session.token == "tok" and session.user.display_name == "Alice"
    async with Api("http://hub.test", session.token, transport=_http(handler)) as api:
        assert (await api.me()).org_id == "o1"
        assert [c.id for c in await api.conversations()] == ["c1"]
        assert (await api.open_direct("bob")).unread == 2
        assert (await api.create_group("Desk", ["bob", "carol"])).id == "c1"
        page = await api.history("c1", before_seq=3, limit=2)
        assert [m.seq for m in page.messages] == [2, 1] and page.has_more and page.messages[0].text == "two"
        await api.logout()
    assert seen[0] == ("POST", "/v1/sessions", None)
    assert all(auth == "Bearer tok" for _, _, auth in seen[1:])


async def test_api_errors_carry_problem_details() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/me":
            return httpx.Response(401, headers={"content-type": "application/problem+json"},
                                  json={"type": "about:blank", "title": "Unauthorized", "status": 401,
                                        "code": "unauthenticated", "detail": "session expired"})
        return httpx.Response(502, text="bad gateway")

    async with Api("http://hub.test", "tok", transport=_http(handler)) as api:
        with pytest.raises(ApiError) as info:
            await api.me()
        assert (info.value.status, info.value.code, info.value.detail) == (401, "unauthenticated", "session expired")
        with pytest.raises(ApiError) as info:
            await api.conversations()
        assert (info.value.status, info.value.code) == (502, "http_502")
    async with Api("http://hub.test", transport=_http(handler)) as anonymous:
        with pytest.raises(ApiError) as info:
            await anonymous.me()
        assert info.value.status == 401
