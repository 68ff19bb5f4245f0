"""What every HTTP handler is built from: how its route authenticates, and how it reads a request.

Each module of handlers declares its routes in a :class:`RouteTable`, at the handler, and
says there how the route authenticates — one of four ways, each spelled out once here:

* :meth:`RouteTable.authenticated` — a signed-in user: a bearer token, or the browser's
  session cookie with the CSRF checks of :mod:`bankhub.http.auth` on unsafe methods
  (:func:`~bankhub.http.auth.require_session`, which also spends the caller's API rate
  limit). The handler is called as ``handler(request, hub, session)`` only once that
  succeeded, so a request without valid credentials is answered 401 (or 403
  ``csrf_failed``, or 429) before any parameter or body of it is read.
* :meth:`RouteTable.browser_session` — the session cookie alone, with no bearer token
  (``GET /v1/web/session``: a reloaded page finds its session again). No cookie, or one
  whose session has ended, is answered 401 ``unauthorized`` and a stale cookie is cleared.
  Called as ``handler(request, hub, session, token)``.
* :meth:`RouteTable.signed` — a calling system's HMAC signature (the alert ingest API,
  ``docs/alerts.md``): the content type is checked (when the route takes a JSON body), the
  body read within its byte limit, then the signature checked, all before the handler runs.
  Every refusal — the handler's own too — is a problem whose 401 names the signature scheme
  in ``WWW-Authenticate``. Called as ``handler(request, hub, call)`` (:class:`SignedCall`).
* :meth:`RouteTable.public` — no credentials (health checks, sign-in).
  Called as ``handler(request, hub)``.

Reading a request: :func:`read_json` (the body decoded into a msgspec type: 415, 413 and
400 ``invalid_request`` as the document says), :func:`decode_json`, :func:`read_body`,
:func:`require_json`, :func:`hub_of`, :func:`client_ip` and :func:`user_agent`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..actions import alerts as alert_actions
from ..actions import sessions as session_actions
from .. import policy
from ..actions.errors import ActionError, require
from ..alerts.signing import SCHEME, SignedHeaders
from ..models import AlertSystem, Session
from ..text import explain, header_line
from .auth import cleared_cookie, cookie_token, require_session
from .problems import problem

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "Handler",
    "Authentication",
    "Endpoint",
    "AUDITED_READS",
    "RouteTable",
    "SignedCall",
    "MAX_BODY_BYTES",
    "hub_of",
    "client_ip",
    "user_agent",
    "require_json",
    "read_body",
    "decode_json",
    "read_json",
]

T = TypeVar("T")

AUDITED_READS: set[tuple[str, str]] = set()
"""``(method, path)`` of every route declared ``audited_read=True`` (the OpenAPI document names
their cookie refusal; tests check each one)."""

MAX_BODY_BYTES = 64 * 1024
"""The largest JSON body :func:`read_json` takes (the signed alert routes set their own)."""

Handler = Callable[[Request], Awaitable[Response]]
"""A route's handler as Starlette calls it."""

Authentication = Literal["session", "browser_session", "signature", "none"]
"""How a route authenticates: :meth:`RouteTable.authenticated`, :meth:`RouteTable.browser_session`,
:meth:`RouteTable.signed`, :meth:`RouteTable.public`."""


@dataclass(frozen=True)
class SignedCall:
    """A calling system's request whose signature checked out: who sent it, its signed
    headers (``idempotency_key`` among them) and the body exactly as signed."""

    system: AlertSystem
    headers: SignedHeaders
    body: bytes
    matched: bytes | None = None
    """Set for a ``deferred`` route: the fingerprint of the secret the signature matched; the handler's
    ingest transaction checks the nonce and the system's state (``ingest_single``)."""


SessionHandler = Callable[[Request, "Hub", Session], Awaitable[Response]]
BrowserHandler = Callable[[Request, "Hub", Session, str], Awaitable[Response]]
SignedHandler = Callable[[Request, "Hub", SignedCall], Awaitable[Response]]
PublicHandler = Callable[[Request, "Hub"], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route: a method on a path, its handler, and how it authenticates."""

    method: str
    path: str
    handler: Handler
    authentication: Authentication


class RouteTable:
    """The routes of one module of handlers, in the order they are declared.

    Each decorator registers the handler under ``method`` and ``path`` (a Starlette path;
    ``{name}`` segments) and returns it wrapped as a :data:`Handler` that authenticates
    first, as the decorator's name says."""

    def __init__(self) -> None:
        self._endpoints: list[Endpoint] = []

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints)

    def _add(self, method: str, path: str, handler: Handler, authentication: Authentication) -> Handler:
        assert all((e.method, e.path) != (method, path) for e in self._endpoints), f"{method} {path} declared twice"
        self._endpoints.append(Endpoint(method, path, handler, authentication))
        return handler

    def authenticated(self, method: str, path: str, *, audited_read: bool = False) -> Callable[[SessionHandler], Handler]:
        """A route for a signed-in user: bearer token, or session cookie plus CSRF on unsafe methods.

        ``audited_read``: the route hands out what only the audited compliance path may (message
        text, an export's download, search results). With the session cookie it is refused
        (403 ``csrf_failed``) unless the browser says the hub's own page made it, whatever the
        method (:func:`~bankhub.http.auth.require_session`): a cookie GET would otherwise be
        one any same-site page could make, each one an audit row in the officer's name. Its
        answers, problems included, are sent ``Cache-Control: no-store``."""

        def register(handler: SessionHandler) -> Handler:
            @functools.wraps(handler)
            async def with_session(request: Request) -> Response:
                hub = hub_of(request)
                session = await require_session(hub, request, audited_read=audited_read)
                # a service-widget visitor reaches the service desk only (policy.WIDGET_VISITOR_ROUTES)
                require(policy.may_call_route(session.user, method, path))
                response = await handler(request, hub, session)
                if audited_read:
                    response.headers["Cache-Control"] = "no-store"
                return response

            if audited_read:
                AUDITED_READS.add((method, path))
            return self._add(method, path, with_session, "session")

        return register

    def browser_session(self, method: str, path: str) -> Callable[[BrowserHandler], Handler]:
        """A route for the browser session cookie alone (safe methods: no CSRF token to check)."""
        assert method in ("GET", "HEAD"), "a cookie-only route with an unsafe method would need the CSRF checks"

        def register(handler: BrowserHandler) -> Handler:
            @functools.wraps(handler)
            async def with_cookie(request: Request) -> Response:
                hub = hub_of(request)
                token = cookie_token(request)
                session = await session_actions.authenticate_token(hub, token) if token else None
                if token is None or session is None:
                    refused = problem(
                        401, "unauthorized", "no browser session: sign in with POST /v1/web/sessions", {"WWW-Authenticate": "Bearer"}
                    )
                    if token is not None:  # a stale cookie is of no use to anyone: drop it
                        refused.headers["Set-Cookie"] = cleared_cookie(request)
                    return refused
                return await handler(request, hub, session, token)

            return self._add(method, path, with_cookie, "browser_session")

        return register

    def signed(
        self, method: str, path: str, *, max_bytes: int, json_body: bool, deferred: bool = False
    ) -> Callable[[SignedHandler], Handler]:
        """A route for a calling system's HMAC-signed request with a body of at most ``max_bytes``
        (``json_body``: ``Content-Type: application/json`` is required, checked first).
        ``deferred``: the nonce, the system's state and its rate limit are left to the handler's ingest
        transaction (:func:`~bankhub.actions.alerts.authenticate_system_deferred`)."""

        def register(handler: SignedHandler) -> Handler:
            @functools.wraps(handler)
            async def with_signature(request: Request) -> Response:
                hub = hub_of(request)
                try:
                    if json_body:
                        require_json(request)
                    body = await read_body(request, max_bytes)
                    # the path and query exactly as sent: that is what the system signed
                    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
                    query: bytes = request.scope.get("query_string", b"")
                    args = (hub, request.method, raw_path.decode("latin-1"), query.decode("latin-1"), request.headers, body, client_ip(request))
                    if deferred:
                        system, headers, matched = await alert_actions.authenticate_system_deferred(*args)
                        return await handler(request, hub, SignedCall(system, headers, body, matched))
                    system, headers = await alert_actions.authenticate_system(*args)
                    return await handler(request, hub, SignedCall(system, headers, body))
                except ActionError as exc:
                    return _signed_problem(exc)

            return self._add(method, path, with_signature, "signature")

        return register

    def public(self, method: str, path: str) -> Callable[[PublicHandler], Handler]:
        """A route anyone may call, with no credentials."""

        def register(handler: PublicHandler) -> Handler:
            @functools.wraps(handler)
            async def without_credentials(request: Request) -> Response:
                return await handler(request, hub_of(request))

            return self._add(method, path, without_credentials, "none")

        return register


def _signed_problem(exc: ActionError) -> Response:
    """The problem for a refused signed request: a 401 names the signature scheme, not Bearer."""
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = SCHEME
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return problem(exc.status, exc.code, exc.message, headers or None)


def hub_of(request: Request) -> Hub:
    """The hub the app serves."""
    hub: Hub = request.app.state.hub
    return hub


def client_ip(request: Request) -> str | None:
    """The peer's address as the server sees it (audit entries and sessions record it)."""
    return request.client.host if request.client else None


def user_agent(request: Request) -> str | None:
    """The ``User-Agent`` header as one checked line of text (what a session records), or None."""
    return header_line(request.headers.get("user-agent"))


def require_json(request: Request) -> None:
    """Refuse (415 ``unsupported_media_type``) a body that is not declared JSON."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ActionError("unsupported_media_type", "send Content-Type: application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The body's bytes; 413 ``too_large`` as soon as it is over ``limit`` bytes (never read further)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ActionError("too_large", f"request body over {limit} bytes")
    return raw


@overload
def decode_json(raw: bytes, type_: type[T]) -> T: ...
@overload
def decode_json(raw: bytes, type_: Any) -> Any: ...
def decode_json(raw: bytes, type_: Any) -> Any:
    """``raw`` decoded as ``type_`` (a msgspec type, or a union of tagged structs);
    400 ``invalid_request`` saying what is wrong (never echoing the value)."""
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise ActionError("invalid_request", explain(str(exc))) from None
    except msgspec.DecodeError:
        raise ActionError("invalid_request", "body is not valid JSON") from None


@overload
async def read_json(request: Request, type_: type[T]) -> T: ...
@overload
async def read_json(request: Request, type_: Any) -> Any: ...
async def read_json(request: Request, type_: Any) -> Any:
    """The JSON body decoded as ``type_``: 415 unless declared JSON, 413 over
    :data:`MAX_BODY_BYTES`, 400 when malformed or invalid — checked in that order."""
    require_json(request)
    return decode_json(await read_body(request, MAX_BODY_BYTES), type_)
