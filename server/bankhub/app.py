"""The ASGI application: HTTP routes, the WebSocket gateway, problem responses, lifespan."""

from __future__ import annotations

import contextlib
import re
import math
import logging
import secrets
from collections.abc import AsyncIterator, Iterable

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.middleware import Middleware
from starlette.routing import Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logredact, logs, metrics
from .actions.errors import ActionError
from .gateway.endpoint import websocket_endpoint
from .http.openapi import PATH_PARAMETERS, openapi_document
from .http.problems import json_response, problem
from .http.accounts import ROUTES as ACCOUNT_ROUTES
from .http.admin import ROUTES as ADMIN_ROUTES
from .http.contacts import ROUTES as CONTACT_ROUTES
from .http.alerts import ROUTES as ALERT_ROUTES
from .http.media import ROUTES as MEDIA_ROUTES
from .http.cards import ROUTES as CARD_ROUTES
from .http.handler import Endpoint, Handler
from .http.routes import ROUTES
from .http.presence import ROUTES as PRESENCE_ROUTES
from .http.service import ROUTES as SERVICE_ROUTES
from .http.groups import ROUTES as GROUP_ROUTES
from .http.web_sessions import ROUTES as WEB_SESSION_ROUTES
from .http.widget import ROUTES as WIDGET_ROUTES
from .http.barriers import ROUTES as BARRIERS_ROUTES
from .http.compliance_console import ROUTES as COMPLIANCE_CONSOLE_ROUTES
from .http.holds import ROUTES as HOLDS_ROUTES
from .http.retention import ROUTES as RETENTION_ROUTES
from .http.exports import ROUTES as EXPORTS_ROUTES
from .http.dlp import ROUTES as DLP_ROUTES
from .http.supervision import ROUTES as SUPERVISION_ROUTES
from .http.metrics import ROUTES as METRICS_ROUTES
from .web import ROUTES as WEB_ROUTES
from .web import SecurityHeaders
from .hub import Hub
from .storage import StorageUnavailable

__all__ = ["create_app", "API_ENDPOINTS"]

log = logging.getLogger("bankhub.http")

_INDEX = """<!doctype html><meta charset="utf-8"><title>bankhub</title>
<h1>bankhub</h1><p>A bank's own messaging hub. Protocol v1.</p>
<ul><li><a href="/app/">Customer app</a> (融e联)</li><li><a href="/staff/">Staff workbench</a></li>
<li><a href="/console/">Head-office and branch console</a></li><li><a href="/compliance/">Compliance console</a></li><li><a href="/openapi.json">OpenAPI document</a></li><li><a href="/readyz">/readyz</a></li>
<li>WebSocket: <code>/v1/ws</code>, subprotocol <code>bankhub.v1</code></li></ul>"""


async def _action_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ActionError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return problem(exc.status, exc.code, exc.message, headers or None)


async def _unavailable(request: Request, exc: Exception) -> Response:
    return problem(503, "unavailable", "storage unavailable; nothing was changed, retry shortly", {"Retry-After": "1"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    # keep Starlette's headers: a 405 says in Allow which methods the path has
    return problem(exc.status_code, code, str(exc.detail), dict(exc.headers) if exc.headers else None)


class _UuidText(Convertor[str]):
    """A path segment that is a UUID (hyphenated, as ``format: uuid`` in the document), kept as text."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("uuidtext", _UuidText())
_UUID_SEGMENTS = {name for name, schema in PATH_PARAMETERS.items() if schema.get("format") == "uuid"}


API_ENDPOINTS: tuple[Endpoint, ...] = (
    *ROUTES,
    *ACCOUNT_ROUTES,
    *CONTACT_ROUTES,
    *ADMIN_ROUTES,
    *ALERT_ROUTES,
    *MEDIA_ROUTES,
    *SERVICE_ROUTES,
    *GROUP_ROUTES,
    *WEB_SESSION_ROUTES,
    *CARD_ROUTES,
    *WIDGET_ROUTES,
    *PRESENCE_ROUTES,
    *BARRIERS_ROUTES,
    *COMPLIANCE_CONSOLE_ROUTES,
    *HOLDS_ROUTES,
    *RETENTION_ROUTES,
    *EXPORTS_ROUTES,
    *DLP_ROUTES,
    *SUPERVISION_ROUTES,
    *METRICS_ROUTES,
)
"""Every HTTP API route the hub serves, each declared with how it authenticates (the tests walk them all)."""


def _routes(endpoints: Iterable[Endpoint]) -> list[Route]:
    """One route per path, dispatching on the method: Starlette answers a method no route
    of a path takes with 405 and an ``Allow`` header listing only the first route's
    methods, so a path served by several handlers must be one route to answer correctly.

    Id segments match UUIDs only, as the document says: ``DELETE /v1/sessions/refresh`` is
    then a method ``/v1/sessions/refresh`` does not have (405), not the revocation of a
    session called "refresh" (404)."""
    by_path: dict[str, dict[str, Handler]] = {}
    for endpoint in endpoints:
        path = re.sub(r"\{(\w+)\}", lambda m: "{%s:uuidtext}" % m[1] if m[1] in _UUID_SEGMENTS else m[0], endpoint.path)
        by_path.setdefault(path, {})[endpoint.method] = endpoint.handler

    def dispatcher(handlers: dict[str, Handler]) -> Handler:
        async def dispatch(request: Request) -> Response:
            return await handlers["GET" if request.method == "HEAD" else request.method](request)

        return dispatch

    return [Route(path, dispatcher(handlers), methods=list(handlers)) for path, handlers in by_path.items()]


def _log_unhandled(scope: Scope, exc: BaseException) -> str:
    """Log an unhandled error safely; returns the reference the client is given.

    The line holds the reference, the method, the route *template* (not the path, which
    carries client text), the exception's type and a traceback of code locations — never
    the exception's message: an asyncpg error's DETAIL quotes the row, password hash and
    all (see :mod:`bankhub.logredact`).
    """
    ref = secrets.token_hex(4)
    route = "?"
    app = scope.get("app")
    for candidate in getattr(app, "routes", ()):
        if candidate.matches(scope)[0] is Match.FULL:
            route = getattr(candidate, "path", "?")
            break
    log.error(
        "unhandled error %s on %s %s: %s\n%s",
        ref,
        scope.get("method", "?"),
        route,
        logredact.describe(exc),
        logredact.safe_traceback(exc, messages=False),
    )
    return ref


def _internal_problem(ref: str) -> Response:
    return problem(500, "internal", f"internal error; nothing more is known to the client (reference {ref})")


async def _internal(request: Request, exc: Exception) -> Response:
    # reached only by errors outside ContainErrors (in a middleware); Starlette re-raises after it
    return _internal_problem(_log_unhandled(request.scope, exc))


class ContainErrors:
    """Answer an unhandled error in an HTTP handler with a 500 problem, logged once, safely.

    Starlette's own last-resort handler re-raises after answering, so uvicorn logged a
    second, raw traceback (with the asyncpg DETAIL in it). This middleware, inside
    Starlette's, answers and stops there. An error after the response started cannot be
    answered and is re-raised (the log record factory still scrubs it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            ref = _log_unhandled(scope, exc)
            if started:
                raise
            await _internal_problem(ref)(scope, receive, send)


def create_app(hub: Hub, *, manage_hub: bool = True) -> Starlette:
    """The Starlette app of ``hub``. With ``manage_hub`` the app's lifespan starts and stops it."""

    async def index(request: Request) -> Response:
        return HTMLResponse(_INDEX)

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_hub:
            await hub.start()
        try:
            yield
        finally:
            if manage_hub:
                await hub.stop()

    routes: list[Route | WebSocketRoute] = [Route("/", index), Route("/openapi.json", openapi)]
    routes += _routes(API_ENDPOINTS)
    routes += WEB_ROUTES
    routes.append(WebSocketRoute("/v1/ws", websocket_endpoint))
    for route in routes:
        # Starlette anchors a route's regex with ``$``, which also matches before a final
        # newline: ``/v1/me%0A`` was served as ``/v1/me``, and a UUID segment lost its newline
        # unseen. ``\Z`` is a full match: such a path matches no route, or reaches its handler
        # whole (where the text type refuses it).
        if route.path_regex.pattern.endswith("$"):
            route.path_regex = re.compile(route.path_regex.pattern[:-1] + r"\Z")
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # RequestIds outermost: every answer carries X-Request-Id and its lines the request_id;
        # SecurityHeaders next: every answer, a 500 included, carries the CSP and nosniff
        middleware=[
            Middleware(logs.RequestIds, node=hub.settings.node_name),
            Middleware(SecurityHeaders),
            # inside SecurityHeaders and outside ContainErrors: a 500 is counted as one
            Middleware(metrics.HttpMetrics, templates=metrics.route_templates(routes)),
            Middleware(ContainErrors),
        ],
        exception_handlers={
            ActionError: _action_error,
            StorageUnavailable: _unavailable,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.state.hub = hub
    return app
