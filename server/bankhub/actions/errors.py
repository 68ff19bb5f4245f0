"""The one exception actions raise for an expected refusal, with a stable code."""

from __future__ import annotations

from ..policy import Decision

__all__ = ["ActionError", "require"]


class ActionError(Exception):
    """An expected refusal: ``code`` is stable (see protocol ErrorCode), ``status`` its HTTP form."""

    _STATUS = {
        "not_found": 404,
        "forbidden": 403,
        # a cookie-authenticated browser request without its CSRF proof (http/auth.py)
        "csrf_failed": 403,
        "unauthorized": 401,
        "invalid_request": 400,
        # a WebSocket frame's shape or fields; an alert POST without its Idempotency-Key header
        "invalid_frame": 400,
        "idempotency_key_required": 400,
        # a supervision rule that does not compile (actions/supervision.py)
        "invalid_rule": 400,
        "conflict": 409,
        # a group at its size cap (Settings.group_max_members)
        "group_full": 409,
        "unavailable": 503,
        "rate_limited": 429,
        "too_large": 413,
        "unsupported_media_type": 415,
        # a session at its absolute lifetime: sign in with the password again
        "reauthentication_required": 401,
        "gone": 410,
        # signed requests of calling systems (alerts)
        "signature_required": 401,
        "invalid_signature": 401,
        "stale_request": 401,
        "replayed_request": 401,
        "system_disabled": 403,
        "idempotency_conflict": 409,
        "recipient_not_found": 404,
        "invalid_alert": 422,
        "card_number_detected": 422,
        # data-loss prevention: a send refused for what it carries; an investigator's invalid value
        "sensitive_data": 422,
        "invalid_value": 422,
        # pictures and voice (http/media.py)
        "too_many_pixels": 413,
        "too_long": 422,
        "invalid_media": 422,
        "media_not_ready": 409,
        "media_rejected": 409,
        # too many unsent uploads held (Settings.media_max_pending, media_max_pending_bytes)
        "media_quota": 409,
        "media_url_expired": 403,
        "media_url_invalid": 403,
        # the service widget's visitor tokens (docs/widget.md)
        "invalid_visitor_token": 401,
        "visitor_token_expired": 401,
        "visitor_token_replayed": 401,
        # an eDiscovery export not built (yet): pending approval, running, failed or rejected
        "not_ready": 409,
        # retention (actions/retention.py): a policy shorter than the records floor; a purge already running
        "below_floor": 422,
        "purge_running": 409,
        # the compliance console's audit-chain check: another verification is walking the chain
        "verify_running": 409,
    }

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self._STATUS.get(self.code, 400)


def require(decision: Decision) -> None:
    """Raise :class:`ActionError` unless the policy allowed it."""
    if not decision.allowed:
        raise ActionError(decision.code or "forbidden", decision.reason or "not allowed")
