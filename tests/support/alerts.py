"""Helpers for the alert tests: a registered calling system and signed requests to a live hub."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from bankhub.actions.alert_systems import add_system
from bankhub.broker import MemoryBroker
from bankhub.node import build_hub
from bankhub.runner import RunningNode, start_node
from bankhub.settings import Settings
from bankhub_client.signing import signed_headers

from ..conftest import Nodes

__all__ = ["System", "register", "signed", "start_alert_node", "card_debit", "wait_for"]


@dataclass
class System:
    name: str
    secret: str
    id: str


async def register(node: RunningNode, name: str = "core-banking", categories: tuple[str, ...] = ("security", "transaction", "service", "marketing"), **kw: Any) -> System:
    system, secret = await add_system(node.hub.db, node.hub.keyring.provider, name, list(categories), **kw)
    return System(name, secret, system.id)


async def signed(
    node: RunningNode,
    system: System,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = "auto",
    secret: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
    send_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A request signed as ``system`` (``send_body`` sends other bytes than were signed)."""
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    idem = str(uuid.uuid4()) if key == "auto" else key
    h = signed_headers(
        secret or system.secret, system.name, method, node.http_url + path, raw, idempotency_key=idem, timestamp=timestamp, nonce=nonce
    )
    if raw:
        h["content-type"] = "application/json"
    h.update(headers or {})
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        return await http.request(method, path, content=send_body if send_body is not None else raw, headers=h)


def card_debit(recipient: str = "c.li", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "recipient": recipient,
        "template": "card.debit",
        "variables": {
            "amount": {"amount": "128.50", "currency": "CNY"},
            "account": "6222 0212 3456 7890",
            "merchant": "Coffee Lab",
            "time": "2026-05-01T10:15:00+08:00",
        },
    }
    body.update(extra)
    return body


async def start_alert_node(nodes: Nodes, **overrides: Any) -> RunningNode:
    """A node whose alert settings differ from the defaults (fallback channel, short delays)."""
    overrides.setdefault("key_file", nodes.key_file)
    settings = Settings(database_url=nodes.dsn, node_name="alerts", **overrides)
    node = await start_node(build_hub(settings, broker=MemoryBroker()), wrap_app=nodes.contract.wrap)
    nodes.running.append(node)
    return node


async def wait_for(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``await check()`` until it returns something truthy; returns it."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last: {got!r})")
        await asyncio.sleep(interval)


class WebhookGateway:
    """A real local HTTP server standing in for an SMS gateway: answers ``fail_status`` to the
    first ``fail_first`` requests (every request when ``fail_first`` is None), then 200."""

    def __init__(self, fail_first: int | None = 0, fail_status: int = 503) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self._server: Any = None
        self._task: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms?route=cn"

    async def start(self) -> WebhookGateway:
        import asyncio
        import socket

        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def sms(request: Request) -> Response:
            self.requests.append((dict(request.headers), await request.body(), request.url.query))
            failing = self.fail_first is None or len(self.requests) <= self.fail_first
            return Response(status_code=self.fail_status if failing else 200)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(Starlette(routes=[Route("/sms", sms, methods=["POST"])]), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task
