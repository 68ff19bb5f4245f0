"""The committed protocol JSON Schema is exactly what the frame types generate, and it validates frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bankhub.protocol.schema import normalise_descriptions, protocol_schema, protocol_schema_text
from bankhub.storage.migrate import load_deltas

ROOT = Path(__file__).resolve().parents[2]


def test_committed_protocol_schema_matches_the_code() -> None:
    """What the README says: ``bankhub schema > schema/protocol.v1.json`` reproduces the file byte for byte."""
    committed = (ROOT / "schema" / "protocol.v1.json").read_bytes()
    printed = subprocess.run(
        [sys.executable, "-m", "bankhub.cli", "schema"], check=True, capture_output=True, cwd=ROOT
    ).stdout
    assert printed == committed, "regenerate: bankhub schema > schema/protocol.v1.json"


def test_descriptions_do_not_depend_on_how_a_docstring_was_dedented() -> None:
    """Two msgspec releases dedent docstrings differently; the document must not change with them."""
    indented = {"description": "First line.\n\n    Second paragraph,\n    indented.", "x": [{"description": "  one"}]}
    flush = {"description": "First line.\n\nSecond paragraph,\nindented.", "x": [{"description": "one"}]}
    assert normalise_descriptions(indented) == normalise_descriptions(flush) == flush
    assert json.loads(protocol_schema_text()) == protocol_schema()


def test_schema_deltas_are_numbered_from_one_without_holes() -> None:
    versions = [d.version for d in load_deltas()]
    assert versions == list(range(1, len(versions) + 1))
