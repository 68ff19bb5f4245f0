// Recall and edit in a chat (customer app and staff workbench): on my own text message, while
// its window is open, a "message actions" button opens a menu with 撤回/Recall and 编辑/Edit;
// Edit loads the text into the composer (a bar says so, with a cancel button) and the next
// submit replaces the message instead of sending a new one. Every member sees a withdrawn
// message as "消息已撤回 / message withdrawn" and an edited one with "(已编辑 / edited)", live.
//
// The recall/edit messages themselves (body kinds "edit"/"recall") are applied to their
// targets and never shown (the SDK's visibleMessages). The windows are the hub's defaults;
// the hub measures them itself and refuses a late change (`forbidden`), which is shown.
//
// The hosts (messages.js, staff/chat.js) re-render their whole list on every event, so the
// open menu and the message being edited are kept here, and focus follows a re-render.

import { isChange, isRecalled, visibleMessages } from "/static/sdk/bankhub.js";
import { refusalText } from "./dlp.js";
import { h } from "./dom.js";

/** The hub's default windows (BANKHUB_MESSAGE_RECALL_SECONDS / _EDIT_SECONDS). */
export const RECALL_WINDOW_MS = 2 * 60 * 1000;
export const EDIT_WINDOW_MS = 15 * 60 * 1000;

export { isChange, isRecalled, visibleMessages };

export class ReviseView {
  /**
   * @param {{client: any, t: (key: string, vars?: Record<string, any>) => string, me: {id: string}, onChange: (cid: string) => void, now?: () => number}} o
   */
  constructor(o) {
    this.client = o.client;
    this.t = o.t;
    this.me = o.me;
    this.onChange = o.onChange;
    this.now = o.now ?? (() => Date.now());
    /** @type {string | null} the message whose action menu is open */
    this.openFor = null;
    /** @type {{cid: string, messageId: string} | null} the message being edited in the composer */
    this.editing = null;
    /** @type {HTMLTextAreaElement | null} */
    this.input = null;
    /** @type {string | null} the key of the element to focus once rendered (see focusable) */
    this.focusNext = null;
    /** @type {string | null} the conversation last rendered with actions */
    this.lastCid = null;
    this.bar = h("div", { class: "revise-bar", hidden: true },
      h("span", { class: "revise-label", text: o.t("editing_message") }),
      h("button", { type: "button", class: "link", text: o.t("cancel_edit"), onclick: () => this.cancelEdit() }));
    this.error = h("p", { class: "form-error revise-error", role: "alert", hidden: true });
    this.onRevised = (/** @type {any} */ e) => {
      const cid = e.detail?.conversationId;
      if (cid) this.onChange(cid);
    };
    this.client.addEventListener("revised", this.onRevised);
  }

  destroy() {
    this.client.removeEventListener("revised", this.onRevised);
  }

  /** The messages to show: each change applied to its target and left out. @param {any[]} messages */
  visible(messages) {
    return visibleMessages(messages);
  }

  /** The composer's edit bar and error line; `input` is the composer's text area. @param {HTMLTextAreaElement} input */
  attach(input) {
    this.input = input;
    input.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
      if (e.key === "Escape" && this.editing) {
        e.preventDefault();
        this.cancelEdit();
      }
    });
    return h("div", { class: "revise-status" }, this.bar, this.error);
  }

  /**
   * The shown body of a recalled message ("message withdrawn"), else null (the host renders it).
   * @param {any} m
   */
  body(m) {
    return isRecalled(m) ? h("p", { class: "text recalled", text: this.t("message_recalled") }) : null;
  }

  /** "(已编辑 / edited)" for an edited message. @param {any} m */
  marker(m) {
    return m.edited_ts && !isRecalled(m) ? h("span", { class: "edited", text: this.t("edited_mark") }) : "";
  }

  /**
   * The action button and menu of my own text message while a window is open, else "".
   * @param {string} cid @param {any} m
   */
  actions(cid, m) {
    if (m.sender_id !== this.me.id || m.body?.kind !== "text") return "";
    const age = this.now() - m.ts;
    const canRecall = age <= RECALL_WINDOW_MS;
    const canEdit = age <= EDIT_WINDOW_MS;
    if (!canRecall && !canEdit) return "";
    const id = m.message_id;
    this.lastCid = cid;
    const open = this.openFor === id;
    const menuId = `revise-menu-${id}`;
    const toggle = this.focusable(
      h("button", {
        type: "button",
        class: "msg-actions-toggle",
        "aria-haspopup": "menu",
        "aria-expanded": open ? "true" : "false",
        "aria-controls": open ? menuId : null,
        "aria-label": this.t("message_actions"),
        text: "⋯",
        onclick: () => this.toggle(id),
      }),
      `toggle:${id}`,
    );
    /** @type {HTMLElement[]} */
    const items = [];
    if (canRecall) items.push(this.focusable(h("button", { type: "button", role: "menuitem", class: "menu-recall", text: this.t("recall_action"), onclick: () => this.recall(cid, id) }), `recall:${id}`));
    if (canEdit) items.push(this.focusable(h("button", { type: "button", role: "menuitem", class: "menu-edit", text: this.t("edit_action"), onclick: () => this.startEdit(cid, id, m.body.text) }), `edit:${id}`));
    const menu = open ? h("div", { class: "msg-actions-menu", role: "menu", id: menuId, "aria-label": this.t("message_actions") }, items) : "";
    if (menu) {
      menu.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => this.menuKey(e, items, id));
      if (this.focusNext === `first:${id}`) {
        this.focusNext = null;
        const first = items[0];
        queueMicrotask(() => first.isConnected && first.focus());
      }
    }
    return h("div", { class: "msg-actions" }, toggle, menu);
  }

  /**
   * Give `el` a key so that a re-render keeps the focus on its replacement.
   * @param {HTMLElement} el @param {string} key
   */
  focusable(el, key) {
    el.dataset.reviseKey = key;
    const active = /** @type {HTMLElement | null} */ (document.activeElement);
    if (this.focusNext === key || (active?.dataset?.reviseKey === key && active !== el)) {
      if (this.focusNext === key) this.focusNext = null;
      queueMicrotask(() => el.isConnected && el.focus());
    }
    return el;
  }

  /** @param {KeyboardEvent} e @param {HTMLElement[]} items @param {string} id */
  menuKey(e, items, id) {
    const i = items.indexOf(/** @type {HTMLElement} */ (document.activeElement));
    if (e.key === "Escape") {
      e.preventDefault();
      this.openFor = null;
      this.focusNext = `toggle:${id}`;
      this.refresh();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const next = items[(i + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length];
      next?.focus();
    }
  }

  /** @param {string} id */
  toggle(id) {
    this.openFor = this.openFor === id ? null : id;
    this.focusNext = this.openFor ? `first:${id}` : `toggle:${id}`;
    this.refresh();
  }

  refresh() {
    const cid = this.editing?.cid ?? this.lastCid;
    if (cid) this.onChange(cid);
  }

  /** @param {string} cid @param {string} id */
  async recall(cid, id) {
    this.openFor = null;
    this.lastCid = cid;
    this.focusNext = null;
    this.showError("");
    try {
      await this.client.recall(cid, id);
    } catch (e) {
      this.showError(this.failure(e));
    }
    this.onChange(cid);
  }

  /** @param {string} cid @param {string} id @param {string} text */
  startEdit(cid, id, text) {
    this.openFor = null;
    this.lastCid = cid;
    this.editing = { cid, messageId: id };
    this.bar.hidden = false;
    this.showError("");
    if (this.input) {
      this.input.value = text;
      this.input.focus();
    }
    this.onChange(cid);
  }

  cancelEdit() {
    const cid = this.editing?.cid;
    this.editing = null;
    this.bar.hidden = true;
    if (this.input) {
      this.input.value = "";
      this.input.focus();
    }
    if (cid) this.onChange(cid);
  }

  /**
   * The composer was submitted with `text`: if a message of `cid` is being edited, replace
   * it (true: the host sends nothing); else false.
   * @param {string} cid @param {string} text
   */
  submit(cid, text) {
    const editing = this.editing;
    if (!editing || editing.cid !== cid) return false;
    this.editing = null;
    this.bar.hidden = true;
    this.showError("");
    this.client.edit(cid, editing.messageId, text).then(
      () => this.onChange(cid),
      (/** @type {any} */ e) => {
        this.showError(this.failure(e));
        this.onChange(cid);
      },
    );
    return true;
  }

  /** @param {any} e */
  failure(e) {
    if (e?.code === "sensitive_data") return refusalText(this.t, e); // data-loss prevention, in the page's language
    return e?.code === "forbidden" ? this.t("revise_refused") : this.t("revise_failed");
  }

  /** @param {string} text */
  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }
}
