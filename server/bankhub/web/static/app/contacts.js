// Contacts (friends) in the customer app, reached from the Messages tab: my friends (chat,
// remove, block), requests to me (accept, decline), requests I sent (withdraw), add a friend
// by username, phone number or invite code, my own invite code (text, link and a QR code
// drawn as inline SVG) and the users I block. Every change on any device arrives as a
// `contact` event and refreshes what is on screen. Asking by username or phone is answered
// the same whether or not the account exists: the screen says so, never more.

import {
  acceptRequest,
  blockUser,
  createInvite,
  declineRequest,
  incomingRequests,
  inviteCodeOf,
  listBlocked,
  listContacts,
  outgoingRequests,
  qrMatrix,
  qrSvgPath,
  redeemInvite,
  removeContact,
  requestContact,
  unblockUser,
  withdrawRequest,
} from "/static/sdk/bankhub.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

/** An error's stable code, if it has one. @param {unknown} err */
function codeOf(err) {
  return /** @type {any} */ (err)?.code ?? "";
}

export class ContactsView {
  /** @param {any} view the MessagesView */
  constructor(view) {
    this.view = view;
    this.session = view.shell.session;
    /** the contacts screen is on screen (the conversation list does not replace it) */
    this.showing = false;
    /** how many requests to me are pending (the badge on the Messages tab's Friends button) */
    this.pendingCount = 0;
    /** @type {any} my invite code while it is shown */
    this.invite = null;
    this.status = "";
    this.error = "";
    /** how the add form adds: "username", "phone" or "code", and what is typed (kept while the screen redraws) */
    this.mode = "username";
    this.draft = "";
    /** the latest redraw: an older one still fetching is dropped (no stale lists) */
    this.drawing = 0;
    view.client.addEventListener("contact", (/** @type {any} */ e) => {
      const user = e.detail?.user;
      if (user) this.view.names.set(user.id, user.display_name);
      this.countIncoming();
      if (this.showing) this.render();
    });
    this.countIncoming();
    this.loadNames();
  }

  /** My friends' names, for the titles of our direct chats. */
  async loadNames() {
    try {
      for (const c of await listContacts(this.session)) this.view.names.set(c.user.id, c.user.display_name);
    } catch {
      return;
    }
    this.view.changed(null);
  }

  async countIncoming() {
    try {
      this.pendingCount = (await incomingRequests(this.session)).length;
    } catch {
      return; // offline: the badge waits for the next event
    }
    if (!this.showing && this.view.panel && this.view.openId === null && !this.view.groups.creating) this.view.renderList();
  }

  /** The Friends button above the conversation list. */
  listButton() {
    const label = this.pendingCount ? t("contacts_open_n", { n: this.pendingCount }) : t("contacts_open");
    return h("button", { type: "button", class: "link open-contacts", text: label, onclick: () => this.open() });
  }

  open() {
    this.showing = true;
    this.status = "";
    this.error = "";
    this.render(true);
  }

  close() {
    this.showing = false;
    this.invite = null;
    this.view.renderList();
    /** @type {HTMLElement | null} */ (this.view.panel?.querySelector(".open-contacts"))?.focus();
  }

  /** Draw the screen (lists fetched afresh). @param {boolean} [focus] */
  async render(focus = false) {
    const panel = this.view.panel;
    if (!panel || !this.showing) return;
    const drawing = ++this.drawing;
    this.view.shell.setTitle(t("contacts_title"));
    /** @type {[any[], any[], any[], any[]]} */
    let lists = [[], [], [], []];
    try {
      lists = await Promise.all([listContacts(this.session), incomingRequests(this.session), outgoingRequests(this.session), listBlocked(this.session)]);
      this.pendingCount = lists[1].length;
    } catch {
      this.error = t("load_failed");
    }
    if (!this.showing || this.view.panel !== panel || drawing !== this.drawing) return;
    const [friends, incoming, outgoing, blocked] = lists;
    const active = /** @type {HTMLElement | null} */ (document.activeElement);
    const keep = active && panel.contains(active) ? active.id : "";
    panel.replaceChildren(
      h(
        "div",
        { class: "contacts" },
        h("div", { class: "chat-head" }, h("button", { type: "button", class: "link back", text: `‹ ${t("back")}`, onclick: () => this.close() })),
        this.addForm(),
        h("p", { class: "contacts-status", role: "status", "aria-live": "polite", text: this.status }),
        h("p", { class: "form-error", role: "alert", text: this.error }),
        this.section("contacts-incoming", t("contacts_incoming_n", { n: incoming.length }), incoming, (r) => this.incomingRow(r), t("contacts_no_incoming")),
        this.section("contacts-friends", t("contacts_friends_n", { n: friends.length }), friends, (c) => this.friendRow(c), t("contacts_no_friends")),
        this.inviteSection(),
        outgoing.length ? this.section("contacts-outgoing", t("contacts_outgoing"), outgoing, (r) => this.outgoingRow(r), "") : "",
        blocked.length ? this.section("contacts-blocked", t("contacts_blocked"), blocked, (c) => this.blockedRow(c), "") : "",
      ),
    );
    const again = keep ? document.getElementById(keep) : null;
    if (again) again.focus();
    else if (focus) /** @type {HTMLElement | null} */ (panel.querySelector("#contact-add"))?.focus();
  }

  /**
   * @param {string} id @param {string} title @param {any[]} items
   * @param {(item: any) => HTMLElement} row @param {string} empty
   */
  section(id, title, items, row, empty) {
    return h(
      "section",
      { class: "contacts-section", "aria-labelledby": `${id}-h` },
      h("h2", { id: `${id}-h`, text: title }),
      items.length ? h("ul", { class: "contact-list", id }, items.map(row)) : h("p", { class: "empty", text: empty }),
    );
  }

  addForm() {
    const how = h(
      "select",
      { id: "contact-how" },
      h("option", { value: "username", text: t("contacts_by_username"), selected: this.mode === "username" }),
      h("option", { value: "phone", text: t("contacts_by_phone"), selected: this.mode === "phone" }),
      h("option", { value: "code", text: t("contacts_by_code"), selected: this.mode === "code" }),
    );
    how.addEventListener("change", () => {
      this.mode = /** @type {HTMLSelectElement} */ (how).value;
    });
    const input = /** @type {HTMLInputElement} */ (h("input", { id: "contact-add", autocomplete: "off", maxlength: "80", required: true }));
    input.value = this.draft; // a redraw (a contact event) keeps what is being typed
    input.addEventListener("input", () => {
      this.draft = input.value;
    });
    const form = h(
      "form",
      { class: "contact-add", "aria-label": t("contacts_add") },
      h("label", { for: "contact-how", text: t("contacts_add_by") }),
      how,
      h("label", { for: "contact-add", text: t("contacts_add_label") }),
      input,
      h("button", { type: "submit", class: "primary", text: t("contacts_add") }),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const value = input.value.trim();
      const mode = /** @type {HTMLSelectElement} */ (how).value;
      if (!value) return;
      this.error = "";
      this.status = "";
      try {
        if (mode === "code") {
          const code = inviteCodeOf(value);
          if (!code) throw Object.assign(new Error("bad code"), { code: "not_found" });
          const added = await redeemInvite(this.session, code);
          this.status = t("contacts_added", { name: added.user.display_name });
        } else {
          await requestContact(this.session, mode === "phone" ? { phone: value } : { username: value });
          this.status = t("contacts_requested"); // the same words whether or not the account exists
        }
        input.value = "";
        this.draft = "";
      } catch (err) {
        this.error = this.message(err, mode);
      }
      this.render();
    });
    return form;
  }

  /** The words for a refusal. @param {unknown} err @param {string} mode */
  message(err, mode) {
    const code = codeOf(err);
    if (code === "invalid_request") return mode === "phone" ? t("contacts_bad_phone") : mode === "code" ? t("contacts_own_code") : t("contacts_invalid");
    if (code === "not_found" && mode === "code") return t("contacts_bad_code");
    if (code === "forbidden") return t("contacts_not_allowed");
    if (code === "conflict") return t("contacts_limit");
    return t("load_failed");
  }

  /** @param {any} r an incoming request */
  incomingRow(r) {
    const name = r.user.display_name;
    return h(
      "li",
      { class: "contact", "data-request": r.id, "data-username": r.user.username },
      h("span", { class: "avatar", "aria-hidden": "true", text: name.slice(0, 1) }),
      h("span", { class: "contact-name", text: t("contacts_wants", { name }) }),
      h("button", { type: "button", class: "primary", id: `accept-${r.id}`, "aria-label": t("contacts_accept_named", { name }), text: t("contacts_accept"), onclick: () => this.act(() => acceptRequest(this.session, r.id), t("contacts_added", { name })) }),
      h("button", { type: "button", class: "link", id: `decline-${r.id}`, "aria-label": t("contacts_decline_named", { name }), text: t("contacts_decline"), onclick: () => this.act(() => declineRequest(this.session, r.id), "") }),
    );
  }

  /** @param {any} c a contact */
  friendRow(c) {
    const name = c.user.display_name;
    return h(
      "li",
      { class: "contact", "data-username": c.user.username },
      h("span", { class: "avatar", "aria-hidden": "true", text: name.slice(0, 1) }),
      h("span", { class: "contact-name", text: name }),
      h("button", { type: "button", class: "primary", "aria-label": t("contacts_chat_named", { name }), text: t("contacts_chat"), onclick: () => this.chat(c.user.username) }),
      h("button", { type: "button", class: "link", "aria-label": t("contacts_remove_named", { name }), text: t("contacts_remove"), onclick: () => this.confirmThen(t("contacts_remove_confirm", { name }), () => removeContact(this.session, c.user.id)) }),
      h("button", { type: "button", class: "link", "aria-label": t("contacts_block_named", { name }), text: t("contacts_block"), onclick: () => this.confirmThen(t("contacts_block_confirm", { name }), () => blockUser(this.session, c.user.id)) }),
    );
  }

  /** @param {any} r a request I sent */
  outgoingRow(r) {
    return h(
      "li",
      { class: "contact", "data-request": r.id },
      h("span", { class: "contact-name", text: t("contacts_sent_to", { handle: r.handle }) }),
      h("button", { type: "button", class: "link", "aria-label": t("contacts_withdraw_named", { handle: r.handle }), text: t("contacts_withdraw"), onclick: () => this.act(() => withdrawRequest(this.session, r.id), "") }),
    );
  }

  /** @param {any} c a user I block */
  blockedRow(c) {
    const name = c.user.display_name;
    return h(
      "li",
      { class: "contact", "data-username": c.user.username },
      h("span", { class: "contact-name", text: name }),
      h("button", { type: "button", class: "link", "aria-label": t("contacts_unblock_named", { name }), text: t("contacts_unblock"), onclick: () => this.act(() => unblockUser(this.session, c.user.id), "") }),
    );
  }

  /** My invite code: a button, then the code, its link and its QR code. */
  inviteSection() {
    const body = [];
    if (this.invite) {
      const matrix = qrMatrix(this.invite.link);
      const units = matrix.length + 8;
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", `0 0 ${units} ${units}`);
      svg.setAttribute("class", "qr");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", t("contacts_qr_label"));
      const bg = document.createElementNS(SVG, "rect");
      bg.setAttribute("width", String(units));
      bg.setAttribute("height", String(units));
      bg.setAttribute("fill", "#fff");
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", qrSvgPath(matrix, 4));
      path.setAttribute("fill", "#000");
      svg.append(bg, path);
      const expires = new Date(this.invite.expires_at).toLocaleString();
      body.push(
        svg,
        h("p", {}, h("span", { text: `${t("contacts_code")}: ` }), h("code", { class: "invite-code", text: this.invite.code })),
        h("p", { class: "hint" }, h("span", { text: `${t("contacts_link")}: ` }), h("code", { class: "invite-link", text: this.invite.link })),
        h("p", { class: "hint", text: t("contacts_code_hint", { when: expires }) }),
      );
    }
    body.push(
      h("button", {
        type: "button",
        class: "link show-invite",
        id: "show-invite",
        text: this.invite ? t("contacts_new_code") : t("contacts_my_code"),
        onclick: async () => {
          try {
            this.invite = await createInvite(this.session);
            this.error = "";
          } catch (err) {
            this.error = codeOf(err) === "conflict" ? t("contacts_codes_limit") : t("load_failed");
          }
          this.render();
        },
      }),
    );
    return h("section", { class: "contacts-section invite", "aria-labelledby": "contacts-invite-h" }, h("h2", { id: "contacts-invite-h", text: t("contacts_invite") }), ...body);
  }

  /** Do `job`, say `done` (or why it failed), redraw. @param {() => Promise<unknown>} job @param {string} done */
  async act(job, done) {
    this.error = "";
    this.status = "";
    try {
      await job();
      this.status = done;
    } catch (err) {
      this.error = this.message(err, "");
    }
    this.render();
  }

  /** @param {string} question @param {() => Promise<unknown>} job */
  confirmThen(question, job) {
    if (window.confirm(question)) this.act(job, "");
  }

  /** Open (or reopen) the direct chat with a friend. @param {string} username */
  async chat(username) {
    try {
      const opened = await this.session.request("POST", "/v1/conversations", { kind: "direct", peer: username });
      const conv = opened.conversation;
      this.view.conversations.set(conv.id, conv);
      this.showing = false;
      this.invite = null;
      await this.view.load();
      this.view.openChat(conv.id);
    } catch (err) {
      this.error = this.message(err, "");
      this.render();
    }
  }
}
