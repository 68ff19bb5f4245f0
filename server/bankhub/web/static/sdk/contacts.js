// Contacts (hub feature `contacts`): the HTTP calls, and the `contact` event.
//
// A Client emits "contact" (detail: {event, user: {id, username, display_name}, request_id?})
// whenever my contacts change on any device: `request` (someone asks me; accept or decline
// `request_id`), `request_withdrawn`, `accepted` (we are contacts now), `declined` (I declined
// on another device), `removed`, `blocked`, `unblocked`. Refresh a list on screen then.
//
// Asking by username or phone is answered the same whether or not the account exists (the
// hub never tells): a new contact shows up as an `accepted` event, nothing else.

/**
 * @typedef {object} ContactUser
 * @property {string} id
 * @property {string} username
 * @property {string} display_name
 */

/**
 * @typedef {object} Contact
 * @property {ContactUser} user
 * @property {string} since ISO time we became contacts (blocked list: when I blocked them)
 */

/**
 * @typedef {object} IncomingRequest
 * @property {string} id accept or decline by this id
 * @property {ContactUser} user
 * @property {string} created_at
 */

/**
 * @typedef {object} OutgoingRequest
 * @property {string} id withdraw by this id
 * @property {string} handle the username or E.164 phone number I asked
 * @property {string} created_at
 */

/**
 * @typedef {object} Invite
 * @property {string} code show it as text
 * @property {string} link `bankhub://contact/<code>`: show it as a QR code
 * @property {string} expires_at
 */

/**
 * @typedef {object} SessionLike
 * @property {(method: string, path: string, body?: unknown) => Promise<any>} request
 * @property {(path: string, key: string) => Promise<any[]>} all every page of a paged list
 */

/** The link an invite code travels as (in a QR code, or a message). */
export const INVITE_LINK_PREFIX = "bankhub://contact/";

/** The invite code in a scanned or pasted text (a code, or its link), or null. @param {string} text */
export function inviteCodeOf(text) {
  let s = String(text || "").trim();
  if (s.toLowerCase().startsWith(INVITE_LINK_PREFIX)) s = s.slice(INVITE_LINK_PREFIX.length);
  s = s.replace(/[\s-]/g, "").toUpperCase();
  return /^[0-9A-Z]{16}$/.test(s) ? s : null;
}

/** GET /v1/contacts, every page. @param {SessionLike} session @returns {Promise<Contact[]>} */
export function listContacts(session) {
  return session.all("/v1/contacts", "contacts");
}

/** GET /v1/contacts/requests/incoming, every page (newest first). @param {SessionLike} session @returns {Promise<IncomingRequest[]>} */
export function incomingRequests(session) {
  return session.all("/v1/contacts/requests/incoming", "requests");
}

/** GET /v1/contacts/requests/outgoing, every page (newest first). @param {SessionLike} session @returns {Promise<OutgoingRequest[]>} */
export function outgoingRequests(session) {
  return session.all("/v1/contacts/requests/outgoing", "requests");
}

/**
 * POST /v1/contacts/requests: ask by `{username}` or `{phone}` (exactly one). Resolves the
 * same whether or not the account exists.
 * @param {SessionLike} session @param {{username?: string, phone?: string}} who @returns {Promise<void>}
 */
export async function requestContact(session, who) {
  const body = who.username ? { username: who.username } : { phone: who.phone };
  await session.request("POST", "/v1/contacts/requests", body);
}

/** POST /v1/contacts/requests/{id}/accept. @param {SessionLike} session @param {string} requestId @returns {Promise<Contact>} */
export function acceptRequest(session, requestId) {
  return session.request("POST", `/v1/contacts/requests/${encodeURIComponent(requestId)}/accept`);
}

/** POST /v1/contacts/requests/{id}/decline (its sender is not told). @param {SessionLike} session @param {string} requestId @returns {Promise<void>} */
export async function declineRequest(session, requestId) {
  await session.request("POST", `/v1/contacts/requests/${encodeURIComponent(requestId)}/decline`);
}

/** DELETE /v1/contacts/requests/{id}: withdraw a request I sent. @param {SessionLike} session @param {string} requestId @returns {Promise<void>} */
export async function withdrawRequest(session, requestId) {
  await session.request("DELETE", `/v1/contacts/requests/${encodeURIComponent(requestId)}`);
}

/** DELETE /v1/contacts/{user_id}. @param {SessionLike} session @param {string} userId @returns {Promise<void>} */
export async function removeContact(session, userId) {
  await session.request("DELETE", `/v1/contacts/${encodeURIComponent(userId)}`);
}

/** GET /v1/contacts/blocks, every page. @param {SessionLike} session @returns {Promise<Contact[]>} */
export function listBlocked(session) {
  return session.all("/v1/contacts/blocks", "contacts");
}

/** PUT /v1/contacts/blocks/{user_id} (idempotent). @param {SessionLike} session @param {string} userId @returns {Promise<void>} */
export async function blockUser(session, userId) {
  await session.request("PUT", `/v1/contacts/blocks/${encodeURIComponent(userId)}`);
}

/** DELETE /v1/contacts/blocks/{user_id} (idempotent). @param {SessionLike} session @param {string} userId @returns {Promise<void>} */
export async function unblockUser(session, userId) {
  await session.request("DELETE", `/v1/contacts/blocks/${encodeURIComponent(userId)}`);
}

/** POST /v1/contacts/invites: a new single-use, expiring code. @param {SessionLike} session @returns {Promise<Invite>} */
export function createInvite(session) {
  return session.request("POST", "/v1/contacts/invites");
}

/** POST /v1/contacts/invites/revoke: revoke all my codes. @param {SessionLike} session @returns {Promise<{revoked: number}>} */
export function revokeInvites(session) {
  return session.request("POST", "/v1/contacts/invites/revoke");
}

/** POST /v1/contacts/invites/redeem with a code or its link: its owner becomes my contact. @param {SessionLike} session @param {string} code @returns {Promise<Contact>} */
export function redeemInvite(session, code) {
  return session.request("POST", "/v1/contacts/invites/redeem", { code });
}
