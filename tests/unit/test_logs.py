"""The request id rule, id binding and the JSON formatter (:mod:`bankhub.logs`)."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bankhub import logredact, logs


@pytest.mark.parametrize(
    "value",
    ["a", "lb-7f3a.9_x", "A" * 64, "0123456789abcdef", "req.1-2_3"],
)
def test_a_valid_request_id_is_echoed(value: str) -> None:
    assert logs.valid_request_id(value)
    assert logs.request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [None, "", "A" * 65, "no spaces", "new\nline", "tab\t", "semi;colon", "quote\"", "é", "a/b", "x\n", "{json}"],
)
def test_any_other_request_id_is_replaced_by_a_new_one(value: str | None) -> None:
    assert not logs.valid_request_id(value)
    new = logs.request_id(value)
    assert new != value and logs.valid_request_id(new) and len(new) == 32
    assert logs.request_id(value) != new  # random each time


def test_bind_takes_ids_only() -> None:
    with pytest.raises(ValueError, match="not an id key"):
        logs.bind(password="x")
    with pytest.raises(ValueError, match="not an id key"):
        logs.bind(request_id="r", body="x")


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records go through the JSON formatter into a buffer (nothing else)."""
    logredact.install()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.json_formatter())
    logger = logging.getLogger("bankhub.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_json_line_has_the_fields_and_the_bound_ids(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log

    def work() -> None:
        logs.bind(request_id="r-1", connection_id="c" * 32, user_id="u-1", node="node-7")
        logger.info("did %s things", 3)

    contextvars.copy_context().run(work)
    logger.warning("unbound")  # the ids stayed in their context
    first, second = _lines(buffer)
    assert list(first) == ["timestamp", "level", "logger", "node", "event", "request_id", "connection_id", "user_id"]
    assert first["event"] == "did 3 things" and first["level"] == "info" and first["logger"] == "bankhub.test_logs"
    assert (first["request_id"], first["connection_id"], first["user_id"], first["node"]) == ("r-1", "c" * 32, "u-1", "node-7")
    assert first["timestamp"].endswith("Z")
    assert "request_id" not in second and second["level"] == "warning"


async def test_ids_bound_in_a_task_follow_the_tasks_it_creates(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log

    async def connection() -> None:
        logs.bind(connection_id="conn-1", user_id="u-2")
        await asyncio.create_task(asyncio.to_thread(lambda: None))  # an unrelated await
        await asyncio.create_task(request())

    async def request() -> None:
        logger.info("request answered")

    await asyncio.create_task(connection())
    logger.info("outside")
    inside, outside = _lines(buffer)
    assert (inside["connection_id"], inside["user_id"]) == ("conn-1", "u-2")
    assert "connection_id" not in outside


class _AsyncpgLike(Exception):
    __module__ = "asyncpg.exceptions"
    sqlstate = "23505"


def test_an_exception_is_one_safe_string(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    try:
        raise ValueError("refused token=tok-secret-1")
    except ValueError:
        logger.exception("it failed with password=pw-secret-2")
    row = "duplicate key DETAIL: Key (username)=(bob) password hash $argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA"
    try:
        raise _AsyncpgLike(row)
    except _AsyncpgLike:
        logger.error("storage failed", exc_info=True)
    value, database = _lines(buffer)
    assert value["level"] == "error" and value["event"] == "it failed with password=[redacted]"
    assert "Stack (most recent call last)" in value["exception"] and "builtins.ValueError: refused token=[redacted]" in value["exception"]
    assert "asyncpg.exceptions._AsyncpgLike (sqlstate 23505)" in database["exception"]
    text = buffer.getvalue()
    for secret in ("tok-secret-1", "pw-secret-2", "(bob)", "argon2id", "aGFzaA"):
        assert secret not in text


def test_only_the_known_keys_reach_a_line(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    logger.info("with extras", extra={"password": "pw-secret-3", "body": "body-secret-4"})
    (line,) = _lines(buffer)
    assert "password" not in line and "body" not in line
    assert "secret" not in buffer.getvalue()


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.configure("xml", node="n")


async def _answer(app: logs.RequestIds, method: str, request_id: str | None) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """Run one HTTP request through ``app``: the response headers, and the request id the
    inner app saw bound."""
    headers = [(b"host", b"hub")] + ([(b"x-request-id", request_id.encode("latin-1"))] if request_id is not None else [])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": "/x", "headers": headers}, receive, send)
    return sent[0]["headers"], app.app.seen  # type: ignore[attr-defined, no-any-return]


class _Inner:
    """An ASGI app that answers 204 with its own x-request-id (which must not survive) and
    records the request id bound while it ran."""

    def __init__(self) -> None:
        self.seen: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen = logs._IDS["request_id"].get()
        await send({"type": "http.response.start", "status": 204, "headers": [(b"x-request-id", b"inner"), (b"x-other", b"1")]})
        await send({"type": "http.response.body", "body": b""})


async def test_the_middleware_echoes_a_valid_id_and_replaces_any_other() -> None:
    app = logs.RequestIds(_Inner(), node="n1")
    headers, seen = await _answer(app, "GET", "lb-1.2_3")
    assert [v for k, v in headers if k == b"x-request-id"] == [b"lb-1.2_3"] and (b"x-other", b"1") in headers
    assert seen == "lb-1.2_3"
    for bad in ("", "has space", "x" * 65, "new\nline"):
        headers, seen = await _answer(app, "POST", bad)
        (given,) = [v.decode() for k, v in headers if k == b"x-request-id"]
        assert given != bad and logs.valid_request_id(given) and seen == given
    headers, seen = await _answer(app, "GET", None)
    (given,) = [v.decode() for k, v in headers if k == b"x-request-id"]
    assert logs.valid_request_id(given) and seen == given
    assert logs._IDS["request_id"].get() is None  # unbound after the request


async def test_the_access_line_names_no_client_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bankhub.access")
    app = logs.RequestIds(_Inner())
    await _answer(app, "PASSWORD=hunter2", "r-1")
    (record,) = [r for r in caplog.records if r.name == "bankhub.access"]
    assert record.getMessage().startswith("other ? 204 ") and "hunter2" not in caplog.text
