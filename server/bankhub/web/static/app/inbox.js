// The alerts inbox (Services tab): my alerts newest first, by category, with the exact unread
// count; mark read, archive, read the archive. New alerts arrive live (the SDK's "alert"
// events, which also bring those that came while away); a replacing alert drops the one it
// replaces; "inbox_update" carries changes made on my other devices. Preferences: opt out
// per category and quiet hours. Security alerts cannot be muted: their switch is disabled
// and says why (the hub refuses it anyway).

import { h, shortTime } from "./dom.js";
import { lang, t } from "./i18n.js";

const PAGE = 20;
const CATEGORIES = ["security", "transaction", "service", "marketing"];

/** @param {any} e */
function reason(e) {
  return e?.detail || e?.code || String(e);
}

export class InboxView {
  /** @param {any} services ServicesView */
  constructor(services) {
    this.services = services;
    this.session = services.session;
    this.client = services.client;
    /** @type {Map<string, any>} alert id -> alert shown */
    this.alerts = new Map();
    /** @type {"inbox" | "archived"} */
    this.box = "inbox";
    this.category = "all";
    this.hasMore = false;
    this.unread = 0;
    this.loaded = false;
    this.message = "";
    /** @type {any} */
    this.prefs = null;
    /** @type {HTMLElement | null} */
    this.panel = null;
    this.timer = 0;
    this.listen();
    this.refreshUnread();
  }

  listen() {
    const c = this.client;
    c.addEventListener("alert", (/** @type {any} */ e) => {
      const a = e.detail;
      if (a.replaces) this.alerts.delete(a.replaces);
      if (this.box === "inbox" && a.state !== "archived") this.alerts.set(a.alert_id, a);
      this.refreshSoon();
      this.renderIfShown();
    });
    c.addEventListener("inbox_update", (/** @type {any} */ e) => this.applyUpdate(e.detail));
    c.addEventListener("state", (/** @type {any} */ e) => {
      if (e.detail?.state === "open") this.refreshSoon();
    });
  }

  /** @param {any} u an inbox_update: {state, unread, alert_ids, up_to_seq?} */
  applyUpdate(u) {
    if (typeof u.unread === "number") this.setUnread(u.unread);
    const ids = new Set(u.alert_ids ?? []);
    for (const a of this.alerts.values()) {
      if (!ids.has(a.alert_id) && !(typeof u.up_to_seq === "number" && a.seq <= u.up_to_seq)) continue;
      if (u.state === "archived" && this.box === "inbox") this.alerts.delete(a.alert_id);
      else if (u.state === "archived" || a.state === "unread") a.state = u.state;
    }
    this.renderIfShown();
  }

  /** @param {number} n */
  setUnread(n) {
    this.unread = n;
    this.services.setBadge(n);
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refreshUnread(), 200);
  }

  async refreshUnread() {
    try {
      const r = await this.session.request("GET", "/v1/inbox/unread");
      this.setUnread(r.unread);
      this.renderIfShown();
    } catch {
      // offline: the count comes with the next update
    }
  }

  /** @param {boolean} more the next (older) page */
  async load(more = false) {
    const q = new URLSearchParams({ state: this.box, limit: String(PAGE) });
    const seqs = [...this.alerts.values()].map((a) => a.seq);
    if (more && seqs.length) q.set("before_seq", String(Math.min(...seqs)));
    try {
      const page = await this.session.request("GET", `/v1/inbox?${q}`);
      if (!more) this.alerts = new Map();
      for (const a of page.alerts) this.alerts.set(a.alert_id, a);
      this.hasMore = !!page.has_more;
      this.setUnread(page.unread);
      this.message = "";
    } catch {
      this.message = t("load_failed");
    }
    this.loaded = true;
    this.renderIfShown();
  }

  renderIfShown() {
    if (this.panel && this.services.panel === this.panel && this.services.view === "inbox") this.renderInbox(this.panel, false);
  }

  /**
   * @param {string} path "/v1/inbox/read" or "/v1/inbox/archive"
   * @param {Record<string, any>} body {alert_ids} and/or {up_to_seq}
   */
  async change(path, body) {
    this.message = "";
    try {
      this.applyUpdate(await this.session.request("POST", path, body));
    } catch (e) {
      this.message = t("action_failed", { detail: reason(e) });
      this.renderIfShown();
    }
  }

  /** @param {HTMLElement} panel @param {boolean} focus */
  renderInbox(panel, focus) {
    const first = this.panel !== panel || focus;
    this.panel = panel;
    if (first) this.load();
    this.services.shell.setTitle(t("alerts_inbox"));
    const back = h("button", { type: "button", class: "link back", text: `‹ ${t("back")}`, onclick: () => this.services.go("menu") });
    const boxes = h(
      "div",
      { class: "seg", role: "group", "aria-label": t("alerts_inbox") },
      /** @type {const} */ (["inbox", "archived"]).map((box) =>
        h("button", {
          type: "button",
          class: "chip",
          "aria-pressed": String(this.box === box),
          text: box === "inbox" ? t("inbox_inbox") : t("inbox_archived"),
          onclick: () => {
            this.box = box;
            this.load();
          },
        }),
      ),
    );
    const select = h(
      "select",
      { id: "alert-cat" },
      ["all", ...CATEGORIES].map((c) => h("option", { value: c, selected: c === this.category, text: t(`cat_${c}`) })),
    );
    select.addEventListener("change", () => {
      this.category = /** @type {HTMLSelectElement} */ (select).value;
      this.renderInbox(panel, false);
      /** @type {HTMLElement | null} */ (panel.querySelector("#alert-cat"))?.focus();
    });
    const shown = [...this.alerts.values()].filter((a) => this.category === "all" || a.category === this.category).sort((a, b) => b.seq - a.seq);
    const items = shown.map((a) => this.item(a));
    const top = Math.max(0, ...[...this.alerts.values()].map((a) => a.seq));
    panel.replaceChildren(
      h(
        "div",
        { class: "inbox" },
        h("div", { class: "feed-head" }, back, h("button", { type: "button", class: "chip", id: "open-prefs", text: t("preferences"), onclick: () => this.services.go("prefs") })),
        h("p", { class: "inbox-count", role: "status", "aria-live": "polite", text: t("inbox_unread", { n: this.unread }) }),
        this.message ? h("p", { class: "form-error", role: "alert", text: this.message }) : "",
        h(
          "div",
          { class: "inbox-tools" },
          boxes,
          h("label", { for: "alert-cat", text: t("inbox_category") }),
          select,
          this.box === "inbox" && this.unread > 0 && top
            ? h("button", { type: "button", class: "chip", id: "read-all", text: t("inbox_all_read"), onclick: () => this.change("/v1/inbox/read", { up_to_seq: top }) })
            : "",
        ),
        items.length ? h("ol", { class: "alert-list", "aria-label": t("alerts_inbox") }, items) : h("p", { class: "empty", text: this.loaded ? t("inbox_empty") : "" }),
        this.hasMore ? h("button", { type: "button", class: "link more", text: t("more"), onclick: () => this.load(true) }) : "",
      ),
    );
    if (focus) back.focus();
  }

  /** @param {any} a */
  item(a) {
    const unread = a.state === "unread";
    return h(
      "li",
      { class: `alert ${a.state}${a.category === "security" ? " security" : ""}`, "data-alert-id": a.alert_id, "data-state": a.state },
      h(
        "p",
        { class: "meta" },
        h("span", { class: "tag", text: t(`cat_${a.category}`) }),
        unread ? h("span", { class: "dot", text: t("unread_tag") }) : "",
        h("time", { datetime: new Date(a.ts).toISOString(), text: shortTime(a.ts, lang()) }),
      ),
      h("h3", { text: a.title }),
      h("p", { class: "text", text: a.text }),
      h(
        "p",
        { class: "actions" },
        unread ? h("button", { type: "button", class: "chip", "aria-label": `${t("mark_read")}：${a.title}`, text: t("mark_read"), onclick: () => this.change("/v1/inbox/read", { alert_ids: [a.alert_id] }) }) : "",
        a.state !== "archived"
          ? h("button", { type: "button", class: "chip", "aria-label": `${t("archive")}：${a.title}`, text: t("archive"), onclick: () => this.change("/v1/inbox/archive", { alert_ids: [a.alert_id] }) })
          : "",
      ),
    );
  }

  /** @param {HTMLElement} panel @param {boolean} focus */
  async renderPrefs(panel, focus) {
    this.panel = panel;
    this.services.shell.setTitle(t("preferences"));
    const back = h("button", { type: "button", class: "link back", text: `‹ ${t("back")}`, onclick: () => this.services.go("inbox") });
    panel.replaceChildren(h("div", { class: "prefs" }, back));
    if (focus) back.focus();
    try {
      this.prefs = await this.session.request("GET", "/v1/me/alert-preferences");
    } catch {
      panel.append(h("p", { class: "form-error", role: "alert", text: t("load_failed") }));
      return;
    }
    if (this.services.view !== "prefs" || this.services.panel !== panel) return;
    const p = this.prefs;
    const mutable = new Set(p.mutable ?? CATEGORIES.filter((c) => c !== "security"));
    const switches = (p.categories ?? CATEGORIES).map((/** @type {string} */ c) => {
      const locked = !mutable.has(c);
      const id = `pref-${c}`;
      return h(
        "div",
        { class: "switch-row" },
        h("input", {
          type: "checkbox",
          role: "switch",
          id,
          name: c,
          checked: !p.muted.includes(c),
          disabled: locked,
          "aria-describedby": locked ? `${id}-why` : null,
        }),
        h("label", { for: id, text: t("pref_receive", { category: t(`cat_${c}`) }) }),
        locked ? h("p", { class: "hint", id: `${id}-why`, text: t("pref_security_locked") }) : "",
      );
    });
    const quiet = p.quiet_hours;
    const on = h("input", { type: "checkbox", role: "switch", id: "quiet-on", checked: !!quiet });
    const start = h("input", { type: "time", id: "quiet-start", value: quiet?.start ?? "22:00", required: true });
    const end = h("input", { type: "time", id: "quiet-end", value: quiet?.end ?? "07:00", required: true });
    const result = h("p", { class: "form-status", role: "status" });
    const form = h(
      "form",
      { class: "prefs-form" },
      h("fieldset", {}, h("legend", { text: t("preferences") }), switches),
      h(
        "fieldset",
        {},
        h("legend", { text: t("quiet_hours") }),
        h("div", { class: "switch-row" }, on, h("label", { for: "quiet-on", text: t("quiet_on") })),
        h("div", { class: "times" }, h("label", { for: "quiet-start", text: t("quiet_start") }), start, h("label", { for: "quiet-end", text: t("quiet_end") }), end),
      ),
      result,
      h("button", { type: "submit", class: "primary", text: t("save") }),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const muted = CATEGORIES.filter((c) => {
        const box = /** @type {HTMLInputElement | null} */ (form.querySelector(`#pref-${c}`));
        return box !== null && !box.disabled && !box.checked;
      });
      const body = {
        muted,
        quiet_hours: /** @type {HTMLInputElement} */ (on).checked
          ? { start: /** @type {HTMLInputElement} */ (start).value, end: /** @type {HTMLInputElement} */ (end).value }
          : null,
        timezone: p.timezone,
        locale: p.locale,
      };
      result.className = "form-status";
      try {
        this.prefs = await this.session.request("PUT", "/v1/me/alert-preferences", body);
        result.textContent = t("saved");
      } catch (err) {
        result.className = "form-status form-error";
        result.textContent = t("action_failed", { detail: reason(err) });
      }
    });
    panel.replaceChildren(h("div", { class: "prefs" }, back, form));
    if (focus) back.focus();
  }
}
