// Typing, presence and read positions (hub features `typing`, `presence`,
// `receipts.privacy`): pure state machines, and the HTTP calls for privacy, presence and
// read positions. Times are passed in (ms), so everything here is tested without timers.
//
// * TypingSender: when to send `typing` for one conversation: a start on the first
//   keystroke and again every `intervalMs` while keys keep coming (the hub forwards at most
//   one per interval and receivers expire an indicator after `ttl_ms`), one stop after a
//   start. Client.typing sends the frame.
// * TypingBoard: who is typing where, from `typing` events; an indicator not refreshed
//   within its `ttl_ms` is gone (a lost "stopped" clears by itself). Bounded.
// * PresenceBook: what is known of watched users (`presence_list` answers, `presence`
//   events); `online` null is unknown (unrelated, blocked, hidden).
// * ReadPositions: the members' read positions in a conversation, from
//   GET /v1/conversations/{id}/receipts and later `receipt` events; `readBy(seq, me)` says
//   who has read a message of mine.

/**
 * @typedef {object} TypingEvent
 * @property {string} conversation_id
 * @property {string} user_id
 * @property {boolean} active
 * @property {number} ttl_ms
 */

/**
 * @typedef {object} PresenceInfo
 * @property {string} user_id
 * @property {boolean | null} [online] null or absent: unknown (same as hidden)
 * @property {number | null} [last_seen] ms, only while offline and if shown to me
 */

/**
 * @typedef {object} Privacy
 * @property {boolean} share_read_receipts
 * @property {"everyone" | "contacts" | "nobody"} last_seen
 */

export const TYPING_INTERVAL_MS = 3000;

export class TypingSender {
  /** @param {number} [intervalMs] */
  constructor(intervalMs = TYPING_INTERVAL_MS) {
    if (!(intervalMs > 0)) throw new RangeError("intervalMs must be positive");
    this.intervalMs = intervalMs;
    /** @type {number | null} */
    this._sentAt = null;
  }

  /** A keystroke at `now`: true if a start should be sent. @param {number} now */
  input(now) {
    if (this._sentAt !== null && now - this._sentAt < this.intervalMs) return false;
    this._sentAt = now;
    return true;
  }

  /** The text was sent or cleared: true if a stop should be sent. */
  stop() {
    const was = this._sentAt !== null;
    this._sentAt = null;
    return was;
  }
}

export class TypingBoard {
  /** @param {number} [maxEntries] */
  constructor(maxEntries = 1000) {
    this.maxEntries = maxEntries;
    /** @type {Map<string, {conversationId: string, userId: string, until: number}>} */
    this._until = new Map();
  }

  /** @param {TypingEvent} event @param {number} now */
  onTyping(event, now) {
    const key = `${event.conversation_id}\u0000${event.user_id}`;
    this._until.delete(key);
    if (event.active) {
      this._until.set(key, { conversationId: event.conversation_id, userId: event.user_id, until: now + event.ttl_ms });
      while (this._until.size > this.maxEntries) {
        const oldest = this._until.keys().next().value;
        if (oldest === undefined) break;
        this._until.delete(oldest);
      }
    }
  }

  /** The user's message arrived: their indicator goes. @param {string} conversationId @param {string} userId */
  clear(conversationId, userId) {
    this._until.delete(`${conversationId}\u0000${userId}`);
  }

  /** Users typing in `conversationId` at `now` (expired ones dropped). @param {string} conversationId @param {number} now */
  typing(conversationId, now) {
    /** @type {string[]} */
    const out = [];
    for (const [key, v] of [...this._until]) {
      if (v.until <= now) this._until.delete(key);
      else if (v.conversationId === conversationId) out.push(v.userId);
    }
    return out;
  }

  /** When the next indicator expires (ms), or null: schedule a redraw then. */
  nextExpiry() {
    let next = null;
    for (const v of this._until.values()) if (next === null || v.until < next) next = v.until;
    return next;
  }
}

export class PresenceBook {
  constructor() {
    /** @type {Map<string, PresenceInfo>} */
    this._users = new Map();
  }

  /** A `presence_list` answer: replaces what is known. @param {PresenceInfo[]} users */
  onList(users) {
    this._users.clear();
    for (const u of users) this._users.set(u.user_id, { user_id: u.user_id, online: u.online ?? null, last_seen: u.last_seen ?? null });
  }

  /** A `presence` event. @param {{user_id: string, online: boolean, last_seen?: number | null}} event */
  onPresence(event) {
    this._users.set(event.user_id, { user_id: event.user_id, online: event.online, last_seen: event.online ? null : event.last_seen ?? null });
  }

  /** true, false, or null (unknown). @param {string} userId @returns {boolean | null} */
  online(userId) {
    return this._users.get(userId)?.online ?? null;
  }

  /** @param {string} userId @returns {number | null} */
  lastSeen(userId) {
    return this._users.get(userId)?.last_seen ?? null;
  }
}

export class ReadPositions {
  constructor() {
    /** @type {Map<string, Map<string, number>>} conversation -> user -> read_seq */
    this._by = new Map();
  }

  /** GET /v1/conversations/{id}/receipts. @param {string} conversationId @param {{user_id: string, read_seq: number}[]} receipts */
  load(conversationId, receipts) {
    this._by.set(conversationId, new Map(receipts.map((r) => [r.user_id, r.read_seq])));
  }

  /** A `receipt` event (positions never move back). @param {{conversation_id: string, user_id: string, read_seq: number}} r */
  onReceipt(r) {
    let m = this._by.get(r.conversation_id);
    if (!m) this._by.set(r.conversation_id, (m = new Map()));
    m.set(r.user_id, Math.max(m.get(r.user_id) ?? 0, r.read_seq));
  }

  /** Who other than `me` has read up to `seq`. @param {string} conversationId @param {number} seq @param {string} me */
  readBy(conversationId, seq, me) {
    const m = this._by.get(conversationId);
    if (!m) return [];
    return [...m].filter(([u, s]) => u !== me && s >= seq).map(([u]) => u);
  }
}

/**
 * @typedef {object} SessionLike
 * @property {(method: string, path: string, body?: unknown) => Promise<any>} request
 */

/** GET /v1/me/privacy. @param {SessionLike} session @returns {Promise<Privacy>} */
export function getPrivacy(session) {
  return session.request("GET", "/v1/me/privacy");
}

/** PUT /v1/me/privacy (fields left out keep their value). @param {SessionLike} session @param {Partial<Privacy>} change @returns {Promise<Privacy>} */
export function setPrivacy(session, change) {
  return session.request("PUT", "/v1/me/privacy", change);
}

/** GET /v1/presence, once (no watching). @param {SessionLike} session @param {string[]} userIds @returns {Promise<PresenceInfo[]>} */
export async function fetchPresence(session, userIds) {
  if (userIds.length === 0) return [];
  const body = await session.request("GET", `/v1/presence?user_ids=${encodeURIComponent(userIds.join(","))}`);
  return body.users;
}

/** GET /v1/conversations/{id}/receipts. @param {SessionLike} session @param {string} conversationId @returns {Promise<{user_id: string, read_seq: number}[]>} */
export async function fetchReadPositions(session, conversationId) {
  const body = await session.request("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/receipts`);
  return body.receipts;
}
