// The agent's workbench: my desk state (available / busy / away), my sessions (routed to
// me by the hub: a `service_assigned` event announces each), and for the session I serve:
// the customer's card, the agents-only notes, the chat, transfer with a note, close with tags;
// and how many wait in each of my queues (GET /v1/service/agents/me, looked at every 10 s).

import { h } from "../app/dom.js";
import { t } from "./i18n.js";
import { ChatPane } from "./chat.js";
import { problemText } from "./rm.js";

const POLL_MS = 10000;

export class DeskView {
  /** @param {any} bench */
  constructor(bench) {
    this.bench = bench;
    this.session = bench.session;
    this.client = bench.client;
    /** @type {any} GET /v1/service/agents/me */
    this.desk = null;
    /** @type {any[]} */
    this.queues = [];
    /** @type {Record<string, string>} tag -> label */
    this.tags = {};
    /** @type {Map<string, any>} session id -> detail (GET /v1/service/sessions/{id}) */
    this.details = new Map();
    /** @type {string | null} */
    this.openId = null;
    /** @type {ChatPane | null} */
    this.chat = null;
    this.failed = false;
    this.announcement = "";
    /** how many `service_assigned` came: an action's own announcement must not hide one that came meanwhile */
    this.assignments = 0;
    /** @type {HTMLElement | null} */
    this.panel = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.timer = null;
    this.client.addEventListener("service_assigned", (/** @type {any} */ e) => {
      const f = e.detail;
      this.assignments += 1;
      this.announcement = t("new_customer", { name: f.customer?.display_name ?? "", queue: this.queueName(f.queue) });
      this.details.set(f.session_id, { session: { session_id: f.session_id, conversation_id: f.conversation_id, queue: f.queue, state: "active" }, customer: f.customer, notes: f.notes, via: f.via });
      this.load();
    });
    this.client.addEventListener("agent_state", (/** @type {any} */ e) => {
      if (this.desk) Object.assign(this.desk, { state: e.detail.state, capacity: e.detail.capacity, active: e.detail.active });
      this.renderSide();
    });
    this.client.addEventListener("conversation_removed", () => this.load());
    this.client.addEventListener("state", (/** @type {any} */ e) => e.detail?.state === "open" && this.load());
    this.loadStatic();
    this.load();
  }

  async loadStatic() {
    try {
      const [queues, tags] = await Promise.all([this.session.request("GET", "/v1/service/queues?limit=100"), this.session.request("GET", "/v1/service/tags")]);
      this.queues = queues.queues;
      this.tags = tags.tags;
    } catch {
      this.failed = true;
    }
    this.render();
  }

  async load() {
    const before = JSON.stringify([this.desk, this.failed]);
    try {
      this.desk = await this.session.request("GET", "/v1/service/agents/me");
      this.failed = false;
      const live = new Set(this.desk.sessions.map((/** @type {any} */ s) => s.session_id));
      if (this.openId && !live.has(this.openId)) {
        this.closePane();
        this.renderWork();
      }
    } catch {
      this.failed = true;
    }
    // unchanged (the usual answer to the 10 s look): keep the side as it is, focus and all
    if (JSON.stringify([this.desk, this.failed]) !== before) this.renderSide();
    else if (this.announcer) this.announcer.textContent = this.announcement;
  }

  /** @param {string} code */
  queueName(code) {
    return this.queues.find((q) => q.code === code)?.name ?? code;
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    this.render();
    // who waits in my queues changes without an event to me: look again every 10 s while shown
    this.timer = setInterval(() => this.load(), POLL_MS);
  }

  unmount() {
    this.panel = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  render() {
    if (!this.panel) return;
    this.sideEl = h("div", { class: "side" });
    this.workEl = h("div", { class: "chat-area" });
    this.announcer = h("p", { class: "announce", role: "status", "aria-live": "polite" });
    this.panel.replaceChildren(this.announcer, h("div", { class: "split" }, this.sideEl, this.workEl));
    this.renderSide();
    this.renderWork();
  }

  renderSide() {
    if (!this.sideEl) return;
    if (this.announcer) this.announcer.textContent = this.announcement;
    const d = this.desk;
    const states = ["available", "busy", "away"];
    const stateGroup = h(
      "fieldset",
      { class: "card states" },
      h("legend", { text: t("my_state") }),
      states.map((s) =>
        h(
          "label",
          { class: "radio" },
          h("input", { type: "radio", name: "agent-state", value: s, checked: d?.state === s, onchange: () => this.setState(s) }),
          t(`agent_${s}`),
        ),
      ),
      d ? h("p", { class: "load", text: t("load", { active: d.active, capacity: d.capacity }) }) : "",
    );
    const sessions = d?.sessions ?? [];
    const list = sessions.length
      ? h(
          "ul",
          { class: "cards" },
          sessions.map((/** @type {any} */ s) => {
            const det = this.details.get(s.session_id);
            const name = det?.customer?.display_name ?? t("session_customer");
            const open = this.openId === s.session_id;
            return h(
              "li",
              { class: `card session${open ? " open" : ""}`, "data-session": s.session_id },
              h("div", { class: "card-head" }, h("h3", { text: name }), h("span", { class: "username", text: this.queueName(s.queue) })),
              h("div", { class: "card-foot" }, h("span", { text: open ? t("serving") : "" }), h("button", { type: "button", class: "primary", "aria-pressed": open ? "true" : "false", "aria-label": `${t("serve")} ${name}`, text: t("serve"), onclick: () => this.serve(s) })),
            );
          }),
        )
      : h("p", { class: "empty", text: t("no_sessions") });
    /** @type {Map<string, any>} */
    const waiting = new Map((d?.queue_waiting ?? []).map((/** @type {any} */ w) => [w.queue, w]));
    const queueLine = (/** @type {any} */ q) => {
      const w = waiting.get(q.code);
      const parts = [q.name, q.open_now ? t("queue_open") : t("queue_closed")];
      if (w) parts.push(w.waiting ? t("queue_waiting", { n: w.waiting, s: Math.round(w.longest_wait_s ?? 0) }) : t("queue_empty"));
      return h("li", { "data-queue": q.code, text: parts.join(" · ") });
    };
    const queues = h(
      "section",
      { class: "card queues", "aria-labelledby": "queues-title" },
      h("div", { class: "card-head" }, h("h2", { id: "queues-title", text: t("queues") }), h("button", { type: "button", class: "link", text: t("refresh"), onclick: () => this.load() })),
      h("ul", { class: "plain" }, this.queues.filter((q) => d?.queues?.includes(q.code) ?? true).map(queueLine)),
    );
    this.sideEl.replaceChildren(
      this.failed ? h("p", { class: "form-error", role: "alert", text: t("load_failed") }) : "",
      stateGroup,
      h("section", { class: "sessions", "aria-labelledby": "sessions-title" }, h("h2", { id: "sessions-title", text: t("my_sessions") }), list),
      queues,
    );
    // fill in the cards of sessions this page has not seen assigned (after a reload)
    for (const s of sessions) if (!this.details.has(s.session_id)) this.fetchDetail(s.session_id);
  }

  /** @param {string} id */
  async fetchDetail(id) {
    this.details.set(id, null);
    try {
      this.details.set(id, await this.session.request("GET", `/v1/service/sessions/${encodeURIComponent(id)}`));
      this.renderSide();
      if (this.openId === id) this.renderWork();
    } catch {
      this.details.delete(id);
    }
  }

  /** @param {string} state */
  async setState(state) {
    try {
      this.desk = { ...this.desk, ...(await this.session.request("PUT", "/v1/service/agents/me/state", { state })) };
      await this.load();
    } catch (exc) {
      this.announcement = problemText(exc);
      this.renderSide();
    }
  }

  /** @param {any} s */
  serve(s) {
    if (this.openId === s.session_id) return;
    this.closePane();
    this.openId = s.session_id;
    const det = this.details.get(s.session_id);
    const names = new Map(det?.customer ? [[det.customer.user_id, det.customer.display_name]] : []);
    this.chat = new ChatPane({ session: this.session, client: this.client, conversationId: s.conversation_id, title: det?.customer?.display_name ?? t("session_customer"), names });
    this.fetchDetail(s.session_id);
    this.renderSide();
    this.renderWork();
    this.chat.focus();
  }

  closePane() {
    this.chat?.destroy();
    this.chat = null;
    this.openId = null;
  }

  renderWork() {
    if (!this.workEl) return;
    if (!this.openId || !this.chat) {
      this.workEl.replaceChildren(h("p", { class: "empty", text: this.announcement && !this.desk?.sessions?.length ? this.announcement : t("no_sessions") }));
      return;
    }
    const det = this.details.get(this.openId);
    const c = det?.customer;
    const card = c
      ? h(
          "section",
          { class: "card customer-card", "aria-label": t("session_customer") },
          h("h3", { text: c.display_name }),
          h("dl", { class: "facts" }, h("dt", { text: t("branch") }), h("dd", { text: `${c.org_name}（${c.branch}）` }), h("dt", { text: t("segment") }), h("dd", { text: c.segment ?? t("none") }), h("dt", { text: t("account_class") }), h("dd", { text: c.account_class ? t("class_n", { c: c.account_class }) : t("none") })),
        )
      : "";
    const notes = det?.notes?.length
      ? h("section", { class: "card notes", "aria-labelledby": "notes-title" }, h("h3", { id: "notes-title", text: t("notes") }), h("ul", { class: "plain" }, det.notes.map((/** @type {any} */ n) => h("li", { text: n.text || n.unreadable || "" }))))
      : "";
    this.workEl.replaceChildren(h("div", { class: "serve" }, h("div", { class: "serve-chat" }, this.chat.element), h("div", { class: "serve-side" }, card, notes, this.transferForm(), this.closeForm())));
    this.chat.render();
  }

  transferForm() {
    const id = /** @type {string} */ (this.openId);
    const current = this.details.get(id)?.session?.queue;
    const queue = /** @type {HTMLSelectElement} */ (h("select", { id: "transfer-queue" }, h("option", { value: "", text: t("none") }), this.queues.filter((q) => q.code !== current).map((q) => h("option", { value: q.code, text: q.name }))));
    const agent = /** @type {HTMLInputElement} */ (h("input", { id: "transfer-agent", autocomplete: "off", autocapitalize: "none", spellcheck: "false" }));
    const note = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "transfer-note", rows: "2", maxlength: "2000", required: true }));
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { class: "card transfer", "aria-labelledby": "transfer-title", novalidate: true },
      h("h3", { id: "transfer-title", text: t("transfer") }),
      h("label", { for: "transfer-queue", text: t("transfer_to_queue") }),
      queue,
      h("label", { for: "transfer-agent", text: t("transfer_to_agent") }),
      agent,
      h("label", { for: "transfer-note", text: t("transfer_note") }),
      note,
      error,
      h("button", { type: "submit", class: "secondary", text: t("transfer") }),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      const target = agent.value.trim() ? { agent: agent.value.trim() } : queue.value ? { queue: queue.value } : null;
      if (!target) return void (error.textContent = t("transfer_target_needed"));
      if (!note.value.trim()) return void (error.textContent = t("transfer_note_needed"), note.focus());
      const before = this.assignments;
      try {
        await this.session.request("POST", `/v1/service/sessions/${encodeURIComponent(id)}/transfer`, { ...target, note: note.value.trim() });
        if (this.assignments === before) this.announcement = t("transferred");
        this.closePane();
        await this.load();
        this.renderWork();
      } catch (exc) {
        error.textContent = problemText(exc);
      }
    });
    return form;
  }

  closeForm() {
    const id = /** @type {string} */ (this.openId);
    const boxes = Object.entries(this.tags).map(([tag, label]) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "close-tag", value: tag }), label || tag));
    const note = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "close-note", rows: "2", maxlength: "2000" }));
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { class: "card close", "aria-labelledby": "close-title", novalidate: true },
      h("h3", { id: "close-title", text: t("close") }),
      h("fieldset", { class: "tags" }, h("legend", { text: t("close_tags") }), boxes),
      h("label", { for: "close-note", text: t("close_note") }),
      note,
      error,
      h("button", { type: "submit", class: "primary", text: t("close") }),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      const tags = [...form.querySelectorAll("input[name=close-tag]:checked")].map((b) => /** @type {HTMLInputElement} */ (b).value);
      if (!tags.length) return void (error.textContent = t("close_tags_needed"));
      const before = this.assignments;
      try {
        const text = note.value.trim();
        await this.session.request("POST", `/v1/service/sessions/${encodeURIComponent(id)}/close`, text ? { tags, note: text } : { tags });
        if (this.assignments === before) this.announcement = t("closed");
        this.closePane();
        await this.load();
        this.renderWork();
      } catch (exc) {
        error.textContent = problemText(exc);
      }
    });
    return form;
  }
}
