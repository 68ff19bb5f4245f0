// The embeddable service widget (docs/widget.md): exchanging a partner's signed visitor
// token for a visitor session.
//
// A partner's backend mints a short-lived `bhw1.<payload>.<signature>` token for its
// signed-in user; whoever holds it (the hub's widget frame, a native app's own chat screen)
// exchanges it once, with `POST /v1/widget/sessions`, for a bearer token of a visitor who may
// use the service desk only. No cookie is involved (third-party cookies and storage may be
// blocked inside a frame): the session lives in memory, in token mode.

import { HubError, HubSession } from "./client.js";

/** The visitor-token format this SDK reads (`bhw1.<payload>.<signature>`). */
export const VISITOR_TOKEN_PREFIX = "bhw1";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The partner id a visitor token names (its payload's `p`), or null when the token does not
 * have the visitor-token shape. Not a verification: the hub checks the signature.
 * @param {string} token
 * @returns {string | null}
 */
export function tokenPartnerId(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3 || parts[0] !== VISITOR_TOKEN_PREFIX || !/^[A-Za-z0-9_-]+$/.test(parts[1])) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const payload = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    const p = payload && typeof payload === "object" ? payload.p : null;
    return typeof p === "string" && UUID.test(p) ? p : null;
  } catch {
    return null;
  }
}

/**
 * @typedef {object} VisitorSession
 * @property {HubSession} session  token mode: use it with `Client.connect(session, ...)` and `session.request`
 * @property {string} sessionId
 * @property {string} expiresAt  ISO 8601
 * @property {string} partner  the partner's name
 */

/**
 * Exchange a visitor token for a visitor session (`POST /v1/widget/sessions`; no cookie, no
 * cache). Each token is exchanged once. Throws HubError: `400` malformed, `401`
 * `invalid_visitor_token` / `visitor_token_expired` / `visitor_token_replayed`, `403`
 * `forbidden` (the partner or visitor is disabled), `429`, or `network_error`.
 * @param {string} base  the hub's URL; "" for the page's own origin
 * @param {string | null | undefined} partnerId  the partner's id; null: the one the token names
 * @param {string} token  the partner's signed visitor token
 * @param {import("./client.js").SessionOptions} [options]  `fetch` (default: the global fetch), `origin`
 * @returns {Promise<VisitorSession>}
 */
export async function openVisitorSession(base, partnerId, token, options = {}) {
  const partner_id = partnerId || tokenPartnerId(token);
  if (!partner_id) throw new HubError("invalid_visitor_token", "not a visitor token naming a partner", { status: 0 });
  // an anonymous token-mode session: no Authorization (none yet), credentials omitted
  const anon = new HubSession({ base, options, mode: "token" });
  const body = /** @type {{token: string, session_id: string, expires_at: string, user: import("./client.js").User, partner: string}} */ (
    await anon.request("POST", "/v1/widget/sessions", { partner_id, token })
  );
  const session = new HubSession({ base, options, mode: "token", token: body.token, user: body.user, expiresAt: body.expires_at });
  return { session, sessionId: body.session_id, expiresAt: body.expires_at, partner: body.partner };
}
