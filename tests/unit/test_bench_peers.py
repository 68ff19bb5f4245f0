"""The pure parts of the peer benchmark (bench/peers): no Synapse, no server, no socket."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from bench.peers.clients import _Ledger, message_id, message_text
from bench.peers.config import (
    BANKHUB_LIMITS_OFF,
    PEER_DATABASE_SQL,
    parse_args,
    ratios,
    registration_mac,
    rss_settled,
    sync_filter,
    synapse_config,
    synapse_log_config,
    table,
)


def _rate_limits(cfg: dict[str, Any]) -> list[tuple[str, float]]:
    """Every (path, number) under the rc_* keys."""
    found: list[tuple[str, float]] = []

    def walk(path: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{path}.{k}", x)
        else:
            found.append((path, v))

    for key, value in cfg.items():
        if key.startswith("rc_"):
            walk(key, value)
    return found


def test_synapse_config_is_local_only_without_limits_or_presence(tmp_path: Path) -> None:
    cfg = synapse_config(tmp_path, port=18008, db_host="/tmp/pgsock", db_port=5433, shared_secret="s3cret")
    # JSON is what is written (YAML reads it)
    assert json.loads(json.dumps(cfg)) == cfg
    (listener,) = cfg["listeners"]
    assert listener["bind_addresses"] == ["127.0.0.1"] and listener["port"] == 18008
    assert [r["names"] for r in listener["resources"]] == [["client"]]  # no federation listener
    assert cfg["presence"] == {"enabled": False}
    assert cfg["trusted_key_servers"] == [] and cfg["federation_domain_whitelist"] == []
    assert cfg["enable_registration"] is False and cfg["registration_shared_secret"] == "s3cret"
    assert cfg["database"]["name"] == "psycopg2"
    assert cfg["database"]["args"] | {"cp_min": 0, "cp_max": 0} == {
        "user": "postgres", "host": "/tmp/pgsock", "port": 5433, "database": "synapse", "cp_min": 0, "cp_max": 0
    }
    assert Path(cfg["log_config"]).parent == tmp_path
    limits = _rate_limits(cfg)
    for name in ("rc_message", "rc_registration", "rc_login", "rc_joins", "rc_invites", "rc_room_creation"):
        assert any(path.startswith(name + ".") for path, _ in limits), name
    assert all(v >= 100_000 for _, v in limits), [p for p, v in limits if v < 100_000]


def test_synapse_config_secrets_are_fresh_each_time(tmp_path: Path) -> None:
    a = synapse_config(tmp_path, port=1, db_host="h", db_port=2)
    b = synapse_config(tmp_path, port=1, db_host="h", db_port=2)
    for key in ("registration_shared_secret", "macaroon_secret_key", "form_secret"):
        assert a[key] != b[key] and len(a[key]) >= 32


def test_synapse_log_config_writes_one_file_at_warning(tmp_path: Path) -> None:
    cfg = synapse_log_config(tmp_path / "synapse.log")
    assert cfg["root"] == {"level": "WARNING", "handlers": ["file"]}
    assert cfg["handlers"]["file"]["filename"] == str(tmp_path / "synapse.log")


def test_database_is_utf8_with_c_collation() -> None:
    for part in ("ENCODING 'UTF8'", "LC_COLLATE='C'", "LC_CTYPE='C'", "TEMPLATE template0"):
        assert part in PEER_DATABASE_SQL


def test_bankhub_frame_limits_are_off() -> None:
    assert float(BANKHUB_LIMITS_OFF["BANKHUB_WS_FRAMES_PER_SECOND"]) >= 100_000
    assert int(BANKHUB_LIMITS_OFF["BANKHUB_WS_FRAME_BURST"]) >= 100_000


def test_registration_mac_matches_synapse_algorithm() -> None:
    # Synapse: HMAC-SHA1(secret, nonce \0 user \0 password \0 "admin"|"notadmin"), hex
    want = hmac.new(b"secret", b"abc\x00bench000001\x00pw\x00notadmin", hashlib.sha1).hexdigest()
    assert registration_mac("secret", "abc", "bench000001", "pw") == want
    assert registration_mac("secret", "abc", "bench000001", "pw", admin=True) != want
    assert registration_mac("other", "abc", "bench000001", "pw") != want


def test_sync_filter_asks_for_the_timeline_only() -> None:
    f = sync_filter()
    assert f["presence"] == {"types": []} and f["room"]["ephemeral"] == {"types": []}
    assert f["room"]["timeline"]["types"] == ["m.room.message"]


def test_message_id_round_trips_through_the_text() -> None:
    text = message_text("d3.17", 64)
    assert len(text) == 64
    assert message_id(text) == "d3.17"
    assert message_id(message_text("o12", 8)) == "o12"  # too short to pad: the id stays whole
    assert message_id("hello there") is None
    assert message_id("bench ") is None


def test_rss_settled() -> None:
    assert not rss_settled([100.0, 100.0, 100.0])  # too few
    assert rss_settled([50.0, 100.0, 100.2, 100.1, 100.0])
    assert not rss_settled([100.0, 100.0, 100.0, 102.0])
    assert not rss_settled([0.0, 0.0, 0.0, 0.0])


def test_ledger_counts_window_loss_and_strays() -> None:
    led = _Ledger()
    s = 1_000_000_000
    for mid, sent, acked, delivered in (("a", 0, 5, 7), ("b", 2 * s, 2 * s + 4_000_000, 2 * s + 9_000_000), ("c", 3 * s, 3 * s + 1, None)):
        led.receivers[mid] = 1
        led.sent_ns[mid] = sent
        led.acked_ns[mid] = acked
        if delivered is not None:
            led.on_message(1, mid, delivered)
    led.on_message(2, "a", 9)  # not its receiver
    led.on_message(1, "b", 2 * s + 10_000_000)  # delivered twice
    led.on_message(1, "zz", 1)  # unknown
    out = led.summary(s, 4 * s)
    assert (out["sent"], out["acked"], out["delivered"], out["lost"], out["extra_deliveries"]) == (3, 3, 2, 1, 3)
    assert out["acked_in_window"] == 2  # "a" was acked before the window
    assert out["deliver_ms"]["n"] == 1 and out["deliver_ms"]["p50"] == 9.0
    assert out["ack_ms"]["n"] == 2 and out["ack_ms"]["p99"] == 4.0


def _side(rate: float, p50: float, p99: float, kib: float) -> dict[str, Any]:
    return {
        "durable": {"acked_per_s": rate, "ack_ms": {"p50": 1.0, "p99": 2.0}, "server_and_postgres_cpu_ms_per_msg": 1000 / rate},
        "latency": {"deliver_ms": {"p50": p50, "p99": p99}, "kept_up": rate > 500},
        "memory": {"kib_per_client": kib, "rss_before_mib": 100.0},
        "lost": 0,
        "errors": 0,
    }


def test_ratios_read_as_bankhub_ahead_when_above_one() -> None:
    sides = {"synapse": _side(100.0, 40.0, 80.0, 60.0), "bankhub": _side(1000.0, 4.0, 20.0, 30.0)}
    assert ratios(sides) == {
        "durable_msgs_per_s": 10.0, "deliver_p50": 10.0, "deliver_p99": 4.0, "rss_per_client": 2.0, "cpu_per_durable_msg": 10.0
    }
    assert ratios({"bankhub": sides["bankhub"]}) == {}
    sides["bankhub"]["latency"]["deliver_ms"]["p50"] = None  # nothing measured: no ratio, no crash
    assert ratios(sides)["deliver_p50"] is None


def test_table_shows_both_sides_and_the_ratios() -> None:
    sides = {"synapse": _side(100.0, 40.0, 80.0, 60.0), "bankhub": _side(1000.0, 4.0, 20.0, 30.0)}
    text = table({"sides": sides, "sizes": {"pairs": 32, "rate": 100.0, "online": 500, "quick": False}, "ratios": ratios(sides)})
    assert "synapse" in text and "bankhub" in text
    durable = next(line for line in text.splitlines() if line.startswith("durable msg/s"))
    assert durable.split()[-3:] == ["100", "1000", "10.00"]
    kept = next(line for line in text.splitlines() if "kept up" in line)
    assert kept.split()[-2:] == ["NO", "yes"]
    one = table({"sides": {"bankhub": sides["bankhub"]}, "sizes": {"pairs": 8, "rate": 20.0, "online": 40, "quick": True}})
    assert "(quick)" in one and "n/a" in one


def test_parse_args_defaults_quick_and_overrides(tmp_path: Path) -> None:
    full = parse_args(["--out", str(tmp_path)])
    assert (full.sizes.pairs, full.sizes.online, full.sizes.rate) == (32, 500, 5.0)
    assert full.venv == tmp_path / "peers" / "synapse-venv"
    assert full.only == ("synapse", "bankhub")
    quick = parse_args(["--quick", "--pairs", "3"])
    assert quick.sizes.quick and quick.sizes.pairs == 3 and quick.sizes.online == 40
    assert parse_args(["--pairs", "400", "--online", "10"]).sizes.users == 800  # the pairs' users are online too
    assert parse_args(["--only", "bankhub"]).only == ("bankhub",)


@pytest.mark.parametrize("argv", [["--pairs", "0"], ["--rate", "0"], ["--online", "30000"], ["--text-bytes", "5"]])
def test_parse_args_rejects_bad_sizes(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


class _LoopbackPeer:
    """An in-memory server: a send is acked after ``service_s`` (one at a time) and delivered."""

    name = "loopback"

    def __init__(self, service_s: float) -> None:
        from collections import Counter

        self.service_s = service_s
        self.errors: Counter[str] = Counter()
        self.on: dict[int, Any] = {}
        self.lock: Any = None

    async def online(self, user: Any, on_message: Any) -> None:
        self.on[user.index] = on_message

    async def offline(self, user: Any) -> None:
        self.on.pop(user.index, None)

    def online_count(self) -> int:
        return len(self.on)

    async def send(self, sender: Any, msg_id: str, text: str) -> bool:
        import asyncio
        import time

        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:  # one at a time: a server with a fixed capacity
            await asyncio.sleep(self.service_s)
        assert message_id(text) == msg_id
        self.on[sender.peer_index](sender.peer_index, msg_id, time.time_ns())
        return True

    async def close(self) -> None:
        self.on.clear()


def _loopback_session(service_s: float) -> Any:
    from bench.peers.clients import Session, User

    users = [User(i, f"u{i}", "t", f"r{i // 2}", i + 1 if i % 2 == 0 else i - 1, "127.0.0.1") for i in range(4)]
    return Session(_LoopbackPeer(service_s), users)


def test_open_loop_flags_a_server_that_falls_behind() -> None:
    import asyncio

    from bench.peers.clients import bring_online, open_loop

    async def run(service_s: float) -> dict[str, Any]:
        session = _loopback_session(service_s)
        await bring_online(session, session.users)
        return await open_loop(session, 2, 50.0, 0.1, 0.4, 3.0, 32)

    fast = asyncio.run(run(0.0))
    assert fast["kept_up"] is True and fast["sent"] == fast["acked"] == fast["delivered"] == 25
    assert fast["lost"] == fast["unacked"] == fast["failed"] == 0
    slow = asyncio.run(run(0.08))  # capacity 12.5/s against 50/s offered
    assert slow["kept_up"] is False


def test_closed_loop_waits_for_each_ack() -> None:
    import asyncio

    from bench.peers.clients import bring_online, closed_loop

    async def run() -> dict[str, Any]:
        session = _loopback_session(0.01)
        await bring_online(session, session.users)
        return await closed_loop(session, 2, 0.1, 0.5, 2.0, 32)

    out = asyncio.run(run())
    # one server slot of 10 ms: at most ~100 acks/s whatever the number of senders
    assert 40 <= out["acked_per_s"] <= 110, out
    assert out["senders"] == 2 and out["lost"] == 0 and out["delivered"] == out["acked"]
