"""Pages and static files served by a real node: types, caching, security headers, confinement."""

from __future__ import annotations

import httpx
import pytest

from bankhub.runner import RunningNode
from bankhub.web import CONTENT_SECURITY_POLICY

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _assert_secure(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"] == EXPECTED_CSP == CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("page", ["/app/", "/staff/", "/console/", "/compliance/"])
async def test_pages_are_html_with_the_strict_security_headers(node: RunningNode, page: str) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.get(page)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        _assert_secure(r)
        assert '<html lang="zh-CN">' in r.text
        moved = await http.get(page.rstrip("/"))
        assert moved.status_code == 308 and moved.headers["location"] == page
        _assert_secure(moved)


async def test_static_files_have_their_types_an_etag_and_the_headers(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for path, media in (
            ("/static/app/main.js", "text/javascript; charset=utf-8"),
            ("/static/app/app.css", "text/css; charset=utf-8"),
            ("/static/app/icon.svg", "image/svg+xml"),
            ("/static/sdk/bankhub.js", "text/javascript; charset=utf-8"),
            ("/app/manifest.webmanifest", "application/manifest+json"),
        ):
            r = await http.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == media, path
            _assert_secure(r)
            etag = r.headers["etag"]
            again = await http.get(path, headers={"if-none-match": etag})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
            head = await http.head(path)
            assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag


async def test_the_service_worker_is_served_for_the_app_scope(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.get("/app/sw.js")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/javascript; charset=utf-8"
        assert r.headers["service-worker-allowed"] == "/app/"
        assert "no-cache" in r.headers["cache-control"]
        assert '"/v1/' not in r.text or "never" in r.text  # the API is never cached
        _assert_secure(r)


@pytest.mark.parametrize(
    "path",
    [
        "/static/%2e%2e/__init__.py",
        "/static/app/%2e%2e/%2e%2e/__init__.py",
        "/static/..%2f..%2fsettings.py",
        "/static/app/../../pages/app.html",
        "/static/.hidden",
        "/static/app/",
        "/static/app",
        "/static/app/missing.js",
        "/static/app/main.js%00.css",
        "/static/app/main.py",
    ],
)
async def test_static_names_cannot_leave_the_package_folder(node: RunningNode, path: str) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert r.headers["content-type"] == "application/problem+json"
        _assert_secure(r)


async def test_api_answers_and_the_index_carry_the_headers_too(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for path in ("/", "/v1/me", "/healthz", "/openapi.json", "/nowhere"):
            _assert_secure(await http.get(path))
        index = (await http.get("/")).text
        for link in ('href="/app/"', 'href="/staff/"', 'href="/console/"', 'href="/compliance/"'):
            assert link in index
        r = await http.post("/v1/sessions", content=b"{", headers={"content-type": "application/json"})
        _assert_secure(r)
