"""The service widget's visitor tokens and partner origins (pure code: bankhub.widget)."""

from __future__ import annotations

import base64
import hmac
import json

import pytest

from bankhub import policy
from bankhub.models import Role, User
from bankhub.widget import origins, tokens
from bankhub_client.widget import mint_visitor_token

SECRET = "bhw_" + "k" * 43
PARTNER = "0b9a3c1e-7f2d-4c55-9a1b-2f6e8d4c3b21"
OTHER = "6f1d2e3c-4b5a-4978-8a6b-1c2d3e4f5a6b"
NOW = 1_767_225_600
MAX = 300


def _verify(token: str, partner_id: str = PARTNER, secret: str = SECRET, now: float = NOW) -> tokens.Claims:
    """What the hub does with a token (bankhub.actions.widget.exchange), minus the nonce store."""
    claims, signed, sig = tokens.parse(token)
    if not tokens.signature_ok([secret], signed, sig):
        raise tokens.TokenError("invalid_visitor_token", "signature", "bad signature")
    if claims.partner_id != partner_id:
        raise tokens.TokenError("invalid_visitor_token", "partner", "other partner")
    tokens.check_times(claims, now, MAX)
    return claims


def test_a_good_token_verifies_with_its_claims() -> None:
    token = tokens.mint(SECRET, PARTNER, "user-42", "Li Lei", now=NOW, ttl=120, nonce="n" * 20)
    claims = _verify(token)
    assert (claims.partner_id, claims.visitor_id, claims.name, claims.expires_at, claims.nonce) == (
        PARTNER, "user-42", "Li Lei", NOW + 120, "n" * 20,
    )


def test_the_sdk_mints_exactly_what_the_hub_mints() -> None:
    ours = tokens.mint(SECRET, PARTNER, "u:1", "张伟", now=NOW, ttl=60, nonce="abcdefghijklmnop")
    sdk = mint_visitor_token(SECRET, PARTNER, "u:1", "张伟", ttl=60, now=NOW, nonce="abcdefghijklmnop")
    assert ours == sdk
    assert _verify(sdk).name == "张伟"


@pytest.mark.parametrize(("now", "reason"), [(NOW + 121 + tokens.MAX_SKEW_SECONDS, "expired"), (NOW - tokens.MAX_SKEW_SECONDS - 1, "future")])
def test_an_expired_token_and_one_from_the_future_are_refused(now: int, reason: str) -> None:
    token = tokens.mint(SECRET, PARTNER, "user-42", "Li", now=NOW, ttl=120)
    with pytest.raises(tokens.TokenError) as refused:
        _verify(token, now=now)
    assert (refused.value.code, refused.value.reason) == ("visitor_token_expired", reason)


def test_the_clock_skew_bound_is_tolerated_both_ways() -> None:
    token = tokens.mint(SECRET, PARTNER, "user-42", "Li", now=NOW, ttl=120)
    _verify(token, now=NOW - tokens.MAX_SKEW_SECONDS)
    _verify(token, now=NOW + 120 + tokens.MAX_SKEW_SECONDS)


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    with pytest.raises(tokens.TokenError) as refused:
        _verify(tokens.mint(SECRET, PARTNER, "user-42", "Li", now=NOW, ttl=MAX + 1))
    assert refused.value.reason == "lifetime"


def _tamper(token: str, **changes: object) -> str:
    prefix, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{prefix}.{body}.{sig}"


@pytest.mark.parametrize("changes", [{"v": "someone-else"}, {"exp": NOW + 200}, {"n": "Admin"}, {"p": OTHER}])
def test_a_tampered_token_is_refused(changes: dict[str, object]) -> None:
    token = tokens.mint(SECRET, PARTNER, "user-42", "Li", now=NOW, ttl=120)
    with pytest.raises(tokens.TokenError) as refused:
        _verify(_tamper(token, **changes))
    assert (refused.value.code, refused.value.reason) == ("invalid_visitor_token", "signature")


def test_a_token_of_another_partner_or_under_another_secret_is_refused() -> None:
    theirs = tokens.mint(SECRET, OTHER, "user-42", "Li", now=NOW, ttl=120)
    with pytest.raises(tokens.TokenError) as refused:
        _verify(theirs)  # signed with a secret the hub holds for PARTNER, but naming OTHER
    assert refused.value.reason == "partner"
    wrong_key = tokens.mint("bhw_" + "x" * 43, PARTNER, "user-42", "Li", now=NOW, ttl=120)
    with pytest.raises(tokens.TokenError) as refused:
        _verify(wrong_key)
    assert refused.value.reason == "signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "bhw1.e30.AAAA",
        "bhw2." + "a" * 10 + "." + "b" * 43,
        "bhw1.not base64.x",
        "x" * 3000,
        tokens.mint(SECRET, PARTNER, "bad id with spaces", "Li", now=NOW),
        tokens.mint(SECRET, PARTNER, "user", "line\nbreak", now=NOW),
        tokens.mint(SECRET, PARTNER, "user", "Li", now=NOW, nonce="short"),
        tokens.mint(SECRET, PARTNER.upper(), "user", "Li", now=NOW),
    ],
)
def test_a_malformed_token_is_refused_before_any_key_is_used(token: str) -> None:
    with pytest.raises(tokens.TokenError) as refused:
        tokens.parse(token)
    assert (refused.value.code, refused.value.reason) == ("invalid_visitor_token", "malformed")


def test_signature_comparison_tries_every_secret_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = tokens.mint(SECRET, PARTNER, "user-42", "Li", now=NOW)
    _, signed, sig = tokens.parse(token)
    assert tokens.signature_ok(["bhw_wrong", SECRET], signed, sig)
    assert len(calls) == 2  # no early exit on the wrong one, and compare_digest for each


def test_origins_are_exact() -> None:
    assert origins.normalise("HTTPS://Shop.Example/") == "https://shop.example"
    assert origins.normalise("https://shop.example:8443") == "https://shop.example:8443"
    assert origins.normalise("http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    for bad in ("http://shop.example", "https://shop.example/path", "https://user@shop.example", "https://*.shop.example",
                "https://shop.example:443", "javascript:alert(1)", "https://shop.example?x", "null", "https://shop.example:99999"):
        with pytest.raises(origins.OriginError):
            origins.normalise(bad)
    allowed = ("https://shop.example",)
    assert origins.matches("https://shop.example", allowed)
    for other in ("https://shop.example.evil.test", "https://evil.shop.example", "http://shop.example", "https://shop.example:444",
                  "https://shop.example/", "null", None):
        assert not origins.matches(other, allowed)


def test_loopback_http_origins_are_honoured_only_in_development() -> None:
    registered = ["https://shop.example", "http://127.0.0.1:8765"]
    assert origins.honoured(registered, allow_loopback=False) == ("https://shop.example",)
    assert origins.honoured(registered, allow_loopback=True) == tuple(registered)


def _user(**kw: object) -> User:
    base: dict[str, object] = {"id": "u1", "username": "w.1", "display_name": "V", "role": Role.CUSTOMER, "org_id": "o"}
    return User(**{**base, **kw})  # type: ignore[arg-type]


def test_a_visitor_may_call_only_the_service_desk_routes_and_frames() -> None:
    visitor, customer = _user(visitor=True), _user()
    assert policy.may_call_route(visitor, "POST", "/v1/service/sessions").allowed
    assert policy.may_call_route(visitor, "POST", "/v1/ws-tickets").allowed
    for method, path in [("POST", "/v1/conversations"), ("GET", "/v1/conversations"), ("POST", "/v1/accounts/{account_id}/follow"),
                         ("GET", "/v1/inbox"), ("POST", "/v1/me/password"), ("POST", "/v1/sessions/refresh")]:
        decision = policy.may_call_route(visitor, method, path)
        assert (decision.allowed, decision.code) == (False, "forbidden"), (method, path)
        assert policy.may_call_route(customer, method, path).allowed
    assert policy.may_use_frame(visitor, "send").allowed and policy.may_use_frame(visitor, "sync").allowed
    assert not policy.may_use_frame(visitor, "read_notices").allowed and not policy.may_use_frame(visitor, "sync_inbox").allowed
    assert policy.may_use_frame(customer, "read_notices").allowed


def test_a_visitor_is_no_peer_and_no_customer_for_staff_decisions() -> None:
    visitor = _user(visitor=True)
    rm = _user(id="rm", username="rm.wang", role=Role.RM)
    assert not policy.may_open_direct(rm, visitor).allowed
    assert not policy.may_reassign_customer(_user(id="a", role=Role.HEAD_OFFICE_ADMIN), visitor, rm, [], []).allowed
    assert not policy.may_request_role_change(_user(id="a", role=Role.HEAD_OFFICE_ADMIN), visitor, Role.STAFF, []).allowed
    assert policy.may_enter_widget(True, visitor).allowed
    assert not policy.may_enter_widget(False, visitor).allowed
    assert not policy.may_enter_widget(True, _user()).allowed
    assert not policy.may_enter_widget(True, _user(visitor=True, disabled=True)).allowed
