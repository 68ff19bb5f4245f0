from __future__ import annotations

import logging

from bankhub.logredact import RedactSecrets


def _format(msg: str, *args: object) -> str:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, msg, args, None)
    assert RedactSecrets().filter(record)
    return record.getMessage()


def test_tickets_tokens_and_bearer_values_never_reach_a_log_line() -> None:
    line = _format('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/v1/ws?ticket=AbC-123_xyz&x=1")
    assert "AbC-123_xyz" not in line and "ticket=[redacted]&x=1" in line
    assert "s3cret" not in _format("Authorization: Bearer s3cret.tok-en")
    assert _format("GET /v1/me?token=zzz") == "GET /v1/me?token=[redacted]"
    assert _format("nothing to hide %d", 5) == "nothing to hide 5"
