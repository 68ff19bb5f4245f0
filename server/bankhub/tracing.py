"""Optional OpenTelemetry spans of a message's way: send, commit, publish, deliver.

Off by default. With ``BANKHUB_OTEL_ENDPOINT`` set, building a node
(:func:`bankhub.node.build_hub`, so ``bankhub serve`` and each of its workers) calls
:func:`setup`: a ``TracerProvider`` (parent-based sampling at
``BANKHUB_OTEL_SAMPLE_RATIO``) whose ``BatchSpanProcessor`` exports over OTLP/HTTP (the
``otel`` extra; without it ``serve`` refuses to start). Tests hand a provider of their own
to :func:`configure` (an in-memory exporter), nothing patched.

One message makes these spans:

* ``ws.send`` — the ``send`` request on the sender's connection (``bankhub.conversation_id``);
* ``messages.commit`` — the group-commit batch holding it (``bankhub.messages``: the batch
  size). A batch serves many sends, so it is not any one send's child: it carries a
  *link* to each send's span (:func:`current` is what a send hands the committer);
* ``broker.publish`` — the batch's signals published after the commit, a child of the
  commit (``bankhub.signals``). The span's context travels inside each message signal as a
  W3C ``traceparent`` (:func:`traceparent`), so the receiving node continues the trace;
* ``fanout.deliver`` — on every node holding a recipient's connections, once per message
  per node (a group message's signal arrives once per member channel: :func:`delivered`
  gathers them into one span), a child of ``broker.publish`` (``bankhub.conversation_id``,
  ``bankhub.seq``, ``bankhub.deliveries``: the local connections it went to).

Sampling (:func:`sampler`): a send is sampled at ``BANKHUB_OTEL_SAMPLE_RATIO``; a commit batch
is sampled when any send it links to is; publish and deliveries follow their parent. Only the
committer's publish is traced (``child_only``): other publishes start no trace.

No attribute ever holds message text, a token or any other client-written value beyond ids,
and no span records an exception's text or traceback (status ERROR with the class name only).

When tracing is off every call here costs one check of a module global: :func:`span`
returns a shared no-op context manager, and ``opentelemetry`` is not even imported. The
per-signal fan-out checks ``tracing.enabled`` itself and calls nothing while it is false.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer

__all__ = [
    "TracingUnavailable",
    "enabled",
    "span",
    "within",
    "current",
    "traceparent",
    "delivered",
    "DELIVERY_LINGER",
    "sampler",
    "configure",
    "setup",
    "shutdown",
    "release",
]

T = TypeVar("T")


class TracingUnavailable(ValueError):
    """``BANKHUB_OTEL_ENDPOINT`` is set but the OpenTelemetry SDK or exporter is not installed."""


class _Noop:
    """The context manager of every span while tracing is off."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOOP = _Noop()

enabled = False
"""Whether spans are recorded (set by :func:`configure`); read it as ``tracing.enabled``."""

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_Link: Any = None
_propagator: Any = None
_get_current_span: Any = None
_Status: Any = None
_StatusCode: Any = None


@contextmanager
def _recorded(name: str, attrs: dict[str, str | int], links: list[Any] | None = None) -> Iterator[Any]:
    """A current span that records no exception text: OpenTelemetry's own recording would
    export ``str(exc)`` — an asyncpg error's ``DETAIL`` quotes row values, message text
    among them — and its traceback. A failure sets the status ERROR with the exception's
    class name only, as the logs name it."""
    assert _tracer is not None
    with _tracer.start_as_current_span(
        name,
        links=links,
        attributes={f"bankhub.{k}": v for k, v in attrs.items()},
        record_exception=False,
        set_status_on_exception=False,
    ) as current_span:
        try:
            yield current_span
        except Exception as exc:
            current_span.set_status(_Status(_StatusCode.ERROR, type(exc).__name__))
            raise


def span(name: str, *, child_only: bool = False, **attrs: str | int) -> AbstractContextManager[Any]:
    """A span named ``name``, current inside the ``with`` block; ``attrs`` (ids and
    counts only) become attributes ``bankhub.<key>``. ``child_only``: only inside a
    recording span (the no-op otherwise), so work outside a traced request starts no trace
    of its own. An exception leaving the block marks the span ERROR with its class name,
    never its text."""
    if _tracer is None:
        return _NOOP
    if child_only and not _get_current_span().is_recording():
        return _NOOP
    return _recorded(name, attrs)


async def _within(name: str, work: Awaitable[T], links: Iterable[SpanContext | None], attrs: dict[str, str | int]) -> T:
    linked = [_Link(c) for c in links if c is not None and c.is_valid]
    with _recorded(name, attrs, linked):
        return await work


def within(name: str, work: Awaitable[T], links: Iterable[SpanContext | None], **attrs: str | int) -> Awaitable[T]:
    """``work`` run inside a new span ``name`` linked to each of ``links`` (span contexts
    from :func:`current`; None ones skipped): the span of a batch serving many requests.
    Off: ``work`` itself, and ``links`` is never iterated."""
    if _tracer is None:
        return work
    return _within(name, work, links, attrs)


def current() -> SpanContext | None:
    """The current span's context (to link to it from another task), None when off."""
    if _tracer is None:
        return None
    context: SpanContext = _get_current_span().get_span_context()
    return context


def traceparent() -> str | None:
    """The current span as a W3C ``traceparent`` value (to continue the trace on another
    node), None when off or outside a sampled span."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


class _Delivery:
    """The open ``fanout.deliver`` span of one node (registry) and the signal it is for."""

    __slots__ = ("signal", "span", "deliveries", "end_ns", "stamping")

    def __init__(self, signal: Any, span: Span, deliveries: int) -> None:
        self.signal = signal
        self.span = span
        self.deliveries = deliveries
        self.end_ns = 0  # the end of the last loop turn that delivered it
        self.stamping = False  # a stamp of that end is scheduled


DELIVERY_LINGER = 0.05
"""Seconds a node's ``fanout.deliver`` span stays open after its last delivery, for more
member channels of the same message (the broker reader may yield between them)."""

_deliveries: dict[int, _Delivery] = {}  # by id() of the node's registry: its one open span


def _stamp(open_: _Delivery) -> None:
    open_.end_ns = time.time_ns()
    open_.stamping = False


def _end_delivery(key: int, open_: _Delivery) -> None:
    if _deliveries.get(key) is open_:
        del _deliveries[key]
    open_.span.set_attribute("bankhub.deliveries", open_.deliveries)
    open_.span.end(end_time=open_.end_ns if open_.end_ns and not open_.stamping else None)


def _expire(key: int, open_: _Delivery) -> None:
    if _deliveries.get(key) is not open_:
        return  # ended already: the node's next signal came
    idle = (time.time_ns() - open_.end_ns) / 1e9
    if open_.stamping or idle < DELIVERY_LINGER:
        asyncio.get_running_loop().call_later(max(DELIVERY_LINGER - idle, 0.001), _expire, key, open_)
        return
    _end_delivery(key, open_)


def _end_all_deliveries() -> None:
    for key, open_ in list(_deliveries.items()):
        _end_delivery(key, open_)


def delivered(node: object, signal: Any, deliveries: int) -> None:
    """``deliveries`` local connections of one recipient get the received message ``signal``
    on ``node`` (its connection registry) now. A group message's signal arrives once per
    member channel, all with the same decoded ``signal`` object: the first call starts the
    node's one ``fanout.deliver`` span (its parent ``signal.trace``, the publish's
    ``traceparent``), the following ones add to its ``bankhub.deliveries``. It ends when the
    node's next signal starts, or :data:`DELIVERY_LINGER` seconds after its last delivery (its
    end time: the end of that loop turn). One span per message per node, not per recipient:
    one call is an add while the span is open. The fan-out path calls it only ``if
    tracing.enabled``: off costs that one check."""
    if _tracer is None:
        return
    key = id(node)
    open_ = _deliveries.get(key)
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # no loop (a direct call): nothing else can join the span
        loop = None
    if open_ is not None and open_.signal is signal:
        open_.deliveries += deliveries
        if not open_.stamping and loop is not None:
            open_.stamping = True
            loop.call_soon(_stamp, open_)
        return
    if open_ is not None:
        _end_delivery(key, open_)
    message = signal.message
    parent = _propagator.extract({"traceparent": signal.trace}) if signal.trace else None
    started = _tracer.start_span(
        "fanout.deliver", context=parent, attributes={"bankhub.conversation_id": message.conversation_id, "bankhub.seq": message.seq}
    )
    open_ = _deliveries[key] = _Delivery(signal, started, deliveries)
    if loop is None:
        _end_delivery(key, open_)
        return
    open_.stamping = True
    loop.call_soon(_stamp, open_)
    loop.call_later(DELIVERY_LINGER, _expire, key, open_)


def sampler(ratio: float) -> Any:
    """The sampler of :func:`setup`: a span with a parent follows its parent's decision; a
    root span *linked* to sampled spans (``messages.commit``, linked to its batch's sends) is
    sampled; any other root span (``ws.send``) is sampled at ``ratio`` by its trace id. So a
    sampled send's commit, publish and deliveries are recorded too: its chain is whole."""
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
    from opentelemetry.trace import get_current_span

    class _LinkedOrRatio(Sampler):
        def __init__(self) -> None:
            self._ratio = ParentBased(TraceIdRatioBased(ratio))

        def should_sample(  # type: ignore[no-untyped-def]
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ) -> SamplingResult:
            parent = get_current_span(parent_context).get_span_context()
            if not parent.is_valid and links and any(link.context.trace_flags.sampled for link in links):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"LinkedOrRatio{{{ratio}}}"

    return _LinkedOrRatio()


def configure(provider: TracerProvider | None) -> None:
    """Record spans with ``provider`` from now on (None: tracing off). The provider's span
    processors decide where spans go; tests pass one with an in-memory exporter."""
    global enabled, _tracer, _provider, _Link, _propagator, _get_current_span, _Status, _StatusCode
    _end_all_deliveries()  # a span still open for more member channels ends with its provider
    if provider is None:
        enabled, _tracer, _provider = False, None, None
        return
    from opentelemetry.trace import Link, Status, StatusCode, get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _Link, _propagator, _get_current_span = Link, TraceContextTextMapPropagator(), get_current_span
    _Status, _StatusCode = Status, StatusCode
    _provider = provider
    _tracer = provider.get_tracer("bankhub")
    enabled = True


_holders = 0  # hubs of this process holding the provider setup() made


def setup(endpoint: str, *, sample_ratio: float = 1.0, node: str = "") -> object | None:
    """Tracing as a node's settings say (``otel_endpoint``, ``otel_sample_ratio``,
    ``node_name``): nothing without ``endpoint`` (off unless :func:`configure` was
    called); else spans batched to the OTLP/HTTP exporter at
    that URL, sampled at ``sample_ratio`` by :func:`sampler` (a sampled send's chain is whole).
    Raises :class:`TracingUnavailable` (one line) when the ``otel`` extra is missing.

    Returns the handle the hub passes to :func:`release` when it stops (None without
    ``endpoint``). A second hub of the same process shares the provider the first one set up."""
    global _holders
    if not endpoint:
        return None  # tracing stays as it is: off, or a provider a test configured
    if _holders and _provider is not None:
        _holders += 1
        return _provider
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            "BANKHUB_OTEL_ENDPOINT is set but the OpenTelemetry exporter is not installed: pip install 'bankhub[otel]'"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bankhub", "service.instance.id": node}),
        sampler=sampler(sample_ratio),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    configure(provider)
    _holders = 1
    return provider


async def release(handle: object | None) -> None:
    """A hub that :func:`setup` returned ``handle`` to stopped: with the last such hub of the
    process, the spans still batched are exported (in a thread: the exporter's requests block)
    and tracing is off. Nothing for None or a provider set up since (a test's)."""
    global _holders
    provider = _provider
    if handle is None or handle is not provider or provider is None or _holders <= 0:
        return
    _holders -= 1
    if _holders == 0:
        configure(None)
        await asyncio.to_thread(provider.shutdown)


def shutdown() -> None:
    """Export the spans still batched and stop (a node's last step); tracing is off after."""
    global _holders
    provider = _provider
    configure(None)
    _holders = 0
    if provider is not None:
        provider.shutdown()
