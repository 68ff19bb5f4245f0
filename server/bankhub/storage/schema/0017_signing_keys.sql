-- 0017: the hub's signing keys (verified service cards, official-account notice signatures).
--
-- One Ed25519 key is active at a time; every node signs with it. Its private half is stored
-- only wrapped by the key provider (like conversation data keys), so the database alone
-- cannot sign. Retired keys stay listed at GET /v1/signing-keys so that what they signed
-- still verifies. (users.account_class, which gates card actions, exists since 0007.)

CREATE TABLE signing_keys (
    id               text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    algorithm        text NOT NULL DEFAULT 'Ed25519' CHECK (algorithm = 'Ed25519'),
    public_key       bytea NOT NULL CHECK (length(public_key) = 32),
    -- the 32-byte private seed, wrapped under the key provider's KEK kek_id
    kek_id           text NOT NULL,
    wrapped_private  bytea NOT NULL,
    state            text NOT NULL CHECK (state IN ('active', 'retired')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    retired_at       timestamptz,
    CHECK ((state = 'retired') = (retired_at IS NOT NULL))
);
-- at most one active key: two nodes creating the first key at once, one wins
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE state = 'active';

-- a published notice's signature {"key_id", "sig"} (made at publication; NULL before 0017)
ALTER TABLE notices ADD COLUMN signature jsonb;
