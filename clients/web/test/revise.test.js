// revise.js (recall and edit) and the client's application of change messages: live,
// via sync, before and after their target, and my own edit/recall. A fake WebSocket plays the hub.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Client, HubError, HubSession } from "../src/client.js";
import { WaitingChanges, applyChange, isChange, isRecalled, visibleMessages } from "../src/revise.js";
import { ReconnectPolicy } from "../src/state.js";

const ME = "u-me";
const PEER = "u-peer";
const C1 = "c1";

/** @param {number} seq @param {any} [body] @param {string} [sender] @param {object} [extra] */
function msg(seq, body = { kind: "text", text: `t${seq}` }, sender = PEER, extra = {}) {
  return { conversation_id: C1, message_id: `m${seq}`, seq, sender_id: sender, client_msg_id: `p${seq}`, body, ts: 100 + seq, ...extra };
}
/** @param {number} seq @param {number} target @param {string} text */
const edit = (seq, target, text) => msg(seq, { kind: "edit", message_id: `m${target}`, body: { kind: "text", text } });
/** @param {number} seq @param {number} target */
const recall = (seq, target) => msg(seq, { kind: "recall", message_id: `m${target}` });

test("applyChange: edit, recall, recall is final, later edit wins, other targets untouched", () => {
  const m1 = msg(1);
  const edited = applyChange(m1, edit(2, 1, "v2"));
  assert.deepEqual(edited?.body, { kind: "text", text: "v2" });
  assert.equal(edited?.edited_ts, 102);
  assert.equal(applyChange(/** @type {any} */ (edited), edit(2, 1, "v2")), null, "the same edit again changes nothing");
  const gone = applyChange(/** @type {any} */ (edited), recall(3, 1));
  assert.ok(gone && isRecalled(gone));
  assert.equal(applyChange(/** @type {any} */ (gone), edit(4, 1, "back")), null, "a recall is final");
  assert.equal(applyChange(m1, edit(5, 9, "x")), null, "another message's change");
  assert.equal(applyChange(m1, { ...edit(5, 1, "x"), conversation_id: "c2" }), null, "never across conversations");
  const later = /** @type {any} */ (applyChange(m1, edit(6, 1, "v6")));
  assert.equal(applyChange(later, edit(2, 1, "v2")), null, "an older edit arriving late");
  assert.ok(isChange(edit(2, 1, "x")) && isChange(recall(3, 1)) && !isChange(m1));
});

test("visibleMessages applies changes in any order and leaves them out", () => {
  const shown = visibleMessages([recall(4, 2), msg(2), edit(3, 1, "v3"), msg(1)]);
  assert.deepEqual(shown.map((m) => [m.seq, m.body]), [[1, { kind: "text", text: "v3" }], [2, { kind: "recalled" }]]);
});

test("WaitingChanges keeps the latest change per target, bounded", () => {
  const w = new WaitingChanges(2);
  w.wait(edit(5, 1, "v5"));
  w.wait(edit(3, 1, "v3"));
  assert.equal(/** @type {any} */ (w.take("m1"))?.seq, 5);
  for (let i = 0; i < 5; i += 1) w.wait(recall(10 + i, 20 + i));
  assert.equal(w.size, 2);
  assert.equal(w.take("m20"), undefined, "the oldest waiting change was dropped");
});

/** A WebSocket the test drives. */
class FakeWebSocket {
  /** @type {FakeWebSocket[]} */
  static sockets = [];
  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.protocol = "";
    this.readyState = 0;
    /** @type {any[]} */
    this.sent = [];
    /** @type {((ev: any) => void) | null} */
    this.onmessage = null;
    /** @type {((ev: any) => void) | null} */
    this.onclose = null;
    this.onopen = null;
    this.onerror = null;
    FakeWebSocket.sockets.push(this);
  }
  /** @param {string} data */
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  accept() {
    this.readyState = 1;
    this.protocol = "bankhub.v1";
    this.push({ type: "hello", protocol: 1, session_id: "s", user_id: ME, username: "c.li", role: "customer", node: "n1", server_time: 1, limits: { idle_timeout: 90 }, features: ["sync.listed_only", "edit"] });
  }
  /** @param {object} frame */
  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** @param {string} type */
  frames(type) {
    return this.sent.filter((f) => f.type === type);
  }
}

/** @param {() => unknown} cond @param {string} what */
async function until(cond, what, ms = 2000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function connected() {
  FakeWebSocket.sockets = [];
  /** @type {typeof fetch} */
  const fetchImpl = async (input, init = {}) => {
    const url = new URL(String(input));
    const key = `${init.method} ${url.pathname}`;
    const body =
      key === "POST /v1/ws-tickets" ? { ticket: "t", expires_in: 30 }
      : key === `GET /v1/conversations/${C1}/messages` ? { messages: [msg(1, { kind: "text", text: "old v1" })], has_more: false }
      : key === "GET /v1/inbox/unread" ? { unread: 0, last_seq: 0 }
      : { conversations: [], accounts: [], next_cursor: null };
    return new Response(JSON.stringify(body), { status: key === "POST /v1/ws-tickets" ? 201 : 200, headers: { "content-type": "application/json" } });
  };
  const session = HubSession.withToken("http://hub.test", "tok", { fetch: fetchImpl });
  const client = Client.connect(session, { WebSocketImpl: /** @type {any} */ (FakeWebSocket), cursors: { [C1]: 0 }, reconnect: new ReconnectPolicy({ initialDelayMs: 1, maxDelayMs: 5, jitter: 0 }), gapGraceMs: 20 });
  /** @type {any[]} */
  const revised = [];
  client.addEventListener("revised", (e) => revised.push(/** @type {CustomEvent} */ (e).detail));
  const ws = /** @type {FakeWebSocket} */ (await until(() => FakeWebSocket.sockets[0], "socket"));
  ws.accept();
  const sync = await until(() => ws.frames("sync")[0], "sync");
  return { client, ws, revised, sync };
}

test("client: an edit live after its target, a recall via sync, a change before its target", async () => {
  const { client, ws, revised, sync } = await connected();
  // sync: the target, then a recall of another message not held yet (older than what is held)
  ws.push({ type: "synced", id: sync.id, conversations: [{ conversation_id: C1, last_seq: 3, read_seq: 0, unread: 3, messages: [msg(2), recall(3, 1)], has_more: false }], accounts: [] });
  await client.ready();
  assert.deepEqual(revised, [], "the recall waits for message 1");
  // live: an edit of message 2
  ws.push({ type: "message", message: edit(4, 2, "t2 fixed") });
  assert.equal(revised.length, 1);
  assert.equal(revised[0].message.message_id, "m2");
  assert.deepEqual(client.messages(C1).find((m) => m.message_id === "m2")?.body, { kind: "text", text: "t2 fixed" });
  assert.equal(/** @type {any} */ (client.messages(C1).find((m) => m.message_id === "m2"))?.edited_ts, 104);
  // history brings message 1 (as it read before): the waiting recall applies to it
  await client.loadHistory(C1);
  assert.ok(isRecalled(client.messages(C1).find((m) => m.message_id === "m1")));
  assert.equal(revised.length, 2);
  // a late, older edit of message 2 changes nothing
  ws.push({ type: "message", message: msg(5) });
  ws.push({ type: "message", message: { ...edit(6, 2, "stale"), ts: 50 } });
  assert.deepEqual(client.messages(C1).find((m) => m.message_id === "m2")?.body, { kind: "text", text: "t2 fixed" });
  client.close();
});

test("client: my own edit and recall are answered by sent and applied at once; refusals reject", async () => {
  const { client, ws, revised, sync } = await connected();
  ws.push({ type: "synced", id: sync.id, conversations: [{ conversation_id: C1, last_seq: 1, read_seq: 1, unread: 0, messages: [msg(1, undefined, ME)], has_more: false }], accounts: [] });
  await client.ready();
  const editing = client.edit(C1, "m1", "better", { clientMsgId: "e1" });
  const frame = await until(() => ws.frames("edit")[0], "edit frame");
  assert.deepEqual({ ...frame, id: "_" }, { type: "edit", id: "_", conversation_id: C1, message_id: "m1", client_msg_id: "e1", body: { kind: "text", text: "better" } });
  ws.push({ type: "sent", id: frame.id, conversation_id: C1, client_msg_id: "e1", message_id: "m2", seq: 2, ts: 200 });
  const change = await editing;
  assert.deepEqual(change.body, { kind: "edit", message_id: "m1", body: { kind: "text", text: "better" } });
  assert.deepEqual(client.messages(C1).find((m) => m.message_id === "m1")?.body, { kind: "text", text: "better" });
  assert.equal(revised.length, 1);

  const recalling = client.recall(C1, "m1");
  const rf = await until(() => ws.frames("recall")[0], "recall frame");
  ws.push({ type: "sent", id: rf.id, conversation_id: C1, client_msg_id: "recall.x", message_id: "m3", seq: 3, ts: 300 });
  await recalling;
  assert.ok(isRecalled(client.messages(C1).find((m) => m.message_id === "m1")));
  // the next live message follows my change messages: no gap, no sync
  ws.push({ type: "message", message: msg(4) });
  assert.equal(ws.frames("sync").length, 1);

  const refused = client.recall(C1, "m4");
  const rf2 = await until(() => ws.frames("recall")[1], "second recall frame");
  ws.push({ type: "error", id: rf2.id, code: "forbidden", message: "only its sender may recall a message" });
  await assert.rejects(refused, (e) => e instanceof HubError && e.code === "forbidden");
  client.close();
});
