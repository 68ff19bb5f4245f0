-- 0005: official accounts, their notices and followers; customer segments and tags for targeting.
--
-- A notice is stored once. A follower's inbox state for an account is one row
-- (account_follows.read_seq); unread counts are derived from the notices after it that
-- target the follower, never written per follower per notice.

ALTER TABLE users
    ADD COLUMN segment text CHECK (segment IS NULL OR segment ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    ADD COLUMN tags    text[] NOT NULL DEFAULT '{}';
CREATE INDEX users_tags ON users USING gin (tags);

CREATE TABLE official_accounts (
    id                uuid PRIMARY KEY,
    handle            text NOT NULL UNIQUE CHECK (handle ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    description       text NOT NULL DEFAULT '',
    -- head office or a branch: only that org's administrators (or head office) publish
    owner_org_id      uuid NOT NULL REFERENCES orgs (id),
    -- 'customer': customers and staff may follow; 'staff': staff only
    audience          text NOT NULL CHECK (audience IN ('customer', 'staff')),
    -- new users of the audience follow it at creation
    is_default        boolean NOT NULL DEFAULT false,
    -- maker-checker: a notice needs a second administrator's approval
    requires_approval boolean NOT NULL DEFAULT false,
    -- the account's event stream: every publication and every recall takes the next seq
    last_seq          bigint NOT NULL DEFAULT 0,
    created_by        uuid NOT NULL REFERENCES users (id),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account_follows (
    account_id   uuid NOT NULL REFERENCES official_accounts (id),
    user_id      uuid NOT NULL REFERENCES users (id),
    followed_at  timestamptz NOT NULL DEFAULT now(),
    -- the follower's read high-water mark in the account's stream
    read_seq     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX account_follows_user ON account_follows (user_id);
CREATE INDEX account_follows_read ON account_follows (account_id, read_seq);

CREATE TABLE notices (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES official_accounts (id),
    -- allocated at publication, under the account row lock: gap-free per account
    seq             bigint,
    status          text NOT NULL CHECK (status IN ('pending_approval', 'scheduled', 'published', 'recalled', 'rejected')),
    kind            text NOT NULL CHECK (kind IN ('text', 'article')),
    body            jsonb NOT NULL,
    -- targeting: NULL means "no restriction" on that dimension
    target_org_ids  uuid[],
    target_tags     text[],
    target_segments text[],
    staff_only      boolean NOT NULL DEFAULT false,
    author_id       uuid NOT NULL REFERENCES users (id),
    approved_by     uuid REFERENCES users (id),
    rejected_by     uuid REFERENCES users (id),
    scheduled_at    timestamptz,
    published_at    timestamptz,
    -- recall: the notice is withdrawn from followers but kept for compliance
    recall_seq      bigint,
    recalled_at     timestamptz,
    recalled_by     uuid REFERENCES users (id),
    recall_reason   text,
    -- pushed to a connected follower, summed over nodes (one update per node per notice)
    delivered_online bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, seq),
    UNIQUE (account_id, recall_seq),
    CHECK ((status IN ('published', 'recalled')) = (seq IS NOT NULL)),
    CHECK ((status = 'recalled') = (recall_seq IS NOT NULL))
);
CREATE INDEX notices_due ON notices (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX notices_recall ON notices (account_id, recall_seq) WHERE recall_seq IS NOT NULL;
