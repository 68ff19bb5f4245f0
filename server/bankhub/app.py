"""The ASGI application: HTTP routes, the WebSocket gateway, problem responses, lifespan."""

from __future__ import annotations

import contextlib
import math
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute

from .actions.errors import ActionError
from .gateway.endpoint import websocket_endpoint
from .http.openapi import openapi_document
from .http.problems import json_response, problem
from .http.accounts import ROUTES as ACCOUNT_ROUTES
from .http.alerts import ROUTES as ALERT_ROUTES
from .http.routes import ROUTES
from .http.service import ROUTES as SERVICE_ROUTES
from .hub import Hub
from .storage import StorageUnavailable

__all__ = ["create_app"]

log = logging.getLogger("bankhub.http")

_INDEX = """<!doctype html><meta charset="utf-8"><title>bankhub</title>
<h1>bankhub</h1><p>A bank's own messaging hub. Protocol v1.</p>
<ul><li><a href="/openapi.json">OpenAPI document</a></li><li><a href="/readyz">/readyz</a></li>
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
    return problem(exc.status_code, code, str(exc.detail))


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal", "internal error")


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
    routes += [Route(path, handler, methods=methods) for path, handler, methods in ROUTES + ACCOUNT_ROUTES + ALERT_ROUTES + SERVICE_ROUTES]
    routes.append(WebSocketRoute("/v1/ws", websocket_endpoint))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ActionError: _action_error,
            StorageUnavailable: _unavailable,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.state.hub = hub
    return app
