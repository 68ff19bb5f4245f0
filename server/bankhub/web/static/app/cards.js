// Service cards (an offer, a bill reminder, an appointment) and the "verified by the bank"
// badge of cards and official-account notices.
//
// The hub signs every card when it stores it and every notice when it publishes it; this
// module checks the signature in the browser (WebCrypto Ed25519, through the SDK's
// verifyCard / verifyNotice with the keys of GET /v1/signing-keys). The badge
// "已验证 · 工商银行 / Verified by the bank" is shown only when the signature verifies for
// exactly this conversation, message, sender and time (notices: account, notice and body);
// a card that does not verify — a copy moved from another chat, altered, or made up — says
// so instead and its actions are disabled. Action buttons are links: `bankhub://` deep links are handled in the app,
// `https://` links open in a new tab with rel="noopener noreferrer". A card gated to account
// classes shows its actions disabled, with the reason, to a customer of another class.
// Card images are not loaded by the web app (its Content-Security-Policy loads no images
// from other origins); native clients show them.

import { SigningKeys, canonicalJson, cardActionsAllowed, cardLinkAllowed, cardLinkHost, verifyCard, verifyNotice } from "/static/sdk/bankhub.js";
import { h } from "./dom.js";

/** @type {WeakMap<object, SigningKeys>} one key set per signed-in session */
const KEYS = new WeakMap();
/** @type {Map<string, Promise<boolean>>} verification outcomes, by everything a signature covers */
const VERIFIED = new Map();
const MAX_REMEMBERED = 2000;

/** @param {any} session @returns {SigningKeys} */
export function signingKeys(session) {
  let keys = KEYS.get(session);
  if (!keys) {
    keys = new SigningKeys(session);
    KEYS.set(session, keys);
  }
  return keys;
}

/** @param {string} key @param {() => Promise<boolean>} check @returns {Promise<boolean>} */
function remembered(key, check) {
  let p = VERIFIED.get(key);
  if (!p) {
    if (VERIFIED.size >= MAX_REMEMBERED) VERIFIED.delete(/** @type {string} */ (VERIFIED.keys().next().value));
    p = check();
    VERIFIED.set(key, p);
  }
  return p;
}

/** Is this a card body? @param {any} body */
export function isCardBody(body) {
  return body?.kind === "card";
}

/**
 * The badge of a signed item: empty until the check resolves; then "verified" or "not verified".
 * @param {Promise<boolean>} check
 * @param {(key: string) => string} t
 * @param {HTMLElement} holder gets data-verified="true" / "false"
 * @param {boolean} [quietWhenUnsigned] notices published before signing existed carry no signature: say nothing
 */
function badge(check, t, holder, quietWhenUnsigned = false) {
  const el = h("p", { class: "verified-badge", role: "status", hidden: true });
  check.then((ok) => {
    holder.dataset.verified = String(ok);
    if (ok) {
      el.className = "verified-badge ok";
      el.textContent = t("card_verified");
    } else if (!quietWhenUnsigned) {
      el.className = "verified-badge not";
      el.textContent = t("card_unverified");
    } else {
      return;
    }
    el.hidden = false;
  });
  return el;
}

/**
 * @param {any} url
 * @returns {string | null} the URL when it is an https:// link to a plain host (the hub's host rule,
 *   see the SDK's cardLinkHost) that the browser reads as that very host, else null
 */
function httpsUrl(url) {
  const host = cardLinkHost(url);
  if (host === null) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" && parsed.hostname === host && !parsed.port && !parsed.username ? url : null;
  } catch {
    return null;
  }
}

export class CardView {
  /**
   * @param {{session: any, t: (key: string, vars?: Record<string, any>) => string, onDeepLink?: (url: string) => boolean}} o
   *   `onDeepLink`: handle a `bankhub://` link in the app (true: handled)
   */
  constructor(o) {
    this.session = o.session;
    this.t = o.t;
    this.onDeepLink = o.onDeepLink ?? (() => false);
    this.keys = signingKeys(o.session);
    const user = o.session.user ?? {};
    this.customer = user.role === "customer";
    /** @type {string | null} my account class (customers), once known */
    this.accountClass = null;
    /** @type {Promise<string | null>} */
    this.classKnown = this.customer
      ? o.session
          .request("GET", `/v1/customers/${encodeURIComponent(user.username)}/card`)
          .then((/** @type {any} */ r) => (this.accountClass = r?.customer?.account_class ?? null))
          .catch(() => null)
      : Promise.resolve(null);
  }

  /** @param {any} m a message whose body is a card @returns {Promise<boolean>} */
  verified(m) {
    const key = `card|${m.conversation_id}|${m.message_id}|${m.sender_id}|${m.ts}|${canonicalJson(m.body)}`;
    return remembered(key, () => verifyCard(m, this.keys));
  }

  /**
   * The card of message `m`.
   * @param {any} m
   * @returns {HTMLElement}
   */
  render(m) {
    const t = this.t;
    const card = m.body ?? {};
    const gate = Array.isArray(card.classes) ? card.classes : [];
    const el = h("div", { class: `svc-card card-${String(card.template ?? "offer")}`, role: "group", "aria-label": `${t(`card_${card.template}`)}：${card.title ?? ""}` });
    const title = h("h3", { class: "card-title", text: card.title ?? "" });
    const kind = h("p", { class: "card-kind", text: t(`card_${card.template}`) });
    const fields = Array.isArray(card.fields) && card.fields.length
      ? h("dl", { class: "card-fields" }, card.fields.flatMap((/** @type {any} */ f) => [h("dt", { text: f.label }), h("dd", { text: f.value })]))
      : "";
    const reason = h("p", { class: "card-gate", hidden: gate.length === 0, text: gate.length ? t("card_classes_only", { classes: gate.join(" / ") }) : "" });
    const actions = h("div", { class: "card-actions" });
    const note = h("p", { class: "card-note", role: "status" });
    // no live link until the signature verifies: a card the bank did not sign (or not yet
    // checked) is never acted on from here, its links may be a phishing copy's
    let verified = false;
    const drawActions = () => {
      const classOk = !this.customer || cardActionsAllowed(card, this.accountClass);
      const list = Array.isArray(card.actions) ? card.actions : [];
      actions.replaceChildren(...list.map((/** @type {any} */ a) => this.action(a, classOk && verified, note)));
      if (!classOk) reason.textContent = t("card_not_for_class", { classes: gate.join(" / "), mine: this.accountClass ?? t("none") });
    };
    drawActions();
    if (this.customer && gate.length) this.classKnown.then(drawActions);
    const check = this.verified(m);
    check.then((ok) => {
      if (ok) {
        verified = true;
        drawActions();
      }
    });
    el.append(kind, title, fields, reason, actions, note, badge(check, t, el));
    return el;
  }

  /** @param {any} a an action @param {boolean} allowed @param {HTMLElement} note @returns {HTMLElement} */
  action(a, allowed, note) {
    const label = String(a?.label ?? "");
    const url = String(a?.url ?? "");
    // a link off the hub's host rule is never live, even on a verified card (an older hub signed looser links)
    if (!allowed || !cardLinkAllowed(url)) {
      return h("button", { type: "button", class: "card-action", disabled: true, "aria-disabled": "true", text: label });
    }
    if (url.startsWith("bankhub://")) {
      return h("a", {
        class: "button card-action",
        href: url,
        "data-deep-link": "true",
        text: label,
        onclick: (/** @type {Event} */ e) => {
          e.preventDefault();
          note.textContent = this.onDeepLink(url) ? "" : this.t("card_opens_in_app");
        },
      });
    }
    const https = httpsUrl(url);
    if (!https) return h("button", { type: "button", class: "card-action", disabled: true, text: label });
    return h("a", { class: "button card-action", href: https, target: "_blank", rel: "noopener noreferrer", text: label });
  }
}

/**
 * The badge of an official-account notice: "verified" when its signature verifies; nothing for
 * an unsigned notice (published before the hub signed notices); "not verified" for a bad one.
 * @param {any} session @param {any} n a notice @param {(key: string) => string} t @param {HTMLElement} holder
 * @returns {HTMLElement}
 */
export function noticeBadge(session, n, t, holder) {
  const keys = signingKeys(session);
  const key = `notice|${n.account_id}|${n.notice_id}|${canonicalJson(n.body ?? null)}|${canonicalJson(n.signature ?? null)}`;
  return badge(remembered(key, () => verifyNotice(n, keys)), t, holder, !n.signature);
}

/** The app's tabs a `bankhub://<tab>` deep link opens. */
const TAB_LINKS = ["messages", "discover", "services", "me"];

/**
 * Handle a `bankhub://` deep link in the app: `bankhub://<tab>/...` selects that tab; other
 * links belong to the bank's native app (false: not handled here).
 * @param {{select: (name: string) => void}} shell @param {string} url @returns {boolean}
 */
export function openDeepLink(shell, url) {
  let host = "";
  try {
    host = new URL(url).host;
  } catch {
    return false;
  }
  if (!TAB_LINKS.includes(host)) return false;
  shell.select(host);
  return true;
}
