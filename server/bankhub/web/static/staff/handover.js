// Handover for administrators: the RMs I administer (GET /v1/rm/managers); open an RM's book (GET /v1/rm/book?rm=, metadata only: an
// administrator never sees message text here), hand one customer to another RM
// (PUT /v1/customers/{username}/rm) or the whole book (POST /v1/rm/{username}/handover).
// Who may move whom is the hub's decision (a branch admin: only within their subtree).

import { h } from "../app/dom.js";
import { t } from "./i18n.js";
import { problemText } from "./rm.js";

export class HandoverView {
  /** @param {any} bench */
  constructor(bench) {
    this.session = bench.session;
    this.rm = "";
    /** @type {any} */
    this.book = null;
    /** @type {any[]} */
    this.customers = [];
    /** @type {string | null} */
    this.next = null;
    this.message = "";
    this.error = "";
    /** @type {any[] | null} the RMs I administer (GET /v1/rm/managers) */
    this.managers = null;
    /** @type {HTMLElement | null} */
    this.panel = null;
    this.loadManagers();
  }

  /** The RMs I may hand books between (all pages; a branch has tens, head office hundreds). */
  async loadManagers() {
    try {
      this.managers = await this.session.all("/v1/rm/managers", "managers");
    } catch {
      this.managers = null;
    }
    this.render();
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    this.render();
  }

  unmount() {
    this.panel = null;
  }

  /** @param {string} rm @param {boolean} [more] */
  async load(rm, more = false) {
    this.error = "";
    try {
      const q = `/v1/rm/book?rm=${encodeURIComponent(rm)}&limit=50${more && this.next ? `&cursor=${encodeURIComponent(this.next)}` : ""}`;
      const book = await this.session.request("GET", q);
      this.rm = rm;
      this.book = book;
      this.customers = more ? [...this.customers, ...book.customers] : book.customers;
      this.next = book.next_cursor;
    } catch (exc) {
      this.book = null;
      this.customers = [];
      this.error = problemText(exc);
    }
    this.render();
  }

  render() {
    if (!this.panel) return;
    const rmInput = /** @type {HTMLInputElement} */ (h("input", { id: "book-rm", list: "rm-options", autocomplete: "off", autocapitalize: "none", spellcheck: "false", required: true }));
    rmInput.value = this.rm;
    const pick = h("form", { class: "card pick" }, h("label", { for: "book-rm", text: t("rm_username") }), rmInput, h("button", { type: "submit", class: "primary", text: t("show_book") }));
    pick.addEventListener("submit", (e) => {
      e.preventDefault();
      this.message = "";
      if (rmInput.value.trim()) this.load(rmInput.value.trim());
    });
    const directory = this.managers
      ? h(
          "section",
          { class: "card directory", "aria-labelledby": "directory-title" },
          h("h3", { id: "directory-title", text: t("managers") }),
          h(
            "ul",
            { class: "plain managers" },
            this.managers.map((m) =>
              h(
                "li",
                { "data-username": m.username },
                h("span", { text: `${m.display_name}（${m.username}）· ${m.org_name} · ${t("n_customers", { n: m.customers })} · ${t(`avail_${m.status}`)}` }),
                h("button", { type: "button", class: "link", "aria-label": t("book_of", { name: m.username }), text: t("show_book"), onclick: () => ((this.message = ""), this.load(m.username)) }),
              ),
            ),
          ),
        )
      : "";
    const options = h("datalist", { id: "rm-options" }, (this.managers ?? []).map((m) => h("option", { value: m.username, text: m.display_name })));
    const parts = [h("h2", { text: t("tab_handover") }), h("p", { class: "intro", text: t("handover_intro") }), directory, options, pick, h("p", { class: "form-note", role: "status", text: this.message }), h("p", { class: "form-error", role: "alert", text: this.error })];
    if (this.book) parts.push(this.bookSection());
    this.panel.replaceChildren(...parts);
  }

  bookSection() {
    const b = this.book;
    const whole = /** @type {HTMLInputElement} */ (h("input", { id: "whole-to", list: "rm-options", autocomplete: "off", autocapitalize: "none", spellcheck: "false" }));
    const wholeForm = h("form", { class: "card whole" }, h("label", { for: "whole-to", text: t("book_to_rm") }), whole, h("button", { type: "submit", class: "secondary", text: t("hand_over_book") }));
    wholeForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const to = whole.value.trim();
      if (!to) return void this.fail(t("target_needed"));
      this.act(() => this.session.request("POST", `/v1/rm/${encodeURIComponent(this.rm)}/handover`, { to }));
    });
    const rows = this.customers.map((entry) => {
      const c = entry.customer;
      const id = `to-${c.username}`;
      const input = /** @type {HTMLInputElement} */ (h("input", { id, list: "rm-options", autocomplete: "off", autocapitalize: "none", spellcheck: "false" }));
      const form = h("form", { class: "inline" }, h("label", { for: id, text: t("to_rm") }), input, h("button", { type: "submit", class: "secondary", "aria-label": `${t("hand_over_one")} ${c.display_name}`, text: t("hand_over_one") }));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const to = input.value.trim();
        if (!to) return void this.fail(t("target_needed"));
        this.act(async () => {
          await this.session.request("PUT", `/v1/customers/${encodeURIComponent(c.username)}/rm`, { rm: to });
          return { customers: [c.username], to_rm: to };
        });
      });
      return h(
        "li",
        { class: "card customer", "data-username": c.username },
        h("div", { class: "card-head" }, h("h3", { text: c.display_name }), h("span", { class: "username", text: c.username })),
        h("dl", { class: "facts" }, h("dt", { text: t("branch") }), h("dd", { text: `${c.org_name}（${c.branch}）` }), h("dt", { text: t("segment") }), h("dd", { text: c.segment ?? t("none") }), h("dt", { text: t("account_class") }), h("dd", { text: c.account_class ? t("class_n", { c: c.account_class }) : t("none") })),
        form,
      );
    });
    return h(
      "section",
      { class: "admin-book", "aria-labelledby": "admin-book-title" },
      h("h3", { id: "admin-book-title", text: t("book_of", { name: `${b.rm.display_name}（${b.rm.username}）` }) }),
      wholeForm,
      rows.length ? h("ul", { class: "cards" }, rows) : h("p", { class: "empty", text: t("book_empty") }),
      this.next ? h("button", { type: "button", class: "secondary", text: t("more"), onclick: () => this.load(this.rm, true) }) : "",
    );
  }

  /** @param {string} text */
  fail(text) {
    this.error = text;
    this.message = "";
    this.render();
  }

  /** @param {() => Promise<any>} op */
  async act(op) {
    this.error = "";
    try {
      const done = await op();
      this.message = t("handed_over", { n: done.customers.length, to: done.to_rm });
      await Promise.all([this.load(this.rm), this.loadManagers()]);
      this.message = t("handed_over", { n: done.customers.length, to: done.to_rm });
      this.render();
    } catch (exc) {
      this.fail(problemText(exc));
    }
  }
}
