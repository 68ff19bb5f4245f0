"""The protocol's JSON Schema, generated from :mod:`bankhub.protocol.frames`.

``schema/protocol.v1.json`` is this document, committed; a test checks that
``bankhub schema`` reproduces it byte for byte. Regenerate with
``bankhub schema > schema/protocol.v1.json``.

Descriptions come from docstrings, and msgspec releases dedent docstrings differently,
so every ``description`` is normalised with :func:`inspect.cleandoc`: the document is the
same whatever supported msgspec is installed.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import msgspec

from .frames import SUBPROTOCOL, ClientFrame, ServerFrame

__all__ = ["protocol_schema", "protocol_schema_text", "normalise_descriptions"]


def normalise_descriptions(node: Any) -> Any:
    """``node`` with every string ``description`` passed through :func:`inspect.cleandoc`.

    Walks dicts and lists; returns a new structure (the input is not modified).
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value) if key == "description" and isinstance(value, str) else normalise_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [normalise_descriptions(item) for item in node]
    return node


def protocol_schema() -> dict[str, Any]:
    (client, server), components = msgspec.json.schema_components(
        [ClientFrame, ServerFrame], ref_template="#/$defs/{name}"
    )
    document: dict[str, Any] = normalise_descriptions(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://bankhub.dev/schema/protocol.v1.json",
            "title": f"bankhub protocol v1 ({SUBPROTOCOL})",
            "description": "Frames on /v1/ws. client_frame: what clients send; server_frame: what the hub sends.",
            "$defs": {**components, "client_frame": client, "server_frame": server},
            "oneOf": [{"$ref": "#/$defs/client_frame"}, {"$ref": "#/$defs/server_frame"}],
        }
    )
    return document


def protocol_schema_text() -> str:
    """Exactly what ``bankhub schema`` prints (and ``schema/protocol.v1.json`` holds)."""
    return json.dumps(protocol_schema(), indent=2, sort_keys=True) + "\n"
