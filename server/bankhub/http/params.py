"""Text path segments and query parameters of the HTTP API, checked where they enter.

Every text parameter is declared once as a :class:`TextParam` with one of the text types
of :mod:`bankhub.text`; handlers read it with :meth:`TextParam.read` (never
``request.path_params[...]`` or ``request.query_params.get(...)`` directly), and
:meth:`TextParam.openapi` describes it with the same length and pattern. A value that
breaks its type (a NUL, any control character, a trailing newline, over-long) is answered
``400 invalid_request`` naming the parameter, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from msgspec import Meta
from starlette.requests import Request

from .. import text
from ..actions.errors import ActionError

__all__ = [
    "TextParam",
    "USERNAME",
    "ACCOUNT_ID",
    "NOTICE_ID",
    "SESSION_ID",
    "CONVERSATION_ID",
    "ALERT_ID",
    "QUEUE_CODE",
    "SEARCH",
    "RM",
    "INBOX_STATE",
    "NOTICE_STATUS",
    "PRIVILEGED_READ_REASON",
    "CASE_REF",
    "SINCE",
    "KEEP_CURRENT",
]


@dataclass(frozen=True)
class TextParam:
    """A text path segment or query parameter of type ``type_`` (a :mod:`bankhub.text` type)."""

    name: str
    type_: Any
    location: Literal["path", "query"]
    description: str = ""

    def read(self, request: Request) -> str | None:
        """The value sent, checked (an empty one too: ``?rm=`` is not a username); None when absent."""
        raw = request.path_params.get(self.name) if self.location == "path" else request.query_params.get(self.name)
        if raw is None:
            return None
        try:
            return text.check(raw, self.type_, self.name)
        except text.TextError as exc:
            raise ActionError("invalid_request", str(exc)) from None

    def value(self, request: Request) -> str:
        """:meth:`read` for path segments, which are always present."""
        found = self.read(request)
        if found is None:
            raise ActionError("invalid_request", f"{self.name} is required")
        return found

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI parameter object: name, location and the type's schema."""
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "required": self.location == "path",
            "schema": text.param_schema(self.type_),
        }
        if self.description:
            out["description"] = self.description
        return out


USERNAME = TextParam("username", text.Username, "path")
ACCOUNT_ID = TextParam("account_id", text.Id, "path")
NOTICE_ID = TextParam("notice_id", text.Id, "path")
SESSION_ID = TextParam("session_id", text.Id, "path")
CONVERSATION_ID = TextParam("conversation_id", text.Id, "path")
ALERT_ID = TextParam("alert_id", text.Id, "path")
QUEUE_CODE = TextParam("code", text.QueueCode, "path")

SEARCH = TextParam("q", Annotated[text.Line, Meta(max_length=64)], "query", "searches handle and name")
RM = TextParam("rm", text.Username, "query", "the RM whose book to show (administrators)")
INBOX_STATE = TextParam("state", Annotated[text.Line, Meta(max_length=16)], "query")
LIST_STATE = TextParam("state", Annotated[text.Line, Meta(max_length=32)], "query", "only the items in this state")
NOTICE_STATUS = TextParam("status", Annotated[text.Line, Meta(max_length=32)], "query")
PRIVILEGED_READ_REASON = TextParam("reason", Annotated[text.Line, Meta(max_length=64)], "query")
CASE_REF = TextParam("case_ref", Annotated[text.Line, Meta(max_length=128)], "query", "the case this read is for")
SINCE = TextParam("since", Annotated[text.Line, Meta(max_length=64)], "query")
KEEP_CURRENT = TextParam("keep_current", Annotated[text.Line, Meta(max_length=8)], "query", "true keeps this session")
