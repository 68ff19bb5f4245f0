"""Serving a hub with uvicorn: the one place that sets the transport limits.

WebSocket frames over the protocol's ``max_frame_bytes`` are refused by the transport
with close code 1009; permessage-deflate is off (compression of secrets alongside
attacker-controlled text leaks them, and it costs memory per connection). A request
(headers, body, or a WebSocket upgrade) not complete within ``handshake_timeout_seconds``
is answered 408 and its connection closed (:class:`~bankhub.gateway.transport.HubHttpProtocol`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from . import gctune, logredact, logs, metrics
from .app import create_app
from .gateway.endpoint import DirectWebSocket
from .gateway.transport import HubWebSocketProtocol, http_protocol
from .hub import Hub

__all__ = ["uvicorn_config", "HubServer", "RunningNode", "start_node", "AppWrapper"]


AppWrapper = Callable[[ASGIApp], ASGIApp]


def uvicorn_config(
    hub: Hub, *, host: str, port: int, manage_hub: bool = True, log_level: str = "info", wrap_app: AppWrapper | None = None
) -> uvicorn.Config:
    """uvicorn's configuration for ``hub``. ``wrap_app`` wraps the whole ASGI app (outermost,
    so it sees every answer, 500s included): tests use it to check each answer against
    ``/openapi.json``."""
    s = hub.settings
    logredact.install()
    # JSON lines: every logger, uvicorn's included, goes to the root handler logs installs
    json_logs = logs.configure(s.log_format, node=s.node_name, level=log_level)
    # /v1/ws straight to its endpoint: no middleware frames held per open socket
    app: ASGIApp = DirectWebSocket(create_app(hub, manage_hub=manage_hub))
    warning = metrics.open_scrape_warning(s.metrics_token, host)
    if warning:
        logging.getLogger("bankhub.metrics").warning(warning)
    config = uvicorn.Config(
        wrap_app(app) if wrap_app is not None else app,
        host=host,
        port=port,
        ws=HubWebSocketProtocol,
        http=http_protocol(s.handshake_timeout_seconds),
        loop="none" if not manage_hub else "auto",
        ws_max_size=hub.session_limits.max_frame_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=s.ws_ping_seconds,
        ws_ping_timeout=s.ws_ping_seconds,
        lifespan="on",
        log_level=log_level,
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        ssl_certfile=s.tls_cert,
        ssl_keyfile=s.tls_key,
        timeout_graceful_shutdown=10,
        server_header=False,
        proxy_headers=False,  # applied below, inside the wrapper that keeps the socket's own peer
    )
    # uvicorn's proxy-header rewrite of scope["client"] (trusting FORWARDED_ALLOW_IPS, as uvicorn
    # would), with the socket's peer kept outside it: GET /metrics decides on that one
    proxied: Any = ProxyHeadersMiddleware(cast(Any, config.app), trusted_hosts=config.forwarded_allow_ips)
    config.app = metrics.SocketPeer(proxied)
    return config


class HubServer(uvicorn.Server):
    """uvicorn's server, draining the hub before uvicorn's own shutdown.

    uvicorn closes every WebSocket with a bare 1012 as the first step of its shutdown,
    before the app's lifespan ends; draining here first lets in-flight commits finish
    and their answers reach the clients.
    """

    def __init__(self, config: uvicorn.Config, hub: Hub, *, freeze_gc: bool = False) -> None:
        super().__init__(config)
        self.hub = hub
        self.freeze_gc = freeze_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.freeze_gc:
            gctune.freeze_startup_heap()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await self.hub.drain()
        except Exception:
            logging.getLogger("bankhub").warning("drain failed", exc_info=True)
        await super().shutdown(sockets)


@dataclass
class RunningNode:
    """A hub served in the current event loop (tests, benchmarks). ``stop`` drains it."""

    hub: Hub
    server: HubServer
    port: int
    task: asyncio.Task[None] = field(repr=False)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30)


async def start_node(hub: Hub, *, port: int = 0, log_level: str = "warning", wrap_app: AppWrapper | None = None) -> RunningNode:
    """Serve ``hub`` on 127.0.0.1 in this loop; returns once it accepts connections.
    ``wrap_app``: see :func:`uvicorn_config`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn_config(hub, host="127.0.0.1", port=sock.getsockname()[1], log_level=log_level, wrap_app=wrap_app)
    server = HubServer(config, hub)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise TimeoutError("node did not start")
    return RunningNode(hub, server, sock.getsockname()[1], task)
