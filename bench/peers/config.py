"""The pure parts of the peer benchmark: sizes, Synapse's configuration, the figures.

Nothing here starts a process or opens a socket, so the unit tests run without Synapse.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Sizes",
    "parse_args",
    "synapse_config",
    "synapse_log_config",
    "registration_mac",
    "sync_filter",
    "rss_settled",
    "ratios",
    "table",
    "PEER_DATABASE_SQL",
    "BANKHUB_LIMITS_OFF",
]

# Synapse wants its database in UTF8 with C collation (it refuses to start otherwise).
PEER_DATABASE_SQL = "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"

# Rate limits are off on both sides: bankhub's per-connection frame bucket would otherwise
# cap a closed-loop sender at 50 msg/s, as Synapse's rc_message caps it at 0.2/s by default.
BANKHUB_LIMITS_OFF = {"BANKHUB_WS_FRAMES_PER_SECOND": "1000000", "BANKHUB_WS_FRAME_BURST": "1000000"}

_HUGE = 1_000_000  # "very high" for every Synapse rate limiter


@dataclass(frozen=True)
class Sizes:
    """What each server is given: the same numbers on both sides."""

    pairs: int  # K: direct rooms/conversations, one sender and one receiver each
    online: int  # N: online clients for the RSS figure (the K pairs' 2K users are among them)
    durable_s: float  # closed loop: measured seconds
    rate: float  # open loop: messages per second over the K senders
    latency_s: float  # open loop: measured seconds
    warmup_s: float  # before each loop's window, not measured
    drain_s: float  # after each loop, for outstanding acks and deliveries
    text_bytes: int
    quick: bool = False

    @property
    def users(self) -> int:
        """Users each server gets: N online clients, at least the 2K of the pairs."""
        return max(self.online, 2 * self.pairs)


# The open loop's rate must stay well under the slower server's closed-loop rate (Synapse
# managed 18-36 msg/s on this shared 2-core machine), or its latency is the queue it builds.
_FULL = {"pairs": 32, "online": 500, "durable_s": 10.0, "rate": 5.0, "latency_s": 30.0, "warmup_s": 2.0, "drain_s": 5.0}
_QUICK = {"pairs": 8, "online": 40, "durable_s": 3.0, "rate": 5.0, "latency_s": 3.0, "warmup_s": 1.0, "drain_s": 3.0}


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    out: Path
    venv: Path
    only: tuple[str, ...]
    synapse_spec: str
    wait_quiet: float = 0.0


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="Matrix Synapse and bankhub on the same work, one after the other, on 127.0.0.1 (bench/README.md, 'Peers').",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 8 pairs, 40 online, 3-s loops (explicit flags still win)")
    p.add_argument("--pairs", type=int, help="K direct rooms/conversations, one closed-loop sender each (default 32)")
    p.add_argument("--online", type=int, help="N online clients for RSS per client (default 500)")
    p.add_argument("--durable-seconds", dest="durable_s", type=float, help="closed loop: measured seconds (default 10)")
    p.add_argument("--rate", type=float, help="open loop: messages per second over the K senders (default 5)")
    p.add_argument("--latency-seconds", dest="latency_s", type=float, help="open loop: measured seconds (default 30)")
    p.add_argument("--warmup", dest="warmup_s", type=float, help="seconds before each loop's window (default 2)")
    p.add_argument("--text-bytes", type=int, default=64, help="message text length (default 64)")
    p.add_argument("--only", choices=["synapse", "bankhub"], action="append", help="run one side only (no ratios)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S", help="before each server, wait up to S seconds for an idle machine (<15%% busy)")
    p.add_argument("--out", type=Path, default=Path("bench/out"), help="output directory (default bench/out)")
    p.add_argument("--venv", type=Path, help="Synapse's own venv (default OUT/peers/synapse-venv; made and reused)")
    p.add_argument("--synapse", default="matrix-synapse[postgres]", help="pip requirement for Synapse (default matrix-synapse[postgres])")
    a = p.parse_args(argv)
    base = _QUICK if a.quick else _FULL
    pick = {k: (getattr(a, k) if getattr(a, k, None) is not None else v) for k, v in base.items()}
    sizes = Sizes(
        pairs=int(pick["pairs"]),
        online=int(pick["online"]),
        durable_s=float(pick["durable_s"]),
        rate=float(pick["rate"]),
        latency_s=float(pick["latency_s"]),
        warmup_s=float(pick["warmup_s"]),
        drain_s=float(pick["drain_s"]),
        text_bytes=a.text_bytes,
        quick=a.quick,
    )
    if sizes.pairs < 1 or sizes.online < 1 or sizes.rate <= 0 or sizes.durable_s <= 0 or sizes.latency_s <= 0:
        p.error("need at least one pair, one online client, a positive rate and positive durations")
    if sizes.users > 20_000:
        p.error("at most 20000 users (each Synapse user is registered over HTTP)")
    if not 16 <= sizes.text_bytes <= 4000:
        p.error("--text-bytes must be within 16..4000")
    venv = a.venv or a.out / "peers" / "synapse-venv"
    return Options(sizes, a.out, venv, tuple(a.only or ("synapse", "bankhub")), a.synapse, max(0.0, a.wait_quiet))


# --- Synapse's configuration ------------------------------------------------------------------------------

_RATE_LIMITERS: dict[str, Any] = {
    "rc_message": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_registration": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_registration_token_validity": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_login": {
        "address": {"per_second": _HUGE, "burst_count": _HUGE},
        "account": {"per_second": _HUGE, "burst_count": _HUGE},
        "failed_attempts": {"per_second": _HUGE, "burst_count": _HUGE},
    },
    "rc_admin_redaction": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_joins": {"local": {"per_second": _HUGE, "burst_count": _HUGE}, "remote": {"per_second": _HUGE, "burst_count": _HUGE}},
    "rc_joins_per_room": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_invites": {
        "per_room": {"per_second": _HUGE, "burst_count": _HUGE},
        "per_user": {"per_second": _HUGE, "burst_count": _HUGE},
        "per_issuer": {"per_second": _HUGE, "burst_count": _HUGE},
    },
    "rc_3pid_validation": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_room_creation": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_presence": {"per_user": {"per_second": _HUGE, "burst_count": _HUGE}},
    "rc_delayed_event_mgmt": {"per_second": _HUGE, "burst_count": _HUGE},
    "rc_reports": {"per_second": _HUGE, "burst_count": _HUGE},
}


def synapse_config(
    workdir: Path,
    *,
    port: int,
    db_host: str,
    db_port: int,
    db_user: str = "postgres",
    db_name: str = "synapse",
    shared_secret: str | None = None,
    server_name: str = "bench.local",
) -> dict[str, Any]:
    """homeserver.yaml for the benchmark, as a dict (JSON is YAML: write it with ``json.dumps``).

    One client listener on 127.0.0.1 (no federation resource, no federation sender, no
    key servers), Postgres over its unix socket, every rate limiter very high, presence
    off, registration closed except by the shared secret, logs to a file at WARNING.
    """
    return {
        "server_name": server_name,
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {
            "name": "psycopg2",
            "args": {"user": db_user, "host": db_host, "port": db_port, "database": db_name, "cp_min": 5, "cp_max": 10},
        },
        "log_config": str(workdir / "log.yaml"),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": shared_secret or secrets.token_urlsafe(32),
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "url_preview_enabled": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "federation_sender_instances": [],
        "presence": {"enabled": False},
        "bcrypt_rounds": 4,  # registration only; nobody logs in with a password during the run
        "require_auth_for_profile_requests": False,
        "limit_profile_requests_to_users_who_share_rooms": False,
        **_RATE_LIMITERS,
    }


def synapse_log_config(log_file: Path, level: str = "WARNING") -> dict[str, Any]:
    """A Python logging dict for Synapse: one file, rewritten each run, at ``level`` (the hub runs at warning too)."""
    return {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise", "filename": str(log_file), "encoding": "utf8", "mode": "w"}},
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": level, "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def registration_mac(shared_secret: str, nonce: str, username: str, password: str, admin: bool = False) -> str:
    """The HMAC-SHA1 that Synapse's shared-secret registration (``/_synapse/admin/v1/register``) checks."""
    mac = hmac.new(shared_secret.encode("utf8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


def sync_filter() -> dict[str, Any]:
    """The /sync filter each bench client uploads once: timeline only, as a lean client asks.

    No presence, account data, receipts or typing; members lazy-loaded.
    """
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "state": {"lazy_load_members": True},
            "timeline": {"limit": 100, "types": ["m.room.message"]},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


# --- the figures ----------------------------------------------------------------------------------------------


def rss_settled(samples: Sequence[float], *, window: int = 4, tolerance: float = 0.005) -> bool:
    """True when the last ``window`` RSS samples are within ``tolerance`` (relative) of each other."""
    if len(samples) < window:
        return False
    tail = samples[-window:]
    lo, hi = min(tail), max(tail)
    return hi > 0 and (hi - lo) / hi <= tolerance


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def ratios(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """bankhub ÷ Synapse for throughput; Synapse ÷ bankhub for latency, memory and CPU per message.

    Every ratio reads "how many times better bankhub is" (> 1: bankhub ahead).
    """
    s, b = sides.get("synapse"), sides.get("bankhub")
    if not s or not b:
        return {}
    return {
        "durable_msgs_per_s": _ratio(b["durable"]["acked_per_s"], s["durable"]["acked_per_s"]),
        "deliver_p50": _ratio(s["latency"]["deliver_ms"]["p50"], b["latency"]["deliver_ms"]["p50"]),
        "deliver_p99": _ratio(s["latency"]["deliver_ms"]["p99"], b["latency"]["deliver_ms"]["p99"]),
        "rss_per_client": _ratio(s["memory"]["kib_per_client"], b["memory"]["kib_per_client"]),
        "cpu_per_durable_msg": _ratio(
            s["durable"].get("server_and_postgres_cpu_ms_per_msg"), b["durable"].get("server_and_postgres_cpu_ms_per_msg")
        ),
    }


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def table(result: dict[str, Any]) -> str:
    """The human summary printed on stderr."""
    sides: dict[str, dict[str, Any]] = result["sides"]
    sz = result["sizes"]
    r = result.get("ratios", {})
    names = [n for n in ("synapse", "bankhub") if n in sides]
    rows: list[tuple[str, list[str], str]] = []

    def get(side: dict[str, Any], *path: str) -> Any:
        cur: Any = side
        for key in path:
            cur = cur.get(key) if isinstance(cur, dict) else None
        return cur

    def add(label: str, path: tuple[str, ...], spec: str, ratio_key: str | None) -> None:
        rows.append((label, [_fmt(get(sides[n], *path), spec) for n in names], _fmt(r.get(ratio_key) if ratio_key else None, ".2f") if ratio_key else ""))

    add(f"durable msg/s (closed loop, {sz['pairs']} senders)", ("durable", "acked_per_s"), ".0f", "durable_msgs_per_s")
    add("  server+postgres CPU ms per msg", ("durable", "server_and_postgres_cpu_ms_per_msg"), ".3f", "cpu_per_durable_msg")
    add("  send->ack p50 ms", ("durable", "ack_ms", "p50"), ".2f", None)
    add("  send->ack p99 ms", ("durable", "ack_ms", "p99"), ".2f", None)
    add(f"send->deliver p50 ms ({sz['rate']:g} msg/s)", ("latency", "deliver_ms", "p50"), ".2f", "deliver_p50")
    add("send->deliver p99 ms", ("latency", "deliver_ms", "p99"), ".2f", "deliver_p99")
    add("  open loop kept up with the rate", ("latency", "kept_up"), "", None)
    add(f"RSS KiB per online client (N={sz['online']})", ("memory", "kib_per_client"), ".1f", "rss_per_client")
    add("  server RSS before MiB", ("memory", "rss_before_mib"), ".1f", None)
    add("lost (acked, never delivered)", ("lost",), "d", None)
    add("errors (failed sends, sync errors)", ("errors",), "d", None)
    add("machine busy % (durable loop)", ("durable", "cpu", "machine_busy_pct"), ".0f", None)
    add("  others' CPU % of a core (durable)", ("durable", "cpu", "other", "pct_of_core"), ".0f", None)
    add("server CPU % of a core (durable)", ("durable", "cpu", "server", "pct_of_core"), ".0f", None)
    add("postgres CPU % of a core (durable)", ("durable", "cpu", "postgres", "pct_of_core"), ".0f", None)
    width = max(len(label) for label, _, _ in rows) + 2
    head = f"{'':{width}}" + "".join(f"{n:>12}" for n in names) + f"{'ratio':>10}"
    lines = ["", "peer benchmark" + ("  (quick)" if sz.get("quick") else "") + "  (ratio > 1: bankhub ahead)", "=" * len(head), head]
    for label, vals, ratio in rows:
        lines.append(f"{label:{width}}" + "".join(f"{v:>12}" for v in vals) + f"{ratio:>10}")
    lines.append("=" * len(head))
    for n in names:
        if "versions" in sides[n]:
            lines.append(f"{n}: {sides[n]['versions']}")
    return "\n".join(lines)


def sizes_dict(sizes: Sizes) -> dict[str, Any]:
    return {**asdict(sizes), "users": sizes.users}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
