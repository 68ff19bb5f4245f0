"""The SDK's wire frames agree with the committed protocol schema, field by field.

``schema/protocol.v1.json`` is generated from the hub's frame types (and
``tests/unit/test_schema_files.py`` checks that it is current). The SDK declares its own
frame types, because it must not import the server package and because it decodes more
leniently than the hub validates. These tests close the loop: for every frame type the
SDK declares they compare each field's name, type, required/optional, default, enum
values and the frame's tag with the schema, and they check that every frame type the hub
can send has an SDK type that decodes it. They read the JSON file only: nothing here
imports ``bankhub``.

Where the SDK deliberately differs, the difference is listed below with its reason; any
other difference fails.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from bankhub_client.desk import SystemBody
from bankhub_client.models import ArticleBody, TextBody, UnknownBody
from bankhub_client.models import EditBody, RecallBody, RecalledBody
from bankhub_client.media import ImageBody, VoiceBody
from bankhub_client.cards import CardBody
from bankhub_client.wire import ClientFrame, ServerFrame, decode_body, decode_notice_body, decode_server_frame, encode

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema" / "protocol.v1.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
DEFS: dict[str, Any] = SCHEMA["$defs"]

# Bodies the SDK takes as raw JSON and decodes itself (wire.decode_body,
# wire.decode_notice_body): a body of a kind it does not know becomes an UnknownBody
# instead of failing the whole frame. test_every_body_kind_in_the_schema_decodes checks
# every kind the schema lists.
RAW_BODIES = frozenset({"Message.body", "Notice.body", "Sent.body"})

# Fields the hub always sends that the SDK still defaults, so that a hello without
# (some of) its limits, from an older hub, decodes: the defaults are the hub's defaults
# (docs/protocol.md, "limits in hello").
LENIENT_DEFAULTS = frozenset(
    {"Hello.limits"}
    | {f"Limits.{name}" for name in DEFS["Limits"]["properties"]}
)

# What the SDK does not need to match: the hub's input constraints (the hub enforces
# them; the SDK's own checks are in bankhub_client.state) and documentation.
_IGNORED_KEYWORDS = frozenset(
    {"description", "title", "maxLength", "minLength", "pattern", "maximum", "minimum", "propertyNames", "examples"}
)


def _ref(node: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = node["$ref"].rsplit("/", 1)[-1]
    return name, DEFS[name]


def _tag_of(cls: Any) -> str:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType) and isinstance(info.tag, str), f"{cls.__name__} is not a tagged struct"
    return info.tag


def _mapping(union: str) -> dict[str, str]:
    """``tag -> $defs name`` of the schema's ``client_frame`` or ``server_frame``."""
    return {tag: ref.rsplit("/", 1)[-1] for tag, ref in DEFS[union]["discriminator"]["mapping"].items()}


def _default(field: mi.Field) -> Any:
    if field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    return msgspec.to_builtins(value)


class Checker:
    """Collects every difference between one SDK struct and its schema definition.

    ``reading``: the SDK decodes it (a server frame); else the SDK encodes it (a client
    frame).
    """

    def __init__(self, reading: bool) -> None:
        self.reading = reading
        self.problems: list[str] = []
        self._seen: set[tuple[str, type]] = set()

    def struct(self, name: str, schema: dict[str, Any], info: mi.StructType) -> None:
        key = (name, info.cls)
        if key in self._seen:
            return
        self._seen.add(key)
        where = f"{name} ({info.cls.__name__})"
        props: dict[str, Any] = dict(schema.get("properties", {}))
        required = set(schema.get("required", []))
        if info.tag_field is not None:
            tag_schema = props.pop(info.tag_field, None)
            if tag_schema is None or tag_schema.get("enum") != [info.tag]:
                self.problems.append(f"{where}: tag {info.tag_field}={info.tag!r}, schema says {tag_schema}")
            elif info.tag_field not in required:
                self.problems.append(f"{where}: the schema does not require the tag field {info.tag_field!r}")
            required.discard(info.tag_field)
        elif any(p.get("enum") and len(p["enum"]) == 1 and n in required for n, p in props.items()):
            self.problems.append(f"{where}: the schema tags it, the SDK type is untagged")
        fields = {f.encode_name: f for f in info.fields}
        for missing in sorted(props.keys() - fields.keys()):
            self.problems.append(f"{where}: the SDK lacks field {missing!r}")
        for extra in sorted(fields.keys() - props.keys()):
            self.problems.append(f"{where}: the SDK has field {extra!r} the schema does not know")
        for field_name in sorted(props.keys() & fields.keys()):
            self.field(f"{name}.{field_name}", props[field_name], field_name in required, fields[field_name])

    def field(self, path: str, schema: dict[str, Any], schema_required: bool, field: mi.Field) -> None:
        if schema_required and not field.required and not (self.reading and path in LENIENT_DEFAULTS):
            self.problems.append(f"{path}: required in the schema, the SDK defaults it to {_default(field)!r}")
        if not schema_required:
            if self.reading and field.required:
                self.problems.append(f"{path}: optional in the schema (default {schema.get('default')!r}), required by the SDK")
            if not field.required and _default(field) != schema.get("default"):
                self.problems.append(f"{path}: default {_default(field)!r} in the SDK, {schema.get('default')!r} in the schema")
        if path in RAW_BODIES:
            if not isinstance(field.type, mi.RawType):
                self.problems.append(f"{path}: expected raw JSON in the SDK, found {field.type}")
            return
        self.type(path, schema, field.type)

    def type(self, path: str, schema: dict[str, Any], t: mi.Type) -> None:
        schema = {k: v for k, v in schema.items() if k not in _IGNORED_KEYWORDS and k != "default"}
        if "$ref" in schema:
            name, target = _ref(schema)
            if not isinstance(t, mi.StructType):
                self.problems.append(f"{path}: {name} in the schema, {t} in the SDK")
                return
            self.struct(name, target, t)
            return
        if "anyOf" in schema:
            options = schema["anyOf"]
            if len(options) == 1:
                self.type(path, options[0], t)
                return
            if not isinstance(t, mi.UnionType):
                match = None if self.reading else _match_option_of(options, t)
                if match is None:  # the SDK sends one of the options: fine; it must read them all
                    self.problems.append(f"{path}: a union in the schema, {t} in the SDK")
                else:
                    self.type(path, match, t)
                return
            self.union(path, options, list(t.types))
            return
        if "enum" in schema and "type" not in schema:  # a Literal of strings (card templates, account classes)
            same = isinstance(t, mi.LiteralType) and sorted(map(str, t.values)) == sorted(schema["enum"])
            if not same:
                self.problems.append(f"{path}: one of {schema['enum']} in the schema, {t} in the SDK")
            return
        kind = schema.get("type")
        simple = {"string": mi.StrType, "integer": mi.IntType, "number": mi.FloatType, "boolean": mi.BoolType, "null": mi.NoneType}
        if kind in simple:
            if not isinstance(t, simple[kind]):
                self.problems.append(f"{path}: {kind} in the schema, {t} in the SDK")
        elif kind == "array":
            if not isinstance(t, mi.ListType):
                self.problems.append(f"{path}: an array in the schema, {t} in the SDK")
            else:
                self.type(f"{path}[]", schema["items"], t.item_type)
        elif kind == "object" and "properties" not in schema:
            if not isinstance(t, mi.DictType) or not isinstance(t.key_type, mi.StrType):
                self.problems.append(f"{path}: a string-keyed map in the schema, {t} in the SDK")
            else:
                self.type(f"{path}{{}}", schema.get("additionalProperties", {}), t.value_type)
        else:
            self.problems.append(f"{path}: a schema this check does not know: {schema}")

    def union(self, path: str, options: list[dict[str, Any]], types: list[mi.Type]) -> None:
        """Each schema option against the SDK option of the same kind (tagged structs by tag)."""
        if len(options) != len(types):
            self.problems.append(f"{path}: {len(options)} options in the schema, {len(types)} in the SDK")
            return
        rest = list(types)
        for option in options:
            match = _match_option(option, rest)
            if match is None:
                self.problems.append(f"{path}: no SDK option for {option}")
                continue
            rest.remove(match)
            self.type(path, option, match)


def _match_option(option: dict[str, Any], types: list[mi.Type]) -> mi.Type | None:
    if "$ref" in option:
        name, target = _ref(option)
        tag = target.get("properties", {}).get("type", target.get("properties", {}).get("kind", {})).get("enum")
        structs = [t for t in types if isinstance(t, mi.StructType)]
        if tag is not None:
            return next((t for t in structs if [t.tag] == tag), None)
        return structs[0] if len(structs) == 1 else None
    simple = {"string": mi.StrType, "integer": mi.IntType, "number": mi.FloatType, "boolean": mi.BoolType, "null": mi.NoneType}
    cls = simple.get(option.get("type", ""))
    if cls is not None:
        return next((t for t in types if isinstance(t, cls)), None)
    return next((t for t in types if not isinstance(t, (mi.StructType, *simple.values()))), None)


def _match_option_of(options: list[dict[str, Any]], t: mi.Type) -> dict[str, Any] | None:
    return next((option for option in options if _match_option(option, [t]) is t), None)


def _frames(union: Any) -> dict[str, Any]:
    return {_tag_of(cls): cls for cls in typing.get_args(union)}


def _check(union_name: str, sdk_union: Any, reading: bool) -> list[str]:
    mapping = _mapping(union_name)
    checker = Checker(reading)
    for tag, cls in _frames(sdk_union).items():
        if tag not in mapping:
            checker.problems.append(f"{cls.__name__}: frame type {tag!r} is not in the schema's {union_name}")
            continue
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        checker.struct(mapping[tag], DEFS[mapping[tag]], info)
    return checker.problems


def test_every_server_frame_type_has_an_sdk_type() -> None:
    """A client must be able to decode everything the hub sends."""
    assert sorted(_frames(ServerFrame)) == sorted(_mapping("server_frame"))


def test_every_client_frame_type_of_the_sdk_is_in_the_schema() -> None:
    assert set(_frames(ClientFrame)) <= set(_mapping("client_frame"))


def test_server_frames_match_the_schema_field_by_field() -> None:
    problems = _check("server_frame", ServerFrame, reading=True)
    assert not problems, "\n".join(problems)


def test_client_frames_match_the_schema_field_by_field() -> None:
    problems = _check("client_frame", ClientFrame, reading=False)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("sdk_type", "schema_name"),
    [(TextBody, "TextBody"), (SystemBody, "SystemBody"), (TextBody, "TextNotice"), (ArticleBody, "ArticleNotice")],
)
def test_body_types_match_the_schema_field_by_field(sdk_type: Any, schema_name: str) -> None:
    checker = Checker(reading=True)
    info = mi.type_info(sdk_type)
    assert isinstance(info, mi.StructType)
    checker.struct(schema_name, DEFS[schema_name], info)
    assert not checker.problems, "\n".join(checker.problems)


# --- the same, by decoding: an instance built from the schema decodes in the SDK ----------------


def example(schema: dict[str, Any]) -> Any:
    """The smallest value the schema allows that has every required field set."""
    if "$ref" in schema:
        return example(_ref(schema)[1])
    if "anyOf" in schema:
        return example(schema["anyOf"][0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return {name: example(schema["properties"][name]) for name in schema.get("required", [])}
    values: dict[str, Any] = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "null": None, "array": [], "object": {}}
    return values[kind]


@pytest.mark.parametrize(("tag", "name"), sorted(_mapping("server_frame").items()))
def test_every_server_frame_in_the_schema_decodes(tag: str, name: str) -> None:
    frame = decode_server_frame(json.dumps(example(DEFS[name])))
    assert frame is not None and _tag_of(type(frame)) == tag


@pytest.mark.parametrize(("tag", "name"), sorted(_mapping("client_frame").items()))
def test_every_client_frame_of_the_sdk_encodes_what_the_schema_requires(tag: str, name: str) -> None:
    sdk = _frames(ClientFrame).get(tag)
    if sdk is None:
        pytest.skip(f"the SDK does not send {tag!r}")
    required = example(DEFS[name])
    frame = msgspec.convert(
        {k: v for k, v in required.items() if k != "type"} | _sdk_required_extras(sdk), sdk
    )
    sent = json.loads(encode(frame))
    assert sent.keys() >= set(DEFS[name].get("required", [])) and sent.keys() <= DEFS[name]["properties"].keys()


def _sdk_required_extras(cls: Any) -> dict[str, Any]:
    """Values for the fields the SDK always sends although the schema does not require them."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    props = DEFS[_mapping("client_frame")[_tag_of(cls)]]["properties"]
    return {f.encode_name: example(props[f.encode_name]) for f in info.fields if f.required and f.encode_name in props}


def _body_kinds(name: str, field: str) -> dict[str, str]:
    node = DEFS[name]["properties"][field]
    while "discriminator" not in node:
        node = next(option for option in node["anyOf"] if "anyOf" in option or "discriminator" in option)
    return {kind: ref.rsplit("/", 1)[-1] for kind, ref in node["discriminator"]["mapping"].items()}


@pytest.mark.parametrize(("kind", "name"), sorted(_body_kinds("Message", "body").items()))
def test_every_message_body_kind_in_the_schema_decodes(kind: str, name: str) -> None:
    body = decode_body(json.dumps(example(DEFS[name])).encode())
    known = {"text": TextBody, "system": SystemBody, "edit": EditBody, "recall": RecallBody, "recalled": RecalledBody}
    known["card"] = CardBody
    known |= {"image": ImageBody, "voice": VoiceBody}
    if kind in known:
        assert isinstance(body, known[kind])
    else:
        assert body == UnknownBody(kind=kind, data=example(DEFS[name]))


@pytest.mark.parametrize(("kind", "name"), sorted(_body_kinds("Notice", "body").items()))
def test_every_notice_body_kind_in_the_schema_decodes(kind: str, name: str) -> None:
    body = decode_notice_body(json.dumps(example(DEFS[name])).encode())
    known = {"text": TextBody, "article": ArticleBody}
    assert isinstance(body, known[kind])
