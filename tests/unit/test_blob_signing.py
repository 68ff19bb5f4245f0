"""The S3 blob store's request signing (AWS Signature Version 4), checked against AWS's own
published example and against botocore's signer (a test-only dependency, via moto)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from bankhub.blobs.s3 import EMPTY_SHA256, sigv4_headers

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WHEN = dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc)


def test_the_published_get_object_example() -> None:
    # "Example: GET Object" of the S3 API reference (Authenticating Requests: AWS Signature Version 4)
    headers = sigv4_headers(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9"},
        EMPTY_SHA256,
        access_key=AKID,
        secret_key=SECRET,
        region="us-east-1",
        now=WHEN,
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


@pytest.mark.parametrize("method,body", [("PUT", b"sealed bytes \x00\xff"), ("GET", b""), ("DELETE", b""), ("HEAD", b"")])
def test_the_same_signature_as_botocore(method: str, body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth  # type: ignore[import-untyped]
    from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    url = "http://127.0.0.1:9000/bucket/media/0193/01ab-cd/full"
    payload = hashlib.sha256(body).hexdigest()
    ours = sigv4_headers(
        method, url, {"content-type": "application/octet-stream"}, payload, access_key="AK", secret_key="SK", region="eu-west-1", now=WHEN
    )
    request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/octet-stream"})
    request.headers["X-Amz-Content-SHA256"] = payload
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    S3SigV4Auth(Credentials("AK", "SK"), "s3", "eu-west-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]


def test_a_changed_body_changes_the_signature() -> None:
    a = sigv4_headers("PUT", "http://h/b/k", {}, hashlib.sha256(b"a").hexdigest(), access_key="A", secret_key="S", region="r", now=WHEN)
    b = sigv4_headers("PUT", "http://h/b/k", {}, hashlib.sha256(b"b").hexdigest(), access_key="A", secret_key="S", region="r", now=WHEN)
    assert a["authorization"] != b["authorization"]
