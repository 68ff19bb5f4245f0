"""The protocol's JSON Schema, generated from :mod:`bankhub.protocol.frames`.

``schema/protocol.v1.json`` is this document, committed; a test checks they are equal.
Regenerate with ``bankhub schema > schema/protocol.v1.json``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .frames import SUBPROTOCOL, ClientFrame, ServerFrame

__all__ = ["protocol_schema"]


def protocol_schema() -> dict[str, Any]:
    (client, server), components = msgspec.json.schema_components(
        [ClientFrame, ServerFrame], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://bankhub.dev/schema/protocol.v1.json",
        "title": f"bankhub protocol v1 ({SUBPROTOCOL})",
        "description": "Frames on /v1/ws. client_frame: what clients send; server_frame: what the hub sends.",
        "$defs": {**components, "client_frame": client, "server_frame": server},
        "oneOf": [{"$ref": "#/$defs/client_frame"}, {"$ref": "#/$defs/server_frame"}],
    }
