// Transport: HTTP sessions (cookie + CSRF in browsers, bearer token elsewhere) and one
// self-healing WebSocket connection per Client. The bookkeeping is in state.js.
//
// Guarantees (per Client), as the Python SDK gives them:
// * sends are never lost or duplicated: each carries a client_msg_id and stays pending
//   until the hub acknowledges it; after a reconnect it is sent again with the same
//   client_msg_id, which the hub stores once;
// * messages are handed out once, in seq order per conversation: a live message that
//   skips seqs triggers a `sync` instead; after a reconnect the client syncs from its
//   cursors (paging while `has_more`) before it resends and lets requests through;
// * notices, recalls and alerts are handed out once, in stream order;
// * reconnects are automatic (backoff with jitter) after a network loss or a close with
//   1001/1006/1011/1012/1013/4000/4008; 1008 (session revoked, abuse) or a refused
//   ws-ticket (401/403) ends the client; 1000 ends it quietly.

import {
  DEFAULT_LIMITS,
  FrameIds,
  InboxCursor,
  MessageInbox,
  MessageStore,
  NoticeInbox,
  PROTOCOL_VERSION,
  Pacer,
  RETRYABLE_ERRORS,
  ReconnectPolicy,
  RevisionFilter,
  SUBPROTOCOL,
  classifyClose,
  classifyHandshakeStatus,
  deriveEndpoints,
  frameBytes,
  keepAliveInterval,
  limitsOf,
  sendRetryDelay,
  syncPlan,
  validateId,
  validateText,
  withTicket,
} from "./state.js";
import { WaitingChanges, applyChange, isChange } from "./revise.js";

/** @import { Acked, Alert, Limits, Message, NoticeEvent, PendingSend, SyncedAccount, SyncedConversation } from "./state.js" */

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * An error from the hub or the connection. `status` is the HTTP status (0: not HTTP),
 * `code` a stable code: the problem's or error frame's `code`, or one of the SDK's own:
 * `network_error`, `timeout`, `closed` (the client was closed), `connection_lost`
 * (reconnecting gave up, or a fatal close), `session_ended` (1008: revoked, signed out,
 * abuse), `protocol` (not a bankhub v1 hub).
 */
export class HubError extends Error {
  /**
   * @param {string} code
   * @param {string} detail
   * @param {{status?: number, title?: string, retryAfterMs?: number | null, closeCode?: number | null}} [o]
   */
  constructor(code, detail, o = {}) {
    super(`${code}: ${detail}`);
    this.name = "HubError";
    this.code = code;
    this.detail = detail;
    this.status = o.status ?? 0;
    this.title = o.title ?? null;
    this.retryAfterMs = o.retryAfterMs ?? null;
    this.closeCode = o.closeCode ?? null;
  }
}

/**
 * The signed-in user (as `GET /v1/me`).
 * @typedef {object} User
 * @property {string} id
 * @property {string} username
 * @property {string} display_name
 * @property {string} role
 * @property {string | null} org_id
 * @property {string | null} rm_id
 */

/** @typedef {typeof globalThis.fetch} FetchLike */

/**
 * @typedef {object} SessionOptions
 * @property {FetchLike} [fetch]  defaults to the global fetch
 * @property {string} [origin]    the page origin, for a base URL of "" (default: location.origin)
 */

/** @param {string} base @param {SessionOptions} options */
function endpointsFor(base, options) {
  const loc = /** @type {{location?: {origin?: string}}} */ (globalThis).location;
  return deriveEndpoints(base, options.origin ?? loc?.origin);
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
  return new HubError(p.code || `http_${response.status}`, p.detail || p.title || response.statusText, {
    status: response.status,
    title: p.title,
  });
}

/**
 * An authenticated HTTP session with a hub.
 *
 * Browsers use the cookie mode ({@link HubSession.signIn}, {@link HubSession.resume}): the
 * session token lives in an HttpOnly cookie the page never sees, and the CSRF token in
 * memory only (never in localStorage/sessionStorage). Non-browser code (Node, native
 * shells) uses the token mode ({@link HubSession.withToken}, {@link HubSession.signInWithToken}):
 * `Authorization: Bearer`, no cookie, no CSRF.
 */
export class HubSession {
  /**
   * @param {{base: string, options?: SessionOptions, mode: "cookie" | "token", token?: string | null, csrfToken?: string | null, user?: User | null, expiresAt?: string | null}} o
   */
  constructor(o) {
    const options = o.options || {};
    const ep = endpointsFor(o.base, options);
    /** the hub's HTTP base (no trailing slash) */
    this.httpBase = ep.httpBase;
    /** the hub's WebSocket URL (`.../v1/ws`) */
    this.wsUrl = ep.wsUrl;
    /** @type {"cookie" | "token"} */
    this.mode = o.mode;
    /** @type {User | null} */
    this.user = o.user ?? null;
    /** @type {string | null} */
    this.expiresAt = o.expiresAt ?? null;
    /** @type {FetchLike} */
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._token = o.token ?? null;
    this._csrf = o.csrfToken ?? null;
  }

  /**
   * Sign in with a password; the hub sets the HttpOnly session cookie
   * (`POST /v1/web/sessions`). Throws HubError (401 `unauthorized`, 429 ...).
   * @param {string} base  the hub's URL; "" for the page's own origin
   * @param {string} username
   * @param {string} password
   * @param {SessionOptions} [options]
   */
  static async signIn(base, username, password, options = {}) {
    const s = new HubSession({ base, options, mode: "cookie" });
    const body = /** @type {{user: User, csrf_token: string, expires_at: string}} */ (
      await s.request("POST", "/v1/web/sessions", { username, password })
    );
    s._adopt(body);
    return s;
  }

  /**
   * The cookie session of a reloaded page (`GET /v1/web/session`), null if there is none.
   * @param {string} base
   * @param {SessionOptions} [options]
   * @returns {Promise<HubSession | null>}
   */
  static async resume(base, options = {}) {
    const s = new HubSession({ base, options, mode: "cookie" });
    try {
      s._adopt(/** @type {{user: User, csrf_token: string, expires_at: string}} */ (await s.request("GET", "/v1/web/session")));
    } catch (e) {
      if (e instanceof HubError && e.status === 401) return null;
      throw e;
    }
    return s;
  }

  /**
   * A session on a bearer token (non-browser use). `user` is filled by {@link HubSession.loadUser}.
   * @param {string} base
   * @param {string} token
   * @param {SessionOptions & {user?: User}} [options]
   */
  static withToken(base, token, options = {}) {
    if (!token) throw new TypeError("token is required");
    return new HubSession({ base, options, mode: "token", token, user: options.user ?? null });
  }

  /**
   * Sign in with a password for a bearer token (`POST /v1/sessions`; non-browser use).
   * @param {string} base
   * @param {string} username
   * @param {string} password
   * @param {SessionOptions} [options]
   */
  static async signInWithToken(base, username, password, options = {}) {
    const anon = new HubSession({ base, options, mode: "token" });
    const body = /** @type {{token: string, user: User, expires_at: string}} */ (
      await anon.request("POST", "/v1/sessions", { username, password })
    );
    return new HubSession({ base, options, mode: "token", token: body.token, user: body.user, expiresAt: body.expires_at });
  }

  /** @param {{user: User, csrf_token: string, expires_at: string}} body */
  _adopt(body) {
    this.user = body.user;
    this._csrf = body.csrf_token;
    this.expiresAt = body.expires_at;
  }

  /** Fetch `GET /v1/me` into {@link HubSession.user}. @returns {Promise<User>} */
  async loadUser() {
    this.user = /** @type {User} */ (await this.request("GET", "/v1/me"));
    return this.user;
  }

  /**
   * One JSON request. Adds `X-CSRF-Token` to unsafe methods in the cookie mode and
   * `Authorization` in the token mode. Returns the decoded body (null for 204); throws
   * HubError with the problem's `status`, `code` and `detail`, or `network_error`.
   * @param {string} method
   * @param {string} path  starting with "/" (e.g. "/v1/conversations?limit=50")
   * @param {unknown} [body]
   * @param {{signal?: AbortSignal}} [init]
   * @returns {Promise<unknown>}
   */
  async request(method, path, body, init = {}) {
    const m = method.toUpperCase();
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.mode === "token" && this._token) headers.authorization = `Bearer ${this._token}`;
    if (this.mode === "cookie" && UNSAFE.has(m) && this._csrf) headers["x-csrf-token"] = this._csrf;
    /** @type {Response} */
    let response;
    try {
      response = await this._fetch(this.httpBase + path, {
        method: m,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: this.mode === "cookie" ? "same-origin" : "omit",
        cache: "no-store",
        signal: init.signal,
      });
    } catch (e) {
      throw new HubError("network_error", e instanceof Error ? e.message : String(e));
    }
    if (!response.ok) throw await problemOf(response);
    if (response.status === 204) return null;
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /** A single-use WebSocket ticket (`POST /v1/ws-tickets`). @returns {Promise<{ticket: string, expires_in: number}>} */
  async wsTicket() {
    return /** @type {{ticket: string, expires_in: number}} */ (await this.request("POST", "/v1/ws-tickets", {}));
  }

  /** Every page of a listing endpoint. @param {string} path @param {string} key @returns {Promise<any[]>} */
  async all(path, key) {
    /** @type {any[]} */
    const out = [];
    let cursor = null;
    for (let page = 0; page < 10000; page += 1) {
      const sep = path.includes("?") ? "&" : "?";
      const url = cursor ? `${path}${sep}limit=200&cursor=${encodeURIComponent(cursor)}` : `${path}${sep}limit=200`;
      const body = /** @type {Record<string, any>} */ (await this.request("GET", url));
      out.push(...(body[key] || []));
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return out;
  }

  /** Sign out (`DELETE /v1/sessions/current`): the hub ends the session and clears the cookie. */
  async signOut() {
    await this.request("DELETE", "/v1/sessions/current");
    this._token = null;
    this._csrf = null;
    this.user = null;
  }
}

// --- the WebSocket client ----------------------------------------------------------------

/**
 * The subset of the WebSocket API the client uses (browsers' and Node's `WebSocket`).
 * @typedef {object} WebSocketLike
 * @property {string} protocol
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: any) => void) | null} onmessage
 * @property {((ev: any) => void) | null} onclose
 * @property {((ev: any) => void) | null} onerror
 */

/** @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketConstructor */

/**
 * The server's `hello`.
 * @typedef {object} Hello
 * @property {number} protocol
 * @property {string} session_id
 * @property {string} user_id
 * @property {string} username
 * @property {string} role
 * @property {string} node
 * @property {number} server_time
 * @property {Limits} limits
 * @property {string[]} features
 */

/**
 * @typedef {object} ClientOptions
 * @property {WebSocketConstructor} [WebSocketImpl]  default: the global WebSocket
 * @property {ReconnectPolicy | null} [reconnect]  null: never reconnect
 * @property {Record<string, number>} [cursors]    resume: per conversation, the last seq held
 * @property {Record<string, number>} [accountCursors]  resume: per followed account
 * @property {number | null} [inboxCursor]          resume: the last alerts-inbox seq held
 * @property {boolean} [syncOnConnect]  sync on the first connect (default: when cursors are given); otherwise nothing that exists already is handed out
 * @property {number} [requestTimeoutMs]  each read/ping/sync answer (default 10 s)
 * @property {number | null} [sendTimeoutMs]  give a send up after this long (default null: wait across reconnects until closed)
 * @property {number} [openTimeoutMs]  handshake and hello (default 10 s)
 * @property {number} [syncLimit]  per-conversation page of `sync` (default 100)
 * @property {number} [gapGraceMs]  how long a hole before one of my acknowledged sends may stay open (default 1 s)
 * @property {number | null} [keepAliveMs]  ping after this much silence (default from hello.limits.idle_timeout)
 * @property {number} [maxHeldMessages]  per conversation in {@link Client#messages} (default 500)
 * @property {number} [maxPending]  sends that may wait at once (default 1000)
 * @property {() => number} [random]  uniform in [0, 1), for the jitter
 */

/**
 * @typedef {object} Connection
 * @property {WebSocketLike} ws
 * @property {number} gen
 * @property {Hello | null} hello
 * @property {Limits} limits
 * @property {Pacer | null} pacer
 * @property {string[]} queue
 * @property {boolean} booked
 * @property {ReturnType<typeof setTimeout> | null} pumpTimer
 * @property {ReturnType<typeof setInterval> | null} keepAlive
 * @property {number} lastSent
 * @property {string[] | null} buffer  frames held while the first snapshot is taken
 * @property {{code: number, reason: string} | null} closedWith
 * @property {Promise<{code: number, reason: string}>} closed
 * @property {(v: {code: number, reason: string}) => void} onClosed
 */

/**
 * @typedef {object} Waiter
 * @property {(value: any) => void} resolve
 * @property {(error: unknown) => void} reject
 * @property {number} gen
 */

/** Errors of a resync after which reconnecting (with backoff) may help. */
const RESUME_RETRY = new Set(["timeout", "network_error", "rate_limited", "unavailable", "internal"]);

/** Thrown inside: the connection a request was written to went away before its answer. */
const DROPPED = Symbol("dropped");

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** @returns {string} */
function uuid4() {
  const c = /** @type {{crypto?: {randomUUID?: () => string}}} */ (globalThis).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (ch) => {
    const r = Math.floor(Math.random() * 16);
    return (ch === "x" ? r : (r & 3) | 8).toString(16);
  });
}

/**
 * A connection to a hub's `/v1/ws`. Create it with {@link Client.connect}.
 *
 * Events (`addEventListener(type, e => e.detail)`):
 * `state` {state: "connecting"|"open"|"offline"|"closed", error?}, `message`
 * {conversationId, message}, `sent` {conversationId, message, clientMsgId, duplicate, dlp},
 * `dlp` {conversationId, messageId, dlp: [{kind, masked}]} (the hub masked a card number, ID,
 * account number, CVV or code in what I sent or edited: tell the user; feature `dlp`),
 * `pending` {conversationId}, `receipt`, `notice`, `notice_recalled`, `account_receipt`,
 * `alert`, `inbox_update`, `service_status`, `service_assigned`, `agent_state`,
 * `conversation_added`, `conversation_removed`, `rm_changed` (the frame's fields).
 */
export class Client extends EventTarget {
  /**
   * Connect (and keep reconnecting) on a session: trades it for a single-use ticket before
   * every (re)connect and opens `wsUrl?ticket=...` with subprotocol `bankhub.v1`.
   * @param {HubSession} session
   * @param {ClientOptions} [options]
   */
  static connect(session, options = {}) {
    const client = new Client(session, options);
    client._start();
    return client;
  }

  /** @param {HubSession} session @param {ClientOptions} [options] */
  constructor(session, options = {}) {
    super();
    this.session = session;
    const WS = options.WebSocketImpl ?? /** @type {{WebSocket?: WebSocketConstructor}} */ (globalThis).WebSocket;
    if (!WS) throw new TypeError("no WebSocket implementation: pass options.WebSocketImpl");
    /** @type {WebSocketConstructor} */
    this._WS = WS;
    this._policy = options.reconnect === undefined ? new ReconnectPolicy() : options.reconnect;
    const resume = options.cursors !== undefined || options.accountCursors !== undefined;
    this._syncOnConnect = options.syncOnConnect ?? resume;
    this._requestTimeout = options.requestTimeoutMs ?? 10000;
    this._sendTimeout = options.sendTimeoutMs ?? null;
    this._openTimeout = options.openTimeoutMs ?? 10000;
    this._syncLimit = options.syncLimit ?? 100;
    this._gapGrace = options.gapGraceMs ?? 1000;
    this._keepAliveMs = options.keepAliveMs;
    this._random = options.random ?? Math.random;
    this._inbox = new MessageInbox({ cursors: options.cursors, maxPending: options.maxPending });
    this._store = new MessageStore(options.maxHeldMessages);
    /** recall/edit changes whose target is not held yet */
    this._waitingChanges = new WaitingChanges();
    this._notices = new NoticeInbox(options.accountCursors);
    this._alerts = new InboxCursor(options.inboxCursor ?? (this._syncOnConnect ? 0 : null));
    this._alertsFresh = false;
    this._revisions = new RevisionFilter();
    this._ids = new FrameIds();
    /** @type {"connecting" | "open" | "offline" | "closed"} */
    this._state = "connecting";
    /** @type {Connection | null} */
    this._conn = null;
    /** @type {Hello | null} */
    this._hello = null;
    this._gen = 0;
    this._ready = false;
    /** @type {HubError | null} */
    this._final = null;
    /** @type {Map<string, Waiter & {timer: ReturnType<typeof setTimeout> | null}>} */
    this._requests = new Map();
    /** @type {Array<Waiter>} */
    this._readyWaiters = [];
    /** @type {Map<PendingSend, {promise: Promise<Message>, resolve: (m: Message) => void, reject: (e: unknown) => void}>} */
    this._sendWaiters = new Map();
    /** @type {Map<string, number>} conversations with a seq gap seen live: the seq */
    this._gaps = new Map();
    /** @type {string[]} presence: the users watched, watched again after a reconnect */
    this._watching = [];
    this._gapRunning = false;
    this._inboxRunning = false;
    /** @type {Promise<unknown>} syncs run one at a time */
    this._syncChain = Promise.resolve();
    /** @type {Set<ReturnType<typeof setTimeout>>} */
    this._timers = new Set();
    /** @type {(v: void) => void} */
    this._openedResolve = () => {};
    /** @type {(e: unknown) => void} */
    this._openedReject = () => {};
    /** @type {(() => void) | null} wakes a reconnect backoff early */
    this._wakeSleep = null;
    /** @type {Promise<void>} */
    this._opened = new Promise((resolve, reject) => {
      this._openedResolve = resolve;
      this._openedReject = reject;
    });
    this._opened.catch(() => {});
  }

  // --- public surface --------------------------------------------------------------------

  /** "connecting" | "open" (connected and caught up) | "offline" (waiting to reconnect) | "closed" */
  get state() {
    return this._state;
  }

  /** Resolves once the first connection is up and caught up; rejects if the client ends first. */
  ready() {
    return this._opened;
  }

  /** The `hello` of the current (or last) connection, null before the first. */
  get hello() {
    return this._hello;
  }

  /** My user id (from `hello`), null before the first connection. */
  get userId() {
    return this._hello?.user_id ?? null;
  }

  /** The error that ended the client, if it ended with one. */
  get error() {
    return this._final;
  }

  /** Per conversation, the highest seq held with no hole before it (persist it to resume). */
  get cursors() {
    return this._inbox.cursors.snapshot();
  }

  /** Per followed official account, the last account event seq held. */
  get accountCursors() {
    return this._notices.snapshot();
  }

  /** The last alerts-inbox seq held (null: not known yet). */
  get inboxCursor() {
    return this._alerts.cursor;
  }

  /**
   * The messages this client holds for a conversation, in seq order, each once (from
   * sync, live delivery, my acknowledged sends and {@link Client#loadHistory}).
   * @param {string} conversationId
   * @returns {Message[]}
   */
  messages(conversationId) {
    return this._store.list(conversationId);
  }

  /**
   * My sends to a conversation not acknowledged yet, oldest first. `state`: "sending"
   * (transmitted on the current connection) or "queued" (waiting for a connection, or
   * for a rate limit; retried with the same client_msg_id).
   * @param {string} conversationId
   * `kind`: the body's kind ("text", or e.g. "image"/"voice" sent with {@link Client#sendBody}).
   * @returns {Array<{clientMsgId: string, text: string, kind: string, state: "sending" | "queued", attempts: number}>}
   */
  pending(conversationId) {
    return this._inbox.pending
      .list()
      .filter((e) => e.conversationId === conversationId)
      .map((e) => ({ clientMsgId: e.clientMsgId, text: e.text, kind: e.body?.kind ?? "text", state: e.frameId !== null ? "sending" : "queued", attempts: e.attempts }));
  }

  /**
   * Send a text message; resolves with it as committed (`seq`, `message_id`, `ts`) once the
   * hub acknowledged it. Until then it is pending (see {@link Client#pending}): kept in
   * memory and sent again with the same client_msg_id after every reconnect, never stored
   * twice. Rejects with TypeError/RangeError for a text the hub would refuse, HubError
   * with the hub's code (`forbidden`, `not_found`, `gone`, `sensitive_data`: a card number,
   * ID, account number, CVV or code that may not be sent this way; `rate_limited` and
   * `unavailable` are retried), `timeout` (options.sendTimeoutMs), or the client's end.
   * When the hub masked such a value the message resolved is the masked one, and a `dlp`
   * event says what was masked.
   * @param {string} conversationId
   * @param {string} text
   * @param {{clientMsgId?: string, timeoutMs?: number | null}} [options]
   * @returns {Promise<Message>}
   */
  async send(conversationId, text, options = {}) {
    this._checkUsable();
    validateId("conversation_id", conversationId);
    const limits = this._hello ? this._hello.limits : DEFAULT_LIMITS;
    const body = validateText(text, limits);
    const cmid = options.clientMsgId === undefined ? uuid4() : validateId("client_msg_id", options.clientMsgId);
    const size = frameBytes({ type: "send", id: "s".padEnd(21, "9"), conversation_id: conversationId, client_msg_id: cmid, body });
    if (size > limits.max_frame_bytes) throw new RangeError(`the send frame would be ${size} bytes; this hub accepts at most ${limits.max_frame_bytes}`);
    return this._enqueueSend(conversationId, cmid, text, null, options);
  }

  /**
   * Send a message with a body of another kind than text (`{kind: "image", media_id, caption?}`,
   * `{kind: "voice", media_id}`; see `media.js`), with the same guarantees as {@link Client#send}:
   * pending until acknowledged, retried with the same client_msg_id, stored once. The
   * hub checks the body (e.g. that the media is mine, of this conversation and ready).
   * @param {string} conversationId
   * @param {import("./state.js").Body} body
   * @param {{clientMsgId?: string, timeoutMs?: number | null, text?: string}} [options] `text`: what {@link Client#pending} shows meanwhile
   * @returns {Promise<Message>}
   */
  async sendBody(conversationId, body, options = {}) {
    this._checkUsable();
    validateId("conversation_id", conversationId);
    if (!body || typeof body !== "object" || typeof body.kind !== "string" || !body.kind) throw new TypeError("body must be an object with a kind");
    if (body.kind === "text") return this.send(conversationId, String(body.text ?? ""), options);
    const limits = this._hello ? this._hello.limits : DEFAULT_LIMITS;
    const cmid = options.clientMsgId === undefined ? uuid4() : validateId("client_msg_id", options.clientMsgId);
    const size = frameBytes({ type: "send", id: "s".padEnd(21, "9"), conversation_id: conversationId, client_msg_id: cmid, body });
    if (size > limits.max_frame_bytes) throw new RangeError(`the send frame would be ${size} bytes; this hub accepts at most ${limits.max_frame_bytes}`);
    return this._enqueueSend(conversationId, cmid, options.text ?? "", body, options);
  }

  /**
   * Register a send as pending, transmit it when due, and wait for its acknowledgement.
   * @param {string} conversationId
   * @param {string} cmid
   * @param {string} text
   * @param {import("./state.js").Body | null} body
   * @param {{timeoutMs?: number | null}} options
   * @returns {Promise<Message>}
   */
  async _enqueueSend(conversationId, cmid, text, body, options) {
    const { entry } = this._inbox.pending.add(conversationId, cmid, text, body);
    let waiter = this._sendWaiters.get(entry);
    if (!waiter) {
      /** @type {(m: Message) => void} */
      let resolve = () => {};
      /** @type {(e: unknown) => void} */
      let reject = () => {};
      /** @type {Promise<Message>} */
      const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      waiter = { promise, resolve, reject };
      this._sendWaiters.set(entry, waiter);
      this._emit("pending", { conversationId });
      this._flushPending();
    }
    const timeout = options.timeoutMs === undefined ? this._sendTimeout : options.timeoutMs;
    if (timeout === null) return waiter.promise;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => {
        // given up: it may still have been stored; retry with the same client_msg_id
        if (this._inbox.pending.remove(entry)) {
          this._sendWaiters.delete(entry);
          this._emit("pending", { conversationId });
        }
        reject(new HubError("timeout", `send ${cmid} was not acknowledged in time`));
      }, timeout);
    });
    try {
      return await Promise.race([waiter.promise, /** @type {Promise<never>} */ (expired)]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Replace the text of my own text message `messageId` (hub feature `edit`, within the
   * hub's edit window). Resolves with the committed edit message (body `{kind: "edit",
   * message_id, body}`), already applied to the held target (event `revised`). Idempotent
   * by client_msg_id; retried across reconnects until the timeout. Rejects with
   * TypeError/RangeError for a text the hub would refuse, or HubError (`forbidden`: not
   * mine, not text, recalled, after the window; `not_found`; `gone`; `sensitive_data`). A
   * masked edit resolves with the masked body, and a `dlp` event says what was masked.
   * @param {string} conversationId
   * @param {string} messageId
   * @param {string} text
   * @param {{clientMsgId?: string}} [options]
   * @returns {Promise<Message>}
   */
  async edit(conversationId, messageId, text, options = {}) {
    this._checkUsable();
    validateId("conversation_id", conversationId);
    validateId("message_id", messageId);
    const body = validateText(text, this._hello ? this._hello.limits : DEFAULT_LIMITS);
    const cmid = options.clientMsgId === undefined ? uuid4() : validateId("client_msg_id", options.clientMsgId);
    const sent = await this._call("e", (id) => ({ type: "edit", id, conversation_id: conversationId, message_id: messageId, client_msg_id: cmid, body }));
    // data-loss prevention: the hub's masked body is what the members see; hold that, and say why
    const m = this._committedChange(sent, sent.body?.kind === "edit" ? sent.body : { kind: "edit", message_id: messageId, body });
    if (Array.isArray(sent.dlp) && sent.dlp.length) this._emit("dlp", { conversationId: conversationId, messageId: m.message_id, dlp: sent.dlp });
    return m;
  }

  /**
   * Withdraw my own text message `messageId` (hub feature `edit`, within the hub's recall
   * window). Resolves with the committed recall message (body `{kind: "recall",
   * message_id}`), already applied to the held target (event `revised`); recalling it again
   * resolves with the same recall. Rejects with HubError (`forbidden`, `not_found`, `gone`).
   * @param {string} conversationId
   * @param {string} messageId
   * @returns {Promise<Message>}
   */
  async recall(conversationId, messageId) {
    this._checkUsable();
    validateId("conversation_id", conversationId);
    validateId("message_id", messageId);
    const sent = await this._call("x", (id) => ({ type: "recall", id, conversation_id: conversationId, message_id: messageId }));
    return this._committedChange(sent, { kind: "recall", message_id: messageId });
  }

  /**
   * The edit/recall message a `sent` answered: held (its seq is mine, like a send's) and applied.
   * @param {any} sent @param {any} body @returns {Message}
   */
  _committedChange(sent, body) {
    const cid = sent.conversation_id;
    /** @type {Message} */
    const m = { conversation_id: cid, message_id: sent.message_id, seq: sent.seq, sender_id: this._hello?.user_id ?? "", client_msg_id: sent.client_msg_id, body, ts: sent.ts };
    if (this._inbox.cursors.hold(cid, sent.seq)) {
      const seq = sent.seq;
      const timer = setTimeout(() => {
        this._timers.delete(timer);
        if (!this._final && this._inbox.cursors.hasHoleBefore(cid, seq)) this._requestGap(cid, seq);
      }, this._gapGrace);
      this._timers.add(timer);
    }
    this._store.add(m);
    this._revise(m);
    return m;
  }

  /**
   * Apply a change message to its held target (or keep it until the target is held), or a
   * waiting change to a message just held; emits `revised` {conversationId, message (the
   * target as it reads now), change} when a held message changed.
   * @param {Message} m
   */
  _revise(m) {
    /** @type {Message | undefined} */
    let change = m;
    /** @type {Message | undefined} */
    let target;
    if (isChange(m)) {
      target = this._store.get(m.conversation_id, /** @type {any} */ (m.body).message_id);
      if (!target) {
        this._waitingChanges.wait(m);
        return;
      }
    } else {
      change = this._waitingChanges.take(m.message_id);
      if (!change) return;
      target = m;
    }
    const updated = applyChange(target, change);
    if (!updated || !this._store.replace(updated)) return;
    this._emit("revised", { conversationId: updated.conversation_id, message: updated, change });
  }

  /**
   * Move my read position in a conversation up to `seq`; resolves with the receipt
   * (`read_seq`, `unread`). Idempotent; retried across reconnects until the timeout.
   * @param {string} conversationId
   * @param {number} seq
   * @returns {Promise<{conversation_id: string, user_id: string, read_seq: number, unread?: number}>}
   */
  async read(conversationId, seq) {
    validateId("conversation_id", conversationId);
    if (!Number.isInteger(seq) || seq < 0) throw new RangeError("seq must be an integer >= 0");
    return this._call("r", (id) => ({ type: "read", id, conversation_id: conversationId, seq }));
  }

  /**
   * Move my read position in an official account up to `seq`.
   * @param {string} accountId
   * @param {number} seq
   * @returns {Promise<{account_id: string, read_seq: number, unread: number}>}
   */
  async readNotices(accountId, seq) {
    validateId("account_id", accountId);
    if (!Number.isInteger(seq) || seq < 0) throw new RangeError("seq must be an integer >= 0");
    return this._call("n", (id) => ({ type: "read_notices", id, account_id: accountId, seq }));
  }

  /**
   * Mark alerts read (those listed and/or all up to `upToSeq`); resolves with the update
   * (exact `unread`). My other devices get it as an `inbox_update` event.
   * @param {string[]} alertIds
   * @param {number} [upToSeq]
   * @returns {Promise<{state: string, unread: number, alert_ids?: string[], up_to_seq?: number}>}
   */
  async readAlerts(alertIds, upToSeq) {
    if (alertIds.length === 0 && upToSeq === undefined) throw new TypeError("name alertIds, or upToSeq, or both");
    if (alertIds.length > 100) throw new RangeError("at most 100 alert ids at once");
    const ids = alertIds.map((a) => validateId("alert_id", a));
    return this._call("a", (id) => (upToSeq === undefined ? { type: "read_alerts", id, alert_ids: ids } : { type: "read_alerts", id, alert_ids: ids, up_to_seq: upToSeq }));
  }

  /**
   * Fetch the alerts after my inbox cursor now (paging); they are also emitted as `alert`.
   * The client does this by itself after every reconnect and when a live alert skips seqs.
   * @returns {Promise<Alert[]>}
   */
  async syncInbox() {
    /** @type {Alert[]} */
    const fresh = [];
    for (let round = 0; round < 100000; round += 1) {
      const got = /** @type {{fresh: Alert[], more: boolean}} */ (
        await this._call("i", (id) => ({ type: "sync_inbox", id, since: this._alerts.cursor ?? 0, limit: this._syncLimit }))
      );
      fresh.push(...got.fresh);
      if (!got.more) break;
    }
    return fresh;
  }

  /**
   * Tell the conversation's other members I am typing (`active`) or stopped (hub feature
   * `typing`). Best effort: never answered, never retried, dropped while disconnected;
   * debounce it with TypingSender (liveness.js). They get a `typing` event.
   * @param {string} conversationId
   * @param {boolean} [active]
   */
  typing(conversationId, active = true) {
    validateId("conversation_id", conversationId);
    const conn = this._conn;
    if (!conn || !this._ready) return;
    try {
      this._write(conn, { type: "typing", conversation_id: conversationId, active });
    } catch (e) {
      if (e !== DROPPED) throw e;
    }
  }

  /**
   * Ask whether these users are online and follow them (hub feature `presence`): replaces
   * what was watched (an empty list stops) and is repeated by itself after a reconnect.
   * Changes come as `presence` events; only related users (contacts, my RM, my customers)
   * are ever known, the others read `online` null.
   * @param {string[]} userIds
   * @returns {Promise<{user_id: string, online?: boolean | null, last_seen?: number | null}[]>}
   */
  async watchPresence(userIds) {
    const ids = userIds.map((u) => validateId("user_id", u));
    this._watching = ids;
    const answer = /** @type {{users: {user_id: string, online?: boolean | null, last_seen?: number | null}[]}} */ (
      await this._call("w", (id) => ({ type: "watch_presence", id, user_ids: ids }))
    );
    return answer.users;
  }

  /** Round trip to the hub (`ping`/`pong`), in ms. */
  async ping() {
    const started = Date.now();
    await this._call("p", (id) => ({ type: "ping", id }));
    return Date.now() - started;
  }

  /**
   * Fetch everything after my cursors now (paging while `has_more`); new messages are
   * emitted as `message` events and returned.
   * @returns {Promise<Message[]>}
   */
  async sync() {
    const deadline = Date.now() + this._requestTimeout;
    for (;;) {
      const conn = await this._waitReady(deadline);
      try {
        return await this._serialSync(conn, null);
      } catch (e) {
        if (e !== DROPPED) throw e;
      }
    }
  }

  /**
   * Load older messages of a conversation over HTTP (before the oldest held) into
   * {@link Client#messages}; resolves with `has_more`.
   * @param {string} conversationId
   * @param {{limit?: number}} [options]
   */
  async loadHistory(conversationId, options = {}) {
    validateId("conversation_id", conversationId);
    const limit = options.limit ?? 50;
    const oldest = this._store.oldest(conversationId);
    const q = oldest === undefined ? `?limit=${limit}` : `?limit=${limit}&before_seq=${oldest}`;
    const page = /** @type {{messages: Message[], has_more: boolean}} */ (
      await this.session.request("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/messages${q}`)
    );
    for (const m of page.messages) if (this._store.add(m)) this._revise(m);
    return { hasMore: page.has_more, messages: page.messages };
  }

  /**
   * My direct conversation with `username` (created if needed): its summary. Messages
   * already in it are history ({@link Client#loadHistory}); later ones arrive as events.
   * @param {string} username
   * @returns {Promise<{id: string, kind: string, last_seq: number, read_seq: number, unread: number, members: string[]}>}
   */
  async openDirect(username) {
    const body = /** @type {{conversation: {id: string, kind: string, last_seq: number, read_seq: number, unread: number, members: string[]}}} */ (
      await this.session.request("POST", "/v1/conversations", { kind: "direct", peer: username })
    );
    if (!this._inbox.cursors.has(body.conversation.id)) this._inbox.cursors.seed(body.conversation.id, body.conversation.last_seq);
    return body.conversation;
  }

  /** Follow an official account; its notices arrive from now on. @param {string} accountId */
  async follow(accountId) {
    validateId("account_id", accountId);
    return this.session.request("PUT", `/v1/accounts/${encodeURIComponent(accountId)}/follow`);
  }

  /** Unfollow an official account; its cursor is dropped. @param {string} accountId */
  async unfollow(accountId) {
    validateId("account_id", accountId);
    await this.session.request("DELETE", `/v1/accounts/${encodeURIComponent(accountId)}/follow`);
    this._notices.forget(accountId);
  }

  /**
   * Drop the current connection and reconnect at once (e.g. on the browser's `online`
   * event, or a network change). Pending sends are resent after the resync.
   */
  reconnect() {
    if (this._final) return;
    const conn = this._conn;
    if (conn) this._dropConnection(conn, 1006, "reconnect requested");
    else if (this._wakeSleep) this._wakeSleep();
  }

  /** Close the connection (1000). Pending sends fail with `closed` (they may have been stored). */
  close() {
    if (this._final) return;
    this._finish(new HubError("closed", "the client was closed"));
  }

  // --- connection lifecycle --------------------------------------------------------------

  _start() {
    this._run().catch((e) => this._finish(e instanceof HubError ? e : new HubError("connection_lost", `internal client error: ${e}`)));
  }

  async _run() {
    let first = true;
    let attempt = 0;
    let droppedAt = Date.now();
    while (!this._final) {
      this._setState("connecting");
      /** @type {Connection} */
      let conn;
      try {
        conn = await this._open();
      } catch (e) {
        if (this._final) return;
        if (e instanceof HubError && e.code !== "transient") throw e;
        attempt += 1;
        if (!(await this._backoff(attempt, droppedAt, e))) return;
        continue;
      }
      attempt = 0;
      try {
        if (first && !this._syncOnConnect) await this._snapshot(conn);
        else await this._serialSync(conn, null);
        if (first && this._alerts.cursor === null) {
          this._alerts.cursor = await this._inboxPosition();
          this._alertsFresh = true;
        }
      } catch (e) {
        if (this._final) return;
        if (e instanceof HubError && (e.status === 401 || e.status === 403)) throw new HubError("session_ended", e.detail, { status: e.status });
        // a refusal that reconnecting cannot cure (the hub is not what this SDK speaks to)
        if (e instanceof HubError && e.status === 0 && !RESUME_RETRY.has(e.code)) throw e;
        if (e !== DROPPED) this._dropConnection(conn, 1006, "resume failed");
      }
      if (conn.closedWith === null && conn.gen === this._gen) {
        first = false;
        this._becomeReady(conn);
      }
      const { code, reason } = await conn.closed;
      if (this._final) return;
      const action = classifyClose(code);
      if (action === "reconnect" && this._policy) {
        droppedAt = Date.now();
        attempt = 1;
        if (!(await this._backoff(attempt, droppedAt, null))) return;
        continue;
      }
      if (action === "stop") this._finish(new HubError("connection_lost", `the hub closed the connection: ${code} ${reason}`.trim(), { closeCode: code }), true);
      else if (action === "auth") this._finish(new HubError("session_ended", `the hub ended the session: ${code} ${reason}`.trim(), { closeCode: code }));
      else this._finish(new HubError("connection_lost", `the hub closed the connection: ${code} ${reason}`.trim(), { closeCode: code }));
      return;
    }
  }

  /**
   * Wait before reconnect attempt `attempt`; false when the policy gave up (the client ended).
   * @param {number} attempt
   * @param {number} droppedAt
   * @param {unknown} last
   */
  async _backoff(attempt, droppedAt, last) {
    const policy = this._policy;
    const elapsed = Date.now() - droppedAt;
    if (!policy || !policy.allows(attempt, elapsed)) {
      const why = last instanceof Error ? last.message : "";
      this._finish(new HubError("connection_lost", `gave up reconnecting after ${attempt - 1} attempt(s) ${why}`.trim()));
      return false;
    }
    this._setState("offline");
    let delay = policy.delay(attempt, this._random());
    if (policy.maxElapsedMs !== null) delay = Math.min(delay, Math.max(0, policy.maxElapsedMs - elapsed));
    await this._sleepUnlessClosed(delay);
    return !this._final;
  }

  /** @param {number} ms */
  async _sleepUnlessClosed(ms) {
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._timers.delete(timer);
        resolve(undefined);
      }, ms);
      this._timers.add(timer);
      this._wakeSleep = () => {
        clearTimeout(timer);
        this._timers.delete(timer);
        resolve(undefined);
      };
    });
    this._wakeSleep = null;
  }

  /**
   * One connection attempt: ticket, handshake, `hello`. Throws HubError: `transient` when
   * a later attempt may succeed, else `session_ended`/`protocol`/`connection_lost`.
   * @returns {Promise<Connection>}
   */
  async _open() {
    let ticket;
    try {
      ticket = await this.session.wsTicket();
    } catch (e) {
      const status = e instanceof HubError ? e.status : 0;
      const action = classifyHandshakeStatus(status);
      if (action === "auth") throw new HubError("session_ended", `the hub refused a ws ticket: ${e instanceof Error ? e.message : e}`, { status });
      if (action === "reconnect") throw new HubError("transient", String(e));
      throw e;
    }
    if (this._final) throw this._final;
    const ws = new this._WS(withTicket(this.session.wsUrl, ticket.ticket), [SUBPROTOCOL]);
    this._gen += 1;
    /** @type {(v: {code: number, reason: string}) => void} */
    let onClosed = () => {};
    /** @type {Promise<{code: number, reason: string}>} */
    const closed = new Promise((resolve) => {
      onClosed = resolve;
    });
    /** @type {Connection} */
    const conn = {
      ws,
      gen: this._gen,
      hello: null,
      limits: DEFAULT_LIMITS,
      pacer: null,
      queue: [],
      booked: false,
      pumpTimer: null,
      keepAlive: null,
      lastSent: Date.now(),
      buffer: null,
      closedWith: null,
      closed,
      onClosed,
    };
    this._conn = conn;
    const hello = /** @type {Hello} */ (await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._dropConnection(conn, 1006, "no hello in time");
        reject(new HubError("transient", "no hello in time"));
      }, this._openTimeout);
      ws.onmessage = (ev) => {
        if (conn.hello === null) {
          clearTimeout(timer);
          /** @type {any} */
          let frame;
          try {
            frame = JSON.parse(String(ev.data));
          } catch {
            frame = null;
          }
          if (!frame || frame.type !== "hello" || frame.protocol !== PROTOCOL_VERSION) {
            this._dropConnection(conn, 1002, "not a bankhub v1 hello");
            reject(new HubError("protocol", "the first frame was not a bankhub v1 hello"));
            return;
          }
          /** @type {Hello} */
          const got = { ...frame, limits: limitsOf(frame.limits), features: Array.isArray(frame.features) ? frame.features : [] };
          conn.hello = got;
          resolve(got);
          return;
        }
        if (conn.buffer !== null) conn.buffer.push(String(ev.data));
        else this._dispatch(conn, String(ev.data));
      };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        clearTimeout(timer);
        const code = typeof ev?.code === "number" ? ev.code : 1006;
        this._onSocketClosed(conn, code, String(ev?.reason ?? ""));
        if (conn.hello === null) {
          const action = classifyClose(code);
          if (action === "auth") reject(new HubError("session_ended", `the hub closed the connection: ${code}`, { closeCode: code }));
          else if (action === "reconnect" || code === 1002) reject(new HubError("transient", `closed before hello: ${code}`, { closeCode: code }));
          else reject(new HubError("connection_lost", `the hub closed the connection: ${code}`, { closeCode: code }));
        }
      };
    }));
    if (ws.protocol && ws.protocol !== SUBPROTOCOL) {
      this._dropConnection(conn, 1002, "wrong subprotocol");
      throw new HubError("protocol", `the server did not select the ${SUBPROTOCOL} subprotocol`);
    }
    if (this._hello && hello.user_id !== this._hello.user_id) {
      this._dropConnection(conn, 1000, "another user");
      throw new HubError("session_ended", "the session now belongs to another user");
    }
    conn.limits = hello.limits;
    conn.pacer = Pacer.forLimits(hello.limits, Date.now());
    this._hello = hello;
    this._inbox.userId = hello.user_id;
    this._notices.connectionStarted(false); // live after this connection's first sync
    return conn;
  }

  /**
   * First connect without cursors: nothing that exists is handed out. Take the cursors
   * from `GET /v1/conversations` and `GET /v1/me/accounts`; frames arriving meanwhile are
   * held and replayed after (messages up to the snapshot are then dropped).
   * @param {Connection} conn
   */
  async _snapshot(conn) {
    conn.buffer = [];
    try {
      const conversations = await this.session.all("/v1/conversations", "conversations");
      for (const c of conversations) this._inbox.cursors.seed(c.id, c.last_seq);
      let followed = [];
      try {
        followed = await this.session.all("/v1/me/accounts", "accounts");
      } catch (e) {
        if (!(e instanceof HubError && e.status === 404)) throw e;
      }
      for (const f of followed) this._notices.seed(f.account.id, f.last_seq);
      this._notices.connectionStarted(true);
    } finally {
      const held = conn.buffer;
      conn.buffer = null;
      for (const data of held) if (conn.gen === this._gen && conn.closedWith === null) this._dispatch(conn, data);
    }
  }

  /** My inbox's last seq (null from a hub without alerts). */
  async _inboxPosition() {
    try {
      const counts = /** @type {{last_seq: number}} */ (await this.session.request("GET", "/v1/inbox/unread"));
      return counts.last_seq;
    } catch (e) {
      if (e instanceof HubError && e.status === 404) return null;
      throw e;
    }
  }

  /** @param {Connection} conn */
  _becomeReady(conn) {
    this._ready = true;
    this._setState("open");
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.resolve(conn);
    this._openedResolve();
    const interval = this._keepAliveMs === undefined ? keepAliveInterval(conn.limits) : this._keepAliveMs;
    if (interval !== null && interval > 0) {
      conn.keepAlive = setInterval(() => {
        if (Date.now() - conn.lastSent >= interval && conn.closedWith === null) this._write(conn, { type: "ping" });
      }, Math.max(50, interval / 4));
    }
    this._flushPending();
    // presence: a new connection watches nothing yet; its answer comes back as `presence_list`
    if (this._watching.length) this._write(conn, { type: "watch_presence", id: this._ids.next("w"), user_ids: this._watching });
    // alerts that arrived while away: fetched alongside new requests, never holding up sends
    if (this._alertsFresh) this._alertsFresh = false;
    else if (this._alerts.cursor !== null) this._fillInbox();
    // gaps seen while the resync ran and not filled by it
    for (const [cid, seq] of this._gaps) if (!this._inbox.cursors.hasHoleBefore(cid, seq)) this._gaps.delete(cid);
    if (this._gaps.size) this._fillGaps();
  }

  /**
   * The socket closed (or is being dropped): answers to its requests are lost, sends are due again.
   * @param {Connection} conn
   * @param {number} code
   * @param {string} reason
   */
  _onSocketClosed(conn, code, reason) {
    if (conn.closedWith !== null) return;
    conn.closedWith = { code, reason };
    conn.ws.onmessage = null;
    conn.ws.onclose = null;
    if (conn.keepAlive !== null) clearInterval(conn.keepAlive);
    if (conn.pumpTimer !== null) clearTimeout(conn.pumpTimer);
    conn.queue = [];
    if (this._conn === conn) {
      this._conn = null;
      this._gen += 1;
      this._ready = false;
      this._inbox.pending.connectionLost();
      for (const [id, req] of this._requests) {
        if (req.gen === conn.gen) {
          this._requests.delete(id);
          if (req.timer !== null) clearTimeout(req.timer);
          req.reject(DROPPED);
        }
      }
      if (!this._final) {
        this._setState("offline");
        for (const cid of new Set(this._inbox.pending.list().map((e) => e.conversationId))) this._emit("pending", { conversationId: cid });
      }
    }
    conn.onClosed({ code, reason });
  }

  /** @param {Connection} conn @param {number} code @param {string} reason */
  _dropConnection(conn, code, reason) {
    try {
      conn.ws.close(1000, reason.slice(0, 100));
    } catch {
      // already closing
    }
    this._onSocketClosed(conn, code, reason);
  }

  // --- writing -----------------------------------------------------------------------------

  /** Queue a frame on a connection, paced under the hub's rate. @param {Connection} conn @param {object} frame */
  _write(conn, frame) {
    if (conn.closedWith !== null || conn.gen !== this._gen) throw DROPPED;
    conn.queue.push(JSON.stringify(frame));
    this._pump(conn);
  }

  /** @param {Connection} conn */
  _pump(conn) {
    if (conn.pumpTimer !== null || conn.closedWith !== null) return;
    const pacer = /** @type {Pacer} */ (conn.pacer);
    while (conn.queue.length > 0) {
      if (!conn.booked) {
        const wait = pacer.reserve(Date.now());
        conn.booked = true;
        if (wait > 0) {
          conn.pumpTimer = setTimeout(() => {
            conn.pumpTimer = null;
            this._pump(conn);
          }, wait);
          return;
        }
      }
      const data = /** @type {string} */ (conn.queue.shift());
      conn.booked = false;
      try {
        conn.ws.send(data);
        conn.lastSent = Date.now();
      } catch {
        return; // closing: the close handler re-queues what matters
      }
    }
  }

  /** Transmit every pending send that is due, in order, on the ready connection. */
  _flushPending() {
    const conn = this._conn;
    if (!conn || !this._ready || this._final) return;
    const pending = this._inbox.pending;
    const now = Date.now();
    /** @type {Set<string>} */
    const touched = new Set();
    for (const entry of pending.due(now)) {
      const id = this._ids.next("s");
      pending.transmitting(entry, id);
      touched.add(entry.conversationId);
      this._write(conn, { type: "send", id, conversation_id: entry.conversationId, client_msg_id: entry.clientMsgId, body: entry.body ?? { kind: "text", text: entry.text } });
    }
    for (const cid of touched) this._emit("pending", { conversationId: cid });
    const next = pending.nextDueIn(now);
    if (next !== null && next > 0) {
      const timer = setTimeout(() => {
        this._timers.delete(timer);
        this._flushPending();
      }, next);
      this._timers.add(timer);
    }
  }

  /**
   * Wait for a ready connection (until `deadline`, ms since the epoch).
   * @param {number} deadline
   * @returns {Promise<Connection>}
   */
  _waitReady(deadline) {
    this._checkUsable();
    if (this._ready && this._conn) return Promise.resolve(this._conn);
    return new Promise((resolve, reject) => {
      /** @type {Waiter} */
      const w = { resolve, reject, gen: -1 };
      const timer = setTimeout(() => {
        this._readyWaiters = this._readyWaiters.filter((x) => x !== w);
        reject(new HubError("timeout", "no connection in time"));
      }, Math.max(0, deadline - Date.now()));
      w.resolve = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      w.reject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      this._readyWaiters.push(w);
    });
  }

  /**
   * Write a request frame and wait for the frame answering its id.
   * @param {Connection} conn
   * @param {{id: string}} frame
   * @param {number} deadline
   * @returns {Promise<any>}
   */
  _exchange(conn, frame, deadline) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._requests.delete(frame.id);
        reject(new HubError("timeout", `no answer to ${/** @type {any} */ (frame).type} in time`));
      }, Math.max(0, deadline - Date.now()));
      this._requests.set(frame.id, { resolve, reject, gen: conn.gen, timer });
      try {
        this._write(conn, frame);
      } catch (e) {
        clearTimeout(timer);
        this._requests.delete(frame.id);
        reject(e);
      }
    });
  }

  /**
   * A request retried across reconnects (and after `rate_limited`) until the timeout.
   * @param {string} prefix
   * @param {(id: string) => {id: string, type: string}} build
   * @returns {Promise<any>}
   */
  async _call(prefix, build) {
    const deadline = Date.now() + this._requestTimeout;
    for (let attempt = 1; ; attempt += 1) {
      const conn = await this._waitReady(deadline);
      try {
        return await this._exchange(conn, build(this._ids.next(prefix)), deadline);
      } catch (e) {
        if (e === DROPPED) continue;
        if (e instanceof HubError && RETRYABLE_ERRORS.has(e.code) && Date.now() < deadline) {
          await sleep(Math.min(sendRetryDelay(e.retryAfterMs, attempt), deadline - Date.now()));
          continue;
        }
        throw e;
      }
    }
  }

  // --- sync ------------------------------------------------------------------------------

  /**
   * Run sync rounds one at a time (a resync, a gap fill, an explicit sync).
   * @param {Connection} conn
   * @param {string[] | null} only  conversations to fill (listed only), null: everything
   * @returns {Promise<Message[]>}
   */
  _serialSync(conn, only) {
    const run = this._syncChain.then(() => this._syncRounds(conn, only));
    this._syncChain = run.catch(() => {});
    return run;
  }

  /**
   * Sync until no conversation or account has more. With `only` and a hub that speaks
   * `sync.listed_only`, only those conversations are asked for.
   * @param {Connection} conn
   * @param {string[] | null} only
   * @returns {Promise<Message[]>}
   */
  async _syncRounds(conn, only) {
    const hello = /** @type {Hello} */ (conn.hello);
    const listedOnly = hello.features.includes("sync.listed_only");
    const limit = Math.max(1, Math.min(this._syncLimit, conn.limits.max_sync_limit));
    /** @type {Message[]} */
    const delivered = [];
    /** @type {string[] | null} */
    let discovered = null;
    for (let round = 0; round < 100000; round += 1) {
      if (conn.closedWith !== null) throw DROPPED;
      const cursors = this._inbox.cursors;
      const accounts = this._notices.snapshot();
      const id = () => this._ids.next("y");
      let plan;
      if (only !== null && listedOnly) {
        const since = Object.fromEntries(only.map((cid) => [cid, cursors.position(cid)]));
        plan = { frames: [{ type: "sync", id: id(), since, limit, accounts, listed_only: true }], discover: false };
      } else {
        plan = syncPlan({ id, since: cursors.snapshot(), accounts, limit, maxFrameBytes: conn.limits.max_frame_bytes });
        if (plan.discover && !listedOnly) throw new HubError("sync_too_large", "the sync frame exceeds the hub's frame limit and the hub cannot sync listed conversations only");
      }
      let more = false;
      for (const frame of plan.frames) {
        const got = /** @type {{more: boolean, delivered: Message[]}} */ (await this._exchange(conn, frame, Date.now() + this._requestTimeout));
        delivered.push(...got.delivered);
        more = more || got.more;
      }
      if (plan.discover && discovered === null) {
        // too many conversations for one frame: learn those opened while away over HTTP
        const all = await this.session.all("/v1/conversations", "conversations");
        discovered = all.map((c) => c.id).filter((cid) => !cursors.has(cid));
        for (const cid of discovered) cursors.seed(cid, 0);
        more = more || discovered.length > 0;
      }
      if (!more) break;
    }
    for (const event of this._notices.goLive()) this._emitNotice(event);
    return delivered;
  }

  /** Fill the conversations with gaps seen live (listed only, when the hub can). */
  async _fillGaps() {
    if (this._gapRunning) return;
    this._gapRunning = true;
    try {
      while (this._gaps.size && !this._final) {
        const conn = await this._waitReady(Date.now() + this._requestTimeout);
        const only = [...this._gaps.keys()];
        this._gaps.clear();
        try {
          await this._serialSync(conn, only);
        } catch (e) {
          if (e !== DROPPED && !(e instanceof HubError && e.code === "timeout")) throw e;
          for (const cid of only) this._gaps.set(cid, this._inbox.cursors.position(cid) + 2);
        }
      }
    } catch {
      // the client ended, or the resync after a reconnect will cover it
    } finally {
      this._gapRunning = false;
    }
  }

  /** @param {string} cid @param {number} seq */
  _requestGap(cid, seq) {
    this._gaps.set(cid, Math.max(seq, this._gaps.get(cid) ?? 0));
    if (this._ready) this._fillGaps();
  }

  async _fillInbox() {
    if (this._inboxRunning) return;
    this._inboxRunning = true;
    try {
      await this.syncInbox();
    } catch {
      // a hub without alerts, or the connection dropped: the next connect retries
    } finally {
      this._inboxRunning = false;
    }
  }

  // --- incoming frames ---------------------------------------------------------------------

  /** @param {Connection} conn @param {string} data */
  _dispatch(conn, data) {
    if (conn.gen !== this._gen) return;
    /** @type {any} */
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return; // not JSON: ignore (the hub never sends it)
    }
    if (!f || typeof f !== "object") return;
    switch (f.type) {
      case "message":
        return this._onMessage(f.message);
      case "sent": {
        const acked = this._inbox.onSent(f);
        if (acked) this._ack(acked);
        else if (typeof f.id === "string") this._resolve(f.id, f); // an edit or recall
        return;
      }
      case "synced": {
        const conversations = /** @type {SyncedConversation[]} */ (f.conversations || []);
        const result = this._inbox.onSynced(conversations);
        const notices = this._notices.onSynced(/** @type {SyncedAccount[]} */ (f.accounts || []));
        for (const m of result.delivered) this._deliver(m);
        for (const e of notices.delivered) this._emitNotice(e);
        for (const a of result.acked) this._ack(a);
        this._resolve(f.id, { delivered: result.delivered, more: result.more || notices.more });
        return;
      }
      case "notice":
        for (const e of this._notices.onEvent({ type: "notice", ...f.notice })) this._emitNotice(e);
        return;
      case "notice_recalled":
        for (const e of this._notices.onEvent({ type: "notice_recalled", account_id: f.account_id, notice_id: f.notice_id, seq: f.seq, event_seq: f.event_seq, ts: f.ts })) this._emitNotice(e);
        return;
      case "alert": {
        const verdict = this._alerts.offer(f.alert);
        if (verdict === "yield") this._emit("alert", f.alert);
        else if (verdict === "gap") this._fillInbox();
        return;
      }
      case "inbox_synced": {
        const fresh = this._alerts.onSynced(f.cursor, f.alerts || []);
        for (const a of fresh) this._emit("alert", a);
        this._resolve(f.id, { fresh, more: !!f.has_more });
        return;
      }
      case "inbox_update":
      case "account_receipt":
      case "receipt":
        if (f.id === undefined || f.id === null || !this._resolve(f.id, f)) this._emit(f.type, f);
        return;
      case "pong":
        if (f.id !== undefined && f.id !== null) this._resolve(f.id, f);
        return;
      case "error":
        return this._onError(f);
      case "service_status":
        if (this._revisions.accept(f.session_id, f.revision, f.queue, f.state)) this._emit("service_status", f);
        return;
      case "conversation_removed":
        this._inbox.cursors.forget(f.conversation_id);
        this._gaps.delete(f.conversation_id);
        this._emit("conversation_removed", f);
        return;
      case "typing":
      case "presence":
        this._emit(f.type, f);
        return;
      case "presence_list":
        if (!this._resolve(f.id, f)) this._emit("presence_list", f); // a re-watch after a reconnect
        return;
      case "contact": // contacts changed on some device (contacts.js)
      case "conversation_added":
      case "rm_changed":
      case "service_assigned":
      case "agent_state":
        this._emit(f.type, f);
        return;
      default:
        return; // a repeated hello, or a frame type of a later version: ignore
    }
  }

  /** @param {string} id @param {unknown} value @returns {boolean} */
  _resolve(id, value) {
    const req = this._requests.get(id);
    if (!req) return false;
    this._requests.delete(id);
    if (req.timer !== null) clearTimeout(req.timer);
    req.resolve(value);
    return true;
  }

  /** @param {Message} m */
  _onMessage(m) {
    const routed = this._inbox.onMessage(m);
    if (routed.route === "yield") this._deliver(m);
    else if (routed.route === "gap") this._requestGap(m.conversation_id, m.seq);
    else if (routed.route === "ack" && routed.pending) this._ack({ pending: routed.pending, message: m, hole: !!routed.hole, duplicate: false });
  }

  /** @param {Message} m */
  _deliver(m) {
    this._store.add(m);
    this._emit("message", { conversationId: m.conversation_id, message: m });
    this._revise(m); // a recall/edit applied to its target (event "revised")
  }

  /** @param {Acked} acked */
  _ack(acked) {
    const waiter = this._sendWaiters.get(acked.pending);
    this._sendWaiters.delete(acked.pending);
    this._store.add(acked.message);
    const cid = acked.message.conversation_id;
    const dlp = acked.dlp ?? [];
    this._emit("sent", { conversationId: cid, message: acked.message, clientMsgId: acked.pending.clientMsgId, duplicate: acked.duplicate, dlp });
    if (dlp.length) this._emit("dlp", { conversationId: cid, messageId: acked.message.message_id, dlp });
    this._emit("pending", { conversationId: cid });
    if (waiter) waiter.resolve(acked.message);
    if (acked.hole) {
      const seq = acked.message.seq;
      const timer = setTimeout(() => {
        this._timers.delete(timer);
        if (!this._final && this._inbox.cursors.hasHoleBefore(cid, seq)) this._requestGap(cid, seq);
      }, this._gapGrace);
      this._timers.add(timer);
    }
  }

  /** @param {any} f */
  _onError(f) {
    if (f.id === undefined || f.id === null) return;
    const err = new HubError(f.code, f.message || f.code, { retryAfterMs: f.retry_after_ms });
    const entry = this._inbox.pending.byFrame(f.id);
    if (entry) {
      if (RETRYABLE_ERRORS.has(f.code)) {
        this._inbox.pending.retryLater(entry, Date.now() + sendRetryDelay(f.retry_after_ms, entry.attempts));
        this._flushPending();
      } else {
        this._inbox.pending.remove(entry);
        const waiter = this._sendWaiters.get(entry);
        this._sendWaiters.delete(entry);
        this._emit("pending", { conversationId: entry.conversationId });
        if (waiter) waiter.reject(err);
      }
      return;
    }
    const req = this._requests.get(f.id);
    if (req) {
      this._requests.delete(f.id);
      if (req.timer !== null) clearTimeout(req.timer);
      req.reject(err);
    }
  }

  // --- helpers -----------------------------------------------------------------------------

  /** @param {NoticeEvent} e */
  _emitNotice(e) {
    this._emit(e.type, e);
  }

  /** @param {string} type @param {unknown} detail */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {"connecting" | "open" | "offline" | "closed"} state @param {HubError | null} [error] */
  _setState(state, error = null) {
    if (this._state === state && state !== "closed") return;
    this._state = state;
    this._emit("state", error ? { state, error } : { state });
  }

  _checkUsable() {
    if (this._final) throw this._final;
  }

  /**
   * End the client: pending sends and requests fail with `error`.
   * @param {HubError} error
   * @param {boolean} [quiet]  a normal end (1000): the `state` event carries no error
   */
  _finish(error, quiet = false) {
    if (this._final) return;
    this._final = error;
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    if (this._wakeSleep) this._wakeSleep();
    const conn = this._conn;
    if (conn) {
      try {
        conn.ws.close(1000, "");
      } catch {
        // already closed
      }
      this._onSocketClosed(conn, 1000, "closed");
    }
    for (const [entry, waiter] of this._sendWaiters) {
      this._inbox.pending.remove(entry);
      waiter.reject(error);
    }
    this._sendWaiters.clear();
    for (const [, req] of this._requests) {
      if (req.timer !== null) clearTimeout(req.timer);
      req.reject(error);
    }
    this._requests.clear();
    for (const w of this._readyWaiters) w.reject(error);
    this._readyWaiters = [];
    this._openedReject(error);
    this._ready = false;
    this._state = "closed";
    this._emit("state", quiet || error.code === "closed" ? { state: "closed" } : { state: "closed", error });
  }
}
