"""The export builder's resources: files spooled to disk with their digests, a size cap, the
zip written to a file, and the sealed copy in chunks that open one at a time."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import io
import os
import tempfile
import tracemalloc
import zipfile

import pytest

from bankhub.compliance import export_format as fmt
from bankhub.compliance.export_sealing import (
    CHUNK_BYTES,
    ExportUnreadable,
    chunk_key,
    open_chunk,
    open_export,
    seal_chunk,
)
from bankhub.crypto.keyring import DataKey
from bankhub.crypto.signing import SigningKey

KEY = SigningKey("sig-test", b"\x01" * 32)
EXPORT = "0190b3c6-0000-7000-8000-0000000000ee"
CONV = "0190b3c6-0000-7000-8000-000000000001"
LI = fmt.Person("0190b3c6-0000-7000-8000-00000000000a", "c.li", "李雷", "customer")
WHEN = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)
MIB = 1 << 20


def _media(i: int) -> str:
    return f"0190b3c6-0000-7000-8000-{i:012x}"


def _fill(b: fmt.ExportBuilder, picture: bytes, n: int) -> None:
    stays = [fmt.Stay(LI.user_id, "c.li", "2026-12-01T00:00:00.000Z")]
    b.person(LI)
    for i in range(n):
        path = b.add_attachment(_media(i), "image/png", picture)
        created = f"2026-12-02T00:00:{i:02d}.000Z"
        b.add_message(
            fmt.MessageRecord(
                conversation_id=CONV, conversation_kind="direct", conversation_title=None, seq=i + 1, message_id=_media(1000 + i),
                sender=LI, created_at=created, kind="image", body={"kind": "image", "media_id": _media(i)},
                members_at_send=stays, attachments=[fmt.AttachmentRecord(_media(i), "image/png", path, len(picture))],
            )
        )
    b.add_conversation(fmt.ConversationRecord(CONV, "direct", None, "2026-12-01T00:00:00.000Z", stays))


def test_an_export_with_large_attachments_is_built_without_holding_it_in_memory() -> None:
    picture = os.urandom(2 * MIB)  # incompressible: the zip is as large as its attachments
    n = 16  # 32 MiB of attachments
    gc.collect()
    tracemalloc.start()
    try:
        with fmt.ExportBuilder(EXPORT) as b, tempfile.TemporaryFile() as out:
            _fill(b, picture, n)
            b.write(out, created_at=WHEN, scope={}, key=KEY)
            size = out.tell()
            _, peak = tracemalloc.get_traced_memory()
            out.seek(0)
            result = fmt.verify_export(io.BytesIO(out.read()).getvalue())
    finally:
        tracemalloc.stop()
    assert size > n * 2 * MIB and result.ok, result.problems
    assert result.counts["attachments"] == n
    # every file went to disk as it came (and the zip to a file): what memory held at its
    # peak is a small multiple of one attachment, not the export (the transcript references
    # each attachment instead of a base64 copy of it)
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_writing_to_a_file_gives_the_same_bytes_and_digests_as_finish() -> None:
    picture = os.urandom(1000)
    with fmt.ExportBuilder(EXPORT) as a, fmt.ExportBuilder(EXPORT) as b, tempfile.TemporaryFile() as out:
        _fill(a, picture, 3)
        _fill(b, picture, 3)
        a.write(out, created_at=WHEN, scope={}, key=KEY)
        out.seek(0)
        assert out.read() == b.finish(created_at=WHEN, scope={}, key=KEY)
    with fmt.ExportBuilder(EXPORT) as c:
        _fill(c, picture, 3)
        files = c.files()
        data = c.finish(created_at=WHEN, scope={}, key=KEY)
    manifest = fmt.read_export(data, fmt.MANIFEST).decode()
    for path, body in files.items():
        assert hashlib.sha256(body).hexdigest() in manifest, path


def test_the_size_cap_stops_a_build_that_grows_past_it() -> None:
    with fmt.ExportBuilder(EXPORT, max_bytes=5000) as b:
        b.add_attachment(_media(1), "image/png", b"x" * 3000)
        with pytest.raises(fmt.ExportTooLarge):
            b.add_attachment(_media(2), "image/png", b"y" * 3000)


def test_the_work_directory_is_removed() -> None:
    b = fmt.ExportBuilder(EXPORT)
    b.add_attachment(_media(1), "image/png", b"x")
    where = b._dir  # noqa: SLF001 - the test checks the builder leaves nothing on disk
    assert where.exists()
    b.close()
    assert not where.exists()


def test_a_message_after_its_transcript_is_refused() -> None:
    with fmt.ExportBuilder(EXPORT) as b:
        _fill(b, b"x", 1)
        with pytest.raises(ValueError):
            _fill(b, b"x", 1)


def test_sealed_chunks_open_one_at_a_time_and_only_in_their_place() -> None:
    key = DataKey(os.urandom(32))
    data = os.urandom(2 * CHUNK_BYTES + 5)
    parts = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    sealed = [seal_chunk(key, EXPORT, i, i == len(parts) - 1, p) for i, p in enumerate(parts)]
    assert [open_chunk(key, EXPORT, i, i == len(parts) - 1, s) for i, s in enumerate(sealed)] == parts
    # the same form the one-blob sealing uses
    assert b"".join(open_export(key, EXPORT, b"".join(sealed))) == data
    with pytest.raises(ExportUnreadable):
        open_chunk(key, EXPORT, 1, False, sealed[0])  # moved
    with pytest.raises(ExportUnreadable):
        open_chunk(key, EXPORT, 1, True, sealed[1])  # the last one dropped: chunk 1 is not the last
    with pytest.raises(ExportUnreadable):
        open_chunk(key, "0190b3c6-0000-7000-8000-0000000000ef", 0, False, sealed[0])  # another export's
    damaged = bytearray(sealed[2])
    damaged[-1] ^= 1
    with pytest.raises(ExportUnreadable):
        open_chunk(key, EXPORT, 2, True, bytes(damaged))
    with pytest.raises(ValueError):
        seal_chunk(key, EXPORT, 0, True, b"x" * (CHUNK_BYTES + 1))
    assert chunk_key(f"exports/{EXPORT}/t", 7) == f"exports/{EXPORT}/t/00000007"


def test_a_zip_entry_copied_from_disk_is_the_same_as_one_written_from_bytes(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "f"
    path.write_bytes(b"hello " * 1000)
    a, b = io.BytesIO(), io.BytesIO()
    fmt.write_zip_to(a, [("f.txt", path)])
    fmt.write_zip_to(b, [("f.txt", b"hello " * 1000)])
    assert a.getvalue() == b.getvalue()
    with zipfile.ZipFile(a) as z:
        assert z.read("f.txt") == b"hello " * 1000
