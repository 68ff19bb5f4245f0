// The Messages tab: my conversations with unread badges, and a chat with live delivery,
// pending sends (the SDK retries them after a reconnect with the same client_msg_id) and
// read state. What is shown comes from the SDK client's de-duplicated messages plus the
// latest page of history over HTTP, merged by message id: a message is never shown twice.

import { h, shortTime } from "./dom.js";
import { lang, t } from "./i18n.js";
import { CardView, isCardBody, openDeepLink } from "./cards.js";
import { MediaView, isMediaBody } from "./media.js";
import { GroupTools } from "./groups.js";
import { ContactsView } from "./contacts.js";
import { Liveness } from "./liveness.js";
import { ReviseView } from "./revise.js";
import { DlpNotice } from "./dlp.js";

const HISTORY_PAGE = 50;

/** @param {any} detail @param {string} camel @param {string} snake */
function field(detail, camel, snake) {
  return detail?.[camel] ?? detail?.[snake];
}

export class MessagesView {
  /** @param {any} shell */
  constructor(shell) {
    this.shell = shell;
    this.client = shell.client;
    this.me = shell.session.user;
    /** @type {Map<string, any>} conversation id -> summary */
    this.conversations = new Map();
    /** @type {Map<string, string>} user id -> display name */
    this.names = new Map();
    /** @type {any} the customer's own RM (GET /v1/me/rm) */
    this.rm = null;
    /** @type {Map<string, Map<string, any>>} conversation id -> message id -> message (HTTP history) */
    this.history = new Map();
    /** @type {Map<string, number>} conversation id -> highest read position of the other members */
    this.peerRead = new Map();
    /** @type {string | null} the conversation whose chat is open */
    this.openId = null;
    /** @type {HTMLElement | null} */
    this.panel = null;
    this.failed = false;
    /** pictures and voice notes: rendering and the composer's photo/record buttons */
    this.media = new MediaView({ client: this.client, t });
    /** service cards, with the "verified by the bank" badge */
    this.cards = new CardView({ session: shell.session, t, onDeepLink: (/** @type {string} */ url) => openDeepLink(shell, url) });
    /** typing indicators, online dots, read positions when a chat opens */
    this.live = new Liveness({ client: this.client, session: shell.session, t, onChange: (/** @type {string|null} */ cid) => this.changed(cid) });
    /** recall and edit of my own messages; withdrawn and edited messages shown as such */
    this.revise = new ReviseView({ client: this.client, t, me: this.me, onChange: (/** @type {string} */ cid) => this.changed(cid) });
    /** data-loss prevention: "Card number masked: 6222 **** **** 7890 — never send ..." or the refusal */
    this.dlp = new DlpNotice({ client: this.client, t });
    /** groups: "New group", the member list, senders' names, group events in my language */
    this.groups = new GroupTools(this);
    /** contacts (friends): the Friends screen, reached from the conversation list */
    this.contacts = new ContactsView(this);
    this.listen();
    this.load();
  }

  listen() {
    const c = this.client;
    c.addEventListener("message", (/** @type {any} */ e) => {
      const cid = field(e.detail, "conversationId", "conversation_id") ?? e.detail?.message?.conversation_id;
      const message = e.detail?.message ?? e.detail;
      const conv = this.conversations.get(cid);
      if (!conv) {
        this.load(); // a conversation this page has not seen yet
        return;
      }
      conv.last_seq = Math.max(conv.last_seq, message.seq);
      conv.last_message_ts = message.ts;
      if (message.sender_id !== this.me.id && !(this.openId === cid && this.visible())) conv.unread += 1;
      this.groups.onMessage(cid, message);
      this.changed(cid);
    });
    for (const name of ["sent", "pending"]) {
      c.addEventListener(name, (/** @type {any} */ e) => this.changed(field(e.detail, "conversationId", "conversation_id")));
    }
    c.addEventListener("receipt", (/** @type {any} */ e) => {
      const r = e.detail?.receipt ?? e.detail;
      const cid = field(r, "conversationId", "conversation_id");
      const who = field(r, "userId", "user_id");
      const seq = field(r, "readSeq", "read_seq") ?? 0;
      const conv = this.conversations.get(cid);
      if (who === this.me.id) {
        if (conv) {
          conv.read_seq = Math.max(conv.read_seq, seq);
          const unread = field(r, "unread", "unread");
          conv.unread = typeof unread === "number" ? unread : Math.max(0, conv.last_seq - conv.read_seq);
        }
      } else {
        this.peerRead.set(cid, Math.max(this.peerRead.get(cid) ?? 0, seq));
      }
      this.changed(cid);
    });
    for (const name of ["conversation_added", "conversation_removed", "rm_changed"]) c.addEventListener(name, () => this.load());
    c.addEventListener("state", (/** @type {any} */ e) => {
      if (e.detail?.state === "open") this.changed(this.openId);
    });
    document.addEventListener("visibilitychange", () => this.markRead());
  }

  visible() {
    return document.visibilityState === "visible" && this.panel !== null;
  }

  /** Load my conversations and the names to show for them. */
  async load() {
    try {
      const s = this.shell.session;
      const list = await s.request("GET", "/v1/conversations?limit=100");
      this.conversations = new Map(list.conversations.map((/** @type {any} */ c) => [c.id, c]));
      this.names.set(this.me.id, this.me.display_name);
      if (this.me.role === "customer" && this.me.rm_id) {
        this.rm = await s.request("GET", "/v1/me/rm");
        this.names.set(this.rm.rm.user_id, this.rm.rm.display_name);
      } else if (this.me.role === "rm") {
        const book = await s.request("GET", "/v1/rm/book?limit=100");
        for (const entry of book.customers) this.names.set(entry.customer.user_id, entry.customer.display_name);
      }
      this.failed = false;
      this.live.watch(this.watched());
    } catch {
      this.failed = true;
    }
    this.changed(null);
  }

  /** Whose presence this page shows: my RM, my customers, the peers of my direct chats. */
  watched() {
    const ids = [...this.conversations.values()].filter((c) => c.kind === "direct").flatMap((c) => c.members.filter((/** @type {string} */ id) => id !== this.me.id));
    if (this.rm) ids.unshift(this.rm.rm.user_id);
    for (const id of this.names.keys()) if (id !== this.me.id) ids.push(id);
    return ids;
  }

  /** The other member of a direct conversation (null: a group, or unknown). @param {string|null} cid */
  peerOf(cid) {
    if (cid === null) return this.rm?.rm.user_id ?? null;
    const conv = this.conversations.get(cid);
    if (!conv || conv.kind !== "direct") return null;
    return conv.members.find((/** @type {string} */ id) => id !== this.me.id) ?? null;
  }

  /** Something changed in `cid` (or in the list): re-render what is on screen. @param {string|null} cid */
  changed(cid) {
    this.shell.setUnread([...this.conversations.values()].reduce((n, c) => n + (c.unread || 0), 0));
    if (!this.panel) return;
    if (this.openId === null) {
      if (!this.groups.creating && !this.contacts.showing) this.renderList(); // the "new group" form and the Friends screen stay
    } else if (cid === null || cid === this.openId) this.renderChat();
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    if (this.openId) this.renderChat(true);
    else if (this.contacts.showing) this.contacts.render();
    else this.renderList();
  }

  unmount() {
    this.panel = null;
  }

  /** @param {any} conv */
  title(conv) {
    if (conv.title) return conv.title;
    const others = conv.members.filter((/** @type {string} */ id) => id !== this.me.id);
    return others.map((/** @type {string} */ id) => this.names.get(id) ?? t("conversation")).join("、") || t("conversation");
  }

  renderList() {
    if (!this.panel) return;
    this.groups.creating = false;
    this.shell.setTitle(t("tab_messages"));
    const items = [...this.conversations.values()].sort((a, b) => (b.last_message_ts ?? 0) - (a.last_message_ts ?? 0));
    const rows = items.map((conv) => this.row(conv.id, this.title(conv), conv.unread, conv.last_message_ts));
    const rmConv = this.rm?.conversation_id;
    if (this.rm && (!rmConv || !this.conversations.has(rmConv))) {
      rows.unshift(this.row(null, this.rm.rm.display_name, 0, null, t("rm_chat_hint")));
    }
    const list = rows.length ? h("ul", { class: "conv-list", "aria-label": t("conversations") }, rows) : h("p", { class: "empty", text: t("no_conversations") });
    this.panel.replaceChildren(this.failed ? h("p", { class: "form-error", role: "alert", text: t("load_failed") }) : "", this.groups.listTools(), this.contacts.listButton(), list);
  }

  /**
   * @param {string|null} cid null: the customer's RM, not yet a conversation
   * @param {string} name @param {number} unread @param {number|null} ts @param {string} [hint]
   */
  row(cid, name, unread, ts, hint) {
    const isRm = this.rm && (cid === null || cid === this.rm.conversation_id);
    const label = [name, isRm ? t("my_rm") : "", unread ? t("unread", { n: unread }) : ""].filter(Boolean).join("，");
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "conv", "data-conversation": cid ?? "rm", "aria-label": label, onclick: () => this.openChat(cid) },
        h("span", { class: "avatar", "aria-hidden": "true", text: name.slice(0, 1) }),
        this.live.dot(this.peerOf(cid) ?? ""),
        h("span", { class: "conv-main" }, h("span", { class: "conv-name", text: name }), h("span", { class: "conv-hint", text: hint ?? (isRm ? t("my_rm") : "") })),
        h("span", { class: "conv-side" }, ts ? h("span", { class: "conv-time", text: shortTime(ts, lang()) }) : "", unread ? h("span", { class: "badge", text: unread > 99 ? "99+" : String(unread) }) : ""),
      ),
    );
  }

  /** Open the chat of `cid` (null: open the direct conversation with my RM first). @param {string|null} cid */
  async openChat(cid) {
    if (cid === null && this.rm) {
      const opened = await this.shell.session.request("POST", "/v1/conversations", { kind: "direct", peer: this.rm.rm.username });
      cid = opened.conversation.id;
      this.conversations.set(cid, opened.conversation);
      this.rm.conversation_id = cid;
    }
    if (!cid) return;
    this.openId = cid;
    this.renderChat(true);
    this.loadHistory(cid);
    const opened = cid;
    this.live.peerRead(opened).then((seq) => {
      if (seq > (this.peerRead.get(opened) ?? 0)) {
        this.peerRead.set(opened, seq);
        this.changed(opened);
      }
    });
  }

  closeChat() {
    this.media.destroy();
    this.openId = null;
    this.renderList();
    /** @type {HTMLElement | null} */ (this.panel?.querySelector(".conv"))?.focus();
  }

  /** @param {string} cid */
  async loadHistory(cid) {
    try {
      const page = await this.shell.session.request("GET", `/v1/conversations/${cid}/messages?limit=${HISTORY_PAGE}`);
      const held = this.history.get(cid) ?? new Map();
      for (const m of page.messages) held.set(m.message_id, m);
      this.history.set(cid, held);
      this.changed(cid);
    } catch {
      // offline: the SDK's messages are still shown
    }
  }

  /** The messages of `cid`, from history and the SDK, once each, in order. @param {string} cid */
  merged(cid) {
    const byId = new Map(this.history.get(cid) ?? []);
    for (const m of this.client.messages(cid) ?? []) byId.set(m.message_id, m);
    return [...byId.values()].sort((a, b) => a.seq - b.seq);
  }

  /** @param {boolean} [focus] */
  renderChat(focus = false) {
    if (!this.panel || !this.openId) return;
    const cid = this.openId;
    const conv = this.conversations.get(cid);
    const name = conv ? this.title(conv) : t("conversation");
    this.shell.setTitle(name);
    const messages = this.merged(cid);
    const pending = this.client.pending(cid) ?? [];
    const peerRead = this.peerRead.get(cid) ?? 0;
    let log = /** @type {HTMLElement | null} */ (this.panel.querySelector(".log"));
    const fresh = !log || log.dataset.conversation !== cid;
    if (fresh) {
      // role=log on a wrapper: on the <ol> itself it would hide the list from assistive technology
      log = h("div", { class: "log", role: "log", "aria-label": t("message_log"), "data-conversation": cid, tabindex: "0" }, h("ol", { class: "log-list" }));
      const input = h("textarea", { id: "compose", rows: "1", maxlength: "4000", enterkeyhint: "send" });
      const media = this.media.composer(cid);
      const form = h(
        "form",
        { class: "composer" },
        media.tools,
        h("label", { for: "compose", class: "visually-hidden", text: t("compose_label") }),
        input,
        h("button", { type: "submit", class: "primary", text: t("send") }),
      );
      const send = () => {
        const text = input.value.trim();
        if (!text) return;
        input.value = "";
        if (this.revise.submit(cid, text)) return; // replaces the message being edited
        this.live.sent(cid);
        this.client.send(cid, text).catch((/** @type {any} */ e) => {
          this.dlp.refused(e); // a card number, ID, account number or code that may not go this way
          this.changed(cid);
        });
        this.changed(cid); // shows it as pending at once
      };
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        send();
        input.focus();
      });
      input.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          send();
        }
      });
      this.live.attach(cid, /** @type {HTMLTextAreaElement} */ (input));
      this.panel.replaceChildren(
        h("div", { class: "chat" }, h("div", { class: "chat-head" }, h("button", { type: "button", class: "link back", text: `‹ ${t("back")}`, onclick: () => this.closeChat() }), h("div", { class: "group-slot" })), log, this.live.indicator(), media.notes, this.dlp.attach(cid), this.revise.attach(/** @type {HTMLTextAreaElement} */ (input)), form),
      );
      if (focus) input.focus();
    }
    this.groups.update(this.panel, cid);
    const items = this.revise.visible(messages).map((m) => this.bubble(m, peerRead));
    for (const p of pending) {
      items.push(
        h(
          "li",
          { class: "msg mine pending", "data-client-msg-id": p.clientMsgId },
          h("p", { class: "text", text: this.media.pendingText(p) }),
          h("p", { class: "meta" }, h("span", { class: "state", text: t("pending") })),
        ),
      );
    }
    const typing = /** @type {HTMLElement | null} */ (this.panel.querySelector(".typing-indicator"));
    if (typing) this.live.paint(typing, cid, this.names);
    const atBottom = fresh || log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    /** @type {HTMLElement} */ (log.firstElementChild).replaceChildren(...items);
    if (atBottom) log.scrollTop = log.scrollHeight;
    this.markRead();
  }

  /** @param {any} m @param {number} peerRead */
  bubble(m, peerRead) {
    const mine = m.sender_id === this.me.id;
    const body = m.body ?? {};
    const text = this.groups.eventText(body) ?? (body.kind === "text" || body.kind === "system" ? body.text : t("withdrawn"));
    const kind = body.kind === "system" ? "system" : mine ? "mine" : "theirs";
    const state = mine ? h("span", { class: "state", text: peerRead >= m.seq ? t("read") : t("delivered") }) : "";
    return h(
      "li",
      { class: `msg ${kind}`, "data-seq": String(m.seq), "data-message-id": m.message_id, "data-client-msg-id": m.client_msg_id },
      kind === "system" ? h("p", { class: "from", text: t("system") }) : this.groups.sender(m.conversation_id, m),
      this.revise.body(m) ?? (isCardBody(body) ? this.cards.render(m) : isMediaBody(body) ? this.media.render(m) : h("p", { class: "text", text })),
      h("p", { class: "meta" }, h("time", { datetime: new Date(m.ts).toISOString(), text: shortTime(m.ts, lang()) }), this.revise.marker(m), state),
      this.revise.actions(m.conversation_id, m),
    );
  }

  /** Move my read position to the newest message shown, when the chat is on screen. */
  markRead() {
    const cid = this.openId;
    if (!cid || !this.visible()) return;
    const conv = this.conversations.get(cid);
    const newest = this.merged(cid).reduce((top, m) => Math.max(top, m.seq), 0);
    if (!conv || newest <= conv.read_seq) return;
    conv.read_seq = newest;
    conv.unread = 0;
    this.shell.setUnread([...this.conversations.values()].reduce((n, c) => n + (c.unread || 0), 0));
    this.client.read(cid, newest).catch(() => {
      conv.read_seq = 0; // offline: tried again on the next render
    });
  }
}
