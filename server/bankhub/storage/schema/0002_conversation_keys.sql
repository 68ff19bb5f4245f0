-- 0002: per-conversation data keys (encryption at rest, crypto-shredding).
--
-- Each conversation's message bodies are AES-256-GCM ciphertext under its own data key
-- (DEK). The DEK is stored only wrapped under a key-encryption key (KEK) held outside the
-- database (key file or HSM); kek_id names that KEK. Rotating the KEK rewrites these rows
-- only. Crypto-shredding sets wrapped_dek to NULL: the conversation's bodies can then
-- never be decrypted again, on any node, and it accepts no new messages.

CREATE TABLE conversation_keys (
    conversation_id uuid PRIMARY KEY REFERENCES conversations (id),
    kek_id          text,
    wrapped_dek     bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    shredded_at     timestamptz,
    CHECK ((wrapped_dek IS NULL) = (shredded_at IS NOT NULL)),
    CHECK (wrapped_dek IS NULL OR kek_id IS NOT NULL)
);
-- rotation walks the rows not yet under the active KEK
CREATE INDEX conversation_keys_kek ON conversation_keys (kek_id) WHERE wrapped_dek IS NOT NULL;
