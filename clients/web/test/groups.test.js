// groups.js: the HTTP calls it makes, the member list over every page, and the group
// events in the reader's language.
import { test } from "node:test";
import assert from "node:assert/strict";

import { GROUP_EVENTS, createGroup, groupEventText, isGroupEvent, leaveGroup, listMembers, removeMember, setMemberRole } from "../src/groups.js";
import * as entry from "../src/bankhub.js";

/** A session that records requests and answers from `answers` in order. */
function fakeSession(answers = []) {
  const calls = [];
  return {
    calls,
    async request(method, path, body) {
      calls.push([method, path, body]);
      return answers.shift() ?? {};
    },
  };
}

test("the entry module exports the group calls", () => {
  for (const name of ["createGroup", "createOrgGroup", "listMembers", "leaveGroup", "groupEventText", "GROUP_EVENTS"]) assert.ok(entry[name], name);
});

test("calls go to the documented paths, path segments encoded", async () => {
  const s = fakeSession();
  await createGroup(s, "周末", ["c.zhang"]);
  await removeMember(s, "c/1", "c.zhou");
  await setMemberRole(s, "c1", "c.zhang", "admin");
  await leaveGroup(s, "c1");
  assert.deepEqual(s.calls, [
    ["POST", "/v1/groups", { title: "周末", members: ["c.zhang"] }],
    ["DELETE", "/v1/groups/c%2F1/members/c.zhou", undefined],
    ["PUT", "/v1/groups/c1/members/c.zhang/role", { role: "admin" }],
    ["POST", "/v1/groups/c1/leave", undefined],
  ]);
});

test("listMembers follows next_cursor to the last page and stops at maxPages", async () => {
  const a = { user_id: "1", username: "a", display_name: "A", role: "owner" };
  const b = { user_id: "2", username: "b", display_name: "B", role: "member" };
  const s = fakeSession([{ members: [a], next_cursor: "k 1" }, { members: [b], next_cursor: null }]);
  assert.deepEqual(await listMembers(s, "c1"), [a, b]);
  assert.equal(s.calls[1][1], "/v1/groups/c1/members?limit=200&cursor=k%201");
  const endless = { request: async () => ({ members: [a], next_cursor: "again" }) };
  assert.equal((await listMembers(endless, "c1", 3)).length, 3);
});

test("group events are told apart and shown in the reader's language", () => {
  const t = (key, vars = {}) => `${key}:${JSON.stringify(vars)}`;
  const left = { kind: "system", event: "group_member_left", text: "Li left", data: { actor_name: "Li" } };
  assert.ok(isGroupEvent(left));
  assert.equal(groupEventText(left, t), 'group_ev_left:{"who":"Li"}');
  const joined = { kind: "system", event: "group_members_added", text: "x", data: { names: "Zhang", reason: "org" } };
  assert.equal(groupEventText(joined, t), 'group_ev_joined:{"names":"Zhang"}');
  assert.equal(groupEventText({ kind: "system", event: "bot_answer", text: "hi" }, t), null);
  assert.equal(groupEventText({ kind: "text", text: "group_renamed" }, t), null);
  assert.equal(GROUP_EVENTS.length, 7);
});
