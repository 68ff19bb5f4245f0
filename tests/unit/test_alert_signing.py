"""The request signature of calling systems: exact canonical bytes, verification, header checks."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankhub.alerts import signing
from bankhub_client import signing as sdk_signing

BODY = b'{"recipient":"c.li"}'


def test_the_canonical_request_is_exactly_the_documented_lines() -> None:
    got = signing.canonical_request("post", "/v1/notifications", "", "1767225600", "n" * 16, "core-banking", "txn-1", BODY)
    assert got == (
        b"BANKHUB-HMAC-SHA256\nPOST\n/v1/notifications\n1767225600\nnnnnnnnnnnnnnnnn\ncore-banking\ntxn-1\n"
        + hashlib.sha256(BODY).hexdigest().encode()
    )
    with_query = signing.canonical_request("GET", "/v1/notifications/x", "a=1", "1", "n" * 16, "s1", None, b"")
    assert with_query.split(b"\n")[2] == b"/v1/notifications/x?a=1" and with_query.split(b"\n")[6] == b""


def test_the_signature_is_hmac_sha256_keyed_with_the_secret_text() -> None:
    canonical = b"x"
    assert signing.signature("bhs_secret", canonical) == "v1=" + hmac.new(b"bhs_secret", canonical, hashlib.sha256).hexdigest()


text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(method=st.sampled_from(["GET", "POST"]), path=text, query=st.text(max_size=20), ts=st.integers(0, 10**10), nonce=text, system=text, key=st.none() | text, body=st.binary(max_size=200))
def test_the_sdk_signs_exactly_as_the_hub_verifies(method: str, path: str, query: str, ts: int, nonce: str, system: str, key: str | None, body: bytes) -> None:
    server = signing.canonical_request(method, path, query, str(ts), nonce, system, key, body)
    client = sdk_signing.canonical_request(method, path, query, str(ts), nonce, system, key, body)
    assert server == client
    assert signing.verify(["bhs_k"], server, sdk_signing.signature("bhs_k", client)[3:])


def test_signed_headers_of_the_sdk_pass_the_hubs_checks() -> None:
    h = sdk_signing.signed_headers("bhs_k", "core-banking", "POST", "https://hub.example/v1/notifications?x=1", BODY, idempotency_key="k1", timestamp=100, nonce="abcdefghijklmnop")
    parsed = signing.parse_headers(h)
    assert (parsed.system, parsed.timestamp, parsed.nonce, parsed.idempotency_key) == ("core-banking", "100", "abcdefghijklmnop", "k1")
    canonical = signing.canonical_request("POST", "/v1/notifications", "x=1", "100", parsed.nonce, parsed.system, "k1", BODY)
    assert signing.verify(["other", "bhs_k"], canonical, parsed.signature)  # any of the secrets
    assert not signing.verify(["other"], canonical, parsed.signature)
    assert not signing.verify([], canonical, parsed.signature)
    tampered = signing.canonical_request("POST", "/v1/notifications", "x=1", "100", parsed.nonce, parsed.system, "k2", BODY)
    assert not signing.verify(["bhs_k"], tampered, parsed.signature)  # the idempotency key is signed too


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"x-bankhub-signature": None}, "signature_required"),
        ({"x-bankhub-nonce": None}, "signature_required"),
        ({"x-bankhub-system": "Core Banking"}, "invalid_signature"),
        ({"x-bankhub-timestamp": "12.5"}, "invalid_signature"),
        ({"x-bankhub-nonce": "short"}, "invalid_signature"),
        ({"x-bankhub-nonce": "has space in it!!!!"}, "invalid_signature"),
        ({"x-bankhub-signature": "v1=" + "A" * 64}, "invalid_signature"),
        ({"x-bankhub-signature": "v2=" + "a" * 64}, "invalid_signature"),
        ({"idempotency-key": "has space"}, "invalid_request"),
        ({"idempotency-key": "x" * 129}, "invalid_request"),
    ],
)
def test_malformed_headers_are_refused_with_their_code(change: dict[str, str | None], code: str) -> None:
    h = {
        "x-bankhub-system": "core-banking",
        "x-bankhub-timestamp": "100",
        "x-bankhub-nonce": "abcdefghijklmnop",
        "x-bankhub-signature": "v1=" + "a" * 64,
        "idempotency-key": "k",
    }
    for k, v in change.items():
        if v is None:
            h.pop(k)
        else:
            h[k] = v
    with pytest.raises(signing.SignatureError) as info:
        signing.parse_headers(h)
    assert info.value.code == code


def test_the_timestamp_window_is_300_seconds_either_way() -> None:
    signing.check_timestamp("1000", 1300)
    signing.check_timestamp("1300", 1000)
    for ts, now in (("1000", 1301), ("1301", 1000)):
        with pytest.raises(signing.SignatureError) as info:
            signing.check_timestamp(ts, now)
        assert info.value.code == "stale_request"


def test_verify_which_names_the_secret_that_matched() -> None:
    canonical = signing.canonical_request("POST", "/v1/notifications", "", "1000", "n" * 16, "core", "k", b"{}")
    old, new = "bhs_old-secret", "bhs_new-secret"
    sig = signing.signature(new, canonical)[3:]
    assert signing.verify_which([old, new], canonical, sig) == 1
    assert signing.verify_which([new, old], canonical, sig) == 0
    assert signing.verify_which([old], canonical, sig) is None
    assert signing.verify_which([], canonical, sig) is None
    assert signing.verify_which([new], canonical, "0" * 64) is None
