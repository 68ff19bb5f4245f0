// The pure state machine, fed with frames (node --test clients/web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  CursorTracker,
  DEFAULT_LIMITS,
  InboxCursor,
  MessageInbox,
  MessageStore,
  NoticeInbox,
  Pacer,
  PendingSends,
  ReconnectPolicy,
  RevisionFilter,
  classifyClose,
  classifyHandshakeStatus,
  deriveEndpoints,
  frameBytes,
  keepAliveInterval,
  sendRetryDelay,
  syncPlan,
  validateId,
  validateText,
  withTicket,
} from "../src/state.js";

const ME = "u-me";
const PEER = "u-peer";

/** @param {string} cid @param {number} seq @param {string} [sender] @param {string} [cmid] */
function msg(cid, seq, sender = PEER, cmid = `k${seq}`) {
  return { conversation_id: cid, message_id: `m-${cid}-${seq}`, seq, sender_id: sender, client_msg_id: cmid, body: { kind: "text", text: `t${seq}` }, ts: 1000 + seq };
}

/** @param {string} cid @param {object[]} messages @param {boolean} [hasMore] */
function conv(cid, messages, hasMore = false) {
  const last = messages.length ? messages[messages.length - 1].seq : 0;
  return { conversation_id: cid, last_seq: last, read_seq: 0, unread: last, messages, has_more: hasMore };
}

// --- URLs ----------------------------------------------------------------------------------

test("endpoints derive from the HTTP base, the ws URL or the page origin", () => {
  assert.deepEqual(deriveEndpoints("https://hub.example/chat/"), { httpBase: "https://hub.example/chat", wsUrl: "wss://hub.example/chat/v1/ws" });
  assert.deepEqual(deriveEndpoints("ws://127.0.0.1:8000/v1/ws"), { httpBase: "http://127.0.0.1:8000", wsUrl: "ws://127.0.0.1:8000/v1/ws" });
  assert.deepEqual(deriveEndpoints("", "http://127.0.0.1:8000"), { httpBase: "http://127.0.0.1:8000", wsUrl: "ws://127.0.0.1:8000/v1/ws" });
  assert.throws(() => deriveEndpoints("ftp://x"), /scheme/);
  assert.throws(() => deriveEndpoints("https://x/?a=1"), /query/);
  assert.throws(() => deriveEndpoints(""), /origin/);
  assert.equal(withTicket("wss://h/v1/ws", "a+b/c"), "wss://h/v1/ws?ticket=a%2Bb%2Fc");
});

// --- cursors, gaps, duplicates ---------------------------------------------------------------

test("live messages: the next seq is delivered, a held one dropped, a skipped one is a gap", () => {
  const inbox = new MessageInbox({ userId: ME, cursors: { c1: 2 } });
  assert.equal(inbox.onMessage(msg("c1", 3)).route, "yield");
  assert.equal(inbox.onMessage(msg("c1", 3)).route, "drop");
  assert.equal(inbox.onMessage(msg("c1", 2)).route, "drop");
  assert.equal(inbox.onMessage(msg("c1", 5)).route, "gap");
  assert.equal(inbox.cursors.position("c1"), 3, "a gap does not move the cursor");
  // an unknown conversation starts at 0 (sync reads unlisted ones from seq 1)
  assert.equal(inbox.onMessage(msg("c2", 1)).route, "yield");
  assert.equal(inbox.onMessage(msg("c3", 4)).route, "gap");
});

test("synced fills a gap: messages after the cursor are delivered once, in seq order", () => {
  const inbox = new MessageInbox({ userId: ME, cursors: { c1: 3 } });
  assert.equal(inbox.onMessage(msg("c1", 6)).route, "gap");
  const r = inbox.onSynced([conv("c1", [msg("c1", 6), msg("c1", 4), msg("c1", 5), msg("c1", 3)])]);
  assert.deepEqual(r.delivered.map((m) => m.seq), [4, 5, 6]);
  assert.equal(r.more, false);
  assert.equal(inbox.cursors.position("c1"), 6);
  // the live copy of seq 6 arriving after the answer is a duplicate
  assert.equal(inbox.onMessage(msg("c1", 6)).route, "drop");
  // and the same answer again delivers nothing
  assert.deepEqual(inbox.onSynced([conv("c1", [msg("c1", 5), msg("c1", 6)])]).delivered, []);
});

test("sync paging: has_more asks for another round until the last page", () => {
  const inbox = new MessageInbox({ userId: ME });
  const page1 = inbox.onSynced([conv("c1", [msg("c1", 1), msg("c1", 2)], true), conv("c2", [msg("c2", 1)])]);
  assert.equal(page1.more, true);
  assert.deepEqual(inbox.cursors.snapshot(), { c1: 2, c2: 1 });
  const page2 = inbox.onSynced([conv("c1", [msg("c1", 3), msg("c1", 4)], false)]);
  assert.equal(page2.more, false);
  assert.deepEqual(page2.delivered.map((m) => m.seq), [3, 4]);
  // has_more with no messages (nothing could be read) does not loop forever
  assert.equal(inbox.onSynced([conv("c1", [], true)]).more, false);
});

test("messages of another conversation inside a synced entry are ignored", () => {
  const inbox = new MessageInbox({ userId: ME });
  const r = inbox.onSynced([conv("c1", [msg("c2", 1)])]);
  assert.deepEqual(r.delivered, []);
  assert.equal(inbox.cursors.get("c2"), undefined);
});

test("cursor tracker: my acknowledged send beyond a hole is held aside and absorbed", () => {
  const t = new CursorTracker({ c1: 1 });
  assert.equal(t.hold("c1", 3), true, "seq 2 is still missing");
  assert.equal(t.position("c1"), 1);
  assert.equal(t.offer("c1", 3), "duplicate", "held aside already");
  assert.equal(t.offer("c1", 2), "deliver");
  assert.equal(t.position("c1"), 3, "the held seq is absorbed");
  assert.deepEqual(t.holes(), []);
  assert.throws(() => t.seed("c1", -1), RangeError);
  t.seed("c1", 1);
  assert.equal(t.position("c1"), 3, "cursors never move backwards");
});

// --- pending sends across reconnect ------------------------------------------------------------

test("pending sends: acknowledged by sent, retransmitted after a reconnect with the same client_msg_id", () => {
  const inbox = new MessageInbox({ userId: ME, cursors: { c1: 0 } });
  const { entry } = inbox.pending.add("c1", "k1", "hello");
  inbox.pending.transmitting(entry, "s1");
  // the connection drops before `sent`: the answer is lost, the send is due again
  inbox.pending.connectionLost();
  assert.equal(inbox.onSent({ id: "s1", conversation_id: "c1", client_msg_id: "k1", message_id: "m1", seq: 1, ts: 5 }), null, "an answer of the old connection completes nothing");
  const due = inbox.pending.due(0);
  assert.deepEqual(due.map((e) => e.clientMsgId), ["k1"]);
  inbox.pending.transmitting(due[0], "s2");
  assert.equal(entry.attempts, 2);
  // the hub had committed the first transmission: the resend is answered duplicate
  const acked = inbox.onSent({ id: "s2", conversation_id: "c1", client_msg_id: "k1", message_id: "m1", seq: 1, ts: 5, duplicate: true });
  assert.ok(acked);
  assert.equal(acked.duplicate, true);
  assert.deepEqual(acked.message, { conversation_id: "c1", message_id: "m1", seq: 1, sender_id: ME, client_msg_id: "k1", body: { kind: "text", text: "hello" }, ts: 5 });
  assert.equal(inbox.pending.size, 0);
  assert.equal(inbox.cursors.position("c1"), 1);
});

test("pending sends: my own message in a synced answer completes the send, not delivered twice", () => {
  const inbox = new MessageInbox({ userId: ME, cursors: { c1: 1 } });
  const { entry } = inbox.pending.add("c1", "k9", "t2");
  inbox.pending.connectionLost();
  const r = inbox.onSynced([conv("c1", [msg("c1", 2, ME, "k9"), msg("c1", 3)])]);
  assert.deepEqual(r.acked.map((a) => a.pending), [entry]);
  assert.deepEqual(r.delivered.map((m) => m.seq), [3]);
  assert.equal(inbox.pending.size, 0, "nothing left to resend: no duplicate");
});

test("pending sends: my live message from this device completes the send; from another device it is delivered", () => {
  const inbox = new MessageInbox({ userId: ME, cursors: { c1: 0 } });
  inbox.pending.add("c1", "k1", "t1");
  const r = inbox.onMessage(msg("c1", 1, ME, "k1"));
  assert.equal(r.route, "ack");
  assert.equal(inbox.onMessage(msg("c1", 2, ME, "other-device")).route, "yield");
});

test("pending sends: same client_msg_id joins, a different text is refused, the bound holds", () => {
  const p = new PendingSends(2);
  const a = p.add("c1", "k1", "x");
  assert.equal(a.created, true);
  assert.equal(p.add("c1", "k1", "x").created, false);
  assert.throws(() => p.add("c1", "k1", "y"), /different text/);
  p.add("c1", "k2", "x");
  assert.throws(() => p.add("c1", "k3", "x"), RangeError);
  // rate_limited: due again only after the delay
  p.transmitting(a.entry, "s1");
  p.retryLater(a.entry, 500);
  assert.deepEqual(p.due(100).map((e) => e.clientMsgId), ["k2"]);
  assert.equal(p.nextDueIn(100), 0);
  assert.deepEqual(p.due(500).map((e) => e.clientMsgId), ["k1", "k2"]);
  assert.equal(p.byFrame("s1"), undefined);
});

test("message store: ordered, one copy per seq, bounded", () => {
  const s = new MessageStore(3);
  for (const seq of [2, 1, 3, 3, 2]) s.add(msg("c1", seq));
  assert.deepEqual(s.list("c1").map((m) => m.seq), [1, 2, 3]);
  s.add(msg("c1", 4));
  assert.deepEqual(s.list("c1").map((m) => m.seq), [2, 3, 4]);
  assert.equal(s.add(msg("c1", 1)), false, "older than everything kept in a full conversation");
  assert.equal(s.oldest("c1"), 2);
});

// --- official accounts -------------------------------------------------------------------------

/** @param {string} a @param {number} seq @param {object} [extra] */
function notice(a, seq, extra = {}) {
  return { account_id: a, notice_id: `n-${a}-${seq}`, seq, ts: seq, body: { kind: "text", text: `n${seq}` }, ...extra };
}

test("notices: seqs with holes are fine; duplicates and replays after a sync are dropped", () => {
  const n = new NoticeInbox({ a1: 2 });
  n.connectionStarted(false);
  // live events before the first sync answered are held back
  assert.deepEqual(n.onEvent({ type: "notice", ...notice("a1", 7) }), []);
  assert.equal(n.held, 1);
  const r = n.onSynced([{ account_id: "a1", cursor: 7, notices: [notice("a1", 5), notice("a1", 7)], has_more: false }]);
  assert.deepEqual(r.delivered.map((e) => e.seq), [5, 7], "holes at 3, 4, 6: other audiences' notices");
  assert.deepEqual(n.goLive(), [], "the held live copy of 7 was covered by the answer");
  assert.deepEqual(n.onEvent({ type: "notice", ...notice("a1", 9) }).map((e) => e.seq), [9]);
  assert.deepEqual(n.onEvent({ type: "notice", ...notice("a1", 9) }), []);
  assert.deepEqual(n.snapshot(), { a1: 9 });
});

test("notices: a recall is handed out once, live or learned from sync", () => {
  const n = new NoticeInbox({ a1: 5 });
  n.connectionStarted(true);
  const live = n.onEvent({ type: "notice_recalled", account_id: "a1", notice_id: "n-a1-5", seq: 5, event_seq: 6, ts: 60 });
  assert.deepEqual(live.map((e) => e.type), ["notice_recalled"]);
  n.connectionStarted(false);
  // after a reconnect the answer shows the same notice recalled: not reported again
  const r = n.onSynced([{ account_id: "a1", cursor: 6, notices: [notice("a1", 5, { body: undefined, recalled: true, recalled_ts: 60 })], has_more: false }]);
  assert.deepEqual(r.delivered, []);
  // a notice I hold recalled while I was away comes back from sync as a recall
  const n2 = new NoticeInbox({ a1: 5 });
  const r2 = n2.onSynced([{ account_id: "a1", cursor: 8, notices: [notice("a1", 4, { recalled: true, recalled_ts: 70 })], has_more: false }]);
  assert.deepEqual(r2.delivered, [{ type: "notice_recalled", account_id: "a1", notice_id: "n-a1-4", seq: 4, event_seq: null, ts: 70 }]);
  // a notice published and recalled while away arrives once, withdrawn
  const r3 = n2.onSynced([{ account_id: "a1", cursor: 10, notices: [notice("a1", 9, { recalled: true })], has_more: true }]);
  assert.equal(r3.delivered.length, 1);
  assert.equal(r3.delivered[0].type, "notice");
  assert.equal(r3.more, true);
});

// --- alerts inbox ------------------------------------------------------------------------------

test("alerts inbox: in order once; a skipped seq asks for sync_inbox; inbox_synced moves the cursor", () => {
  const c = new InboxCursor(3);
  assert.equal(c.offer({ seq: 4 }), "yield");
  assert.equal(c.offer({ seq: 4 }), "drop");
  assert.equal(c.offer({ seq: 7 }), "gap");
  const fresh = c.onSynced(7, [{ seq: 6 }, { seq: 5 }, { seq: 4 }]);
  assert.deepEqual(fresh.map((a) => a.seq), [5, 6]);
  assert.equal(c.cursor, 7, "seq 7 was not deliverable (expired): the cursor still moves past it");
  assert.equal(new InboxCursor(null).offer({ seq: 42 }), "yield", "unknown position: the first alert sets it");
});

test("service desk: a status older than one shown is dropped", () => {
  const f = new RevisionFilter(2);
  assert.equal(f.accept("s1", 3), true);
  assert.equal(f.accept("s1", 2), false);
  assert.equal(f.accept("s1", 3), true);
  assert.equal(f.accept("s2", 1), true);
  assert.equal(f.accept("s3", 1), true);
  assert.equal(f.accept("s1", 0), true, "forgotten beyond the bound");
});

test("service desk: revisions compare within a queue; state changes show; closed is final", () => {
  const f = new RevisionFilter();
  assert.equal(f.accept("s1", 5, "general", "waiting"), true);
  assert.equal(f.accept("s1", 4, "general", "waiting"), false, "an older position in the same queue");
  assert.equal(f.accept("s1", 6, "general", "active"), true);
  assert.equal(f.accept("s1", 5, "general", "waiting"), false, "a late position after being served");
  // transferred to another queue: its own count, which may be lower
  assert.equal(f.accept("s1", 2, "cards", "waiting"), true);
  assert.equal(f.accept("s1", 3, "cards", "active"), true);
  assert.equal(f.accept("s1", 0, "cards", "active"), true, "a transfer to an agent carries no queue revision");
  // the close carries no revision: shown after any position, and nothing after it
  assert.equal(f.accept("s1", 0, "cards", "closed"), true);
  assert.equal(f.accept("s1", 9, "cards", "waiting"), false);
  assert.equal(f.accept("s1", 0, "cards", "closed"), false, "shown once");
  assert.equal(f.accept("s2", 7, "general", "waiting"), true, "another session is not affected");
});

// --- reconnect and close-code decisions --------------------------------------------------------

test("close codes: reconnect on restart, idle, slow consumer and loss; stop on revoke", () => {
  for (const code of [1001, 1006, 1011, 1012, 4000, 4008, null]) assert.equal(classifyClose(code), "reconnect", String(code));
  assert.equal(classifyClose(1000), "stop");
  assert.equal(classifyClose(1008), "auth");
  for (const code of [1002, 1003, 1009, 4999]) assert.equal(classifyClose(code), "fatal");
  assert.equal(classifyHandshakeStatus(401), "auth");
  assert.equal(classifyHandshakeStatus(429), "reconnect");
  assert.equal(classifyHandshakeStatus(503), "reconnect");
  assert.equal(classifyHandshakeStatus(0), "reconnect");
  assert.equal(classifyHandshakeStatus(400), "fatal");
});

test("reconnect policy: capped exponential backoff with jitter, bounded", () => {
  const p = new ReconnectPolicy({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.5, maxAttempts: 5 });
  assert.equal(p.delay(1, 0), 100);
  assert.equal(p.delay(2, 0), 200);
  assert.equal(p.delay(3, 0.999999) > 200, true);
  assert.equal(p.delay(3, 1), 200, "at most half taken off");
  assert.equal(p.delay(10, 0), 1000);
  assert.equal(p.delay(500, 0), 1000);
  assert.equal(p.allows(5, 0), true);
  assert.equal(p.allows(6, 0), false);
  assert.equal(new ReconnectPolicy({ maxElapsedMs: 1000 }).allows(1, 1000), false);
  assert.equal(new ReconnectPolicy().allows(1_000_000, 1e12), true, "by default a browser never gives up");
  assert.throws(() => new ReconnectPolicy({ jitter: 2 }), RangeError);
  assert.equal(sendRetryDelay(1500, 1), 1500);
  assert.equal(sendRetryDelay(null, 1), 250);
  assert.equal(sendRetryDelay(undefined, 30), 8000);
});

test("pacer and keep-alive follow hello.limits", () => {
  const p = Pacer.forLimits({ ...DEFAULT_LIMITS, frames_per_second: 10, frame_burst: 2 }, 0);
  assert.equal(p.burst, 1);
  assert.equal(p.reserve(0), 0);
  assert.equal(Math.round(p.reserve(0)), 111, "the next frame waits 1/9 s");
  assert.equal(keepAliveInterval(DEFAULT_LIMITS), 30000);
  assert.equal(keepAliveInterval({ ...DEFAULT_LIMITS, idle_timeout: 6 }), 2000, "well inside the idle timeout (4000)");
});

// --- sync frames ------------------------------------------------------------------------------

test("sync plan: one frame when it fits; listed_only chunks under the frame limit when not", () => {
  let n = 0;
  const id = () => `y${++n}`;
  const small = syncPlan({ id, since: { c1: 3, c2: 0 }, accounts: { a1: 2 }, limit: 100, maxFrameBytes: 65536 });
  assert.equal(small.discover, false);
  assert.deepEqual(small.frames, [{ type: "sync", id: "y1", since: { c1: 3 }, limit: 100, accounts: { a1: 2 } }]);
  /** @type {Record<string, number>} */
  const since = {};
  for (let i = 0; i < 300; i += 1) since[`00000000-0000-4000-8000-${String(i).padStart(12, "0")}`] = i;
  const big = syncPlan({ id, since, accounts: { a1: 2 }, limit: 100, maxFrameBytes: 4096 });
  assert.equal(big.discover, true);
  assert.ok(big.frames.length > 1);
  const listed = big.frames.flatMap((f) => Object.keys(f.since));
  assert.deepEqual(listed.sort(), Object.keys(since).sort(), "every conversation in exactly one frame, zeros included");
  for (const f of big.frames) {
    assert.equal(f.listed_only, true);
    assert.ok(frameBytes(f) <= 4096, `${frameBytes(f)} bytes`);
    assert.deepEqual(f.accounts, { a1: 2 }, "each frame keeps the account cursors (unlisted accounts would restart at the read position)");
  }
});

// --- validation --------------------------------------------------------------------------------

test("text and ids are checked as the hub checks them", () => {
  assert.deepEqual(validateText("你好\n", DEFAULT_LIMITS), { kind: "text", text: "你好\n" });
  assert.throws(() => validateText("", DEFAULT_LIMITS), RangeError);
  assert.throws(() => validateText("a\u0000b", DEFAULT_LIMITS), TypeError);
  assert.throws(() => validateText("\ud800", DEFAULT_LIMITS), /surrogate/);
  assert.doesNotThrow(() => validateText("😀".repeat(4000), DEFAULT_LIMITS), "code points, not UTF-16 units");
  assert.throws(() => validateText("x".repeat(4001), DEFAULT_LIMITS), RangeError);
  assert.equal(validateId("id", "k1"), "k1");
  assert.throws(() => validateId("id", "a\nb"), TypeError);
  assert.throws(() => validateId("id", "x".repeat(65)), TypeError);
  assert.throws(() => validateId("id", 7), TypeError);
});
