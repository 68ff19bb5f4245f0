// Groups (hub feature `groups.admin`): the HTTP calls, and what a group's `system`
// messages say about its members.
//
// Membership changes reach devices live: `conversation_added` / `conversation_removed`
// (Client events) to whoever gained or lost the group, and a `system` message in the group
// whose `event` is one of GROUP_EVENTS, which every member sees live and through sync. A
// member list on screen is refreshed (listMembers) when such a message arrives.

/**
 * @typedef {object} Group
 * @property {string} conversation_id
 * @property {string | null} title
 * @property {string | null} org the org code of an org group; null: a hand-made group
 * @property {"owner" | "admin" | "member" | null} my_role null: an org group's administrator who is no member
 * @property {number} members
 * @property {number | null} max_members null: an org group (it follows the org tree)
 */

/**
 * @typedef {object} GroupMember
 * @property {string} user_id
 * @property {string} username
 * @property {string} display_name
 * @property {"owner" | "admin" | "member"} role
 */

/**
 * @typedef {object} SessionLike
 * @property {(method: string, path: string, body?: unknown) => Promise<any>} request
 */

/** The `event` codes of the `system` messages groups carry (docs/protocol.md, "Groups"). */
export const GROUP_EVENTS = Object.freeze([
  "group_created",
  "group_renamed",
  "group_members_added",
  "group_member_removed",
  "group_member_left",
  "group_role_changed",
  "group_owner_changed",
]);

/** Whether a message body is a group change (members, roles or title). @param {{kind?: string, event?: string} | null | undefined} body */
export function isGroupEvent(body) {
  return !!body && body.kind === "system" && typeof body.event === "string" && GROUP_EVENTS.includes(body.event);
}

/**
 * The text of a group's system message in the reader's language, from its event code and
 * data (null: not a group event): `t(key, vars)` looks up the strings `group_ev_created`,
 * `group_ev_renamed`, `group_ev_invited`, `group_ev_joined`, `group_ev_removed`,
 * `group_ev_departed`, `group_ev_left`, `group_ev_admin`, `group_ev_not_admin`,
 * `group_ev_owner` (placeholders `{who}`, `{name}`, `{names}`, `{title}`); an event of a
 * later version falls back to the hub's own `text`.
 * @param {any} body @param {(key: string, vars?: Record<string, unknown>) => string} t
 * @returns {string | null}
 */
export function groupEventText(body, t) {
  if (!isGroupEvent(body)) return null;
  const d = body.data ?? {};
  const who = d.actor_name ?? "";
  switch (body.event) {
    case "group_created":
      return t("group_ev_created", { who, title: d.title ?? "" });
    case "group_renamed":
      return t("group_ev_renamed", { who, title: d.title ?? "" });
    case "group_members_added":
      return who ? t("group_ev_invited", { who, names: d.names ?? "" }) : t("group_ev_joined", { names: d.names ?? "" });
    case "group_member_removed":
      return who ? t("group_ev_removed", { who, name: d.name ?? "" }) : t("group_ev_departed", { name: d.name ?? "" });
    case "group_member_left":
      return t("group_ev_left", { who });
    case "group_role_changed":
      return d.role === "admin" ? t("group_ev_admin", { who, name: d.name ?? "" }) : t("group_ev_not_admin", { name: d.name ?? "" });
    case "group_owner_changed":
      return t("group_ev_owner", { name: d.name ?? "" });
    default:
      return body.text;
  }
}

/** @param {string} conversationId */
function path(conversationId) {
  return `/v1/groups/${encodeURIComponent(conversationId)}`;
}

/** POST /v1/groups: a group I own with `usernames` (a customer: their contacts). @param {SessionLike} session @param {string} title @param {string[]} usernames @returns {Promise<Group>} */
export function createGroup(session, title, usernames) {
  return session.request("POST", "/v1/groups", { title, members: usernames });
}

/** POST /v1/org-groups (administrators): all active staff of `org` and below. @param {SessionLike} session @param {string} title @param {string} org @returns {Promise<Group>} */
export function createOrgGroup(session, title, org) {
  return session.request("POST", "/v1/org-groups", { title, org });
}

/** GET /v1/groups/{id}. @param {SessionLike} session @param {string} conversationId @returns {Promise<Group>} */
export function getGroup(session, conversationId) {
  return session.request("GET", path(conversationId));
}

/** PUT /v1/groups/{id}/title (owner and admins). @param {SessionLike} session @param {string} conversationId @param {string} title @returns {Promise<Group>} */
export function renameGroup(session, conversationId, title) {
  return session.request("PUT", `${path(conversationId)}/title`, { title });
}

/** POST /v1/groups/{id}/members (owner and admins). @param {SessionLike} session @param {string} conversationId @param {string[]} usernames @returns {Promise<Group>} */
export function inviteMembers(session, conversationId, usernames) {
  return session.request("POST", `${path(conversationId)}/members`, { members: usernames });
}

/** DELETE /v1/groups/{id}/members/{username}. @param {SessionLike} session @param {string} conversationId @param {string} username @returns {Promise<Group>} */
export function removeMember(session, conversationId, username) {
  return session.request("DELETE", `${path(conversationId)}/members/${encodeURIComponent(username)}`);
}

/** PUT /v1/groups/{id}/members/{username}/role (the owner; "owner" hands ownership on). @param {SessionLike} session @param {string} conversationId @param {string} username @param {"owner" | "admin" | "member"} role @returns {Promise<Group>} */
export function setMemberRole(session, conversationId, username, role) {
  return session.request("PUT", `${path(conversationId)}/members/${encodeURIComponent(username)}/role`, { role });
}

/** POST /v1/groups/{id}/leave. @param {SessionLike} session @param {string} conversationId @returns {Promise<void>} */
export async function leaveGroup(session, conversationId) {
  await session.request("POST", `${path(conversationId)}/leave`);
}

/**
 * GET /v1/groups/{id}/members, every page (at most `maxPages` of 200), in join order.
 * @param {SessionLike} session @param {string} conversationId @param {number} [maxPages]
 * @returns {Promise<GroupMember[]>}
 */
export async function listMembers(session, conversationId, maxPages = 50) {
  /** @type {GroupMember[]} */
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const q = cursor ? `?limit=200&cursor=${encodeURIComponent(cursor)}` : "?limit=200";
    const page = await session.request("GET", `${path(conversationId)}/members${q}`);
    out.push(...page.members);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return out;
}
