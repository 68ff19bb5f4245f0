"""Alert benchmark: alerts accepted per second through the signed API, and API-to-device latency.

    .venv/bin/python -m bench.suite alerts             # ~1 min
    .venv/bin/python -m bench.suite alerts --quick

One embedded Postgres, ``bankhub serve`` (no fallback channel), N customers seeded by SQL
(``bench.seed.seed_groups``: users and sessions), and one calling system registered the
way ``bankhub systems add`` does it (its secret wrapped under the hub's key file; a rate
limit far above what is offered, so the limiter never refuses). Every request goes
through the real path: HMAC signature, nonce, idempotency key, the ingest transaction,
the publish.

``throughput`` — load-generator processes (``--workers``) send signed
``POST /v1/notifications`` (one alert each) in a closed loop, ``--alerts-concurrency``
requests in flight per process, for ``--alerts-duration`` seconds, to customers who are
not connected (so the figure is the API and its storage, not the sockets). Then the same
with ``POST /v1/notifications/batch`` of 100 alerts. Figures: alerts accepted (201) per
second, request latency p50/p99, refusals by problem code.

``latency`` — every customer connects over WebSocket from its own 127.x address
(receiver processes recording the arrival of each ``alert`` frame with its id); one
sender process sends signed single alerts at a fixed rate (``--alerts-rate``, open loop:
each request is due at ``start + k / rate`` whatever the previous answers) to the
customers in turn. API-to-device latency = the frame's arrival at the receiver − the
moment just before the sender wrote the request (same machine clock). The first second
is warm-up. Figures: p50/p95/p99/max, the share delivered within one second (the goal),
and alerts accepted but never seen by a device (must be 0).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import signal
import time
import uuid
from multiprocessing.process import BaseProcess
from typing import Any

from .env import PgEnv
from .hubproc import HubProcess, raise_nofile_limit
from .model import BenchClient
from .seed import seed_groups
from .stats import CpuMeter, latency_curve, latency_summary, postgres_pids
from .suite import TARGETS, SuiteConfig, _cpu_brief, _ok, _quiet, _saturated, _start_hub, _stop, log

__all__ = ["scenario_alerts", "table", "ratio_rows", "report_sections", "TARGET_P99_MS"]

TARGET_P99_MS = 1000.0  # "within a second of the API call"
TARGET_SINGLE_PER_S = TARGETS["alerts_single_per_s_min"]  # signed single POSTs accepted per second
SYSTEM = "bench-core"
_BATCH = 100
_WARMUP_S = 1.0
_ALERT = b'{"type":"alert"'


def _body(username: str, k: int) -> dict[str, Any]:
    return {
        "recipient": username,
        "template": "card.debit",
        "variables": {
            "amount": {"amount": f"{1 + k % 5000}.{k % 100:02d}", "currency": "CNY"},
            "account": "6222021234567890",
            "merchant": f"Bench Shop {k % 97}",
            "time": "2026-05-01T10:15:00+08:00",
        },
    }


async def _register(dsn: str, key_file: str) -> str:
    from bankhub.actions.alert_systems import add_system
    from bankhub.crypto import LocalKeyFile
    from bankhub.storage.db import Database

    db = Database(dsn, min_size=1, max_size=2)
    await db.open()
    try:
        _, secret = await add_system(
            db, LocalKeyFile(key_file), SYSTEM, ["transaction", "security"], rate_per_second=1e6, burst=1_000_000
        )
        return secret
    finally:
        await db.close()


# --- load generators (spawned processes) -----------------------------------------------------------


class _RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the load generators.

    httpx costs about a millisecond of CPU per request — as much as the hub's own work —
    and would make the load generator the bottleneck on two cores. This writes the request
    bytes and reads a ``Content-Length`` response on a pool of up to ``size`` connections.
    """

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def _get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            return await asyncio.open_connection("127.0.0.1", self.port)
        return await self.idle.get()

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._get()
        try:
            head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            writer.write(head.encode() + body)
            status = int((await reader.readline()).split(b" ", 2)[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            data = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            self.opened -= 1
            raise
        self.idle.put_nowait((reader, writer))
        return status, data

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


class _Signer:
    def __init__(self, port: int, secret: str, connections: int = 256) -> None:
        import msgspec

        from bankhub_client.signing import signed_headers

        self.base = f"http://127.0.0.1:{port}"
        self.secret = secret
        self.sign = signed_headers
        self.enc = msgspec.json.Encoder()
        self.http = _RawHttp(port, connections)

    async def post(self, path: str, payload: Any) -> tuple[int, Any, int]:
        """``(status, json, wall µs)``; status 0 on a network error."""
        import msgspec

        body = self.enc.encode(payload)
        headers = self.sign(self.secret, SYSTEM, "POST", self.base + path, body, idempotency_key=uuid.uuid4().hex)
        headers["content-type"] = "application/json"
        t = time.perf_counter_ns()
        try:
            status, raw = await self.http.request("POST", path, headers, body)
        except Exception:
            return 0, None, (time.perf_counter_ns() - t) // 1000
        us = (time.perf_counter_ns() - t) // 1000
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            data = None
        return status, data, us


def _run(coro: Any) -> Any:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile_limit()
    import uvloop

    return uvloop.run(coro)


def closed_loop_main(port: int, secret: str, usernames: list[str], batch: int, concurrency: int, duration: float, out: Any, worker: int) -> None:
    out.put(_run(_closed_loop(port, secret, usernames, batch, concurrency, duration, worker)))


async def _closed_loop(port: int, secret: str, usernames: list[str], batch: int, concurrency: int, duration: float, worker: int) -> dict[str, Any]:
    s = _Signer(port, secret)
    counter = worker * 10_000_000
    accepted = 0
    times: list[int] = []
    errors: dict[str, int] = {}
    start = time.monotonic()
    stop = start + duration

    async def loop() -> None:
        nonlocal counter, accepted
        while time.monotonic() < stop:
            counter += 1
            k = counter
            if batch == 1:
                status, data, us = await s.post("/v1/notifications", _body(usernames[k % len(usernames)], k))
            else:
                items = [_body(usernames[(k * batch + j) % len(usernames)], k * batch + j) for j in range(batch)]
                status, data, us = await s.post("/v1/notifications/batch", {"notifications": items})
            if status == 201:
                accepted += batch
                times.append(us)
            else:
                code = (data or {}).get("code", f"http_{status}") if isinstance(data, dict) else f"http_{status}"
                errors[code] = errors.get(code, 0) + 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    await s.http.close()
    return {"accepted": accepted, "elapsed_s": elapsed, "times_us": times, "errors": errors}


def open_loop_main(port: int, secret: str, usernames: list[str], rate: float, duration: float, start_ns: int, out: Any) -> None:
    out.put(_run(_open_loop(port, secret, usernames, rate, duration, start_ns)))


async def _open_loop(port: int, secret: str, usernames: list[str], rate: float, duration: float, start_ns: int) -> dict[str, Any]:
    s = _Signer(port, secret)
    n = int(rate * duration)
    sent_ns: dict[str, int] = {}
    api_us: list[int] = []
    errors: dict[str, int] = {}
    late = 0

    async def one(k: int) -> None:
        nonlocal late
        due = start_ns + int(k * 1e9 / rate)
        wait = (due - time.time_ns()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.005:
            late += 1
        t = time.time_ns()
        status, data, us = await s.post("/v1/notifications", _body(usernames[k % len(usernames)], k))
        if status == 201 and isinstance(data, dict):
            sent_ns[data["notification"]["alert_id"]] = t
            if (t - start_ns) / 1e9 >= _WARMUP_S:
                api_us.append(us)
        else:
            code = (data or {}).get("code", f"http_{status}") if isinstance(data, dict) else f"http_{status}"
            errors[code] = errors.get(code, 0) + 1

    await asyncio.gather(*(one(k) for k in range(n)))
    await s.http.close()
    return {"sent_ns": sent_ns, "api_us": api_us, "errors": errors, "late": late, "scheduled": n}


def receivers_main(port: int, clients: list[BenchClient], ready: Any, stop: Any, out: Any) -> None:
    out.put(_run(_receivers(port, clients, ready, stop)))


async def _receivers(port: int, clients: list[BenchClient], ready: Any, stop: Any) -> dict[str, Any]:
    import json

    from websockets.asyncio.client import connect

    seen: dict[str, int] = {}
    closed = 0

    async def hold(c: BenchClient) -> Any:
        for attempt in range(5):
            try:
                return await connect(
                    f"ws://127.0.0.1:{port}/v1/ws",
                    subprotocols=["bankhub.v1"],  # type: ignore[list-item]
                    additional_headers={"Authorization": f"Bearer {c.token}"},
                    compression=None,
                    ping_interval=None,
                    open_timeout=30,
                    local_addr=(c.source_ip, 0),
                )
            except Exception:
                await asyncio.sleep(0.25 * 2**attempt)
        return None

    async def read(ws: Any) -> None:
        nonlocal closed
        try:
            async for raw in ws:
                now = time.time_ns()
                if isinstance(raw, str) and raw.startswith('{"type":"alert"'):
                    seen[json.loads(raw)["alert"]["alert_id"]] = now
        except Exception:
            closed += 1

    sockets = [ws for ws in await asyncio.gather(*(hold(c) for c in clients)) if ws is not None]
    tasks = [asyncio.create_task(read(ws)) for ws in sockets]
    ready.put(len(sockets))
    while stop.empty():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the last frames in flight
    for ws in sockets:
        await ws.close()
    for t in tasks:
        t.cancel()
    return {"seen_ns": seen, "connected": len(sockets), "closed": closed}


# --- the orchestrator -------------------------------------------------------------------------------


def _collect(out: Any, procs: list[BaseProcess], n: int, timeout: float, meter: CpuMeter | None = None) -> list[dict[str, Any]]:
    """The reports of ``n`` processes; snapshots ``meter`` once a second meanwhile, so the
    CPU of processes that exit when done is counted up to their last second."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        if meter is not None:
            meter.snapshot()
        try:
            got.append(out.get(timeout=1.0))
        except queue.Empty:
            if time.monotonic() > deadline:
                raise TimeoutError("load generators did not report in time") from None
            if all(not p.is_alive() for p in procs) and out.empty():
                raise RuntimeError("a load generator died without reporting")
    for p in procs:
        p.join(10)
    return got


def _throughput(cfg: SuiteConfig, hub: HubProcess, secret: str, usernames: list[str], meter: CpuMeter, batch: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    concurrency = max(1, cfg.alerts_concurrency // (1 if batch == 1 else 4))
    procs = [
        ctx.Process(
            target=closed_loop_main,
            args=(hub.port, secret, usernames, batch, concurrency, cfg.alerts_duration, out, w),
            name=f"bench-alerts-{w}",
            daemon=True,
        )
        for w in range(cfg.workers)
    ]
    meter.groups["loadgen"] = lambda: [p.pid for p in procs if p.pid is not None]
    before = meter.snapshot(every_process=True)
    for p in procs:
        p.start()
    results = _collect(out, procs, len(procs), cfg.alerts_duration + 120, meter)
    cpu = CpuMeter.delta(before, meter.snapshot(every_process=True))
    accepted = sum(r["accepted"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    times = [t for r in results for t in r["times_us"]]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "batch": batch,
        "in_flight": concurrency * len(procs),
        "accepted": accepted,
        "seconds": round(elapsed, 2),
        "alerts_per_s": round(accepted / elapsed, 1) if elapsed else 0.0,
        "requests_per_s": round(len(times) / elapsed, 1) if elapsed else 0.0,
        "request_ms": latency_summary(times),
        "errors": errors,
        "cpu": cpu,
        "hub_cpu_us_per_alert": round(1e6 * cpu["hub"]["cpu_s"] / accepted, 1) if accepted else None,
        "postgres_cpu_us_per_alert": round(1e6 * cpu["postgres"]["cpu_s"] / accepted, 1) if accepted else None,
    }


def _latency(cfg: SuiteConfig, hub: HubProcess, secret: str, clients: list[BenchClient], usernames: list[str], meter: CpuMeter) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    ready: Any = ctx.Queue()
    stop: Any = ctx.Queue()
    n = cfg.workers
    receivers = [
        ctx.Process(
            target=receivers_main,
            args=(hub.port, clients[len(clients) * w // n : len(clients) * (w + 1) // n], ready, stop, out),
            name=f"bench-alert-receivers-{w}",
            daemon=True,
        )
        for w in range(n)
    ]
    for p in receivers:
        p.start()
    connected = 0
    for _ in receivers:
        connected += ready.get(timeout=300)
    log(f"suite: alerts: {connected} of {len(clients)} customers connected; sending {cfg.alerts_rate:g} alerts/s for {cfg.alerts_duration:g} s")
    start_ns = time.time_ns() + 500_000_000
    sender_out: Any = ctx.Queue()
    sender = ctx.Process(
        target=open_loop_main,
        args=(hub.port, secret, usernames, cfg.alerts_rate, cfg.alerts_duration + _WARMUP_S, start_ns, sender_out),
        name="bench-alert-sender",
        daemon=True,
    )
    meter.groups["loadgen"] = lambda: [p.pid for p in [*receivers, sender] if p.pid is not None]
    before = meter.snapshot(every_process=True)
    sender.start()
    sent = _collect(sender_out, [sender], 1, cfg.alerts_duration + 180, meter)[0]
    stop.put(True)
    got = _collect(out, receivers, len(receivers), 120, meter)
    cpu = CpuMeter.delta(before, meter.snapshot(every_process=True))
    seen: dict[str, int] = {}
    for g in got:
        seen.update(g["seen_ns"])
    latencies: list[int] = []
    lost = 0
    for alert_id, t in sent["sent_ns"].items():
        if (t - start_ns) / 1e9 < _WARMUP_S:
            continue
        arrived = seen.get(alert_id)
        if arrived is None:
            lost += 1
        else:
            latencies.append((arrived - t) // 1000)
    within = sum(1 for x in latencies if x <= 1_000_000)
    return {
        "rate": cfg.alerts_rate,
        "seconds": cfg.alerts_duration,
        "customers_connected": connected,
        "scheduled": sent["scheduled"],
        "accepted": len(sent["sent_ns"]),
        "late_sends": sent["late"],
        "errors": sent["errors"],
        "measured": len(latencies) + lost,
        "never_delivered": lost,
        "closed_by_server": sum(g["closed"] for g in got),
        "api_to_device_ms": latency_summary(latencies),
        "api_to_device_cdf_ms": latency_curve(latencies),
        "within_1s_pct": round(100 * within / len(latencies), 3) if latencies else None,
        "api_response_ms": latency_summary(sent["api_us"]),
        "cpu": cpu,
    }


def scenario_alerts(cfg: SuiteConfig) -> dict[str, Any]:
    pg = PgEnv()
    hub: HubProcess | None = None
    out: dict[str, Any] = {"customers": cfg.alerts_customers}
    try:
        _, groups = asyncio.run(seed_groups(pg.dsn, [cfg.alerts_customers]))
        members = groups[cfg.alerts_customers][1]
        usernames = [f"bench-g-{i:06d}" for i in range(len(members))]
        out["quiet_check"] = _quiet(cfg)
        hub = _start_hub(cfg, pg, "alerts")
        secret = asyncio.run(_register(pg.dsn, str(pg.tmp / "bench-keys.json")))
        hub_pid, pgdata = hub.pid, pg.data_dir
        meter = CpuMeter({"hub": lambda: [hub_pid], "postgres": lambda: postgres_pids(pgdata), "bench_main": lambda: [os.getpid()]})
        log(f"suite: alerts: throughput, single alerts, {cfg.workers} x {cfg.alerts_concurrency} in flight, {cfg.alerts_duration:g} s")
        out["single"] = _throughput(cfg, hub, secret, usernames, meter, 1)
        log(f"suite: alerts: {out['single']['alerts_per_s']:,.0f} alerts/s single; now batches of {_BATCH}")
        out["batch"] = _throughput(cfg, hub, secret, usernames, meter, _BATCH)
        log(f"suite: alerts: {out['batch']['alerts_per_s']:,.0f} alerts/s in batches; now latency at {cfg.alerts_rate:g}/s")
        out["latency"] = _latency(cfg, hub, secret, members, usernames, meter)
        out["saturated"] = {
            "single": _saturated(out["single"]["cpu"], ("hub", "postgres", "loadgen")),
            "batch": _saturated(out["batch"]["cpu"], ("hub", "postgres", "loadgen")),
            "latency": _saturated(out["latency"]["cpu"], ("hub", "postgres", "loadgen")),
        }
        return out
    finally:
        _stop(hub, "hub")
        pg.stop()


# --- tables and report ------------------------------------------------------------------------------


def _ms(s: dict[str, Any]) -> str:
    return f"p50 {s['p50']}  p95 {s['p95']}  p99 {s['p99']}  max {s['max']} (n={s['n']})"


def table(name: str, r: dict[str, Any]) -> str:
    lines = [f"alerts  ({r['customers']} customers; signed API, one node, no fallback channel)"]
    for key, label in (("single", "single POST"), ("batch", f"batch of {_BATCH}")):
        t = r[key]
        lines.append(
            f"  {label:<14} {t['alerts_per_s']:>9,.0f} alerts/s accepted ({t['requests_per_s']:,.0f} requests/s, {t['in_flight']} in flight)  "
            f"request ms {_ms(t['request_ms'])}  errors {t['errors'] or 0}"
        )
        lines.append(f"  {'':<14} cpu {_cpu_brief(t['cpu'], ('hub', 'postgres', 'loadgen'))}  | hub {t['hub_cpu_us_per_alert']} us/alert")
        if key == "single":
            lines[-2] += f"  [target >= {TARGET_SINGLE_PER_S:,.0f}/s: {_ok(t['alerts_per_s'] >= TARGET_SINGLE_PER_S)}]"
    lat = r["latency"]
    d = lat["api_to_device_ms"]
    met = d["p99"] is not None and d["p99"] <= TARGET_P99_MS and lat["never_delivered"] == 0
    lines.append(
        f"  latency        {lat['rate']:g} alerts/s to {lat['customers_connected']} connected customers, {lat['seconds']:g} s: "
        f"API->device ms {_ms(d)}  within 1 s {lat['within_1s_pct']}%  [target p99 <= 1000 ms, none lost: {_ok(met)}]"
    )
    lines.append(
        f"  {'':<14} API response ms {_ms(lat['api_response_ms'])}  never delivered {lat['never_delivered']}  errors {lat['errors'] or 0}  late sends {lat['late_sends']}"
    )
    lines.append(f"  {'':<14} cpu {_cpu_brief(lat['cpu'], ('hub', 'postgres', 'loadgen'))}")
    return "\n".join(lines)


def ratio_rows(all_results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    r = all_results.get("alerts")
    if not r:
        return []
    d = r["latency"]["api_to_device_ms"]
    return [
        {"scenario": "alerts", "figure": "alerts/s (single POST)", "hub": r["single"]["alerts_per_s"], "baseline": None,
         "baseline_name": "-", "ratio": None, "target": f">= {TARGET_SINGLE_PER_S:,.0f}/s", "met": r["single"]["alerts_per_s"] >= TARGET_SINGLE_PER_S},
        {"scenario": "alerts", "figure": f"alerts/s (batch of {_BATCH})", "hub": r["batch"]["alerts_per_s"], "baseline": None,
         "baseline_name": "-", "ratio": None, "target": "-", "met": None},
        {"scenario": "alerts", "figure": "API->device p50 ms", "hub": d["p50"], "baseline": None,
         "baseline_name": "-", "ratio": None, "target": "-", "met": None},
        {"scenario": "alerts", "figure": "API->device p99 ms", "hub": d["p99"], "baseline": None, "baseline_name": "-", "ratio": None,
         "target": "<= 1000 ms, 0 lost", "met": bool(d["p99"] is not None and d["p99"] <= TARGET_P99_MS and r["latency"]["never_delivered"] == 0)},
    ]  # fmt: skip


def report_sections(r: dict[str, dict[str, Any]], cpu_table: Any, interference: Any, when: Any) -> list[str]:
    s = r.get("alerts")
    if not s:
        return []
    lat = s["latency"]
    d = lat["api_to_device_ms"]
    lines = ["", f"## alerts {when(s)}", "", "```", table("alerts", s), "```", ""]
    lines += [
        f"Signed `POST /v1/notifications` ({s['single']['alerts_per_s']:,.0f} alerts/s) and batches of {_BATCH} "
        f"({s['batch']['alerts_per_s']:,.0f} alerts/s) to {s['customers']:,} offline customers; then "
        f"{lat['rate']:g} alerts/s to {lat['customers_connected']:,} connected customers: API to device "
        f"p50 {d['p50']} ms, p99 {d['p99']} ms, {lat['within_1s_pct']}% within a second, {lat['never_delivered']} never delivered.",
        "",
    ]
    lines += cpu_table([("single", s["single"]["cpu"]), ("batch", s["batch"]["cpu"]), ("latency", lat["cpu"])], ("hub", "postgres", "loadgen"))
    lines += interference([("single", s["single"]["cpu"]), ("batch", s["batch"]["cpu"]), ("latency", lat["cpu"])])
    return lines
