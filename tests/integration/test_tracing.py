"""OpenTelemetry spans of a message on real nodes: ws.send -> messages.commit (linked) ->
broker.publish -> fanout.deliver, recorded by an in-memory exporter handed to
:func:`bankhub.tracing.configure`; and ``bankhub serve`` without the exporter package."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bankhub import tracing

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    yield exporter
    tracing.configure(None)
    provider.shutdown()


def _deliveries(span: ReadableSpan) -> int:
    value = (span.attributes or {})["bankhub.deliveries"]
    assert isinstance(value, int)
    return value


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def _finished(exporter: InMemorySpanExporter, name: str, count: int) -> list[ReadableSpan]:
    for _ in range(100):
        found = _named(exporter.get_finished_spans(), name)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {count} {name} span(s): {[s.name for s in exporter.get_finished_spans()]}")


def _check_chain(exporter: InMemorySpanExporter, conv: str, seq: int, body: str, deliveries: list[ReadableSpan]) -> None:
    finished = exporter.get_finished_spans()
    (send,) = _named(finished, "ws.send")
    (commit,) = _named(finished, "messages.commit")
    publishes = _named(finished, "broker.publish")
    assert send.context is not None and commit.context is not None
    assert send.attributes is not None and send.attributes["bankhub.conversation_id"] == conv
    # the batch is linked to the send (a batch serves many sends: a link, not a parent)
    assert [link.context.span_id for link in commit.links] == [send.context.span_id]
    assert commit.attributes is not None and commit.attributes["bankhub.messages"] == 1
    # the publish after the commit is the commit's child
    (publish,) = [p for p in publishes if p.parent is not None and p.parent.span_id == commit.context.span_id]
    assert publish.context is not None and publish.context.trace_id == commit.context.trace_id
    # each delivery continues the publish's trace, on whichever node received the signal
    for deliver in deliveries:
        assert deliver.parent is not None and deliver.parent.span_id == publish.context.span_id
        assert deliver.context is not None and deliver.context.trace_id == publish.context.trace_id
        attrs = deliver.attributes
        assert attrs is not None and attrs["bankhub.conversation_id"] == conv and attrs["bankhub.seq"] == seq
    assert sum(_deliveries(d) for d in deliveries) >= 1
    # never the text
    for span in finished:
        for value in (span.attributes or {}).values():
            assert body not in str(value)
        assert body not in span.name
        assert body not in (span.status.description or "")
        for event in span.events:
            assert body not in event.name and all(body not in str(v) for v in (event.attributes or {}).values())


async def test_one_send_makes_the_four_spans(nodes: Nodes, spans: InMemorySpanExporter) -> None:
    node = await nodes.start()
    li_token, wang_token = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, wang_token)
    spans.clear()
    body = f"tracing-body-{uuid.uuid4().hex}"
    sent = await li.expect("sent", frame_id=await li.send_text(conv, body))
    (got,) = await wang.messages(1)
    assert got["seq"] == sent["seq"]
    # one signal per member channel (c.li's: her origin connection; rm.wang's), one span for both
    # on this node: per signal per node, not per recipient
    deliveries = await _finished(spans, "fanout.deliver", 1)
    await asyncio.sleep(0.2)
    assert _named(spans.get_finished_spans(), "fanout.deliver") == deliveries
    assert [_deliveries(d) for d in deliveries] == [2]
    _check_chain(spans, conv, sent["seq"], body, deliveries)
    await li.close()
    await wang.close()


async def test_the_trace_crosses_nodes_through_the_broker(
    nodes: Nodes, spans: InMemorySpanExporter, valkey_url: str, cluster_key: str
) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li_token, wang_token = await login(a, "c.li"), await login(b, "rm.wang")
    conv = await open_direct(a, li_token, "rm.wang")
    li = await RawClient.connect(a.ws_url, li_token)
    wang = await RawClient.connect(b.ws_url, wang_token)
    spans.clear()
    body = f"tracing-body-{uuid.uuid4().hex}"
    sent = await li.expect("sent", frame_id=await li.send_text(conv, body))
    (got,) = await wang.messages(1)
    assert got["seq"] == sent["seq"]
    deliveries = await _finished(spans, "fanout.deliver", 2)
    # the sealed signal carried the publish's context to node-b, where rm.wang's connection is
    _check_chain(spans, conv, sent["seq"], body, deliveries)
    await li.close()
    await wang.close()


async def test_a_node_with_an_endpoint_shuts_tracing_down_when_it_stops(nodes: Nodes) -> None:
    node = await nodes.start(otel_endpoint="http://127.0.0.1:9/v1/traces")
    try:
        assert tracing.enabled
        await node.stop()
        assert not tracing.enabled  # its batch exported (or dropped) now, its exporter thread gone
    finally:
        tracing.shutdown()


async def test_serve_without_the_exporter_exits_2_with_one_line(dsn: str, key_file: str, tmp_path: object) -> None:
    # the exporter module made unimportable in the child (a None entry in sys.modules), as without the extra
    code = (
        "import sys; sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from bankhub.cli import main\nsys.exit(main(['serve']))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    env.update(
        BANKHUB_DATABASE_URL=dsn, BANKHUB_KEY_FILE=key_file, BANKHUB_PORT="0", BANKHUB_OTEL_ENDPOINT="http://127.0.0.1:9/v1/traces"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert lines == ["bankhub serve: BANKHUB_OTEL_ENDPOINT is set but the OpenTelemetry exporter is not installed: pip install 'bankhub[otel]'"]
