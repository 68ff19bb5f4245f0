// Groups in the customer app: create a group from my contacts, the member list of a group
// chat (with "leave", and "remove" for its owner and admins), senders' names in groups, and
// the group's system messages (who joined, left, was removed, renamed) in the reader's
// language. The Messages tab (messages.js) calls in at a few hooks.

import { createGroup, groupEventText, isGroupEvent, leaveGroup, listMembers, removeMember } from "/static/sdk/bankhub.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const CONTACTS_PAGE = 200;

export class GroupTools {
  /** @param {any} view the MessagesView */
  constructor(view) {
    this.view = view;
    this.session = view.shell.session;
    /** @type {Map<string, any[]>} conversation id -> members (GET /v1/groups/{id}/members) */
    this.members = new Map();
    /** @type {string | null} the group whose member list is open */
    this.showing = null;
    this.error = "";
    /** @type {Set<string>} groups whose members were asked for (senders' names) */
    this.requested = new Set();
    /** the "new group" form is on screen (the list does not replace it) */
    this.creating = false;
    view.client.addEventListener("conversation_removed", (/** @type {any} */ e) => {
      const cid = e.detail?.conversation_id;
      this.members.delete(cid);
      if (cid && cid === this.view.openId) this.view.closeChat(); // removed, or left on another device
    });
  }

  /** @param {string | null} cid */
  isGroup(cid) {
    return !!cid && this.view.conversations.get(cid)?.kind === "group";
  }

  /** Above the conversation list: "New group" (customers: with their contacts). */
  listTools() {
    return h("div", { class: "list-tools" }, h("button", { type: "button", class: "link new-group", text: t("group_new"), onclick: () => this.showCreate() }));
  }

  async showCreate() {
    const panel = this.view.panel;
    if (!panel) return;
    this.view.shell.setTitle(t("group_new"));
    this.creating = true;
    const title = h("input", { id: "group-title", maxlength: "100", required: true, autocomplete: "off" });
    const error = h("p", { class: "form-error", role: "alert" });
    const choices = h("div", { class: "group-choices" }, h("p", { text: t("group_loading") }));
    const form = h(
      "form",
      { class: "group-form", "aria-label": t("group_new") },
      h("label", { for: "group-title", text: t("group_title") }),
      title,
      h("fieldset", {}, h("legend", { text: t("group_pick_friends") }), choices),
      error,
      h(
        "div",
        { class: "form-actions" },
        h("button", { type: "submit", class: "primary", text: t("group_create") }),
        h("button", { type: "button", class: "link", text: t("group_cancel"), onclick: () => this.view.closeChat() }),
      ),
    );
    panel.replaceChildren(form);
    title.focus();
    let contacts = [];
    try {
      contacts = (await this.session.request("GET", `/v1/contacts?limit=${CONTACTS_PAGE}`)).contacts;
    } catch {
      error.textContent = t("load_failed");
    }
    choices.replaceChildren(
      ...(contacts.length
        ? contacts.map((/** @type {any} */ c) =>
            h(
              "label",
              { class: "choice" },
              h("input", { type: "checkbox", name: "member", value: c.user.username }),
              h("span", { text: c.user.display_name }),
            ),
          )
        : [h("p", { class: "empty", text: t("group_no_friends") })]),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = /** @type {HTMLInputElement} */ (title).value.trim();
      const picked = [...form.querySelectorAll('input[name="member"]:checked')].map((i) => /** @type {HTMLInputElement} */ (i).value);
      if (!name) {
        error.textContent = t("group_title_needed");
        return;
      }
      if (!picked.length) {
        error.textContent = t("group_pick_one");
        return;
      }
      try {
        const group = await createGroup(this.session, name, picked);
        this.creating = false;
        await this.view.load();
        this.view.openChat(group.conversation_id);
      } catch (err) {
        const code = /** @type {any} */ (err)?.code;
        error.textContent = code === "group_full" ? t("group_full") : code === "forbidden" ? t("group_not_friends") : t("load_failed");
      }
    });
  }

  /** The chat header's tools for a group: the member list toggle. @param {string} cid */
  chatTools(cid) {
    if (!this.isGroup(cid)) return "";
    const open = this.showing === cid;
    return h("button", {
      type: "button",
      class: "link members-toggle",
      "aria-expanded": String(open),
      "aria-controls": "group-members",
      text: t("group_members"),
      onclick: () => this.toggle(cid),
    });
  }

  /** @param {string} cid */
  async toggle(cid) {
    this.showing = this.showing === cid ? null : cid;
    if (this.showing) await this.load(cid);
    this.view.changed(cid);
  }

  /** Fill the chat header's group slot (each render of the chat). @param {HTMLElement} panel @param {string} cid */
  update(panel, cid) {
    const slot = panel.querySelector(".group-slot");
    if (!slot) return;
    const focused = document.activeElement;
    const refocus = focused && slot.contains(focused) ? focused.className : null;
    slot.replaceChildren(this.chatTools(cid), this.panel(cid));
    if (refocus) /** @type {HTMLElement | null} */ (slot.querySelector(`[class="${refocus}"]`))?.focus();
  }

  /** Load a group's members (and their names, for senders). @param {string} cid */
  async load(cid) {
    try {
      const members = await listMembers(this.session, cid);
      this.members.set(cid, members);
      for (const m of members) this.view.names.set(m.user_id, m.display_name);
      this.error = "";
    } catch {
      this.error = t("load_failed");
    }
  }

  /** The member list of the open group, when shown (else nothing). @param {string} cid */
  panel(cid) {
    if (this.showing !== cid || !this.isGroup(cid)) return "";
    const members = this.members.get(cid) ?? [];
    const mine = members.find((m) => m.user_id === this.view.me.id)?.role;
    const manage = mine === "owner" || mine === "admin";
    const rows = members.map((m) =>
      h(
        "li",
        { class: "member", "data-username": m.username },
        h("span", { class: "member-name", text: m.user_id === this.view.me.id ? `${m.display_name}（${t("you")}）` : m.display_name }),
        m.role !== "member" ? h("span", { class: "member-role", text: t(`group_role_${m.role}`) }) : "",
        manage && m.user_id !== this.view.me.id && (mine === "owner" || m.role === "member")
          ? h("button", { type: "button", class: "link", "aria-label": t("group_remove_named", { name: m.display_name }), text: t("group_remove"), onclick: () => this.remove(cid, m.username) })
          : "",
      ),
    );
    return h(
      "section",
      { id: "group-members", class: "group-members", "aria-label": t("group_members") },
      h("h2", { text: t("group_members_n", { n: members.length }) }),
      this.error ? h("p", { class: "form-error", role: "alert", text: this.error }) : "",
      h("ul", {}, rows),
      h("button", { type: "button", class: "link leave-group", text: t("group_leave"), onclick: () => this.leave(cid) }),
    );
  }

  /** @param {string} cid @param {string} username */
  async remove(cid, username) {
    try {
      await removeMember(this.session, cid, username);
    } catch {
      this.error = t("group_not_allowed");
    }
    await this.load(cid);
    this.view.changed(cid);
  }

  /** @param {string} cid */
  async leave(cid) {
    if (!window.confirm(t("group_leave_confirm"))) return;
    try {
      await leaveGroup(this.session, cid);
    } catch {
      this.error = t("group_not_allowed");
      this.view.changed(cid);
      return;
    }
    this.showing = null;
    this.members.delete(cid);
    this.view.conversations.delete(cid);
    this.view.closeChat();
    this.view.load();
  }

  /** A committed message arrived: a group change refreshes the member list and the title. @param {string} cid @param {any} message */
  onMessage(cid, message) {
    if (!isGroupEvent(message?.body)) return;
    if (message.body.event === "group_renamed") {
      const conv = this.view.conversations.get(cid);
      if (conv) conv.title = message.body.data?.title ?? conv.title;
    }
    if (this.members.has(cid)) this.load(cid).then(() => this.view.changed(cid));
  }

  /** The text of a group's system message, in my language (null: not a group event). @param {any} body */
  eventText(body) {
    return groupEventText(body, t);
  }

  /** Who sent `m`, shown above others' messages in a group (else nothing). @param {string} cid @param {any} m */
  sender(cid, m) {
    if (!this.isGroup(cid) || m.sender_id === this.view.me.id || m.body?.kind === "system") return "";
    if (!this.view.names.has(m.sender_id) && !this.requested.has(cid)) {
      this.requested.add(cid);
      this.load(cid).then(() => this.view.changed(cid));
    }
    return h("p", { class: "from", text: this.view.names.get(m.sender_id) ?? t("conversation") });
  }
}
