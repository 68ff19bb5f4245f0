// The Services tab: a menu of the service desk and the alerts inbox. The desk: open a
// session (the bot answers first; "人工" or the button hands over), the live queue position
// and estimated wait from the SDK's "service_status" events, the agent chat in the customer's
// one service conversation, and the rating (CSAT 1–5, optional comment) after an agent closed
// it. A rating still owed is found again after a reload from the conversation's last
// "closed" system message.

import { h, shortTime } from "./dom.js";
import { lang, t } from "./i18n.js";
import { InboxView } from "./inbox.js";
import { MediaView, isMediaBody } from "./media.js";
import { isRecalled, visibleMessages } from "./revise.js";

const HISTORY_PAGE = 50;
const OPEN = new Set(["bot", "waiting", "active"]);

/** @param {any} e */
function reason(e) {
  return e?.detail || e?.code || String(e);
}

export class ServicesView {
  /** @param {any} shell */
  constructor(shell) {
    this.shell = shell;
    this.session = shell.session;
    this.client = shell.client;
    this.me = shell.session.user;
    /** pictures and voice notes from the service desk */
    this.media = new MediaView({ client: this.client, t });
    /** @type {"menu" | "desk" | "inbox" | "prefs"} */
    this.view = "menu";
    /** @type {any} my open session's status (GET current, then service_status events), or null */
    this.status = null;
    /** how many statuses were shown: a load that overlapped one must not undo it */
    this.statusSeen = 0;
    /** @type {string | null} my service conversation */
    this.conversationId = null;
    /** @type {Map<string, any>} message id -> message (HTTP history) */
    this.history = new Map();
    /** @type {string | null} a closed session I may still rate */
    this.rateId = null;
    this.thanks = false;
    this.message = "";
    /** what is typed in the desk's composer, kept across its rebuilds */
    this.draft = "";
    this.readSeq = 0;
    /** @type {Set<string>} sessions rated here */
    this.rated = new Set();
    /** @type {any[]} */
    this.queues = [];
    /** @type {HTMLElement | null} */
    this.panel = null;
    this.inbox = new InboxView(this);
    this.loaded = false;
    this.listen();
  }

  listen() {
    const c = this.client;
    c.addEventListener("service_status", (/** @type {any} */ e) => this.onStatus(e.detail));
    c.addEventListener("message", (/** @type {any} */ e) => {
      if (e.detail?.conversationId !== this.conversationId) return;
      this.onSystem(e.detail.message);
      this.renderIfDesk();
    });
    for (const name of ["sent", "pending"]) {
      c.addEventListener(name, (/** @type {any} */ e) => {
        if (e.detail?.conversationId === this.conversationId) this.renderIfDesk();
      });
    }
    c.addEventListener("state", (/** @type {any} */ e) => {
      // back from an offline spell: the queue moved meanwhile
      if (e.detail?.state === "open" && this.loaded) this.load();
    });
  }

  /** @param {any} s a service_status frame */
  onStatus(s) {
    this.statusSeen = (this.statusSeen ?? 0) + 1;
    if (s.conversation_id && s.conversation_id !== this.conversationId) {
      this.conversationId = s.conversation_id;
      this.loadHistory();
    }
    if (s.csat_pending) {
      this.rateId = s.session_id;
      this.thanks = false;
    }
    this.status = OPEN.has(s.state) ? s : null;
    this.renderIfDesk();
  }

  /**
   * The conversation's own record of a session ending: the same fact as the closing
   * service_status, which may come on another path (or be missed across a reconnect).
   * @param {any} m
   */
  onSystem(m) {
    const body = m?.body;
    if (body?.kind !== "system" || (body.event !== "closed" && body.event !== "cancelled")) return;
    const sid = body.data?.session;
    if (sid && this.status?.session_id === sid) this.status = null;
    if (sid && body.event === "closed" && body.data?.csat === "requested" && !this.rated.has(sid)) this.rateId = sid;
  }

  async load() {
    this.loaded = true;
    const s = this.session;
    const seen = this.statusSeen ?? 0;
    try {
      const current = await s.request("GET", "/v1/service/sessions/current").catch((/** @type {any} */ e) => {
        if (e?.status === 404) return null;
        throw e;
      });
      // a status that came while this answer was on its way (the session just opened) is newer: keep it
      if ((this.statusSeen ?? 0) === seen) {
        if (current) this.onStatus(current);
        else this.status = null;
      }
      if (!this.conversationId) {
        const list = await s.all("/v1/conversations", "conversations");
        // a session that opened while the list was on its way named its conversation already
        // (the list may predate it): keep that one
        if (!this.conversationId) this.conversationId = list.find((/** @type {any} */ c) => c.kind === "service")?.id ?? null;
      }
      if (this.conversationId) await this.loadHistory();
      if (!current) await this.findRating();
      if (!this.queues.length) this.queues = (await s.request("GET", "/v1/service/queues")).queues;
    } catch {
      this.message = t("load_failed");
    }
    this.renderIfDesk();
  }

  /** The last session an agent closed, if it is not rated yet. */
  async findRating() {
    const closed = [...this.history.values()]
      .filter((m) => m.body?.kind === "system" && m.body.event === "closed" && m.body.data?.csat === "requested")
      .sort((a, b) => b.seq - a.seq)[0];
    const sid = closed?.body.data.session;
    if (!sid || sid === this.rateId || this.rated.has(sid)) return;
    const got = await this.session.request("GET", `/v1/service/sessions/${encodeURIComponent(sid)}`);
    const session = got.session ?? got;
    if (session.state === "closed" && (session.csat_pending || session.csat === null || session.csat === undefined)) this.rateId = sid;
  }

  async loadHistory() {
    const cid = this.conversationId;
    if (!cid) return;
    try {
      const page = await this.session.request("GET", `/v1/conversations/${encodeURIComponent(cid)}/messages?limit=${HISTORY_PAGE}`);
      for (const m of page.messages) this.history.set(m.message_id, m);
    } catch {
      // offline: what the SDK holds is still shown
    }
    this.renderIfDesk();
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    this.render(true);
  }

  unmount() {
    this.panel = null;
  }

  /** @param {"menu" | "desk" | "inbox" | "prefs"} view */
  go(view) {
    this.view = view;
    this.message = "";
    this.render(true);
  }

  renderIfDesk() {
    if (this.panel && this.view === "desk") this.renderDesk(false);
  }

  /** @param {boolean} [focus] */
  render(focus = false) {
    if (!this.panel) return;
    if (this.view === "desk") {
      if (!this.loaded) this.load(); // my session and service conversation, on first use of the desk
      this.renderDesk(focus);
    }
    else if (this.view === "inbox") this.inbox.renderInbox(this.panel, focus);
    else if (this.view === "prefs") this.inbox.renderPrefs(this.panel, focus);
    else this.renderMenu();
  }

  /** The Services tab badge: unread alerts. @param {number} n */
  setBadge(n) {
    this.shell.setBadge("services", n);
    if (this.panel && this.view === "menu") this.renderMenu();
  }

  renderMenu() {
    if (!this.panel) return;
    this.shell.setTitle(t("tab_services"));
    const unread = this.inbox.unread;
    const entry = (/** @type {string} */ id, /** @type {string} */ name, /** @type {string} */ hint, /** @type {number} */ n, /** @type {() => void} */ go) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "conv", id, "aria-label": [name, n ? t("unread", { n }) : ""].filter(Boolean).join("，"), onclick: go },
          h("span", { class: "avatar", "aria-hidden": "true", text: name.slice(0, 1) }),
          h("span", { class: "conv-main" }, h("span", { class: "conv-name", text: name }), h("span", { class: "conv-hint", text: hint })),
          h("span", { class: "conv-side" }, n ? h("span", { class: "badge", text: n > 99 ? "99+" : String(n) }) : ""),
        ),
      );
    this.panel.replaceChildren(
      h(
        "ul",
        { class: "conv-list", "aria-label": t("tab_services") },
        entry("open-desk", t("service_desk"), t("service_desk_hint"), 0, () => this.go("desk")),
        entry("open-inbox", t("alerts_inbox"), t("alerts_hint"), unread, () => this.go("inbox")),
      ),
    );
  }

  /** The desk's one line of state: who serves me, or my place in the queue and the wait. */
  statusLine() {
    const s = this.status;
    if (!s) return this.rateId ? t("desk_state_closed") : "";
    if (s.state === "bot") return t("desk_state_bot");
    if (s.state === "active") return t("desk_state_active", { agent: s.agent?.display_name ?? "" });
    const parts = [t("desk_state_waiting")];
    if (typeof s.position === "number") parts.push(t("desk_position", { position: s.position, waiting: s.waiting ?? s.position }));
    parts.push(typeof s.estimated_wait_s === "number" ? t("desk_wait", { minutes: Math.max(1, Math.ceil(s.estimated_wait_s / 60)) }) : t("desk_no_estimate"));
    return parts.join("，");
  }

  /** @param {boolean} focus */
  renderDesk(focus) {
    if (!this.panel) return;
    this.shell.setTitle(t("service_desk"));
    const s = this.status;
    const cid = this.conversationId;
    let log = /** @type {HTMLElement | null} */ (this.panel.querySelector(".desk .log"));
    const fresh = !log || log.dataset.conversation !== (cid ?? "");
    const back = h("button", { type: "button", class: "link back", text: `‹ ${t("back")}`, onclick: () => this.go("menu") });
    if (fresh || !this.panel.querySelector(".desk")) {
      log = h("div", { class: "log", role: "log", "aria-label": t("message_log"), "data-conversation": cid ?? "", tabindex: "0" }, h("ol", { class: "log-list" }));
      this.panel.replaceChildren(
        h("div", { class: "chat desk" }, h("div", { class: "desk-head" }, back, h("p", { class: "desk-status", role: "status", "aria-live": "polite" }), h("div", { class: "desk-actions" })), log, h("div", { class: "desk-foot" })),
      );
      if (focus) back.focus();
    }
    /** @type {HTMLElement} */ (this.panel.querySelector(".desk-status")).textContent = this.statusLine();
    const actions = /** @type {HTMLElement} */ (this.panel.querySelector(".desk-actions"));
    actions.replaceChildren(
      s?.state === "bot" ? h("button", { type: "button", class: "chip", id: "desk-human", text: t("desk_human"), onclick: () => this.act("human") }) : "",
      s?.state === "waiting" ? h("button", { type: "button", class: "chip", id: "desk-cancel", text: t("desk_cancel"), onclick: () => this.act("cancel") }) : "",
    );
    // the conversation, once each message, in order, with my pending sends after it
    const byId = new Map(this.history);
    if (cid) for (const m of this.client.messages(cid) ?? []) byId.set(m.message_id, m);
    // an agent's recall/edit applies to its message, never shown itself
    const items = visibleMessages(byId.values()).map((m) => this.bubble(m));
    for (const p of cid ? this.client.pending(cid) ?? [] : []) {
      items.push(h("li", { class: "msg mine pending" }, h("p", { class: "text", text: this.media.pendingText(p) }), h("p", { class: "meta" }, h("span", { class: "state", text: t("pending") }))));
    }
    const logEl = /** @type {HTMLElement} */ (log);
    const atBottom = fresh || logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 80;
    /** @type {HTMLElement} */ (logEl.firstElementChild).replaceChildren(...items);
    if (atBottom) logEl.scrollTop = logEl.scrollHeight;
    this.renderFoot();
    this.markRead();
  }

  /** The foot of the desk: the composer, the start form, or the rating. */
  renderFoot() {
    const foot = /** @type {HTMLElement | null} */ (this.panel?.querySelector(".desk-foot"));
    if (!foot) return;
    // the start form is rebuilt once the queues are known
    const want = this.status ? "compose" : this.rateId ? "csat" : this.thanks ? "thanks" : `start:${this.queues.length}`;
    const errorLine = h("p", { class: this.message ? "form-error" : "visually-hidden", role: "alert", text: this.message });
    if (foot.dataset.mode === want && want !== "thanks") {
      foot.querySelector("[role=alert]")?.replaceWith(errorLine);
      return;
    }
    foot.dataset.mode = want;
    // a rebuilt composer keeps what was typed (this.draft) and the focus
    const typing = document.activeElement?.id === "desk-compose";
    if (want === "compose") foot.replaceChildren(errorLine, this.composer());
    else if (want === "csat") foot.replaceChildren(errorLine, this.csatForm());
    else if (want === "thanks") foot.replaceChildren(h("p", { class: "thanks", role: "status", text: t("csat_thanks") }), this.startForm());
    else foot.replaceChildren(errorLine, this.startForm());
    if (typing && want === "compose") /** @type {HTMLElement} */ (foot.querySelector("#desk-compose")).focus();
  }

  composer() {
    const input = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "desk-compose", rows: "1", maxlength: "4000", enterkeyhint: "send" }));
    input.value = this.draft ?? "";
    input.addEventListener("input", () => {
      this.draft = input.value;
    });
    const form = h(
      "form",
      { class: "composer" },
      h("label", { for: "desk-compose", class: "visually-hidden", text: t("compose_label") }),
      input,
      h("button", { type: "submit", class: "primary", text: t("send") }),
    );
    const send = () => {
      const cid = this.conversationId;
      const text = input.value.trim();
      if (!text || !cid) return;
      input.value = "";
      this.draft = "";
      this.client.send(cid, text).catch(() => this.renderIfDesk());
      this.renderIfDesk();
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
    return form;
  }

  startForm() {
    const select = h(
      "select",
      { id: "desk-queue" },
      (this.queues.length ? this.queues : [{ code: "general", name: "General enquiries", open_now: true }]).map((q) =>
        h("option", { value: q.code, selected: q.code === "general", text: q.open_now ? q.name : `${q.name} (${q.hours ?? ""})` }),
      ),
    );
    const form = h(
      "form",
      { class: "desk-start" },
      h("label", { for: "desk-queue", text: t("desk_queue") }),
      select,
      h("button", { type: "submit", class: "primary", id: "desk-start", text: t("desk_start") }),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      this.message = "";
      this.thanks = false;
      try {
        const s = await this.session.request("POST", "/v1/service/sessions", { queue: /** @type {HTMLSelectElement} */ (select).value });
        this.onStatus(s);
        /** @type {HTMLElement | null} */ (this.panel?.querySelector("#desk-compose"))?.focus();
      } catch (err) {
        this.message = t("action_failed", { detail: reason(err) });
        this.renderIfDesk();
      }
    });
    return form;
  }

  csatForm() {
    const comment = h("textarea", { id: "csat-comment", rows: "2", maxlength: "1000" });
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("label", { class: "star" }, h("input", { type: "radio", name: "csat", value: String(n), required: true }), h("span", { text: t("csat_score", { n }) })),
    );
    const form = h(
      "form",
      { class: "csat" },
      h("fieldset", {}, h("legend", { text: t("csat_title") }), h("div", { class: "stars" }, stars)),
      h("label", { for: "csat-comment", text: t("csat_comment") }),
      comment,
      h("button", { type: "submit", class: "primary", text: t("csat_submit") }),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const picked = /** @type {HTMLInputElement | null} */ (form.querySelector("input[name=csat]:checked"));
      if (!picked || !this.rateId) return;
      const body = /** @type {Record<string, any>} */ ({ score: Number(picked.value) });
      const text = /** @type {HTMLTextAreaElement} */ (comment).value.trim();
      if (text) body.comment = text;
      this.message = "";
      try {
        await this.session.request("POST", `/v1/service/sessions/${encodeURIComponent(this.rateId)}/csat`, body);
        this.rated.add(this.rateId);
        this.rateId = null;
        this.thanks = true;
      } catch (err) {
        this.message = t("action_failed", { detail: reason(err) });
      }
      this.renderIfDesk();
    });
    return form;
  }

  /** @param {"human" | "cancel"} what */
  async act(what) {
    const sid = this.status?.session_id;
    if (!sid) return;
    this.message = "";
    try {
      const s = await this.session.request("POST", `/v1/service/sessions/${encodeURIComponent(sid)}/${what}`);
      this.onStatus(s);
    } catch (err) {
      this.message = t("action_failed", { detail: reason(err) });
      this.renderIfDesk();
    }
  }

  /** @param {any} m */
  bubble(m) {
    const mine = m.sender_id === this.me.id;
    const body = m.body ?? {};
    const text = body.kind === "text" || body.kind === "system" ? body.text : isRecalled(m) ? t("message_recalled") : t("withdrawn");
    const kind = body.kind === "system" ? "system" : mine ? "mine" : "theirs";
    return h(
      "li",
      { class: `msg ${kind}`, "data-seq": String(m.seq), "data-event": body.event },
      kind === "system" ? h("p", { class: "from", text: t("system") }) : "",
      isMediaBody(body) ? this.media.render(m) : h("p", { class: "text", text }),
      h("p", { class: "meta" }, h("time", { datetime: new Date(m.ts).toISOString(), text: shortTime(m.ts, lang()) })),
    );
  }

  /** The desk chat is on screen: move my read position in the service conversation. */
  markRead() {
    const cid = this.conversationId;
    if (!cid || document.visibilityState !== "visible") return;
    let newest = 0;
    for (const m of this.history.values()) newest = Math.max(newest, m.seq);
    for (const m of this.client.messages(cid) ?? []) newest = Math.max(newest, m.seq);
    if (newest <= (this.readSeq ?? 0)) return;
    this.readSeq = newest;
    this.client.read(cid, newest).catch(() => {
      this.readSeq = 0;
    });
  }
}
