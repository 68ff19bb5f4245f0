"""Gateway nodes as real ``bankhub serve`` subprocesses, for chaos tests.

Each node runs in its own session (process group), so a test can ``kill -9`` it as an
operator would, or send it SIGTERM to drain it. Nothing outlives the test:

* :class:`NodeProcesses` kills every process group it started when it is closed (tests
  close it in a ``finally``/fixture teardown, so also when the test fails);
* every node is started through a tiny launcher that asks Linux to SIGKILL it when the
  process that started it dies (``PR_SET_PDEATHSIG``, kept across ``exec``), so even a
  test run that is itself killed with SIGKILL leaves no orphan node behind.

Node output (stdout and stderr) goes to a log file per node; :meth:`NodeProcess.log_tail`
shows the end of it in assertion messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from .valkey import free_port

__all__ = ["BANKHUB", "NodeProcess", "NodeProcesses", "poll_ready"]

BANKHUB = Path(sys.executable).with_name("bankhub")
"""The ``bankhub`` console script of this virtualenv."""

# exec's the node after asking the kernel to SIGKILL it when its parent dies; exits at once
# when the parent is already gone (it died between fork and prctl)
_LAUNCHER = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != parent:
    sys.exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


async def poll_ready(http: httpx.AsyncClient, tries: int) -> None:
    """Ask ``http``'s node ``GET /readyz`` up to ``tries`` times, 0.1 s apart, until it answers
    200 (a node still starting refuses the connection); the caller's next request tells
    whether it came up."""
    for _ in range(tries):
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


class NodeProcess:
    """One ``bankhub serve`` process on 127.0.0.1:``port``."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log_path: Path, log: IO[bytes]) -> None:
        self.name = name
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self._log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """``kill -9`` the node's whole process group: no drain, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM to the node (what an orchestrator sends before a deploy): it drains."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        """Wait (without blocking the loop) until the process exited; returns its code."""
        deadline = time.monotonic() + timeout
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} still running after {timeout}s\n{self.log_tail()}")
            await asyncio.sleep(0.01)
        return code

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``GET /readyz`` until 200; fail early (with the log) if the process died."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node {self.name} exited with {self.proc.returncode} before ready\n{self.log_tail()}")
                try:
                    r = await http.get(f"{self.http_url}/readyz")
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                await asyncio.sleep(0.05)
        raise TimeoutError(f"node {self.name} not ready after {timeout}s ({last})\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}"

    def cleanup(self) -> None:
        """SIGKILL the process group if anything is left of it; reap; close the log."""
        self.kill9()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


class NodeProcesses:
    """Starts ``bankhub serve`` nodes for one test; :meth:`close` kills whatever is left."""

    def __init__(self, log_dir: Path, **env: str) -> None:
        self.log_dir = log_dir
        self.env = env
        self.nodes: list[NodeProcess] = []

    def spawn(
        self, name: str, *, port: int | None = None, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> NodeProcess:
        """Start a node (returns at once; see :meth:`NodeProcess.wait_ready`).

        ``env``: ``BANKHUB_*`` settings without the prefix (``{"DATABASE_URL": ...}``), on
        top of the ones given to the constructor. ``NODE_NAME`` is ``name``. ``args``: more
        arguments of ``bankhub serve`` (``["--workers", "2"]``).
        """
        port = port or free_port()
        settings = {**self.env, **(env or {}), "NODE_NAME": name, "HOST": "127.0.0.1", "PORT": str(port)}
        settings.setdefault("LOG_LEVEL", "warning")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
        full_env.update({f"BANKHUB_{k}": v for k, v in settings.items()})
        full_env["PYTHONUNBUFFERED"] = "1"
        log_path = self.log_dir / f"node-{name}-{port}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed by NodeProcess.cleanup
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(BANKHUB), "serve", *args],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches all of it
            )
        except BaseException:
            log.close()
            raise
        node = NodeProcess(name, port, proc, log_path, log)
        self.nodes.append(node)
        return node

    async def start(self, *names: str, timeout: float = 30.0, **env: str) -> list[NodeProcess]:
        """Start nodes ``names`` side by side and wait until each answers ``/readyz``.

        A node whose port was taken between choosing and binding it is started again on
        another port (at most twice).
        """
        async def one(name: str) -> NodeProcess:
            for attempt in range(3):
                node = self.spawn(name, env=env)
                try:
                    await node.wait_ready(timeout)
                    return node
                except RuntimeError:
                    node.cleanup()
                    if attempt == 2 or "address already in use" not in node.log_tail().lower():
                        raise
            raise AssertionError("unreachable")

        return list(await asyncio.gather(*(one(name) for name in names)))

    def close(self) -> None:
        for node in self.nodes:
            node.cleanup()
