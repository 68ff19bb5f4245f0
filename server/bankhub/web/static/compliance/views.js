// The compliance console's sections: legal holds, retention (policies, purges), the supervision
// review queue, eDiscovery exports, information barriers, the DLP search and the audit chain.
// Every call goes through the SDK session (cookie + CSRF); the hub's policy decides each one.
// Message text is only ever fetched after the reason prompt (reason.js): lists show metadata.

import { h } from "../app/dom.js";
import { TabbedConsole } from "../console/shell.js";
import { lang, t } from "./i18n.js";
import { askReason, REASONS } from "./reason.js";

const SECTIONS = ["holds", "retention", "review", "exports", "barriers", "dlp", "audit"];
const POLL_MS = 1500;
// an export awaiting a second officer changes rarely: re-read its list slowly
const POLL_PENDING_MS = 15000;
// after a failed read the next one waits twice as long, up to this
const POLL_MAX_MS = 60000;
const PAGE = 50;
const HOLD_STATES = ["active", "release_pending", "released"];
const FLAG_STATES = ["open", "escalated", "closed"];
const DLP_MAX_PAGES = 10;
// messages read around a DLP match: this many after it (the page goes back from there)
const READ_AFTER = 10;
const READ_PAGE = 30;

/** @param {unknown} exc */
function detail(exc) {
  const e = /** @type {any} */ (exc);
  return e?.detail || e?.code || String(exc);
}

/** @param {string} value comma-separated list → trimmed non-empty values */
function list(value) {
  return value.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
}

/** @param {string | null | undefined} iso a time, shown in the browser's zone with the zone named */
function when(iso) {
  return iso
    ? new Date(iso).toLocaleString(lang(), { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short" })
    : "";
}

/** The browser's time zone (what datetime-local fields are read in), e.g. "Asia/Shanghai". */
function zone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** A path segment: an id as sent by the hub, escaped all the same. */
const pathId = encodeURIComponent;

/** A datetime-local control's value as RFC 3339 (the browser's zone), or null when empty. */
function rfc3339(/** @type {HTMLInputElement} */ input) {
  return input.value ? new Date(input.value).toISOString() : null;
}

/** A field: label + control, the label tied to the control's id. */
function field(id, label, control, hint = null) {
  control.id = id;
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control, hint ? h("p", { class: "hint", id: `${id}-hint`, text: hint }) : null);
}

/** @param {string[]} values @param {(v: string) => string} label @param {string} [selected] */
function select(values, label, selected = "") {
  return h("select", {}, values.map((v) => h("option", { value: v, selected: v === selected, text: label(v) })));
}

/** A table with a caption, column headers and rows of cells (strings or nodes). */
function table(caption, headers, rows, empty) {
  if (!rows.length) return h("div", {}, h("h3", { class: "table-title", text: caption }), h("p", { class: "muted", text: empty }));
  return h(
    "table",
    { class: "grid" },
    h("caption", { text: caption }),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", text: x })))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c ?? ""))))),
  );
}

/** A polite status line for the outcome of an action. */
function status() {
  return h("p", { class: "result", role: "status", "aria-live": "polite" });
}

export class ComplianceConsole extends TabbedConsole {
  /**
   * @param {HTMLElement} root
   * @param {any} session HubSession (cookie mode)
   * @param {() => Promise<void>} signOut
   * @param {() => HTMLElement} langButton
   */
  constructor(root, session, signOut, langButton) {
    super(root, session, signOut, langButton, SECTIONS, t);
    /** @type {Set<number>} pending re-reads (see poll) */
    this.timers = new Set();
    /** @type {(() => void) | null} waiting for the page to be visible again */
    this.onVisible = null;
    this.holdState = "active";
    this.flagState = "open";
    this.flash = "";
    /** @type {boolean | string} after the next render, focus the outcome (true) or this element id */
    this.refocus = false;
    /** @type {string | null} */
    this.segment = null;
    this.render();
  }

  get me() {
    return this.session.user.username;
  }

  stop() {
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    if (this.onVisible) document.removeEventListener("visibilitychange", this.onVisible);
    this.onVisible = null;
  }

  /** Run `fn` again in `ms` while this section is still the one shown; while the page is
   * hidden, only once it is visible again. Each call arms its own timer (stop() clears them
   * all): a read that lands on a container left meanwhile re-arms a timer that finds it
   * detached and does nothing — it can no longer cancel the poll of the view now shown. */
  poll(section, fn, ms = POLL_MS) {
    const id = window.setTimeout(() => {
      this.timers.delete(id);
      if (this.section !== section || !this.root.isConnected) return;
      if (!document.hidden) {
        fn();
        return;
      }
      if (this.onVisible) document.removeEventListener("visibilitychange", this.onVisible);
      this.onVisible = () => {
        if (document.hidden) return;
        if (this.onVisible) document.removeEventListener("visibilitychange", this.onVisible);
        this.onVisible = null;
        if (this.section === section && this.root.isConnected) fn();
      };
      document.addEventListener("visibilitychange", this.onVisible);
    }, ms);
    this.timers.add(id);
  }

  /** A read refused 401/403: the session ended or is no longer a compliance officer's. Stop
   * every re-read and go back to sign-in (true); any other failure: false. */
  ended(exc) {
    const status = /** @type {any} */ (exc)?.status;
    if (status !== 401 && status !== 403) return false;
    this.stop();
    this.signOut();
    return true;
  }

  render() {
    const user = this.session.user;
    this.layout(t("signed_in_as", { name: user.display_name || user.username, role: t("role_compliance") }));
  }

  show() {
    this.stop();
    this.panel.setAttribute("aria-labelledby", `tab-${this.section}`);
    // each showing renders into its own container: a slow answer for a section left meanwhile
    // lands in a detached element instead of over the section now shown
    const panel = h("div", { class: "view" }, h("p", { class: "muted", text: t("loading") }));
    this.panel.replaceChildren(panel);
    const render = {
      holds: () => this.renderHolds(panel),
      retention: () => this.renderRetention(panel),
      review: () => this.renderReview(panel),
      exports: () => this.renderExports(panel),
      barriers: () => this.renderBarriers(panel),
      dlp: () => this.renderDlp(panel),
      audit: () => this.renderAudit(panel),
    }[this.section];
    const refocus = this.refocus;
    this.refocus = false;
    render()
      .catch((exc) => {
        panel.replaceChildren(h("p", { class: "form-error", role: "alert", text: t("load_failed", { detail: detail(exc) }) }));
      })
      .finally(() => {
        // after an action re-rendered the section, focus its outcome (else the section), not the page's start
        if (!refocus || !panel.isConnected) return;
        const said = /** @type {HTMLElement | null} */ (
          typeof refocus === "string" ? panel.querySelector(`#${refocus}`) : panel.querySelector(".notice-line:not(:empty)")
        );
        (said || this.panel).focus();
      });
  }

  /** Run an action; on success refresh the section, on failure say why in `out`. `done` is
   * the message to show, or a function of the action's answer giving it. */
  async act(out, fn, done) {
    out.textContent = "";
    out.classList.remove("form-error");
    try {
      const answer = await fn();
      this.flash = (typeof done === "function" ? done(answer) : done) || "";
      this.refocus = true;
      this.show();
    } catch (exc) {
      out.classList.add("form-error");
      out.textContent = t("error", { detail: detail(exc) });
    }
  }

  /** The message left by the last action, shown once at the top of the refreshed section. */
  notice() {
    const text = this.flash;
    this.flash = "";
    return h("p", { class: "result notice-line", role: "status", "aria-live": "polite", tabindex: "-1", text: text || "" });
  }

  /** Every page of a list, and the first page's body (for fields beside the list, e.g. floor_days). */
  async pages(path, key) {
    /** @type {any[]} */
    const items = [];
    /** @type {any} */
    let first = null;
    let cursor = null;
    for (let n = 0; n < 1000; n += 1) {
      // the path may carry a query already (e.g. ?state=pending)
      const sep = path.includes("?") ? "&" : "?";
      const body = /** @type {any} */ (await this.session.request("GET", `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`));
      first ??= body;
      items.push(...(body[key] || []));
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return [items, first];
  }

  /** The first PAGE items of a list as a table, and *Load more* appending the next page's rows
   * (rows already shown, and anything typed in them, stay as they are). */
  async pagedTable(path, key, caption, headers, toRow, empty) {
    const sep = path.includes("?") ? "&" : "?";
    const get = (/** @type {string | null} */ cursor) =>
      this.session.request("GET", `${path}${sep}limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const first = /** @type {any} */ (await get(null));
    let cursor = first.next_cursor || null;
    const error = h("p", { class: "form-error", role: "alert" });
    const more = /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: "secondary", text: t("more"), hidden: !cursor }));
    const host = h("div", { class: "paged" }, table(caption, headers, (first[key] || []).map(toRow), empty), more, error);
    more.addEventListener("click", async () => {
      error.textContent = "";
      try {
        const page = /** @type {any} */ (await get(cursor));
        cursor = page.next_cursor || null;
        const body = host.querySelector("tbody");
        for (const item of page[key] || []) body?.append(h("tr", {}, toRow(item).map((/** @type {any} */ c) => h("td", {}, c ?? ""))));
        more.hidden = !cursor;
        if (!cursor) {
          // nothing more: the focus goes to the list it grew, not to the page's start
          const caption = /** @type {HTMLElement | null} */ (host.querySelector("caption"));
          caption?.setAttribute("tabindex", "-1");
          caption?.focus();
        }
      } catch (exc) {
        if (!this.ended(exc)) error.textContent = t("error", { detail: detail(exc) });
      }
    });
    return host;
  }

  // --- holds -------------------------------------------------------------------------------

  async renderHolds(panel) {
    const out = status();
    const filter = /** @type {HTMLSelectElement} */ (select(HOLD_STATES, (s) => t(`hold_${s}`), this.holdState));
    filter.addEventListener("change", () => {
      this.holdState = filter.value;
      this.refocus = "hold-state"; // the re-rendered filter keeps the focus
      this.show();
    });
    const holdRow = (/** @type {any} */ hold) => {
      const actions = h("div", { class: "actions" });
      if (hold.state === "active") {
        const reason = /** @type {HTMLInputElement} */ (h("input", { maxlength: "500", "aria-label": t("release_reason_for", { name: hold.name }) }));
        actions.append(
          reason,
          h("button", {
            type: "button",
            class: "secondary",
            text: t("request_release"),
            onclick: () => {
              if (!reason.value.trim()) {
                out.classList.add("form-error");
                out.textContent = t("release_reason_required");
                reason.focus();
                return;
              }
              this.act(out, () => this.session.request("POST", `/v1/compliance/holds/${pathId(hold.hold_id)}/release`, { reason: reason.value.trim() }), t("release_requested"));
            },
          }),
        );
      } else if (hold.state === "release_pending") {
        // dual control: the page hides approve from the officer who asked; the hub decides anyway
        if (hold.release_requested_by !== this.me) {
          actions.append(
            h("button", { type: "button", class: "primary", text: t("approve_release"), onclick: () => this.act(out, () => this.session.request("POST", `/v1/compliance/holds/${pathId(hold.hold_id)}/release/approve`), t("released")) }),
          );
        } else {
          actions.append(h("span", { class: "muted", text: t("own_release") }));
        }
        actions.append(
          h("button", { type: "button", class: "secondary", text: t("reject_release"), onclick: () => this.act(out, () => this.session.request("POST", `/v1/compliance/holds/${pathId(hold.hold_id)}/release/reject`), t("release_rejected")) }),
        );
      }
      return [
        hold.name,
        hold.case_ref || "",
        hold.custodian ? hold.custodian.username : "",
        hold.conversation_id || "",
        [when(hold.from), when(hold.to)].filter(Boolean).join(" – ") || t("any_time"),
        h("span", { class: `status-${hold.state}`, text: t(`hold_${hold.state}`) }),
        hold.created_by,
        hold.release_reason ? t("release_reason_was", { who: hold.release_requested_by, reason: hold.release_reason }) : "",
        actions,
      ];
    };
    const holdTable = await this.pagedTable(
      `/v1/compliance/holds?state=${encodeURIComponent(this.holdState)}`,
      "holds",
      t("holds_caption", { state: t(`hold_${this.holdState}`) }),
      [t("hold_name"), t("case_ref"), t("custodian"), t("conversation_id"), t("period"), t("state"), t("placed_by"), t("release_reason"), t("actions")],
      holdRow,
      t("no_holds"),
    );

    const name = /** @type {HTMLInputElement} */ (h("input", { required: true, maxlength: "200" }));
    const caseRef = /** @type {HTMLInputElement} */ (h("input", { maxlength: "128" }));
    const custodian = /** @type {HTMLInputElement} */ (h("input", { maxlength: "64", autocapitalize: "none", spellcheck: "false" }));
    const conversation = /** @type {HTMLInputElement} */ (h("input", { maxlength: "36", spellcheck: "false" }));
    const from = /** @type {HTMLInputElement} */ (h("input", { type: "datetime-local" }));
    const to = /** @type {HTMLInputElement} */ (h("input", { type: "datetime-local" }));
    const formOut = status();
    const form = h(
      "form",
      { class: "form card", novalidate: true, "aria-labelledby": "place-hold-title" },
      h("h2", { id: "place-hold-title", text: t("place_hold") }),
      field("hold-name", t("hold_name"), name),
      field("hold-case", t("case_ref"), caseRef),
      field("hold-custodian", t("custodian"), custodian, t("custodian_hint")),
      field("hold-conversation", t("conversation_id"), conversation),
      h("div", { class: "row" }, field("hold-from", t("from"), from, t("zone_hint", { zone: zone() })), field("hold-to", t("to"), to, t("zone_hint", { zone: zone() }))),
      formOut,
      h("button", { type: "submit", class: "primary", text: t("place_hold") }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!name.value.trim() || (!custodian.value.trim() && !conversation.value.trim())) {
        formOut.classList.add("form-error");
        formOut.textContent = t("hold_needs");
        (name.value.trim() ? custodian : name).focus();
        return;
      }
      /** @type {Record<string, any>} */
      const body = { name: name.value.trim() };
      if (caseRef.value.trim()) body.case_ref = caseRef.value.trim();
      if (custodian.value.trim()) body.custodian = custodian.value.trim();
      if (conversation.value.trim()) body.conversation_id = conversation.value.trim();
      if (from.value) body.from = rfc3339(from);
      if (to.value) body.to = rfc3339(to);
      this.act(formOut, () => this.session.request("POST", "/v1/compliance/holds", body), t("hold_placed", { name: body.name }));
    });

    panel.replaceChildren(
      h("h2", { text: t("tab_holds") }),
      this.notice(),
      form,
      h("div", { class: "toolbar" }, field("hold-state", t("show_state"), filter)),
      out,
      holdTable,
    );
  }

  // --- retention ---------------------------------------------------------------------------

  async renderRetention(panel) {
    const [policies, policyPage] = await this.pages("/v1/compliance/retention/policies", "policies");
    const [pending] = await this.pages("/v1/compliance/retention/requests?state=pending", "requests");
    const floor = policyPage.floor_days;
    const out = status();
    // dual control: a new, shorter or removed policy and an erasure wait for a second officer
    const filed = (/** @type {any} */ answer) => (answer && answer.state === "pending" ? t("request_filed") : t("policy_added"));
    const what = (/** @type {any} */ x) =>
      x.kind === "erasure"
        ? t("request_erasure", { username: x.username || "", reason: x.reason || "" })
        : t(`request_${x.kind}`, { scope: t(`scope_${x.scope}`), value: x.value, days: x.days });
    const requestRows = pending.map((/** @type {any} */ x) => {
      const actions = h("div", { class: "actions" });
      const path = `/v1/compliance/retention/requests/${x.request_id}`;
      if (x.requested_by !== this.me) {
        actions.append(
          h("button", {
            type: "button",
            class: "primary",
            text: t("approve_request"),
            "aria-label": t("approve_request_for", { what: what(x) }),
            onclick: () => this.act(out, () => this.session.request("POST", `${path}/approve`), t("request_approved")),
          }),
        );
      } else {
        actions.append(h("span", { class: "muted", text: t("own_request") }));
      }
      actions.append(
        h("button", {
          type: "button",
          class: "secondary",
          text: x.requested_by === this.me ? t("withdraw_request") : t("reject_request"),
          "aria-label": t("reject_request_for", { what: what(x) }),
          onclick: () => this.act(out, () => this.session.request("POST", `${path}/reject`), t("request_rejected")),
        }),
      );
      return [what(x), x.requested_by, when(x.requested_at), when(x.expires_at), actions];
    });
    const rows = policies.map((/** @type {any} */ p) => [
      t(`scope_${p.scope}`),
      p.value,
      String(p.days),
      p.created_by,
      when(p.created_at),
      h("button", {
        type: "button",
        class: "secondary",
        text: t("remove"),
        "aria-label": t("remove_policy", { scope: t(`scope_${p.scope}`), value: p.value }),
        onclick: () => this.act(out, () => this.session.request("DELETE", `/v1/compliance/retention/policies/${p.policy_id}`), t("removal_filed")),
      }),
    ]);

    const scope = /** @type {HTMLSelectElement} */ (select(["kind", "role", "user"], (s) => t(`scope_${s}`)));
    const value = /** @type {HTMLInputElement} */ (h("input", { required: true, maxlength: "64" }));
    const days = /** @type {HTMLInputElement} */ (h("input", { type: "number", required: true, min: String(floor ?? 1), step: "1" }));
    const formOut = status();
    const form = h(
      "form",
      { class: "form card", novalidate: true, "aria-labelledby": "add-policy-title" },
      h("h2", { id: "add-policy-title", text: t("add_policy") }),
      field("policy-scope", t("scope"), scope),
      field("policy-value", t("scope_value"), value, t("scope_value_hint")),
      field("policy-days", t("days"), days, t("floor_hint", { days: floor })),
      formOut,
      h("button", { type: "submit", class: "primary", text: t("add") }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const n = Number(days.value);
      if (!value.value.trim() || !Number.isInteger(n) || n < 1) {
        formOut.classList.add("form-error");
        formOut.textContent = t("required");
        (value.value.trim() ? days : value).focus();
        return;
      }
      this.act(formOut, () => this.session.request("POST", "/v1/compliance/retention/policies", { scope: scope.value, value: value.value.trim(), days: n }), filed);
    });

    const purgeHost = h("div", { class: "view runs" });
    // said when a listed run changes state (the list itself is re-read quietly)
    const changes = h("p", { class: "sr-only", role: "status", "aria-live": "polite" });
    /** the runs as shown: the first page re-read while one runs, later pages as loaded by "more" */
    this.runList = { host: purgeHost, out: status(), changes, extra: /** @type {any[]} */ ([]), cursor: /** @type {string | null} */ (null), shown: "", states: new Map(), wait: POLL_MS };
    await this.loadRuns(this.runList);
    panel.replaceChildren(
      h("h2", { text: t("tab_retention") }),
      this.notice(),
      h("p", { class: "floor", text: t("floor", { days: floor }) }),
      out,
      table(t("policies"), [t("scope"), t("scope_value"), t("days"), t("created_by"), t("created"), t("actions")], rows, t("no_policies")),
      table(t("requests_title"), [t("request"), t("requested_by"), t("requested_at"), t("expires"), t("actions")], requestRows, t("no_requests")),
      form,
      changes,
      purgeHost,
    );
  }

  /** Read the first page of purge runs again and show the purge card and the runs (with any
   * later pages loaded by "more") — only this part: a half-filled policy form is kept.
   * Re-read in POLL_MS while a run is going, never otherwise; after a failed read twice as
   * late each time (up to POLL_MAX_MS); a 401/403 stops and goes back to sign-in. */
  async loadRuns(view) {
    // busy while re-read (assistive technology waits for the update; so can a test)
    view.host.setAttribute("aria-busy", "true");
    let first;
    try {
      first = /** @type {any} */ (await this.session.request("GET", `/v1/compliance/retention/purges?limit=${PAGE}`));
    } finally {
      view.host.removeAttribute("aria-busy");
    }
    if (!view.host.isConnected && view.shown) return; // left meanwhile: the view shown now has its own reads
    const items = /** @type {any[]} */ (first.runs || []);
    const seen = new Set(items.map((r) => r.run_id));
    view.extra = view.extra.filter((/** @type {any} */ r) => !seen.has(r.run_id));
    if (!view.extra.length) view.cursor = first.next_cursor || null;
    const all = [...items, ...view.extra];
    this.showRuns(view, all);
    view.wait = POLL_MS;
    if (all.some((r) => r.state === "running")) this.watchRuns(view, POLL_MS);
  }

  /** Re-read in `ms`; a failed read is retried later and later, a refused one stops. */
  watchRuns(view, ms) {
    this.poll(
      "retention",
      () => {
        if (!view.host.isConnected) return;
        this.loadRuns(view).catch((exc) => {
          if (this.ended(exc) || !view.host.isConnected) return;
          view.wait = Math.min(POLL_MAX_MS, view.wait * 2);
          this.watchRuns(view, view.wait);
        });
      },
      ms,
    );
  }

  /** The next page of purge runs, appended below the ones shown. */
  async moreRuns(view) {
    if (!view.cursor) return;
    const page = /** @type {any} */ (await this.session.request("GET", `/v1/compliance/retention/purges?limit=${PAGE}&cursor=${encodeURIComponent(view.cursor)}`));
    const have = new Set(view.extra.map((/** @type {any} */ r) => r.run_id));
    view.extra.push(...(page.runs || []).filter((/** @type {any} */ r) => !have.has(r.run_id)));
    view.cursor = page.next_cursor || null;
    view.shown = ""; // re-render: the list grew
    await this.loadRuns(view);
  }

  /** Render the purge card and the runs only when they changed; keep the focus on the control
   * it was on (by id) and say which runs changed state in the polite live region. */
  showRuns(view, runs) {
    const shown = JSON.stringify([lang(), view.cursor, runs]);
    if (shown === view.shown) return;
    const firstShowing = !view.shown;
    view.shown = shown;
    const said = [];
    for (const r of runs) {
      const before = view.states.get(r.run_id);
      if (!firstShowing && before && before !== r.state) said.push(t("run_now", { id: r.run_id.slice(0, 8), state: t(`run_${r.state}`) }));
      view.states.set(r.run_id, r.state);
    }
    const running = runs.find((/** @type {any} */ r) => r.state === "running");
    const purgeOut = view.out; // the same element every time: an action's error stays through a re-read
    const purge = h(
      "div",
      { class: "card form" },
      h("h2", { text: t("purge") }),
      h("p", { class: "hint", text: t("purge_hint") }),
      running ? this.runProgress(running) : null,
      purgeOut,
      h("button", {
        type: "button",
        id: "purge-start",
        class: "primary",
        disabled: Boolean(running),
        text: t("start_purge"),
        onclick: () => this.act(purgeOut, () => this.session.request("POST", "/v1/compliance/retention/purges"), t("purge_started")),
      }),
    );
    const runRows = runs.map((/** @type {any} */ r) => [
      when(r.started_at),
      r.started_by,
      h("span", { class: `status-${r.state}`, text: t(`run_${r.state}`) }),
      String(r.scanned),
      String(r.deleted_messages),
      String(r.deleted_media),
      String(r.refused_held),
      when(r.finished_at),
      r.state === "interrupted" || r.state === "failed"
        ? h("button", {
            type: "button",
            id: `run-${r.run_id}-resume`,
            class: "secondary",
            text: t("resume"),
            onclick: () => this.act(purgeOut, () => this.session.request("POST", `/v1/compliance/retention/purges/${pathId(r.run_id)}/resume`), t("purge_started")),
          })
        : "",
    ]);
    const focused = /** @type {HTMLElement | null} */ (document.activeElement);
    const keep = focused && view.host.contains(focused) ? focused.id : "";
    const more = view.cursor
      ? h("button", {
          type: "button",
          id: "runs-more",
          class: "secondary",
          text: t("more"),
          onclick: () => this.moreRuns(view).catch((exc) => {
            if (this.ended(exc)) return;
            purgeOut.classList.add("form-error");
            purgeOut.textContent = t("error", { detail: detail(exc) });
          }),
        })
      : null;
    view.host.replaceChildren(
      purge,
      table(t("purge_runs"), [t("started"), t("started_by"), t("state"), t("scanned"), t("deleted_messages"), t("deleted_media"), t("refused_held"), t("finished"), t("actions")], runRows, t("no_runs")),
      more,
    );
    if (keep) {
      const again = /** @type {HTMLElement | null} */ (view.host.querySelector(`[id="${keep}"]`));
      // the control is gone or disabled (e.g. the run it resumed is going): keep the focus near, on the list
      if (again && !(/** @type {any} */ (again).disabled)) again.focus();
      else {
        const caption = /** @type {HTMLElement | null} */ (view.host.querySelector("caption"));
        caption?.setAttribute("tabindex", "-1");
        caption?.focus();
      }
    }
    if (said.length) view.changes.textContent = said.join("; ");
  }

  /** A purge run in progress: figures and an indeterminate bar (the total is not known ahead). */
  runProgress(run) {
    return h(
      "div",
      { class: "progress-line" },
      h("progress", { "aria-label": t("purge_progress") }),
      h("span", { text: t("purge_running", { scanned: run.scanned, deleted: run.deleted_messages, held: run.refused_held }) }),
    );
  }

  // --- review queue ------------------------------------------------------------------------

  async renderReview(panel) {
    const out = status();
    const filter = /** @type {HTMLSelectElement} */ (select(FLAG_STATES, (s) => t(`flag_${s}`), this.flagState));
    filter.addEventListener("change", () => {
      this.flagState = filter.value;
      this.refocus = "flag-state"; // the re-rendered filter keeps the focus
      this.show();
    });
    const reader = h("section", { class: "reader card", "aria-label": t("flag_reader"), hidden: true, tabindex: "-1" });
    const flagRow = (/** @type {any} */ f) => [
      ruleName(f),
      f.sender ? f.sender.username : "",
      f.conversation_id,
      String(f.seq),
      when(f.created_at),
      h("span", { class: `status-${f.state}`, text: t(`flag_${f.state}`) }),
      h("button", {
        type: "button",
        class: "secondary",
        text: t("open_flag"),
        "aria-label": t("open_flag_of", { rule: ruleName(f), who: f.sender ? f.sender.username : "" }),
        onclick: () => this.openFlag(f, reader, out),
      }),
    ];
    const [queue, figures] = await Promise.all([
      this.pagedTable(
        `/v1/compliance/supervision/queue?state=${encodeURIComponent(this.flagState)}`,
        "flags",
        t("flags_caption"),
        [t("rule"), t("sender"), t("conversation_id"), t("seq"), t("flagged_at"), t("state"), t("actions")],
        flagRow,
        t("no_flags"),
      ),
      this.session.request("GET", "/v1/compliance/supervision/figures").catch(() => null),
    ]);
    panel.replaceChildren(
      h("h2", { text: t("tab_review") }),
      this.notice(),
      h("div", { class: "toolbar" }, field("flag-state", t("show_state"), filter)),
      out,
      queue,
      reader,
      this.figures(figures),
    );
  }

  /** Read a flagged message: the reason prompt FIRST, then the audited read. */
  async openFlag(flag, reader, out) {
    const chosen = await askReason(t("reason_for_flag", { rule: ruleName(flag), who: flag.sender ? flag.sender.username : "" }));
    if (!chosen) return; // cancelled: nothing is read
    out.textContent = "";
    try {
      const q = new URLSearchParams({ reason: chosen.reason });
      if (chosen.case_ref) q.set("case_ref", chosen.case_ref);
      const body = /** @type {any} */ (await this.session.request("GET", `/v1/compliance/supervision/flags/${pathId(flag.flag_id)}?${q}`));
      this.showFlag(body, reader, out);
    } catch (exc) {
      out.classList.add("form-error");
      out.textContent = t("error", { detail: detail(exc) });
    }
  }

  showFlag(body, reader, out) {
    // {flag, message, context}: the flagged message (null when no longer readable) and the
    // messages around it, merged here in seq order
    const flag = body.flag;
    const target = body.message || null;
    const byId = new Map();
    for (const m of [...(body.context || []), ...(target ? [target] : [])]) byId.set(m.message_id, m);
    const names = new Map([[flag.sender.user_id, flag.sender.username]]);
    const originals = revisionsById(body.revisions);
    const messages = [...byId.values()].sort((a, b) => a.seq - b.seq).map((/** @type {any} */ m) =>
      messageItem(m, names, originals, m.message_id === flag.message_id),
    );
    if (flag.subject === "group_title") {
      // a group's title flagged at creation or rename: there is no message, the title is the text
      messages.push(h("li", { class: "message flagged" }, h("span", { class: "meta", text: t("flag_group_title") }), h("span", { class: "text", text: body.title ?? "" })));
    } else if (!target) messages.push(h("li", { class: "message flagged muted", text: t("flag_gone") }));
    if (body.matched) messages.push(h("li", { class: "message muted", text: t("flag_matched", { term: body.matched }) }));
    const note = /** @type {HTMLTextAreaElement} */ (h("textarea", { rows: "2", maxlength: "1000" }));
    const decide = (/** @type {string} */ decision) =>
      this.act(out, async () => {
        /** @type {Record<string, any>} */
        const payload = { decision };
        if (note.value.trim()) payload.note = note.value.trim();
        await this.session.request("POST", `/v1/compliance/supervision/flags/${pathId(flag.flag_id)}/decision`, payload);
      }, t(decision === "escalate" ? "escalated" : "closed"));
    reader.hidden = false;
    reader.replaceChildren(
      h("h3", { text: t("flag_reader_title", { rule: ruleName(flag) }) }),
      h("ol", { class: "messages" }, messages),
      field("flag-note", t("note"), note),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "primary", text: t("escalate"), onclick: () => decide("escalate") }),
        h("button", { type: "button", class: "secondary", text: t("close_flag"), onclick: () => decide("close") }),
      ),
    );
    reader.focus();
  }

  /** The supervision figures: per rule, and the random sample per sender (RM). */
  figures(body) {
    if (!body) return null;
    const rules = (body.rules || []).map((/** @type {any} */ r) => [
      r.name + (r.removed ? ` (${t("removed")})` : r.enabled ? "" : ` (${t("disabled")})`),
      t(`rule_kind_${r.kind}`),
      String(r.flagged),
      String(r.open),
      String(r.escalated),
      String(r.closed),
    ]);
    const sampling = body.sampling || { rate: 0, by_sender: [] };
    const samples = (sampling.by_sender || []).map((/** @type {any} */ x) => [
      x.sender.username,
      x.role,
      String(x.sampled),
      String(x.open),
      String(x.escalated),
      String(x.closed),
    ]);
    return h(
      "section",
      { class: "figures", "aria-labelledby": "figures-title" },
      h("h2", { id: "figures-title", text: t("rule_figures") }),
      table(t("figures_rules"), [t("rule"), t("rule_kind"), t("flagged"), t("flag_open"), t("flag_escalated"), t("flag_closed")], rules, t("no_figures")),
      table(t("figures_samples", { rate: Math.round((sampling.rate || 0) * 1000) / 10 }), [t("sender"), t("role"), t("sampled"), t("flag_open"), t("flag_escalated"), t("flag_closed")], samples, t("no_figures")),
    );
  }

  // --- exports -----------------------------------------------------------------------------

  async renderExports(panel) {
    const out = status();
    // said when a listed export changes state (the list itself is re-read quietly)
    const changes = h("p", { class: "sr-only", role: "status", "aria-live": "polite" });
    const host = h("div", { class: "exports" });
    /** the list as shown: the first page re-read while one awaits approval or runs, later pages as loaded by "more" */
    this.exportList = { host, out, changes, extra: /** @type {any[]} */ ([]), cursor: /** @type {string | null} */ (null), shown: "", states: new Map(), wait: POLL_MS };
    await this.loadExports(this.exportList);
    const custodians = /** @type {HTMLInputElement} */ (h("input", { maxlength: "2000", autocapitalize: "none", spellcheck: "false" }));
    const conversations = /** @type {HTMLInputElement} */ (h("input", { maxlength: "4000", spellcheck: "false" }));
    const from = /** @type {HTMLInputElement} */ (h("input", { type: "datetime-local" }));
    const to = /** @type {HTMLInputElement} */ (h("input", { type: "datetime-local" }));
    const keywords = /** @type {HTMLInputElement} */ (h("input", { maxlength: "2000" }));
    const reason = /** @type {HTMLSelectElement} */ (h("select", { required: true }, h("option", { value: "", text: t("choose_reason") }), REASONS.map((r) => h("option", { value: r, text: t(`reason_${r}`) }))));
    const caseRef = /** @type {HTMLInputElement} */ (h("input", { maxlength: "128" }));
    const formOut = status();
    const form = h(
      "form",
      { class: "form card", novalidate: true, "aria-labelledby": "request-export-title" },
      h("h2", { id: "request-export-title", text: t("request_export") }),
      h("p", { class: "hint", text: t("export_hint") }),
      field("export-custodians", t("custodians"), custodians, t("list_hint")),
      field("export-conversations", t("conversation_ids"), conversations, t("list_hint")),
      h("div", { class: "row" }, field("export-from", t("from"), from, t("zone_hint", { zone: zone() })), field("export-to", t("to"), to, t("zone_hint", { zone: zone() }))),
      field("export-keywords", t("keywords"), keywords, t("list_hint")),
      field("export-reason", t("reason"), reason),
      field("export-case", t("case_ref"), caseRef),
      formOut,
      h("button", { type: "submit", class: "primary", text: t("request_export") }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const who = list(custodians.value);
      const convs = list(conversations.value);
      if ((!who.length && !convs.length) || !reason.value) {
        formOut.classList.add("form-error");
        formOut.textContent = t("export_needs");
        (who.length || convs.length ? reason : custodians).focus();
        return;
      }
      /** @type {Record<string, any>} */
      const body = { reason: reason.value };
      if (who.length) body.custodians = who;
      if (convs.length) body.conversation_ids = convs;
      if (from.value) body.from = rfc3339(from);
      if (to.value) body.to = rfc3339(to);
      const words = keywords.value.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
      if (words.length) body.keywords = words;
      if (caseRef.value.trim()) body.case_ref = caseRef.value.trim();
      this.act(formOut, () => this.session.request("POST", "/v1/compliance/exports", body), t("export_requested"));
    });

    panel.replaceChildren(h("h2", { text: t("tab_exports") }), this.notice(), form, out, changes, host);
  }

  /** Read the first page of exports again and show the list (with any later pages loaded by
   * "more"). Re-read in POLL_MS while one runs, in POLL_PENDING_MS while one only awaits
   * approval, never otherwise; after a failed read twice as late each time (up to
   * POLL_MAX_MS); a 401/403 stops and goes back to sign-in. */
  async loadExports(view) {
    // busy while re-read (assistive technology waits for the update; so can a test)
    view.host.setAttribute("aria-busy", "true");
    let first;
    try {
      first = /** @type {any} */ (await this.session.request("GET", `/v1/compliance/exports?limit=${PAGE}`));
    } finally {
      view.host.removeAttribute("aria-busy");
    }
    if (!view.host.isConnected && view.shown) return; // left meanwhile: the view shown now has its own reads
    const items = /** @type {any[]} */ (first.exports || []);
    const seen = new Set(items.map((x) => x.export_id));
    view.extra = view.extra.filter((/** @type {any} */ x) => !seen.has(x.export_id));
    if (!view.extra.length) view.cursor = first.next_cursor || null;
    this.showExports(view, [...items, ...view.extra]);
    view.wait = POLL_MS;
    const all = [...items, ...view.extra];
    if (all.some((x) => x.state === "running")) this.watchExports(view, POLL_MS);
    else if (all.some((x) => x.state === "pending_approval")) this.watchExports(view, POLL_PENDING_MS);
  }

  /** Re-read in `ms`; a failed read is retried later and later, a refused one stops. */
  watchExports(view, ms) {
    this.poll(
      "exports",
      () => {
        if (!view.host.isConnected) return;
        this.loadExports(view).catch((exc) => {
          if (this.ended(exc) || !view.host.isConnected) return;
          view.wait = Math.min(POLL_MAX_MS, view.wait * 2);
          this.watchExports(view, view.wait);
        });
      },
      ms,
    );
  }

  /** The next page of exports, appended below the ones shown. */
  async moreExports(view) {
    if (!view.cursor) return;
    const page = /** @type {any} */ (await this.session.request("GET", `/v1/compliance/exports?limit=${PAGE}&cursor=${encodeURIComponent(view.cursor)}`));
    const have = new Set(view.extra.map((/** @type {any} */ x) => x.export_id));
    view.extra.push(...(page.exports || []).filter((/** @type {any} */ x) => !have.has(x.export_id)));
    view.cursor = page.next_cursor || null;
    view.shown = ""; // re-render: the list grew
    await this.loadExports(view);
  }

  /** Render the list only when it changed; keep the focus on the control it was on (by id)
   * and say which exports changed state in the polite live region. */
  showExports(view, exports) {
    const shown = JSON.stringify([lang(), view.cursor, exports]);
    if (shown === view.shown) return;
    const firstShowing = !view.shown;
    view.shown = shown;
    const said = [];
    for (const x of exports) {
      const before = view.states.get(x.export_id);
      if (!firstShowing && before && before !== x.state) said.push(t("export_now", { id: x.export_id.slice(0, 8), state: t(`export_${x.state}`) }));
      view.states.set(x.export_id, x.state);
    }
    const out = view.out;
    const rows = exports.map((/** @type {any} */ x) => {
      const actions = h("div", { class: "actions" });
      const id = `export-${x.export_id}`;
      const path = `/v1/compliance/exports/${pathId(x.export_id)}`;
      if (x.state === "pending_approval") {
        if (x.requested_by !== this.me) {
          actions.append(h("button", { type: "button", id: `${id}-approve`, class: "primary", text: t("approve"), "aria-label": t("approve_export", { by: x.requested_by }), onclick: () => this.act(out, () => this.session.request("POST", `${path}/approve`), t("export_approved")) }));
          actions.append(h("button", { type: "button", id: `${id}-reject`, class: "secondary", text: t("reject"), "aria-label": t("reject_export", { by: x.requested_by }), onclick: () => this.act(out, () => this.session.request("POST", `${path}/reject`), t("export_rejected")) }));
        } else {
          actions.append(h("span", { class: "muted", text: t("own_export") }));
          actions.append(h("button", { type: "button", id: `${id}-withdraw`, class: "secondary", text: t("withdraw"), onclick: () => this.act(out, () => this.session.request("POST", `${path}/reject`), t("export_withdrawn")) }));
        }
      } else if (x.state === "ready" && (x.requested_by === this.me || x.approved_by === this.me)) {
        // the hub lets the requester and the approver download (others get 403): offer it to them
        // a plain same-origin link: the cookie session authorises the GET (the browser says
        // Sec-Fetch-Site: same-origin, which the hub requires of this audited read), and the
        // browser streams the zip to disk (no copy of a large export held in page memory)
        actions.append(
          h("a", { class: "download", id: `${id}-download`, href: `${path}/download`, download: `bankhub-export-${x.export_id}.zip`, text: t("download") }),
        );
      } else if (x.state === "failed") {
        actions.append(h("button", { type: "button", id: `${id}-retry`, class: "secondary", text: t("retry"), "aria-label": t("retry_export", { id: x.export_id.slice(0, 8) }), onclick: () => this.act(out, () => this.session.request("POST", `${path}/retry`), t("export_retried")) }));
      }
      const progress = x.progress || { done: 0, total: 0 };
      const bar = h("progress", {
        max: String(Math.max(1, progress.total || 0)),
        value: String(x.state === "ready" ? Math.max(1, progress.total || 0) : progress.done || 0),
        "aria-label": t("export_progress", { id: x.export_id.slice(0, 8) }),
      });
      return [
        h("code", { text: x.export_id.slice(0, 8), title: x.export_id }),
        scopeText(x.scope),
        t(`reason_${x.reason}`) + (x.case_ref ? ` · ${x.case_ref}` : ""),
        x.requested_by,
        x.approved_by || "",
        h("span", { class: `status-${x.state}`, text: t(`export_${x.state}`) }),
        h("div", { class: "progress-line" }, bar, h("span", { text: `${progress.done || 0}/${progress.total || 0}` })),
        x.error ? t("export_error", { detail: x.error }) : x.bytes ? t("bytes", { n: x.bytes }) : "",
        actions,
      ];
    });
    const focused = /** @type {HTMLElement | null} */ (document.activeElement);
    const keep = focused && view.host.contains(focused) ? focused.id : "";
    const more = view.cursor
      ? h("button", {
          type: "button",
          id: "exports-more",
          class: "secondary",
          text: t("more"),
          onclick: () => this.moreExports(view).catch((exc) => {
            if (this.ended(exc)) return;
            view.out.classList.add("form-error");
            view.out.textContent = t("error", { detail: detail(exc) });
          }),
        })
      : null;
    view.host.replaceChildren(
      table(t("exports_caption"), [t("export_id"), t("scope"), t("reason"), t("requested_by"), t("approved_by"), t("state"), t("progress"), t("size"), t("actions")], rows, t("no_exports")),
      more,
    );
    if (keep) {
      const again = /** @type {HTMLElement | null} */ (view.host.querySelector(`[id="${keep}"]`));
      // the control is gone (e.g. approved meanwhile): keep the focus near, on the list
      if (again) again.focus();
      else {
        const caption = /** @type {HTMLElement | null} */ (view.host.querySelector("caption"));
        caption?.setAttribute("tabindex", "-1");
        caption?.focus();
      }
    }
    if (said.length) view.changes.textContent = said.join("; ");
  }

  // --- barriers ----------------------------------------------------------------------------

  async renderBarriers(panel) {
    const [segments, policies] = await Promise.all([
      this.session.all("/v1/compliance/barriers/segments", "segments"),
      this.session.all("/v1/compliance/barriers/policies", "policies"),
    ]);
    const out = status();
    if (this.segment && !segments.some((/** @type {any} */ s) => s.name === this.segment)) this.segment = null;
    const segRows = segments.map((/** @type {any} */ s) => [
      h("code", { text: s.name }),
      s.title || "",
      String(s.members ?? ""),
      h("button", { type: "button", class: "secondary", text: t("members"), "aria-label": t("members_of", { name: s.name }), onclick: () => { this.segment = s.name; this.refocus = "members-title"; this.show(); } }),
    ]);
    const segName = /** @type {HTMLInputElement} */ (h("input", { required: true, maxlength: "32", pattern: "^[a-z][a-z0-9_-]{1,31}$", spellcheck: "false", autocapitalize: "none" }));
    const segTitle = /** @type {HTMLInputElement} */ (h("input", { required: true, maxlength: "100" }));
    const segOut = status();
    const segForm = h("form", { class: "form card", novalidate: true, "aria-labelledby": "add-segment-title" },
      h("h2", { id: "add-segment-title", text: t("add_segment") }),
      field("segment-name", t("segment_name"), segName, t("segment_name_hint")),
      field("segment-title", t("segment_title"), segTitle),
      segOut,
      h("button", { type: "submit", class: "primary", text: t("add") }));
    segForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.act(segOut, () => this.session.request("POST", "/v1/compliance/barriers/segments", { name: segName.value.trim(), title: segTitle.value.trim() }), t("segment_added"));
    });

    let members = null;
    if (this.segment) {
      const seg = this.segment;
      const people = await this.session.all(`/v1/compliance/barriers/segments/${encodeURIComponent(seg)}/members`, "members");
      const who = /** @type {HTMLInputElement} */ (h("input", { maxlength: "64", autocapitalize: "none", spellcheck: "false" }));
      const memOut = status();
      const memForm = h("form", { class: "toolbar", novalidate: true }, field("member-username", t("username"), who), h("button", { type: "submit", class: "primary", text: t("add_member") }));
      memForm.addEventListener("submit", (event) => {
        event.preventDefault();
        if (!who.value.trim()) return;
        this.act(memOut, () => this.session.request("PUT", `/v1/compliance/barriers/segments/${encodeURIComponent(seg)}/members/${encodeURIComponent(who.value.trim())}`), t("member_added"));
      });
      members = h("section", { class: "card", "aria-labelledby": "members-title" },
        h("h2", { id: "members-title", tabindex: "-1", text: t("members_of", { name: seg }) }),
        table(t("members"), [t("username"), t("actions")], people.map((/** @type {any} */ m) => {
          const name = m.username ?? m.user?.username ?? String(m);
          return [name, h("button", { type: "button", class: "secondary", text: t("remove"), "aria-label": t("remove_member", { name }), onclick: () => this.act(memOut, () => this.session.request("DELETE", `/v1/compliance/barriers/segments/${encodeURIComponent(seg)}/members/${encodeURIComponent(name)}`), t("member_removed")) })];
        }), t("no_members")),
        memForm, memOut);
    }

    const names = segments.map((/** @type {any} */ s) => s.name);
    const a = /** @type {HTMLSelectElement} */ (select(names, (n) => n));
    const b = /** @type {HTMLSelectElement} */ (select(names, (n) => n, names[1]));
    const polOut = status();
    const polForm = h("form", { class: "form card", novalidate: true, "aria-labelledby": "add-barrier-title" },
      h("h2", { id: "add-barrier-title", text: t("add_barrier") }),
      h("div", { class: "row" }, field("barrier-a", t("segment_a"), a), field("barrier-b", t("segment_b"), b)),
      polOut,
      h("button", { type: "submit", class: "primary", disabled: names.length < 2, text: t("add") }));
    polForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.act(polOut, () => this.session.request("POST", "/v1/compliance/barriers/policies", { a: a.value, b: b.value }), t("barrier_added"));
    });
    const polRows = policies.map((/** @type {any} */ p) => [
      p.a,
      p.b,
      p.created_by || "",
      h("button", { type: "button", class: "secondary", text: t("remove"), "aria-label": t("remove_barrier", { a: p.a, b: p.b }), onclick: () => this.act(out, () => this.session.request("DELETE", `/v1/compliance/barriers/policies/${pathId(p.policy_id)}`), t("barrier_removed")) }),
    ]);
    panel.replaceChildren(
      h("h2", { text: t("tab_barriers") }),
      this.notice(),
      out,
      table(t("segments"), [t("segment_name"), t("segment_title"), t("members"), t("actions")], segRows, t("no_segments")),
      members,
      segForm,
      table(t("barriers"), [t("segment_a"), t("segment_b"), t("created_by"), t("actions")], polRows, t("no_barriers")),
      polForm,
    );
  }

  // --- DLP search --------------------------------------------------------------------------

  async renderDlp(panel) {
    const kind = /** @type {HTMLSelectElement} */ (select(["card", "resident_id", "bank_account"], (k) => t(`dlp_${k}`)));
    const value = /** @type {HTMLInputElement} */ (h("input", { required: true, maxlength: "64", autocomplete: "off", spellcheck: "false" }));
    const out = status();
    const results = h("div", { class: "results" });
    const form = h(
      "form",
      { class: "form card", novalidate: true, "aria-labelledby": "dlp-title" },
      h("h2", { id: "dlp-title", text: t("dlp_search") }),
      h("p", { class: "hint", text: t("dlp_hint") }),
      field("dlp-kind", t("dlp_kind"), kind),
      field("dlp-value", t("dlp_value"), value),
      out,
      h("button", { type: "submit", class: "primary", text: t("search") }),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      out.classList.remove("form-error");
      out.textContent = "";
      if (!value.value.trim()) {
        out.classList.add("form-error");
        out.textContent = t("required");
        value.focus();
        return;
      }
      const chosen = await askReason(t("reason_for_dlp"));
      if (!chosen) return;
      try {
        /** @type {Record<string, any>} */
        const body = { kind: kind.value, value: value.value.trim(), reason: chosen.reason };
        if (chosen.case_ref) body.case_ref = chosen.case_ref;
        // every page (each one is an audited search), up to DLP_MAX_PAGES
        /** @type {any[]} */
        const matches = [];
        let cursor = null;
        let pages = 0;
        do {
          const found = /** @type {any} */ (
            await this.session.request("POST", `/v1/compliance/dlp/search?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, body)
          );
          matches.push(...(found.matches || []));
          cursor = found.next_cursor;
          pages += 1;
        } while (cursor && pages < DLP_MAX_PAGES);
        value.value = ""; // the searched number does not stay on screen
        this.showMatches(matches, results, Boolean(cursor));
      } catch (exc) {
        out.classList.add("form-error");
        out.textContent = t("error", { detail: detail(exc) });
      }
    });
    const figures = /** @type {any} */ (await this.session.request("GET", "/v1/compliance/dlp/figures"));
    const figureRows = (figures.kinds || []).map((/** @type {any} */ k) => [
      t(`dlp_${k.kind}`),
      String(k.masked),
      String(Object.values(k.refused || {}).reduce((/** @type {number} */ a, /** @type {any} */ b) => a + Number(b), 0)),
    ]);
    panel.replaceChildren(
      h("h2", { text: t("tab_dlp") }),
      form,
      results,
      table(t("dlp_figures"), [t("dlp_kind"), t("dlp_masked"), t("dlp_refused")], figureRows, t("no_figures")),
    );
  }

  showMatches(matches, results, truncated = false) {
    const reader = h("section", { class: "reader card", hidden: true, tabindex: "-1", "aria-label": t("conversation_reader") });
    const byConversation = new Map();
    for (const m of matches) {
      if (!byConversation.has(m.conversation_id)) byConversation.set(m.conversation_id, []);
      byConversation.get(m.conversation_id).push(m);
    }
    const rows = [...byConversation.entries()].map(([conv, ms]) => {
      // matches come newest first: the earliest is what "first seen" and the reader start from
      const earliest = ms.reduce((/** @type {any} */ a, /** @type {any} */ b) => (b.seq < a.seq ? b : a));
      return [
        h("code", { text: conv }),
        String(ms.length),
        ms.map((/** @type {any} */ m) => `#${m.seq}`).join(", "),
        when(earliest.created_at),
        h("button", {
          type: "button",
          class: "secondary",
          text: t("read_conversation"),
          "aria-label": t("read_around", { seq: earliest.seq, id: conv.slice(0, 8) }),
          onclick: () => this.readConversation(conv, earliest.seq, new Set(ms.map((/** @type {any} */ m) => m.seq)), reader),
        }),
      ];
    });
    results.replaceChildren(
      h("p", { role: "status", text: t(truncated ? "dlp_found_more" : "dlp_found", { n: matches.length, c: byConversation.size }) }),
      table(t("dlp_matches"), [t("conversation_id"), t("matches"), t("seq"), t("first_seen"), t("actions")], rows, t("no_matches")),
      reader,
    );
  }

  /** Read a conversation around a match through the reason-coded, audited compliance path:
   * the reason is asked once, then the page ending READ_AFTER messages after the match, and
   * earlier or later pages on request — each page is its own audited read under that reason. */
  async readConversation(conversationId, seq, matched, reader) {
    const chosen = await askReason(t("reason_for_conversation", { id: conversationId.slice(0, 8), seq }));
    if (!chosen) return;
    /** @type {Map<number, any>} */
    const shown = new Map();
    /** @type {Map<string, any[]>} */
    const originals = new Map();
    const state = { earlier: false, later: true };
    const list = h("ol", { class: "messages" });
    const said = h("p", { class: "sr-only", role: "status", "aria-live": "polite" });
    const nav = h("div", { class: "reader-nav" });
    const error = h("p", { class: "form-error", role: "alert" });
    /** one audited page: the messages before `before` (newest first, as the hub answers) */
    const page = async (/** @type {number} */ before) => {
      const q = new URLSearchParams({ reason: chosen.reason, limit: String(READ_PAGE), before_seq: String(before) });
      if (chosen.case_ref) q.set("case_ref", chosen.case_ref);
      const got = /** @type {any} */ (await this.session.request("GET", `/v1/compliance/conversations/${pathId(conversationId)}/messages?${q}`));
      for (const [id, revs] of revisionsById(got.revisions)) originals.set(id, revs);
      return got;
    };
    const draw = () => {
      const names = new Map();
      list.replaceChildren(...[...shown.values()].sort((a, b) => a.seq - b.seq).map((m) => messageItem(m, names, originals, matched.has(m.seq))));
      nav.replaceChildren(
        state.earlier ? h("button", { type: "button", id: "reader-earlier", class: "secondary", text: t("earlier"), onclick: () => step(true) }) : null,
        state.later ? h("button", { type: "button", id: "reader-later", class: "secondary", text: t("later"), onclick: () => step(false) }) : null,
      );
    };
    const step = async (/** @type {boolean} */ back) => {
      error.textContent = "";
      const seqs = [...shown.keys()];
      try {
        if (back) {
          const got = await page(Math.min(...seqs));
          for (const m of got.messages || []) shown.set(m.seq, m);
          state.earlier = Boolean(got.has_more);
          said.textContent = t("read_more", { n: (got.messages || []).length });
        } else {
          const top = Math.max(...seqs);
          const got = await page(top + READ_PAGE + 1);
          const fresh = (got.messages || []).filter((/** @type {any} */ m) => m.seq > top);
          for (const m of fresh) shown.set(m.seq, m);
          state.later = fresh.length >= READ_PAGE;
          said.textContent = t("read_more", { n: fresh.length });
        }
        draw();
        /** @type {HTMLElement | null} */ (nav.querySelector(back ? "#reader-earlier" : "#reader-later") || nav.querySelector("button") || reader)?.focus();
      } catch (exc) {
        error.textContent = t("error", { detail: detail(exc) });
      }
    };
    reader.hidden = false;
    try {
      const first = await page(seq + READ_AFTER + 1);
      for (const m of first.messages || []) shown.set(m.seq, m);
      state.earlier = Boolean(first.has_more);
      // fewer than READ_AFTER after the match: that is the conversation's end so far
      state.later = (first.messages || []).some((/** @type {any} */ m) => m.seq === seq + READ_AFTER);
      draw();
      reader.replaceChildren(
        h("h3", { text: t("conversation_title", { id: conversationId }) }),
        h("p", { class: "hint", text: t(shown.has(seq) ? "reader_hint" : "reader_gone", { seq }) }),
        list,
        error,
        said,
        nav,
      );
    } catch (exc) {
      reader.replaceChildren(h("p", { class: "form-error", role: "alert", text: t("error", { detail: detail(exc) }) }));
    }
    reader.focus();
    /** @type {HTMLElement | null} */ (reader.querySelector('[aria-current="true"]'))?.scrollIntoView({ block: "center" });
  }

  // --- audit -------------------------------------------------------------------------------

  async renderAudit(panel) {
    const head = /** @type {any} */ (await this.session.request("GET", "/v1/compliance/audit/head"));
    const result = h("div", { class: "verify-result", role: "status", "aria-live": "polite" });
    const headBox = h("div", { class: "head card" });
    // the head as read, before any verification: a fact, not yet something to anchor
    const showLatest = (/** @type {any} */ hd) => {
      headBox.replaceChildren(
        h("h3", { text: t("latest_title") }),
        h("dl", { class: "facts" }, h("dt", { text: t("head_seq") }), h("dd", { id: "audit-head-seq", text: String(hd.seq) }), h("dt", { text: t("head_hash") }), h("dd", { id: "audit-head-hash" }, h("code", { text: hd.hash }))),
        h("p", { class: "hint", text: t("latest_hint") }),
      );
    };
    // offered only after a verification that came out ok
    const showAnchor = (/** @type {any} */ hd) => {
      const anchor = `${hd.seq}:${hd.hash}`;
      const copied = h("span", { class: "muted", role: "status", "aria-live": "polite" });
      const code = h("code", { id: "audit-anchor", class: "anchor", text: anchor });
      headBox.replaceChildren(
        h("h3", { text: t("head_title") }),
        h("dl", { class: "facts" }, h("dt", { text: t("head_seq") }), h("dd", { id: "audit-head-seq", text: String(hd.seq) }), h("dt", { text: t("head_hash") }), h("dd", { id: "audit-head-hash" }, h("code", { text: hd.hash }))),
        h("p", {}, h("span", { text: t("anchor_label") }), " ", code),
        h("div", { class: "actions" }, h("button", {
          type: "button",
          class: "secondary",
          text: t("copy_head"),
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(anchor);
              copied.textContent = t("copied");
            } catch {
              // no clipboard permission: select the text so the officer can copy it by hand
              const range = document.createRange();
              range.selectNodeContents(code);
              const sel = window.getSelection();
              sel?.removeAllRanges();
              sel?.addRange(range);
              copied.textContent = t("copy_by_hand");
            }
          },
        }), copied),
        h("p", { class: "hint", text: t("anchor_hint") }),
        h("p", { class: "hint" }, h("code", { text: `bankhub audit verify --expect-head ${anchor}` })),
      );
    };
    const showBroken = () => {
      headBox.replaceChildren(h("h3", { text: t("head_title") }), h("p", { class: "verify-bad", text: t("no_anchor_broken") }));
    };
    showLatest(head);
    const anchored = /** @type {HTMLInputElement} */ (h("input", { maxlength: "90", autocomplete: "off", spellcheck: "false", placeholder: "1234:abcd…" }));
    const anchoredError = h("p", { id: "audit-expect-error", class: "form-error", role: "alert" });
    anchored.setAttribute("aria-describedby", "audit-expect-hint audit-expect-error");
    // aria-disabled (not disabled) while a check runs: the button keeps the focus and is still announced
    const button = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", id: "audit-verify", class: "primary", text: t("verify_chain") }));
    let running = false;
    const form = h(
      "form",
      { class: "form card", novalidate: true, "aria-labelledby": "audit-verify-title" },
      h("h3", { id: "audit-verify-title", text: t("verify_title") }),
      h("div", { class: "field" },
        h("label", { for: "audit-expect", text: t("expect_head") }),
        Object.assign(anchored, { id: "audit-expect" }),
        h("p", { class: "hint", id: "audit-expect-hint", text: t("expect_head_hint") })),
      anchoredError,
      h("div", { class: "actions" }, button),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (running) return;
      anchoredError.textContent = "";
      const expect = anchored.value.trim().toLowerCase();
      if (expect && !/^[0-9]{1,19}:[0-9a-f]{64}$/.test(expect)) {
        anchoredError.textContent = t("expect_head_invalid");
        anchored.focus();
        return;
      }
      running = true;
      button.setAttribute("aria-disabled", "true");
      result.replaceChildren(h("p", { text: t("verifying") }));
      try {
        const r = /** @type {any} */ (await this.session.request("POST", "/v1/compliance/audit/verify", expect ? { expect_head: expect } : undefined));
        if (r.ok) {
          result.replaceChildren(
            h("p", { class: "verify-ok", text: t(expect ? "verify_ok_anchored" : "verify_ok", { rows: r.rows, anchor: expect.split(":")[0] }) }),
            expect ? null : h("p", { class: "hint verify-note", text: t("verify_no_anchor") }),
          );
          showAnchor(r.head);
        } else {
          result.replaceChildren(
            h("p", { class: "verify-bad", text: t("verify_bad", { seq: r.first_bad_seq, problem: t(`problem_${r.problem}`), rows: r.rows }) }),
          );
          showBroken();
        }
      } catch (exc) {
        const e = /** @type {any} */ (exc);
        const wait = e?.retryAfterMs ? Math.ceil(e.retryAfterMs / 1000) : null;
        const busy = e?.code === "verify_running" || e?.code === "rate_limited";
        result.replaceChildren(h("p", { class: "form-error", text: busy ? t(`verify_${e.code}`, { s: wait ?? (e.code === "rate_limited" ? 20 : 5) }) : t("error", { detail: detail(exc) }) }));
      } finally {
        running = false;
        button.removeAttribute("aria-disabled");
      }
    });
    panel.replaceChildren(
      h("h2", { text: t("tab_audit") }),
      h("p", { class: "hint", text: t("audit_hint") }),
      form,
      result,
      headBox,
    );
  }
}

/** The text of a message body as a reader sees it, by its kind (never raw JSON). */
function bodyText(body) {
  if (typeof body === "string") return body;
  if (!body || typeof body !== "object") return "";
  switch (body.kind) {
    case "text":
    case "system":
      return body.text ?? "";
    case "recalled":
      return t("body_recalled");
    case "shredded":
      return t("body_shredded");
    case "undecryptable":
      return t("body_undecryptable");
    case "card":
      return [t("body_card", { title: body.title ?? "" }), ...(body.fields || []).map((/** @type {any} */ f) => `${f.label}: ${f.value}`)].join("\n");
    case "image":
      return t("body_image") + (body.caption ? ` ${body.caption}` : "");
    case "voice":
      return t("body_voice", { s: Math.round((body.duration_ms || 0) / 1000) });
    case "edit":
      return t("body_edit", { id: String(body.message_id ?? "").slice(0, 8), text: bodyText(body.body) });
    case "recall":
      return t("body_recall", { id: String(body.message_id ?? "").slice(0, 8) });
    default:
      return body.text ?? body.caption ?? body.title ?? t("body_other", { kind: String(body.kind ?? "") });
  }
}

/** The text of a message as the hub returns it. */
function messageText(m) {
  return bodyText(m.body ?? m.text ?? "");
}

/** A compliance read's `revisions` (what recalls and edits replaced) by message id, oldest first. */
function revisionsById(revisions) {
  /** @type {Map<string, any[]>} */
  const by = new Map();
  for (const r of revisions || []) {
    if (!by.has(r.message_id)) by.set(r.message_id, []);
    by.get(r.message_id)?.push(r);
  }
  for (const list of by.values()) list.sort((a, b) => a.revision - b.revision);
  return by;
}

/** One message of a reader: meta line, its text, and what each edit or recall replaced. */
function messageItem(m, names, originals, current) {
  const who = names.get(m.sender_id) ?? String(m.sender_id ?? "").slice(0, 8);
  const edited = m.edited_ts ? ` · ${t("edited_at", { when: when(new Date(m.edited_ts).toISOString()) })}` : "";
  return h(
    "li",
    { class: current ? "message flagged" : "message", "aria-current": current ? "true" : null },
    h("span", { class: "meta", text: `#${m.seq} · ${who} · ${when(msgTime(m))}${edited}` }),
    h("span", { class: "body", text: messageText(m) }),
    (originals.get(m.message_id) || []).map((/** @type {any} */ r) =>
      h("span", { class: "revision", text: t(r.kind === "recall" ? "original_recalled" : "original_edited", { n: r.revision, when: when(new Date(r.ts).toISOString()), text: bodyText(r.body) }) }),
    ),
  );
}

/** A message's time as RFC 3339 (messages carry `ts`, milliseconds). */
function msgTime(m) {
  return m.ts ? new Date(m.ts).toISOString() : m.created_at ?? null;
}

/** A flag's rule as shown: a sampled message (no rule) says so. */
function ruleName(flag) {
  return flag.rule_id ? flag.rule_name : t("sampled_flag");
}

/** A short human line for an export's scope. */
function scopeText(scope) {
  if (!scope || typeof scope !== "object") return "";
  const parts = [];
  // custodians come as {user_id, username}
  if (scope.custodians?.length) parts.push(t("scope_custodians", { list: scope.custodians.map((/** @type {any} */ c) => c?.username ?? c).join(", ") }));
  if (scope.conversation_ids?.length) parts.push(t("scope_conversations", { n: scope.conversation_ids.length }));
  if (scope.from || scope.to) parts.push([when(scope.from), when(scope.to)].filter(Boolean).join(" – "));
  if (scope.keywords?.length) parts.push(t("scope_keywords", { list: scope.keywords.join(", ") }));
  return parts.join("; ");
}
