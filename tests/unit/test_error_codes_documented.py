"""The stable error codes of docs/protocol.md and ``ErrorCode`` are the same set."""

from __future__ import annotations

import re
from pathlib import Path

from bankhub import policy
from bankhub.models import Role, User
from bankhub.protocol.frames import ErrorCode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _documented() -> set[str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Error codes (stable)", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)) - {"code"}  # less the header row


def _constants() -> set[str]:
    return {v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str)}


def test_every_documented_error_code_is_an_error_code_constant() -> None:
    documented = _documented()
    assert {"media_not_ready", "media_rejected", "gone"} <= documented
    assert documented == _constants()


def test_the_media_refusals_use_the_constants() -> None:
    li = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1")
    common = {"uploader_id": "c1", "media_conversation_id": "conv", "conversation_id": "conv"}
    assert policy.may_attach_media(li, state="quarantined", **common).code == ErrorCode.MEDIA_NOT_READY == "media_not_ready"
    assert policy.may_attach_media(li, state="rejected", **common).code == ErrorCode.MEDIA_REJECTED == "media_rejected"
