"""The text a client may send: one set of types, checked once, where the text enters.

Every string in an HTTP body, query parameter, path segment and WebSocket frame is one of
the types below. msgspec checks them while decoding (``Meta(pattern=...)``), the same
patterns appear in ``/openapi.json`` and ``schema/protocol.v1.json``, and
:func:`check` applies them to path and query parameters. A violation is answered 400
``invalid_request`` over HTTP and an ``invalid_frame`` error frame over the WebSocket; it
never reaches Postgres (which refuses NUL in ``text`` and ``jsonb``) or a log line.

Two kinds of free text:

* :data:`Line` — a single line: names, titles, reasons, search terms, ids, passwords. No
  C0 control (``U+0000``–``U+001F``, so no tab, CR or LF), no DEL, no C1 control
  (``U+0080``–``U+009F``), no line or paragraph separator (``U+2028``, ``U+2029``) and no
  bidirectional embedding, override or isolate control (``U+202A``–``U+202E``,
  ``U+2066``–``U+2069``), which can make one name display as another.
* :data:`Text` — what people write to each other: message and notice bodies, notes,
  comments. Tab, LF and CR are allowed; every other C0 control, DEL and C1 control is not.

Identifiers have stricter patterns: :data:`Username` (also official account handles and
alert system names), :data:`Tag` (customer tags and segments), :data:`QueueCode`.
:data:`OrgCode`, :data:`Id`, :data:`Password` and :data:`LoginName` are single lines of
bounded length. Server-only text (a system message, a rendered alert) is not checked: the
hub writes it.

Unpaired surrogates and invalid UTF-8 never get this far: the JSON decoder refuses them
(``malformed`` / ``body is not valid JSON``) and URL decoding replaces them with U+FFFD.

Why every pattern ends in ``$(?!\\n)``: msgspec and Python's :mod:`re` *search* with the
pattern, and Python's ``$`` also matches just before a final newline, so ``^[a-z.]+$``
lets ``"rm.wang\\n"`` through. ``(?!\\n)`` closes that gap; in the ECMA-262 dialect of
JSON Schema and OpenAPI, where ``$`` only matches at the end, it changes nothing. Python
code outside msgspec uses :func:`is_username` and friends (or ``re.fullmatch``), never
``re.match`` with a trailing ``$``.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Final, Generic, TypeVar

import msgspec
from msgspec import Meta

__all__ = [
    "LINE_PATTERN",
    "TEXT_PATTERN",
    "USERNAME_PATTERN",
    "TAG_PATTERN",
    "QUEUE_CODE_PATTERN",
    "Line",
    "Text",
    "Username",
    "Tag",
    "QueueCode",
    "OrgCode",
    "Id",
    "Password",
    "LoginName",
    "TextError",
    "check",
    "param_schema",
    "explain",
    "is_line",
    "is_text",
    "is_username",
    "is_tag",
    "is_queue_code",
    "StoredDecoder",
    "header_line",
]

# C0 controls except tab, LF, CR; DEL; C1 controls
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# what a single line refuses on top: tab, LF, CR, line/paragraph separators, bidi controls
_LINE_BREAKS_AND_BIDI = r"\t\n\r\u2028\u2029\u202a-\u202e\u2066-\u2069"

LINE_PATTERN: Final = rf"^[^{_CONTROLS}{_LINE_BREAKS_AND_BIDI}]*$(?!\n)"
"""A single line of text: no control, line-break or bidi control characters."""

TEXT_PATTERN: Final = rf"^[^{_CONTROLS}]*$(?!\n)"
"""Multi-line text: tab, LF and CR allowed, no other control character."""

USERNAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{1,63}$(?!\n)"
"""Usernames, official account handles, alert system names (the ``users.username`` CHECK)."""

TAG_PATTERN: Final = r"^[a-z0-9][a-z0-9:_-]{0,31}$(?!\n)"
"""Customer tags and segments (the ``users.segment`` CHECK); also service-desk close tags."""

QUEUE_CODE_PATTERN: Final = r"^[a-z][a-z0-9_-]{1,31}$(?!\n)"
"""Service-desk queue codes (the ``service_queues.code`` CHECK)."""

Line = Annotated[str, Meta(pattern=LINE_PATTERN)]
"""A single line of text. Give it a length where it is used: ``Annotated[Line, Meta(max_length=64)]``."""

Text = Annotated[str, Meta(pattern=TEXT_PATTERN)]
"""Multi-line text. Give it a length where it is used."""

Username = Annotated[
    str,
    Meta(
        pattern=USERNAME_PATTERN,
        min_length=2,
        max_length=64,
        description="2-64 of a-z 0-9 . _ -, starting with a letter or digit",
    ),
]
Tag = Annotated[str, Meta(pattern=TAG_PATTERN, min_length=1, max_length=32)]
QueueCode = Annotated[str, Meta(pattern=QUEUE_CODE_PATTERN, min_length=2, max_length=32)]
OrgCode = Annotated[str, Meta(pattern=LINE_PATTERN, min_length=1, max_length=32)]
"""An org (branch) code such as ``HO``, ``BJ``, ``BJ-HD``."""
Id = Annotated[str, Meta(pattern=LINE_PATTERN, min_length=1, max_length=64)]
"""An id a client names (conversation, account, notice, session, alert)."""

Password = Annotated[str, Meta(pattern=LINE_PATTERN, max_length=256)]
"""A password as typed: one line, at most 256 characters."""

LoginName = Annotated[str, Meta(pattern=LINE_PATTERN, max_length=128)]
"""The username typed at sign-in. Looser than :data:`Username`: a name that cannot exist
is answered like an unknown one, so sign-in reveals nothing a format check would not."""

_LINE = re.compile(LINE_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)
_USERNAME = re.compile(USERNAME_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_QUEUE_CODE = re.compile(QUEUE_CODE_PATTERN)


def is_line(value: str) -> bool:
    return _LINE.search(value) is not None


def is_text(value: str) -> bool:
    return _TEXT.search(value) is not None


def is_username(value: str) -> bool:
    return _USERNAME.search(value) is not None


def is_tag(value: str) -> bool:
    return _TAG.search(value) is not None


def is_queue_code(value: str) -> bool:
    return _QUEUE_CODE.search(value) is not None


_NOT_IN_A_LINE = re.compile(rf"[{_CONTROLS}{_LINE_BREAKS_AND_BIDI}]")


def header_line(value: str | None, max_chars: int = 256) -> str | None:
    """A request header kept for display (``User-Agent``): a :data:`Line` of at most ``max_chars``.

    Headers are not refused for their text – a browser sends what it sends – so each
    character a :data:`Line` refuses becomes U+FFFD, and the value is cut to ``max_chars``.
    An absent or empty header is ``None``.
    """
    if not value:
        return None
    return _NOT_IN_A_LINE.sub("\ufffd", value[:max_chars])


class TextError(ValueError):
    """A value is not of the text type asked for; the message says why, never the value."""


T = TypeVar("T")

_EXPLAINED = {
    LINE_PATTERN: "single-line text without control, line-break or bidi control characters",
    TEXT_PATTERN: "text without control characters (tab, LF and CR are allowed)",
    USERNAME_PATTERN: "2-64 of a-z 0-9 . _ -, starting with a letter or digit",
    TAG_PATTERN: "1-32 of a-z 0-9 : _ -, starting with a letter or digit",
    QUEUE_CODE_PATTERN: "2-32 of a-z 0-9 _ -, starting with a letter",
}
_REGEX_MESSAGE = re.compile(r"Expected `str` matching regex '((?:[^'\\]|\\.)*)'")


def explain(message: str) -> str:
    """A msgspec validation message with the regex replaced by words.

    ``Expected `str` matching regex '^[^\\x00-...' - at `$.peer``` becomes
    ``Expected single-line text without control, ... - at `$.peer```.
    """

    def words(m: re.Match[str]) -> str:
        pattern = m.group(1).encode().decode("unicode_escape")
        return f"Expected {_EXPLAINED[pattern]}" if pattern in _EXPLAINED else m.group(0)

    try:
        return _REGEX_MESSAGE.sub(words, message)
    except (UnicodeDecodeError, ValueError):  # pragma: no cover - msgspec's own wording changed
        return message


def check(value: str, type_: Any, name: str) -> str:
    """``value`` as ``type_`` (one of this module's types); raises :class:`TextError`.

    For path segments and query parameters, which no struct decodes. The message names
    the parameter and the rule, never the value (it may be anything).
    """
    try:
        checked: str = msgspec.convert(value, type=type_)
    except msgspec.ValidationError as exc:
        reason = explain(str(exc)).removesuffix(" - at `$`")
        raise TextError(f"{name}: {reason}") from None
    return checked


def param_schema(type_: Any) -> dict[str, Any]:
    """The JSON Schema of a text type, for an OpenAPI parameter (``{"type": "string", ...}``)."""
    schema: dict[str, Any] = msgspec.json.schema(type_)
    return schema


class StoredDecoder(Generic[T]):
    """Decodes JSON the hub stored itself into ``type_``, a tagged union of structs.

    The text types check what clients send. Rows stored before they existed may hold
    characters they now refuse (a BEL in a message, say); the store trusts its own rows, so
    such a row is built without the constraints — a struct's constructor does not check
    them — rather than failing the read or passing for tampered. Anything else that does
    not decode still raises.
    """

    def __init__(self, type_: Any) -> None:
        self._strict: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)
        self._by_tag: dict[tuple[str, Any], Any] = {}
        for member in typing.get_args(type_) or (type_,):
            config = member.__struct_config__
            self._by_tag[(config.tag_field, config.tag)] = member

    def decode(self, data: bytes | str) -> T:
        try:
            return self._strict.decode(data)
        except msgspec.ValidationError as exc:
            obj = msgspec.json.decode(data)
            if isinstance(obj, dict):
                for (field, tag), member in self._by_tag.items():
                    if obj.get(field) == tag and all(_plain(v) for v in obj.values()):
                        try:
                            built: T = member(**{k: v for k, v in obj.items() if k != field})
                        except TypeError:  # a missing or unknown field: not a constraint matter
                            raise exc from None
                        return built
            raise


def _plain(value: Any) -> bool:
    # what a stored body holds: strings, nothing, and string maps (a system body's data)
    return value is None or isinstance(value, str) or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
