// The RM's workbench: availability with auto-reply, the book (GET /v1/rm/book, paged) as
// profile cards with unread counts, and a chat with the chosen customer.

import { h, shortTime } from "../app/dom.js";
import { lang, t } from "./i18n.js";
import { ChatPane } from "./chat.js";

const PAGE = 50;
const POLL_MS = 30000;

/** @param {unknown} exc */
export function problemText(exc) {
  const e = /** @type {any} */ (exc);
  return t("action_failed", { detail: e?.detail || e?.code || e?.message || "" });
}

export class BookView {
  /** @param {any} bench */
  constructor(bench) {
    this.bench = bench;
    this.session = bench.session;
    this.client = bench.client;
    /** @type {any[]} */
    this.customers = [];
    /** @type {string | null} */
    this.next = null;
    /** @type {any} */
    this.availability = null;
    this.failed = false;
    /** @type {ChatPane | null} */
    this.chat = null;
    /** @type {string | null} username of the customer whose chat is open */
    this.openUser = null;
    /** @type {HTMLElement | null} */
    this.panel = null;
    /** @type {Map<string, string>} user id -> display name */
    this.names = new Map();
    /** @type {ReturnType<typeof setInterval> | null} */
    this.timer = null;
    /** @type {Set<string>} conversations of mine that are not in the book (staff chats) */
    this.elsewhere = new Set();
    this.client.addEventListener("message", (/** @type {any} */ e) => {
      const m = e.detail?.message;
      const entry = this.customers.find((c) => c.conversation_id === m?.conversation_id);
      if (!entry) {
        // a customer's conversation the book did not show yet (not one known to be elsewhere: a staff chat)
        if (m && m.sender_id !== this.session.user.id && !this.elsewhere.has(m.conversation_id)) this.load(m.conversation_id);
        return;
      }
      entry.last_message_ts = m.ts;
      entry.last_message = m;
      entry.last_sender = m.sender_id === this.session.user.id ? "rm" : m.sender_id === entry.customer.user_id ? "customer" : "system";
      const open = this.chat !== null && this.chat.cid === entry.conversation_id && document.visibilityState === "visible";
      if (m.sender_id !== this.session.user.id && !open) entry.unread += 1;
      this.renderBook();
    });
    for (const name of ["conversation_added", "conversation_removed", "rm_changed"]) this.client.addEventListener(name, () => this.load());
    this.load();
  }

  /** (Re)load the first page of the book. @param {string} [because] the conversation that made me look */
  async load(because) {
    const first = this.availability === null;
    const before = JSON.stringify([this.customers, this.next, this.failed]);
    try {
      // as many as are on screen (up to a page size the hub accepts), so a reload keeps what "more" showed
      const limit = Math.min(200, Math.max(PAGE, this.customers.length));
      const book = await this.session.request("GET", `/v1/rm/book?limit=${limit}`);
      this.customers = book.customers;
      this.next = book.next_cursor;
      this.availability = book.availability;
      this.failed = false;
      for (const c of this.customers) this.names.set(c.customer.user_id, c.customer.display_name);
      if (because && !this.customers.some((c) => c.conversation_id === because)) this.elsewhere.add(because);
      if (this.openUser && !this.customers.some((c) => c.customer.username === this.openUser)) {
        this.closeChat(); // handed over: the conversation is no longer mine
        this.renderChatArea();
      }
    } catch {
      this.failed = true;
    }
    // the availability form is built once per showing: a reload must not wipe what is being typed
    if (first) this.render();
    else if (JSON.stringify([this.customers, this.next, this.failed]) !== before) this.renderBook(); // unchanged: keep focus where it is
  }

  async loadMore() {
    if (!this.next) return;
    try {
      const book = await this.session.request("GET", `/v1/rm/book?limit=${PAGE}&cursor=${encodeURIComponent(this.next)}`);
      const known = new Set(this.customers.map((c) => c.customer.user_id));
      this.customers.push(...book.customers.filter((/** @type {any} */ c) => !known.has(c.customer.user_id)));
      for (const c of book.customers) this.names.set(c.customer.user_id, c.customer.display_name);
      this.next = book.next_cursor;
    } catch {
      this.failed = true;
    }
    this.renderBook();
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    this.render();
    // a customer handed to me (or away) who has no conversation with me yet sends me no event:
    // look at the book again every 30 s while it is shown
    this.timer = setInterval(() => this.load(), POLL_MS);
  }

  unmount() {
    this.panel = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  render() {
    if (!this.panel) return;
    this.bookEl = h("section", { class: "book", "aria-labelledby": "book-title" });
    this.chatEl = h("div", { class: "chat-area" });
    this.panel.replaceChildren(h("div", { class: "split" }, h("div", { class: "side" }, this.availabilityForm(), this.bookEl), this.chatEl));
    this.renderBook();
    this.renderChatArea();
  }

  renderChatArea() {
    if (!this.chatEl) return;
    if (this.chat) {
      this.chatEl.replaceChildren(this.chat.element);
      this.chat.render();
    } else {
      this.chatEl.replaceChildren(h("p", { class: "empty", text: t("no_chat") }));
    }
  }

  availabilityForm() {
    const a = this.availability ?? { status: "online" };
    const select = /** @type {HTMLSelectElement} */ (
      h("select", { id: "availability" }, ["online", "away", "off_duty"].map((s) => h("option", { value: s, selected: a.status === s, text: t(`avail_${s}`) })))
    );
    const message = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "auto-reply", rows: "2", maxlength: "500" }));
    message.value = a.message ?? "";
    const note = h("p", { class: "form-note", role: "status" });
    const form = h(
      "form",
      { class: "card availability" },
      h("label", { for: "availability", text: t("availability") }),
      select,
      h("label", { for: "auto-reply", text: t("auto_reply") }),
      message,
      h("button", { type: "submit", class: "primary", text: t("save") }),
      note,
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      note.textContent = "";
      try {
        const text = message.value.trim();
        this.availability = await this.session.request("PUT", "/v1/rm/availability", text ? { status: select.value, message: text } : { status: select.value });
        note.textContent = `${t("saved")}：${t(`avail_${this.availability.status}`)}`;
      } catch (exc) {
        note.textContent = problemText(exc);
      }
    });
    return form;
  }

  renderBook() {
    if (!this.bookEl) return;
    const cards = this.customers
      .slice()
      .sort((a, b) => (b.last_message_ts ?? 0) - (a.last_message_ts ?? 0))
      .map((c) => this.card(c));
    this.bookEl.replaceChildren(
      h("h2", { id: "book-title", text: t("book") }),
      this.failed ? h("p", { class: "form-error", role: "alert", text: t("load_failed") }) : "",
      cards.length ? h("ul", { class: "cards" }, cards) : h("p", { class: "empty", text: t("book_empty") }),
      this.next ? h("button", { type: "button", class: "secondary", text: t("more"), onclick: () => this.loadMore() }) : "",
    );
  }

  /** @param {any} entry */
  card(entry) {
    const c = entry.customer;
    const open = this.openUser === c.username;
    const lastKind = entry.last_message?.body?.kind;
    const last = lastKind === "text" || lastKind === "system" ? entry.last_message.body.text : lastKind === "image" ? `[${t("media_image")}]` : lastKind === "voice" ? `[${t("media_voice", { time: "" }).trim()}]` : "";
    const label = [t("chat_with", { name: c.display_name }), entry.unread ? t("unread", { n: entry.unread }) : ""].filter(Boolean).join("，");
    return h(
      "li",
      { class: `card customer${open ? " open" : ""}`, "data-username": c.username },
      h(
        "div",
        { class: "card-head" },
        h("h3", { text: c.display_name }),
        h("span", { class: "username", text: c.username }),
        entry.unread ? h("span", { class: "badge", "aria-hidden": "true", text: entry.unread > 99 ? "99+" : String(entry.unread) }) : "",
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", { text: t("branch") }),
        h("dd", { text: `${c.org_name}（${c.branch}）` }),
        h("dt", { text: t("segment") }),
        h("dd", { text: c.segment ?? t("none") }),
        h("dt", { text: t("account_class") }),
        h("dd", { class: "account-class", text: c.account_class ? t("class_n", { c: c.account_class }) : t("none") }),
        c.tags?.length ? [h("dt", { text: t("tags") }), h("dd", { text: c.tags.join("、") })] : "",
      ),
      last ? h("p", { class: "last" }, h("span", { class: "last-who", text: `${t(entry.last_sender === "rm" ? "last_from_rm" : "last_from_customer")}：` }), last) : "",
      h(
        "div",
        { class: "card-foot" },
        entry.last_message_ts ? h("time", { datetime: new Date(entry.last_message_ts).toISOString(), text: shortTime(entry.last_message_ts, lang()) }) : h("span"),
        h("button", { type: "button", class: "primary", "aria-label": label, "aria-pressed": open ? "true" : "false", text: t("chat"), onclick: () => this.openChat(entry) }),
      ),
    );
  }

  /** @param {any} entry */
  async openChat(entry) {
    let cid = entry.conversation_id;
    try {
      if (!cid) {
        const opened = await this.session.request("POST", "/v1/conversations", { kind: "direct", peer: entry.customer.username });
        cid = entry.conversation_id = opened.conversation.id;
      }
    } catch (exc) {
      this.chatEl?.replaceChildren(h("p", { class: "form-error", role: "alert", text: problemText(exc) }));
      return;
    }
    this.chat?.destroy();
    this.openUser = entry.customer.username;
    this.chat = new ChatPane({
      session: this.session,
      client: this.client,
      conversationId: cid,
      title: entry.customer.display_name,
      names: this.names,
      onRead: (/** @type {string} */ read) => {
        // looked up afresh: a reload of the book replaces the entries
        const current = this.customers.find((c) => c.conversation_id === read);
        if (current?.unread) {
          current.unread = 0;
          this.renderBook();
        }
      },
    });
    this.renderBook();
    this.renderChatArea();
    this.chat.focus();
  }

  closeChat() {
    this.chat?.destroy();
    this.chat = null;
    this.openUser = null;
  }
}
