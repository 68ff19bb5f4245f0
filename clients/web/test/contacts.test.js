// Contacts: invite codes as scanned or typed, and the QR code of an invite link
// (node --test clients/web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";

import { INVITE_LINK_PREFIX, inviteCodeOf, requestContact } from "../src/contacts.js";
import { qrMatrix, qrSvgPath } from "../src/qr.js";

test("inviteCodeOf: a code or its link, any case, dashes and blanks; anything else is null", () => {
  assert.equal(inviteCodeOf("abcd-efgh-jkmn-pqrs"), "ABCDEFGHJKMNPQRS");
  assert.equal(inviteCodeOf(`${INVITE_LINK_PREFIX}ABCDEFGHJKMNPQRS`), "ABCDEFGHJKMNPQRS");
  assert.equal(inviteCodeOf(" BANKHUB://CONTACT/abcdefghjkmnpqrs "), "ABCDEFGHJKMNPQRS");
  assert.equal(inviteCodeOf("https://evil.example/ABCDEFGHJKMNPQRS"), null);
  assert.equal(inviteCodeOf("short"), null);
  assert.equal(inviteCodeOf(""), null);
});

test("requestContact sends exactly one of username and phone", async () => {
  /** @type {unknown[]} */
  const calls = [];
  const session = { request: async (/** @type {string} */ m, /** @type {string} */ p, /** @type {unknown} */ b) => { calls.push([m, p, b]); return null; }, all: async () => [] };
  await requestContact(session, { username: "c.zhang" });
  await requestContact(session, { phone: "13800000002" });
  assert.deepEqual(calls, [
    ["POST", "/v1/contacts/requests", { username: "c.zhang" }],
    ["POST", "/v1/contacts/requests", { phone: "13800000002" }],
  ]);
});

// version 3-M, mask 0, as a reference encoder draws it (module for module)
const LINK_QR = [
  "11111110010011001010001111111",
  "10000010110000111111001000001",
  "10111010000111101000001011101",
  "10111010000101110111001011101",
  "10111010110010100010001011101",
  "10000010000011000011101000001",
  "11111110101010101010101111111",
  "00000000000001101100000000000",
  "10101010001110111000100010010",
  "10101000000100110101111001111",
  "01011110110011000100110101011",
  "00010001110110000110011010011",
  "01101110101100000000111000010",
  "11010100011111011001101001111",
  "10001010000000101010011100111",
  "01110100100111100101010100000",
  "00001110110010100000111001001",
  "00110101000100111001111000011",
  "10110111001001000110001101111",
  "01110000111100010100100010011",
  "10011111100010000001111110001",
  "00000000110101011001100011011",
  "11111110010110101111101010011",
  "10000010010101110111100011011",
  "10111010101000100000111111001",
  "10111010011000111001000111111",
  "10111010111101001001100010001",
  "10000010011000001110110011010",
  "11111110101110111001110100011"
];

test("qrMatrix draws an invite link exactly as the standard says", () => {
  const m = qrMatrix("bankhub://contact/ABCDEFGHJKMNPQRS");
  assert.deepEqual(m.map((row) => row.map((b) => (b ? "1" : "0")).join("")), LINK_QR);
});

test("qrMatrix picks the smallest version and refuses what does not fit", () => {
  assert.equal(qrMatrix("hi").length, 21);
  assert.equal(qrMatrix("x".repeat(26)).length, 25);
  assert.equal(qrMatrix("x".repeat(42)).length, 29);
  assert.throws(() => qrMatrix("x".repeat(43)), RangeError);
});

test("qrSvgPath draws one unit square per dark module inside the quiet zone", () => {
  const path = qrSvgPath([[true, false], [false, true]], 4);
  assert.equal(path, "M4 4h1v1h-1zM5 5h1v1h-1z");
});
