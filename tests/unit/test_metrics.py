"""The pure parts of ``bankhub.metrics``: the access rule, the tallies' flush, the Grafana
dashboard's names, and the collection of several worker processes through one
``PROMETHEUS_MULTIPROC_DIR`` (real processes, prometheus_client's multi-process mode)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bankhub import metrics
from bankhub.metrics import TALLY, flush, frame_type, is_loopback, may_scrape

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.9.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.7", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.7", False),
        ("2001:db8::1", False),
        ("0.0.0.0", False),
        ("localhost", False),  # a name is not an address the server saw
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_is_an_address_on_the_loopback_network(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_without_a_token_only_loopback_clients_may_scrape() -> None:
    assert may_scrape("", None, "127.0.0.1")
    assert may_scrape("", "Bearer anything", "::1")
    assert not may_scrape("", None, "10.1.2.3")
    assert not may_scrape("", "Bearer anything", "203.0.113.9")
    assert not may_scrape("", None, None)


def test_without_a_token_a_forwarded_request_is_refused_even_from_loopback() -> None:
    # a proxy on the host (nginx, a mesh sidecar) connects from loopback for a remote client
    assert not may_scrape("", None, "127.0.0.1", forwarded=True)
    assert not may_scrape("", None, "::1", forwarded=True)
    for name in (b"X-Forwarded-For", b"x-real-ip", b"Forwarded"):
        assert metrics.forwarded([(b"host", b"hub"), (name, b"127.0.0.1")]), name
    assert not metrics.forwarded([(b"host", b"hub"), (b"x-forwarded-proto", b"https")])
    # a token's bearer may still scrape through a proxy
    assert may_scrape("s3cret-scrape-token", "Bearer s3cret-scrape-token", "10.0.0.1", forwarded=True)


async def test_the_socket_peer_survives_the_proxy_header_rewrite() -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    seen: dict[str, object] = {}

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen["client"] = scope["client"]
        seen["peer"] = metrics.socket_peer(scope)

    # FORWARDED_ALLOW_IPS=*: uvicorn takes the left-most X-Forwarded-For entry as the client
    wrapped = metrics.SocketPeer(ProxyHeadersMiddleware(app, trusted_hosts="*"))  # type: ignore[arg-type]
    scope = {"type": "http", "client": ("10.0.0.5", 40000), "headers": [(b"x-forwarded-for", b"127.0.0.1, 10.0.0.9")]}
    await wrapped(scope, None, None)  # type: ignore[arg-type]
    assert seen["client"] == ("127.0.0.1", 0)
    assert seen["peer"] == "10.0.0.5"
    assert not may_scrape("", None, seen["peer"])  # type: ignore[arg-type]


def test_an_open_listener_without_a_token_is_warned_of() -> None:
    assert metrics.open_scrape_warning("", "0.0.0.0") is not None
    assert metrics.open_scrape_warning("", "10.0.0.5") is not None
    for host in ("127.0.0.1", "::1", "[::1]", "localhost"):
        assert metrics.open_scrape_warning("", host) is None, host
    assert metrics.open_scrape_warning("s3cret-scrape-token", "0.0.0.0") is None


def test_with_a_token_only_its_bearer_may_scrape_from_anywhere() -> None:
    token = "s3cret-scrape-token"
    assert may_scrape(token, f"Bearer {token}", "203.0.113.9")
    assert may_scrape(token, f"bearer {token}", "10.0.0.1")
    # loopback alone is not enough once a token is configured
    assert not may_scrape(token, None, "127.0.0.1")
    for header in (f"Bearer {token}x", f"Bearer {token[:-1]}", "Bearer ", f"Basic {token}", token, f"Bearer\t{token}", ""):
        assert not may_scrape(token, header, "127.0.0.1"), header


def test_the_slow_consumer_code_is_the_protocols() -> None:
    from bankhub.protocol.frames import CloseCode

    assert metrics.SLOW_CONSUMER == CloseCode.SLOW_CONSUMER
    defined = {v for k, v in vars(CloseCode).items() if k.isupper() and isinstance(v, int)}
    assert defined <= metrics._KNOWN_CLOSE_CODES  # every code the hub closes with has its own label


def test_frame_type_reads_the_type_the_hub_encodes_first() -> None:
    assert frame_type('{"type":"member_added","conversation_id":"x"}') == "member_added"
    assert frame_type('{"conversation_id":"x"}') == "other"
    assert frame_type('{"type":"' + "a" * 100) == "other"


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_a_flush_moves_the_tallies_into_the_counters_once() -> None:
    before = _samples()
    TALLY.frames_in["send"] += 3
    TALLY.messages_out += 5
    TALLY.frames_out["message"] += 1
    TALLY.closes[4008] += 2
    TALLY.closes[4999] += 1  # a code a client chose: no label of its own
    TALLY.broker_reconnects += 1
    TALLY.alert_fallback["sent"] += 1
    flush()
    after = _samples()
    flush()  # nothing counted twice
    again = _samples()

    def moved(name: str, samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return samples.get(key, 0.0) - before.get(key, 0.0)

    for samples in (after, again):
        assert moved("bankhub_ws_frames_received_total", samples, type="send") == 3
        assert moved("bankhub_ws_frames_sent_total", samples, type="message") == 6
        assert moved("bankhub_ws_closes_total", samples, code="4008") == 2
        assert moved("bankhub_ws_closes_total", samples, code="other") == 1
        assert moved("bankhub_ws_slow_consumer_closes_total", samples) == 2
        assert moved("bankhub_broker_reconnects_total", samples) == 1
        assert moved("bankhub_alert_fallback_total", samples, outcome="sent") == 1
    assert ("bankhub_ws_closes_total", (("code", "4999"),)) not in again


def test_every_metric_the_hub_defines_is_listed_and_documented() -> None:
    text = metrics.exposition().decode()
    exposed = {f.name for f in text_string_to_metric_families(text) if f.name.startswith("bankhub_")}
    # the parser names a counter without _total; METRIC_NAMES lists the series names
    listed = {n.removesuffix("_total") for n in metrics.METRIC_NAMES}
    assert listed == exposed
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in metrics.METRIC_NAMES:
        assert f"`{name}`" in operations, name


_SERIES_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def test_the_grafana_dashboard_names_only_metrics_the_hub_defines_and_shows_them_all() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert dashboard["panels"] and dashboard["uid"] and dashboard["title"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    histograms = {
        "bankhub_http_request_duration_seconds", "bankhub_commit_batch_size", "bankhub_commit_duration_seconds",
        "bankhub_fanout_latency_seconds", "bankhub_db_transaction_duration_seconds",
    }
    assert histograms <= metrics.METRIC_NAMES
    named: set[str] = set()
    for expr in exprs:
        names = re.findall(r"\bbankhub_[a-z0-9_]+", expr)
        assert names, expr
        for name in names:
            base = _SERIES_SUFFIX.sub("", name)
            series = base if base in histograms else name
            assert series in metrics.METRIC_NAMES, (name, expr)
            named.add(series)
    assert named == metrics.METRIC_NAMES
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


_WORKER = textwrap.dedent(
    """
    import sys
    from bankhub import metrics
    assert metrics.MULTIPROCESS
    metrics.TALLY.frames_in["send"] += int(sys.argv[1])
    metrics.TALLY.closes[4008] += 1
    metrics.flush()  # no hub in this process: the levels sample as 0, then are set below
    metrics.WS_CONNECTIONS.set(int(sys.argv[2]))
    metrics.NODE_INFO.labels(sys.argv[3], "0.1.0").set(1)
    print("ok")
    """
)
_SCRAPE = textwrap.dedent(
    """
    import sys
    from bankhub import metrics
    for pid in sys.argv[1:]:
        metrics.worker_exited(int(pid))
    sys.stdout.write(metrics.exposition().decode())
    """
)


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_one_scrape_collects_every_worker_of_the_host(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first = subprocess.Popen([sys.executable, "-c", _WORKER, "3", "10", "hub-w0"], env=env, stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen([sys.executable, "-c", _WORKER, "4", "7", "hub-w1"], env=env, stdout=subprocess.PIPE, text=True)
    assert first.communicate(timeout=60)[0].strip() == "ok" and second.communicate(timeout=60)[0].strip() == "ok"
    # a third process (whichever worker answers the scrape) sees both workers' values merged
    both = _parse(_run(_SCRAPE, env).stdout)
    assert both[("bankhub_ws_frames_received_total", (("type", "send"),))] == 7
    assert both[("bankhub_ws_slow_consumer_closes_total", ())] == 2
    assert both[("bankhub_ws_connections", ())] == 17  # livesum
    assert both[("bankhub_node_info", (("node", "hub-w0"), ("version", "0.1.0")))] == 1
    assert both[("bankhub_node_info", (("node", "hub-w1"), ("version", "0.1.0")))] == 1
    # the first worker exits: the supervisor, which imported the metrics before the directory
    # was set, marks it dead; its live gauges leave the sums, its counts stay
    assert not metrics.MULTIPROCESS
    metrics.worker_exited(first.pid, str(tmp_path))
    after = _parse(_run(_SCRAPE, env).stdout)
    assert after[("bankhub_ws_connections", ())] == 7
    assert ("bankhub_node_info", (("node", "hub-w0"), ("version", "0.1.0"))) not in after
    assert after[("bankhub_ws_frames_received_total", (("type", "send"),))] == 7


async def test_the_level_sample_counts_without_scanning_every_connection() -> None:
    import asyncio

    class Registry:
        def __len__(self) -> int:
            return 100_000  # the registry's running count

        def connections(self) -> list[object]:
            raise AssertionError("the sample scanned every connection")

    class Conn:
        queued = 5
        _writer: asyncio.Task[None] | None = None

    handle = metrics.attach("levels", Registry())
    try:
        conn = Conn()
        conn._writer = writer = asyncio.create_task(asyncio.sleep(0.01))
        metrics.queueing(conn, writer)
        flush()
        assert metrics.REGISTRY.get_sample_value("bankhub_ws_connections") == 100_000
        assert metrics.REGISTRY.get_sample_value("bankhub_ws_outbound_queued_frames") == 5
        assert metrics.REGISTRY.get_sample_value("bankhub_ws_outbound_queue_max_frames") == 5
        conn._writer = None  # the writer wrote everything out and ended
        await writer
        await asyncio.sleep(0)
        flush()
        assert metrics.REGISTRY.get_sample_value("bankhub_ws_outbound_queued_frames") == 0
    finally:
        metrics.detach(handle)


def test_a_metrics_token_is_16_visible_ascii_characters_stripped() -> None:
    from bankhub.settings import Settings, SettingsError

    base = {"BANKHUB_DATABASE_URL": "postgresql://db/x"}
    for bad in ("x", "fifteen-chars-1", "sixteen chars ok", "töken-töken-töken-1", "token\u00a0token-token-token"):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({**base, "BANKHUB_METRICS_TOKEN": bad})
        assert "BANKHUB_METRICS_TOKEN" in str(refused.value) and "not shown" in str(refused.value)
    # read from a file with its newline: the newline is no part of the token
    assert Settings.from_env({**base, "BANKHUB_METRICS_TOKEN": "0123456789abcdef-ok\n"}).metrics_token == "0123456789abcdef-ok"


def test_single_process_serve_ignores_an_inherited_multiprocess_directory(tmp_path: Path) -> None:
    # an image built for gunicorn sets PROMETHEUS_MULTIPROC_DIR; a single `bankhub serve` is no worker of ours
    code = textwrap.dedent(
        """
        import argparse, os, sys
        from bankhub.cli import serve
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
        args = argparse.Namespace(worker_index=None, supervisor=None, workers=1)
        assert serve.cmd_serve(args) == 2  # no BANKHUB_DATABASE_URL: refused before serving
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        from bankhub import metrics
        assert not metrics.MULTIPROCESS
        assert b"process_resident_memory_bytes" in metrics.exposition()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "stale")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_error_and_refusal_labels_stay_bounded() -> None:
    seen: set[str] = set()
    assert metrics._bounded("rate_limited", seen) == "rate_limited"
    assert metrics._bounded("Rate Limited!", seen) == "other"  # not a code the hub writes
    for i in range(200):
        metrics._bounded(f"code_{i}", seen)
    assert len(seen) == metrics._LABELS_MAX
    assert metrics._bounded("code_199", seen) == "other"
    assert metrics._bounded("rate_limited", seen) == "rate_limited"  # a label it has keeps it
