// Typing, presence and read positions: the pure state (node --test clients/web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";

import { PresenceBook, ReadPositions, TypingBoard, TypingSender } from "../src/liveness.js";

test("TypingSender: one start per interval, one stop after a start", () => {
  const s = new TypingSender(3000);
  assert.equal(s.input(0), true);
  assert.equal(s.input(1000), false);
  assert.equal(s.input(2999), false);
  assert.equal(s.input(3000), true);
  assert.equal(s.stop(), true);
  assert.equal(s.stop(), false);
  assert.equal(s.input(3100), true);
  assert.throws(() => new TypingSender(0), RangeError);
});

/** @param {string} user @param {boolean} active @param {string} [conv] */
const ev = (user, active, conv = "c") => ({ conversation_id: conv, user_id: user, active, ttl_ms: 6000 });

test("TypingBoard: shows, clears on stop and on a message, expires a lost stop", () => {
  const b = new TypingBoard();
  b.onTyping(ev("wang", true), 0);
  b.onTyping(ev("li", true, "other"), 0);
  assert.deepEqual(b.typing("c", 1000), ["wang"]);
  assert.equal(b.nextExpiry(), 6000);
  b.onTyping(ev("wang", false), 2000);
  assert.deepEqual(b.typing("c", 2000), []);
  b.onTyping(ev("wang", true), 3000);
  assert.deepEqual(b.typing("c", 8999), ["wang"]);
  assert.deepEqual(b.typing("c", 9000), []);
  b.onTyping(ev("wang", true), 10000);
  b.clear("c", "wang");
  assert.deepEqual(b.typing("c", 10000), []);
});

test("TypingBoard is bounded", () => {
  const b = new TypingBoard(2);
  for (let i = 0; i < 5; i += 1) b.onTyping(ev(`u${i}`, true), 0);
  assert.deepEqual(b.typing("c", 0), ["u3", "u4"]);
});

test("PresenceBook: list, then events; unknown is null", () => {
  const p = new PresenceBook();
  p.onList([{ user_id: "wang", online: false, last_seen: 5 }, { user_id: "zhou" }]);
  assert.equal(p.online("wang"), false);
  assert.equal(p.lastSeen("wang"), 5);
  assert.equal(p.online("zhou"), null);
  assert.equal(p.online("nobody"), null);
  p.onPresence({ user_id: "wang", online: true });
  assert.equal(p.online("wang"), true);
  assert.equal(p.lastSeen("wang"), null);
  p.onPresence({ user_id: "wang", online: false, last_seen: 9 });
  assert.equal(p.lastSeen("wang"), 9);
});

test("ReadPositions: who has read my message; positions never move back", () => {
  const r = new ReadPositions();
  r.load("c", [{ user_id: "me", read_seq: 4 }, { user_id: "wang", read_seq: 2 }]);
  assert.deepEqual(r.readBy("c", 3, "me"), []);
  r.onReceipt({ conversation_id: "c", user_id: "wang", read_seq: 3 });
  assert.deepEqual(r.readBy("c", 3, "me"), ["wang"]);
  r.onReceipt({ conversation_id: "c", user_id: "wang", read_seq: 1 });
  assert.deepEqual(r.readBy("c", 3, "me"), ["wang"]);
  assert.deepEqual(r.readBy("other", 1, "me"), []);
});
