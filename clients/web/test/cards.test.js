// cards.js: the canonical encoding (byte for byte what the hub signs), and Ed25519
// verification with WebCrypto of a genuine, a moved, an altered and a wrongly keyed card.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SigningKeys, canonicalJson, cardActionsAllowed, cardLinkAllowed, cardLinkHost, cardPayload, fromBase64Url, noticePayload, verifyCard, verifyNotice } from "../src/cards.js";
import * as entry from "../src/bankhub.js";

const CONV = "0190f5a0-0000-7000-8000-000000000001";
const MID = "0190f5a0-0000-7000-8000-000000000002";
const SENDER = "0190f5a0-0000-7000-8000-000000000003";
const BODY = {
  kind: "card",
  template: "bill_reminder",
  title: "信用卡账单 Card bill",
  fields: [{ label: "应还 Due", value: '¥1,280.00 "now"' }],
  actions: [{ label: "Pay", url: "bankhub://cards/pay" }],
};

test("the canonical payload is the one the hub signs (tests/unit/test_cards.py)", () => {
  const expected =
    '{"body":{"actions":[{"label":"Pay","url":"bankhub://cards/pay"}],"fields":[{"label":"应还 Due",' +
    '"value":"¥1,280.00 \\"now\\""}],"kind":"card","template":"bill_reminder","title":"信用卡账单 Card bill"},' +
    `"conversation_id":"${CONV}","ctx":"bankhub.card.v1","key_id":"k1","message_id":"${MID}",` +
    `"sender_id":"${SENDER}","ts":1700000000000}`;
  const m = { conversation_id: CONV, message_id: MID, sender_id: SENDER, ts: 1700000000000, body: { ...BODY, signature: { key_id: "x", sig: "y" } } };
  assert.equal(new TextDecoder().decode(cardPayload("k1", m)), expected);
  assert.equal(canonicalJson({ b: 1, a: ["x", { d: "é\n\u2028", c: null }] }), '{"a":["x",{"c":null,"d":"é\\n\u2028"}],"b":1}');
  assert.equal(entry.verifyCard, verifyCard);
});

/** @param {Uint8Array} bytes */
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");

async function hubKey(kid) {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { kid, pair, jwk: { kty: "OKP", crv: "Ed25519", kid, x: b64url(raw), alg: "EdDSA", use: "sig", status: "active" } };
}

test("a genuine card verifies; moved, altered, re-keyed or unsigned copies do not", async () => {
  const k = await hubKey("sig-a");
  const other = await hubKey("sig-b");
  let fetched = 0;
  const keys = new SigningKeys({ request: async () => ((fetched += 1), { keys: [k.jwk, other.jwk] }) });
  const m = { conversation_id: CONV, message_id: MID, sender_id: SENDER, ts: 1, body: { ...BODY } };
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, k.pair.privateKey, cardPayload("sig-a", m)));
  const signed = { ...m, body: { ...BODY, signature: { key_id: "sig-a", sig: b64url(sig) } } };
  assert.equal(await verifyCard(signed, keys), true);
  assert.equal(await verifyCard({ ...signed, conversation_id: MID }, keys), false);
  assert.equal(await verifyCard({ ...signed, message_id: CONV }, keys), false);
  assert.equal(await verifyCard({ ...signed, ts: 2 }, keys), false);
  assert.equal(await verifyCard({ ...signed, body: { ...signed.body, title: "Card bi11" } }, keys), false);
  assert.equal(await verifyCard({ ...signed, body: { ...signed.body, classes: ["I"] } }, keys), false);
  assert.equal(await verifyCard({ ...signed, body: { ...signed.body, signature: { key_id: "sig-b", sig: b64url(sig) } } }, keys), false);
  assert.equal(await verifyCard({ ...signed, body: { ...signed.body, signature: { key_id: "sig-zz", sig: b64url(sig) } } }, keys), false);
  assert.equal(await verifyCard({ ...signed, body: { ...BODY } }, keys), false);
  assert.equal(await verifyCard({ ...signed, body: { ...signed.body, signature: { key_id: "sig-a", sig: "!!" } } }, keys), false);
  assert.ok(fetched <= 2, "an unknown key id asks the hub again at most once a minute");

  const notice = { account_id: CONV, notice_id: MID, body: { kind: "text", text: "Fee change" } };
  const nsig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, k.pair.privateKey, noticePayload("sig-a", notice)));
  assert.equal(await verifyNotice({ ...notice, signature: { key_id: "sig-a", sig: b64url(nsig) } }, keys), true);
  assert.equal(await verifyNotice({ ...notice, account_id: SENDER, signature: { key_id: "sig-a", sig: b64url(nsig) } }, keys), false);
  assert.equal(await verifyNotice(notice, keys), false);
});

test("the account-class gate and base64url", () => {
  assert.equal(cardActionsAllowed({ classes: [] }, null), true);
  assert.equal(cardActionsAllowed({ classes: ["I"] }, "I"), true);
  assert.equal(cardActionsAllowed({ classes: ["I"] }, "II"), false);
  assert.equal(cardActionsAllowed({ classes: ["I"] }, null), false);
  assert.deepEqual(fromBase64Url("AAE"), new Uint8Array([0, 1]));
  assert.equal(fromBase64Url("A+/="), null);
});

test("card links: the host read as a browser reads it, compared exactly (tests/unit/test_cards.py)", () => {
  const domains = ["icbc.com.cn"];
  const refused = [
    "https://evil.example\\.icbc.com.cn/x", // a browser reads "\\" as "/": opens evil.example
    "https:/\\evil.example/.icbc.com.cn",
    "https:evil.example/.icbc.com.cn",
    "https://evil.example%2eicbc.com.cn/x",
    "https://evil%2Eexample.icbc.com.cn/x",
    "https://evil.example@www.icbc.com.cn/x",
    "https://www.icbc.com.cn@evil.example/x",
    "https://www.icbc.com.cn:443/x",
    "https://evil.example\u3002icbc.com.cn/x",
    "https://evil.example\uff0eicbc.com.cn/x",
    "https://www.icbc.com.cn./x",
    "https://www..icbc.com.cn/x",
    "https://www.ICBC.com.cn/x",
    "HTTPS://www.icbc.com.cn/x",
    "https://evil.example\t.icbc.com.cn/x",
    "https://evil.example\n.icbc.com.cn/x",
    "https://xn--icbc-abc.com.cn/x",
    "https://[::1]/x",
    "https://0x7f000001/x",
    "https://127.0.0.1/x",
    "javascript:alert(1)",
    "bankhub:\\\\evil.example",
    `https://www.icbc.com.cn/${"a".repeat(2048)}`,
    "",
  ];
  for (const url of refused) assert.equal(cardLinkAllowed(url, domains), false, url);
  for (const url of ["https://www.icbc.com.cn/x?y=%20#z", "https://xn--fiqs8s.icbc.com.cn/x", "bankhub://wealth/7d", "https://icbc.com.cn"]) {
    assert.equal(cardLinkAllowed(url, domains), true, url);
  }
  assert.equal(cardLinkHost("https://evil.example\\.icbc.com.cn/x"), null);
  assert.equal(cardLinkHost("https://www.icbc.com.cn/a?b#c"), "www.icbc.com.cn");
  assert.equal(cardLinkAllowed("https://evil.example/x"), true); // without domains: the host rule only
  assert.equal(cardLinkAllowed("https://evil.example/x", domains), false);
  assert.equal(entry.cardLinkAllowed, cardLinkAllowed);
});
