"""Tracing off costs one check and imports nothing; on, the spans nest and link as documented."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from bankhub import tracing


def test_off_it_imports_no_opentelemetry_and_every_call_is_a_no_op() -> None:
    code = """
import asyncio, sys
from bankhub import node, tracing
from bankhub.gateway import endpoint
from bankhub.delivery import registry
assert not tracing.enabled
with tracing.span("ws.send", conversation_id="c") as s:
    assert s is None
assert tracing.span("a") is tracing.span("b")  # one shared object, nothing made per call
async def work():
    return 7
coro = work()
links = iter([object()])
assert tracing.within("messages.commit", coro, links) is coro and next(links)  # links never read
assert asyncio.run(coro) == 7
assert tracing.current() is None and tracing.traceparent() is None
assert tracing.delivered(object(), object(), 3) is None
with tracing.span("broker.publish", child_only=True, signals=1) as s:
    assert s is None
tracing.setup("")  # unset endpoint: nothing
assert not tracing.enabled
# what tracing loads when on (redis-py's own observability module may load the API itself)
ours = ("opentelemetry.trace.propagation.tracecontext", "opentelemetry.sdk.trace", "opentelemetry.exporter")
loaded = sorted(m for m in sys.modules if m.startswith(ours))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_on_the_spans_nest_link_and_carry_a_traceparent() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        with tracing.span("ws.send", conversation_id="c1"):
            sent = tracing.current()

        class Message:
            conversation_id, seq = "c1", 4

        class Signal:
            message = Message()
            trace: str | None = None

        async def commit() -> str | None:
            with tracing.span("broker.publish", signals=1):
                return tracing.traceparent()

        signal = Signal()
        signal.trace = asyncio.run(tracing.within("messages.commit", commit(), [sent, None], messages=1))  # type: ignore[arg-type]
        tracing.delivered(object(), signal, 2)  # no running loop: ended at once
    finally:
        tracing.configure(None)
    send, publish, commit_span, deliver = exporter.get_finished_spans()
    assert [s.name for s in (send, publish, commit_span, deliver)] == ["ws.send", "broker.publish", "messages.commit", "fanout.deliver"]
    assert sent is not None and send.context is not None and sent.span_id == send.context.span_id
    assert [link.context.span_id for link in commit_span.links] == [sent.span_id]
    assert commit_span.context is not None and publish.parent is not None and publish.parent.span_id == commit_span.context.span_id
    assert signal.trace is not None and signal.trace.startswith("00-")
    assert publish.context is not None and deliver.parent is not None and deliver.parent.span_id == publish.context.span_id
    assert dict(deliver.attributes or {}) == {"bankhub.conversation_id": "c1", "bankhub.seq": 4, "bankhub.deliveries": 2}
    assert not tracing.enabled


def test_setup_with_an_endpoint_batches_to_the_otlp_exporter() -> None:
    tracing.setup("http://127.0.0.1:9/v1/traces", sample_ratio=0.5, node="n1")
    try:
        assert tracing.enabled
    finally:
        tracing.shutdown()
    assert not tracing.enabled


def _recording() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    return exporter


def _failing_commit() -> asyncpg.CheckViolationError:
    exc = asyncpg.CheckViolationError("new row violates check constraint")
    exc.detail = "Failing row contains (c1, 7, secret message body here)"  # type: ignore[attr-defined]
    return exc


def test_a_failing_span_exports_no_exception_text() -> None:
    exporter = _recording()
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            with tracing.span("ws.send", conversation_id="c1"):
                raise _failing_commit()

        async def commit() -> None:
            raise _failing_commit()

        with pytest.raises(asyncpg.CheckViolationError):
            asyncio.run(tracing.within("messages.commit", commit(), [None], messages=1))  # type: ignore[arg-type]
    finally:
        tracing.configure(None)
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["ws.send", "messages.commit"]
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "CheckViolationError"  # the class name, never the text
        assert not span.events  # no exception event: neither exception.message nor exception.stacktrace
        assert "secret message body" not in repr(span.to_json())
        assert "violates" not in repr(span.to_json())


def test_a_publish_outside_a_traced_request_starts_no_trace() -> None:
    exporter = _recording()
    try:
        with tracing.span("broker.publish", child_only=True, signals=1) as outside:
            assert outside is None
        with tracing.span("messages.commit", messages=1):
            with tracing.span("broker.publish", child_only=True, signals=1) as inside:
                assert inside is not None
    finally:
        tracing.configure(None)
    assert [s.name for s in exporter.get_finished_spans()] == ["broker.publish", "messages.commit"]


def test_a_group_message_makes_one_delivery_span_per_node() -> None:
    class Message:
        conversation_id, seq = "c1", 4

    class Signal:
        message = Message()
        trace: str | None = None

    exporter = _recording()
    node_a, node_b = object(), object()
    first, second = Signal(), Signal()

    async def fan_out() -> None:
        # one member channel after the other, as the broker hands them over (yielding to the loop
        # between some of them), interleaved with another node
        for i in range(50):
            tracing.delivered(node_a, first, 2)
            tracing.delivered(node_b, first, 1)
            if i % 10 == 0:
                await asyncio.sleep(0)
        tracing.delivered(node_a, second, 3)  # the node's next signal: a span of its own
        await asyncio.sleep(tracing.DELIVERY_LINGER * 4)

    try:
        asyncio.run(fan_out())
    finally:
        tracing.configure(None)
    finished = exporter.get_finished_spans()
    assert sorted((s.attributes or {})["bankhub.deliveries"] for s in finished) == [3, 50, 100]  # type: ignore[type-var]
    assert all(s.name == "fanout.deliver" for s in finished)


def test_sampling_keeps_a_sampled_sends_chain_whole() -> None:
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import SpanContext, TraceFlags

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.sampler(0.0))  # no root span is sampled by the ratio
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    sampled = SpanContext(trace_id=0x1F, span_id=0x2F, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    dropped = SpanContext(trace_id=0x3F, span_id=0x4F, is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))

    async def commit() -> None:
        with tracing.span("broker.publish", child_only=True, signals=1):
            pass

    try:
        with tracing.span("ws.send", conversation_id="c1"):  # a root span at ratio 0: not sampled
            pass
        asyncio.run(tracing.within("messages.commit", commit(), [dropped], messages=1))  # type: ignore[arg-type]  # no sampled send
        asyncio.run(tracing.within("messages.commit", commit(), [dropped, sampled], messages=2))  # type: ignore[arg-type]
    finally:
        tracing.configure(None)
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["broker.publish", "messages.commit"]
    assert dict(finished[1].attributes or {}) == {"bankhub.messages": 2}
    assert tracing.sampler(1.0).should_sample(None, 0x5F, "ws.send").decision is Decision.RECORD_AND_SAMPLE


def test_the_last_hub_of_the_process_to_stop_shuts_tracing_down() -> None:
    first = tracing.setup("http://127.0.0.1:9/v1/traces", node="n1")
    second = tracing.setup("http://127.0.0.1:9/v1/traces", node="n2")  # no second provider, no second thread
    try:
        assert first is not None and second is first
        asyncio.run(tracing.release(first))
        assert tracing.enabled
        asyncio.run(tracing.release(second))
        assert not tracing.enabled
        asyncio.run(tracing.release(second))  # once more: nothing
    finally:
        tracing.shutdown()


def test_an_otlp_url_with_credentials_is_refused_without_echoing_them() -> None:
    from bankhub.settings import Settings, SettingsError

    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"BANKHUB_OTEL_ENDPOINT": "https://otel:pa55word@collector:4318/v1/traces"})
    assert "BANKHUB_OTEL_ENDPOINT" in str(refused.value) and "pa55word" not in str(refused.value)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in str(refused.value)
    url = "https://collector:4318/v1/traces?x=a@b"  # an @ after the host is no userinfo
    assert Settings.from_env({"BANKHUB_OTEL_ENDPOINT": url}).otel_endpoint == url
