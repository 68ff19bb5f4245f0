"""The text types of :mod:`bankhub.text`: one rule, the same in every engine that checks it.

msgspec (decoding), Python ``re`` (the ``is_*`` helpers), and the ECMA-262 dialect of JSON
Schema (``/openapi.json``, ``schema/protocol.v1.json``, checked here with jsonschema_rs)
must accept exactly the same strings — in particular none of them may let a trailing
newline through, which a Python ``$`` does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import jsonschema_rs
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import Meta

from bankhub import text
from bankhub.http.openapi import openapi_document
from bankhub.protocol.frames import ArticleNotice, MessageBody, NoticeBody, SystemBody, TextBody

ROOT = Path(__file__).resolve().parents[2]

_LINE_BAD = {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)} | set("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_TEXT_BAD = ({chr(c) for c in range(0x20)} - set("\t\n\r")) | {chr(c) for c in range(0x7F, 0xA0)}

# strings rich in the characters that matter, plus anything at all
hostile = st.text(
    alphabet=st.sampled_from(sorted(_LINE_BAD | set("aZ09 ._-:中é😀\ufffd\u200b"))) | st.characters(codec="utf-8"),
    max_size=12,
)


def _msgspec_ok(value: str, type_: Any) -> bool:
    try:
        msgspec.convert(value, type=type_)
    except msgspec.ValidationError:
        return False
    return True


def _ecma_ok(value: str, pattern: str) -> bool:
    return bool(jsonschema_rs.validator_for({"type": "string", "pattern": pattern}).is_valid(value))


@settings(max_examples=400, deadline=None)
@given(hostile)
def test_a_line_refuses_every_control_line_break_and_bidi_character_in_every_engine(value: str) -> None:
    expected = not (set(value) & _LINE_BAD)
    assert text.is_line(value) is expected
    assert _msgspec_ok(value, text.Line) is expected
    assert _ecma_ok(value, text.LINE_PATTERN) is expected


@settings(max_examples=400, deadline=None)
@given(hostile)
def test_text_allows_tab_and_line_breaks_but_no_other_control_in_every_engine(value: str) -> None:
    expected = not (set(value) & _TEXT_BAD)
    assert text.is_text(value) is expected
    assert _msgspec_ok(value, text.Text) is expected
    assert _ecma_ok(value, text.TEXT_PATTERN) is expected


@settings(max_examples=400, deadline=None)
@given(st.from_regex(r"[a-z0-9][a-z0-9._-]{1,63}", fullmatch=True), st.sampled_from(["", "\n", "\r\n", "\x00", " ", "\u202e", "A"]))
def test_usernames_are_full_matches_in_every_engine(name: str, suffix: str) -> None:
    value = name + suffix
    expected = suffix == ""
    assert text.is_username(value) is expected
    assert _msgspec_ok(value, text.Username) is expected
    assert _ecma_ok(value, text.USERNAME_PATTERN) is expected


@pytest.mark.parametrize("value", ["rm.wang\n", "c.li\x00", "\nrm.wang", "rm.wang\r", "rm.wang\u2028", "RM.WANG", "x"])
def test_the_usernames_of_the_issue_are_refused(value: str) -> None:
    assert not text.is_username(value)
    with pytest.raises(text.TextError, match="username"):
        text.check(value, text.Username, "username")


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (text.TAG_PATTERN, "vip\n"),
        (text.QUEUE_CODE_PATTERN, "general\n"),
        (r"^[\x21-\x7e]+$(?!\n)", "key\n"),  # an alert's collapse_key
    ],
)
def test_no_identifier_pattern_lets_a_trailing_newline_through(pattern: str, value: str) -> None:
    assert re.search(pattern, value) is None
    assert re.search(pattern, value[:-1]) is not None


def test_check_names_the_parameter_and_the_rule_never_the_value() -> None:
    with pytest.raises(text.TextError) as raised:
        text.check("secret\x00value", Annotated[text.Line, Meta(max_length=64)], "case_ref")
    message = str(raised.value)
    assert message.startswith("case_ref: ") and "control" in message and "secret" not in message
    assert text.check("CASE-1", Annotated[text.Line, Meta(max_length=64)], "case_ref") == "CASE-1"


def test_validation_messages_speak_words_not_regexes() -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.json.decode(b'{"kind":"text","text":"a\\u0000b"}', type=TextBody)
    assert text.explain(str(raised.value)) == "Expected text without control characters (tab, LF and CR are allowed) - at `$.text`"


def _walk(schema: Any, defs: dict[str, Any], seen: set[str], out: list[tuple[str, dict[str, Any]]], where: str) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                _walk(defs[name], defs, seen, out, name)
            return
        if schema.get("type") == "string" or (isinstance(schema.get("type"), list) and "string" in schema["type"]):
            out.append((where, schema))
        for key, value in schema.items():
            if key == "properties":
                for prop, sub in value.items():
                    _walk(sub, defs, seen, out, f"{where}.{prop}")
            elif key == "propertyNames":
                _walk(value, defs, seen, out, f"{where}[key]")
            elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
                _walk(value, defs, seen, out, where)
    elif isinstance(schema, list):
        for item in schema:
            _walk(item, defs, seen, out, where)


def _unconstrained(strings: list[tuple[str, dict[str, Any]]]) -> list[str]:
    # a string a client sends carries a pattern, or is an enum/const, or a date-time
    return sorted(
        where
        for where, s in strings
        if "pattern" not in s and "enum" not in s and "const" not in s and s.get("format") not in ("date-time",)
    )


def test_every_string_of_every_http_request_body_has_a_pattern() -> None:
    doc = openapi_document()
    defs = doc["components"]["schemas"]
    strings: list[tuple[str, dict[str, Any]]] = []
    bodies = 0
    for item in doc["paths"].values():
        for op in item.values():
            body = op.get("requestBody")
            if body:
                bodies += 1
                for media_type, content in body["content"].items():
                    if media_type == "application/json":
                        _walk(content["schema"], defs, set(), strings, "body")
                    else:  # an upload: raw bytes, judged by their content, not by a text pattern
                        assert content["schema"] == {"type": "string", "format": "binary"}, media_type
    assert bodies > 20 and len(strings) > 50
    assert _unconstrained(strings) == []


def test_every_string_of_every_client_frame_has_a_pattern() -> None:
    schema = json.loads((ROOT / "schema" / "protocol.v1.json").read_text())
    defs = schema["$defs"]
    strings: list[tuple[str, dict[str, Any]]] = []
    _walk(defs["client_frame"], defs, set(), strings, "frame")
    assert len(strings) > 10
    assert _unconstrained(strings) == []


def test_no_handler_reads_a_text_parameter_without_its_type() -> None:
    """Path segments and query parameters go through http.params (text) or http.paging (integers, cursors)."""
    http = ROOT / "server" / "bankhub" / "http"
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(http.glob("*.py"))
        if path.name not in ("params.py", "paging.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bpath_params\s*\[|\bpath_params\.get\(|\bquery_params\s*\[|\bquery_params\.get\(", line)
    ]
    assert offenders == []


def test_stored_bodies_from_before_the_text_types_still_read() -> None:
    """A message or notice stored before these rules is the hub's own row: it reads as it was."""
    messages = text.StoredDecoder[MessageBody](MessageBody)
    assert messages.decode(b'{"kind":"text","text":"ring \\u0007"}') == TextBody(text="ring \x07")
    assert messages.decode(b'{"kind":"system","event":"e","text":"t","data":{"a":"b"}}') == SystemBody(event="e", text="t", data={"a": "b"})
    notices = text.StoredDecoder[NoticeBody](NoticeBody)
    assert notices.decode('{"kind":"article","title":"a\\u202eb"}') == ArticleNotice(title="a\u202eb")
    for broken in (b'{"kind":"text"}', b'{"kind":"nope","text":"a"}', b'{"kind":"text","text":5}', b'{"kind":"text","text":"a","x":"y"}'):
        with pytest.raises(msgspec.ValidationError):
            messages.decode(broken)


def test_a_header_kept_for_display_becomes_a_bounded_single_line() -> None:
    assert text.header_line(None) is None and text.header_line("") is None
    assert text.header_line("Mozilla/5.0 (iPhone)") == "Mozilla/5.0 (iPhone)"
    assert text.header_line("a\x00b\x85c\u202ed\te") == "a\ufffdb\ufffdc\ufffdd\ufffde"
    assert text.header_line("x" * 1000) == "x" * 256
    assert text.is_line(text.header_line("".join(map(chr, range(0x2070)))) or "")
