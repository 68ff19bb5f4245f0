// The console's four sections: official accounts, compose (with targeting and a live audience
// count), the maker-checker approval queue, and the notices of an account (figures, recall).
// Every call goes through the SDK session (cookie + CSRF); the hub's policy decides each one.

import { h } from "../app/dom.js";
import { TabbedConsole } from "./shell.js";
import { lang, t } from "./i18n.js";

const SECTIONS = ["accounts", "compose", "approvals", "notices"];
const AUDIENCE_DELAY_MS = 250;
const FIGURES_REFRESH_MS = 3000;
const ZONES = [
  { key: "zone_cn", offset: "+08:00" },
  { key: "zone_utc", offset: "+00:00" },
];

/** @param {unknown} exc */
function detail(exc) {
  const e = /** @type {any} */ (exc);
  return e?.detail || e?.code || String(exc);
}

/** @param {string} value comma-separated list → trimmed non-empty values, or null */
function list(value) {
  const items = value.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

/** @param {string | null} iso */
function when(iso) {
  return iso ? new Date(iso).toLocaleString(lang(), { dateStyle: "short", timeStyle: "short" }) : "";
}

/** A field: label + control, the label tied to the control's id. */
function field(id, label, control, hint = null) {
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control, hint ? h("p", { class: "hint", id: `${id}-hint`, text: hint }) : null);
}

export class Console extends TabbedConsole {
  /**
   * @param {HTMLElement} root
   * @param {any} session HubSession (cookie mode)
   * @param {() => Promise<void>} signOut
   * @param {() => HTMLElement} langButton
   */
  constructor(root, session, signOut, langButton) {
    super(root, session, signOut, langButton, SECTIONS, t);
    /** @type {any[] | null} accounts this administrator manages */
    this.managed = null;
    /** @type {any[] | null} */
    this.orgs = null;
    /** @type {string | undefined} the account whose notices are shown */
    this.noticesAccount = undefined;
    this.render();
  }

  render() {
    const user = this.session.user;
    this.layout(t("signed_in_as", { name: user.display_name, role: t(`role_${user.role}`) }));
  }

  show() {
    this.panel.setAttribute("aria-labelledby", `tab-${this.section}`);
    // each showing renders into its own container: a slow answer for a section left meanwhile
    // lands in a detached element instead of over the section now shown
    const panel = h("div", { class: "view" }, h("p", { class: "muted", text: t("loading") }));
    this.panel.replaceChildren(panel);
    const render = {
      accounts: () => this.renderAccounts(panel),
      compose: () => this.renderCompose(panel),
      approvals: () => this.renderApprovals(panel),
      notices: () => this.renderNotices(panel),
    }[this.section];
    render().catch((exc) => {
      panel.replaceChildren(h("p", { class: "form-error", role: "alert", text: t("load_failed", { detail: detail(exc) }) }));
    });
  }

  // --- data --------------------------------------------------------------------------------

  /** The accounts this administrator manages: those owned by an org of the subtree they
   * administer (what GET /v1/orgs lists). The hub still decides every call on them. */
  async managedAccounts(refresh = false) {
    if (this.managed && !refresh) return this.managed;
    const [visible, orgs] = await Promise.all([this.session.all("/v1/accounts", "accounts"), this.targetOrgs()]);
    const mine = new Set(orgs.map((o) => o.id));
    this.managed = visible.filter((a) => mine.has(a.owner_org_id));
    return this.managed;
  }

  async targetOrgs() {
    if (!this.orgs) this.orgs = await this.session.all("/v1/orgs", "orgs");
    return this.orgs;
  }

  /** @param {any[]} orgs @returns {{org: any, depth: number}[]} in tree order */
  static tree(orgs) {
    const codes = new Set(orgs.map((o) => o.code));
    const out = [];
    const walk = (/** @type {string | null} */ parent, /** @type {number} */ depth) => {
      for (const o of orgs.filter((x) => (parent === null ? !codes.has(x.parent_code) : x.parent_code === parent))) {
        out.push({ org: o, depth });
        walk(o.code, depth + 1);
      }
    };
    walk(null, 0);
    return out;
  }

  // --- accounts ----------------------------------------------------------------------------

  /** @param {HTMLElement} panel */
  async renderAccounts(panel) {
    const accounts = await this.managedAccounts(true);
    const orgs = await this.targetOrgs();
    const codes = new Map(orgs.map((o) => [o.id, o.code]));
    const rows = accounts.map((a) =>
      h(
        "tr",
        {},
        h("td", { text: a.handle }),
        h("th", { scope: "row", text: a.name }),
        h("td", { text: t(`audience_${a.audience}`) }),
        h("td", { text: codes.get(a.owner_org_id) ?? "" }),
        h("td", { text: a.is_default ? t("yes") : t("no") }),
        h("td", { text: a.requires_approval ? t("yes") : t("no") }),
      ),
    );
    const table = h(
      "table",
      { class: "grid" },
      h("caption", { text: t("accounts") }),
      h("thead", {}, h("tr", {}, ...["handle", "name", "audience", "owner_org", "is_default", "requires_approval"].map((k) => h("th", { scope: "col", text: t(k) })))),
      h("tbody", {}, rows),
    );
    const result = h("p", { class: "result", role: "status" });
    const handle = h("input", { name: "handle", required: true, autocapitalize: "none", spellcheck: "false", maxlength: "64" });
    const name = h("input", { name: "name", required: true, maxlength: "64" });
    const description = h("textarea", { name: "description", rows: "2", maxlength: "1000" });
    const audience = h("select", { name: "audience" }, h("option", { value: "customer", text: t("audience_customer") }), h("option", { value: "staff", text: t("audience_staff") }));
    const owner = h("select", { name: "owner_org" }, Console.tree(orgs).map(({ org, depth }) => h("option", { value: org.code, text: `${"　".repeat(depth)}${org.code} · ${org.name}` })));
    const isDefault = h("input", { type: "checkbox", name: "is_default" });
    const approval = h("input", { type: "checkbox", name: "requires_approval" });
    const form = h(
      "form",
      { class: "card form", "aria-labelledby": "create-account-title", novalidate: true },
      h("h2", { id: "create-account-title", text: t("create_account") }),
      field("acc-handle", t("handle"), handle),
      field("acc-name", t("name"), name),
      field("acc-description", t("description"), description),
      field("acc-audience", t("audience"), audience),
      field("acc-owner", t("owner_org"), owner),
      h("div", { class: "check" }, isDefault, h("label", { for: "acc-default", text: t("is_default") })),
      h("div", { class: "check" }, approval, h("label", { for: "acc-approval", text: t("requires_approval") })),
      h("button", { type: "submit", class: "primary", text: t("create") }),
      result,
    );
    isDefault.id = "acc-default";
    approval.id = "acc-approval";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!handle.value.trim() || !name.value.trim()) {
        result.textContent = t("required");
        (handle.value.trim() ? name : handle).focus();
        return;
      }
      try {
        const created = /** @type {any} */ (
          await this.session.request("POST", "/v1/accounts", {
            handle: handle.value.trim(),
            name: name.value.trim(),
            description: description.value,
            audience: audience.value,
            owner_org: owner.value,
            is_default: isDefault.checked,
            requires_approval: approval.checked,
          })
        );
        await this.renderAccounts(panel);
        const status = panel.querySelector(".result");
        if (status) status.textContent = t("created_account", { name: created.name });
      } catch (exc) {
        result.textContent = t("error", { detail: detail(exc) });
      }
    });
    panel.replaceChildren(h("h2", { class: "visually-hidden", text: t("tab_accounts") }), table, form);
  }

  // --- compose -----------------------------------------------------------------------------

  /** @param {HTMLElement} panel */
  async renderCompose(panel) {
    const [accounts, orgs] = await Promise.all([this.managedAccounts(), this.targetOrgs()]);
    const account = h("select", { name: "account" }, accounts.map((a) => h("option", { value: a.id, text: `${a.name} (${a.handle})` })));
    const kindText = h("input", { type: "radio", name: "kind", value: "text", id: "kind-text", checked: true });
    const kindArticle = h("input", { type: "radio", name: "kind", value: "article", id: "kind-article" });
    const text = h("textarea", { name: "text", rows: "4", maxlength: "4000" });
    const title = h("input", { name: "title", maxlength: "120" });
    const summary = h("textarea", { name: "summary", rows: "2", maxlength: "500" });
    const body = h("textarea", { name: "body", rows: "5" });
    const actionUrl = h("input", { name: "action_url", type: "url", placeholder: "https://", maxlength: "2048" });
    const actionLabel = h("input", { name: "action_label", maxlength: "40" });
    const textPart = h("div", { class: "kind-part" }, field("c-text", t("text"), text));
    const articlePart = h(
      "div",
      { class: "kind-part", hidden: true },
      field("c-title", t("article_title"), title),
      field("c-summary", t("summary"), summary),
      field("c-body", t("body"), body),
      field("c-action-url", t("action_url"), actionUrl),
      field("c-action-label", t("action_label"), actionLabel),
    );
    const orgBoxes = Console.tree(orgs).map(({ org, depth }) => {
      const box = h("input", { type: "checkbox", name: "org", value: org.code, id: `org-${org.code}` });
      return { box, row: h("div", { class: `check depth-${Math.min(depth, 4)}` }, box, h("label", { for: box.id, text: `${org.code} · ${org.name}` })) };
    });
    const tags = h("input", { name: "tags", autocapitalize: "none", spellcheck: "false" });
    const segments = h("input", { name: "segments", autocapitalize: "none", spellcheck: "false" });
    const staffOnly = h("input", { type: "checkbox", name: "staff_only", id: "c-staff-only" });
    const count = h("output", { class: "audience", role: "status", "aria-live": "polite", id: "audience-count" });
    const scheduled = h("input", { type: "checkbox", name: "scheduled", id: "c-scheduled" });
    const at = h("input", { type: "datetime-local", name: "scheduled_at", disabled: true });
    const zone = h("select", { name: "zone", disabled: true }, ZONES.map((z) => h("option", { value: z.offset, text: t(z.key) })));
    const result = h("p", { class: "result", role: "status", id: "compose-result" });
    const submit = h("button", { type: "submit", class: "primary", text: t("send") });

    const target = () => {
      /** @type {Record<string, any>} */
      const out = {};
      const codes = orgBoxes.filter((o) => o.box.checked).map((o) => o.box.value);
      if (codes.length) out.org_codes = codes;
      const tagList = list(tags.value);
      if (tagList) out.tags = tagList;
      const segmentList = list(segments.value);
      if (segmentList) out.segments = segmentList;
      if (staffOnly.checked) out.staff_only = true;
      return out;
    };

    let asked = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const recount = () => {
      clearTimeout(timer);
      count.textContent = t("audience_counting");
      timer = setTimeout(async () => {
        const mine = ++asked;
        try {
          const r = /** @type {any} */ (await this.session.request("POST", `/v1/accounts/${account.value}/audience`, { target: target() }));
          if (mine === asked) count.textContent = t("audience_count", { n: r.count });
        } catch (exc) {
          if (mine === asked) count.textContent = t("audience_error", { detail: detail(exc) });
        }
      }, AUDIENCE_DELAY_MS);
    };

    const form = h(
      "form",
      { class: "card form compose", "aria-labelledby": "compose-title", novalidate: true },
      h("h2", { id: "compose-title", text: t("tab_compose") }),
      field("c-account", t("account"), account),
      h(
        "fieldset",
        { class: "kinds" },
        h("legend", { text: t("kind") }),
        h("div", { class: "check" }, kindText, h("label", { for: "kind-text", text: t("kind_text") })),
        h("div", { class: "check" }, kindArticle, h("label", { for: "kind-article", text: t("kind_article") })),
      ),
      textPart,
      articlePart,
      h(
        "fieldset",
        { class: "targeting" },
        h("legend", { text: t("targeting") }),
        h("fieldset", { class: "orgs" }, h("legend", { text: t("orgs") }), h("p", { class: "hint", text: t("orgs_hint") }), orgBoxes.map((o) => o.row)),
        field("c-tags", t("tags"), tags),
        field("c-segments", t("segments"), segments),
        h("div", { class: "check" }, staffOnly, h("label", { for: "c-staff-only", text: t("staff_only") })),
        count,
      ),
      h(
        "fieldset",
        { class: "schedule" },
        h("legend", { text: t("schedule") }),
        h("div", { class: "check" }, scheduled, h("label", { for: "c-scheduled", text: t("schedule_later") })),
        field("c-at", t("schedule_at"), at),
        field("c-zone", t("zone"), zone),
      ),
      submit,
      result,
    );
    for (const radio of [kindText, kindArticle]) {
      radio.addEventListener("change", () => {
        textPart.hidden = !kindText.checked;
        articlePart.hidden = kindText.checked;
      });
    }
    scheduled.addEventListener("change", () => {
      at.disabled = zone.disabled = !scheduled.checked;
    });
    for (const input of [account, tags, segments, staffOnly, ...orgBoxes.map((o) => o.box)]) {
      input.addEventListener(input.tagName === "INPUT" && input.getAttribute("type") !== "checkbox" ? "input" : "change", recount);
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      result.textContent = "";
      /** @type {Record<string, any>} */
      let noticeBody;
      if (kindText.checked) {
        if (!text.value.trim()) {
          result.textContent = t("required");
          text.focus();
          return;
        }
        noticeBody = { kind: "text", text: text.value };
      } else {
        if (!title.value.trim()) {
          result.textContent = t("required");
          title.focus();
          return;
        }
        noticeBody = { kind: "article", title: title.value.trim(), summary: summary.value, body: body.value };
        if (actionUrl.value.trim()) noticeBody.action_url = actionUrl.value.trim();
        if (actionLabel.value.trim()) noticeBody.action_label = actionLabel.value.trim();
      }
      /** @type {Record<string, any>} */
      const payload = { body: noticeBody, target: target() };
      if (scheduled.checked) {
        if (!at.value) {
          result.textContent = t("required");
          at.focus();
          return;
        }
        // datetime-local gives minutes ("2026-12-07T09:00"): add seconds and the chosen zone
        payload.scheduled_at = `${at.value.length === 16 ? `${at.value}:00` : at.value}${zone.value}`;
      }
      submit.disabled = true;
      try {
        const rec = /** @type {any} */ (await this.session.request("POST", `/v1/accounts/${account.value}/notices`, payload));
        result.textContent = rec.status === "scheduled" ? t("sent_scheduled", { at: when(rec.scheduled_at) }) : t(`sent_${rec.status}`);
        text.value = title.value = summary.value = body.value = actionUrl.value = actionLabel.value = "";
      } catch (exc) {
        result.textContent = t("error", { detail: detail(exc) });
      } finally {
        submit.disabled = false;
      }
    });
    panel.replaceChildren(form);
    recount();
  }

  // --- notices: shared rendering -------------------------------------------------------------

  /** @param {any} target */
  targetText(target) {
    const parts = [];
    const codes = new Map((this.orgs ?? []).map((o) => [o.id, o.code]));
    if (target.org_ids) parts.push(`${t("orgs")}: ${target.org_ids.map((id) => codes.get(id) ?? "?").join(", ")}`);
    if (target.tags) parts.push(`${t("tags")}: ${target.tags.join(", ")}`);
    if (target.segments) parts.push(`${t("segments")}: ${target.segments.join(", ")}`);
    if (target.staff_only) parts.push(t("staff_only"));
    return parts.length ? parts.join(" · ") : t("everyone");
  }

  /** @param {any} n NoticeOut */
  static noticeTitle(n) {
    return n.body.kind === "article" ? n.body.title : n.body.text;
  }

  /** A notice card with its status, target and the given actions. @param {any} n @param {any} account @param {Node[]} actions */
  noticeCard(n, account, actions) {
    const headingId = `notice-${n.id}`;
    return h(
      "li",
      { class: "card notice", "aria-labelledby": headingId, "data-status": n.status },
      h("h3", { id: headingId, class: "notice-title", text: Console.noticeTitle(n) }),
      n.body.kind === "article" && n.body.summary ? h("p", { class: "summary", text: n.body.summary }) : null,
      h(
        "dl",
        { class: "facts" },
        h("dt", { text: t("account") }),
        h("dd", { text: account.name }),
        h("dt", { text: t("status") }),
        h("dd", { class: `status status-${n.status}`, text: t(`status_${n.status}`) }),
        h("dt", { text: t("created") }),
        h("dd", { text: when(n.created_at) }),
        h("dt", { text: t("target") }),
        h("dd", { text: this.targetText(n.target) }),
        n.scheduled_at ? [h("dt", { text: t("schedule_at") }), h("dd", { text: when(n.scheduled_at) })] : null,
        n.recall_reason ? [h("dt", { text: t("recall_reason") }), h("dd", { text: n.recall_reason })] : null,
      ),
      h("div", { class: "actions" }, actions),
    );
  }

  // --- approvals -----------------------------------------------------------------------------

  /** @param {HTMLElement} panel */
  async renderApprovals(panel) {
    const [accounts] = await Promise.all([this.managedAccounts(), this.targetOrgs()]);
    const pending = await Promise.all(
      accounts.map((a) => this.session.all(`/v1/accounts/${a.id}/outbox?status=pending_approval`, "notices").then((ns) => ns.map((n) => ({ n, a })))),
    );
    const items = pending.flat();
    const me = this.session.user.id;
    const status = h("p", { class: "result", role: "status" });
    const decide = async (/** @type {any} */ n, /** @type {"approve" | "reject"} */ how) => {
      try {
        await this.session.request("POST", `/v1/notices/${n.id}/${how}`);
        await this.renderApprovals(panel);
        const fresh = panel.querySelector(".result");
        if (fresh) fresh.textContent = t(how === "approve" ? "approved" : "rejected");
      } catch (exc) {
        status.textContent = t("error", { detail: detail(exc) });
      }
    };
    const cards = items.map(({ n, a }) =>
      this.noticeCard(
        n,
        a,
        n.author_id === me
          ? [h("p", { class: "muted", text: t("own_notice") })]
          : [
              h("button", { type: "button", class: "primary", text: t("approve"), onclick: () => decide(n, "approve") }),
              h("button", { type: "button", class: "secondary", text: t("reject"), onclick: () => decide(n, "reject") }),
            ],
      ),
    );
    panel.replaceChildren(
      h("h2", { text: t("tab_approvals") }),
      status,
      cards.length ? h("ul", { class: "notices" }, cards) : h("p", { class: "muted", text: t("no_pending") }),
    );
  }

  // --- notices of an account -----------------------------------------------------------------

  /** @param {HTMLElement} panel */
  async renderNotices(panel, accountId = this.noticesAccount) {
    const [accounts] = await Promise.all([this.managedAccounts(), this.targetOrgs()]);
    if (!accounts.length) {
      panel.replaceChildren(h("p", { class: "muted", text: t("no_notices") }));
      return;
    }
    const account = accounts.find((a) => a.id === accountId) ?? accounts[0];
    this.noticesAccount = account.id;
    const picker = h("select", {}, accounts.map((a) => h("option", { value: a.id, text: `${a.name} (${a.handle})`, selected: a.id === account.id })));
    picker.addEventListener("change", () => this.renderNotices(panel, picker.value).catch(() => {}));
    const listEl = h("ul", { class: "notices" });
    const more = h("button", { type: "button", class: "secondary", text: t("more"), hidden: true });
    /** @type {string | null} */
    let cursor = null;
    const load = async () => {
      const page = /** @type {any} */ (
        await this.session.request("GET", `/v1/accounts/${account.id}/outbox?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`)
      );
      for (const n of page.notices) listEl.append(this.outboxCard(n, account));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    };
    more.addEventListener("click", () => load().catch(() => {}));
    await load();
    panel.replaceChildren(
      h("h2", { text: t("notices_of", { name: account.name }) }),
      h("div", { class: "toolbar" }, field("n-account", t("account"), picker), h("button", { type: "button", class: "secondary", text: t("refresh"), onclick: () => this.renderNotices(panel, account.id).catch(() => {}) })),
      listEl.childElementCount ? listEl : h("p", { class: "muted", text: t("no_notices") }),
      more,
    );
  }

  /** @param {any} n @param {any} account */
  outboxCard(n, account) {
    const figures = h("div", { class: "figures" });
    const recallBox = h("div", { class: "recall" });
    const actions = [h("button", { type: "button", class: "secondary", text: t("figures"), onclick: () => this.showFigures(n, figures) })];
    if (n.status === "published") {
      actions.push(h("button", { type: "button", class: "secondary danger-text", text: t("recall"), onclick: () => this.recallForm(n, account, recallBox) }));
    }
    const card = this.noticeCard(n, account, actions);
    card.append(figures, recallBox);
    return card;
  }

  /** The notice's figures, refreshed every few seconds while they are on screen (nodes add
   * their online deliveries every couple of seconds). @param {any} n @param {HTMLElement} into */
  async showFigures(n, into) {
    if (into.dataset.live === "1") return; // already shown and refreshing
    into.dataset.live = "1";
    const refresh = async () => {
      if (!into.isConnected) {
        into.dataset.live = "";
        return;
      }
      await this.loadFigures(n, into);
      setTimeout(refresh, FIGURES_REFRESH_MS);
    };
    await refresh();
  }

  /** @param {any} n @param {HTMLElement} into */
  async loadFigures(n, into) {
    try {
      const r = /** @type {any} */ (await this.session.request("GET", `/v1/notices/${n.id}/stats`));
      into.replaceChildren(
        h(
          "dl",
          { class: "stats" },
          h("div", {}, h("dt", { text: t("targeted") }), h("dd", { text: String(r.stats.targeted_followers) })),
          h("div", {}, h("dt", { text: t("delivered_online") }), h("dd", { text: String(r.stats.delivered_online) })),
          h("div", {}, h("dt", { text: t("read") }), h("dd", { text: String(r.stats.read) })),
        ),
      );
    } catch (exc) {
      into.replaceChildren(h("p", { class: "form-error", role: "alert", text: t("error", { detail: detail(exc) }) }));
    }
  }

  /** @param {any} n @param {any} account @param {HTMLElement} into */
  recallForm(n, account, into) {
    const id = `reason-${n.id}`;
    const reason = h("input", { id, name: "reason", required: true, maxlength: "500" });
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { class: "recall-form", novalidate: true },
      h("label", { for: id, text: t("recall_reason") }),
      reason,
      error,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: t("recall_confirm") }), h("button", { type: "button", class: "secondary", text: t("cancel"), onclick: () => into.replaceChildren() })),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!reason.value.trim()) {
        error.textContent = t("required");
        reason.focus();
        return;
      }
      try {
        const rec = /** @type {any} */ (await this.session.request("POST", `/v1/notices/${n.id}/recall`, { reason: reason.value.trim() }));
        const card = /** @type {HTMLElement} */ (into.closest("li"));
        const fresh = this.outboxCard(rec, account);
        card.replaceWith(fresh);
        const heading = fresh.querySelector("h3");
        if (heading) {
          heading.setAttribute("tabindex", "-1");
          heading.focus();
        }
      } catch (exc) {
        error.textContent = t("error", { detail: detail(exc) });
      }
    });
    into.replaceChildren(form);
    reason.focus();
  }
}
