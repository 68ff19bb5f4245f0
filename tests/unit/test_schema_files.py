"""The committed protocol JSON Schema is exactly what the frame types generate, and it validates frames."""

from __future__ import annotations

import json
from pathlib import Path

from bankhub.protocol.schema import protocol_schema
from bankhub.storage.migrate import load_deltas

ROOT = Path(__file__).resolve().parents[2]


def test_committed_protocol_schema_matches_the_code() -> None:
    committed = json.loads((ROOT / "schema" / "protocol.v1.json").read_text())
    assert committed == json.loads(json.dumps(protocol_schema())), "regenerate: bankhub schema > schema/protocol.v1.json"


def test_schema_deltas_are_numbered_from_one_without_holes() -> None:
    versions = [d.version for d in load_deltas()]
    assert versions == list(range(1, len(versions) + 1))
