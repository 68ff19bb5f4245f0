"""The HTTP contract: every list pages, every bound is enforced, the document is true.

Each node these tests start also runs under the contract recorder of the ``nodes``
fixture (``tests/support/contract.py``): every answer here, and in every other
integration test, is checked against ``/openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from bankhub.app import create_app
from bankhub.http.openapi import FREE_TEXT_FIELDS, PATH_PARAMETERS, openapi_document
from bankhub.runner import RunningNode
from bankhub.web import ROUTES as WEB_ROUTES

from ..conftest import login, open_direct


@pytest.fixture
async def admin(node: RunningNode) -> AsyncIterator[httpx.AsyncClient]:
    token = await login(node, "ho.admin")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        yield http


async def _client(node: RunningNode, username: str) -> httpx.AsyncClient:
    token = await login(node, username)
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _all_pages(http: httpx.AsyncClient, path: str, key: str, limit: int, **params: Any) -> list[Any]:
    """Follow next_cursor from the first page to the last; every page holds at most ``limit``."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await http.get(path, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page[key]) <= limit
        items += page[key]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("next_cursor never ended")


# --- defect 12: every list pages ------------------------------------------------------------


async def test_a_customer_finds_her_branch_account_however_many_accounts_sort_before_it(node: RunningNode, admin: httpx.AsyncClient) -> None:
    # 30 head-office accounts anyone may see and 40 Beijing ones a Shanghai customer may
    # not, all sorting before the Shanghai branch's own account ("Shanghai Branch")
    for i in range(30):
        r = await admin.post("/v1/accounts", json={"handle": f"ho.news{i:02}", "name": f"A head office news {i:02}"})
        assert r.status_code == 201, r.text
    for i in range(40):
        r = await admin.post("/v1/accounts", json={"handle": f"bj.news{i:02}", "name": f"B Beijing news {i:02}", "owner_org": "BJ"})
        assert r.status_code == 201, r.text
    async with await _client(node, "c.zhou") as zhou:
        first = (await zhou.get("/v1/accounts", params={"limit": 20})).json()
        assert len(first["accounts"]) == 20 and "sh.branch" not in [a["handle"] for a in first["accounts"]]
        assert first["next_cursor"] is not None, "the first page must say that more accounts follow"
        handles = [a["handle"] for a in await _all_pages(zhou, "/v1/accounts", "accounts", 7)]
    assert "sh.branch" in handles
    assert not [h for h in handles if h.startswith("bj.")], "another branch's accounts stay invisible"
    assert len(handles) == len(set(handles)) == 3 + 30 + 1  # the default customer accounts, head office's, hers
    # the same list in one page and in pages of 7: nothing skipped, nothing twice
    async with await _client(node, "c.zhou") as zhou:
        whole = (await zhou.get("/v1/accounts", params={"limit": 200})).json()
    assert [a["handle"] for a in whole["accounts"]] == handles and whole["next_cursor"] is None


async def test_every_list_endpoint_pages_with_a_cursor(node: RunningNode, admin: httpx.AsyncClient) -> None:
    for _ in range(3):
        await login(node, "rm.wang")  # more sessions
    async with await _client(node, "rm.wang") as wang:
        for peer in ("c.li", "c.zhang", "rm.chen", "agent.zhao"):
            await open_direct(node, wang.headers["authorization"].split()[1], peer)
        lists = {
            "/v1/sessions": "sessions",
            "/v1/conversations": "conversations",
            "/v1/accounts": "accounts",
            "/v1/rm/book": "customers",
            "/v1/service/queues": "queues",
        }
        for path, key in lists.items():
            whole = (await wang.get(path, params={"limit": 200})).json()
            assert whole["next_cursor"] is None
            assert len(whole[key]) >= 2, (path, whole)
            paged = await _all_pages(wang, path, key, 1)
            assert paged == whole[key], path
    async with await _client(node, "c.li") as li:  # follows the default customer accounts and her branch
        whole = (await li.get("/v1/me/accounts", params={"limit": 200})).json()
        assert len(whole["accounts"]) >= 3 and whole["next_cursor"] is None
        assert await _all_pages(li, "/v1/me/accounts", "accounts", 2) == whole["accounts"]
    account = (await admin.get("/v1/accounts", params={"q": "bank.service"})).json()["accounts"][0]["id"]
    for i in range(3):
        r = await admin.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": f"notice {i}"}})
        assert r.status_code == 201, r.text
    whole = (await admin.get(f"/v1/accounts/{account}/outbox", params={"limit": 200})).json()
    assert len(whole["notices"]) == 3 and whole["next_cursor"] is None
    assert await _all_pages(admin, f"/v1/accounts/{account}/outbox", "notices", 2) == whole["notices"]
    dead = (await admin.get("/v1/admin/alerts/dead-letters", params={"limit": 1})).json()
    assert dead == {"notifications": [], "next_cursor": None}


async def test_a_cursor_that_is_not_one_is_refused(node: RunningNode, admin: httpx.AsyncClient) -> None:
    for bad in ("", "not-a-cursor", "W10", "WyJcdTAwMDAiLCJ4IiwieCJd", "x" * 600):
        r = await admin.get("/v1/accounts", params={"cursor": bad})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", (bad, r.text)
        assert r.json()["code"] == "invalid_request"


# --- defect 13: bounds of integer parameters ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/conversations/{cid}/messages", {"limit": "0"}),
        ("/v1/conversations/{cid}/messages", {"limit": "201"}),
        ("/v1/conversations/{cid}/messages", {"limit": "1000"}),
        ("/v1/conversations/{cid}/messages", {"limit": ""}),
        ("/v1/conversations/{cid}/messages", {"limit": "1e3"}),
        ("/v1/conversations/{cid}/messages", {"before_seq": "-1"}),
        ("/v1/conversations/{cid}/messages", {"before_seq": "٣"}),
        ("/v1/inbox", {"limit": "0"}),
        ("/v1/inbox", {"limit": "201"}),
        ("/v1/accounts/{aid}/notices", {"limit": "0"}),
        ("/v1/accounts/{aid}/notices", {"limit": "500"}),
        ("/v1/accounts", {"limit": "0"}),
        ("/v1/accounts", {"limit": "201"}),
        ("/v1/sessions", {"limit": "-5"}),
        ("/v1/conversations", {"limit": "99999999999999999999999"}),
    ],
)
async def test_out_of_range_integers_are_refused(node: RunningNode, path: str, query: dict[str, str]) -> None:
    token = await login(node, "c.li")
    cid = await open_direct(node, token, "rm.wang")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        aid = (await http.get("/v1/me/accounts")).json()["accounts"][0]["account"]["id"]
        r = await http.get(path.format(cid=cid, aid=aid), params=query)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json" and r.json()["code"] == "invalid_request"


async def test_the_bounds_in_the_document_are_the_bounds_enforced(node: RunningNode) -> None:
    """Each documented integer query parameter: its minimum and maximum pass, one past fails."""
    doc = openapi_document()
    token = await login(node, "ho.admin")
    checked = 0
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        for path, item in doc["paths"].items():
            op = item.get("get")
            if op is None or "{" in path or op.get("security") == []:
                continue
            for p in op.get("parameters", []):
                schema = p["schema"]
                if p["in"] != "query" or schema.get("type") != "integer":
                    continue
                assert "minimum" in schema and "maximum" in schema, (path, p)
                for value, ok in ((schema["minimum"], True), (schema["maximum"], True), (schema["minimum"] - 1, False), (schema["maximum"] + 1, False)):
                    r = await http.get(path, params={p["name"]: str(value)})
                    assert (r.status_code == 400) is not ok, (path, p["name"], value, r.status_code, r.text)
                checked += 1
    assert checked >= 6


# --- section 3: the document is true --------------------------------------------------------


def test_every_operation_declares_its_path_parameters() -> None:
    doc = openapi_document()
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path, declared)
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert p["required"] is True and p["schema"], (method, path, p)


def test_every_path_parameter_has_the_one_shared_schema() -> None:
    # no module declares its own {id}: an id is a uuid everywhere, a segment name its pattern
    doc = openapi_document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert p["schema"] == PATH_PARAMETERS[p["name"]], (method, path, p)
    for name in ("hold_id", "export_id", "policy_id"):
        assert PATH_PARAMETERS[name] == {"type": "string", "format": "uuid"}
    assert PATH_PARAMETERS["name"]["pattern"] == "^[a-z][a-z0-9_-]{1,31}$"


def test_free_text_kept_in_the_audit_log_documents_its_refusal() -> None:
    doc = openapi_document()
    for (method, path), fields in FREE_TEXT_FIELDS.items():
        problem = doc["paths"][path][method]["responses"]["422"]
        assert "`sensitive_data`" in problem["description"] and fields in problem["description"], (method, path)


async def test_an_id_that_is_not_a_uuid_is_not_found_like_any_unknown_one(node: RunningNode) -> None:
    async with await _client(node, "co.sun") as sun:
        for method, path in [
            ("GET", "/v1/compliance/holds/not-a-uuid"),
            ("POST", "/v1/compliance/holds/not-a-uuid/release/approve"),
            ("GET", "/v1/compliance/exports/not-a-uuid"),
            ("POST", "/v1/compliance/exports/not-a-uuid/approve"),
            ("DELETE", "/v1/compliance/barriers/policies/not-a-uuid"),
            ("GET", "/v1/compliance/barriers/segments/Not_A_Name!/members"),
        ]:
            r = await sun.request(method, path)
            assert r.status_code == 404 and r.json()["code"] == "not_found", (method, path, r.text)


def test_every_route_is_documented_with_its_methods(node: RunningNode) -> None:
    doc = openapi_document()
    routes: dict[str, set[str]] = {}
    for route in create_app(node.hub, manage_hub=False).routes:
        # the web pages and files (bankhub.web, docs/web.md) are not API operations
        if isinstance(route, Route) and route.path not in ("/", "/openapi.json") and route not in WEB_ROUTES:
            path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
            routes[path] = {m.lower() for m in (route.methods or set())} - {"head"}
    documented = {path: set(item) for path, item in doc["paths"].items()}
    assert routes == documented


def test_every_operation_documents_the_statuses_of_its_kind() -> None:
    doc = openapi_document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            if op.get("security") != []:
                assert {"401", "429"} <= set(responses), (method, path)
                assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            if op.get("parameters"):
                assert "400" in responses, (method, path)
            if path != "/healthz":
                assert "503" in responses, (method, path)


async def test_service_session_answers_201_when_created_and_200_when_open(node: RunningNode) -> None:
    doc = openapi_document()
    assert {"200", "201"} <= set(doc["paths"]["/v1/service/sessions"]["post"]["responses"])
    assert {"200", "201"} <= set(doc["paths"]["/v1/conversations"]["post"]["responses"])
    assert {"200", "201"} <= set(doc["paths"]["/v1/notifications"]["post"]["responses"])
    async with await _client(node, "c.li") as li:
        first = await li.post("/v1/service/sessions")
        again = await li.post("/v1/service/sessions", json={})
        assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
        assert first.json()["session_id"] == again.json()["session_id"]
        direct = [await li.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"}) for _ in range(2)]
        assert [r.status_code for r in direct] == [201, 200]


async def test_a_method_a_path_does_not_have_is_405_with_every_method_it_has(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.put("/v1/sessions")
        assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
        assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST", "DELETE"}
        # "refresh" is not a session id: the path has POST only
        r = await http.delete("/v1/sessions/refresh")
        assert r.status_code == 405 and "POST" in r.headers["allow"]
        r = await http.get("/v1/notifications/batch")
        assert r.status_code == 405 and "POST" in r.headers["allow"]


async def test_the_sdk_reads_every_page(node: RunningNode, admin: httpx.AsyncClient) -> None:
    """The SDK's list calls follow next_cursor: 205 more accounts than its 200-entry pages."""
    from bankhub_client import Api

    for i in range(205):
        r = await admin.post("/v1/accounts", json={"handle": f"bulk.{i:03}", "name": f"Bulk {i:03}"})
        assert r.status_code == 201, r.text
    async with Api(node.http_url, await login(node, "c.zhou")) as zhou:
        handles = [a.handle for a in await zhou.accounts()]
    assert len(handles) == len(set(handles)) == 3 + 205 + 1 and "sh.branch" in handles


def test_the_contract_recorder_catches_what_disagrees_with_the_document() -> None:
    from ..support.contract import ContractRecorder

    problem = b'{"type":"t","title":"x","status":401,"code":"unauthorized","detail":"d"}'
    json_ct = {"content-type": "application/json"}
    cases: list[tuple[str, str, int, dict[str, str], bytes, bool]] = [
        ("GET", "/v1/me", 401, {"content-type": "application/problem+json", "www-authenticate": "Bearer"}, problem, True),
        ("GET", "/v1/me", 418, {"content-type": "application/problem+json"}, problem, False),  # undocumented status
        ("GET", "/v1/me", 401, {"content-type": "application/problem+json"}, problem, False),  # WWW-Authenticate missing
        ("GET", "/v1/me", 200, {"content-type": "text/plain"}, b"hi", False),  # undocumented content type
        ("GET", "/v1/me", 200, json_ct, b'{"id": 1}', False),  # body off its schema
        ("GET", "/v1/nowhere", 404, {"content-type": "application/problem+json"}, problem, True),
        ("GET", "/v1/nowhere", 200, json_ct, b"{}", False),  # an undocumented path that answers
        ("PUT", "/v1/me", 405, {"content-type": "application/problem+json", "allow": "GET"}, problem, True),
        ("PUT", "/v1/me", 404, {"content-type": "application/problem+json"}, problem, False),  # should be 405
        ("DELETE", "/v1/sessions/current", 204, {}, b"", True),
        ("DELETE", "/v1/sessions/current", 204, json_ct, b"{}", False),  # a body where none is documented
    ]
    for method, path, status, headers, body, ok in cases:
        recorder = ContractRecorder()
        recorder.check(method, path, status, {"x-request-id": "r-1", **headers}, body)  # every answer carries one
        assert (not recorder.violations) is ok, (method, path, status, recorder.violations)
    # an answer without X-Request-Id, or with one off its pattern, disagrees with the document
    for request_id in (None, "not valid!"):
        recorder = ContractRecorder()
        headers = {"content-type": "application/problem+json", "www-authenticate": "Bearer"}
        recorder.check("GET", "/v1/me", 401, headers if request_id is None else {**headers, "x-request-id": request_id}, problem)
        assert recorder.violations, request_id
