from __future__ import annotations

import io
import logging

from bankhub.logredact import RedactSecrets, describe, install, redact, safe_traceback


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


def test_hashes_and_database_detail_are_cut_even_across_newlines() -> None:
    h = "$argon2id$v=19$m=65536,t=3,p=4$NZ+oRi2cOvnnbcPHk6VKpQ$aebpuy49VxQ2Jm0yq8n1tH0x8Cz5sR3xw5b2u0pX4mA"
    row = f'new row for relation "users" violates check constraint "users_username_check"\nDETAIL:  Failing row contains (1, rm.wang\n, Wang, {h}, f).'
    out = redact(row)
    assert out.startswith('new row for relation "users" violates check constraint') and "DETAIL" not in out
    assert "argon2" not in out and "Wang" not in out and "NZ+oRi2" not in out
    assert redact(f"stored {h} for c.li") == "stored [redacted] for c.li"
    assert "c.li" not in redact('duplicate key value violates unique constraint "u" Key (username)=(c.li) already exists.')
    assert "abc" not in redact("invalid input for query argument $1: 'abc' (invalid UUID 'abc')")
    assert "hunter2" not in redact("password=hunter2 secret=s3") and "s3" not in redact("secret=s3")


class _PgLike(Exception):
    """Shaped like an asyncpg error: its message quotes the row, ``detail`` too."""

    sqlstate = "23514"
    constraint_name = "users_username_check"

    def __init__(self) -> None:
        super().__init__("new row violates check\nDETAIL:  Failing row contains (x, $argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA).")
        self.detail = "Failing row contains (x, $argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA)."


def test_every_record_is_scrubbed_at_creation_whatever_logger_and_handler() -> None:
    install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # a handler added after install, on a child logger
    logger = logging.getLogger("bankhub.some.module")
    logger.addHandler(handler)
    try:
        try:
            raise _PgLike()
        except _PgLike:
            logger.exception("insert failed")
        logger.error("token=%s and %s", "abc123", "Bearer xyz.789")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "insert failed" in out and "_PgLike (sqlstate 23514, constraint users_username_check)" in out
    assert 'in test_every_record_is_scrubbed_at_creation_whatever_logger_and_handler' in out  # where it was raised
    for leaked in ("DETAIL", "Failing row", "argon2", "c2FsdA", "Traceback", "abc123", "xyz.789"):
        assert leaked not in out, (leaked, out)


def test_describe_and_safe_traceback_never_show_a_database_message() -> None:
    try:
        try:
            raise _PgLike()
        except _PgLike as inner:
            raise RuntimeError("wrapping") from inner
    except RuntimeError as exc:
        assert describe(exc) == "RuntimeError <- _PgLike (sqlstate 23514, constraint users_username_check)"
        trace = safe_traceback(exc)
        quiet = safe_traceback(exc, messages=False)
    assert "RuntimeError: wrapping" in trace and "argon2" not in trace and "Failing" not in trace
    assert "RuntimeError: wrapping" not in quiet and quiet.endswith("builtins.RuntimeError")
