"""Official-account benchmarks: what publishing a notice costs as an account's followers
grow, and how fast one node pushes notices to its connected followers.

    .venv/bin/python -m bench.suite publish            # 1,000 vs 1,000,000 followers (~2 min, most of it seeding)
    .venv/bin/python -m bench.suite broadcast          # 5,000 connected followers, hub vs bare broadcast()
    .venv/bin/python -m bench.suite publish broadcast --quick

``publish`` — two accounts in one database, one followed by ``sizes[0]`` users (1,000)
and one by ``sizes[-1]`` (1,000,000; 100,000 with ``--quick``), seeded by SQL
(``INSERT ... SELECT generate_series``: the API would need a million sign-ups). Notices
go through the real path, ``POST /v1/accounts/{id}/notices`` against ``bankhub serve``,
one at a time, alternating between the accounts in chunks (so a busy moment of the
machine hits both), paced at one request per ``_PUBLISH_INTERVAL_S`` from a pool of
publisher administrators (each stays far below the per-user API rate limit). The
figure is the request's wall time (sent -> response read) per account: p50/p99/mean,
and mean(large) / mean(small), which O(1) writes keep near 1. The publisher figures
(``GET /v1/notices/{id}/stats``, the median of a few requests for the last notice of each
account) read counters kept by the follow, unfollow, read and publish transactions (delta
0026): O(1) as well, targets <= 10 ms at the large size and large / small <= 1.2.

``broadcast`` — one account followed by N = 5,000 users, each with a session and
connected over WebSocket from its own 127.x address (bench/fanout.py's receivers, in
their own processes, counting ``notice`` frames). A round: K = 50 notices published over
HTTP, with 4 requests in flight, then (other rounds) one by one, each request waiting for
its 201 as an administrator's tool would; the round ends when every follower has K
notices. The same receivers then connect to the bare ``websockets`` server, which
``broadcast()``s K copies of the hub's exact ``notice`` frame (captured in a hub round).
Deliveries/s, hub / bare, median of the rounds; target >= 1.0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]

from bankhub.ids import new_token, token_hash

from .bare import BareProcess
from .env import PgEnv
from .hubproc import HubProcess, free_port
from .model import BenchClient
from .profile import Profiler
from .seed import source_address
from .stats import CpuMeter, latency_curve, latency_summary, postgres_pids
from .suite import (
    TARGETS,
    Receivers,
    SuiteConfig,
    _cpu_brief,
    _fanout_round,
    _lat,
    _ok,
    _quiet,
    _saturated,
    _start_hub,
    _stop,
    log,
)

__all__ = ["scenario_publish", "scenario_broadcast", "seed_accounts", "table", "ratio_rows", "report_sections", "current_broadcast"]

_PASSWORD_HASH = "bench-no-login"  # nobody signs in: sessions are seeded
_PUBLISHERS = 16  # head-office administrators taking turns: each stays far below the API limit (20/s)
_PUBLISH_INTERVAL_S = 0.01  # at most 100 publishes/s in the publish scenario: ~6/s per administrator
_PUBLISH_CHUNK = 20  # publishes per account before switching to the other account
_STATS_REPEAT = 21
_NOTICE = b'{"type":"notice"'


# --- seeding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publisher:
    """A head-office administrator with a live session: may publish on every account."""

    user_id: str
    token: str


@dataclass(frozen=True)
class AccountWorld:
    org_id: str
    publishers: list[Publisher]
    accounts: dict[int, str]  # follower count -> account id
    followers: list[BenchClient]  # the first ``sessions_for`` followers, with sessions


async def seed_accounts(dsn: str, sizes: list[int], publishers: int, sessions_for: int = 0) -> AccountWorld:
    """One head-office org, ``publishers`` administrators with sessions, ``max(sizes)``
    customers, and one customer-audience account per size followed by the first ``n``
    customers. ``sessions_for`` customers (the first ones) also get a session and a source
    address, as :class:`BenchClient` (``conversation_id`` is the account of the largest size).

    Users and follows are written with ``INSERT ... SELECT generate_series`` inside
    Postgres (a million rows in seconds), then ``VACUUM ANALYZE``: the hub meets tables
    with statistics and set hint bits, as in steady state.
    """
    n_max = max(sizes)
    org_id = uuid.uuid4()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    admins: list[tuple[object, ...]] = []
    sessions: list[tuple[object, ...]] = []
    pubs: list[Publisher] = []
    for i in range(publishers):
        uid, token = uuid.uuid4(), new_token()
        admins.append((uid, f"bench-admin-{i:03d}", f"Bench Admin {i}", "head_office_admin", org_id, _PASSWORD_HASH))
        sessions.append((uuid.uuid4(), uid, token_hash(token), expires))
        pubs.append(Publisher(str(uid), token))
    accounts = {n: uuid.uuid4() for n in sorted(set(sizes))}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO orgs (id, parent_id, kind, code, name) VALUES ($1, NULL, 'head_office', $2, 'Bench Head Office')",
                org_id,
                f"BENCH-{org_id.hex[:8]}",
            )
            await conn.copy_records_to_table(
                "users", records=admins, columns=["id", "username", "display_name", "role", "org_id", "password_hash"]
            )
            await conn.execute("CREATE TEMP TABLE bench_followers (i int PRIMARY KEY, id uuid NOT NULL) ON COMMIT DROP")
            await conn.execute("INSERT INTO bench_followers SELECT i, gen_random_uuid() FROM generate_series(1, $1) AS i", n_max)
            await conn.execute(
                """INSERT INTO users (id, username, display_name, role, org_id, password_hash)
                   SELECT id, 'bench-f-' || lpad(i::text, 7, '0'), 'Follower ' || i, 'customer', $1, $2
                   FROM bench_followers ORDER BY i""",
                org_id,
                _PASSWORD_HASH,
            )
            for n, account in accounts.items():
                await conn.execute(
                    """INSERT INTO official_accounts (id, handle, name, description, owner_org_id, audience, created_by)
                       VALUES ($1, $2, $3, 'benchmark account', $4, 'customer', $5)""",
                    account,
                    f"bench.f{n}",
                    f"Bench {n:,} followers",
                    org_id,
                    uuid.UUID(pubs[0].user_id),
                )
                await conn.execute(
                    "INSERT INTO account_follows (account_id, user_id, read_seq) SELECT $1, id, 0 FROM bench_followers WHERE i <= $2",
                    account,
                    n,
                )
            followers: list[BenchClient] = []
            if sessions_for:
                rows = await conn.fetch("SELECT id FROM bench_followers WHERE i <= $1 ORDER BY i", sessions_for)
                for k, r in enumerate(rows):
                    token = new_token()
                    sessions.append((uuid.uuid4(), r["id"], token_hash(token), expires))
                    followers.append(BenchClient(str(r["id"]), token, str(accounts[n_max]), pubs[0].user_id, source_address(k)))
            await conn.copy_records_to_table("sessions", records=sessions, columns=["id", "user_id", "token_hash", "expires_at"])
        await conn.execute("VACUUM ANALYZE orgs, users, official_accounts, account_follows, sessions")
    finally:
        await conn.close()
    return AccountWorld(str(org_id), pubs, {n: str(a) for n, a in accounts.items()}, followers)


async def _table_sizes(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT relname, n_live_tup, pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables
               WHERE relname = ANY ($1::text[])""",
            ["users", "account_follows", "notices", "official_accounts"],
        )
        return {r["relname"]: {"rows": int(r["n_live_tup"]), "mib": round(int(r["bytes"]) / 2**20, 1)} for r in rows}
    finally:
        await conn.close()


# --- publishing over HTTP --------------------------------------------------------------------


class _Api:
    """HTTP calls of the publisher pool against one hub (one keep-alive connection)."""

    def __init__(self, port: int, publishers: list[Publisher], text_bytes: int) -> None:
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120.0)
        self.publishers = publishers
        self.turn = 0
        self.text_bytes = text_bytes
        self.errors: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()

    def _auth(self) -> dict[str, str]:
        p = self.publishers[self.turn % len(self.publishers)]
        self.turn += 1
        return {"authorization": f"Bearer {p.token}"}

    async def warm(self) -> None:
        """Open the connection before anything is timed."""
        await self.http.get("/readyz")

    async def publish(self, account: str, retries: int = 0) -> tuple[int, dict[str, Any] | None]:
        """One notice to all followers; (wall time in µs, the created notice or None on an error).

        ``retries``: answers that say "nothing happened, try again" (503, 429) are retried that
        many times, after the ``Retry-After`` the hub gives (else 0.25, 0.5, 1 s, ...; at most 2 s),
        as a client would; each retry is counted in ``retried``.
        """
        head = f"bench notice {self.turn} "
        body = {"body": {"kind": "text", "text": head + "x" * max(0, self.text_bytes - len(head))}}
        t0 = time.perf_counter_ns()
        for attempt in range(retries + 1):
            r = await self.http.post(f"/v1/accounts/{account}/notices", json=body, headers=self._auth())
            if r.status_code in (429, 503) and attempt < retries:
                self.retried[f"HTTP {r.status_code} {_problem_code(r)}"] += 1
                try:
                    pause = float(r.headers.get("retry-after", ""))
                except ValueError:
                    pause = 0.25 * 2**attempt
                await asyncio.sleep(min(2.0, max(0.05, pause)))
                continue
            break
        us = (time.perf_counter_ns() - t0) // 1000
        if r.status_code != 201:
            self.errors[f"HTTP {r.status_code} {_problem_code(r)}"] += 1
            return us, None
        notice: dict[str, Any] = r.json()
        return us, notice

    async def stats(self, notice_id: str) -> tuple[int, dict[str, Any] | None]:
        headers = self._auth()
        t0 = time.perf_counter_ns()
        r = await self.http.get(f"/v1/notices/{notice_id}/stats", headers=headers)
        us = (time.perf_counter_ns() - t0) // 1000
        if r.status_code != 200:
            self.errors[f"stats HTTP {r.status_code} {_problem_code(r)}"] += 1
            return us, None
        figures: dict[str, Any] = r.json()["stats"]
        return us, figures

    async def close(self) -> None:
        await self.http.aclose()


def _problem_code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code", ""))
    except ValueError:
        return ""


def _ms_summary(samples_us: list[int]) -> dict[str, Any]:
    s = dict(latency_summary(samples_us))
    s["mean"] = round(statistics.fmean(samples_us) / 1000, 3) if samples_us else None
    return s


# --- scenario: publish cost vs follower count --------------------------------------------------


async def _publish_phase(cfg: SuiteConfig, hub: HubProcess, world: AccountWorld, meter: CpuMeter) -> dict[str, Any]:
    sizes = sorted(world.accounts)
    api = _Api(hub.port, world.publishers, cfg.text_bytes)
    next_at = time.monotonic()

    async def paced(account: str) -> tuple[int, dict[str, Any] | None]:
        nonlocal next_at
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        next_at = max(next_at, time.monotonic()) + _PUBLISH_INTERVAL_S
        return await api.publish(account)

    try:
        await api.warm()
        for _ in range(cfg.publish_warmup):
            for n in sizes:
                await paced(world.accounts[n])
        log(f"suite: publish: {cfg.publish_warmup} warm-up publishes per account done; measuring {cfg.publish_count} per account")
        times: dict[int, list[int]] = {n: [] for n in sizes}
        cpu_s: dict[int, dict[str, float]] = {n: {"hub": 0.0, "postgres": 0.0} for n in sizes}
        last: dict[int, dict[str, Any]] = {}
        seqs: dict[int, list[int]] = {n: [] for n in sizes}
        first = meter.snapshot(every_process=True)
        chunks = (cfg.publish_count + _PUBLISH_CHUNK - 1) // _PUBLISH_CHUNK
        deadline = time.monotonic() + 600  # bounded: ~2 x count x interval is expected
        next_line = time.monotonic() + 1
        for c in range(chunks):
            order = sizes if c % 2 == 0 else sizes[::-1]
            for n in order:
                todo = min(_PUBLISH_CHUNK, cfg.publish_count - len(times[n]))
                before = meter.snapshot()
                for _ in range(todo):
                    us, notice = await paced(world.accounts[n])
                    times[n].append(us)
                    if notice is not None:
                        last[n] = notice
                        seqs[n].append(int(notice["seq"]))
                delta = CpuMeter.delta(before, meter.snapshot())
                for g in ("hub", "postgres"):
                    cpu_s[n][g] += delta[g]["cpu_s"]
                if time.monotonic() > deadline:
                    raise TimeoutError("publish phase took more than 600 s")
                if time.monotonic() >= next_line:
                    next_line = time.monotonic() + 1
                    log(f"  [publish] {' '.join(f'{k:,}: {len(v)}' for k, v in times.items())} of {cfg.publish_count}")
        cpu = CpuMeter.delta(first, meter.snapshot(every_process=True))
        log("suite: publish: measuring the publisher figures query (GET /v1/notices/{id}/stats)")
        stats: dict[int, dict[str, Any]] = {}
        runs: dict[int, list[int]] = {n: [] for n in sizes if n in last}
        figures: dict[int, dict[str, Any] | None] = {}
        for _ in range(_STATS_REPEAT):
            for n in runs:  # the sizes take turns, so a busy moment of the machine hits both
                us, figures[n] = await api.stats(str(last[n]["id"]))
                runs[n].append(us)
        for n, got in runs.items():
            stats[n] = {
                "ms": [round(x / 1000, 2) for x in got],
                "median_ms": round(statistics.median(got) / 1000, 2),
                "min_ms": round(min(got) / 1000, 2),
                "figures": figures[n],
            }
        out: dict[str, Any] = {"sizes": {}, "cpu": cpu, "errors": dict(api.errors)}
        for n in sizes:
            got = seqs[n]
            published = len(got)
            out["sizes"][str(n)] = {
                "followers": n,
                "account_id": world.accounts[n],
                "published": published,
                # every publication took the account's next seq: the stream stayed gap-free
                "seqs_consecutive": bool(got) and got == list(range(got[0], got[0] + published)),
                "publish_ms": _ms_summary(times[n]),
                "publish_cdf_ms": latency_curve(times[n]),
                # psutil reads CPU time in 10-ms ticks: over 200 publishes in 10 chunks that is good to ~10%
                "hub_cpu_us_per_publish": round(1e6 * cpu_s[n]["hub"] / published) if published else None,
                "postgres_cpu_us_per_publish": round(1e6 * cpu_s[n]["postgres"] / published) if published else None,
                "stats_query": stats.get(n),
            }
        return out
    finally:
        await api.close()


def scenario_publish(cfg: SuiteConfig) -> dict[str, Any]:
    sizes = sorted(set(cfg.publish_sizes))
    if len(sizes) < 2:
        raise ValueError("--publish-sizes needs two follower counts (small,large)")
    pg = PgEnv()
    hub: HubProcess | None = None
    out: dict[str, Any] = {
        "follower_sizes": sizes,
        "publishes_per_account": cfg.publish_count,
        "warmup_per_account": cfg.publish_warmup,
        "interval_ms": _PUBLISH_INTERVAL_S * 1000,
        "chunk": _PUBLISH_CHUNK,
        "publishers": _PUBLISHERS,
    }
    try:
        t = time.perf_counter()
        world = asyncio.run(seed_accounts(pg.dsn, sizes, _PUBLISHERS))
        out["seed_seconds"] = round(time.perf_counter() - t, 1)
        out["tables_before"] = asyncio.run(_table_sizes(pg.dsn))
        log(f"suite: publish: seeded {max(sizes):,} followers and accounts of {sizes} followers in {out['seed_seconds']}s")
        out["quiet_check"] = _quiet(cfg)
        hub = _start_hub(cfg, pg, "publish")
        hub_pid, pgdata = hub.pid, pg.data_dir
        meter = CpuMeter({"hub": lambda: [hub_pid], "postgres": lambda: postgres_pids(pgdata), "bench_main": lambda: [os.getpid()]})
        out.update(asyncio.run(_publish_phase(cfg, hub, world, meter)))
        out["tables_after"] = asyncio.run(_table_sizes(pg.dsn))
        small, large = out["sizes"][str(sizes[0])], out["sizes"][str(sizes[-1])]
        out["small"], out["large"] = sizes[0], sizes[-1]
        for key in ("mean", "p50", "p99"):
            a, b = small["publish_ms"][key], large["publish_ms"][key]
            out[f"ratio_{key}"] = round(b / a, 3) if a and b else None
        out["saturated"] = _saturated(out["cpu"], ("hub", "postgres"))
        sq_small, sq_large = (small.get("stats_query") or {}).get("median_ms"), (large.get("stats_query") or {}).get("median_ms")
        out["stats_ms"] = sq_large
        out["stats_ratio"] = round(sq_large / sq_small, 3) if sq_small and sq_large else None
        out["stats_met"] = bool(
            sq_large is not None and sq_large <= TARGETS["publish_stats_ms_max"]
            and out["stats_ratio"] is not None and out["stats_ratio"] <= TARGETS["publish_stats_ratio_max"]
        )
        return out
    finally:
        _stop(hub, "hub")
        pg.stop()


# --- scenario: online notice fan-out ------------------------------------------------------------


async def _hub_burst(
    port: int, publishers: list[Publisher], text_bytes: int, account: str, k: int, *, turn: int = 0, concurrency: int = 1
) -> dict[str, Any]:
    """Publish ``k`` notices over HTTP, ``concurrency`` requests in flight (1: each waits
    for the previous 201). Times are sorted: the i-th delivery of a follower is the i-th
    notice committed, whichever request carried it. A 503/429 is retried (up to 5 times)."""
    api = _Api(port, publishers, text_bytes)
    api.turn = turn
    try:
        # open the keep-alive connections before anything is timed
        await asyncio.gather(*(api.warm() for _ in range(concurrency)))
        gate = asyncio.Semaphore(concurrency)
        send_ns: list[int] = []
        ack_ns: list[int] = []

        async def one() -> None:
            async with gate:
                send_ns.append(time.time_ns())
                _, notice = await api.publish(account, retries=5)
                if notice is not None:
                    ack_ns.append(time.time_ns())

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(k))), 600)
        return {"send_ns": sorted(send_ns), "ack_ns": sorted(ack_ns), "errors": dict(api.errors), "retried": dict(api.retried)}
    finally:
        await api.close()


async def _bare_burst(send_url: str, payload: bytes, k: int) -> dict[str, Any]:
    from .fanout import bare_burst

    return await bare_burst(send_url, payload, k)


def _synthetic_notice(account: str, text_bytes: int) -> bytes:
    """A ``notice`` frame shaped like the hub's (only when the hub round captured none)."""
    notice = {"account_id": account, "notice_id": str(uuid.uuid4()), "seq": 1, "ts": int(time.time() * 1000),
              "body": {"kind": "text", "text": "x" * text_bytes}}
    return json.dumps({"type": "notice", "notice": notice}, separators=(",", ":")).encode()


def scenario_broadcast(cfg: SuiteConfig) -> dict[str, Any]:
    n, k = cfg.broadcast_followers, cfg.broadcast_notices
    if not 1 <= k <= 500:
        raise ValueError("--broadcast-notices must be 1..500 (the hub's outbound queue holds 1024 frames per connection)")
    pg = PgEnv()
    hub: HubProcess | None = None
    bare: BareProcess | None = None
    receivers: Receivers | None = None
    out: dict[str, Any] = {"followers": n, "notices_per_round": k, "rounds": cfg.broadcast_repeat, "text_bytes": cfg.text_bytes}
    try:
        t = time.perf_counter()
        world = asyncio.run(seed_accounts(pg.dsn, [n], _PUBLISHERS, sessions_for=n))
        account, members = world.accounts[n], world.followers
        log(f"suite: broadcast: seeded an account with {n} followers (sessions, source addresses) in {time.perf_counter() - t:.1f}s")
        out["quiet_check"] = _quiet(cfg)
        hub = _start_hub(cfg, pg, "broadcast")
        bare = BareProcess("ws", free_port(), cfg.out / "bare-ws-broadcast.log")
        bare.wait_ready()
        log(f"suite: bare websockets server pid {bare.pid} ready on 127.0.0.1:{bare.port}")
        hub_pid, bare_pid, pgdata = hub.pid, bare.pid, pg.data_dir
        hub_port, send_url = hub.port, bare.send_url
        sample = b""
        turn = 0
        # (result key, server, publish requests in flight): "hub" keeps a few requests in flight, the
        # nearest an HTTP publisher comes to the group fan-out's sender (K frames back to back);
        # "hub_one_by_one" waits for each 201. (All K at once is no fair test: the requests queue for
        # the account row lock and the 10 pooled connections, and some get 503 after the pool's 1-s wait.)
        inflight = cfg.broadcast_inflight
        out["publish_inflight"] = inflight
        runs = [("hub", "hub", inflight), ("hub_one_by_one", "hub", 1), ("bare", "bare", 0)]
        for label, server, concurrency in runs:
            if receivers is None:
                port = hub_port if server == "hub" else bare.port
                receivers = Receivers(port, members, cfg.workers, prefix=_NOTICE)
                log(f"suite: broadcast ({server}): connecting {n} followers")
                connect = receivers.wait_connected()
                log(f"suite: broadcast ({server}): {connect['connected']} connected in {connect['seconds']}s; failed attempts {connect['failed_attempts'] or 0}")
                if server == "hub":
                    # first use (prepared statements, code paths) before anything is timed; receivers are not armed
                    asyncio.run(_hub_burst(hub_port, world.publishers, cfg.text_bytes, account, 2))
            recv_pids = receivers.pids
            meter = CpuMeter(
                {
                    "hub": lambda: [hub_pid],
                    "bare": lambda: [bare_pid],
                    "postgres": lambda: postgres_pids(pgdata),
                    "receivers": lambda: recv_pids,
                    "bench_main": lambda: [os.getpid()],
                }
            )
            rounds = []
            for r in range(cfg.broadcast_repeat):
                time.sleep(1.0)
                timeout_s = 60.0 + n * k / 5000
                receivers.arm(k, timeout_s)
                profiler = None
                if cfg.profile and server == "hub" and r == 0:
                    name = f"hub-broadcast-{label.removeprefix('hub').strip('_') or 'at_once'}"
                    profiler = Profiler(hub_pid, max(2, round(n * k / 40000)), cfg.out / f"{name}.collapsed.txt")
                server_proc = psutil.Process(hub_pid if server == "hub" else bare_pid)
                split_before = server_proc.cpu_times()
                before = meter.snapshot(every_process=True)
                if server == "hub":
                    burst = asyncio.run(_hub_burst(hub_port, world.publishers, cfg.text_bytes, account, k, turn=turn, concurrency=concurrency))
                    turn += k
                else:
                    if not sample:
                        sample = _synthetic_notice(account, cfg.text_bytes)
                    burst = asyncio.run(_bare_burst(send_url, sample, k))
                results = receivers.collect(timeout_s, f"broadcast {label} round {r + 1}", n * k)
                cpu = CpuMeter.delta(before, meter.snapshot(every_process=True))
                split_after = server_proc.cpu_times()
                rd = _fanout_round(results, burst, connect["connected"], k)
                if rd["delivered"]:
                    # user (Python: framing, tasks, ASGI) vs system (the kernel: socket writes, loopback TCP)
                    rd["server_cpu_split_us_per_delivery"] = {
                        part: round(1e6 * (getattr(split_after, part) - getattr(split_before, part)) / rd["delivered"], 2)
                        for part in ("user", "system")
                    }
                rd["cpu"] = cpu
                rd["server_cpu_us_per_delivery"] = round(1e6 * cpu[server]["cpu_s"] / rd["delivered"], 2) if rd["delivered"] else None
                rd["saturated"] = _saturated(cpu, (server, "postgres", "receivers"))
                rd["publish_retried"] = burst.get("retried", {})
                if burst["ack_ns"]:  # hub: from the first request sent to the last 201 read
                    rd["publish_ms"] = round((burst["ack_ns"][-1] - burst["send_ns"][0]) / 1e6, 1)
                if profiler is not None:
                    summary = profiler.finish()
                    (cfg.out / f"{name}.profile.json").write_text(json.dumps(summary, indent=2) + "\n")
                    rd["hub_profile"] = summary
                if server == "hub" and not sample:
                    sample = next((res["sample"] for res in results if res["sample"]), b"")
                rounds.append(rd)
                log(
                    f"suite: broadcast {label} round {r + 1}: {rd['delivered']}/{rd['expected']} delivered in {rd['seconds']:.3f}s"
                    f" = {rd['deliveries_per_s']:.0f}/s; publishing took {rd.get('publish_ms', '-')} ms; missing {rd['missing']};"
                    f" cpu {_cpu_brief(cpu, (server, 'postgres', 'receivers'))}"
                )
            if label != "hub":  # the one-by-one run reuses the hub's connected receivers
                receivers.stop()
                receivers = None
            median = sorted(rounds, key=lambda x: x["deliveries_per_s"])[len(rounds) // 2]
            out[label] = {
                "connect": connect,
                "publish_concurrency": concurrency or None,
                "deliveries_per_s": median["deliveries_per_s"],
                "server_cpu_us_per_delivery": statistics.median(x["server_cpu_us_per_delivery"] or 0 for x in rounds),
                "deliveries_per_s_rounds": [x["deliveries_per_s"] for x in rounds],
                "median_round": median,
                "rounds": [{k2: v for k2, v in x.items() if k2 != "deliver_cdf_ms"} for x in rounds],
                "missing_total": sum(x["missing"] for x in rounds),
                "closed_total": sum(x["closed_connections"] for x in rounds),
            }
        bu = out["bare"]["server_cpu_us_per_delivery"]
        b = out["bare"]["deliveries_per_s"]
        for label, suffix in (("hub", ""), ("hub_one_by_one", "_one_by_one")):
            h, hu = out[label]["deliveries_per_s"], out[label]["server_cpu_us_per_delivery"]
            out[f"ratio{suffix}"] = round(h / b, 3) if b else 0.0
            out[f"cpu_ratio{suffix}"] = round(bu / hu, 3) if hu and bu else None
        out["payload_bytes"] = len(sample)
        out["hub_online_count"] = asyncio.run(_online_count(hub_port, world, account))
        log(
            f"suite: broadcast: hub {out['hub']['deliveries_per_s']:.0f}/s ({inflight} in flight), {out['hub_one_by_one']['deliveries_per_s']:.0f}/s"
            f" (one by one), bare {b:.0f}/s; ratios {out['ratio']:.3f}, {out['ratio_one_by_one']:.3f}"
        )
        return out
    finally:
        if receivers is not None:
            receivers.stop()
        _stop(hub, "hub")
        _stop(bare, "bare websockets server")
        pg.stop()


async def _online_count(port: int, world: AccountWorld, account: str) -> dict[str, Any]:
    """The hub's own count of online deliveries of its latest notice (flushed every 2 s)."""
    await asyncio.sleep(2.5)
    api = _Api(port, world.publishers, 0)
    try:
        r = await api.http.get(f"/v1/accounts/{account}/outbox", params={"limit": 1}, headers=api._auth())
        latest = r.json()["notices"][0] if r.status_code == 200 and r.json()["notices"] else None
        if latest is None:
            return {"error": f"outbox HTTP {r.status_code}"}
        return {"notice_id": latest["id"], "seq": latest["seq"], "delivered_online": latest["delivered_online"]}
    finally:
        await api.close()


# --- tables, headline rows, report ----------------------------------------------------------------


def _pub(s: dict[str, Any]) -> str:
    p = s["publish_ms"]
    return f"p50 {p['p50']} ms  p99 {p['p99']} ms  mean {p['mean']} ms  max {p['max']} ms (n={p['n']})"


def current_broadcast(r: dict[str, Any] | None) -> dict[str, Any] | None:
    """A broadcast result in this module's format (a file left by an older version: None)."""
    return r if r is not None and "hub_one_by_one" in r and "publish_inflight" in r else None


def table(name: str, r: dict[str, Any]) -> str:
    lines = [name]
    if name == "publish":
        small, large = r["sizes"][str(r["small"])], r["sizes"][str(r["large"])]
        lines[0] += (
            f"  (POST /v1/accounts/{{id}}/notices over HTTP, {r['publishes_per_account']} per account after {r['warmup_per_account']} warm-up,"
            f" alternating in chunks of {r['chunk']}, one every {r['interval_ms']:g} ms)"
        )
        for label, s in (("small", small), ("large", large)):
            sq = s["stats_query"] or {}
            lines.append(
                f"  {s['followers']:>9,} followers  {_pub(s)}  cpu/publish hub {s['hub_cpu_us_per_publish']} us, postgres {s['postgres_cpu_us_per_publish']} us"
                f"  seqs consecutive {s['seqs_consecutive']}"
            )
            lines.append(f"  {'':19} stats query median {sq.get('median_ms')} ms, min {sq.get('min_ms')} ms (n={len(sq.get('ms') or [])}); figures {sq.get('figures')}")
        ratio = r["ratio_mean"]
        target = TARGETS["publish_ratio_max"]
        lines += [
            f"  ratio      mean({r['large']:,}) / mean({r['small']:,}) = {ratio}   [target <= {target:g}: {_ok(bool(ratio and ratio <= target))}]"
            f"   p50 {r['ratio_p50']}  p99 {r['ratio_p99']}",
            f"  figures    stats query {r.get('stats_ms')} ms at {r['large']:,} (median), {r['large']:,} / {r['small']:,} = {r.get('stats_ratio')}"
            f"   [target <= {TARGETS['publish_stats_ms_max']:g} ms and <= {TARGETS['publish_stats_ratio_max']:g}: {_ok(bool(r.get('stats_met')))}]",
            f"  errors     {r['errors'] or 0};  seeding {r['seed_seconds']} s",
            f"  cpu        {_cpu_brief(r['cpu'], ('hub', 'postgres', 'bench_main'))}",
        ]
    elif name == "broadcast":
        b = r["bare"]
        target = TARGETS["broadcast_ratio_min"]
        lines[0] += f"  ({r['notices_per_round']} notices per round to {r['followers']} connected followers; median of {r['rounds']} rounds)"
        for label, title, suffix in (("hub", f"hub, {r['publish_inflight']} publishes in flight", ""), ("hub_one_by_one", "hub, published one by one", "_one_by_one")):
            h = r[label]
            ratio = r[f"ratio{suffix}"]
            lines += [
                f"  {title:<30} {h['deliveries_per_s']:>9.0f} deliveries/s  rounds {h['deliveries_per_s_rounds']}  missing {h['missing_total']}"
                f"  deliver {_lat(h['median_round']['deliver_ms'])}",
                f"  {'':30} ratio {ratio:.3f} [target >= {target}: {_ok(ratio >= target)}]  server CPU {h['server_cpu_us_per_delivery']} us/delivery"
                f" (bare/hub {r[f'cpu_ratio{suffix}']}); publishing took {h['median_round'].get('publish_ms')} ms; first delivery after"
                f" {h['median_round']['first_delivery_ms']} ms; publish errors {h['median_round']['sender_errors'] or 0},"
                f" retried {h['median_round'].get('publish_retried') or 0}",
                f"  {'':30} cpu {_cpu_brief(h['median_round']['cpu'], ('hub', 'postgres', 'receivers'))}; {h['median_round']['saturated']}",
            ]
        lines += [
            f"  {'bare websockets broadcast()':<30} {b['deliveries_per_s']:>9.0f} deliveries/s  rounds {b['deliveries_per_s_rounds']}  missing {b['missing_total']}"
            f"  deliver {_lat(b['median_round']['deliver_ms'])}",
            f"  {'':30} server CPU {b['server_cpu_us_per_delivery']} us/delivery; cpu {_cpu_brief(b['median_round']['cpu'], ('bare', 'receivers'))};"
            f" {b['median_round']['saturated']}",
            f"  hub's own online count of its latest notice: {r.get('hub_online_count')}",
        ]
    return "\n".join(lines)


def ratio_rows(all_results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Headline rows of the official-account scenarios (see bench.suite.ratios)."""
    rows: list[dict[str, Any]] = []
    p = all_results.get("publish")
    if p:
        small, large = p["sizes"][str(p["small"])], p["sizes"][str(p["large"])]
        big = f"{p['large'] // 1000:,}k" if p["large"] < 1_000_000 else f"{p['large'] / 1e6:g}M"
        base = f"same hub, {p['small']:,} followers"
        target = TARGETS["publish_ratio_max"]
        rows.append({"scenario": f"publish {big}", "figure": "publish ms mean", "hub": large["publish_ms"]["mean"], "baseline": small["publish_ms"]["mean"],
                     "baseline_name": base, "ratio": p["ratio_mean"], "target": f"<= {target:g}", "met": bool(p["ratio_mean"] and p["ratio_mean"] <= target)})
        rows.append({"scenario": f"publish {big}", "figure": "publish ms p50", "hub": large["publish_ms"]["p50"], "baseline": small["publish_ms"]["p50"],
                     "baseline_name": base, "ratio": p["ratio_p50"], "target": "-", "met": None})
        rows.append({"scenario": f"publish {big}", "figure": "publish ms p99", "hub": large["publish_ms"]["p99"], "baseline": small["publish_ms"]["p99"],
                     "baseline_name": base, "ratio": p["ratio_p99"], "target": "-", "met": None})
        sl, ss = large.get("stats_query") or {}, small.get("stats_query") or {}
        rows.append({"scenario": f"publish {big}", "figure": "stats query ms", "hub": sl.get("median_ms"), "baseline": ss.get("median_ms"),
                     "baseline_name": base, "ratio": round(sl["median_ms"] / ss["median_ms"], 3) if sl.get("median_ms") and ss.get("median_ms") else None,
                     "target": f"<= {TARGETS['publish_stats_ms_max']:g} ms, <= {TARGETS['publish_stats_ratio_max']:g}",
                     "met": bool(p.get("stats_met"))})
    b = current_broadcast(all_results.get("broadcast"))
    if b:
        target = TARGETS["broadcast_ratio_min"]
        label = f"notices N={b['followers']}"
        base = "bare websockets broadcast()"
        for key, suffix, how in (("hub", "", f"{b['publish_inflight']} in flight"), ("hub_one_by_one", "_one_by_one", "one by one")):
            ratio, cpu_ratio = b[f"ratio{suffix}"], b.get(f"cpu_ratio{suffix}")
            rows.append({"scenario": label, "figure": f"deliveries/s, {how}", "hub": b[key]["deliveries_per_s"], "baseline": b["bare"]["deliveries_per_s"],
                         "baseline_name": base, "ratio": ratio, "target": f">= {target}", "met": ratio >= target})
            rows.append({"scenario": label, "figure": f"CPU us/deliv., {how}", "hub": b[key]["server_cpu_us_per_delivery"],
                         "baseline": b["bare"]["server_cpu_us_per_delivery"], "baseline_name": base,
                         "ratio": cpu_ratio, "target": f"bare/hub >= {target}", "met": bool(cpu_ratio and cpu_ratio >= target)})
    return rows


def _split(rd: dict[str, Any]) -> str:
    sp = rd.get("server_cpu_split_us_per_delivery")
    return f" ({sp['user']} + {sp['system']})" if sp else ""


def report_sections(r: dict[str, dict[str, Any]], cpu_table: Any, interference: Any, when: Any) -> list[str]:
    """REPORT.md sections (bench.report passes its table helpers, to keep one look)."""
    lines: list[str] = []
    p = r.get("publish")
    if p:
        small, large = p["sizes"][str(p["small"])], p["sizes"][str(p["large"])]
        target = TARGETS["publish_ratio_max"]
        lines += [
            "## Official accounts: publish cost vs followers",
            "",
            when(p),
            "",
            f"Two accounts in one database, followed by {p['small']:,} and {p['large']:,} users (seeded by SQL in {p['seed_seconds']} s). "
            f"`POST /v1/accounts/{{id}}/notices` over HTTP against `bankhub serve`, {p['publishes_per_account']} per account after "
            f"{p['warmup_per_account']} warm-up, alternating between the accounts in chunks of {p['chunk']}, one request every "
            f"{p['interval_ms']:g} ms from {p['publishers']} administrators. Time = request sent → response read. Nobody is connected: "
            "this is the write (notice row, the account's seq, audit row, one commit) plus one broadcast signal.",
            "",
            "| followers | p50 ms | p95 ms | p99 ms | mean ms | max ms | hub CPU µs/publish | Postgres CPU µs/publish | stats query ms (median of 5) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in (small, large):
            q = s["publish_ms"]
            sq = s.get("stats_query") or {}
            lines.append(
                f"| {s['followers']:,} | {q['p50']} | {q['p95']} | {q['p99']} | {q['mean']} | {q['max']} | {s['hub_cpu_us_per_publish']} | "
                f"{s['postgres_cpu_us_per_publish']} | {sq.get('median_ms')} |"
            )
        ratio = p["ratio_mean"]
        lines += [
            "",
            f"mean({p['large']:,}) ÷ mean({p['small']:,}) = **{ratio}** (target ≤ {target:g}: "
            f"**{'met' if ratio and ratio <= target else 'missed'}**); p50 ratio {p['ratio_p50']}, p99 ratio {p['ratio_p99']}. "
            f"Errors: {p['errors'] or 'none'}. The publisher figures (`GET /v1/notices/{{id}}/stats`, O(followers) at query time by "
            f"design) took {(large.get('stats_query') or {}).get('ms')} ms at {p['large']:,} followers (targeted followers counted: "
            f"{((large.get('stats_query') or {}).get('figures') or {}).get('targeted_followers')}), and "
            f"{(small.get('stats_query') or {}).get('ms')} ms for the {p['small']:,}-follower account in the same database.",
            "",
            *cpu_table([("publish phase (both accounts)", p["cpu"])], ("hub", "postgres", "bench_main")),
            "",
            *interference([("publish phase", p["cpu"])]),
            "",
        ]
    b = current_broadcast(r.get("broadcast"))
    if b:
        bb = b["bare"]
        bm = bb["median_round"]
        target = TARGETS["broadcast_ratio_min"]
        lines += [
            "## Official accounts: online notice fan-out",
            "",
            when(b),
            "",
            f"One account followed by {b['followers']:,} users, all connected to one hub over WebSocket (receivers in "
            f"separate processes, each from its own 127.x address). A round: {b['notices_per_round']} notices published over "
            f"HTTP (`POST /v1/accounts/{{id}}/notices`), either with {b['publish_inflight']} requests in flight (the nearest an HTTP "
            "publisher comes to the group fan-out's sender, which sends its frames back to back) or one by one (each request "
            "waits for the previous 201). "
            "Deliveries/s = `notice` frames counted at the followers ÷ time from the first request to the last delivery; the "
            f"median of {b['rounds']} rounds. The bare server `broadcast()`s the hub's exact `notice` frame "
            f"({b['payload_bytes']} bytes) K times to the same receivers.",
            "",
            "| server | deliveries/s | rounds | ratio | server CPU µs/delivery (user + system) | missing | p50 / p99 delivery ms | first delivery ms | publishing ms |",
            "|---|---:|---|---:|---:|---:|---|---:|---:|",
        ]
        cpu_rows = []
        for key, title, suffix in (("hub", f"hub, {b['publish_inflight']} in flight", ""), ("hub_one_by_one", "hub, one by one", "_one_by_one")):
            h = b[key]
            hm = h["median_round"]
            lines.append(
                f"| {title} | {h['deliveries_per_s']:,.0f} | {h['deliveries_per_s_rounds']} | **{b[f'ratio{suffix}']}** | {h['server_cpu_us_per_delivery']}{_split(hm)} | "
                f"{h['missing_total']} | {hm['deliver_ms']['p50']} / {hm['deliver_ms']['p99']} | {hm['first_delivery_ms']} | {hm.get('publish_ms')} |"
            )
            cpu_rows.append((title, hm["cpu"]))
        lines += [
            f"| bare `broadcast()` | {bb['deliveries_per_s']:,.0f} | {bb['deliveries_per_s_rounds']} | – | {bb['server_cpu_us_per_delivery']}{_split(bm)} | "
            f"{bb['missing_total']} | {bm['deliver_ms']['p50']} / {bm['deliver_ms']['p99']} | {bm['first_delivery_ms']} | – |",
            "",
            f"Target: ratio ≥ {target} ({b['publish_inflight']} in flight: **{'met' if b['ratio'] >= target else 'missed'}**; one by one: "
            f"**{'met' if b['ratio_one_by_one'] >= target else 'missed'}**). CPU per delivery bare ÷ hub: {b['cpu_ratio']} ({b['publish_inflight']} in flight), "
            f"{b['cpu_ratio_one_by_one']} (one by one). The hub's own online count of its latest notice: {b.get('hub_online_count')}.",
            "",
            *cpu_table([*cpu_rows, ("bare", bm["cpu"])], ("hub", "bare", "postgres", "receivers")),
            "",
            *(f"- saturated, {title}: {cpu_sat}." for title, cpu_sat in (
                (f"hub {b['publish_inflight']} in flight", b["hub"]["median_round"]["saturated"]),
                ("hub one by one", b["hub_one_by_one"]["median_round"]["saturated"]),
                ("bare", bm["saturated"]),
            )),
            *interference([*cpu_rows, ("bare", bm["cpu"])]),
            "",
        ]
    return lines
