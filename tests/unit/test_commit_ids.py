"""The group commit's per-message shortcuts read and make ids exactly as ``uuid.UUID`` does:
message ids as text (``uuid7_str``) and the associated data of a sealed body from id text
without UUID objects (``bankhub.bodies.associated_data``)."""

from __future__ import annotations

import time
import uuid

import pytest

from bankhub.bodies import associated_data
from bankhub.ids import uuid7, uuid7_str


def test_uuid7_str_is_a_canonical_time_ordered_version_7_uuid() -> None:
    before = time.time_ns() // 1_000_000
    made = [uuid7_str() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    for s in made:
        u = uuid.UUID(s)
        assert str(u) == s and u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= u.int >> 80 <= after
    assert len(set(made)) == len(made)
    assert uuid7().version == 7


@pytest.mark.parametrize(
    "text",
    [
        str(uuid.uuid4()),
        str(uuid.uuid4()).upper(),
        "{" + str(uuid.uuid4()) + "}",
        "urn:uuid:" + str(uuid.uuid4()),
        uuid.uuid4().hex,
        "12345678-1234-1234-1234-123456789abc",
    ],
)
def test_associated_data_reads_ids_as_uuid_does(text: str) -> None:
    other = str(uuid.uuid4())
    expected = b"bankhub/body/v1\x00" + uuid.UUID(text).bytes + uuid.UUID(other).bytes + (7).to_bytes(8, "big", signed=True)
    assert associated_data(text, other, 7) == expected
    assert associated_data(other, text, 7)[16 + 16 :][:16] == uuid.UUID(text).bytes


@pytest.mark.parametrize(
    "text",
    [
        "12345678-1234-1234-1234-12345678 abc",  # whitespace in the canonical shape: refused
        "12345678-1234-1234-1234-12345678_abc",  # an underscore: int() takes it, so uuid.UUID does
        "1234567g-1234-1234-1234-123456789abc",
        "12345678123412341234-123456789abc----",
        "not an id",
    ],
)
def test_odd_ids_read_as_uuid_reads_them(text: str) -> None:
    other = str(uuid.uuid4())
    try:
        expected: bytes | None = uuid.UUID(text).bytes
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            associated_data(text, other, 1)
    else:
        assert associated_data(text, other, 1)[16 : 16 + 16] == expected
