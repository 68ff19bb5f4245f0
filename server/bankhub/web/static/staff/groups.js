// The workbench's Groups section: my groups (staff groups and the org groups I belong to by
// my place in the org tree: "all staff of the Haidian sub-branch"), a chat in the chosen one,
// and for administrators a form to create an org group. Groups appear and disappear live
// (`conversation_added` / `conversation_removed`); membership of org groups is the hub's.

import { Client, createOrgGroup, isGroupEvent, listMembers } from "/static/sdk/bankhub.js";
import { h } from "../app/dom.js";
import { t } from "./i18n.js";
import { ChatPane } from "./chat.js";
import { problemText } from "./rm.js";

const ADMINS = new Set(["head_office_admin", "branch_admin"]);

export class GroupsView {
  /** @param {any} bench */
  constructor(bench) {
    this.bench = bench;
    this.session = bench.session;
    // roles without a live connection of their own (administrators) get one for their groups
    this.ownClient = !bench.client;
    this.client = bench.client ?? Client.connect(bench.session);
    /** @type {any[]} */
    this.groups = [];
    // until the first list arrives, "no groups yet" would be a claim the page cannot make
    this.loaded = false;
    this.failed = false;
    this.notice = "";
    /** @type {ChatPane | null} */
    this.chat = null;
    /** @type {HTMLElement | null} */
    this.panel = null;
    /** @type {Map<string, string>} user id -> display name */
    this.names = new Map([[this.session.user.id, this.session.user.display_name]]);
    for (const name of ["conversation_added", "conversation_removed"]) this.client.addEventListener(name, () => this.load());
    this.client.addEventListener("conversation_removed", (/** @type {any} */ e) => {
      if (this.chat && this.chat.cid === e.detail?.conversation_id) this.closeChat();
    });
    this.client.addEventListener("message", (/** @type {any} */ e) => {
      const m = e.detail?.message;
      if (!m) return;
      const group = this.groups.find((g) => g.id === m.conversation_id);
      if (!group) return;
      if (isGroupEvent(m.body)) {
        if (m.body.event === "group_renamed") group.title = m.body.data?.title ?? group.title;
        this.loadNames(group.id);
      }
      if (m.sender_id !== this.session.user.id && !(this.chat && this.chat.cid === group.id)) group.unread = (group.unread ?? 0) + 1;
      this.renderList();
    });
    this.load();
  }

  async load() {
    try {
      const all = await this.session.request("GET", "/v1/conversations?limit=200");
      this.groups = all.conversations.filter((/** @type {any} */ c) => c.kind === "group");
      this.failed = false;
    } catch {
      this.failed = true;
    }
    this.loaded = true;
    this.renderList();
  }

  /** @param {string} cid */
  async loadNames(cid) {
    try {
      for (const m of await listMembers(this.session, cid)) this.names.set(m.user_id, m.display_name);
      this.chat?.render();
    } catch {
      // the names come back with the next change
    }
  }

  /** @param {HTMLElement} panel */
  mount(panel) {
    this.panel = panel;
    this.listEl = h("section", { class: "book", "aria-labelledby": "groups-title" });
    this.chatEl = h("div", { class: "chat-area" });
    const side = h("div", { class: "side" }, ADMINS.has(this.session.user.role) ? this.orgForm() : "", this.listEl);
    panel.replaceChildren(h("div", { class: "split" }, side, this.chatEl));
    this.renderList();
    if (this.chat) this.chatEl.replaceChildren(this.chat.element);
  }

  unmount() {
    this.panel = null;
  }

  /** Signed out: the connection this view opened itself ends too. */
  close() {
    this.closeChat();
    if (this.ownClient) this.client.close();
  }

  orgForm() {
    const title = h("input", { id: "org-group-title", maxlength: "100", autocomplete: "off" });
    const org = h("input", { id: "org-group-org", maxlength: "32", autocomplete: "off", placeholder: "BJ-HD" });
    const status = h("p", { class: "form-status", role: "status" });
    const form = h(
      "form",
      { class: "card org-group-form", "aria-labelledby": "org-group-heading" },
      h("h2", { id: "org-group-heading", text: t("group_org_new") }),
      h("label", { for: title.id, text: t("group_title") }),
      title,
      h("label", { for: org.id, text: t("group_org_code") }),
      org,
      h("button", { type: "submit", class: "primary", text: t("group_create") }),
      status,
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = /** @type {HTMLInputElement} */ (title).value.trim();
      const code = /** @type {HTMLInputElement} */ (org).value.trim();
      if (!name || !code) {
        status.textContent = t("group_org_needed");
        return;
      }
      try {
        const group = await createOrgGroup(this.session, name, code);
        status.textContent = t("group_org_created", { n: group.members });
        /** @type {HTMLInputElement} */ (title).value = "";
        await this.load();
      } catch (exc) {
        status.textContent = problemText(exc);
      }
    });
    return form;
  }

  renderList() {
    if (!this.panel || !this.listEl) return;
    const rows = this.groups.map((g) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `card group-row${this.chat?.cid === g.id ? " open" : ""}`,
            "data-conversation": g.id,
            "aria-current": this.chat?.cid === g.id ? "true" : null,
            "aria-label": [g.title ?? t("group_untitled"), g.unread ? t("unread", { n: g.unread }) : ""].filter(Boolean).join("，"),
            onclick: () => this.open(g),
          },
          h("span", { class: "name", text: g.title ?? t("group_untitled") }),
          h("span", { class: "hint", text: t("group_size", { n: g.members.length }) }),
          g.unread ? h("span", { class: "badge", text: String(g.unread) }) : "",
        ),
      ),
    );
    this.listEl.replaceChildren(
      h("h2", { id: "groups-title", text: t("tab_groups") }),
      this.failed ? h("p", { class: "form-error", role: "alert", text: t("load_failed") }) : "",
      rows.length
        ? h("ul", { class: "cards" }, rows)
        : h("p", { class: "empty", role: "status", text: t(this.loaded ? "group_none" : "group_loading") }),
    );
  }

  /** @param {any} group */
  async open(group) {
    this.closeChat();
    group.unread = 0;
    await this.loadNames(group.id);
    this.chat = new ChatPane({ session: this.session, client: this.client, conversationId: group.id, title: group.title ?? t("group_untitled"), names: this.names });
    this.chatEl?.replaceChildren(this.chat.element);
    this.renderList();
    this.chat.focus();
  }

  closeChat() {
    this.chat?.destroy();
    this.chat = null;
    this.chatEl?.replaceChildren();
  }
}
