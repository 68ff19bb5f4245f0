// widget.js: exchanging a visitor token for a visitor session (POST /v1/widget/sessions),
// with a fake fetch handed in as an option.
import { test } from "node:test";
import assert from "node:assert/strict";

import { HubError, HubSession } from "../src/client.js";
import { openVisitorSession, tokenPartnerId } from "../src/widget.js";
import * as entry from "../src/bankhub.js";

const PARTNER = "0b8f3c2e-5d7a-4e1b-9c3f-2a6d8e4f1b7c";

/** A bhw1 token with this payload (the signature is not checked by the SDK). */
function tokenFor(payload) {
  const b64 = Buffer.from(JSON.stringify(payload), "utf8").toString("base64url");
  return `bhw1.${b64}.c2lnbmF0dXJl`;
}

/** A fetch that records its calls and answers with `responses` in order. */
function fakeFetch(responses) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    const [status, body] = responses.shift();
    return new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": status >= 400 ? "application/problem+json" : "application/json" },
    });
  };
  fn.calls = calls;
  return fn;
}

const ANSWER = {
  token: "visitor-bearer",
  session_id: "s1",
  expires_at: "2026-12-07T05:00:00+00:00",
  user: { id: "u9", username: "w.visitor", display_name: "访客 Wu", role: "customer", org_id: null, rm_id: null },
  partner: "shop",
};

test("the entry module exports the widget exchange", () => {
  assert.equal(entry.openVisitorSession, openVisitorSession);
  assert.equal(entry.tokenPartnerId, tokenPartnerId);
});

test("openVisitorSession posts {partner_id, token} without credentials and returns a token-mode session", async () => {
  const token = tokenFor({ p: PARTNER, v: "member-7", n: "访客 Wu", iat: 1, exp: 2, nonce: "abcdefghijklmnop" });
  const fetch = fakeFetch([[201, ANSWER], [200, ANSWER.user]]);
  const v = await openVisitorSession("http://hub.test", PARTNER, token, { fetch });
  assert.equal(fetch.calls.length, 1);
  const [call] = fetch.calls;
  assert.equal(call.url, "http://hub.test/v1/widget/sessions");
  assert.equal(call.init.method, "POST");
  assert.equal(call.init.credentials, "omit");
  assert.equal(call.init.cache, "no-store");
  assert.equal(call.init.headers.authorization, undefined);
  assert.deepEqual(call.body, { partner_id: PARTNER, token });
  assert.ok(v.session instanceof HubSession);
  assert.equal(v.session.mode, "token");
  assert.deepEqual(v.session.user, ANSWER.user);
  assert.equal(v.session.expiresAt, ANSWER.expires_at);
  assert.deepEqual([v.sessionId, v.expiresAt, v.partner], ["s1", ANSWER.expires_at, "shop"]);
  // the session's later requests carry the visitor's bearer token, through the same fetch
  await v.session.request("GET", "/v1/me");
  assert.equal(fetch.calls[1].init.headers.authorization, "Bearer visitor-bearer");
});

test("without a partner id the one the token names is sent", async () => {
  const token = tokenFor({ p: PARTNER, v: "member-7", n: "Wu" });
  const fetch = fakeFetch([[201, ANSWER]]);
  await openVisitorSession("http://hub.test", null, token, { fetch });
  assert.equal(fetch.calls[0].body.partner_id, PARTNER);
});

test("the hub's refusal is a HubError with its code; a token naming no partner never leaves", async () => {
  const fetch = fakeFetch([[401, { code: "visitor_token_replayed", title: "Unauthorized", detail: "used" }]]);
  await assert.rejects(
    openVisitorSession("http://hub.test", PARTNER, tokenFor({ p: PARTNER }), { fetch }),
    (e) => e instanceof HubError && e.status === 401 && e.code === "visitor_token_replayed",
  );
  const none = fakeFetch([]);
  for (const bad of ["", "bhw1.x", "jwt.e30.sig", tokenFor({ p: "not-a-uuid" }), "bhw1.!!.sig"]) {
    assert.equal(tokenPartnerId(bad), null, bad);
    await assert.rejects(
      openVisitorSession("http://hub.test", undefined, bad, { fetch: none }),
      (e) => e instanceof HubError && e.code === "invalid_visitor_token",
    );
  }
  assert.equal(none.calls.length, 0);
});
