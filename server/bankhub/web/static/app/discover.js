// The Discover tab: official accounts. The directory (search, paged by next_cursor), follow
// and unfollow (the hub may refuse: its answer is shown), the accounts I follow with their
// exact unread counts, and each account's feed of text and article notices, newest first.
// New notices and recalls arrive live (the SDK's "notice" / "notice_recalled" events); a
// recalled notice stays in its place, shown as withdrawn. Opening a feed marks it read.

import { h, shortTime } from "./dom.js";
import { noticeBadge } from "./cards.js";
import { lang, t } from "./i18n.js";

const PAGE = 20;

/** Only https:// links become buttons (bankhub:// deep links belong to the native app). @param {any} url */
function httpsLink(url) {
  if (typeof url !== "string" || !url.startsWith("https://")) return null;
  try {
    return new URL(url).protocol === "https:" ? url : null;
  } catch {
    return null;
  }
}

/** @param {any} e */
function reason(e) {
  return e?.detail || e?.code || String(e);
}

export class DiscoverView {
  /** @param {any} shell */
  constructor(shell) {
    this.shell = shell;
    this.session = shell.session;
    this.client = shell.client;
    /** @type {Map<string, {account: any, last_seq: number, read_seq: number, unread: number}>} */
    this.following = new Map();
    /** @type {any[]} the directory page(s) shown */
    this.directory = [];
    this.query = "";
    /** what is typed in the search box (kept across re-renders) */
    this.draft = "";
    /** @type {string | null} */
    this.nextCursor = null;
    /** @type {string | null} the account whose feed is open */
    this.openId = null;
    /** @type {Map<string, any>} notice id -> notice, of the open feed */
    this.notices = new Map();
    this.feedMore = false;
    /** @type {HTMLElement | null} */
    this.panel = null;
    this.message = "";
    this.failed = false;
    this.refreshTimer = 0;
    this.listen();
    this.loadFollowing();
  }

  listen() {
    const c = this.client;
    c.addEventListener("notice", (/** @type {any} */ e) => this.onNotice(e.detail));
    c.addEventListener("notice_recalled", (/** @type {any} */ e) => this.onRecall(e.detail));
    c.addEventListener("account_receipt", () => this.refreshSoon());
    c.addEventListener("state", (/** @type {any} */ e) => {
      if (e.detail?.state === "open") this.refreshSoon();
    });
  }

  /** @param {any} n a notice event (flattened notice) */
  onNotice(n) {
    const entry = this.following.get(n.account_id);
    if (entry) entry.last_seq = Math.max(entry.last_seq, n.seq);
    if (this.openId === n.account_id) {
      this.notices.set(n.notice_id, n);
      this.renderFeed();
    }
    this.refreshSoon();
  }

  /** @param {any} r {account_id, notice_id, seq, event_seq, ts} */
  onRecall(r) {
    const entry = this.following.get(r.account_id);
    if (entry && typeof r.event_seq === "number") entry.last_seq = Math.max(entry.last_seq, r.event_seq);
    const held = this.notices.get(r.notice_id);
    if (this.openId === r.account_id && held) {
      this.notices.set(r.notice_id, { account_id: held.account_id, notice_id: held.notice_id, seq: held.seq, ts: held.ts, recalled: true, recalled_ts: r.ts });
      this.renderFeed();
    }
    this.refreshSoon();
  }

  /** The exact unread counts come from the hub: re-read them shortly after a change. */
  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.loadFollowing(), 250);
  }

  async loadFollowing() {
    try {
      const list = await this.session.all("/v1/me/accounts", "accounts");
      this.following = new Map(list.map((/** @type {any} */ f) => [f.account.id, f]));
      this.failed = false;
    } catch {
      this.failed = true;
    }
    this.badge();
    if (this.openId) this.markRead();
    else this.renderList();
  }

  badge() {
    let total = 0;
    for (const f of this.following.values()) total += f.unread || 0;
    this.shell.setBadge("discover", total);
  }

  /** @param {boolean} more the next page of the same search */
  async loadDirectory(more = false) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (this.query) q.set("q", this.query);
    if (more && this.nextCursor) q.set("cursor", this.nextCursor);
    try {
      const page = await this.session.request("GET", `/v1/accounts?${q}`);
      this.directory = more ? [...this.directory, ...page.accounts] : page.accounts;
      this.nextCursor = page.next_cursor ?? null;
      this.failed = false;
    } catch {
      this.failed = true;
    }
    this.renderList(more);
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    if (this.openId) this.openFeed(this.openId);
    else {
      this.renderList();
      this.loadDirectory();
    }
  }

  unmount() {
    this.panel = null;
  }

  /** @param {string} id */
  isFollowing(id) {
    return this.following.has(id);
  }

  /** @param {any} account */
  async toggleFollow(account) {
    const was = this.isFollowing(account.id);
    this.message = "";
    try {
      if (was) await this.client.unfollow(account.id);
      else await this.client.follow(account.id);
    } catch (e) {
      // e.g. a default account the hub will not let go of: say what it said
      this.message = was ? t("follow_refused", { detail: reason(e) }) : t("action_failed", { detail: reason(e) });
    }
    await this.loadFollowing();
    for (const a of this.directory) if (a.id === account.id) a.following = this.isFollowing(a.id);
    if (this.openId) this.renderFeed();
    else this.renderList();
  }

  /** @param {any} account */
  followButton(account) {
    const on = this.isFollowing(account.id);
    return h("button", {
      type: "button",
      class: on ? "chip on" : "chip",
      "aria-pressed": String(on),
      "aria-label": `${on ? t("unfollow") : t("follow")} ${account.name}`,
      text: on ? t("unfollow") : t("follow"),
      "data-account": account.handle,
      onclick: () => this.toggleFollow(account),
    });
  }

  /** @param {boolean} [keepFocus] */
  renderList(keepFocus = false) {
    if (!this.panel || this.openId) return;
    this.shell.setTitle(t("tab_discover"));
    const mine = [...this.following.values()];
    const followed = h(
      "section",
      { class: "block", "aria-labelledby": "following-h" },
      h("h2", { id: "following-h", text: t("accounts_following") }),
      mine.length
        ? h(
            "ul",
            { class: "conv-list" },
            mine.map((f) => {
              const label = [f.account.name, f.unread ? t("unread", { n: f.unread }) : ""].filter(Boolean).join("，");
              return h(
                "li",
                {},
                h(
                  "button",
                  { type: "button", class: "conv", "data-account": f.account.handle, "aria-label": label, onclick: () => this.openFeed(f.account.id) },
                  h("span", { class: "avatar", "aria-hidden": "true", text: f.account.name.slice(0, 1) }),
                  h("span", { class: "conv-main" }, h("span", { class: "conv-name", text: f.account.name }), h("span", { class: "conv-hint", text: f.account.description })),
                  h("span", { class: "conv-side" }, f.unread ? h("span", { class: "badge", text: f.unread > 99 ? "99+" : String(f.unread) }) : ""),
                ),
              );
            }),
          )
        : h("p", { class: "empty", text: t("no_accounts") }),
    );
    const input = h("input", { id: "acct-q", type: "search", name: "q", value: this.draft, autocomplete: "off" });
    input.addEventListener("input", () => (this.draft = /** @type {HTMLInputElement} */ (input).value));
    const search = h(
      "form",
      { class: "search", role: "search" },
      h("label", { for: "acct-q", class: "visually-hidden", text: t("accounts_search") }),
      input,
      h("button", { type: "submit", class: "primary", text: t("search") }),
    );
    search.addEventListener("submit", (e) => {
      e.preventDefault();
      this.query = this.draft.trim();
      this.loadDirectory();
    });
    const rows = this.directory.map((a) =>
      h(
        "li",
        { class: "acct" },
        h("span", { class: "conv-main" }, h("span", { class: "conv-name", text: a.name }), h("span", { class: "conv-hint", text: a.description })),
        this.followButton(a),
      ),
    );
    const more = this.nextCursor ? h("button", { type: "button", class: "link more", text: t("more"), onclick: () => this.loadDirectory(true) }) : "";
    const directory = h(
      "section",
      { class: "block", "aria-labelledby": "directory-h" },
      h("h2", { id: "directory-h", text: t("accounts_directory") }),
      search,
      rows.length ? h("ul", { class: "acct-list", "aria-label": t("accounts_directory") }, rows) : h("p", { class: "empty", text: t("no_accounts") }),
      more,
    );
    const focused = document.activeElement?.id;
    this.panel.replaceChildren(
      h("div", { class: "discover" }, this.status(), followed, directory),
    );
    if (keepFocus || focused === "acct-q") /** @type {HTMLElement | null} */ (this.panel.querySelector(focused === "acct-q" ? "#acct-q" : ".more, .acct:last-child button"))?.focus();
  }

  status() {
    const text = this.failed ? t("load_failed") : this.message;
    return h("p", { class: text ? "form-error" : "visually-hidden", role: "status", text });
  }

  /** @param {string} id */
  async openFeed(id) {
    this.openId = id;
    this.notices = new Map();
    this.message = "";
    this.renderFeed(true);
    await this.loadNotices(false);
    this.markRead();
  }

  closeFeed() {
    this.openId = null;
    this.renderList();
    this.loadDirectory();
  }

  /** @param {boolean} older */
  async loadNotices(older) {
    const id = this.openId;
    if (!id) return;
    const seqs = [...this.notices.values()].map((n) => n.seq);
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (older && seqs.length) q.set("before_seq", String(Math.min(...seqs)));
    try {
      const page = await this.session.request("GET", `/v1/accounts/${encodeURIComponent(id)}/notices?${q}`);
      if (this.openId !== id) return;
      for (const n of page.notices) if (!this.notices.has(n.notice_id) || n.recalled) this.notices.set(n.notice_id, n);
      this.feedMore = !!page.has_more;
      this.failed = false;
    } catch {
      this.failed = true;
    }
    this.renderFeed();
  }

  /** Move my read position to the newest event of the open feed, when it is on screen. */
  async markRead() {
    const id = this.openId;
    const entry = id ? this.following.get(id) : undefined;
    if (!id || !entry || !this.panel || document.visibilityState !== "visible") return;
    const top = Math.max(entry.last_seq, ...[...this.notices.values()].map((n) => n.seq));
    if (top <= entry.read_seq && !entry.unread) return;
    entry.read_seq = top;
    entry.unread = 0;
    this.badge();
    try {
      const r = await this.session.request("PUT", `/v1/accounts/${encodeURIComponent(id)}/read`, { seq: top });
      entry.unread = r.unread;
      this.badge();
    } catch {
      entry.read_seq = 0; // tried again on the next change
    }
  }

  /** @param {boolean} [focus] */
  renderFeed(focus = false) {
    if (!this.panel || !this.openId) return;
    const entry = this.following.get(this.openId);
    const account = entry?.account ?? this.directory.find((a) => a.id === this.openId) ?? { id: this.openId, name: t("feed"), handle: "" };
    this.shell.setTitle(account.name);
    const items = [...this.notices.values()].sort((a, b) => b.seq - a.seq).map((n) => this.noticeItem(n));
    const back = h("button", { type: "button", class: "link back", text: `‹ ${t("back")}`, onclick: () => this.closeFeed() });
    this.panel.replaceChildren(
      h(
        "div",
        { class: "feed" },
        h("div", { class: "feed-head" }, back, this.followButton(account)),
        this.status(),
        h("h2", { class: "visually-hidden", id: "feed-h", text: t("notices_of", { name: account.name }) }),
        items.length
          ? h("ol", { class: "notice-list", "aria-labelledby": "feed-h", "aria-live": "polite", "aria-relevant": "additions" }, items)
          : h("p", { class: "empty", text: t("no_notices") }),
        this.feedMore ? h("button", { type: "button", class: "link more", text: t("more"), onclick: () => this.loadNotices(true) }) : "",
      ),
    );
    if (focus) back.focus();
    if (this.notices.size) this.markRead();
  }

  /** @param {any} n */
  noticeItem(n) {
    const time = h("time", { datetime: new Date(n.ts).toISOString(), text: shortTime(n.ts, lang()) });
    if (n.recalled || !n.body) {
      return h(
        "li",
        { class: "notice withdrawn", "data-notice-id": n.notice_id },
        h("p", { class: "meta" }, h("span", { class: "tag", text: t("withdrawn_tag") }), time),
        h("p", { class: "text", text: t("notice_withdrawn") }),
      );
    }
    const body = n.body;
    if (body.kind === "article") {
      const link = httpsLink(body.action_url);
      return this.signed(n, h(
        "li",
        { class: "notice article", "data-notice-id": n.notice_id },
        h("h3", { text: body.title }),
        body.summary ? h("p", { class: "summary", text: body.summary }) : "",
        body.body ? h("p", { class: "text", text: body.body }) : "",
        h(
          "p",
          { class: "meta" },
          time,
          link ? h("a", { class: "button", href: link, target: "_blank", rel: "noopener noreferrer", text: body.action_label || t("open_link") }) : "",
        ),
      ));
    }
    const text = body.kind === "text" ? body.text : t("withdrawn");
    return this.signed(n, h("li", { class: "notice", "data-notice-id": n.notice_id }, h("p", { class: "text", text }), h("p", { class: "meta" }, time)));
  }

  /** A notice with its "verified by the bank" badge (the hub's signature, checked here). @param {any} n @param {HTMLElement} li */
  signed(n, li) {
    li.append(noticeBadge(this.session, n, t, li));
    return li;
  }
}
