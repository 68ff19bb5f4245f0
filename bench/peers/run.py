"""``python -m bench.peers``: Synapse, then bankhub, on the same work; the ratios.

    .venv/bin/python -m bench.peers            # K=32 pairs, N=500 online, 10-s loops (a few minutes)
    .venv/bin/python -m bench.peers --quick    # smoke run

For each server, in order: its own embedded Postgres and the server process; the same
number of users (Synapse: registered over its admin API and paired in direct rooms;
bankhub: seeded by SQL, paired in direct conversations); one client connects and leaves
(first-use caches), the server's RSS settles; N clients come online, the RSS settles
again (RSS per client); the closed loop (durable msg/s); the open loop (send→deliver at a
fixed rate); everything is stopped. See bench/README.md, section "Peers".
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..env import PgEnv, stop_on_signals
from ..hubproc import HubProcess, free_port, key_file_env, raise_nofile_limit
from ..seed import seed_clients, seed_history
from ..stats import CpuMeter, postgres_pids
from .clients import HubClients, Session, SynapseClients, User, bring_online, closed_loop, open_loop, settle_rss
from .config import BANKHUB_LIMITS_OFF, Options, Sizes, dump, parse_args, ratios, sizes_dict, sync_filter, table
from .synapse import SynapseServer, ensure_venv, register_users

__all__ = ["main"]

_MIB = 1024 * 1024


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


def _cpu(c: dict[str, Any]) -> dict[str, Any]:
    keep = ("server", "postgres", "clients", "other")
    return {
        **{k: {"cpu_s": c[k]["cpu_s"], "pct_of_core": c[k]["pct_of_core"]} for k in keep if isinstance(c.get(k), dict)},
        "machine_busy_pct": c["machine_busy_pct"],
        "wall_s": c["wall_s"],
    }


async def _measure(session: Session, server_pid: int, pg_pids: Callable[[], Iterable[int]], sizes: Sizes) -> dict[str, Any]:
    """The three figures against one running server, with ``session``'s users."""
    users = session.users
    meter = CpuMeter({"server": lambda: [server_pid], "postgres": pg_pids, "clients": lambda: [os.getpid()]})  # type: ignore[dict-item]
    out: dict[str, Any] = {}

    # first use (imports, caches, pool growth) is not per client
    await session.peer.online(users[0], session.on_message)
    await asyncio.sleep(0.5)
    await session.peer.offline(users[0])
    before = await settle_rss(server_pid, min_s=2.0)
    _log(f"peers: [{session.peer.name}] server RSS {before['rss'] / _MIB:.1f} MiB; bringing {len(users)} clients online")
    online = await bring_online(session, users)
    after = await settle_rss(server_pid, min_s=3.0)
    n = session.peer.online_count()
    online["online"] = n
    out["online"] = online
    if n == 0:
        raise RuntimeError(f"no {session.peer.name} client came online: {online['failed_attempts']}")
    out["memory"] = {
        "clients": n,
        "rss_before_mib": round(before["rss"] / _MIB, 1),
        "rss_after_mib": round(after["rss"] / _MIB, 1),
        "kib_per_client": round((after["rss"] - before["rss"]) / n / 1024, 2),
        "uss_kib_per_client": round((after["uss"] - before["uss"]) / n / 1024, 2),
        "settled": before["settled"] and after["settled"],
    }
    _log(
        f"peers: [{session.peer.name}] {n} online in {online['seconds']:.1f}s; "
        f"RSS {after['rss'] / _MIB:.1f} MiB = {out['memory']['kib_per_client']:.1f} KiB per client"
    )

    _log(f"peers: [{session.peer.name}] closed loop: {sizes.pairs} senders, {sizes.warmup_s:g}s warm-up + {sizes.durable_s:g}s")
    a = meter.snapshot()
    out["durable"] = await closed_loop(session, sizes.pairs, sizes.warmup_s, sizes.durable_s, sizes.drain_s, sizes.text_bytes)
    out["durable"]["cpu"] = _cpu(CpuMeter.delta(a, meter.snapshot()))
    d = out["durable"]
    # CPU per message does not depend on who else had the cores (this machine is shared)
    c = d["cpu"]
    if d["acked"]:
        d["server_cpu_ms_per_msg"] = round(1000 * c["server"]["cpu_s"] / d["acked"], 3)
        d["server_and_postgres_cpu_ms_per_msg"] = round(1000 * (c["server"]["cpu_s"] + c["postgres"]["cpu_s"]) / d["acked"], 3)
    _log(f"peers: [{session.peer.name}] durable {d['acked_per_s']:.0f} msg/s, ack p50 {d['ack_ms']['p50']} ms; lost {d['lost']}, failed {d['failed']}")

    _log(f"peers: [{session.peer.name}] open loop: {sizes.rate:g} msg/s, {sizes.warmup_s:g}s warm-up + {sizes.latency_s:g}s")
    a = meter.snapshot()
    out["latency"] = await open_loop(session, sizes.pairs, sizes.rate, sizes.warmup_s, sizes.latency_s, sizes.drain_s, sizes.text_bytes)
    out["latency"]["cpu"] = _cpu(CpuMeter.delta(a, meter.snapshot()))
    lat = out["latency"]
    _log(f"peers: [{session.peer.name}] send->deliver p50 {lat['deliver_ms']['p50']} ms p99 {lat['deliver_ms']['p99']} ms; lost {lat['lost']}")

    out["lost"] = d["lost"] + lat["lost"]
    kinds = session.peer.errors
    out["errors"] = d["failed"] + lat["failed"] + d["unacked"] + lat["unacked"] + (len(users) - n) + sum(v for k, v in kinds.items() if "retried" not in k)
    out["retries"] = sum(v for k, v in kinds.items() if "retried" in k)
    out["error_kinds"] = dict(session.peer.errors)
    return out


def _shielded(stop: Callable[[], None]) -> None:
    """Run ``stop`` with Ctrl-C and SIGTERM held off: a second Ctrl-C must not leave a server behind."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _wait_quiet(limit_s: float, threshold: float = 15.0) -> dict[str, Any]:
    """The machine's busy % over one second, waiting (up to ``limit_s``) for it to drop under ``threshold``."""
    meter = CpuMeter({})
    deadline = time.monotonic() + limit_s
    while True:
        a = meter.snapshot()
        time.sleep(1.0)
        busy: float = CpuMeter.delta(a, meter.snapshot())["machine_busy_pct"]
        if busy <= threshold or time.monotonic() >= deadline:
            if busy > threshold:
                _log(f"peers: WARNING: the machine is {busy:.0f}% busy before this server's run")
            return {"machine_busy_pct": busy, "waited_s": round(max(0.0, limit_s - (deadline - time.monotonic())), 1)}


def run_synapse(opts: Options) -> dict[str, Any]:
    sizes = opts.sizes
    python, version = ensure_venv(opts.venv, opts.synapse_spec)
    _log(f"peers: Synapse {version} from {opts.venv}")
    server = SynapseServer(python, opts.out / "peers")
    try:
        server.start()
        t = time.perf_counter()
        users = _run(register_users(server, sizes.users, sizes.pairs))
        _log(f"peers: [synapse] registered {len(users)} users, {sizes.pairs} direct rooms in {time.perf_counter() - t:.1f}s")
        pgdata = server.pgdata

        async def go() -> dict[str, Any]:
            session = Session(SynapseClients(server.base_url, sync_filter()), users)
            try:
                return await _measure(session, server.pid, lambda: postgres_pids(pgdata) if pgdata else [], sizes)
            finally:
                await session.peer.close()

        result: dict[str, Any] = _run(go())
        result["versions"] = f"Synapse {version}, single process, Python {_python_version(python)}"
        return result
    finally:
        _shielded(server.stop)


def _python_version(python: Path) -> str:
    import subprocess

    try:
        return subprocess.run([str(python), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def run_bankhub(opts: Options) -> dict[str, Any]:
    sizes = opts.sizes
    pg: PgEnv | None = None
    hub: HubProcess | None = None
    try:
        pg = PgEnv(prefix="bankhub-peers-hub-")
        seeded = _run(seed_clients(pg.dsn, sizes.users))
        # older messages with statistics, as in steady state (bench.run does the same; see bench/README.md)
        _run(seed_history(pg.dsn, 20_000, sizes.text_bytes + 40))
        users = [User(i, c.user_id, c.token, c.conversation_id, i + 1 if i % 2 == 0 else i - 1, c.source_ip) for i, c in enumerate(seeded)]
        hub = HubProcess(pg.dsn, free_port(), opts.out / "peers" / "hub.log", {**key_file_env(pg.tmp), **BANKHUB_LIMITS_OFF})
        hub.wait_ready()
        _log(f"peers: bankhub pid {hub.pid} ready on 127.0.0.1:{hub.port}; {len(users)} users seeded")
        pgdata = pg.data_dir
        url = hub.ws_url

        async def go() -> dict[str, Any]:
            session = Session(HubClients(url), users)
            try:
                return await _measure(session, hub.pid, lambda: postgres_pids(pgdata), sizes)
            finally:
                await session.peer.close()

        result: dict[str, Any] = _run(go())
        result["versions"] = f"bankhub, one `bankhub serve` process, Python {sys.version.split()[0]}"
        return result
    finally:

        def stop() -> None:
            try:
                if hub is not None:
                    # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop
                    _log(f"peers: hub stopped (exit {hub.stop()})")
            finally:
                if pg is not None:
                    pg.stop()

        _shielded(stop)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    (opts.out / "peers").mkdir(parents=True, exist_ok=True)
    stop_on_signals()
    nofile = raise_nofile_limit()
    if nofile < opts.sizes.users * 3 + 100:
        _log(f"peers: WARNING: open-file limit {nofile} is low for {opts.sizes.users} clients")
    started = time.time()
    result: dict[str, Any] = {"sizes": sizes_dict(opts.sizes), "sides": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    try:
        for side in ("synapse", "bankhub"):
            if side in opts.only:
                _log(f"peers: --- {side} ---")
                quiet = _wait_quiet(opts.wait_quiet)
                result["sides"][side] = run_synapse(opts) if side == "synapse" else run_bankhub(opts)
                result["sides"][side]["before_run"] = quiet
    except KeyboardInterrupt:
        _log("peers: interrupted; everything was stopped")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
    result["ratios"] = ratios(result["sides"])
    result["seconds"] = round(time.time() - started, 1)
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    text = dump(result)
    (opts.out / "peers.json").write_text(text + "\n")
    print(text)
    _log(table(result))
    _log(f"peers: wrote {opts.out / 'peers.json'} ({result['seconds']:.0f}s)")
    return 0
