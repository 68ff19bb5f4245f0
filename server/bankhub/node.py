"""Wiring one node: the hub, and the actions it runs on its own.

:func:`build_hub` is the one place where the hub meets the actions above it: it hands the
hub the group committer's flush (:func:`bankhub.actions.messages.commit`) and the periodic
jobs that call actions (the notice scheduler, the service-desk sweep). Everything that
starts a node — ``bankhub serve``, ``bankhub dev``, the tests' harness — builds it here.
"""

from __future__ import annotations

from .actions import accounts, messages, routing
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
    ]
    return Hub(
        settings,
        commit=messages.commit,
        jobs=jobs,
        broker=broker,
        codec=codec,
        session_limits=session_limits,
        limiter=limiter,
        key_provider=key_provider,
    )
