"""Helpers for tests of ``bankhub serve --workers N`` (:mod:`bankhub.cli.workers`).

New connections land on one of the listening workers by a hash of their address pair, so a
test that needs a client on a given worker connects until the ``hello`` names that worker
(``<node name>-w<i>``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil  # type: ignore[import-untyped]

from bankhub_client import ReconnectPolicy

from .nodeproc import NodeProcess
from .traffic import Member, RawWitness

__all__ = ["worker_processes", "worker_process", "raw_on_worker", "member_on_worker"]


def worker_processes(node: NodeProcess) -> list[psutil.Process]:
    """The worker processes of the supervisor ``node``."""
    return list(psutil.Process(node.pid).children())


def worker_process(node: NodeProcess, index: int) -> psutil.Process:
    """Worker ``index`` of the supervisor ``node`` (``--worker-index`` on its command line)."""
    for child in worker_processes(node):
        argv = child.cmdline()
        if "--worker-index" in argv and argv[argv.index("--worker-index") + 1] == str(index):
            return child
    raise AssertionError(f"no worker {index} under pid {node.pid}")


async def raw_on_worker(node: NodeProcess, who: str, token: str, worker: str, timeout: float = 40.0) -> RawWitness:
    """A raw connection of ``who`` that landed on ``worker`` (a (re)starting worker listens once
    its hub has started, a few seconds later: tried until ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            w = await RawWitness.connect(f"{who}@{worker}", node.ws_url, token)
        except OSError:  # no worker listening yet
            await asyncio.sleep(0.1)
            continue
        if w.node == worker:
            return w
        await w.close()
        await asyncio.sleep(0.05)
    raise AssertionError(f"no connection landed on {worker} in {timeout} s\n{node.log_tail()}")


async def member_on_worker(
    node: NodeProcess, who: str, token: str, worker: str, *, reconnect: ReconnectPolicy, timeout: float = 40.0, **kwargs: Any
) -> Member:
    """An SDK client of ``who`` whose first connection landed on ``worker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = await Member.connect(node.http_url, who, token, reconnect=reconnect, **kwargs)
        except Exception:  # no worker listening yet
            await asyncio.sleep(0.1)
            continue
        if m.first_node == worker:
            return m
        await m.close()
        await asyncio.sleep(0.05)
    raise AssertionError(f"no SDK connection landed on {worker} in {timeout} s\n{node.log_tail()}")
