"""Wiring one node: the hub, and the actions it runs on its own.

:func:`build_hub` is the one place where the hub meets the actions above it: it hands the
hub the group committer's flush (:func:`bankhub.actions.messages.commit`) and the periodic
jobs that call actions (the notice scheduler, the service-desk sweep). Everything that
starts a node — ``bankhub serve``, ``bankhub dev``, the tests' harness — builds it here.
"""

from __future__ import annotations

from . import tracing
from .actions import accounts, exports, groups, media, messages, retention, routing
from .broker import Broker
from .bodies import BodyCodec
from .crypto import KeyProvider
from .hub import Hub, Job
from .protocol.session import SessionLimits
from .ratelimit import RateLimiter
from .settings import Settings

__all__ = ["build_hub"]


def build_hub(
    settings: Settings,
    *,
    broker: Broker | None = None,
    codec: BodyCodec | None = None,
    session_limits: SessionLimits | None = None,
    limiter: RateLimiter | None = None,
    key_provider: KeyProvider | None = None,
) -> Hub:
    """A node's hub from its settings; the keyword parts replace the ones the settings
    would make (tests pass an in-memory broker, limits, a key provider)."""
    jobs = [
        # every node publishes due notices: rows are claimed with SKIP LOCKED, each goes out once
        Job("notice-scheduler", settings.notice_scheduler_seconds, accounts.publish_due),
        Job("service-desk-sweep", settings.desk_sweep_seconds, routing.sweep),
        # org groups follow the org tree; user actions reconcile at once, this catches the rest
        Job("org-group-reconcile", settings.group_reconcile_seconds, groups.reconcile_all),
    ]
    # uploads no message carried in time (never sent, refused by the scanner): rows and blobs deleted
    jobs.append(Job("media-unattached-sweep", settings.media_sweep_seconds, media.unattached_sweep))
    if settings.media_clamd:
        # media still in quarantine (the scanner could not answer at upload) are scanned again
        jobs.append(Job("media-scan", settings.media_scan_seconds, media.scan_sweep))
    # eDiscovery exports: builds that stopped without a word (their node was lost) are marked
    # interrupted, at start-up and then periodically; ready exports past their retention expire
    jobs.append(
        Job(
            "export-sweep",
            settings.export_sweep_seconds,
            lambda hub: exports.sweep(exports.ExportDeps.from_hub(hub)),
            first_after=0.0,
        )
    )
    if settings.retention_purge_interval_seconds > 0:
        # the retention purge (one run at a time across the cluster; an interrupted one is resumed first)
        jobs.append(
            Job(
                "retention-purge",
                settings.retention_purge_interval_seconds,
                lambda hub: retention.periodic_purge(hub.db, hub.media.blobs, hub.settings),
            )
        )
    # spans to the OTLP collector when BANKHUB_OTEL_ENDPOINT is set (a ValueError, one line, when the
    # exporter is not installed: serve and its workers exit 2); unset, tracing stays as it is (off)
    traced = tracing.setup(settings.otel_endpoint, sample_ratio=settings.otel_sample_ratio, node=settings.node_name)
    hub = Hub(
        settings,
        commit=messages.commit,
        jobs=jobs,
        broker=broker,
        codec=codec,
        session_limits=session_limits,
        limiter=limiter,
        key_provider=key_provider,
    )
    hub.trace_handle = traced  # Hub.stop releases it: the last hub of the process exports what is batched
    return hub
