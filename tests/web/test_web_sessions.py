"""Browser sessions against a real node: the HttpOnly cookie, CSRF, Origin checks, sign-out.

The contract is ``docs/web.md`` (and ``POST /v1/web/sessions`` in ``/openapi.json``): the
bearer token travels only in the cookie; with the cookie, an unsafe method needs
``X-CSRF-Token``; bearer-token clients are unchanged.
"""

from __future__ import annotations

import httpx
from starlette.requests import Request

from bankhub.http.auth import csrf_token, session_cookie
from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD, login


async def _web_sign_in(http: httpx.AsyncClient, username: str = "c.li") -> httpx.Response:
    r = await http.post("/v1/web/sessions", json={"username": username, "password": DEMO_PASSWORD})
    assert r.status_code == 201, r.text
    return r


async def test_cookie_sign_in_sets_an_httponly_strict_cookie_and_keeps_the_token_out_of_the_body(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await _web_sign_in(http)
        body = r.json()
        assert set(body) == {"user", "csrf_token", "expires_at"}
        assert body["user"]["username"] == "c.li"
        assert r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"]
        name, _, rest = cookie.partition("=")
        token, *attributes = [part.strip() for part in rest.split(";")]
        assert name == "bankhub_session"
        assert set(attributes) == {"HttpOnly", "SameSite=Strict", "Path=/"}  # no Secure over plain HTTP
        assert token not in r.text
        assert body["csrf_token"] == csrf_token(token) and body["csrf_token"] != token
        # the cookie holds a real session: the same token works as a bearer token
        async with httpx.AsyncClient(base_url=node.http_url) as bearer:
            me = await bearer.get("/v1/me", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["username"] == "c.li"


def test_the_cookie_is_secure_under_tls() -> None:
    request = Request({"type": "http", "scheme": "https", "method": "POST", "path": "/", "headers": [], "server": ("h", 443)})
    assert session_cookie(request, "t").endswith("; Secure")
    plain = Request({"type": "http", "scheme": "http", "method": "POST", "path": "/", "headers": [], "server": ("h", 80)})
    assert "Secure" not in session_cookie(plain, "t")


async def test_a_reloaded_page_resumes_its_session_from_the_cookie(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        signed_in = (await _web_sign_in(http)).json()
        r = await http.get("/v1/web/session")
        assert r.status_code == 200, r.text
        assert r.json()["csrf_token"] == signed_in["csrf_token"]
        assert r.json()["user"] == signed_in["user"]
        assert (await http.get("/v1/me")).json()["username"] == "c.li"  # safe methods need no CSRF header
    async with httpx.AsyncClient(base_url=node.http_url) as fresh:
        r = await fresh.get("/v1/web/session")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert "set-cookie" not in r.headers
        fresh.cookies.set("bankhub_session", "not-a-session")
        stale = await fresh.get("/v1/web/session")
        assert stale.status_code == 401
        assert stale.headers["set-cookie"].startswith("bankhub_session=; Max-Age=0")


async def test_an_unsafe_cookie_request_without_the_right_csrf_token_is_refused(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        csrf = (await _web_sign_in(http)).json()["csrf_token"]
        for headers in ({}, {"x-csrf-token": "wrong"}, {"x-csrf-token": csrf[:-1]}, {"x-csrf-token": ""}):
            r = await http.post("/v1/ws-tickets", headers=headers)
            assert r.status_code == 403, (headers, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "csrf_failed"
            r = await http.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"}, headers=headers)
            assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
        r = await http.post("/v1/ws-tickets", headers={"x-csrf-token": csrf})
        assert r.status_code == 201 and set(r.json()) == {"ticket", "expires_in"}
        r = await http.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"}, headers={"x-csrf-token": csrf})
        assert r.status_code in (200, 201), r.text


async def test_an_unsafe_cookie_request_from_another_site_is_refused_even_with_the_token(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        csrf = (await _web_sign_in(http)).json()["csrf_token"]
        own = node.http_url.rstrip("/")
        for foreign in (
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
            {"origin": own, "sec-fetch-site": "cross-site"},
        ):
            r = await http.post("/v1/ws-tickets", headers={"x-csrf-token": csrf, **foreign})
            assert r.status_code == 403 and r.json()["code"] == "csrf_failed", (foreign, r.text)
        r = await http.post("/v1/ws-tickets", headers={"x-csrf-token": csrf, "origin": own, "sec-fetch-site": "same-origin"})
        assert r.status_code == 201, r.text
        # signing a browser in to an account of another site's choosing is refused too
        r = await http.post(
            "/v1/web/sessions", json={"username": "c.zhang", "password": DEMO_PASSWORD}, headers={"origin": "https://evil.example"}
        )
        assert r.status_code == 403 and r.json()["code"] == "csrf_failed" and "set-cookie" not in r.headers


async def test_bearer_clients_are_unchanged_and_the_header_wins_over_a_cookie(node: RunningNode) -> None:
    token = await login(node, "c.zhang")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        assert (await http.post("/v1/ws-tickets")).status_code == 201  # no CSRF header asked of a bearer client
        http.cookies.set("bankhub_session", "junk")
        r = await http.get("/v1/me")
        assert r.status_code == 200 and r.json()["username"] == "c.zhang"
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        await _web_sign_in(http, "c.li")
        r = await http.post("/v1/ws-tickets", headers={"authorization": "Bearer junk"})
        assert r.status_code == 401  # a bad header is not rescued by a good cookie
        r = await http.get("/v1/me", headers={"authorization": f"Bearer {token}"})
        assert r.json()["username"] == "c.zhang"


async def test_web_sign_in_refuses_exactly_as_bearer_sign_in(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        bad = {"username": "c.li", "password": "not-the-password"}
        web = await http.post("/v1/web/sessions", json=bad)
        plain = await http.post("/v1/sessions", json=bad)
        assert web.status_code == plain.status_code == 401
        assert web.json() == plain.json()
        assert "set-cookie" not in web.headers
        unknown = await http.post("/v1/web/sessions", json={"username": "nobody.here", "password": "whatever-it-is"})
        assert unknown.json() == web.json()
        assert (await http.post("/v1/web/sessions", content=b"{", headers={"content-type": "application/json"})).status_code == 400


async def test_sign_out_revokes_the_session_and_clears_the_cookie(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await _web_sign_in(http)
        token = r.cookies["bankhub_session"]
        csrf = r.json()["csrf_token"]
        assert (await http.delete("/v1/sessions/current")).json()["code"] == "csrf_failed"
        out = await http.delete("/v1/sessions/current", headers={"x-csrf-token": csrf})
        assert out.status_code == 204
        assert out.headers["set-cookie"].startswith("bankhub_session=; Max-Age=0")
        assert "bankhub_session" not in http.cookies
        assert (await http.get("/v1/web/session")).status_code == 401
        gone = await http.get("/v1/me", headers={"authorization": f"Bearer {token}"})
        assert gone.status_code == 401  # revoked on the server, not only forgotten by the browser
