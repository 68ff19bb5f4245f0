// client.js against a fake WebSocket and a fake fetch: no network. The test plays the hub.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Client, HubError, HubSession } from "../src/client.js";
import { ReconnectPolicy } from "../src/state.js";

const ME = "u-me";
const PEER = "u-peer";
const C1 = "c1";

/** A WebSocket the test drives; every instance is recorded in `sockets`. */
class FakeWebSocket {
  /** @type {FakeWebSocket[]} */
  static sockets = [];

  /** @param {string} url @param {string[]} protocols */
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.protocol = "";
    this.readyState = 0;
    /** @type {any[]} */
    this.sent = [];
    this.onopen = null;
    /** @type {((ev: any) => void) | null} */
    this.onmessage = null;
    /** @type {((ev: any) => void) | null} */
    this.onclose = null;
    this.onerror = null;
    this.closedByClient = null;
    FakeWebSocket.sockets.push(this);
  }

  /** @param {string} data */
  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data));
  }

  /** @param {number} [code] */
  close(code) {
    this.closedByClient = code ?? 1005;
    this.readyState = 3;
  }

  // --- the hub's side ---
  accept(hello = {}) {
    this.readyState = 1;
    this.protocol = "bankhub.v1";
    this.push({ type: "hello", protocol: 1, session_id: "s", user_id: ME, username: "c.li", role: "customer", node: "n1", server_time: 1, limits: { idle_timeout: 90 }, features: ["sync.listed_only"], ...hello });
  }

  /** @param {object} frame */
  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** @param {number} code */
  drop(code) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
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

/** A fetch for the hub's HTTP side; records requests. */
function fakeFetch() {
  /** @type {Array<{method: string, url: string, headers: Record<string, string>}>} */
  const calls = [];
  let tickets = 0;
  /** @type {Record<string, (body: any) => {status: number, body?: unknown}>} */
  const routes = {
    "POST /v1/ws-tickets": () => ({ status: 201, body: { ticket: `t${++tickets}`, expires_in: 30 } }),
    "GET /v1/conversations?limit=200": () => ({ status: 200, body: { conversations: [{ id: C1, last_seq: 2 }], next_cursor: null } }),
    "GET /v1/me/accounts?limit=200": () => ({ status: 200, body: { accounts: [], next_cursor: null } }),
    "GET /v1/inbox/unread": () => ({ status: 200, body: { unread: 0, last_seq: 4 } }),
  };
  /** @type {typeof fetch} */
  const f = async (input, init = {}) => {
    const url = new URL(String(input));
    const key = `${init.method} ${url.pathname}${url.search}`;
    calls.push({ method: String(init.method), url: key, headers: /** @type {Record<string, string>} */ (init.headers) });
    const route = routes[key];
    const r = route ? route(init.body) : { status: 404, body: { code: "not_found", detail: key } };
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status, headers: { "content-type": "application/json" } });
  };
  return { fetch: f, calls, routes };
}

/** @param {object} [options] @param {Record<string, (body: any) => {status: number, body?: unknown}>} [routes] */
function setup(options = {}, routes = {}) {
  FakeWebSocket.sockets = [];
  const http = fakeFetch();
  Object.assign(http.routes, routes);
  const session = HubSession.withToken("http://hub.test", "tok", { fetch: http.fetch });
  const client = Client.connect(session, {
    WebSocketImpl: /** @type {any} */ (FakeWebSocket),
    reconnect: new ReconnectPolicy({ initialDelayMs: 1, maxDelayMs: 5, jitter: 0 }),
    gapGraceMs: 20,
    ...options,
  });
  /** @type {Record<string, any[]>} */
  const events = {};
  for (const type of ["message", "sent", "state", "receipt", "notice", "notice_recalled", "alert", "service_status", "conversation_removed", "pending"]) {
    events[type] = [];
    client.addEventListener(type, (e) => events[type].push(/** @type {CustomEvent} */ (e).detail));
  }
  return { client, http, events, ws: () => FakeWebSocket.sockets[FakeWebSocket.sockets.length - 1] };
}

/** @param {number} seq @param {string} [sender] @param {string} [cmid] */
function msg(seq, sender = PEER, cmid = `p${seq}`) {
  return { conversation_id: C1, message_id: `m${seq}`, seq, sender_id: sender, client_msg_id: cmid, body: { kind: "text", text: `t${seq}` }, ts: 100 + seq };
}

test("ticket -> connect -> hello -> sync -> live message -> send/sent -> reconnect retries an unacked send once", async () => {
  const { client, http, events, ws } = setup({ cursors: { [C1]: 2 } });
  // the ticket is fetched with the bearer token, then the socket opens with it and the subprotocol
  const first = await until(() => FakeWebSocket.sockets[0], "the first socket");
  assert.equal(first.url, "ws://hub.test/v1/ws?ticket=t1");
  assert.deepEqual(first.protocols, ["bankhub.v1"]);
  assert.equal(http.calls[0].url, "POST /v1/ws-tickets");
  assert.equal(http.calls[0].headers.authorization, "Bearer tok");
  assert.equal(http.calls[0].headers["x-csrf-token"], undefined, "no CSRF in the token mode");
  first.accept();

  // resume: sync from the cursors given, before anything else
  const sync = await until(() => first.frames("sync")[0], "sync");
  assert.deepEqual(sync.since, { [C1]: 2 });
  assert.equal(sync.listed_only, undefined, "a resume learns about new conversations: not listed-only");
  assert.equal(client.state, "connecting");
  first.push({ type: "synced", id: sync.id, conversations: [{ conversation_id: C1, last_seq: 3, read_seq: 0, unread: 3, messages: [msg(3)], has_more: false }], accounts: [] });
  await client.ready();
  assert.equal(client.state, "open");

  // a live message, then its duplicate (a live copy racing a sync): handed out once
  first.push({ type: "message", message: msg(4) });
  first.push({ type: "message", message: msg(4) });
  assert.deepEqual(events.message.map((d) => d.message.seq), [3, 4]);

  // send -> sent
  const sending = client.send(C1, "hello", { clientMsgId: "k1" });
  const sendFrame = await until(() => first.frames("send")[0], "send frame");
  assert.deepEqual(sendFrame.body, { kind: "text", text: "hello" });
  assert.equal(sendFrame.client_msg_id, "k1");
  assert.deepEqual(client.pending(C1).map((p) => [p.clientMsgId, p.state]), [["k1", "sending"]]);
  first.push({ type: "sent", id: sendFrame.id, conversation_id: C1, client_msg_id: "k1", message_id: "m5", seq: 5, ts: 105 });
  const stored = await sending;
  assert.equal(stored.seq, 5);
  assert.deepEqual(client.pending(C1), []);

  // a second send is transmitted, then the node restarts (1012) before acknowledging it
  const retried = client.send(C1, "again", { clientMsgId: "k2" });
  await until(() => first.frames("send").length === 2, "second send frame");
  first.drop(1012);
  assert.deepEqual(client.pending(C1).map((p) => [p.clientMsgId, p.state]), [["k2", "queued"]]);
  const second = await until(() => FakeWebSocket.sockets[1], "reconnect");
  assert.equal(second.url, "ws://hub.test/v1/ws?ticket=t2", "a fresh single-use ticket for every connection");
  second.accept();
  const resync = await until(() => second.frames("sync")[0], "resync");
  assert.deepEqual(resync.since, { [C1]: 5 });
  assert.equal(second.frames("send").length, 0, "sends wait until the resync answered");
  second.push({ type: "synced", id: resync.id, conversations: [], accounts: [] });
  const resend = await until(() => second.frames("send")[0], "resend");
  assert.equal(resend.client_msg_id, "k2", "the same client_msg_id");
  // the hub had committed it: it answers duplicate, with the original seq
  second.push({ type: "sent", id: resend.id, conversation_id: C1, client_msg_id: "k2", message_id: "m6", seq: 6, ts: 106, duplicate: true });
  assert.equal((await retried).seq, 6);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(second.frames("send").length, 1, "sent once more, never again");
  assert.deepEqual(client.messages(C1).map((m) => m.seq), [3, 4, 5, 6], "ordered, no duplicates");
  assert.deepEqual(events.sent.map((d) => [d.clientMsgId, d.duplicate]), [["k1", false], ["k2", true]]);
  assert.deepEqual(events.state.map((d) => d.state), ["open", "offline", "connecting", "open"]);
  client.close();
  assert.equal(client.state, "closed");
});

test("an unacked send committed before the drop is completed by the resync, not resent", async () => {
  const { client, ws } = setup({ cursors: { [C1]: 0 } });
  const s1 = await until(() => FakeWebSocket.sockets[0], "socket");
  s1.accept();
  const y = await until(() => s1.frames("sync")[0], "sync");
  s1.push({ type: "synced", id: y.id, conversations: [], accounts: [] });
  await client.ready();
  const p = client.send(C1, "one", { clientMsgId: "k1" });
  await until(() => s1.frames("send")[0], "send");
  s1.drop(1006);
  const s2 = await until(() => FakeWebSocket.sockets[1], "reconnect");
  s2.accept();
  const y2 = await until(() => s2.frames("sync")[0], "resync");
  s2.push({ type: "synced", id: y2.id, conversations: [{ conversation_id: C1, last_seq: 1, read_seq: 1, unread: 0, messages: [msg(1, ME, "k1")], has_more: false }], accounts: [] });
  assert.equal((await p).seq, 1);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ws().frames("send").length, 0, "nothing to resend");
  assert.deepEqual(client.messages(C1).map((m) => m.seq), [1]);
  client.close();
});

test("first connect without cursors: a snapshot, nothing old handed out; a gap is filled listed-only", async () => {
  const { client, http, events } = setup();
  const s1 = await until(() => FakeWebSocket.sockets[0], "socket");
  s1.accept();
  await client.ready();
  assert.deepEqual(client.cursors, { [C1]: 2 }, "seeded from GET /v1/conversations");
  assert.equal(client.inboxCursor, 4, "alerts count from the inbox's last seq");
  assert.ok(http.calls.some((c) => c.url === "GET /v1/conversations?limit=200"));
  assert.equal(s1.frames("sync").length, 0);
  // seq 3 went missing: the client asks for c1 only
  s1.push({ type: "message", message: msg(4) });
  const y = await until(() => s1.frames("sync")[0], "gap sync");
  assert.deepEqual(y.since, { [C1]: 2 });
  assert.equal(y.listed_only, true);
  s1.push({ type: "synced", id: y.id, conversations: [{ conversation_id: C1, last_seq: 4, read_seq: 0, unread: 4, messages: [msg(3), msg(4)], has_more: false }], accounts: [] });
  await until(() => events.message.length === 2, "gap filled");
  assert.deepEqual(events.message.map((d) => d.message.seq), [3, 4]);
  // alerts: in order once, a gap triggers sync_inbox
  s1.push({ type: "alert", alert: { alert_id: "a5", seq: 5, category: "security", priority: "high", template: "t", title: "T", text: "x", ts: 1 } });
  s1.push({ type: "alert", alert: { alert_id: "a5", seq: 5, category: "security", priority: "high", template: "t", title: "T", text: "x", ts: 1 } });
  s1.push({ type: "alert", alert: { alert_id: "a7", seq: 7, category: "security", priority: "high", template: "t", title: "T", text: "x", ts: 1 } });
  const si = await until(() => s1.frames("sync_inbox")[0], "sync_inbox");
  assert.equal(si.since, 5);
  s1.push({ type: "inbox_synced", id: si.id, alerts: [{ alert_id: "a6", seq: 6 }, { alert_id: "a7", seq: 7 }], cursor: 7, last_seq: 7, unread: 3, has_more: false });
  await until(() => events.alert.length === 3, "alerts");
  assert.deepEqual(events.alert.map((a) => a.seq), [5, 6, 7]);
  // service desk: an older revision is dropped
  s1.push({ type: "service_status", session_id: "ss", conversation_id: "c9", queue: "general", state: "waiting", revision: 3, position: 2 });
  s1.push({ type: "service_status", session_id: "ss", conversation_id: "c9", queue: "general", state: "waiting", revision: 2, position: 3 });
  assert.deepEqual(events.service_status.map((s) => s.revision), [3]);
  // read receipts answer the request; others' receipts are events
  const reading = client.read(C1, 4);
  const r = await until(() => s1.frames("read")[0], "read");
  s1.push({ type: "receipt", id: r.id, conversation_id: C1, user_id: ME, read_seq: 4, unread: 0 });
  assert.equal((await reading).read_seq, 4);
  s1.push({ type: "receipt", conversation_id: C1, user_id: PEER, read_seq: 4 });
  assert.deepEqual(events.receipt.map((x) => x.user_id), [PEER]);
  client.close();
});

test("keep-alive: a ping frame after silence, well inside the idle timeout", async () => {
  const { client } = setup({ keepAliveMs: 30 });
  const s1 = await until(() => FakeWebSocket.sockets[0], "socket");
  s1.accept();
  await client.ready();
  await until(() => s1.frames("ping").length > 0, "a ping frame", 1000);
  client.close();
});

test("1008 (revoked) ends the client without reconnecting; pending sends fail", async () => {
  const { client, events } = setup();
  const s1 = await until(() => FakeWebSocket.sockets[0], "socket");
  s1.accept();
  await client.ready();
  const p = client.send(C1, "x");
  await until(() => s1.frames("send")[0], "send");
  s1.drop(1008);
  await assert.rejects(p, (e) => e instanceof HubError && e.code === "session_ended");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWebSocket.sockets.length, 1, "no reconnect");
  assert.equal(client.state, "closed");
  assert.equal(events.state.at(-1).error.code, "session_ended");
  await assert.rejects(client.send(C1, "y"), (e) => e instanceof HubError && e.code === "session_ended", "a later send fails at once");
});

test("a ticket refused with 401 ends the client; a 503 is retried", async () => {
  let calls = 0;
  const { client } = setup({}, {
    "POST /v1/ws-tickets": () => (++calls === 1 ? { status: 503, body: { code: "unavailable" } } : { status: 401, body: { code: "unauthorized", detail: "no" } }),
  });
  await assert.rejects(client.ready(), (e) => e instanceof HubError && e.code === "session_ended" && e.status === 401);
  assert.equal(calls, 2);
  assert.equal(FakeWebSocket.sockets.length, 0);
});

test("rate_limited sends are retried after retry_after_ms with the same client_msg_id; forbidden fails", async () => {
  const { client } = setup();
  const s1 = await until(() => FakeWebSocket.sockets[0], "socket");
  s1.accept();
  await client.ready();
  const p = client.send(C1, "x", { clientMsgId: "k1" });
  const f1 = await until(() => s1.frames("send")[0], "send");
  s1.push({ type: "error", id: f1.id, code: "rate_limited", message: "slow down", retry_after_ms: 10 });
  const f2 = await until(() => s1.frames("send")[1], "retransmission");
  assert.equal(f2.client_msg_id, "k1");
  s1.push({ type: "sent", id: f2.id, conversation_id: C1, client_msg_id: "k1", message_id: "m3", seq: 3, ts: 1 });
  assert.equal((await p).seq, 3);
  const q = client.send(C1, "y");
  const f3 = await until(() => s1.frames("send")[2], "send");
  s1.push({ type: "error", id: f3.id, code: "forbidden", message: "no" });
  await assert.rejects(q, (e) => e instanceof HubError && e.code === "forbidden");
  assert.deepEqual(client.pending(C1), []);
  client.close();
});

test("sends made while offline wait and go out after the connection is up", async () => {
  const { client } = setup();
  const p = client.send(C1, "early", { clientMsgId: "k0" });
  assert.deepEqual(client.pending(C1).map((x) => x.state), ["queued"]);
  const s1 = await until(() => FakeWebSocket.sockets[0], "socket");
  s1.accept();
  const f = await until(() => s1.frames("send")[0], "send");
  s1.push({ type: "sent", id: f.id, conversation_id: C1, client_msg_id: "k0", message_id: "m3", seq: 3, ts: 1 });
  assert.equal((await p).seq, 3);
  client.close();
});

test("the cookie mode sends X-CSRF-Token on unsafe methods only, and resume answers null on 401", async () => {
  /** @type {Array<{method: string, headers: any, credentials: any}>} */
  const seen = [];
  /** @type {typeof fetch} */
  const f = async (input, init = {}) => {
    seen.push({ method: String(init.method), headers: init.headers, credentials: init.credentials });
    const url = new URL(String(input));
    if (url.pathname === "/v1/web/sessions") return Response.json({ user: { id: ME, username: "c.li" }, csrf_token: "csrf1", expires_at: "x" }, { status: 201 });
    if (url.pathname === "/v1/web/session") return Response.json({ code: "unauthorized" }, { status: 401 });
    return Response.json({ ok: true });
  };
  const s = await HubSession.signIn("", "c.li", "pw", { fetch: f, origin: "https://bank.example" });
  assert.equal(s.user?.username, "c.li");
  assert.equal(s.wsUrl, "wss://bank.example/v1/ws");
  await s.request("GET", "/v1/conversations");
  await s.request("POST", "/v1/ws-tickets", {});
  assert.equal(seen[1].headers["x-csrf-token"], undefined);
  assert.equal(seen[2].headers["x-csrf-token"], "csrf1");
  assert.equal(seen[2].credentials, "same-origin");
  assert.equal(seen[2].headers.authorization, undefined, "no token in the page");
  assert.equal(await HubSession.resume("", { fetch: f, origin: "https://bank.example" }), null);
  const bad = async () => Response.json({ type: "about:blank", title: "Forbidden", status: 403, code: "csrf_failed", detail: "missing CSRF token" }, { status: 403 });
  const s2 = HubSession.withToken("https://bank.example", "t", { fetch: bad });
  await assert.rejects(s2.request("POST", "/v1/x", {}), (e) => e instanceof HubError && e.status === 403 && e.code === "csrf_failed");
});
