-- 0020: data-loss prevention. A text carrying a card number, a resident ID, a bank account
-- number, a CVV or a one-time code is masked (or refused) before it is stored or delivered
-- (bankhub.compliance.dlp, policy.dlp_action). What is kept of a masked value is its keyed
-- fingerprint: HMAC-SHA256 under the compliance key, so an investigator holding the value can
-- find the conversations it appeared in, while the database alone reveals nothing (a card
-- number has too few unknown digits for a plain hash to hide it).

-- the compliance HMAC key: 32 random bytes, stored only wrapped by the key provider (like the
-- signing keys, 0017). One is active; retired ones stay, so older fingerprints still match.
CREATE TABLE dlp_keys (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    kek_id      text NOT NULL,
    wrapped_key bytea NOT NULL,
    state       text NOT NULL CHECK (state IN ('active', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- at most one active key: two nodes creating the first key at once, one wins
CREATE UNIQUE INDEX dlp_keys_one_active ON dlp_keys ((true)) WHERE state = 'active';

-- one row per value masked in a stored message (a purge of the message removes its rows).
-- hmac is NULL for a CVV or a one-time code: too few values for a fingerprint to identify one.
CREATE TABLE dlp_matches (
    id              bigserial PRIMARY KEY,
    message_id      uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('card', 'resident_id', 'bank_account', 'cvv', 'otp')),
    key_id          text REFERENCES dlp_keys (id),
    hmac            bytea CHECK (hmac IS NULL OR length(hmac) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((hmac IS NULL) = (key_id IS NULL))
);
-- the investigator's search: a value's fingerprint, newest first
CREATE INDEX dlp_matches_hmac ON dlp_matches (kind, hmac, created_at DESC, message_id DESC) WHERE hmac IS NOT NULL;
-- the cascade from messages, and figures
CREATE INDEX dlp_matches_message ON dlp_matches (message_id);
CREATE INDEX dlp_matches_conversation ON dlp_matches (conversation_id);

-- refused sends store nothing; their figures are counted per day, kind and direction
CREATE TABLE dlp_refusals (
    day       date NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('card', 'resident_id', 'bank_account', 'cvv', 'otp')),
    direction text NOT NULL CHECK (direction IN ('customer_to_staff', 'staff_to_customer', 'customer_to_customer', 'staff_to_staff')),
    refused   bigint NOT NULL CHECK (refused > 0),
    PRIMARY KEY (day, kind, direction)
);
