// The signed-in app: a header (title, connection state, language), one panel, and the four
// tabs 消息 / 发现 / 功能 / 我 as an ARIA tablist (arrow keys move between tabs).

import { h } from "./dom.js";
import { t, toggleLang } from "./i18n.js";
import { MessagesView } from "./messages.js";
import { renderMe } from "./me.js";
import { DiscoverView } from "./discover.js";
import { ServicesView } from "./services.js";

const TABS = ["messages", "discover", "services", "me"];

export class Shell {
  /**
   * @param {HTMLElement} root
   * @param {any} session HubSession
   * @param {any} client Client
   * @param {() => Promise<void>} signOut
   */
  constructor(root, session, client, signOut) {
    this.root = root;
    this.session = session;
    this.client = client;
    this.signOut = signOut;
    this.tab = "messages";
    this.connection = "connecting";
    /** @type {Record<string, number>} unread per tab (Discover: notices, Services: alerts) */
    this.counts = {};
    this.messages = new MessagesView(this);
    this.discover = new DiscoverView(this);
    this.services = new ServicesView(this);
    client.addEventListener("state", (/** @type {any} */ e) => {
      this.connection = e.detail?.state ?? "connecting";
      this.renderStatus();
    });
    this.render();
  }

  /** Re-render everything (after sign-in, a language switch). */
  render() {
    this.status = h("p", { class: "conn", role: "status", "aria-live": "polite" });
    this.title = h("h1", { id: "view-title" });
    this.panel = h("section", { id: "panel", role: "tabpanel", tabindex: "-1" });
    this.badge = h("span", { class: "badge", hidden: true });
    /** @type {Record<string, HTMLElement>} */
    this.badges = { messages: this.badge, discover: h("span", { class: "badge", hidden: true }), services: h("span", { class: "badge", hidden: true }) };
    const tabs = TABS.map((name) =>
      h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${name}`,
          "aria-controls": "panel",
          "aria-selected": String(name === this.tab),
          tabindex: name === this.tab ? "0" : "-1",
          class: `tab tab-${name}`,
          onclick: () => this.select(name),
          onkeydown: (/** @type {KeyboardEvent} */ e) => this.arrow(e, name),
        },
        h("span", { class: "tab-icon", "aria-hidden": "true" }),
        h("span", { class: "tab-label", text: t(`tab_${name}`) }),
        this.badges[name] ?? null,
      ),
    );
    this.nav = h("nav", { class: "tabs", "aria-label": t("main_nav") }, h("div", { role: "tablist", "aria-label": t("main_nav") }, tabs));
    this.root.replaceChildren(
      h(
        "div",
        { class: "shell" },
        h("header", { class: "top" }, this.title, this.status, h("button", { type: "button", class: "link lang", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang })),
        h("main", { class: "content" }, this.panel),
        this.nav,
      ),
    );
    this.renderStatus();
    for (const [name, n] of Object.entries(this.counts)) this.setBadge(name, n);
    this.show();
  }

  renderStatus() {
    if (!this.status) return;
    this.status.textContent = this.connection === "open" ? "" : t(`state_${this.connection}`);
    this.status.dataset.state = this.connection;
    this.root.dataset.connection = this.connection;
  }

  /** @param {number} total unread messages over all conversations */
  setUnread(total) {
    if (!this.badge) return;
    this.badge.hidden = total <= 0;
    this.badge.textContent = total > 99 ? "99+" : String(total);
    this.badge.setAttribute("aria-label", t("unread", { n: total }));
  }

  /** The unread badge of tab `name` (Discover, Services). @param {string} name @param {number} total */
  setBadge(name, total) {
    this.counts[name] = total;
    const badge = this.badges?.[name];
    if (!badge) return;
    badge.hidden = total <= 0;
    badge.textContent = total > 99 ? "99+" : String(total);
    badge.setAttribute("aria-label", t("unread", { n: total }));
  }

  /** @param {string} name */
  select(name) {
    if (this.tab === name) {
      if (name === "messages") this.messages.closeChat();
      else if (name === "services" && this.services.view !== "menu") this.services.go("menu");
      return;
    }
    this.tab = name;
    for (const tab of this.nav.querySelectorAll('[role="tab"]')) {
      const on = tab.id === `tab-${name}`;
      tab.setAttribute("aria-selected", String(on));
      tab.setAttribute("tabindex", on ? "0" : "-1");
    }
    this.show();
  }

  /** @param {KeyboardEvent} event @param {string} name */
  arrow(event, name) {
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    event.preventDefault();
    const next = TABS[(TABS.indexOf(name) + step + TABS.length) % TABS.length];
    this.select(next);
    /** @type {HTMLElement} */ (this.nav.querySelector(`#tab-${next}`)).focus();
  }

  show() {
    this.panel.setAttribute("aria-labelledby", `tab-${this.tab}`);
    this.title.textContent = this.tab === "messages" ? t("tab_messages") : t(`tab_${this.tab}`);
    if (this.tab !== "messages") this.messages.unmount();
    if (this.tab !== "discover") this.discover.unmount();
    if (this.tab !== "services") this.services.unmount();
    if (this.tab === "messages") this.messages.mount(this.panel);
    else if (this.tab === "discover") this.discover.mount(this.panel);
    else if (this.tab === "services") this.services.mount(this.panel);
    else renderMe(this.panel, this.session, () => this.signOut());
  }

  /** The header title (the chat shows the peer's name). @param {string} text */
  setTitle(text) {
    this.title.textContent = text;
  }
}
