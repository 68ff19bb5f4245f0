-- 0001: identity, sessions, conversations and messages.

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    parent_id   uuid REFERENCES orgs (id),
    kind        text NOT NULL CHECK (kind IN ('head_office', 'branch', 'sub_branch')),
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'head_office') = (parent_id IS NULL))
);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('customer', 'rm', 'agent', 'staff', 'branch_admin',
                                                'head_office_admin', 'compliance')),
    org_id        uuid NOT NULL REFERENCES orgs (id),
    -- a customer's relationship manager; only customers have one
    rm_id         uuid REFERENCES users (id),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (rm_id IS NULL OR role = 'customer')
);
CREATE INDEX users_rm_id ON users (rm_id) WHERE rm_id IS NOT NULL;

-- Bearer tokens are stored only as SHA-256 hashes.
CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    user_agent  text,
    ip          text
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Single-use, short-lived WebSocket tickets for browsers (never a long-lived token in a URL).
CREATE TABLE ws_tickets (
    ticket_hash bytea PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX ws_tickets_expires ON ws_tickets (expires_at);

CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('direct', 'group')),
    title       text,
    created_by  uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- the last allocated seq; bumped in the same transaction as the insert, so gap-free
    last_seq    bigint NOT NULL DEFAULT 0,
    -- for direct conversations: the two user ids, sorted, so a pair has one conversation
    direct_key  text UNIQUE,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE conversation_members (
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    role            text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'member')),
    joined_at       timestamptz NOT NULL DEFAULT now(),
    read_seq        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    seq             bigint NOT NULL,
    id              uuid NOT NULL UNIQUE,
    sender_id       uuid NOT NULL REFERENCES users (id),
    client_msg_id   text NOT NULL,
    kind            text NOT NULL,
    -- the encoded body; a key id marks it as ciphertext (NULL: stored as encoded JSON)
    body            bytea NOT NULL,
    body_key_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq),
    -- makes send idempotent: one client_msg_id per sender per conversation
    UNIQUE (conversation_id, sender_id, client_msg_id)
);
