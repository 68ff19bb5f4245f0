"""``GET /metrics`` of a real node after real traffic: the values move, and the access rule holds.

A node (real Postgres, the in-process broker) serves HTTP requests, a WebSocket message
from one user to another and a slow consumer that is cut off with 4008; an alert goes out
through the fallback gateway after two failures; a node on Valkey loses its broker
connection. The scrape before and after is parsed with prometheus_client's own parser and
compared.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bankhub.protocol.session import SessionLimits
from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.alerts import WebhookGateway, card_debit, register, signed, start_alert_node, wait_for
from ..support.proxy import CuttableProxy
from ..support.stalled import StalledReader
from ..support.wsclient import RawClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(node: RunningNode, **headers: str) -> Samples:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


async def test_a_scrape_after_real_traffic_shows_the_values_moved(nodes: Nodes) -> None:
    node = await nodes.start(limits=SessionLimits(outbound_queue=16, frames_per_second=1000, frame_burst=1000))
    before = await scrape(node)
    assert value(before, "bankhub_node_info", node="n1", version="0.1.0") == 1

    li_token, wang_token = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_token, "rm.wang")
    li, wang = await RawClient.connect(node.ws_url, li_token), await RawClient.connect(node.ws_url, wang_token)
    frame_id = await li.send_text(conv, "my card was declined")
    await li.expect("sent", frame_id=frame_id)
    (msg,) = await wang.messages(1)
    assert msg["body"]["text"] == "my card was declined"
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {li_token}"}) as http:
        assert (await http.get(f"/v1/conversations/{conv}/messages")).status_code == 200
        assert (await http.get("/v1/conversations/not-a-uuid/messages")).status_code == 404
    after = await scrape(node)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # HTTP: by route template (never the raw path), method and status class
    history = "/v1/conversations/{conversation_id}/messages"
    assert moved("bankhub_http_requests_total", route=history, method="GET", status="2xx") == 1
    assert moved("bankhub_http_request_duration_seconds_count", route=history, method="GET") == 1
    assert moved("bankhub_http_requests_total", route="/v1/sessions", method="POST", status="2xx") == 2
    assert moved("bankhub_http_requests_total", route="unmatched", method="GET", status="4xx") == 1
    routes = {dict(labels).get("route", "") for name, labels in after if name == "bankhub_http_requests_total"}
    assert not any(conv in r or "not-a-uuid" in r for r in routes), routes
    # WebSocket: two open connections, the frames each way, the message committed and fanned out
    assert value(after, "bankhub_ws_connections") == 2
    assert moved("bankhub_ws_frames_received_total", type="send") == 1
    assert moved("bankhub_ws_frames_sent_total", type="hello") == 2
    assert moved("bankhub_ws_frames_sent_total", type="sent") == 1
    assert moved("bankhub_ws_frames_sent_total", type="message") == 1  # to rm.wang; c.li's own connection got `sent`
    assert moved("bankhub_messages_committed_total") == 1
    assert moved("bankhub_commit_batch_size_count") == 1
    assert moved("bankhub_commit_duration_seconds_count") == 1
    assert moved("bankhub_fanout_latency_seconds_count") == 1
    assert value(after, "bankhub_fanout_latency_seconds_bucket", le="+Inf") >= 1

    # a client that stops reading: its queue overflows and it is closed with 4008, counted
    stalled = await StalledReader.connect(node.port, await login(node, "rm.wang"))
    text = "x" * 3900
    closes = 0.0
    for i in range(3000):  # loopback socket buffers hold a few hundred KiB before the stall shows
        answer = await li.request(
            {"type": "send", "conversation_id": conv, "client_msg_id": f"s{i}", "body": {"kind": "text", "text": f"{i} {text}"}}
        )
        assert answer["type"] == "sent"
        if i % 20 == 19:
            closes = moved_now = value(await scrape(node), "bankhub_ws_slow_consumer_closes_total") - value(
                before, "bankhub_ws_slow_consumer_closes_total"
            )
            if moved_now:
                break
    assert closes == 1
    final = await scrape(node)
    assert value(final, "bankhub_ws_closes_total", code="4008") - value(before, "bankhub_ws_closes_total", code="4008") == 1
    assert value(final, "bankhub_ws_frames_received_total", type="send") - value(before, "bankhub_ws_frames_received_total", type="send") == i + 2
    stalled.close()
    await li.close()
    await wang.close()


async def test_the_queue_depth_gauges_see_a_stalled_connection(nodes: Nodes) -> None:
    node = await nodes.start(limits=SessionLimits(outbound_queue=10_000, frames_per_second=1000, frame_burst=1000))
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    stalled = await StalledReader.connect(node.port, await login(node, "rm.wang"))
    li = await RawClient.connect(node.ws_url, li_token)
    text = "y" * 3900
    deepest = 0.0
    for i in range(3000):  # loopback socket buffers take megabytes before anything is queued
        await li.request({"type": "send", "conversation_id": conv, "client_msg_id": f"q{i}", "body": {"kind": "text", "text": text}})
        if i % 25 == 24:
            samples = await scrape(node)
            deepest = value(samples, "bankhub_ws_outbound_queue_max_frames")
            if deepest >= 5:
                assert value(samples, "bankhub_ws_outbound_queued_frames") >= deepest
                break
    assert deepest >= 5
    stalled.close()
    await li.close()


async def test_metrics_answer_only_the_bearer_of_the_token_when_one_is_set(nodes: Nodes) -> None:
    node = await nodes.start(metrics_token="scrape-secret-1")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic c2NyYXBlLXNlY3JldC0x"}, {"authorization": "Bearer"}):
            r = await http.get("/metrics", headers=headers)
            assert r.status_code == 404, headers
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "not_found"
            # the same answer as a path the hub does not have: nothing says the endpoint exists
            assert r.json() == (await http.get("/no-such-path")).json()
        # a user's session token is not the metrics token
        user = await login(node, "ho.admin")
        assert (await http.get("/metrics", headers={"authorization": f"Bearer {user}"})).status_code == 404
    samples = await scrape(node, authorization="Bearer scrape-secret-1")
    assert value(samples, "bankhub_node_info", node="n1", version="0.1.0") == 1


async def test_without_a_token_a_loopback_client_is_answered(node: RunningNode) -> None:
    # the test client is on 127.0.0.1; a non-loopback client is refused (tests/unit/test_metrics.py)
    samples = await scrape(node)
    assert ("bankhub_ws_connections", frozenset()) in samples


async def test_without_a_token_a_forwarded_request_is_refused(nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    # every proxy trusted (the usual setting behind a load balancer): uvicorn rewrites the client
    # to the left-most X-Forwarded-For entry, which a remote client writes itself
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    node = await nodes.start()
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for headers in ({"x-forwarded-for": "127.0.0.1"}, {"x-real-ip": "127.0.0.1"}, {"forwarded": "for=127.0.0.1"}):
            r = await http.get("/metrics", headers=headers)
            assert r.status_code == 404, headers
            assert r.json()["code"] == "not_found"
        assert (await http.get("/metrics")).status_code == 200  # the same client, not forwarded


def test_a_node_listening_beyond_loopback_without_a_token_warns_once(dsn: str, key_file: str, caplog: pytest.LogCaptureFixture) -> None:
    from bankhub.node import build_hub
    from bankhub.runner import uvicorn_config
    from bankhub.settings import Settings

    hub = build_hub(Settings(database_url=dsn, node_name="open", key_file=key_file))
    with caplog.at_level("WARNING", logger="bankhub.metrics"):
        uvicorn_config(hub, host="0.0.0.0", port=8000)
        uvicorn_config(hub, host="127.0.0.1", port=8000)
    warnings = [r for r in caplog.records if r.name == "bankhub.metrics"]
    assert len(warnings) == 1 and "BANKHUB_METRICS_TOKEN" in warnings[0].getMessage() and "0.0.0.0" in warnings[0].getMessage()


async def test_the_pool_transactions_backlog_refusals_and_error_codes_are_measured(nodes: Nodes) -> None:
    node = await nodes.start()
    before = await scrape(node)
    token = await login(node, "c.li")
    with pytest.raises(Exception, match="401"):  # a handshake refused before it is accepted
        await RawClient.connect(node.ws_url, "not-a-session-token")
    li = await RawClient.connect(node.ws_url, token)
    await li.send_frame("this is no JSON")  # refused by the protocol session
    assert (await li.expect("error"))["code"] == "malformed"
    answer = await li.request(  # answered by the request's handler
        {"type": "send", "conversation_id": str(uuid.uuid4()), "client_msg_id": "m1", "body": {"kind": "text", "text": "hi"}}
    )
    assert answer["type"] == "error"
    after = await scrape(node)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("bankhub_ws_handshake_refusals_total", reason="unauthorized") == 1
    assert moved("bankhub_ws_errors_total", code="malformed") == 1
    assert moved("bankhub_ws_errors_total", code=answer["code"]) == 1
    # the pool: the node holds connections (in use or idle); nobody waits; no send waits for the committer
    pool = value(after, "bankhub_db_pool_connections", state="in_use") + value(after, "bankhub_db_pool_connections", state="idle")
    assert pool >= 1
    assert ("bankhub_db_pool_waiting", frozenset()) in after and value(after, "bankhub_db_pool_waiting") == 0
    assert ("bankhub_commit_backlog", frozenset()) in after and value(after, "bankhub_commit_backlog") == 0
    # transactions by their code names: the sign-in and the handshake's session lookups moved
    counts = {
        dict(labels)["transaction"]: v - value(before, name, **dict(labels))
        for (name, labels), v in after.items()
        if name == "bankhub_db_transaction_duration_seconds_count"
    }
    assert sum(counts.values()) >= 2, counts
    assert all(re.fullmatch(r"[a-z0-9_.:-]+", t) for t in counts), counts
    assert not any(token in t for t in counts)
    await li.close()


async def test_alert_fallback_outcomes_are_counted(nodes: Nodes) -> None:
    gateway = await WebhookGateway(fail_first=2).start()  # two failures, then the gateway takes it
    try:
        node = await start_alert_node(
            nodes,
            alert_webhook_url=gateway.url,
            alert_webhook_secret="whsec-for-tests-only",
            alert_fallback_after_seconds=0.3,
            alert_retry_base_seconds=0.05,
            alert_retry_cap_seconds=0.2,
            alert_retry_max_attempts=5,
            alert_worker_seconds=0.05,
        )
        core = await register(node)
        before = await scrape(node)
        r = await signed(node, core, "POST", "/v1/notifications", card_debit())  # c.li is offline
        assert r.status_code == 201, r.text
        outcomes: Samples = {}

        async def counted() -> bool | None:
            nonlocal outcomes
            outcomes = await scrape(node)
            sent = value(outcomes, "bankhub_alert_fallback_total", outcome="sent") - value(before, "bankhub_alert_fallback_total", outcome="sent")
            return True if sent else None

        await wait_for(counted, 10)
        for outcome, n in (("sent", 1), ("retry", 2), ("dead_letter", 0)):
            moved = value(outcomes, "bankhub_alert_fallback_total", outcome=outcome) - value(
                before, "bankhub_alert_fallback_total", outcome=outcome
            )
            assert moved == n, outcome
    finally:
        await gateway.stop()


async def test_a_lost_broker_connection_counts_a_reconnect(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    proxy = await CuttableProxy(urlsplit(valkey_url).port or 6379).start()  # the node's way to Valkey
    try:
        node = await nodes.start("n1", redis_url=f"redis://127.0.0.1:{proxy.port}", cluster_key=cluster_key)
        before = await scrape(node)
        assert proxy.cut() >= 1

        async def reconnected() -> float | None:
            moved = value(await scrape(node), "bankhub_broker_reconnects_total") - value(before, "bankhub_broker_reconnects_total")
            return moved or None

        assert await wait_for(reconnected, 15) == 1
    finally:
        await nodes.stop_all()
        await proxy.close()
