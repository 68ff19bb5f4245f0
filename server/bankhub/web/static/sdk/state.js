// The SDK's bookkeeping, without I/O: plain, synchronous and deterministic (clocks and
// randomness are passed in), so it is unit-tested by feeding it frames.
//
// Mirrors the Python SDK (clients/python/bankhub_client/state.py, notices.py, alerts.py):
// * CursorTracker   per conversation, the highest seq held with no hole before it;
// * PendingSends    sends not acknowledged yet, resent after a reconnect with the same client_msg_id;
// * MessageInbox    the two together: routes `message`, `sent` and `synced` frames;
// * MessageStore    the ordered, de-duplicated messages a client holds (bounded);
// * NoticeInbox     official-account cursors: notices and recalls, each handed out once;
// * InboxCursor     the alerts inbox position;
// * RevisionFilter  drops service statuses older than one already shown (per session and queue);
// * classifyClose, classifyHandshakeStatus, sendRetryDelay, ReconnectPolicy, Pacer,
//   keepAliveInterval, syncPlan: when and how fast to retry, ping and sync.

/** @typedef {{kind: "text", text: string}} TextBody */
/** @typedef {{kind: "system", event: string, text: string, data?: Record<string, string>}} SystemBody */
/** @typedef {{kind: string, [field: string]: unknown}} Body */

/**
 * A message in a conversation (the `message` of a `message` frame, or of `synced`).
 * @typedef {object} Message
 * @property {string} conversation_id
 * @property {string} message_id
 * @property {number} seq
 * @property {string} sender_id
 * @property {string} client_msg_id
 * @property {Body} body
 * @property {number} ts  milliseconds since the Unix epoch
 * @property {number} [edited_ts]  when its sender last edited it (feature `edit`; absent: never)
 */

/**
 * The limits the hub enforces, from `hello.limits`.
 * @typedef {object} Limits
 * @property {number} max_frame_bytes
 * @property {number} max_text_chars
 * @property {number} max_sync_limit
 * @property {number} frames_per_second
 * @property {number} frame_burst
 * @property {number} outbound_queue
 * @property {number} max_strikes
 * @property {number} strike_window  seconds
 * @property {number} idle_timeout   seconds
 */

/** @type {Limits} */
export const DEFAULT_LIMITS = Object.freeze({
  max_frame_bytes: 65536,
  max_text_chars: 4000,
  max_sync_limit: 500,
  frames_per_second: 50,
  frame_burst: 100,
  outbound_queue: 1024,
  max_strikes: 20,
  strike_window: 10,
  idle_timeout: 90,
});

/**
 * `limits` of a `hello`, with the hub's defaults for anything missing.
 * @param {Partial<Limits> | undefined} limits
 * @returns {Limits}
 */
export function limitsOf(limits) {
  return { ...DEFAULT_LIMITS, ...(limits || {}) };
}

export const SUBPROTOCOL = "bankhub.v1";
export const PROTOCOL_VERSION = 1;
const WS_PATH = "/v1/ws";

// --- URLs ------------------------------------------------------------------------------

/**
 * Both endpoints of a hub from its HTTP base (or WebSocket URL).
 *
 * `base` is `http(s)://host[:port][/prefix]`, `ws(s)://...`, the same ending in `/v1/ws`
 * or `/v1`, or `""` for the page's own origin (then `origin` is required: in a browser,
 * `location.origin`). A path prefix is kept; TLS follows the scheme (https <-> wss).
 * @param {string} base
 * @param {string} [origin]
 * @returns {{httpBase: string, wsUrl: string}}
 */
export function deriveEndpoints(base, origin) {
  const raw = base.trim();
  if (raw === "" && !origin) throw new TypeError("an empty base URL needs the page origin");
  const url = new URL(raw === "" ? /** @type {string} */ (origin) : raw);
  const schemes = /** @type {Record<string, [string, string]>} */ ({
    "http:": ["http:", "ws:"],
    "https:": ["https:", "wss:"],
    "ws:": ["http:", "ws:"],
    "wss:": ["https:", "wss:"],
  });
  const pair = schemes[url.protocol];
  if (!pair) throw new TypeError(`unsupported URL scheme ${url.protocol} in ${raw}: use http(s):// or ws(s)://`);
  if (url.search || url.hash) throw new TypeError(`URL ${raw} must not carry a query string or fragment`);
  let path = url.pathname.replace(/\/+$/, "");
  for (const suffix of [WS_PATH, "/v1"]) {
    if (path.endsWith(suffix)) {
      path = path.slice(0, -suffix.length);
      break;
    }
  }
  const host = url.host;
  return { httpBase: `${pair[0]}//${host}${path}`, wsUrl: `${pair[1]}//${host}${path}${WS_PATH}` };
}

/**
 * The WebSocket URL authenticated by a single-use ticket (`?ticket=...`).
 * @param {string} wsUrl
 * @param {string} ticket
 */
export function withTicket(wsUrl, ticket) {
  return `${wsUrl}?ticket=${encodeURIComponent(ticket)}`;
}

// --- cursors ---------------------------------------------------------------------------

/** @typedef {"deliver" | "duplicate" | "gap"} Verdict */

/**
 * Per conversation, the highest seq the client holds with no hole before it.
 *
 * A conversation without a cursor counts as position 0 (its messages are expected from
 * seq 1, as `sync` reads unlisted conversations). Seqs held beyond a hole (my own sends,
 * acknowledged while earlier messages of others are on their way) are kept aside and
 * absorbed once the hole fills. Cursors never move backwards.
 */
export class CursorTracker {
  /** @param {Record<string, number>} [initial] */
  constructor(initial) {
    /** @type {Map<string, number>} */
    this._pos = new Map();
    /** @type {Map<string, Set<number>>} */
    this._ahead = new Map();
    for (const [cid, seq] of Object.entries(initial || {})) this.seed(cid, seq);
  }

  /** @param {string} cid @returns {number | undefined} the cursor, undefined if none */
  get(cid) {
    return this._pos.get(cid);
  }

  /** @param {string} cid @returns {number} the cursor, 0 if none */
  position(cid) {
    return this._pos.get(cid) ?? 0;
  }

  /** @param {string} cid */
  has(cid) {
    return this._pos.has(cid);
  }

  get size() {
    return this._pos.size;
  }

  /** @returns {Record<string, number>} all cursors (a copy): `sync`'s `since`, and what to persist */
  snapshot() {
    return Object.fromEntries(this._pos);
  }

  /**
   * Declare everything up to `seq` held (or deliberately skipped).
   * @param {string} cid
   * @param {number} seq
   */
  seed(cid, seq) {
    if (!Number.isInteger(seq) || seq < 0) throw new RangeError("seq must be an integer >= 0");
    if (seq > (this._pos.get(cid) ?? -1)) {
      this._pos.set(cid, seq);
      this._absorb(cid);
    }
  }

  /** Forget a conversation (it was taken from me). @param {string} cid */
  forget(cid) {
    this._pos.delete(cid);
    this._ahead.delete(cid);
  }

  /**
   * Judge a live `message`: deliver only the next seq, never one twice.
   * @param {string} cid
   * @param {number} seq
   * @returns {Verdict}
   */
  offer(cid, seq) {
    const pos = this.position(cid);
    if (seq <= pos || this._ahead.get(cid)?.has(seq)) return "duplicate";
    if (seq === pos + 1) {
      this._pos.set(cid, seq);
      this._absorb(cid);
      return "deliver";
    }
    return "gap";
  }

  /**
   * Take a message from a `synced` answer; true if it is new. `synced` lists messages
   * after the cursor in seq order with no gaps, so a seq beyond cursor + 1 is accepted.
   * @param {string} cid
   * @param {number} seq
   */
  accept(cid, seq) {
    const pos = this.position(cid);
    if (seq <= pos || this._ahead.get(cid)?.has(seq)) return false;
    this._pos.set(cid, seq);
    this._absorb(cid);
    return true;
  }

  /**
   * Record one of my own sends as committed at `seq`. Returns true when seqs before it
   * are still missing (a hole: expected live shortly, else a sync must fetch them).
   * @param {string} cid
   * @param {number} seq
   */
  hold(cid, seq) {
    const pos = this.position(cid);
    if (seq <= pos) return false;
    if (seq === pos + 1) {
      this._pos.set(cid, seq);
      this._absorb(cid);
      return false;
    }
    let ahead = this._ahead.get(cid);
    if (!ahead) this._ahead.set(cid, (ahead = new Set()));
    ahead.add(seq);
    return true;
  }

  /** @param {string} cid @param {number} seq @returns {boolean} some seq below `seq` is missing */
  hasHoleBefore(cid, seq) {
    return this.position(cid) + 1 < seq;
  }

  /** @returns {string[]} conversations with seqs held beyond a hole */
  holes() {
    return [...this._ahead.keys()];
  }

  /** @param {string} cid */
  _absorb(cid) {
    const ahead = this._ahead.get(cid);
    if (!ahead) return;
    let pos = /** @type {number} */ (this._pos.get(cid));
    for (const s of [...ahead]) if (s <= pos) ahead.delete(s);
    while (ahead.has(pos + 1)) {
      pos += 1;
      ahead.delete(pos);
    }
    this._pos.set(cid, pos);
    if (ahead.size === 0) this._ahead.delete(cid);
  }
}

// --- pending sends ---------------------------------------------------------------------

/**
 * A send the hub has not acknowledged yet. `frameId` is its transmission on the current
 * connection (null: not transmitted on it yet); `notBefore` the clock time (ms) before
 * which it must not be transmitted again (after `rate_limited`).
 * @typedef {object} PendingSend
 * @property {string} conversationId
 * @property {string} clientMsgId
 * @property {string} text
 * @property {string | null} frameId
 * @property {number} attempts
 * @property {number} notBefore
 * @property {Body | null} [body]  a body of another kind (image, voice ...) sent as is; null/absent: `text`
 */

/** @param {string} cid @param {string} cmid */
const keyOf = (cid, cmid) => `${cid}\u0000${cmid}`;

/**
 * Unacknowledged sends, in the order they were made. Each stays until acknowledged
 * (`sent`, or the message itself in `message`/`synced`), refused for good, or given up.
 * After a reconnect every entry is transmitted again with the same `client_msg_id`: the
 * hub stores a client_msg_id once per sender and conversation and answers a resend of a
 * committed send `duplicate`, so nothing is stored twice.
 */
export class PendingSends {
  /** @param {number} [max] at most this many sends wait at once */
  constructor(max = 1000) {
    this.max = max;
    /** @type {Map<string, PendingSend>} */
    this._byKey = new Map();
    /** @type {Map<string, string>} */
    this._byFrame = new Map();
  }

  get size() {
    return this._byKey.size;
  }

  /** @returns {PendingSend[]} in the order they were made */
  list() {
    return [...this._byKey.values()];
  }

  /**
   * Register a send; `created` is false when the same conversation and client_msg_id is
   * already pending (it joins that one). Throws when its text differs (the hub would keep
   * only the first) or when `max` sends already wait. `body` (optional): a body of another
   * kind than text, sent as is (`text` is then only what a pending list shows, e.g. a caption).
   * @param {string} conversationId
   * @param {string} clientMsgId
   * @param {string} text
   * @param {Body | null} [body]
   * @returns {{entry: PendingSend, created: boolean}}
   */
  add(conversationId, clientMsgId, text, body = null) {
    const key = keyOf(conversationId, clientMsgId);
    const existing = this._byKey.get(key);
    if (existing) {
      if (existing.text !== text || JSON.stringify(existing.body ?? null) !== JSON.stringify(body)) {
        throw new TypeError(`client_msg_id ${clientMsgId} is already pending with a different text`);
      }
      return { entry: existing, created: false };
    }
    if (this._byKey.size >= this.max) throw new RangeError(`${this.max} sends already wait for their acknowledgement`);
    /** @type {PendingSend} */
    const entry = { conversationId, clientMsgId, text, frameId: null, attempts: 0, notBefore: 0, body };
    this._byKey.set(key, entry);
    return { entry, created: true };
  }

  /** @param {PendingSend} entry @param {string} frameId */
  transmitting(entry, frameId) {
    if (entry.frameId !== null) this._byFrame.delete(entry.frameId);
    entry.frameId = frameId;
    entry.attempts += 1;
    this._byFrame.set(frameId, keyOf(entry.conversationId, entry.clientMsgId));
  }

  /** @param {string} frameId @returns {PendingSend | undefined} */
  byFrame(frameId) {
    const key = this._byFrame.get(frameId);
    return key === undefined ? undefined : this._byKey.get(key);
  }

  /** @param {string} conversationId @param {string} clientMsgId @returns {PendingSend | undefined} */
  match(conversationId, clientMsgId) {
    return this._byKey.get(keyOf(conversationId, clientMsgId));
  }

  /** Forget an entry; true if it was pending. @param {PendingSend} entry */
  remove(entry) {
    if (entry.frameId !== null) this._byFrame.delete(entry.frameId);
    const key = keyOf(entry.conversationId, entry.clientMsgId);
    if (this._byKey.get(key) !== entry) return false;
    this._byKey.delete(key);
    return true;
  }

  /** The transmission was refused for now: due again at `notBefore` (ms). @param {PendingSend} entry @param {number} notBefore */
  retryLater(entry, notBefore) {
    if (entry.frameId !== null) this._byFrame.delete(entry.frameId);
    entry.frameId = null;
    entry.notBefore = notBefore;
  }

  /** Every transmission's answer is lost with the connection: all are due again. */
  connectionLost() {
    for (const entry of this._byKey.values()) entry.frameId = null;
    this._byFrame.clear();
  }

  /** @param {number} now @returns {PendingSend[]} entries to transmit now, oldest first */
  due(now) {
    return this.list().filter((e) => e.frameId === null && e.notBefore <= now);
  }

  /** @param {number} now @returns {number | null} ms until a deferred entry is due (0: one is), null if none waits */
  nextDueIn(now) {
    let best = null;
    for (const e of this._byKey.values()) {
      if (e.frameId !== null) continue;
      const wait = Math.max(0, e.notBefore - now);
      if (best === null || wait < best) best = wait;
    }
    return best;
  }
}

// --- routing incoming frames -------------------------------------------------------------

/**
 * What a frame means: "yield" (new: hand it out), "drop" (held already), "gap" (earlier
 * seqs are missing: sync instead), "ack" (it completes my pending send).
 * @typedef {object} Routed
 * @property {"yield" | "drop" | "gap" | "ack"} route
 * @property {PendingSend} [pending]
 * @property {boolean} [hole]  for "ack": seqs before it are still missing
 */

/**
 * A pending send completed by the hub.
 * @typedef {object} Acked
 * @property {PendingSend} pending
 * @property {Message} message
 * @property {boolean} hole
 * @property {boolean} duplicate  the hub had stored it before (a resend)
 * @property {{kind: string, masked: string}[]} [dlp]  values the hub masked in it (feature `dlp`)
 */

/**
 * One conversation of a `synced` answer.
 * @typedef {object} SyncedConversation
 * @property {string} conversation_id
 * @property {number} last_seq
 * @property {number} read_seq
 * @property {number} unread
 * @property {Message[]} messages
 * @property {boolean} has_more
 */

/**
 * Cursors plus pending sends: decides what each incoming frame means. `userId` is mine
 * (from `hello`): a message of mine whose client_msg_id is pending completes that send.
 */
export class MessageInbox {
  /** @param {{userId?: string | null, cursors?: Record<string, number>, maxPending?: number}} [options] */
  constructor(options = {}) {
    this.userId = options.userId ?? null;
    this.cursors = new CursorTracker(options.cursors);
    this.pending = new PendingSends(options.maxPending);
  }

  /** @param {Message} m */
  _ownPending(m) {
    if (this.userId === null || m.sender_id !== this.userId) return undefined;
    return this.pending.match(m.conversation_id, m.client_msg_id);
  }

  /** Route a live `message`. @param {Message} m @returns {Routed} */
  onMessage(m) {
    const own = this._ownPending(m);
    if (own) {
      this.pending.remove(own);
      return { route: "ack", pending: own, hole: this.cursors.hold(m.conversation_id, m.seq) };
    }
    const verdict = this.cursors.offer(m.conversation_id, m.seq);
    if (verdict === "deliver") return { route: "yield" };
    if (verdict === "duplicate") return { route: "drop" };
    return { route: "gap" };
  }

  /**
   * Route a `sent` answer; null if it answers no pending send (given up, or completed
   * already by the message itself).
   * @param {{id: string, conversation_id: string, client_msg_id: string, message_id: string, seq: number, ts: number, duplicate?: boolean, body?: Body, dlp?: {kind: string, masked: string}[]}} frame
   * @returns {Acked | null}
   */
  onSent(frame) {
    const entry = this.pending.byFrame(frame.id);
    if (!entry || entry.conversationId !== frame.conversation_id || entry.clientMsgId !== frame.client_msg_id) return null;
    this.pending.remove(entry);
    /** @type {Message} */
    const message = {
      conversation_id: frame.conversation_id,
      message_id: frame.message_id,
      seq: frame.seq,
      sender_id: this.userId ?? "",
      client_msg_id: frame.client_msg_id,
      // the hub's stored body when it differs from what was sent (a card: signed by the hub; a masked text)
      body: frame.body ?? entry.body ?? { kind: "text", text: entry.text },
      ts: frame.ts,
    };
    // data-loss prevention: what the hub masked (frame.body is then the masked body the others see)
    const dlp = Array.isArray(frame.dlp) ? frame.dlp : [];
    return { pending: entry, message, hole: this.cursors.hold(frame.conversation_id, frame.seq), duplicate: !!frame.duplicate, dlp };
  }

  /**
   * Apply a `synced` answer's conversations.
   * @param {SyncedConversation[]} conversations
   * @returns {{delivered: Message[], acked: Acked[], more: boolean}}
   */
  onSynced(conversations) {
    /** @type {Message[]} */
    const delivered = [];
    /** @type {Acked[]} */
    const acked = [];
    let more = false;
    for (const conv of conversations) {
      const messages = [...(conv.messages || [])].sort((a, b) => a.seq - b.seq);
      for (const m of messages) {
        if (m.conversation_id !== conv.conversation_id) continue;
        const own = this._ownPending(m);
        if (own) {
          this.pending.remove(own);
          this.cursors.accept(m.conversation_id, m.seq);
          acked.push({ pending: own, message: m, hole: false, duplicate: true });
        } else if (this.cursors.accept(m.conversation_id, m.seq)) {
          delivered.push(m);
        }
      }
      if (conv.has_more && messages.length > 0) more = true;
    }
    return { delivered, acked, more };
  }
}

// --- held messages ---------------------------------------------------------------------

/**
 * The messages a client holds per conversation, in seq order, each seq once. At most
 * `maxPerConversation` of the newest are kept (older ones are history, read over HTTP).
 */
export class MessageStore {
  /** @param {number} [maxPerConversation] */
  constructor(maxPerConversation = 500) {
    if (maxPerConversation < 1) throw new RangeError("maxPerConversation must be >= 1");
    this.max = maxPerConversation;
    /** @type {Map<string, Message[]>} */
    this._by = new Map();
  }

  /**
   * Add a message; false if that seq is held already (or older than everything kept
   * when the conversation is full).
   * @param {Message} m
   */
  add(m) {
    let list = this._by.get(m.conversation_id);
    if (!list) this._by.set(m.conversation_id, (list = []));
    // find the insertion point from the end: messages almost always arrive in order
    let i = list.length;
    while (i > 0 && list[i - 1].seq > m.seq) i -= 1;
    if (i > 0 && list[i - 1].seq === m.seq) return false;
    if (list.length >= this.max && i === 0) return false;
    list.splice(i, 0, m);
    if (list.length > this.max) list.splice(0, list.length - this.max);
    return true;
  }

  /** @param {string} cid @returns {Message[]} a copy, in seq order */
  list(cid) {
    return [...(this._by.get(cid) || [])];
  }

  /**
   * The held message `messageId` of conversation `cid` (a recall or edit targets it).
   * @param {string} cid @param {string} messageId @returns {Message | undefined}
   */
  get(cid, messageId) {
    return this._by.get(cid)?.find((m) => m.message_id === messageId);
  }

  /**
   * Replace the held message with `m`'s seq by `m` (its new state after a recall or edit);
   * false if that seq is not held.
   * @param {Message} m
   */
  replace(m) {
    const list = this._by.get(m.conversation_id);
    const i = list ? list.findIndex((x) => x.seq === m.seq) : -1;
    if (!list || i < 0) return false;
    list[i] = m;
    return true;
  }

  /** @param {string} cid @returns {number | undefined} the lowest seq held */
  oldest(cid) {
    return this._by.get(cid)?.[0]?.seq;
  }

  /** @param {string} cid */
  forget(cid) {
    this._by.delete(cid);
  }
}

// --- official accounts -------------------------------------------------------------------

/**
 * A notice (the `notice` of a `notice` frame, or of `synced.accounts[].notices`).
 * @typedef {object} Notice
 * @property {string} account_id
 * @property {string} notice_id
 * @property {number} seq
 * @property {number} ts
 * @property {Body} [body]  absent when recalled
 * @property {boolean} [recalled]
 * @property {number} [recalled_ts]
 * @property {{key_id: string, sig: string}} [signature]  the hub's; check it with cards.js's verifyNotice
 */

/**
 * A `notice_recalled` frame's facts: hide that notice.
 * @typedef {object} NoticeRecalled
 * @property {"notice_recalled"} type
 * @property {string} account_id
 * @property {string} notice_id
 * @property {number} seq  the notice's
 * @property {number | null} event_seq  the recall's (null when learned from `synced`)
 * @property {number} ts
 */

/**
 * A notice event as handed out: a `notice` or a recall.
 * @typedef {({type: "notice"} & Notice) | NoticeRecalled} NoticeEvent
 */

/**
 * One account of a `synced` answer.
 * @typedef {object} SyncedAccount
 * @property {string} account_id
 * @property {number} cursor
 * @property {Notice[]} notices
 * @property {boolean} has_more
 * @property {number} [last_seq]
 * @property {number} [read_seq]
 * @property {number} [unread]
 */

/**
 * Per followed account, the last account event seq held; de-duplicates and orders the
 * notices and recalls of live frames and `synced` answers. A follower's seqs have holes
 * (notices target audiences), so a hole proves nothing: the hub's per-connection
 * guarantees are relied on instead. Until a connection's first sync answered, live
 * events are held back and replayed after it (those the answer covered are dropped).
 */
export class NoticeInbox {
  /** @param {Record<string, number>} [cursors] @param {{recallMemory?: number}} [options] */
  constructor(cursors, options = {}) {
    /** @type {Map<string, number>} */
    this._pos = new Map();
    /** @type {Set<string>} */
    this._recalled = new Set();
    this._recallMemory = options.recallMemory ?? 10000;
    this._live = false;
    /** @type {NoticeEvent[]} */
    this._held = [];
    for (const [a, seq] of Object.entries(cursors || {})) this.seed(a, seq);
  }

  /** @returns {Record<string, number>} `sync`'s `accounts`, and what to persist */
  snapshot() {
    return Object.fromEntries(this._pos);
  }

  /** @param {string} accountId */
  get(accountId) {
    return this._pos.get(accountId);
  }

  /** @param {string} accountId @param {number} seq */
  seed(accountId, seq) {
    if (!Number.isInteger(seq) || seq < 0) throw new RangeError("seq must be an integer >= 0");
    if (seq > (this._pos.get(accountId) ?? -1)) this._pos.set(accountId, seq);
  }

  /** I unfollowed it: a later follow starts afresh. @param {string} accountId */
  forget(accountId) {
    this._pos.delete(accountId);
  }

  get live() {
    return this._live;
  }

  get held() {
    return this._held.length;
  }

  /** A new connection; `live`: no sync runs first. @param {boolean} live */
  connectionStarted(live) {
    this._held = [];
    this._live = live;
  }

  /** A sync answered in full: replay held events. @returns {NoticeEvent[]} */
  goLive() {
    if (this._live) return [];
    this._live = true;
    const held = this._held;
    this._held = [];
    return held.flatMap((e) => this.onEvent(e));
  }

  /** A live `notice` or `notice_recalled`: what to hand out now. @param {NoticeEvent} event @returns {NoticeEvent[]} */
  onEvent(event) {
    if (!this._live) {
      if (this._held.length < 10000) this._held.push(event);
      return [];
    }
    const account = event.account_id;
    const at = event.type === "notice" ? event.seq : event.event_seq;
    if (at === null || at === undefined) throw new TypeError("a live recall carries its event_seq");
    const pos = this._pos.get(account);
    if (pos !== undefined && at <= pos) return [];
    this._pos.set(account, at);
    if (event.type === "notice") {
      if (event.recalled) this._remember(account, event.notice_id);
      return [event];
    }
    return this._remember(account, event.notice_id) ? [event] : [];
  }

  /**
   * Apply a `synced` answer's accounts. A notice past the cursor is new (withdrawn already
   * when `recalled`); one at or below it that is now recalled is a recall of a notice held.
   * @param {SyncedAccount[]} accounts
   * @returns {{delivered: NoticeEvent[], more: boolean}}
   */
  onSynced(accounts) {
    /** @type {NoticeEvent[]} */
    const delivered = [];
    let more = false;
    for (const acc of accounts) {
      const before = this._pos.get(acc.account_id);
      for (const n of [...(acc.notices || [])].sort((a, b) => a.seq - b.seq)) {
        if (n.account_id !== acc.account_id) continue;
        if (before === undefined || n.seq > before) {
          if (n.recalled) this._remember(n.account_id, n.notice_id);
          delivered.push({ type: "notice", ...n });
        } else if (n.recalled && this._remember(n.account_id, n.notice_id)) {
          delivered.push({
            type: "notice_recalled",
            account_id: n.account_id,
            notice_id: n.notice_id,
            seq: n.seq,
            event_seq: null,
            ts: n.recalled_ts ?? n.ts,
          });
        }
      }
      const after = Math.max(acc.cursor, before ?? 0);
      this._pos.set(acc.account_id, after);
      if (acc.has_more && (before === undefined || after > before)) more = true;
    }
    return { delivered, more };
  }

  /** @param {string} accountId @param {string} noticeId @returns {boolean} false if reported before */
  _remember(accountId, noticeId) {
    const key = `${accountId}\u0000${noticeId}`;
    if (this._recalled.has(key)) return false;
    this._recalled.add(key);
    if (this._recalled.size > this._recallMemory) {
      const oldest = this._recalled.values().next().value;
      if (oldest !== undefined) this._recalled.delete(oldest);
    }
    return true;
  }
}

// --- alerts ------------------------------------------------------------------------------

/**
 * An alert in my inbox, rendered by the hub.
 * @typedef {object} Alert
 * @property {string} alert_id
 * @property {number} seq
 * @property {"security" | "transaction" | "service" | "marketing" | string} category
 * @property {"high" | "normal" | "low" | string} priority
 * @property {string} template
 * @property {string} title
 * @property {string} text
 * @property {number} ts
 * @property {"unread" | "read" | "archived"} [state]
 * @property {number | null} [expires_at]
 * @property {string | null} [collapse_key]
 * @property {string | null} [replaces]
 * @property {boolean} [silent]
 */

/**
 * The last alerts-inbox seq a client holds. Live alerts are handed out in seq order, each
 * once; one that skips seqs means some were missed ("gap": sync the inbox). Unknown
 * cursor (null): the first alert seen sets it.
 */
export class InboxCursor {
  /** @param {number | null} [cursor] */
  constructor(cursor = null) {
    this.cursor = cursor;
  }

  /** @param {{seq: number}} alert @returns {"yield" | "drop" | "gap"} */
  offer(alert) {
    if (this.cursor === null || alert.seq === this.cursor + 1) {
      this.cursor = alert.seq;
      return "yield";
    }
    return alert.seq <= this.cursor ? "drop" : "gap";
  }

  /**
   * The alerts of an `inbox_synced` answer not handed out yet; the cursor moves to `cursor`.
   * @template {{seq: number}} A
   * @param {number} cursor
   * @param {A[]} alerts
   * @returns {A[]}
   */
  onSynced(cursor, alerts) {
    const held = this.cursor ?? -1;
    const fresh = [...alerts].sort((a, b) => a.seq - b.seq).filter((a) => a.seq > held);
    this.cursor = Math.max(held, cursor, ...fresh.map((a) => a.seq));
    return fresh;
  }
}

// --- service desk ------------------------------------------------------------------------

/**
 * Decides which `service_status` frames to show (statuses can overtake one another across
 * nodes). The hub's `revision` counts the changes of the status's *queue*, so two
 * revisions compare only within one queue: a session transferred to another queue starts
 * over on that queue's count, and a status that is not about the queue (`closed`, or
 * `active` after a transfer to an agent) carries 0. So: a `waiting` or `active` status
 * lower than one shown for the same session and queue is dropped; any other state change
 * is shown; `closed` is final (nothing later about that session is shown). Remembers `max`
 * sessions.
 */
export class RevisionFilter {
  /** @param {number} [max] */
  constructor(max = 256) {
    this.max = max;
    /** @type {Map<string, {queue: string | undefined, revision: number, closed: boolean}>} */
    this._seen = new Map();
  }

  /**
   * @param {string} sessionId
   * @param {number | undefined} revision
   * @param {string} [queue] the status's queue (omitted: compared as one queue)
   * @param {string} [state] `bot`, `waiting`, `active` or `closed`
   * @returns {boolean} true: show it
   */
  accept(sessionId, revision, queue, state) {
    const rev = revision ?? 0;
    const seen = this._seen.get(sessionId);
    if (seen?.closed) return false;
    const sameQueue = seen !== undefined && seen.queue === queue;
    const closed = state === "closed";
    // a revision of 0 is "not about the queue": it is a state change, never an old position
    if (sameQueue && !closed && rev > 0 && rev < seen.revision) return false;
    this._seen.delete(sessionId);
    this._seen.set(sessionId, { queue, revision: sameQueue ? Math.max(rev, seen.revision) : rev, closed });
    if (this._seen.size > this.max) {
      const oldest = this._seen.keys().next().value;
      if (oldest !== undefined) this._seen.delete(oldest);
    }
    return true;
  }
}

// --- retry policy ------------------------------------------------------------------------

/** @typedef {"reconnect" | "stop" | "auth" | "fatal"} CloseAction */

const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014, 4000, 4008]);

/**
 * What to do after the connection closed with `code` (null: no close frame).
 * 1000 ends normally ("stop"); 1008 (session revoked or signed out, abuse) is "auth":
 * never reconnect with the same credentials; 1001/1011/1012 (restart)/1013/1014/4000
 * (idle)/4008 (slow consumer) and a connection lost without a close frame (1005/1006)
 * are retried ("reconnect", then sync); anything else (1002, 1003, 1007, 1009 frame too
 * big, unknown codes) is "fatal".
 * @param {number | null | undefined} code
 * @returns {CloseAction}
 */
export function classifyClose(code) {
  if (code === null || code === undefined || RECONNECT_CODES.has(code)) return "reconnect";
  if (code === 1000) return "stop";
  if (code === 1008) return "auth";
  return "fatal";
}

/**
 * What to do when an HTTP request of the handshake (the ws-ticket) is answered `status`
 * (0: the network failed).
 * @param {number} status
 * @returns {CloseAction}
 */
export function classifyHandshakeStatus(status) {
  if (status === 401 || status === 403) return "auth";
  if (status === 0 || status === 408 || status === 425 || status === 429 || status >= 500) return "reconnect";
  return "fatal";
}

/** `error` codes for which nothing was stored and trying again later is right. */
export const RETRYABLE_ERRORS = new Set(["rate_limited", "unavailable"]);

/**
 * Milliseconds to wait before retransmitting a send refused with a retryable code:
 * `retry_after_ms` when given, else 250 ms doubling per attempt, capped at 8 s.
 * @param {number | null | undefined} retryAfterMs
 * @param {number} attempts
 */
export function sendRetryDelay(retryAfterMs, attempts) {
  if (typeof retryAfterMs === "number" && retryAfterMs >= 0) return retryAfterMs;
  return Math.min(8000, 250 * 2 ** Math.min(Math.max(attempts - 1, 0), 10));
}

/**
 * Capped exponential backoff with jitter, bounded in attempts and/or time. Attempt n
 * (from 1) waits min(maxDelayMs, initialDelayMs * multiplier^(n-1)) reduced by up to
 * `jitter` (a fraction) at random, so clients dropped together (1012) do not return
 * together. Gives up after `maxAttempts` or `maxElapsedMs` (null: no bound).
 */
export class ReconnectPolicy {
  /** @param {{initialDelayMs?: number, maxDelayMs?: number, multiplier?: number, jitter?: number, maxAttempts?: number | null, maxElapsedMs?: number | null}} [o] */
  constructor(o = {}) {
    this.initialDelayMs = o.initialDelayMs ?? 500;
    this.maxDelayMs = o.maxDelayMs ?? 30000;
    this.multiplier = o.multiplier ?? 2;
    this.jitter = o.jitter ?? 0.5;
    this.maxAttempts = o.maxAttempts ?? null;
    this.maxElapsedMs = o.maxElapsedMs === undefined ? null : o.maxElapsedMs;
    if (this.initialDelayMs < 0 || this.maxDelayMs < 0 || this.multiplier < 1) throw new RangeError("delays must be >= 0 and multiplier >= 1");
    if (!(this.jitter >= 0 && this.jitter <= 1)) throw new RangeError("jitter must be within [0, 1]");
    if (this.maxAttempts !== null && this.maxAttempts < 1) throw new RangeError("maxAttempts must be >= 1 or null");
  }

  /** @param {number} attempt 1-based @param {number} rand uniform in [0, 1) @returns {number} ms */
  delay(attempt, rand) {
    const exponent = Math.max(0, attempt - 1);
    const base = exponent > 64 ? this.maxDelayMs : Math.min(this.maxDelayMs, this.initialDelayMs * this.multiplier ** exponent);
    return base * (1 - this.jitter * Math.min(Math.max(rand, 0), 1));
  }

  /** @param {number} attempt @param {number} elapsedMs since the drop */
  allows(attempt, elapsedMs) {
    if (this.maxAttempts !== null && attempt > this.maxAttempts) return false;
    if (this.maxElapsedMs !== null && elapsedMs >= this.maxElapsedMs) return false;
    return true;
  }
}

/**
 * A token bucket keeping outgoing frames under the hub's rate (10 % below
 * `hello.limits`). `reserve(now)` books one frame and returns the ms to wait first.
 */
export class Pacer {
  /** @param {number} ratePerSecond @param {number} burst @param {number} now ms */
  constructor(ratePerSecond, burst, now) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError("rate must be > 0 and burst >= 1");
    this.rate = ratePerSecond;
    this.burst = burst;
    this._tokens = burst;
    this._stamp = now;
  }

  /** @param {Limits} limits @param {number} now */
  static forLimits(limits, now) {
    return new Pacer(Math.max(limits.frames_per_second * 0.9, 0.1), Math.max(1, Math.floor(limits.frame_burst * 0.9)), now);
  }

  /** @param {number} now ms @returns {number} ms to wait before sending */
  reserve(now) {
    if (now > this._stamp) {
      this._tokens = Math.min(this.burst, this._tokens + ((now - this._stamp) / 1000) * this.rate);
      this._stamp = now;
    }
    this._tokens -= 1;
    return this._tokens >= 0 ? 0 : (-this._tokens / this.rate) * 1000;
  }
}

/**
 * How long (ms) a connection may stay silent before the client sends a `ping` frame:
 * a third of `limits.idle_timeout` (the hub closes with 4000 after it), at most 30 s.
 * Browsers cannot send WebSocket ping frames, so the protocol's `ping` keeps them open.
 * @param {Limits} limits
 */
export function keepAliveInterval(limits) {
  return Math.max(1000, Math.min(30000, (limits.idle_timeout * 1000) / 3));
}

// --- sync frames -------------------------------------------------------------------------

const encoder = new TextEncoder();

/** @param {unknown} frame @returns {number} UTF-8 bytes of its JSON */
export function frameBytes(frame) {
  return encoder.encode(JSON.stringify(frame)).length;
}

/**
 * The `sync` frames that resume from these cursors. One frame (unlisted conversations
 * come back from seq 1, so conversations opened while away are learned) when it fits in
 * `maxFrameBytes`; otherwise the conversations are split over several frames with
 * `listed_only: true` (protocol v1.1: only the listed conversations are answered, so
 * the frames do not each return every other conversation from seq 1), each with the
 * account cursors, and `discover` is true: new conversations must be learned otherwise
 * (`GET /v1/conversations`). Conversations at 0 are left out: they read from seq 1
 * anyway (unless `listed_only`).
 * @param {{id: () => string, since: Record<string, number>, accounts: Record<string, number>, limit: number, maxFrameBytes: number}} o
 * @returns {{frames: Array<{type: "sync", id: string, since: Record<string, number>, limit: number, accounts: Record<string, number>, listed_only?: boolean}>, discover: boolean}}
 */
export function syncPlan(o) {
  const since = Object.fromEntries(Object.entries(o.since).filter(([, s]) => s > 0));
  const whole = { type: /** @type {"sync"} */ ("sync"), id: o.id(), since, limit: o.limit, accounts: o.accounts };
  if (frameBytes(whole) <= o.maxFrameBytes) return { frames: [whole], discover: false };
  const frames = [];
  const entries = Object.entries(o.since); // zeros included: listed_only reads nothing unlisted
  let chunk = /** @type {Record<string, number>} */ ({});
  // every frame carries the account cursors: an account left out restarts at my read position
  const accounts = o.accounts;
  const budget = o.maxFrameBytes - frameBytes({ type: "sync", id: "y".repeat(24), since: {}, limit: o.limit, accounts, listed_only: true }) - 16;
  if (budget < 128) throw new RangeError("the accounts alone exceed the hub's frame limit");
  let used = 0;
  for (const [cid, seq] of entries) {
    const cost = frameBytes({ [cid]: seq });
    if (used + cost > budget && Object.keys(chunk).length > 0) {
      frames.push({ type: /** @type {"sync"} */ ("sync"), id: o.id(), since: chunk, limit: o.limit, accounts, listed_only: true });
      chunk = {};
      used = 0;
    }
    chunk[cid] = seq;
    used += cost;
  }
  frames.push({ type: /** @type {"sync"} */ ("sync"), id: o.id(), since: chunk, limit: o.limit, accounts, listed_only: true });
  return { frames, discover: true };
}

// --- validation ---------------------------------------------------------------------------

// the protocol's "text" type refuses NUL, the other C0 controls but tab/LF/CR, DEL and C1
// eslint-disable-next-line no-control-regex
const BAD_TEXT = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
// "single line" ids refuse every C0/C1 control, DEL, U+2028/2029 and the bidi controls
// eslint-disable-next-line no-control-regex
const BAD_LINE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/**
 * The body for `text`, or a TypeError/RangeError if the hub would refuse it.
 * @param {string} text
 * @param {Limits} limits
 * @returns {TextBody}
 */
export function validateText(text, limits) {
  if (typeof text !== "string") throw new TypeError("text must be a string");
  if (text.length === 0) throw new RangeError("text must not be empty");
  const chars = [...text].length; // code points, as the hub counts
  if (chars > limits.max_text_chars) throw new RangeError(`text has ${chars} characters; this hub accepts at most ${limits.max_text_chars}`);
  if (BAD_TEXT.test(text)) throw new TypeError("text contains a control character the hub refuses");
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text)) throw new TypeError("text contains an unpaired surrogate");
  return { kind: "text", text };
}

/**
 * Check an id (conversation_id, client_msg_id, account_id, alert id): 1..64 characters, one line.
 * @param {string} name
 * @param {unknown} value
 * @returns {string}
 */
export function validateId(name, value) {
  if (typeof value !== "string" || value.length < 1 || [...value].length > 64 || BAD_LINE.test(value)) {
    throw new TypeError(`${name} must be a single-line string of 1 to 64 characters`);
  }
  return value;
}

/** Request ids for client frames: `<prefix><n>`, unique per client. */
export class FrameIds {
  constructor() {
    this._n = 0;
  }

  /** @param {string} prefix */
  next(prefix) {
    this._n += 1;
    return `${prefix}${this._n}`;
  }
}
