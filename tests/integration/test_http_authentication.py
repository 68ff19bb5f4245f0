"""Every HTTP route says how it authenticates, the document says the same, and the hub does it.

Routes are declared in a :class:`~bankhub.http.handler.RouteTable` with one of four ways
to authenticate (``bankhub/http/handler.py``). These tests walk every declared route: a
signed-in route refuses a request without valid credentials with 401 before it reads any
parameter or body (and a cookie without the CSRF token with 403 on an unsafe method), a
signed route refuses an unsigned request with a 401 naming the signature scheme, and the
browser-session route refuses a request without the cookie.
"""

from __future__ import annotations

import re
import uuid

import httpx

import importlib
import pkgutil

import bankhub.http
from bankhub.alerts.signing import SCHEME
from bankhub.app import API_ENDPOINTS
from bankhub.http.handler import Endpoint, RouteTable
from bankhub.http.openapi import openapi_document
from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD

ENDPOINTS: list[Endpoint] = list(API_ENDPOINTS)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# what each way of authenticating is in the document: the default bearer scheme, none, or the cookie
SECURITY = {"session": None, "none": [], "signature": [], "browser_session": [{"cookie": []}]}
# a well-formed value for every path segment, so the route matches and only credentials are missing
SEGMENTS = {"username": "c.li", "code": "general", "variant": "full"}


def _url(endpoint: Endpoint) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SEGMENTS.get(m[1], str(uuid.uuid4())), endpoint.path)


def _of(authentication: str) -> list[Endpoint]:
    return [e for e in ENDPOINTS if e.authentication == authentication]


def test_the_hub_serves_every_route_table_of_its_http_package() -> None:
    # a module's routes left out of the app would be neither served nor walked by these tests
    tables = 0
    for info in pkgutil.iter_modules(bankhub.http.__path__):
        table = getattr(importlib.import_module(f"bankhub.http.{info.name}"), "ROUTES", None)
        if isinstance(table, RouteTable):
            tables += 1
            missing = [(e.method, e.path) for e in table if e not in API_ENDPOINTS]
            assert not missing, (info.name, missing)
    assert tables >= 12


def test_every_route_authenticates_as_the_document_says() -> None:
    doc = openapi_document()
    declared = {(e.method.lower(), e.path): e.authentication for e in ENDPOINTS}
    assert len(declared) == len(ENDPOINTS), "a route declared twice"
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert set(declared) == documented
    for (method, path), authentication in declared.items():
        assert doc["paths"][path][method].get("security") == SECURITY[authentication], (method, path, authentication)
    assert {e.authentication for e in ENDPOINTS} == set(SECURITY)


async def test_every_signed_in_route_refuses_missing_or_bad_credentials_before_reading_the_request(node: RunningNode) -> None:
    endpoints = _of("session")
    assert len(endpoints) >= 50
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for endpoint in endpoints:
            for headers in ({}, {"authorization": "Bearer not-a-token"}, {"authorization": "Basic YzpsaQ=="}):
                # a malformed query and a body that is neither JSON nor declared so: 401 comes first
                r = await http.request(
                    endpoint.method,
                    _url(endpoint),
                    params={"limit": "0", "cursor": "!", "before_seq": "x"},
                    content=b"\x00not json",
                    headers={"content-type": "text/plain", **headers},
                )
                assert r.status_code == 401, (endpoint.method, endpoint.path, headers, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json()["code"] == "unauthorized"


async def test_every_unsafe_signed_in_route_refuses_the_cookie_without_the_csrf_token(node: RunningNode) -> None:
    endpoints = [e for e in _of("session") if e.method in UNSAFE]
    assert endpoints
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/web/sessions", json={"username": "ho.admin", "password": DEMO_PASSWORD})
        assert r.status_code == 201, r.text
        for endpoint in endpoints:
            r = await http.request(endpoint.method, _url(endpoint), content=b"{", headers={"content-type": "text/plain"})
            assert r.status_code == 403, (endpoint.method, endpoint.path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "csrf_failed"
        # the session is untouched: sign-out and the rest were refused before anything was done
        assert (await http.get("/v1/me")).json()["username"] == "ho.admin"


async def test_every_signed_route_refuses_an_unsigned_request_naming_the_signature_scheme(node: RunningNode) -> None:
    endpoints = _of("signature")
    assert {e.path for e in endpoints} == {"/v1/notifications", "/v1/notifications/batch", "/v1/notifications/{alert_id}", "/v1/cards"}
    token = None
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": "ho.admin", "password": DEMO_PASSWORD})
        token = r.json()["token"]
        for endpoint in endpoints:
            body = {"content": b"{}", "headers": {"content-type": "application/json"}} if endpoint.method == "POST" else {}
            for extra in ({}, {"authorization": f"Bearer {token}"}):  # a user's bearer token is no signature
                r = await http.request(
                    endpoint.method, _url(endpoint), content=body.get("content"), headers={**body.get("headers", {}), **extra}
                )
                assert r.status_code == 401, (endpoint.method, endpoint.path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["www-authenticate"] == SCHEME


async def test_the_browser_session_route_takes_the_cookie_and_nothing_else(node: RunningNode) -> None:
    (endpoint,) = _of("browser_session")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": "c.li", "password": DEMO_PASSWORD})
        token = r.json()["token"]
        for headers in ({}, {"authorization": f"Bearer {token}"}):
            r = await http.get(_url(endpoint), headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "unauthorized", (headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        http.cookies.set("bankhub_session", token)
        r = await http.get(_url(endpoint))
        assert r.status_code == 200 and r.json()["user"]["username"] == "c.li", r.text
