// The staff workbench's entry: restore the browser session (cookie) or sign in, then show
// the sections the signed-in role may use. Which sections are shown is a convenience only:
// every call is decided again by the hub's policy, which answers 403 to anyone else.

import { Client } from "/static/sdk/bankhub.js";
import { h } from "../app/dom.js";
import { renderSignIn, resumeSession } from "../app/signin.js";
import { onLangChange, t, toggleLang } from "./i18n.js";
import { BookView } from "./rm.js";
import { DeskView } from "./agent.js";
import { FiguresView } from "./supervisor.js";
import { HandoverView } from "./handover.js";
import { GroupsView } from "./groups.js";

const root = /** @type {HTMLElement} */ (document.getElementById("staff"));

/** The sections of each role: [key, label key, view class, needs a live connection]. */
const GROUPS = ["groups", "tab_groups", GroupsView]; // staff groups and org groups
const SECTIONS = {
  rm: [["book", "tab_book", BookView], GROUPS],
  agent: [["desk", "tab_desk", DeskView], GROUPS],
  head_office_admin: [["figures", "tab_figures", FiguresView], ["handover", "tab_handover", HandoverView]],
  branch_admin: [["handover", "tab_handover", HandoverView]],
  staff: [GROUPS],
};
// administrators get the Groups section once they are in a group (an org group of their org)
const GROUPS_IF_MEMBER = new Set(["head_office_admin", "branch_admin"]);

/** Whether the user is a member of any group. @param {any} session */
async function inGroups(session) {
  try {
    const list = await session.request("GET", "/v1/conversations?limit=200");
    return list.conversations.some((/** @type {any} */ c) => c.kind === "group");
  } catch {
    return false;
  }
}
const LIVE_ROLES = new Set(["rm", "agent"]);

/** @type {Workbench | null} */
let bench = null;
/** @type {(() => void) | null} */
let rerender = null;

function langButton() {
  return h("button", { type: "button", class: "link lang", lang: t("language") === "English" ? "en" : "zh-CN", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang });
}

function showSignIn() {
  bench = null;
  rerender = showSignIn;
  renderSignIn(root, start, { t, heading: "title", iconSize: "64", langButton });
}

/** A customer (or any role without a section) signed in: say so, offer sign-out. @param {any} session */
function showRefused(session) {
  rerender = () => showRefused(session);
  const customer = session.user.role === "customer";
  root.replaceChildren(
    h(
      "main",
      { class: "signin-page" },
      h("h1", { text: t("title") }),
      h("p", { class: "refused", role: "alert", text: customer ? t("staff_only") : t("no_workbench") }),
      customer ? h("p", {}, h("a", { href: "/app/", text: t("open_app") })) : "",
      h("button", { type: "button", class: "secondary", text: t("sign_out"), onclick: () => signOut(session, null) }),
      langButton(),
    ),
  );
}

/** @param {any} session @param {any} client */
async function signOut(session, client) {
  if (client) client.close();
  try {
    await session.signOut();
  } finally {
    showSignIn();
  }
}

class Workbench {
  /** @param {any} session @param {any} client @param {Array<[string, string, any]>} sections */
  constructor(session, client, sections) {
    this.session = session;
    this.client = client;
    this.sections = sections;
    /** @type {Map<string, any>} key -> view (kept across tab switches, so live state is not lost) */
    this.views = new Map();
    this.current = sections[0][0];
    this.connection = client ? "connecting" : "open";
    if (client) {
      client.addEventListener("state", (/** @type {any} */ e) => {
        this.connection = e.detail?.state ?? "connecting";
        this.renderStatus();
      });
      this.network = () => client.reconnect();
      window.addEventListener("offline", this.network);
      window.addEventListener("online", this.network);
    }
    /** @type {any} the view on screen (unmounted before another is, or the same one again) */
    this.mounted = null;
    this.render();
  }

  /** @param {string} key */
  view(key) {
    let view = this.views.get(key);
    if (!view) {
      const entry = /** @type {[string, string, any]} */ (this.sections.find((s) => s[0] === key));
      view = new entry[2](this);
      this.views.set(key, view);
    }
    return view;
  }

  render() {
    const user = this.session.user;
    this.status = h("p", { class: "conn", role: "status", "aria-live": "polite" });
    const tabs = this.sections.map(([key, label]) =>
      h("button", {
        type: "button",
        role: "tab",
        id: `tab-${key}`,
        "aria-controls": "panel",
        "aria-selected": key === this.current ? "true" : "false",
        tabindex: key === this.current ? "0" : "-1",
        text: t(label),
        onclick: () => this.select(key),
      }),
    );
    const tablist = h("div", { role: "tablist", class: "tabs", "aria-label": t("sections") }, tabs);
    tablist.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
      const i = this.sections.findIndex((s) => s[0] === this.current);
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      e.preventDefault();
      const next = this.sections[(i + step + this.sections.length) % this.sections.length][0];
      this.select(next);
      /** @type {HTMLElement | null} */ (root.querySelector(`#tab-${next}`))?.focus();
    });
    this.panel = h("main", { id: "panel", role: "tabpanel", class: "panel", "aria-labelledby": `tab-${this.current}`, tabindex: "-1" });
    root.replaceChildren(
      h(
        "div",
        { class: "bench" },
        h(
          "header",
          { class: "top" },
          h("p", { class: "brand-name", text: t("title") }),
          tablist,
          h("div", { class: "who" }, h("span", { class: "me", text: `${user.display_name} · ${t(`role_${user.role}`)}` }), this.status, langButton(), h("button", { type: "button", class: "secondary", text: t("sign_out"), onclick: () => this.signOut() })),
        ),
        this.panel,
      ),
    );
    this.renderStatus();
    this.mounted?.unmount?.();
    this.mounted = this.view(this.current);
    this.mounted.mount(this.panel);
  }

  renderStatus() {
    if (!this.status) return;
    this.status.textContent = this.client ? t(`state_${this.connection}`) : "";
    this.status.className = `conn ${this.connection}`;
  }

  /** @param {string} key */
  select(key) {
    if (key === this.current) return;
    this.current = key;
    this.render();
  }

  async signOut() {
    for (const view of this.views.values()) view.unmount?.();
    for (const view of this.views.values()) view.close?.(); // connections views opened themselves
    if (this.network) {
      window.removeEventListener("offline", this.network);
      window.removeEventListener("online", this.network);
    }
    await signOut(this.session, this.client);
  }
}

/** @param {any} session */
async function start(session) {
  let sections = /** @type {any} */ (SECTIONS)[session.user.role];
  if (!sections) {
    showRefused(session);
    return;
  }
  if (GROUPS_IF_MEMBER.has(session.user.role) && (await inGroups(session))) sections = [...sections, GROUPS];
  const client = LIVE_ROLES.has(session.user.role) ? Client.connect(session) : null;
  bench = new Workbench(session, client, sections);
  rerender = () => bench?.render();
}

onLangChange(() => rerender?.());

resumeSession(start, showSignIn);
