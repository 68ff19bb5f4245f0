// media.js: the pure helpers, the URL cache, and MediaClient against a fake fetch and a fake
// WebSocket (the test plays the hub).
import { test } from "node:test";
import assert from "node:assert/strict";

import { Client, HubError, HubSession } from "../src/client.js";
import {
  MediaClient,
  MediaUrlCache,
  baseType,
  checkMediaFile,
  chooseRecorderType,
  formatDuration,
  imageBody,
  mediaKindOf,
  scaleWaveform,
  voiceBody,
} from "../src/media.js";
import * as entry from "../src/bankhub.js";
import { ReconnectPolicy } from "../src/state.js";

const C1 = "c1";

test("the SDK entry exports the media API", () => {
  for (const name of ["MediaClient", "MediaUrlCache", "chooseRecorderType", "formatDuration", "scaleWaveform", "checkMediaFile"]) {
    assert.equal(typeof (/** @type {any} */ (entry))[name], "function", name);
  }
});

test("chooseRecorderType: Opus in WebM, then Opus in Ogg, then MP4 (Safari); null when none or no probe", () => {
  const supports = (/** @type {string[]} */ types) => (/** @type {string} */ t) => types.includes(t);
  assert.equal(chooseRecorderType(supports(["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"])), "audio/webm;codecs=opus");
  assert.equal(chooseRecorderType(supports(["audio/ogg;codecs=opus"])), "audio/ogg;codecs=opus", "Firefox without WebM");
  assert.equal(chooseRecorderType(supports(["audio/mp4"])), "audio/mp4", "Safari records AAC in MP4");
  assert.equal(chooseRecorderType(supports(["audio/wav"])), null);
  assert.equal(chooseRecorderType(undefined), null);
  // a probe that throws for a type it does not know is skipped, not fatal
  assert.equal(
    chooseRecorderType((t) => {
      if (t.startsWith("audio/webm")) throw new Error("unknown");
      return t === "audio/mp4";
    }),
    "audio/mp4",
  );
});

test("formatDuration: m:ss, h:mm:ss; anything above zero is at least a second; bad values are 0:00", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(400), "0:01");
  assert.equal(formatDuration(7_000), "0:07");
  assert.equal(formatDuration(7_499), "0:07");
  assert.equal(formatDuration(65_000), "1:05");
  assert.equal(formatDuration(3_723_000), "1:02:03");
  assert.equal(formatDuration(-5), "0:00");
  assert.equal(formatDuration(Number.NaN), "0:00");
  assert.equal(formatDuration(Number.POSITIVE_INFINITY), "0:00", "a recording whose length is not known yet");
  assert.equal(formatDuration(null), "0:00");
});

test("scaleWaveform: down-sampling keeps the loudest of each span, up-sampling repeats; clamped; floor for silence", () => {
  assert.deepEqual(scaleWaveform([0, 100, 50, 20], 2, 0), [1, 0.5]);
  assert.deepEqual(scaleWaveform([0, 100], 4, 0), [0, 0, 1, 1]);
  assert.deepEqual(scaleWaveform([150, -3, "x", null], 4, 0), [1, 0, 0, 0], "clamped; non-numbers are silence");
  assert.deepEqual(scaleWaveform([], 3), [0.08, 0.08, 0.08]);
  assert.deepEqual(scaleWaveform(undefined, 2, 0.1), [0.1, 0.1]);
  assert.deepEqual(scaleWaveform([50], 1, 0.2), [0.6]);
  assert.deepEqual(scaleWaveform([10, 20], 0), []);
  const bars = scaleWaveform(Array.from({ length: 64 }, (_, i) => i), 28);
  assert.equal(bars.length, 28);
  assert.ok(bars.every((b) => b >= 0.08 && b <= 1));
});

test("types: base type without parameters; image and voice kinds; others refused before upload", () => {
  assert.equal(baseType("Audio/WebM; codecs=opus"), "audio/webm");
  assert.equal(mediaKindOf("image/jpeg"), "image");
  assert.equal(mediaKindOf("audio/mp4"), "voice");
  assert.equal(mediaKindOf("image/gif"), null);
  assert.equal(mediaKindOf("image/svg+xml"), null, "no SVG: it can carry script");
  assert.equal(checkMediaFile({ type: "audio/ogg;codecs=opus", size: 10 }), "audio/ogg");
  assert.throws(() => checkMediaFile({ type: "application/pdf", size: 10 }), (e) => e instanceof HubError && e.status === 415 && e.code === "unsupported_media_type");
  assert.throws(() => checkMediaFile({ type: "audio/webm", size: 10 }, { kind: "image" }), (e) => e instanceof HubError && e.status === 415);
  assert.throws(() => checkMediaFile({ type: "image/png", size: 11 }, { maxBytes: 10 }), (e) => e instanceof HubError && e.status === 413);
  assert.throws(() => checkMediaFile({ type: "image/png", size: 0 }), (e) => e instanceof HubError && e.code === "empty_media");
});

test("bodies: image with a trimmed caption (an empty one left out), voice; bad ids refused", () => {
  assert.deepEqual(imageBody("md1", "  看这张  "), { kind: "image", media_id: "md1", caption: "看这张" });
  assert.deepEqual(imageBody("md1", "   "), { kind: "image", media_id: "md1" });
  assert.deepEqual(imageBody("md1"), { kind: "image", media_id: "md1" });
  assert.deepEqual(voiceBody("md2"), { kind: "voice", media_id: "md2" });
  assert.throws(() => voiceBody(""), TypeError);
  assert.throws(() => imageBody("a\nb"), TypeError);
  assert.throws(() => imageBody("md1", "x".repeat(5000)), RangeError);
});

test("MediaUrlCache: kept until the margin before expiry, then asked again; bounded, oldest first", () => {
  let now = 1_000_000;
  const cache = new MediaUrlCache({ marginMs: 30_000, max: 2, now: () => now });
  const m = (/** @type {string} */ id, /** @type {number} */ exp) => ({ media_id: id, conversation_id: C1, kind: /** @type {"image"} */ ("image"), content_type: "image/jpeg", bytes: 1, state: /** @type {"ready"} */ ("ready"), urls: { full: `/f/${id}` }, expires_at: exp });
  cache.put(m("a", now + 60_000));
  assert.equal(cache.get("a")?.urls?.full, "/f/a");
  now += 29_999;
  assert.ok(cache.get("a"), "30 s and more left: still good");
  now += 1;
  assert.equal(cache.get("a"), null, "within the margin: asked again");
  assert.equal(cache.size, 0);
  cache.put({ ...m("x", now + 60_000), urls: undefined }); // no URLs: nothing to keep
  assert.equal(cache.size, 0);
  cache.put(m("a", now + 60_000));
  cache.put(m("b", now + 60_000));
  cache.put(m("c", now + 60_000));
  assert.equal(cache.size, 2);
  assert.equal(cache.get("a"), null, "the oldest went first");
  assert.ok(cache.get("b") && cache.get("c"));
});

/** A fetch playing the hub's media endpoints; records the requests. */
function mediaHub() {
  /** @type {Array<{method: string, url: string, headers: Record<string, string>, body: any}>} */
  const calls = [];
  let infos = 0;
  let expiresIn = 300_000;
  /** @type {typeof fetch} */
  const f = async (input, init = {}) => {
    const url = new URL(String(input));
    const headers = /** @type {Record<string, string>} */ (init.headers);
    calls.push({ method: String(init.method), url: `${url.pathname}${url.search}`, headers, body: init.body });
    const json = (/** @type {number} */ status, /** @type {unknown} */ body) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
    if (init.method === "POST" && url.pathname === `/v1/conversations/${C1}/media`) {
      const size = /** @type {Blob} */ (init.body).size;
      if (size > 100) return json(413, { code: "too_large", title: "Too large", detail: "over the cap" });
      if (headers["content-type"] === "image/png") return json(415, { code: "unsupported_media_type", title: "Unsupported", detail: "content is not image/png" });
      return json(201, { media_id: "md1", conversation_id: C1, kind: "image", content_type: headers["content-type"], bytes: size, width: 4, height: 3, state: "ready" });
    }
    if (init.method === "GET" && url.pathname === "/v1/media/md1") {
      infos += 1;
      return json(200, { media_id: "md1", conversation_id: C1, kind: "image", content_type: "image/jpeg", bytes: 9, state: "ready", urls: { full: `/v1/media/md1/full?sig=${infos}`, thumb: `/v1/media/md1/thumb?sig=${infos}` }, expires_at: Date.now() + expiresIn });
    }
    return json(404, { code: "not_found", title: "Not found", detail: "no such media" });
  };
  return { fetch: f, calls, infos: () => infos, setExpiresIn: (/** @type {number} */ ms) => (expiresIn = ms) };
}

test("uploadMedia: the raw bytes with the base type declared, bearer or CSRF; 413 and 415 as HubError", async () => {
  const hub = mediaHub();
  const media = new MediaClient(HubSession.withToken("http://hub.test", "tok", { fetch: hub.fetch }));
  const blob = new Blob([new Uint8Array([0xff, 0xd8, 0xff, 0xe0])], { type: "image/jpeg" });
  const m = await media.uploadMedia(C1, blob);
  assert.equal(m.media_id, "md1");
  assert.equal(hub.calls[0].method, "POST");
  assert.equal(hub.calls[0].url, `/v1/conversations/${C1}/media`);
  assert.equal(hub.calls[0].headers["content-type"], "image/jpeg");
  assert.equal(hub.calls[0].headers.authorization, "Bearer tok");
  assert.equal(hub.calls[0].body, blob, "the file itself, not JSON");
  // a recording's type loses its codecs parameter
  await media.uploadMedia(C1, new Blob([new Uint8Array(8)], { type: "audio/webm;codecs=opus" }));
  assert.equal(hub.calls[1].headers["content-type"], "audio/webm");
  await assert.rejects(media.uploadMedia(C1, new Blob([new Uint8Array(101)], { type: "image/jpeg" })), (e) => e instanceof HubError && e.status === 413 && e.code === "too_large");
  await assert.rejects(media.uploadMedia(C1, new Blob([new Uint8Array(5)], { type: "image/png" })), (e) => e instanceof HubError && e.status === 415 && e.code === "unsupported_media_type");
  // refused here, before any request: a GIF, an empty file
  const before = hub.calls.length;
  await assert.rejects(media.uploadMedia(C1, new Blob([new Uint8Array(5)], { type: "image/gif" })), (e) => e instanceof HubError && e.status === 415);
  await assert.rejects(media.uploadMedia(C1, new Blob([], { type: "image/jpeg" })), (e) => e instanceof HubError && e.code === "empty_media");
  assert.equal(hub.calls.length, before);

  // the cookie mode sends the CSRF token (kept in memory only), no Authorization
  const cookie = new HubSession({ base: "http://hub.test", options: { fetch: hub.fetch }, mode: "cookie", csrfToken: "csrf1" });
  await new MediaClient(cookie).uploadMedia(C1, blob);
  const last = hub.calls[hub.calls.length - 1];
  assert.equal(last.headers["x-csrf-token"], "csrf1");
  assert.equal(last.headers.authorization, undefined);
});

test("mediaInfo: one request for concurrent look-ups, cached until near expiry, refresh asks again; 404 as HubError", async () => {
  const hub = mediaHub();
  const media = new MediaClient(HubSession.withToken("http://hub.test", "tok", { fetch: hub.fetch }));
  const [a, b] = await Promise.all([media.mediaInfo("md1"), media.mediaInfo("md1")]);
  assert.equal(hub.infos(), 1);
  assert.equal(a, b);
  assert.equal(a.urls?.thumb, "/v1/media/md1/thumb?sig=1");
  await media.mediaInfo("md1");
  assert.equal(hub.infos(), 1, "answered from the cache");
  const fresh = await media.mediaInfo("md1", { refresh: true });
  assert.equal(hub.infos(), 2);
  assert.equal(fresh.urls?.full, "/v1/media/md1/full?sig=2");
  // URLs that expire within the margin are not kept
  hub.setExpiresIn(10_000);
  await media.mediaInfo("md1", { refresh: true });
  await media.mediaInfo("md1");
  assert.equal(hub.infos(), 4);
  await assert.rejects(media.mediaInfo("nope"), (e) => e instanceof HubError && e.status === 404 && e.code === "not_found");
  assert.throws(() => new MediaClient(HubSession.withToken("http://hub.test", "tok", { fetch: hub.fetch })).sendVoice(C1, "md1"), TypeError);
});

/** The smallest WebSocket the client needs, driven by the test. */
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
    this.onopen = null;
    /** @type {((ev: any) => void) | null} */
    this.onmessage = null;
    /** @type {((ev: any) => void) | null} */
    this.onclose = null;
    /** @type {((ev: any) => void) | null} */
    this.onerror = null;
    FakeWebSocket.sockets.push(this);
  }
  /** @param {string} data */
  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  accept() {
    this.readyState = 1;
    this.protocol = "bankhub.v1";
    this.push({ type: "hello", protocol: 1, session_id: "s", user_id: "u-me", username: "c.li", role: "customer", node: "n1", server_time: 1, limits: { idle_timeout: 90 }, features: [] });
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

test("sendImage / sendVoice: send frames with the media bodies, pending, resent once after a drop with the same client_msg_id", async () => {
  FakeWebSocket.sockets = [];
  /** @type {typeof fetch} */
  const f = async (input) => {
    const path = new URL(String(input)).pathname;
    if (path === "/v1/ws-tickets") return new Response(JSON.stringify({ ticket: "t", expires_in: 30 }), { status: 201 });
    return new Response(JSON.stringify({ conversations: [], accounts: [], next_cursor: null, unread: 0, last_seq: 0 }), { status: 200 });
  };
  const session = HubSession.withToken("http://hub.test", "tok", { fetch: f });
  const client = Client.connect(session, { WebSocketImpl: /** @type {any} */ (FakeWebSocket), reconnect: new ReconnectPolicy({ initialDelayMs: 1, maxDelayMs: 5, jitter: 0 }) });
  const media = new MediaClient(client);
  const first = /** @type {FakeWebSocket} */ (await until(() => FakeWebSocket.sockets[0], "socket"));
  first.accept();
  await client.ready();

  const image = media.sendImage(C1, "md1", { caption: " 我的照片 ", clientMsgId: "k-img" });
  const frame = await until(() => first.frames("send")[0], "image send");
  assert.deepEqual(frame.body, { kind: "image", media_id: "md1", caption: "我的照片" });
  assert.equal(frame.client_msg_id, "k-img");
  assert.deepEqual(client.pending(C1).map((p) => [p.clientMsgId, p.kind, p.text]), [["k-img", "image", "我的照片"]]);
  first.push({ type: "sent", id: frame.id, conversation_id: C1, client_msg_id: "k-img", message_id: "m1", seq: 1, ts: 101 });
  const sentImage = await image;
  assert.deepEqual(sentImage.body, { kind: "image", media_id: "md1", caption: "我的照片" }, "the acknowledged message carries the image body");

  // a voice note in flight when the connection drops: sent again, same client_msg_id, stored once
  const voice = media.sendVoice(C1, "md2", { clientMsgId: "k-voice" });
  await until(() => first.frames("send").length === 2, "voice send");
  assert.deepEqual(first.frames("send")[1].body, { kind: "voice", media_id: "md2" });
  first.drop(1012);
  const second = /** @type {FakeWebSocket} */ (await until(() => FakeWebSocket.sockets[1], "reconnect"));
  second.accept();
  const resync = await until(() => second.frames("sync")[0], "resync");
  second.push({ type: "synced", id: resync.id, conversations: [], accounts: [] });
  const resend = await until(() => second.frames("send")[0], "resend");
  assert.equal(resend.client_msg_id, "k-voice");
  assert.deepEqual(resend.body, { kind: "voice", media_id: "md2" });
  second.push({ type: "sent", id: resend.id, conversation_id: C1, client_msg_id: "k-voice", message_id: "m2", seq: 2, ts: 102, duplicate: true });
  assert.equal((await voice).body.kind, "voice");
  assert.deepEqual(client.messages(C1).map((m) => [m.seq, m.body.kind]), [[1, "image"], [2, "voice"]]);

  // the same client_msg_id with another body is refused (the hub would keep only the first)
  const held = client.sendBody(C1, { kind: "voice", media_id: "md3" }, { clientMsgId: "k-x" });
  await assert.rejects(client.sendBody(C1, { kind: "voice", media_id: "md4" }, { clientMsgId: "k-x" }), TypeError);
  await assert.rejects(client.sendBody(C1, /** @type {any} */ ({ media_id: "md4" })), TypeError);
  const heldFrame = await until(() => second.frames("send")[1], "held send");
  second.push({ type: "sent", id: heldFrame.id, conversation_id: C1, client_msg_id: "k-x", message_id: "m3", seq: 3, ts: 103 });
  await held;
  client.close();
});
