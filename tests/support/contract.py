"""Checks every HTTP answer a test node gives against the hub's own ``/openapi.json``.

:class:`ContractRecorder` wraps a node's ASGI app (``start_node(wrap_app=...)``, outermost,
so 500s are seen too). For each HTTP request it finds the operation (method and path
template) and checks the answer:

* the status is documented for the operation (a path the document does not have may only
  answer 404; a method it does not have for a documented path, only 405 with ``Allow``);
* the content type is one the document gives for that status (no body where it gives none);
* a JSON body validates against the documented schema (JSON Schema 2020-12, formats on);
* the headers the document marks required are present and match their schema.

Violations are collected, not raised (the test's own assertions stay readable); the
``nodes`` fixture asserts there were none when the test ends. Paths outside the document
(``/``, ``/openapi.json``, the WebSocket ``/v1/ws``, and the web pages and files of
:mod:`bankhub.web` under ``/app``, ``/staff``, ``/console``, ``/compliance`` and ``/static/``) are not checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bankhub.http.openapi import openapi_document

__all__ = ["ContractRecorder", "ContractViolation"]

_UNCHECKED = {"/", "/openapi.json", "/v1/ws", "/app", "/staff", "/console", "/compliance"}
_UNCHECKED_PREFIXES = ("/app/", "/staff/", "/console/", "/compliance/", "/static/")
_MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class ContractViolation:
    method: str
    path: str
    status: int
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.problem}"


@dataclass
class _Template:
    path: str
    regex: re.Pattern[str]
    literal_chars: int


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _segment(doc: dict[str, Any], path: str, name: str) -> str:
    """The regex of path parameter ``name`` of ``path``: a UUID where the document says so."""
    for op in doc["paths"][path].values():
        for p in op.get("parameters", []):
            if p["in"] == "path" and p["name"] == name and p["schema"].get("format") == "uuid":
                return _UUID
    return "[^/]+"


def _templates(doc: dict[str, Any]) -> list[_Template]:
    out = []
    for path in doc["paths"]:
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m[1]}>{_segment(doc, path, m[1])})", re.escape(path)) + "$"
        out.append(_Template(path, re.compile(pattern), len(re.sub(r"\{\w+\}", "", path))))
    # a literal segment wins over a parameter (/v1/sessions/current before /v1/sessions/{session_id})
    out.sort(key=lambda t: -t.literal_chars)
    return out


@dataclass
class ContractRecorder:
    """Records every answer that disagrees with the document (see the module docstring)."""

    doc: dict[str, Any] = field(default_factory=openapi_document)
    violations: list[ContractViolation] = field(default_factory=list)
    checked: int = 0

    def __post_init__(self) -> None:
        self._templates = _templates(self.doc)
        self._validators: dict[str, Any] = {}

    # --- ASGI --------------------------------------------------------------------------------

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def checked_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"] in _UNCHECKED or scope["path"].startswith(_UNCHECKED_PREFIXES):
                await app(scope, receive, send)
                return
            start: dict[str, Any] = {}
            body = bytearray()

            async def recording_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    start.update(message)
                elif message["type"] == "http.response.body" and len(body) < _MAX_BODY:
                    body.extend(message.get("body", b""))
                await send(message)

            try:
                await app(scope, receive, recording_send)
            except Exception as exc:
                self._record(scope["method"], scope["path"], 500, f"unhandled {type(exc).__name__}")
                raise
            if start:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])}
                self.check(scope["method"], scope["path"], start["status"], headers, bytes(body))

        return checked_app

    # --- checks ------------------------------------------------------------------------------

    def _record(self, method: str, path: str, status: int, problem: str) -> None:
        self.violations.append(ContractViolation(method, path, status, problem))

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The template ``path`` matches that has ``method`` (else the most literal match)."""
        matches = [t.path for t in self._templates if t.regex.fullmatch(path)]
        wanted = "get" if method == "HEAD" else method.lower()
        for template in matches:
            if wanted in self.doc["paths"][template]:
                return template, self.doc["paths"][template]
        return (matches[0], self.doc["paths"][matches[0]]) if matches else None

    def check(self, method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        """Check one answer; violations go to :attr:`violations`."""
        self.checked += 1
        found = self._operation(method, path)
        if found is None:
            if status != 404:
                self._record(method, path, status, "a path the document does not have answered other than 404")
            return
        template, item = found
        op = item.get("get" if method == "HEAD" else method.lower())
        if op is None:
            if status != 405:
                self._record(method, path, status, f"{template} has no {method} in the document: expected 405")
            elif not headers.get("allow"):
                self._record(method, path, status, "405 without an Allow header")
            else:
                allowed = {m.strip().upper() for m in headers["allow"].split(",")}
                documented = {m.upper() for m in item}
                if not documented <= allowed:
                    self._record(method, path, status, f"Allow {sorted(allowed)} misses documented methods {sorted(documented)}")
            return
        responses: dict[str, Any] = op["responses"]
        response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
        if response is None:
            self._record(method, path, status, f"status not documented for {method} {template} (documented: {sorted(responses)})")
            return
        self._check_headers(method, path, status, response, headers)
        if method == "HEAD":
            return
        content: dict[str, Any] = response.get("content", {})
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if not content:
            if body:
                self._record(method, path, status, f"a body ({media or 'no content type'}) where the document gives none")
            return
        if media not in content:
            self._record(method, path, status, f"content type {media!r} not documented (documented: {sorted(content)})")
            return
        schema = content[media].get("schema")
        if schema is None:
            return
        try:
            instance = json.loads(body)
        except ValueError:
            self._record(method, path, status, f"{media} body is not JSON")
            return
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = jsonschema_rs.Draft202012Validator({**schema, "components": self.doc["components"]}, validate_formats=True)
            self._validators[key] = validator
        errors = [f"{'/'.join(map(str, e.instance_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(instance)]
        if errors:
            self._record(method, path, status, "body does not match the documented schema: " + "; ".join(errors[:5]))

    def _check_headers(self, method: str, path: str, status: int, response: dict[str, Any], headers: dict[str, str]) -> None:
        for name, spec in response.get("headers", {}).items():
            value = headers.get(name.lower())
            if value is None:
                if spec.get("required"):
                    self._record(method, path, status, f"required header {name} missing")
                continue
            schema = spec.get("schema")
            if schema is not None and not jsonschema_rs.Draft202012Validator(schema, validate_formats=True).is_valid(value):
                self._record(method, path, status, f"header {name}: {value!r} does not match {schema}")

    def assert_clean(self) -> None:
        """Fail with every violation recorded (call once the test's requests are done)."""
        assert not self.violations, "answers that disagree with /openapi.json:\n" + "\n".join(str(v) for v in self.violations)
