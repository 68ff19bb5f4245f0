"""A blob store in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, ...), over httpx.

Path-style requests (``<endpoint>/<bucket>/<key>``, which every S3-compatible server
takes) signed with AWS Signature Version 4 (:func:`sigv4_headers`, written here from the
published algorithm: the hub does not depend on boto). The payload is hashed into the
signature (``x-amz-content-sha256``), so a body altered in transit is refused by the
server. Used operations: PutObject, GetObject, HeadObject, DeleteObject, and CreateBucket
(:meth:`S3BlobStore.create_bucket`, for set-up and tests).

A network error or a 500/502/503/504 is retried (4 attempts in all, with jittered backoff,
as S3 asks of its clients). What still fails — or a refusal (403: wrong keys or clock) — is
:class:`~bankhub.blobs.base.BlobUnavailable` naming the operation and status only (never
the response body, which can quote the request).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import random
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import httpx

from .base import BlobNotFound, BlobUnavailable, check_key

__all__ = ["S3BlobStore", "sigv4_headers", "EMPTY_SHA256"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ATTEMPTS = 4
_BACKOFF = 0.05  # seconds before the first retry; doubled for each next one, jittered
_RETRIED = frozenset({500, 502, 503, 504})
_ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX (upper case), as SigV4 wants
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def sigv4_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str = "s3",
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The headers to send with a request: ``headers`` plus ``host``, ``x-amz-date``,
    ``x-amz-content-sha256`` and ``authorization`` (AWS Signature Version 4; every header
    given is signed). ``url``'s path must already be URI-encoded as it will be sent."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    parts = urlsplit(url)
    out = {k.lower(): v for k, v in headers.items()}
    out["host"] = parts.netloc
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_sha256
    query_pairs = []
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        query_pairs.append((name, value))
    canonical_query = "&".join(f"{n}={v}" for n, v in sorted(query_pairs))
    signed = sorted(out)
    canonical_headers = "".join(f"{name}:{' '.join(out[name].split())}\n" for name in signed)
    signed_headers = ";".join(signed)
    canonical_request = "\n".join(
        [method.upper(), parts.path or "/", canonical_query, canonical_headers, signed_headers, payload_sha256]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([_ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode("utf-8"), date), region), service), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out["authorization"] = f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    return out


class S3BlobStore:
    """See the module docstring."""

    name = "s3"

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        region: str,
        access_key: str,
        secret_key: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    def _url(self, key: str | None) -> str:
        path = "/" + _uri_encode(self.bucket, keep_slash=False)
        if key is not None:
            path += "/" + _uri_encode(check_key(key), keep_slash=True)
        return self.endpoint + path

    async def _request(self, op: str, method: str, key: str | None, body: bytes = b"", extra: Mapping[str, str] | None = None) -> httpx.Response:
        url = self._url(key)
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        failure = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                # S3 asks clients to retry 500/503 (InternalError, SlowDown) with backoff
                await asyncio.sleep(_BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random()))
            # signed afresh each attempt: x-amz-date must stay within the server's clock skew
            headers = sigv4_headers(
                method,
                url,
                dict(extra or {}),
                payload_hash,
                access_key=self._access_key,
                secret_key=self._secret_key,
                region=self.region,
            )
            try:
                response = await self._http.request(method, url, headers=headers, content=body if body else None)
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
                continue
            if response.status_code not in _RETRIED:
                return response
            failure = f"HTTP {response.status_code}"
        raise BlobUnavailable(f"s3 {op}: {failure} after {_ATTEMPTS} attempts")

    @staticmethod
    def _fail(op: str, response: httpx.Response) -> BlobUnavailable:
        return BlobUnavailable(f"s3 {op}: HTTP {response.status_code}")

    async def create_bucket(self) -> None:
        """Create the bucket (an existing bucket of ours is fine)."""
        extra: dict[str, str] = {}
        body = b""
        if self.region != "us-east-1":
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{self.region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
            extra["content-type"] = "application/xml"
        r = await self._request("CreateBucket", "PUT", None, body, extra)
        if r.status_code not in (200, 409) or (r.status_code == 409 and b"BucketAlreadyOwnedByYou" not in r.content):
            raise self._fail("CreateBucket", r)

    async def put(self, key: str, data: bytes) -> None:
        data = bytes(data)
        r = await self._request("PutObject", "PUT", key, data, {"content-type": "application/octet-stream"})
        if r.status_code != 200:
            raise self._fail("PutObject", r)

    async def get(self, key: str) -> bytes:
        r = await self._request("GetObject", "GET", key)
        if r.status_code == 404:
            raise BlobNotFound(key)
        if r.status_code != 200:
            raise self._fail("GetObject", r)
        return r.content

    async def delete(self, key: str) -> None:
        r = await self._request("DeleteObject", "DELETE", key)
        if r.status_code not in (200, 204, 404):
            raise self._fail("DeleteObject", r)

    async def exists(self, key: str) -> bool:
        r = await self._request("HeadObject", "HEAD", key)
        if r.status_code == 404:
            return False
        if r.status_code != 200:
            raise self._fail("HeadObject", r)
        return True

    async def close(self) -> None:
        await self._http.aclose()
