// Live check of the SDK against a running hub (run by tests/web/test_js_sdk.py):
//   BANKHUB_URL=http://127.0.0.1:8000 node --experimental-websocket clients/web/live/chat.mjs
// c.li and rm.wang chat both ways over two Clients, each forced through a reconnect with
// sends in flight; every text must arrive once, in seq order, and be stored once.
// Prints one JSON line with the findings; exits 1 on the first broken expectation.
import assert from "node:assert/strict";

import { Client, HubSession } from "../src/bankhub.js";

const base = process.env.BANKHUB_URL;
if (!base) throw new Error("set BANKHUB_URL");
const PASSWORD = process.env.BANKHUB_PASSWORD || "bankhub-demo";

/** @param {() => unknown} cond @param {string} what */
async function until(cond, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    if (cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** @param {Client} client @param {string} cid */
function texts(client, cid) {
  return client.messages(cid).map((m) => /** @type {any} */ (m.body).text);
}

/** @param {Client} client @param {string} cid */
function assertOrderedOnce(client, cid) {
  const seqs = client.messages(cid).map((m) => m.seq);
  for (let i = 1; i < seqs.length; i += 1) assert.ok(seqs[i] > seqs[i - 1], `seqs in order, once: ${seqs}`);
}

const findings = { reconnects: { customer: 0, rm: 0 }, duplicates_answered: 0, delivered: { customer: 0, rm: 0 }, receipts: 0 };

const liSession = await HubSession.signInWithToken(base, "c.li", PASSWORD);
const wangSession = await HubSession.signInWithToken(base, "rm.wang", PASSWORD);
assert.equal(liSession.user?.username, "c.li");
const li = Client.connect(liSession);
const wang = Client.connect(wangSession);
/** @type {Record<string, any[]>} */
const got = { li: [], wang: [], liReceipts: [] };
li.addEventListener("message", (e) => got.li.push(/** @type {CustomEvent} */ (e).detail));
wang.addEventListener("message", (e) => got.wang.push(/** @type {CustomEvent} */ (e).detail));
li.addEventListener("receipt", (e) => got.liReceipts.push(/** @type {CustomEvent} */ (e).detail));
li.addEventListener("sent", (e) => {
  if (/** @type {CustomEvent} */ (e).detail.duplicate) findings.duplicates_answered += 1;
});
li.addEventListener("state", (e) => {
  if (/** @type {CustomEvent} */ (e).detail.state === "offline") findings.reconnects.customer += 1;
});
wang.addEventListener("state", (e) => {
  if (/** @type {CustomEvent} */ (e).detail.state === "offline") findings.reconnects.rm += 1;
});
await Promise.all([li.ready(), wang.ready()]);
assert.equal(li.hello?.username, "c.li");
assert.ok(li.hello?.features.includes("sync.listed_only"), "the hub names its v1 features");

const conversation = await li.openDirect("rm.wang");
const cid = conversation.id;
const run = `${Date.now()}`;

// customer -> RM, live
for (let i = 1; i <= 3; i += 1) await li.send(cid, `li ${run} #${i}`);
await until(() => texts(wang, cid).filter((t) => t.startsWith(`li ${run}`)).length === 3, "rm.wang receives 3");

// RM -> customer, live
for (let i = 1; i <= 2; i += 1) await wang.send(cid, `wang ${run} #${i}`);
await until(() => texts(li, cid).filter((t) => t.startsWith(`wang ${run}`)).length === 2, "c.li receives 2");

// c.li's connection drops with a send in flight (written, not yet acknowledged): after the
// reconnect the SDK resends it with the same client_msg_id; the hub must store it once
const inFlight = li.send(cid, `li ${run} in-flight`);
li.reconnect();
const also = li.send(cid, `li ${run} while-offline`); // made while offline: queued
const [m1, m2] = await Promise.all([inFlight, also]);
assert.ok(m2.seq > m1.seq, "sends keep their order across the reconnect");

// rm.wang drops too; messages sent meanwhile arrive by the resync, once
wang.reconnect();
for (let i = 4; i <= 5; i += 1) await li.send(cid, `li ${run} #${i}`);
await until(() => texts(wang, cid).filter((t) => t.startsWith(`li ${run}`)).length === 7, "rm.wang catches up to 7");
await until(() => wang.state === "open", "rm.wang open again");

// read receipt: rm.wang reads everything; c.li is told
const last = wang.messages(cid).at(-1);
assert.ok(last);
const receipt = await wang.read(cid, last.seq);
assert.equal(receipt.read_seq, last.seq);
await until(() => got.liReceipts.some((r) => r.read_seq >= last.seq), "c.li sees the read receipt");
findings.receipts = got.liReceipts.length;

// nothing lost, nothing twice: in the SDK's view, in events, and in storage
for (const client of [li, wang]) assertOrderedOnce(client, cid);
const wanted = [1, 2, 3, "in-flight", "while-offline", 4, 5].map((k) => (typeof k === "number" ? `li ${run} #${k}` : `li ${run} ${k}`));
const wangTexts = got.wang.map((d) => d.message.body.text).filter((t) => t.startsWith(`li ${run}`));
assert.deepEqual(wangTexts, wanted, "rm.wang got each of c.li's texts once, in order");
const liTexts = got.li.map((d) => d.message.body.text).filter((t) => t.startsWith(`wang ${run}`));
assert.deepEqual(liTexts, [`wang ${run} #1`, `wang ${run} #2`]);
const page = /** @type {{messages: Array<{body: {text: string}}>}} */ (await liSession.request("GET", `/v1/conversations/${cid}/messages?limit=200`));
const stored = page.messages.map((m) => m.body.text).filter((t) => t.startsWith(`li ${run}`));
assert.equal(stored.length, wanted.length, `stored once each: ${JSON.stringify(stored)}`);
assert.equal(new Set(stored).size, wanted.length);
findings.delivered.rm = wangTexts.length;
findings.delivered.customer = liTexts.length;
assert.ok(findings.reconnects.customer >= 1 && findings.reconnects.rm >= 1, "both went through a reconnect");

li.close();
wang.close();
await liSession.request("DELETE", "/v1/sessions/current");
console.log(JSON.stringify({ ok: true, ...findings }));
