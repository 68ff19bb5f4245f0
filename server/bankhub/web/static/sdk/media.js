// Pictures and voice notes: upload over HTTP, short-lived signed URLs, and the `image` /
// `voice` message bodies that refer to them.
//
//   import { Client, MediaClient } from "/static/sdk/bankhub.js";
//   const media = new MediaClient(client);
//   const m = await media.uploadMedia(conversationId, file);      // POST /v1/conversations/{id}/media
//   await media.sendImage(conversationId, m.media_id, { caption }); // a `send` with {kind: "image", ...}
//   const info = await media.mediaInfo(m.media_id);                // GET /v1/media/{id}: urls + expires_at
//   img.src = info.urls.thumb;
//
// The hub judges a file's type by its content (JPEG, PNG, WebP; Opus in Ogg or WebM, AAC in
// MP4), re-encodes images (EXIF and GPS are gone) and answers 413 over its size cap, 415 for
// content it does not accept. The URLs it hands out are bound to the signed-in user and
// expire within minutes: {@link MediaClient#mediaInfo} keeps them until shortly before
// `expires_at` and asks again after. Nothing is written to web storage.

import { HubError, HubSession } from "./client.js";
import { validateId, validateText, DEFAULT_LIMITS } from "./state.js";

/** @import { Client } from "./client.js" */
/** @import { Message } from "./state.js" */

/** The image types the hub accepts (the declared `Content-Type`; the content must agree). */
export const IMAGE_TYPES = Object.freeze(["image/jpeg", "image/png", "image/webp"]);
/** The voice types the hub accepts: Opus in Ogg or WebM, AAC in MP4 (Safari's recorder). */
export const VOICE_TYPES = Object.freeze(["audio/ogg", "audio/webm", "audio/mp4"]);
/** The MediaRecorder types tried, in order: Chromium and Firefox record Opus, Safari AAC in MP4. */
export const RECORDER_TYPES = Object.freeze(["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"]);
/** A cached media URL is asked for again this long before it expires (ms). */
export const URL_MARGIN_MS = 30_000;
/** At most this many waveform values come with a voice note (each 0..100). */
export const MAX_WAVEFORM = 64;

/**
 * A stored picture or voice note, as the hub answers it (`GET /v1/media/{id}` adds `urls` and
 * `expires_at`). `state`: "ready" (may be sent and shown), "quarantined" (held until the
 * scanner says it is clean), "rejected".
 * @typedef {object} Media
 * @property {string} media_id
 * @property {string} conversation_id
 * @property {"image" | "voice"} kind
 * @property {string} content_type
 * @property {number} bytes
 * @property {number} [width]
 * @property {number} [height]
 * @property {number} [duration_ms]
 * @property {number[]} [waveform]
 * @property {"ready" | "quarantined" | "rejected"} state
 * @property {{full: string, thumb?: string, preview?: string}} [urls]
 * @property {number} [expires_at]  ms since the epoch
 */

/** @typedef {{kind: "image", media_id: string, caption?: string}} ImageBody */
/** @typedef {{kind: "voice", media_id: string}} VoiceBody */

/**
 * The media type without parameters, lower case (`"audio/webm;codecs=opus"` → `"audio/webm"`).
 * @param {string | null | undefined} type
 * @returns {string}
 */
export function baseType(type) {
  return String(type ?? "").split(";")[0].trim().toLowerCase();
}

/**
 * "image", "voice" or null: what the hub would make of a file declared as `type`.
 * @param {string | null | undefined} type
 * @returns {"image" | "voice" | null}
 */
export function mediaKindOf(type) {
  const base = baseType(type);
  if (IMAGE_TYPES.includes(base)) return "image";
  if (VOICE_TYPES.includes(base)) return "voice";
  return null;
}

/**
 * The first of {@link RECORDER_TYPES} the browser's MediaRecorder can record, null when none
 * is (or `isTypeSupported` is missing): then the recorder's own default is used and the hub
 * judges what it made.
 * @param {((type: string) => boolean) | null | undefined} isTypeSupported  e.g. `MediaRecorder.isTypeSupported`
 * @param {readonly string[]} [candidates]
 * @returns {string | null}
 */
export function chooseRecorderType(isTypeSupported, candidates = RECORDER_TYPES) {
  if (typeof isTypeSupported !== "function") return null;
  for (const type of candidates) {
    try {
      if (isTypeSupported(type)) return type;
    } catch {
      // a browser that throws for a type it does not know: try the next
    }
  }
  return null;
}

/**
 * A duration for people: "0:07", "1:05", "1:02:03". Anything above zero shows at least one
 * second (a 0.4 s note is "0:01", not "0:00"); a bad value is "0:00".
 * @param {number | null | undefined} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  const n = typeof ms === "number" && Number.isFinite(ms) && ms > 0 ? ms : 0;
  const total = n > 0 ? Math.max(1, Math.round(n / 1000)) : 0;
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/**
 * Scale a waveform summary (values 0..100, as the hub stores them) to `bars` bar heights
 * between `floor` and 1: fewer bars take the loudest value of their span, more bars repeat
 * the nearest value. Values out of range are clamped, non-numbers read as silence; an empty
 * or missing summary gives flat bars at `floor`.
 * @param {readonly unknown[] | null | undefined} values
 * @param {number} bars
 * @param {number} [floor]  the lowest bar (so silence still shows a line)
 * @returns {number[]}
 */
export function scaleWaveform(values, bars, floor = 0.08) {
  const count = Math.max(0, Math.floor(Number.isFinite(bars) ? bars : 0));
  const lo = Math.min(1, Math.max(0, floor));
  const src = (Array.isArray(values) ? values : []).map((v) => (typeof v === "number" && Number.isFinite(v) ? Math.min(100, Math.max(0, v)) : 0));
  /** @type {number[]} */
  const out = [];
  for (let i = 0; i < count; i += 1) {
    let level = 0;
    if (src.length) {
      const start = Math.floor((i * src.length) / count);
      const end = Math.max(start + 1, Math.floor(((i + 1) * src.length) / count));
      for (let j = start; j < end && j < src.length; j += 1) level = Math.max(level, src[j]);
    }
    out.push(Math.round((lo + (1 - lo) * (level / 100)) * 1000) / 1000);
  }
  return out;
}

/**
 * Check a file before uploading it: its declared type must be one the hub accepts (of
 * `kind`, if given) and its size at most `maxBytes` (if given). Throws HubError
 * `unsupported_media_type` (status 415) or `too_large` (413), as the hub would
 * answer; returns the base type to declare.
 * @param {{type?: string, size?: number}} file
 * @param {{kind?: "image" | "voice", maxBytes?: number | null}} [o]
 * @returns {string}
 */
export function checkMediaFile(file, o = {}) {
  const type = baseType(file?.type);
  const kind = mediaKindOf(type);
  if (kind === null || (o.kind && kind !== o.kind)) {
    throw new HubError("unsupported_media_type", `${type || "this file"} is not an accepted ${o.kind ?? "media"} type`, { status: 415 });
  }
  const size = typeof file.size === "number" ? file.size : 0;
  if (size <= 0) throw new HubError("empty_media", "the file is empty", { status: 400 });
  if (o.maxBytes != null && size > o.maxBytes) {
    throw new HubError("too_large", `${size} bytes is over the cap of ${o.maxBytes}`, { status: 413 });
  }
  return type;
}

/**
 * The `image` body to send (the caption trimmed; an empty one left out).
 * @param {string} mediaId
 * @param {string | null} [caption]
 * @returns {ImageBody}
 */
export function imageBody(mediaId, caption) {
  validateId("media_id", mediaId);
  const text = (caption ?? "").trim();
  if (!text) return { kind: "image", media_id: mediaId };
  return { kind: "image", media_id: mediaId, caption: validateText(text, DEFAULT_LIMITS).text };
}

/** The `voice` body to send. @param {string} mediaId @returns {VoiceBody} */
export function voiceBody(mediaId) {
  validateId("media_id", mediaId);
  return { kind: "voice", media_id: mediaId };
}

/**
 * Signed media URLs, kept until `marginMs` before they expire; at most `max` entries (the
 * oldest goes first). Pure: the clock is `now`.
 */
export class MediaUrlCache {
  /** @param {{marginMs?: number, max?: number, now?: () => number}} [o] */
  constructor(o = {}) {
    this.marginMs = o.marginMs ?? URL_MARGIN_MS;
    this.max = o.max ?? 500;
    this.now = o.now ?? Date.now;
    /** @type {Map<string, Media>} */
    this._byId = new Map();
  }

  get size() {
    return this._byId.size;
  }

  /** The cached answer for `mediaId` if its URLs are still good for a while, else null. @param {string} mediaId @returns {Media | null} */
  get(mediaId) {
    const hit = this._byId.get(mediaId);
    if (!hit) return null;
    if (typeof hit.expires_at !== "number" || hit.expires_at - this.marginMs <= this.now()) {
      this._byId.delete(mediaId);
      return null;
    }
    return hit;
  }

  /** Keep an answer (only one with URLs and an expiry). @param {Media} media */
  put(media) {
    if (!media || !media.urls || typeof media.expires_at !== "number") return;
    this._byId.delete(media.media_id);
    this._byId.set(media.media_id, media);
    while (this._byId.size > this.max) {
      const oldest = this._byId.keys().next().value;
      if (oldest === undefined) break;
      this._byId.delete(oldest);
    }
  }

  /** @param {string} mediaId */
  forget(mediaId) {
    this._byId.delete(mediaId);
  }
}

/** @param {Response} response @returns {Promise<HubError>} */
async function problemOf(response) {
  /** @type {{code?: string, detail?: string, title?: string}} */
  let p = {};
  try {
    p = await response.json();
  } catch {
    p = {};
  }
  return new HubError(p.code || `http_${response.status}`, p.detail || p.title || response.statusText, { status: response.status, title: p.title });
}

/**
 * Media for one signed-in session: upload, look up (with the URL cache) and send.
 * Construct it on a {@link Client} (sends go through it) or a {@link HubSession} (upload
 * and look-up only).
 */
export class MediaClient {
  /**
   * @param {Client | HubSession} owner
   * @param {{cache?: MediaUrlCache}} [o]
   */
  constructor(owner, o = {}) {
    /** @type {Client | null} */
    this.client = owner instanceof HubSession ? null : /** @type {Client} */ (owner);
    /** @type {HubSession} */
    this.session = owner instanceof HubSession ? owner : /** @type {Client} */ (owner).session;
    this.cache = o.cache ?? new MediaUrlCache();
    /** @type {Map<string, Promise<Media>>} look-ups in flight, one per media */
    this._inFlight = new Map();
  }

  /**
   * Upload a picture or a voice note to a conversation I am a member of
   * (`POST /v1/conversations/{id}/media`, the raw bytes as the body). Resolves with the
   * hub's `Media` (201). Throws HubError: 415 `unsupported_media_type` (checked here first
   * from the declared type, then by the hub from the content), 413 over the size cap, 404
   * not a member, `network_error`.
   * @param {string} conversationId
   * @param {Blob} blob  a File from an `<input type=file>`, or a MediaRecorder recording
   * @param {{contentType?: string, maxBytes?: number | null, signal?: AbortSignal}} [o]
   * @returns {Promise<Media>}
   */
  async uploadMedia(conversationId, blob, o = {}) {
    validateId("conversation_id", conversationId);
    const type = checkMediaFile({ type: o.contentType ?? blob.type, size: blob.size }, { maxBytes: o.maxBytes });
    const s = this.session;
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json", "content-type": type };
    if (s.mode === "token" && s._token) headers.authorization = `Bearer ${s._token}`;
    if (s.mode === "cookie" && s._csrf) headers["x-csrf-token"] = s._csrf;
    /** @type {Response} */
    let response;
    try {
      response = await s._fetch(`${s.httpBase}/v1/conversations/${encodeURIComponent(conversationId)}/media`, {
        method: "POST",
        headers,
        body: blob,
        credentials: s.mode === "cookie" ? "same-origin" : "omit",
        cache: "no-store",
        signal: o.signal,
      });
    } catch (e) {
      throw new HubError("network_error", e instanceof Error ? e.message : String(e));
    }
    if (!response.ok) throw await problemOf(response);
    return /** @type {Media} */ (await response.json());
  }

  /**
   * A media's metadata with signed URLs (`GET /v1/media/{id}`): `urls.full` (and for a
   * picture `urls.thumb`, `urls.preview`), good until `expires_at`. Answered from the cache
   * while the URLs have more than {@link URL_MARGIN_MS} left; `refresh` asks the hub anyway
   * (e.g. after an `<img>` failed to load). Throws HubError 404 `not_found` for a media that
   * does not exist or is not mine to see (the same answer).
   * @param {string} mediaId
   * @param {{refresh?: boolean}} [o]
   * @returns {Promise<Media>}
   */
  async mediaInfo(mediaId, o = {}) {
    validateId("media_id", mediaId);
    if (o.refresh) this.cache.forget(mediaId);
    const hit = this.cache.get(mediaId);
    if (hit) return hit;
    const running = this._inFlight.get(mediaId);
    if (running) return running;
    const ask = (async () => {
      try {
        const media = /** @type {Media} */ (await this.session.request("GET", `/v1/media/${encodeURIComponent(mediaId)}`));
        this.cache.put(media);
        return media;
      } finally {
        this._inFlight.delete(mediaId);
      }
    })();
    this._inFlight.set(mediaId, ask);
    return ask;
  }

  /**
   * Send an uploaded picture: a `send` with `{kind: "image", media_id, caption?}`, pending
   * and retried like a text (see `Client.sendBody`). The hub refuses a media that is not
   * mine, of another conversation, or not ready.
   * @param {string} conversationId
   * @param {string} mediaId
   * @param {{caption?: string | null, clientMsgId?: string, timeoutMs?: number | null}} [o]
   * @returns {Promise<Message>}
   */
  sendImage(conversationId, mediaId, o = {}) {
    const body = imageBody(mediaId, o.caption);
    return this._client().sendBody(conversationId, body, { clientMsgId: o.clientMsgId, timeoutMs: o.timeoutMs, text: body.caption ?? "" });
  }

  /**
   * Send an uploaded voice note: a `send` with `{kind: "voice", media_id}`.
   * @param {string} conversationId
   * @param {string} mediaId
   * @param {{clientMsgId?: string, timeoutMs?: number | null}} [o]
   * @returns {Promise<Message>}
   */
  sendVoice(conversationId, mediaId, o = {}) {
    return this._client().sendBody(conversationId, voiceBody(mediaId), { clientMsgId: o.clientMsgId, timeoutMs: o.timeoutMs });
  }

  /** @returns {Client} */
  _client() {
    if (!this.client) throw new TypeError("sending needs a MediaClient made on a Client, not a HubSession");
    return this.client;
  }
}
