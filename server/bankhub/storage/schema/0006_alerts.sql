-- 0006: transactional alerts from the bank's internal systems (see docs/alerts.md).
--
-- Calling systems sign every request with an HMAC secret stored wrapped under a KEK (the
-- same key provider that wraps conversation keys). An alert lands in its recipient's inbox:
-- a per-user stream whose seq is allocated under the inbox row lock in the inserting
-- transaction (gap-free), with an unread counter kept exact by every transaction that
-- moves an alert into or out of the "unread" state. Alert texts are encrypted at rest like
-- message bodies: AES-256-GCM under a data key per recipient, wrapped by the KEK.

CREATE TABLE alert_systems (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    description     text NOT NULL DEFAULT '',
    -- the categories this system may send (security, transaction, service, marketing)
    categories      text[] NOT NULL CHECK (cardinality(categories) > 0
                        AND categories <@ ARRAY['security', 'transaction', 'service', 'marketing']),
    -- the current HMAC secret: 32 random bytes, AES-key-wrapped under kek_id
    kek_id          text NOT NULL,
    wrapped_secret  bytea NOT NULL,
    -- after a rotation the previous secret keeps working until prev_valid_until
    prev_kek_id     text,
    prev_wrapped    bytea,
    prev_valid_until timestamptz,
    -- requests per second and burst (a batch counts as one request)
    rate_per_second real NOT NULL DEFAULT 50 CHECK (rate_per_second > 0),
    burst           integer NOT NULL DEFAULT 100 CHECK (burst > 0),
    disabled        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz,
    CHECK ((prev_wrapped IS NULL) = (prev_kek_id IS NULL))
);

-- Nonces seen per system: a signed request is accepted once. Rows older than the
-- timestamp window (plus a margin) are pruned; a request that old is refused as stale.
CREATE TABLE alert_nonces (
    system_id  uuid NOT NULL REFERENCES alert_systems (id),
    nonce      text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system_id, nonce)
);
CREATE INDEX alert_nonces_seen ON alert_nonces (seen_at);

-- One row per accepted ingest request: a retry with the same Idempotency-Key and the same
-- body gets the same alerts back; the same key with another body is a conflict.
CREATE TABLE alert_requests (
    system_id       uuid NOT NULL REFERENCES alert_systems (id),
    idempotency_key text NOT NULL,
    body_sha256     bytea NOT NULL,
    alert_ids       uuid[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system_id, idempotency_key)
);
CREATE INDEX alert_requests_created ON alert_requests (created_at);

-- A customer's alert preferences. No row: every category on, no quiet hours, zh-CN,
-- Asia/Shanghai. Security alerts can never be muted (checked here and in policy.py).
CREATE TABLE alert_preferences (
    user_id      uuid PRIMARY KEY REFERENCES users (id),
    muted        text[] NOT NULL DEFAULT '{}'
                     CHECK (muted <@ ARRAY['transaction', 'service', 'marketing']),
    -- quiet hours as minutes after local midnight; both NULL: none
    quiet_start  smallint CHECK (quiet_start BETWEEN 0 AND 1439),
    quiet_end    smallint CHECK (quiet_end BETWEEN 0 AND 1439),
    timezone     text NOT NULL DEFAULT 'Asia/Shanghai',
    locale       text NOT NULL DEFAULT 'zh-CN' CHECK (locale IN ('zh-CN', 'en')),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- The per-user inbox stream: last allocated seq and the exact number of unread alerts.
CREATE TABLE alert_inbox (
    user_id   uuid PRIMARY KEY REFERENCES users (id),
    last_seq  bigint NOT NULL DEFAULT 0,
    unread    bigint NOT NULL DEFAULT 0 CHECK (unread >= 0)
);

-- A recipient's data key for alert texts (AES-256-GCM), wrapped under a KEK; created with
-- the first alert for them, re-wrapped by `bankhub keys rotate`.
CREATE TABLE alert_keys (
    user_id     uuid PRIMARY KEY REFERENCES users (id),
    kek_id      text NOT NULL,
    wrapped_dek bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id              uuid PRIMARY KEY,
    system_id       uuid NOT NULL REFERENCES alert_systems (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    -- the place in the user's inbox stream; NULL for a suppressed (muted) alert
    seq             bigint,
    category        text NOT NULL CHECK (category IN ('security', 'transaction', 'service', 'marketing')),
    priority        text NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    template        text NOT NULL,
    locale          text NOT NULL,
    -- the rendered title and body, sealed under the recipient's alert_keys DEK
    -- (nonce || AES-256-GCM ciphertext; associated data: alert id and user id)
    content         bytea NOT NULL,
    content_key_id  text NOT NULL,
    collapse_key    text,
    -- delivered in quiet hours: shown without sound; the fallback waits for their end
    silent          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    -- inbox state; 'suppressed': muted by the recipient, never in the inbox
    state           text NOT NULL CHECK (state IN ('unread', 'read', 'archived', 'suppressed')),
    read_at         timestamptz,
    archived_at     timestamptz,
    -- first handed to an online device (pushed or synced)
    delivered_at    timestamptz,
    -- a newer alert with the same collapse key replaced this one
    superseded_by   uuid,
    superseded_at   timestamptz,
    -- the older alert with the same collapse key this one replaced
    replaces        uuid,
    -- set when an unread alert passed expires_at and left the unread count
    expired_at      timestamptz,
    UNIQUE (user_id, seq),
    CHECK ((state = 'suppressed') = (seq IS NULL))
);
CREATE INDEX alerts_collapse ON alerts (user_id, collapse_key)
    WHERE collapse_key IS NOT NULL AND superseded_by IS NULL AND seq IS NOT NULL;
-- unread alerts that will expire: the sweeper's and the exact unread count's index
CREATE INDEX alerts_expiring ON alerts (expires_at)
    WHERE state = 'unread' AND superseded_by IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX alerts_unread_expiring_user ON alerts (user_id)
    WHERE state = 'unread' AND superseded_by IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL;

-- Fallback delivery (SMS/push gateway) for alerts not delivered online in time.
-- state: pending (due at next_at), sent, dead (dead-letter list: attempts exhausted or a
-- permanent refusal), cancelled (delivered online, read, superseded or expired first).
CREATE TABLE alert_fallback (
    alert_id     uuid PRIMARY KEY REFERENCES alerts (id),
    state        text NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'cancelled')),
    -- when it is due; a node working on it moves next_at ahead by its lease, so a node
    -- that dies mid-attempt only delays it
    next_at      timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    cancel_reason text,
    sent_at      timestamptz,
    dead_at      timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_fallback_due ON alert_fallback (next_at) WHERE state = 'pending';
CREATE INDEX alert_fallback_dead ON alert_fallback (dead_at) WHERE state = 'dead';
