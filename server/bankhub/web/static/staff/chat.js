// A chat pane for the workbench (an RM with a customer, an agent with the customer they
// serve): the latest page of history over HTTP merged by message id with the SDK client's
// live, de-duplicated messages; my unacknowledged sends shown as pending (the SDK retries
// them after a reconnect with the same client_msg_id); the peer's read position as 已读.

import { h, shortTime } from "../app/dom.js";
import { lang, t } from "./i18n.js";
import { MediaView, isMediaBody } from "./media.js";
import { CardView, isCardBody } from "../app/cards.js";
import { cardComposer } from "./cards.js";
import { Liveness } from "../app/liveness.js";
import { ReviseView } from "../app/revise.js";
import { DlpNotice } from "../app/dlp.js";
import { groupEventText } from "/static/sdk/bankhub.js";

const HISTORY_PAGE = 50;

/** @param {any} d @param {string} camel @param {string} snake */
function field(d, camel, snake) {
  return d?.[camel] ?? d?.[snake];
}

export class ChatPane {
  /**
   * @param {{session: any, client: any, conversationId: string, title: string, names?: Map<string, string>, onRead?: (cid: string) => void}} o
   */
  constructor(o) {
    this.session = o.session;
    this.client = o.client;
    this.me = o.session.user;
    this.cid = o.conversationId;
    this.title = o.title;
    this.names = o.names ?? new Map();
    this.onRead = o.onRead ?? (() => {});
    /** pictures and voice notes: rendering and the composer's photo/record buttons */
    this.media = new MediaView({ client: this.client });
    /** service cards, with the "verified by the bank" badge, and the RM's card composer */
    this.cards = new CardView({ session: this.session, t });
    /** recall and edit of my own messages; withdrawn and edited messages shown as such */
    this.revise = new ReviseView({ client: this.client, t, me: this.me, onChange: (/** @type {string} */ cid) => cid === this.cid && this.render() });
    /** data-loss prevention: what the hub masked in what I sent, or why it refused it */
    this.dlp = new DlpNotice({ client: this.client, t });
    /** @type {Map<string, any>} message id -> message (HTTP history) */
    this.history = new Map();
    this.peerRead = 0;
    this.readSeq = 0;
    /** @type {Array<[string, (e: any) => void]>} */
    this.handlers = [];
    const on = (/** @type {string} */ name, /** @type {(e: any) => void} */ fn) => {
      this.client.addEventListener(name, fn);
      this.handlers.push([name, fn]);
    };
    const mine = (/** @type {any} */ e) => (field(e.detail, "conversationId", "conversation_id") ?? e.detail?.message?.conversation_id) === this.cid;
    for (const name of ["message", "sent", "pending"]) on(name, (e) => mine(e) && this.render());
    on("receipt", (e) => {
      const r = e.detail?.receipt ?? e.detail;
      if (field(r, "conversationId", "conversation_id") !== this.cid) return;
      if (field(r, "userId", "user_id") !== this.me.id) {
        this.peerRead = Math.max(this.peerRead, field(r, "readSeq", "read_seq") ?? 0);
        this.render();
      }
    });
    on("state", (e) => e.detail?.state === "open" && this.render());
    /** the customer's typing indicator, and the read position loaded when the pane opens */
    this.live = new Liveness({ client: this.client, session: this.session, t, onChange: (/** @type {string|null} */ cid) => (cid === null || cid === this.cid) && this.paintTyping() });
    this.typing = this.live.indicator();
    // what arrived while the page was hidden is read once it is shown
    this.onVisible = () => this.markRead();
    document.addEventListener("visibilitychange", this.onVisible);

    const input = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: `compose-${this.cid}`, rows: "2", maxlength: "4000" }));
    this.input = input;
    this.list = h("ol", { class: "log-list" });
    this.log = h("div", { class: "log", role: "log", "aria-label": `${t("message_log")}：${this.title}`, tabindex: "0" }, this.list);
    const media = this.media.composer(this.cid);
    const form = h(
      "form",
      { class: "composer" },
      media.tools,
      h("label", { for: input.id, class: "visually-hidden", text: t("compose_label") }),
      input,
      h("button", { type: "submit", class: "primary", text: t("send") }),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
      input.focus();
    });
    input.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.send();
      }
    });
    // RMs and agents may send the customer a service card (the hub refuses anyone else)
    const cardForm = ["rm", "agent"].includes(this.me.role) ? cardComposer({ client: this.client, cid: this.cid, t }) : "";
    this.live.attach(this.cid, input);
    this.element = h("section", { class: "chat", "aria-label": t("chat_with", { name: this.title }) }, h("h2", { class: "chat-title", text: this.title }), this.log, this.typing, media.notes, cardForm, this.dlp.attach(this.cid), this.revise.attach(input), form);
    this.render();
    this.loadHistory();
    this.live.peerRead(this.cid).then((seq) => {
      if (seq > this.peerRead) {
        this.peerRead = seq;
        this.render();
      }
    });
  }

  paintTyping() {
    this.live.paint(this.typing, this.cid, this.names);
  }

  send() {
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = "";
    if (this.revise.submit(this.cid, text)) return; // replaces the message being edited
    this.live.sent(this.cid);
    this.client.send(this.cid, text).catch((/** @type {any} */ e) => {
      this.dlp.refused(e); // e.g. a card number to a customer: refused, nothing stored
      this.render();
    });
    this.render(); // pending at once
  }

  async loadHistory() {
    try {
      const page = await this.session.request("GET", `/v1/conversations/${encodeURIComponent(this.cid)}/messages?limit=${HISTORY_PAGE}`);
      for (const m of page.messages) this.history.set(m.message_id, m);
      this.render();
    } catch {
      // offline: the client's messages are still shown
    }
  }

  merged() {
    const byId = new Map(this.history);
    for (const m of this.client.messages(this.cid) ?? []) byId.set(m.message_id, m);
    return [...byId.values()].sort((a, b) => a.seq - b.seq);
  }

  render() {
    const items = this.revise.visible(this.merged()).map((m) => this.bubble(m));
    for (const p of this.client.pending(this.cid) ?? []) {
      items.push(
        h("li", { class: "msg mine pending", "data-client-msg-id": p.clientMsgId }, h("p", { class: "text", text: this.media.pendingText(p) }), h("p", { class: "meta" }, h("span", { class: "state", text: t("pending") }))),
      );
    }
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    this.list.replaceChildren(...items);
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
    this.paintTyping();
    this.markRead();
  }

  /** @param {any} m */
  bubble(m) {
    const mine = m.sender_id === this.me.id;
    const body = m.body ?? {};
    const text = groupEventText(body, t) ?? (body.kind === "text" || body.kind === "system" ? body.text : t("withdrawn"));
    const kind = body.kind === "system" ? "system" : mine ? "mine" : "theirs";
    const from = kind === "system" ? t("system") : mine ? "" : this.names.get(m.sender_id) ?? "";
    return h(
      "li",
      { class: `msg ${kind}`, "data-seq": String(m.seq), "data-message-id": m.message_id },
      from ? h("p", { class: "from", text: from }) : "",
      this.revise.body(m) ?? (isCardBody(body) ? this.cards.render(m) : isMediaBody(body) ? this.media.render(m) : h("p", { class: "text", text })),
      h(
        "p",
        { class: "meta" },
        h("time", { datetime: new Date(m.ts).toISOString(), text: shortTime(m.ts, lang()) }),
        this.revise.marker(m),
        mine ? h("span", { class: "state", text: this.peerRead >= m.seq ? t("read") : t("delivered") }) : "",
      ),
      this.revise.actions(this.cid, m),
    );
  }

  /** Move my read position to the newest message on screen (only while the page is visible). */
  markRead() {
    if (document.visibilityState !== "visible" || !this.element.isConnected) return;
    const newest = this.merged().reduce((top, m) => Math.max(top, m.seq), 0);
    if (newest <= this.readSeq) return;
    this.readSeq = newest;
    this.onRead(this.cid);
    this.client.read(this.cid, newest).catch(() => {
      this.readSeq = 0; // tried again on the next render
    });
  }

  focus() {
    this.input.focus();
  }

  destroy() {
    this.media.destroy();
    this.live.destroy();
    this.revise.destroy();
    this.dlp.detach();
    for (const [name, fn] of this.handlers) this.client.removeEventListener(name, fn);
    this.handlers = [];
    document.removeEventListener("visibilitychange", this.onVisible);
  }
}
