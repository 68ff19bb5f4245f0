"""Authentication for the schemathesis runs of ``tests/integration/test_schemathesis.py``.

Loaded by ``schemathesis run`` as its hooks module (``SCHEMATHESIS_HOOKS``); configured
through the environment the test sets:

``BANKHUB_FUZZ_URL``
    the node under test.
``BANKHUB_FUZZ_USER`` / ``BANKHUB_FUZZ_PASSWORD``
    bearer mode: sign in as this user. Operations that end the session they are called
    with (sign out, revoke all, refresh, password and role changes) get a fresh session of
    their own for every case, so they are fuzzed like the rest without cutting the run's
    shared session.
``BANKHUB_FUZZ_SYSTEM`` / ``BANKHUB_FUZZ_SECRET``
    signed mode: every positive case of the HMAC-signed alert API is signed as this calling
    system with the SDK's signing (the body bytes exactly as the client will send them);
    negative cases go out with the generated headers and must be refused.
"""

from __future__ import annotations

import ast
import json
import os
import threading
from typing import Any

import httpx
import schemathesis
from bankhub_client.signing import signed_headers

# operations that revoke, replace or may invalidate the session they are called with
SESSION_ENDING = {
    ("DELETE", "/v1/sessions"),
    ("DELETE", "/v1/sessions/current"),
    ("DELETE", "/v1/sessions/{session_id}"),  # the fuzzer reuses ids from answers: my own session's among them
    ("POST", "/v1/sessions/refresh"),
    ("POST", "/v1/me/password"),
    ("PUT", "/v1/users/{username}/role"),
}
SIGNED_PREFIX = "/v1/notifications"

# Hypothesis reads the source of a strategy's lambdas with ast.parse, here in schemathesis's two
# worker threads at once; CPython 3.11's AST construction keeps its recursion count per
# interpreter, so two parses that interleave fail with "SystemError: AST constructor recursion
# depth mismatch" (python/cpython#106905) and schemathesis reports a runtime error for the case.
# One parse at a time in this process (the run's own code, not the hub's).
_parse, _parsing = ast.parse, threading.Lock()


def _one_parse_at_a_time(*args: Any, **kwargs: Any) -> Any:
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _one_parse_at_a_time

_URL = os.environ.get("BANKHUB_FUZZ_URL", "")
_USER = os.environ.get("BANKHUB_FUZZ_USER")
_PASSWORD = os.environ.get("BANKHUB_FUZZ_PASSWORD", "bankhub-demo")
_SYSTEM = os.environ.get("BANKHUB_FUZZ_SYSTEM")
_SECRET = os.environ.get("BANKHUB_FUZZ_SECRET", "")


def _sign_in() -> str:
    r = httpx.post(_URL + "/v1/sessions", json={"username": _USER, "password": _PASSWORD}, timeout=30)
    r.raise_for_status()
    token: str = r.json()["token"]
    return token


def _body_bytes(case: Any) -> bytes:
    """The bytes requests will send for ``case.body`` (``json=``: json.dumps, allow_nan off)."""
    body = case.body
    if body is None or type(body).__name__ == "NotSet":
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, allow_nan=False).encode("utf-8")


@schemathesis.auth(refresh_interval=None, retry_on=[])
class BankhubAuth:
    """Bearer token (shared, or fresh for session-ending operations), or an HMAC signature."""

    def __init__(self) -> None:
        self.shared: str | None = None

    def get(self, case: Any, ctx: Any) -> str | None:
        op = (ctx.operation.method.upper(), ctx.operation.path)
        if op[1].startswith(SIGNED_PREFIX):
            return "signed" if _SYSTEM else None
        if _USER is None:
            return None
        if op in SESSION_ENDING:
            return _sign_in()
        if self.shared is None:
            self.shared = _sign_in()
        return self.shared

    def set(self, case: Any, data: str | None, ctx: Any) -> None:
        if data is None:
            return
        if data != "signed":
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
            return
        meta = getattr(case, "meta", None)
        if meta is not None and meta.generation.mode.is_negative:
            return  # a deliberately invalid request: it keeps its generated headers and must be refused
        headers = dict(case.headers or {})
        key = headers.get("Idempotency-Key")
        signed = signed_headers(_SECRET, _SYSTEM or "", case.method, _URL + case.formatted_path, _body_bytes(case), idempotency_key=key)
        # the generated values of the same headers (any spelling) give way to the signed ones
        headers = {k: v for k, v in headers.items() if k.lower() not in signed}
        case.headers = {**headers, **signed}
