"""``GET /metrics``: the hub's Prometheus metrics (``bankhub.metrics``), for the host's Prometheus server.

The access rule (:func:`bankhub.metrics.may_scrape`): with ``BANKHUB_METRICS_TOKEN`` set,
only a request carrying ``Authorization: Bearer <token>``; without it, only a request whose
socket peer (the address the hub's own socket saw, whatever a proxy header says) is a loopback
address and which carries no ``X-Forwarded-For``, ``X-Real-IP`` or ``Forwarded`` header. Any
other request is answered 404 ``not_found``, exactly as a path the hub does not have: the endpoint is not advertised to whoever may not read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .. import metrics
from .handler import RouteTable
from .problems import problem

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ROUTES", "openapi_paths"]

ROUTES = RouteTable()


@ROUTES.public("GET", "/metrics")
async def scrape(request: Request, hub: Hub) -> Response:
    # the socket's own peer, not the address uvicorn's proxy-header rewrite put in scope["client"]
    peer = metrics.socket_peer(request.scope)
    if not metrics.may_scrape(
        hub.settings.metrics_token, request.headers.get("authorization"), peer, forwarded=metrics.forwarded(request.scope["headers"])
    ):
        return problem(404, "not_found", "Not Found")
    return Response(await metrics.scrape(), media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    get = op("Prometheus metrics of this host's hub processes", 200, None, auth=False, extra=(404,))
    get["description"] = (
        "The Prometheus text exposition format (docs/operations.md, \"Metrics\", lists every metric). With "
        "BANKHUB_METRICS_TOKEN set, only a request carrying Authorization: Bearer <that token> is answered; without "
        "it, only a client whose socket peer is a loopback address and whose request carries no X-Forwarded-For, "
        "X-Real-IP or Forwarded header. Several workers on one host (bankhub serve --workers N): one "
        "scrape answers for all of them."
    )
    # the text format is no JSON: the media type alone (no schema to validate a JSON body against)
    get["responses"]["200"]["content"] = {"text/plain": {}}
    get["responses"]["404"]["description"] = (
        "`not_found`: no token, a wrong token, a non-loopback client or a forwarded request: the same answer as a path that does not exist"
    )
    return {"/metrics": {"get": get}}
