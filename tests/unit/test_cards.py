"""Verified service cards, pure parts: the canonical encoding, Ed25519 sign/verify, forged,
altered and moved cards, the link allow-list, the account-class gate and who may send."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bankhub.crypto.signing import SigningKey, b64url, new_seed, public_jwk, unb64url, verify
from bankhub.models import Membership, Role, User
from bankhub.policy import may_send_card
from bankhub.protocol.cards import canonical, card_payload, card_problem, class_allowed, link_allowed, link_host, notice_payload
from bankhub.protocol.frames import Body, ClientFrame, MessageBody, SignedCardBody

DOMAINS = ("icbc.com.cn",)
CONV, MID, SENDER = "0190f5a0-0000-7000-8000-000000000001", "0190f5a0-0000-7000-8000-000000000002", "0190f5a0-0000-7000-8000-000000000003"
BODY: dict[str, Any] = {
    "kind": "card",
    "template": "bill_reminder",
    "title": "信用卡账单 Card bill",
    "fields": [{"label": "应还 Due", "value": "¥1,280.00 \"now\""}],
    "actions": [{"label": "Pay", "url": "bankhub://cards/pay"}],
}


def test_canonical_encoding_is_jcs_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": ["x", {"d": "é\n\u2028", "c": None}]}) == '{"a":["x",{"c":null,"d":"é\\n\u2028"}],"b":1}'.encode()
    # the exact bytes a card signature covers: the SDKs must produce the same
    expected = (
        '{"body":{"actions":[{"label":"Pay","url":"bankhub://cards/pay"}],"fields":[{"label":"应还 Due",'
        '"value":"¥1,280.00 \\"now\\""}],"kind":"card","template":"bill_reminder","title":"信用卡账单 Card bill"},'
        f'"conversation_id":"{CONV}","ctx":"bankhub.card.v1","key_id":"k1","message_id":"{MID}",'
        f'"sender_id":"{SENDER}","ts":1700000000000}}'
    ).encode()
    assert card_payload("k1", CONV, MID, SENDER, 1_700_000_000_000, {**BODY, "signature": {"key_id": "x", "sig": "y"}}) == expected


def test_sign_and_verify_and_every_forgery_fails() -> None:
    key = SigningKey("sig-test", new_seed())
    sig = key.sign(card_payload(key.key_id, CONV, MID, SENDER, 1, BODY))
    assert sig["key_id"] == "sig-test" and len(unb64url(sig["sig"])) == 64
    assert verify(key.public_key, card_payload("sig-test", CONV, MID, SENDER, 1, BODY), sig["sig"])
    forgeries = [
        card_payload("sig-test", MID, MID, SENDER, 1, BODY),  # moved into another conversation
        card_payload("sig-test", CONV, CONV, SENDER, 1, BODY),  # given another message id
        card_payload("sig-test", CONV, MID, CONV, 1, BODY),  # another sender
        card_payload("sig-test", CONV, MID, SENDER, 2, BODY),  # another time
        card_payload("sig-other", CONV, MID, SENDER, 1, BODY),  # claimed under another key id
        card_payload("sig-test", CONV, MID, SENDER, 1, {**BODY, "title": "信用卡账单 Card bil1"}),  # altered
        card_payload("sig-test", CONV, MID, SENDER, 1, {**BODY, "classes": ["I"]}),  # a gate added
        notice_payload("sig-test", CONV, MID, BODY),  # a card signature passed off as a notice's
    ]
    for payload in forgeries:
        assert not verify(key.public_key, payload, sig["sig"])
    other = SigningKey("sig-test", new_seed())  # the same key id, another key (a look-alike hub)
    assert not verify(other.public_key, card_payload("sig-test", CONV, MID, SENDER, 1, BODY), sig["sig"])
    raw = unb64url(sig["sig"])
    flipped = b64url(raw[:-1] + bytes([raw[-1] ^ 1]))  # one bit of the signature changed, whatever its value
    for bad in ("", "!!", sig["sig"] + "=", b64url(b"\0" * 63), flipped):
        assert not verify(key.public_key, card_payload("sig-test", CONV, MID, SENDER, 1, BODY), bad)
    jwk = public_jwk(key.key_id, key.public_key)
    assert (jwk["kty"], jwk["crv"], jwk["kid"], unb64url(jwk["x"])) == ("OKP", "Ed25519", "sig-test", key.public_key)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("bankhub://wealth/products/7d", True),
        ("https://icbc.com.cn/x", True),
        ("https://www.icbc.com.cn/x?y=1#z", True),
        ("https://WWW.ICBC.COM.CN./x", False),  # uppercase and a trailing dot: not a plain host
        ("https://icbc.com.cn.evil.example/x", False),
        ("https://evilicbc.com.cn/x", False),
        ("https://www.icbc.com.cn@evil.example/x", False),
        ("https://user@www.icbc.com.cn/x", False),
        ("https://www.icbc.com.cn:8443/x", False),
        ("http://www.icbc.com.cn/x", False),
        ("javascript:alert(1)", False),
        ("https:///x", False),
        ("https://[::1/x", False),
    ],
)
def test_link_allow_list(url: str, ok: bool) -> None:
    assert link_allowed(url, DOMAINS) is ok


# URLs a naive parser (urlsplit) and a browser (WHATWG URL) read differently, or that hide the host
TRICKY_LINKS = [
    "https://evil.example\\.icbc.com.cn/x",  # a browser reads "\\" as "/": opens evil.example
    "https://evil.example\\@www.icbc.com.cn/x",
    "https:/\\evil.example/.icbc.com.cn",
    "https:\\\\evil.example\\www.icbc.com.cn",
    "https:evil.example/.icbc.com.cn",
    "https:/www.icbc.com.cn/x",
    "https://www.icbc.com.cn\\x",
    "https://evil.example%2eicbc.com.cn/x",
    "https://evil%2Eexample.icbc.com.cn/x",
    "https://www%2eicbc.com.cn/x",
    "https://www.icbc.com.cn%2F@evil.example/x",
    "https://evil.example@www.icbc.com.cn/x",
    "https://www.icbc.com.cn@evil.example/x",
    "https://:@www.icbc.com.cn/x",
    "https://www.icbc.com.cn:/x",
    "https://www.icbc.com.cn:443/x",
    "https://evil.example\u3002icbc.com.cn/x",  # ideographic full stop
    "https://evil.example\uff0eicbc.com.cn/x",  # fullwidth full stop
    "https://www.icbc.com.cn\uff0e/x",
    "https://www.icbc.com.cn./x",
    "https://www.icbc.com.cn../x",
    "https://.icbc.com.cn/x",
    "https://www..icbc.com.cn/x",
    "https://www.ICBC.com.cn/x",
    "HTTPS://www.icbc.com.cn/x",
    "Https://www.icbc.com.cn/x",
    "https://www.icbc.com.cn\t.evil.example/x",
    "https://evil.example\t.icbc.com.cn/x",
    "https://evil.example\n.icbc.com.cn/x",
    "https://www.icbc.com.cn/x\n",
    "https:// www.icbc.com.cn/x",
    "https://www.icbc.com.cn /x",
    "https://\u0456cbc.com.cn/x",  # a Cyrillic look-alike, not in punycode
    "https://www.\u5de5\u5546.icbc.com.cn/x",
    "https://xn--icbc-abc.com.cn/x",  # punycode of another domain
    "https://[::1]/x",
    "https://127.0.0.1/x",
    "https://0x7f000001/x",
    "https://-www.icbc.com.cn/x",
    "https://www-.icbc.com.cn/x",
    "https://www_x.icbc.com.cn/x",
    "https://www.icbc.com.cn" + "a" * 2048,
    "https://www.icbc.com.cn/" + "a" * 2048,
    "https://",
    "https://#.icbc.com.cn",
    "https://?.icbc.com.cn",
    "https:///www.icbc.com.cn",
    "//www.icbc.com.cn/x",
    "http://www.icbc.com.cn/x",
    "bankhub:\\\\evil.example",
    "bankhub://evil.example\\x",
    "bankhub://WEALTH/x",
    "bankhub://wealth\t/x",
    "",
]


@pytest.mark.parametrize("url", TRICKY_LINKS)
def test_tricky_links_are_refused(url: str) -> None:
    assert not link_allowed(url, DOMAINS)
    assert card_problem(url, [], DOMAINS) is not None  # the image too
    assert card_problem(None, [url], DOMAINS) is not None


@pytest.mark.parametrize(
    "url",
    [
        "https://icbc.com.cn",
        "https://icbc.com.cn?x=1",
        "https://icbc.com.cn#top",
        "https://m.icbc.com.cn/a%20b?q=%E4%B8%AD#x",  # percent-escapes after the host are fine
        "https://xn--fiqs8s.icbc.com.cn/x",  # an IDN subdomain, in punycode
        "https://a-1.b2.icbc.com.cn/x/y@z",  # "@" in the path is not userinfo
    ],
)
def test_plain_links_on_the_allow_list_pass(url: str) -> None:
    assert link_allowed(url, DOMAINS)
    assert card_problem(url, [url], DOMAINS) is None


def test_link_host_reads_the_host_as_a_browser_does() -> None:
    assert link_host("https://www.icbc.com.cn/x?y#z") == "www.icbc.com.cn"
    assert link_host("https://evil.example\\.icbc.com.cn/x") is None
    assert link_host("bankhub://wealth/x", "bankhub") == "wealth"
    assert link_host("https://evil.example/x") == "evil.example"  # the allow-list is link_allowed's part


def test_card_problem_checks_image_and_every_action() -> None:
    assert card_problem(None, ["bankhub://a", "https://www.icbc.com.cn/b"], DOMAINS) is None
    assert card_problem("bankhub://img", [], DOMAINS) is not None  # an image is https only
    assert card_problem("https://cdn.evil.example/a.png", [], DOMAINS) is not None
    assert card_problem(None, ["bankhub://a", "https://evil.example/b"], DOMAINS) is not None


def test_account_class_gate() -> None:
    assert class_allowed([], None) and class_allowed([], "III")
    assert class_allowed(["I"], "I") and not class_allowed(["I"], "II") and not class_allowed(["I", "II"], None)


def _user(role: Role, disabled: bool = False) -> User:
    return User(id="u1", username="u", display_name="U", role=role, org_id="o", disabled=disabled)


def test_only_rms_and_agents_who_are_members_send_cards() -> None:
    member = Membership("c1", "direct", "u1", "member", 0, 0)
    assert may_send_card(_user(Role.RM), member).allowed and may_send_card(_user(Role.AGENT), member).allowed
    for role in (Role.CUSTOMER, Role.STAFF, Role.BRANCH_ADMIN, Role.HEAD_OFFICE_ADMIN, Role.COMPLIANCE):
        assert may_send_card(_user(role), member).code == "forbidden", role
    assert may_send_card(_user(Role.RM), None).code == "not_found"
    assert may_send_card(_user(Role.RM, disabled=True), member).code == "forbidden"


def test_a_client_cannot_send_a_signature_but_a_stored_card_carries_one() -> None:
    frame = {"type": "send", "id": "1", "conversation_id": CONV, "client_msg_id": "m", "body": BODY}
    msgspec.json.decode(msgspec.json.encode(frame), type=ClientFrame)
    with pytest.raises(msgspec.ValidationError, match="signature"):
        msgspec.json.decode(msgspec.json.encode({**frame, "body": {**BODY, "signature": {"key_id": "k", "sig": "s"}}}), type=ClientFrame)
    with pytest.raises(msgspec.ValidationError):  # bounded: at most 3 actions
        msgspec.json.decode(msgspec.json.encode({**BODY, "actions": BODY["actions"] * 4}), type=Body)
    stored = msgspec.json.decode(msgspec.json.encode({**BODY, "signature": {"key_id": "k", "sig": "s"}}), type=MessageBody)
    assert isinstance(stored, SignedCardBody) and stored.signature is not None


@pytest.mark.parametrize(
    "url",
    ["https://evil.example\\.icbc.com.cn/x", "https://www.icbc.com.cn/x\\y", "https://a@www.icbc.com.cn/", "https://www.icbc.com.cn:1/",
     "https://evil%2eicbc.com.cn/", "https://WWW.icbc.com.cn/", "https://www.icbc.com.cn/" + "a" * 2048],
)
def test_the_frame_schema_refuses_what_a_browser_reads_as_another_host(url: str) -> None:
    from bankhub.protocol.frames import CardAction, CardBody

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"label": "Pay", "url": url}, CardAction)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"template": "offer", "title": "t", "image_url": url}, CardBody)
    assert msgspec.convert({"label": "Pay", "url": "https://www.icbc.com.cn/x?y=%20#z"}, CardAction).url
    assert msgspec.convert({"template": "offer", "title": "t", "image_url": "https://www.icbc.com.cn/a.png"}, CardBody).image_url
