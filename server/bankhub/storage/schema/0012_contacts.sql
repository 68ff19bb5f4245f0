-- 0012: contacts (friends), contact requests, blocks, single-use invite codes, users.phone.
--
-- Who may befriend whom is decided in bankhub.policy.may_befriend; these tables only hold
-- what was decided. Every list a user can grow is bounded by a setting (pending requests,
-- contacts, blocks, outstanding invite codes) checked in bankhub.actions.contacts.

-- A phone number, normalized to E.164 (+8613800000001) by bankhub.actions.contacts before it
-- is stored or looked up; unique when set.
ALTER TABLE users ADD COLUMN phone text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$');
CREATE UNIQUE INDEX users_phone_key ON users (phone) WHERE phone IS NOT NULL;

-- An accepted contact: one row each way (user_id sees contact_id), written and removed together.
CREATE TABLE contacts (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, contact_id),
    CHECK (user_id <> contact_id)
);

-- A request from from_id, addressed by what its sender typed (to_handle: a username or a
-- normalized phone number). to_id is the addressee when the request reached one; it is NULL
-- when nobody may receive it (no such account, not someone the sender may befriend, a block,
-- the addressee's incoming list full): the sender is answered and shown the same in every
-- case, so a request never reveals whether an account exists. 'pending' until the addressee
-- accepts (the row is deleted, two contacts rows written), declines ('declined': hidden from
-- the addressee, still shown to the sender as sent) or the sender withdraws it ('withdrawn':
-- hidden from both, yet it counts against the sender's pending limit until it would have
-- lapsed, so that request, withdraw, request again cannot notify anyone without bound).
-- A block by the addressee reads as a decline to the sender; a block by the sender withdraws.
-- One row per typed handle: a second handle (a phone number after a username) for an
-- addressee the sender already has a request to, or for a contact, is stored with to_id NULL
-- like any handle that reaches nobody, so the outgoing list never shows which handles
-- belong to one account. Requests older than BANKHUB_CONTACTS_REQUEST_TTL_DAYS have lapsed
-- (withdrawn ones too); the sender's next request deletes them.
CREATE TABLE contact_requests (
    id         uuid PRIMARY KEY,
    from_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id      uuid REFERENCES users (id) ON DELETE CASCADE,
    to_handle  text NOT NULL CHECK (length(to_handle) BETWEEN 1 AND 64),
    state      text NOT NULL CHECK (state IN ('pending', 'declined', 'withdrawn')),
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz,
    CHECK (from_id <> to_id)
);
CREATE UNIQUE INDEX contact_requests_handle ON contact_requests (from_id, to_handle) WHERE state <> 'withdrawn';
CREATE UNIQUE INDEX contact_requests_pair ON contact_requests (from_id, to_id) WHERE to_id IS NOT NULL AND state <> 'withdrawn';
CREATE INDEX contact_requests_incoming ON contact_requests (to_id, created_at, id) WHERE state = 'pending';
CREATE INDEX contact_requests_outgoing ON contact_requests (from_id, created_at, id);

-- user_id blocks blocked_id: no message, request or direct conversation from them, no presence.
CREATE TABLE contact_blocks (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, blocked_id),
    CHECK (user_id <> blocked_id)
);
CREATE INDEX contact_blocks_blocked ON contact_blocks (blocked_id, user_id);

-- Invite codes (shown as text, a bankhub://contact/<code> link and a QR code): only the
-- SHA-256 of the code is stored. Single use (used_at), expiring (expires_at).
CREATE TABLE contact_invites (
    code_hash  bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    used_by    uuid REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX contact_invites_user ON contact_invites (user_id, expires_at) WHERE used_at IS NULL;
