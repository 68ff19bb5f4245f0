// Verified service cards and signed notices: the hub signs every `card` message at commit and
// every official-account notice at publication (Ed25519); this module checks those signatures
// in the browser with WebCrypto, against the keys the hub publishes at GET /v1/signing-keys.
//
//   import { SigningKeys, verifyCard, verifyNotice, cardActionsAllowed } from "/static/sdk/bankhub.js";
//   const keys = new SigningKeys(session);                 // fetched once, again for an unknown key id
//   const ok = await verifyCard(message, keys);            // true only if the hub's signature verifies
//   const may = cardActionsAllowed(message.body, "II");    // the card's account-class gate
//
// What is signed (docs/protocol.md, "Verified cards"): the canonical JSON (RFC 8785) of
//   {"ctx": "bankhub.card.v1", "key_id", "conversation_id", "message_id", "sender_id", "ts", "body"}
//   {"ctx": "bankhub.notice.v1", "key_id", "account_id", "notice_id", "body"}
// with `body` as received, minus its `signature`. A card copied into another conversation,
// re-dated, given another sender or altered in any field does not verify: show it unverified.

/** @typedef {{key_id: string, sig: string}} Signature */
/** @typedef {{kty: string, crv: string, kid: string, x: string, status: string}} PublicJwk */

export const CARD_CONTEXT = "bankhub.card.v1";
export const NOTICE_CONTEXT = "bankhub.notice.v1";
/** An unknown key id makes {@link SigningKeys} ask the hub again at most this often (ms). */
export const KEY_REFRESH_MS = 60_000;

/**
 * RFC 8785 canonical JSON for the values cards and notices hold (ASCII keys, integers):
 * members sorted by key, no whitespace, strings as `JSON.stringify` writes them.
 * @param {unknown} value
 * @returns {string}
 */
export function canonicalJson(value) {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError("not a finite number");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const obj = /** @type {Record<string, unknown>} */ (value);
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
}

/** @param {Record<string, unknown>} body */
function unsigned(body) {
  const { signature: _drop, ...rest } = body;
  return rest;
}

/**
 * The bytes a card's signature covers.
 * @param {string} keyId
 * @param {{conversation_id: string, message_id: string, sender_id: string, ts: number, body: any}} m
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function cardPayload(keyId, m) {
  return new TextEncoder().encode(
    canonicalJson({
      ctx: CARD_CONTEXT,
      key_id: keyId,
      conversation_id: m.conversation_id,
      message_id: m.message_id,
      sender_id: m.sender_id,
      ts: m.ts,
      body: unsigned(m.body ?? {}),
    }),
  );
}

/**
 * The bytes a notice's signature covers.
 * @param {string} keyId
 * @param {{account_id: string, notice_id: string, body: any}} n
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function noticePayload(keyId, n) {
  return new TextEncoder().encode(
    canonicalJson({ ctx: NOTICE_CONTEXT, key_id: keyId, account_id: n.account_id, notice_id: n.notice_id, body: unsigned(n.body ?? {}) }),
  );
}

/** @param {string} text unpadded base64url @returns {Uint8Array<ArrayBuffer> | null} */
export function fromBase64Url(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  try {
    const bin = atob(b64);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/**
 * The hub's public signing keys (`GET /v1/signing-keys`, no sign-in needed), imported for
 * WebCrypto's Ed25519 once each. A key id not known yet makes it ask again (at most every
 * {@link KEY_REFRESH_MS}), so a rotated key is picked up.
 */
export class SigningKeys {
  /** @param {{request: (method: string, path: string) => Promise<unknown>}} session a HubSession (or anything with its `request`) */
  constructor(session) {
    this.session = session;
    /** @type {Map<string, Promise<CryptoKey | null>>} */
    this._keys = new Map();
    /** @type {Promise<void> | null} */
    this._loading = null;
    this._loadedAt = -Infinity;
  }

  /** @returns {Promise<void>} */
  _load() {
    if (!this._loading) {
      this._loadedAt = Date.now();
      this._loading = this.session
        .request("GET", "/v1/signing-keys")
        .then((/** @type {any} */ r) => {
          for (const jwk of /** @type {PublicJwk[]} */ (r?.keys ?? [])) {
            if (this._keys.has(jwk.kid) || jwk.kty !== "OKP" || jwk.crv !== "Ed25519") continue;
            const raw = fromBase64Url(jwk.x);
            this._keys.set(
              jwk.kid,
              raw && raw.length === 32
                ? crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]).catch(() => null)
                : Promise.resolve(null),
            );
          }
        })
        .catch(() => {})
        .finally(() => {
          this._loading = null;
        });
    }
    return this._loading;
  }

  /**
   * The key with this id, or null (unknown to the hub, or WebCrypto cannot import it).
   * @param {string} keyId
   * @returns {Promise<CryptoKey | null>}
   */
  async key(keyId) {
    if (!this._keys.has(keyId) && (this._loadedAt === -Infinity || Date.now() - this._loadedAt >= KEY_REFRESH_MS)) await this._load();
    else if (this._loading) await this._loading;
    return (await this._keys.get(keyId)) ?? null;
  }
}

/**
 * @param {{key: (id: string) => Promise<CryptoKey | null>}} keys
 * @param {unknown} signature
 * @param {(keyId: string) => Uint8Array<ArrayBuffer>} payload
 * @returns {Promise<boolean>}
 */
async function verifySigned(keys, signature, payload) {
  const s = /** @type {Signature | null} */ (signature && typeof signature === "object" ? signature : null);
  if (!s || typeof s.key_id !== "string" || typeof s.sig !== "string") return false;
  const sig = fromBase64Url(s.sig);
  if (!sig || sig.length !== 64) return false;
  const key = await keys.key(s.key_id);
  if (!key) return false;
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, payload(s.key_id));
  } catch {
    return false;
  }
}

/**
 * Does this card message carry the hub's valid signature for exactly this conversation,
 * message id, sender and time? Never throws.
 * @param {any} message a message whose `body.kind` is "card"
 * @param {{key: (id: string) => Promise<CryptoKey | null>}} keys a {@link SigningKeys}
 * @returns {Promise<boolean>}
 */
export async function verifyCard(message, keys) {
  if (!message || message.body?.kind !== "card") return false;
  try {
    return await verifySigned(keys, message.body.signature, (keyId) => cardPayload(keyId, message));
  } catch {
    return false;
  }
}

/**
 * Does this notice carry the hub's valid signature for exactly this account, notice id and body?
 * @param {any} notice
 * @param {{key: (id: string) => Promise<CryptoKey | null>}} keys
 * @returns {Promise<boolean>}
 */
export async function verifyNotice(notice, keys) {
  if (!notice || !notice.body || notice.recalled) return false;
  try {
    return await verifySigned(keys, notice.signature, (keyId) => noticePayload(keyId, notice));
  } catch {
    return false;
  }
}

/**
 * May a customer of `accountClass` act on this card? A card without `classes`: everyone;
 * with one, only a customer whose class is listed (a user without a class: no).
 * @param {any} card
 * @param {string | null | undefined} accountClass
 * @returns {boolean}
 */
export function cardActionsAllowed(card, accountClass) {
  const gate = Array.isArray(card?.classes) ? card.classes : [];
  return gate.length === 0 || (typeof accountClass === "string" && gate.includes(accountClass));
}

/** Longest card link or image URL the hub accepts. */
export const MAX_LINK_CHARS = 2048;
const LINK_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;

/**
 * The host a browser opens for a card link when it is a plain `<scheme>://host/...` URL, else
 * null — the hub's rule (bankhub.protocol.cards.link_host): printable ASCII only, no `\` anywhere
 * (a browser reads it as `/`: `https://evil.example\.bank.com` opens evil.example), exactly
 * `<scheme>://` in lowercase, and an authority (up to the first `/`, `?` or `#`) that is a plain
 * lowercase DNS name — no userinfo, port, percent-escape, trailing dot, IPv4/IPv6 literal.
 * @param {unknown} url @param {string} [scheme] @returns {string | null}
 */
export function cardLinkHost(url, scheme = "https") {
  if (typeof url !== "string" || url.length > MAX_LINK_CHARS || !/^[\x21-\x7e]*$/.test(url) || url.includes("\\")) return null;
  const prefix = `${scheme}://`;
  if (!url.startsWith(prefix)) return null;
  const rest = url.slice(prefix.length);
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  if (!authority || authority.length > 253) return null;
  const labels = authority.split(".");
  if (!labels.every((l) => LINK_LABEL.test(l)) || NUMERIC_LABEL.test(labels[labels.length - 1])) return null;
  return authority;
}

/**
 * May a card link be made clickable? A `bankhub://` deep link, or an `https://` link whose
 * host ({@link cardLinkHost}) is plain and — when `domains` is given — one of `domains` or a
 * subdomain of one. Show a link only on a card whose signature verifies: the hub checked its
 * host against its allow-list before signing it.
 * @param {unknown} url @param {string[]} [domains] @returns {boolean}
 */
export function cardLinkAllowed(url, domains) {
  if (typeof url === "string" && url.startsWith("bankhub://")) return cardLinkHost(url, "bankhub") !== null;
  const host = cardLinkHost(url);
  if (host === null) return false;
  if (domains === undefined) return true;
  return domains.some((d) => {
    const domain = String(d).toLowerCase().replace(/^\.+|\.+$/g, "");
    return domain !== "" && (host === domain || host.endsWith(`.${domain}`));
  });
}
