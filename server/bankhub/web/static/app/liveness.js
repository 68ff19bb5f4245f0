// Typing, presence and read positions in the customer app and the staff workbench (they
// share this module; each passes its own `t`). The state machines are the SDK's
// (TypingSender, TypingBoard, PresenceBook); this module only wires them to the client's
// events and to the DOM:
// * typing: a composer's input sends `typing` debounced (a start at most every 3 s while
//   keys come, a stop when the text is sent or cleared); the other side's indicator
//   ("正在输入…") shows under the log and clears on a stop, on their message or after ttl;
// * presence: the users of interest (my RM, my customers, my contacts) are watched; a dot
//   shows online;
// * read positions: loaded when a chat opens (GET /v1/conversations/{id}/receipts, under
//   the hub's privacy rules), then kept by `receipt` events.

import { h } from "./dom.js";
import { PresenceBook, TypingBoard, TypingSender, fetchReadPositions } from "/static/sdk/bankhub.js";

/** @type {WeakMap<object, {board: TypingBoard, presence: PresenceBook, cleared: string | null}>} one per client: a chat opened later sees typing already under way */
const SHARED = new WeakMap();

/** The client's shared typing board and presence book (its listeners installed once). @param {any} client */
function sharedOf(client) {
  let state = SHARED.get(client);
  if (!state) {
    /** @type {{board: TypingBoard, presence: PresenceBook, cleared: string | null}} cleared: the message that last ended an indicator */
    const s = { board: new TypingBoard(), presence: new PresenceBook(), cleared: null };
    client.addEventListener("typing", (/** @type {any} */ e) => s.board.onTyping(e.detail, Date.now()));
    client.addEventListener("message", (/** @type {any} */ e) => {
      const m = e.detail?.message ?? e.detail;
      if (m?.sender_id && s.board.typing(m.conversation_id, Date.now()).includes(m.sender_id)) {
        s.board.clear(m.conversation_id, m.sender_id);
        s.cleared = m.message_id;
      }
    });
    client.addEventListener("presence", (/** @type {any} */ e) => s.presence.onPresence(e.detail));
    client.addEventListener("presence_list", (/** @type {any} */ e) => s.presence.onList(e.detail.users ?? []));
    SHARED.set(client, (state = s));
  }
  return state;
}

export class Liveness {
  /**
   * @param {{client: any, session: any, t: (key: string, vars?: Record<string, string | number>) => string, onChange: (cid: string | null) => void}} o
   */
  constructor(o) {
    this.client = o.client;
    this.session = o.session;
    this.me = o.session.user;
    this.t = o.t;
    this.onChange = o.onChange;
    const shared = sharedOf(o.client);
    this.shared = shared;
    this.board = shared.board;
    this.presence = shared.presence;
    /** @type {Map<string, TypingSender>} conversation id -> my debounced sender */
    this.senders = new Map();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.expiry = null;
    /** @type {Array<[string, (e: any) => void]>} */
    this.handlers = [];
    // the shared state is updated first (its listeners were added before these)
    this.on("typing", (e) => {
      this.schedule();
      this.onChange(e.detail.conversation_id);
    });
    this.on("message", (e) => {
      const m = e.detail?.message ?? e.detail;
      if (m?.message_id && m.message_id === this.shared.cleared) this.onChange(m.conversation_id); // their indicator went
    });
    this.on("presence", () => this.onChange(null));
    this.on("presence_list", () => this.onChange(null));
    this.schedule(); // an indicator already showing when this view opened expires on time
  }

  /** @param {string} name @param {(e: any) => void} fn */
  on(name, fn) {
    this.client.addEventListener(name, fn);
    this.handlers.push([name, fn]);
  }

  /** Redraw when the next typing indicator expires (a lost "stopped" clears by itself). */
  schedule() {
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.expiry = null;
    const next = this.board.nextExpiry();
    if (next === null) return;
    this.expiry = setTimeout(() => {
      this.expiry = null;
      this.board.typing("", Date.now()); // drops the expired ones
      this.schedule();
      this.onChange(null);
    }, Math.max(50, next - Date.now() + 20));
  }

  /** Send my typing from `input` in conversation `cid`. @param {string} cid @param {HTMLTextAreaElement | HTMLInputElement} input */
  attach(cid, input) {
    const sender = this.senders.get(cid) ?? new TypingSender();
    this.senders.set(cid, sender);
    input.addEventListener("input", () => {
      if (input.value.trim() === "") {
        if (sender.stop()) this.client.typing(cid, false);
      } else if (sender.input(Date.now())) {
        this.client.typing(cid, true);
      }
    });
    input.addEventListener("blur", () => {
      if (sender.stop()) this.client.typing(cid, false);
    });
  }

  /** My message went out in `cid`: my indicator stops. @param {string} cid */
  sent(cid) {
    if (this.senders.get(cid)?.stop()) this.client.typing(cid, false);
  }

  /** The typing indicator line (one live region, kept: screen readers hear its text change; not role=status, which the connection state has). */
  indicator() {
    return h("p", { class: "typing-indicator", "aria-live": "polite", "aria-atomic": "true", "data-typing": "false" });
  }

  /**
   * Show who is typing in `cid` on an element made by `indicator()`.
   * @param {HTMLElement} el @param {string} cid @param {Map<string, string>} [names]
   */
  paint(el, cid, names) {
    const who = this.board.typing(cid, Date.now());
    const name = who.length === 1 ? names?.get(who[0]) : undefined;
    const text = who.length === 0 ? "" : name ? this.t("typing_named", { name }) : this.t("typing");
    if (el.textContent !== text) el.textContent = text;
    el.dataset.typing = who.length ? "true" : "false";
  }

  /** Watch these users' presence (my RM, my customers, my contacts). @param {string[]} userIds */
  async watch(userIds) {
    const ids = [...new Set(userIds)].filter(Boolean).slice(0, 100);
    try {
      this.presence.onList(await this.client.watchPresence(ids));
      this.onChange(null);
    } catch {
      // offline or an older hub: no dots
    }
  }

  /** An online dot for `userId` ("" when unknown). @param {string} userId */
  dot(userId) {
    const online = this.presence.online(userId);
    if (online === null) return "";
    const label = online ? this.t("online") : this.t("offline");
    return h("span", { class: `presence-dot ${online ? "online" : "offline"}`, role: "img", "aria-label": label, title: label, "data-online": String(online) });
  }

  /**
   * The other members' highest read position in `cid`, as the hub lets me see it.
   * @param {string} cid
   * @returns {Promise<number>}
   */
  async peerRead(cid) {
    try {
      const receipts = await fetchReadPositions(this.session, cid);
      return receipts.filter((r) => r.user_id !== this.me.id).reduce((top, r) => Math.max(top, r.read_seq), 0);
    } catch {
      return 0;
    }
  }

  destroy() {
    for (const [name, fn] of this.handlers) this.client.removeEventListener(name, fn);
    this.handlers = [];
    if (this.expiry !== null) clearTimeout(this.expiry);
  }
}
