// Desk figures for supervisors (GET /v1/service/figures): per queue waiting now, longest
// wait, average wait, the service level against the wait target, handled, handle time and
// CSAT; per agent state, load, handled, handle time and CSAT. Refreshed every 15 s while shown.

import { h, shortTime } from "../app/dom.js";
import { lang, t } from "./i18n.js";

/** The wait target of the service level shown (seconds a customer waits for a person). */
export const SLA_WAIT_S = 60;
const REFRESH_MS = 15000;

/** @param {number | null | undefined} s */
function secs(s) {
  return s === null || s === undefined ? t("none") : t("seconds", { n: Math.round(s) });
}

/** @param {number | null | undefined} avg @param {number} n */
function csat(avg, n) {
  return avg === null || avg === undefined ? t("none") : t("csat_value", { avg: avg.toFixed(1), n });
}

export class FiguresView {
  /** @param {any} bench */
  constructor(bench) {
    this.session = bench.session;
    /** @type {any} */
    this.figures = null;
    this.failed = false;
    /** @type {HTMLElement | null} */
    this.panel = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.timer = null;
  }

  async load() {
    try {
      this.figures = await this.session.request("GET", "/v1/service/figures");
      this.failed = false;
    } catch {
      this.failed = true;
    }
    this.render();
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    this.render();
    this.load();
    this.timer = setInterval(() => this.load(), REFRESH_MS);
  }

  unmount() {
    this.panel = null;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** @param {string} caption @param {string[]} heads @param {Array<Array<string | Node>>} rows @param {string} id */
  table(caption, heads, rows, id) {
    return h(
      "table",
      { class: "figures", id },
      h("caption", { text: caption }),
      h("thead", {}, h("tr", {}, heads.map((x) => h("th", { scope: "col", text: x })))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell, i) => (i === 0 ? h("th", { scope: "row" }, cell) : h("td", {}, cell)))))),
    );
  }

  render() {
    if (!this.panel) return;
    const f = this.figures;
    const head = h("div", { class: "figures-head" }, h("h2", { text: t("tab_figures") }), f ? h("p", { text: t("figures_since", { since: shortTime(Date.parse(f.since), lang()) }) }) : "", h("button", { type: "button", class: "secondary", text: t("refresh"), onclick: () => this.load() }));
    if (!f) {
      this.panel.replaceChildren(head, this.failed ? h("p", { class: "form-error", role: "alert", text: t("load_failed") }) : "");
      return;
    }
    const queues = this.table(
      t("per_queue"),
      [t("col_queue"), t("col_waiting"), t("col_longest"), t("col_avg_wait"), t("col_sla", { s: SLA_WAIT_S }), t("col_handled"), t("col_aht"), t("col_csat")],
      f.queues.map((/** @type {any} */ q) => {
        const missed = (q.longest_wait_s ?? 0) > SLA_WAIT_S || (q.avg_wait_s ?? 0) > SLA_WAIT_S;
        return [
          q.name,
          String(q.waiting),
          secs(q.longest_wait_s),
          secs(q.avg_wait_s),
          h("span", { class: missed ? "sla missed" : "sla met", text: missed ? t("sla_missed") : t("sla_met") }),
          String(q.handled),
          secs(q.avg_handle_s),
          csat(q.csat_avg, q.csat_count),
        ];
      }),
      "queue-figures",
    );
    const agents = this.table(
      t("per_agent"),
      [t("col_agent"), t("col_state"), t("col_load"), t("col_handled"), t("col_aht"), t("col_csat")],
      f.agents.map((/** @type {any} */ a) => [`${a.display_name}（${a.username}）`, t(`agent_${a.state}`), `${a.active} / ${a.capacity}`, String(a.handled), secs(a.avg_handle_s), csat(a.csat_avg, a.csat_count)]),
      "agent-figures",
    );
    this.panel.replaceChildren(head, this.failed ? h("p", { class: "form-error", role: "alert", text: t("load_failed") }) : "", queues, agents);
  }
}
