"""One conformance test for every blob store: the local directory and S3-compatible storage.

The S3 store talks to moto's S3 server (``ThreadedMotoServer``) on 127.0.0.1 and a free
port: real HTTP, real SigV4-signed requests from the hub's own client (no boto in the hub).
The signing itself is checked against AWS's published example and botocore in
``tests/unit/test_blob_signing.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bankhub.blobs import BlobNotFound, BlobStore, BlobUnavailable, InvalidBlobKey, LocalBlobStore, S3BlobStore, make_blob_store
from bankhub.settings import Settings


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


_BUCKETS = iter(range(10_000))


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        blobs: BlobStore = LocalBlobStore(tmp_path / "blobs")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s3 = S3BlobStore(
            endpoint, f"bankhub-test-{next(_BUCKETS)}", region="eu-west-1", access_key="AKIDEXAMPLE", secret_key="secret-example"
        )
        await s3.create_bucket()
        blobs = s3
    yield blobs
    await blobs.close()


async def test_what_is_put_is_got_back_byte_for_byte(store: BlobStore) -> None:
    data = os.urandom(1024 * 1024 + 7)  # not a multiple of any chunk size
    await store.put("media/a/b/full", data)
    assert await store.get("media/a/b/full") == data
    assert await store.exists("media/a/b/full")


async def test_a_put_replaces_what_was_there(store: BlobStore) -> None:
    await store.put("k/one", b"first")
    await store.put("k/one", b"second, longer")
    assert await store.get("k/one") == b"second, longer"


async def test_an_empty_blob_is_a_blob(store: BlobStore) -> None:
    await store.put("k/empty", b"")
    assert await store.get("k/empty") == b""
    assert await store.exists("k/empty")


async def test_a_missing_key_is_not_found(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.get("k/missing")
    assert not await store.exists("k/missing")


async def test_delete_removes_and_is_idempotent(store: BlobStore) -> None:
    await store.put("k/gone", b"x")
    await store.delete("k/gone")
    await store.delete("k/gone")
    assert not await store.exists("k/gone")
    with pytest.raises(BlobNotFound):
        await store.get("k/gone")


async def test_keys_are_separate(store: BlobStore) -> None:
    await store.put("k/a", b"a")
    await store.put("k/a.b", b"ab")
    await store.put("k/a/b", b"a/b")
    assert [await store.get(k) for k in ("k/a", "k/a.b", "k/a/b")] == [b"a", b"ab", b"a/b"]


@pytest.mark.parametrize("key", ["", "../etc/passwd", "a/../../b", "/abs", "a//b", "a/./b", "a b", "a\\b", "a/b\x00", "ä", "x" * 600])
async def test_unsafe_keys_are_refused_before_any_io(store: BlobStore, key: str) -> None:
    for call in (store.get(key), store.exists(key), store.delete(key), store.put(key, b"x")):
        with pytest.raises(InvalidBlobKey):
            await call


async def test_concurrent_writers_of_one_key_leave_one_whole_value(store: BlobStore) -> None:
    values = [bytes([i]) * 200_000 for i in range(8)]
    await asyncio.gather(*(store.put("k/race", v) for v in values))
    assert await store.get("k/race") in values


async def test_make_blob_store_follows_the_settings(tmp_path: Path, moto_endpoint: str) -> None:
    local = make_blob_store(Settings(database_url="postgresql://x/y", media_dir=str(tmp_path)))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path.resolve()
    s3 = make_blob_store(
        Settings(
            database_url="postgresql://x/y",
            media_blob_backend="s3",
            media_s3_endpoint=moto_endpoint,
            media_s3_bucket="b",
            media_s3_access_key="a",
            media_s3_secret_key="s",
        )
    )
    assert isinstance(s3, S3BlobStore)
    await s3.close()
    with pytest.raises(ValueError, match="BANKHUB_MEDIA_S3_BUCKET"):
        make_blob_store(Settings(database_url="postgresql://x/y", media_blob_backend="s3"))


async def test_an_unreachable_s3_is_unavailable_not_a_crash() -> None:
    s3 = S3BlobStore("http://127.0.0.1:9", "b", region="us-east-1", access_key="a", secret_key="s", timeout=2)
    try:
        with pytest.raises(BlobUnavailable):
            await s3.put("k/x", b"x")
        with pytest.raises(BlobUnavailable):
            await s3.get("k/x")
    finally:
        await s3.close()


async def test_local_files_are_private_and_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.put("m/c/full", b"sealed")
    path = tmp_path / "blobs" / "m" / "c" / "full~"
    assert path.read_bytes() == b"sealed"
    assert path.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["full~"]
