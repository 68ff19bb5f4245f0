-- 0010: the service desk's free text is encrypted at rest, like message bodies.
--
-- Agents' notes (service_notes.text) and customers' CSAT comments
-- (service_sessions.csat_comment) move to bytea columns sealed with AES-256-GCM under the
-- data key of the session's conversation (conversation_keys), key id 'cdek1-desk'; see
-- docs/encryption-at-rest.md. Crypto-shredding the conversation makes them unrecoverable.
--
-- Encrypting needs the key-encryption key, which never reaches the database, so the rows
-- written before this delta are sealed by the hub itself: every node, when it starts (and
-- its desk sweep until that succeeded), seals the remaining plaintext in batches and
-- clears the plaintext column (bankhub.storage.service.ServiceStore.seal_legacy_text).
-- Until then the hub reads such a row's plaintext, except in a shredded conversation,
-- where it reads as shredded (shredding also clears it). Nothing is dropped unsealed.

ALTER TABLE service_notes
    ALTER COLUMN text DROP NOT NULL,
    ADD COLUMN text_sealed bytea,
    ADD COLUMN text_key_id text,
    ADD CONSTRAINT service_notes_text_sealed_key CHECK ((text_sealed IS NULL) = (text_key_id IS NULL)),
    ADD CONSTRAINT service_notes_text_once CHECK (text IS NULL OR text_sealed IS NULL);
-- new rows never carry plaintext (NOT VALID: the rows from before stay until sealed)
ALTER TABLE service_notes ADD CONSTRAINT service_notes_no_plaintext CHECK (text IS NULL) NOT VALID;

ALTER TABLE service_sessions
    ADD COLUMN csat_comment_sealed bytea,
    ADD COLUMN csat_comment_key_id text,
    ADD CONSTRAINT service_sessions_csat_comment_sealed_key CHECK ((csat_comment_sealed IS NULL) = (csat_comment_key_id IS NULL)),
    ADD CONSTRAINT service_sessions_csat_comment_once CHECK (csat_comment IS NULL OR csat_comment_sealed IS NULL);
ALTER TABLE service_sessions ADD CONSTRAINT service_sessions_no_plaintext_comment CHECK (csat_comment IS NULL) NOT VALID;

-- the rows still to seal (empty once every node has run)
CREATE INDEX service_notes_plaintext ON service_notes (id) WHERE text IS NOT NULL;
CREATE INDEX service_sessions_plaintext_comment ON service_sessions (id) WHERE csat_comment IS NOT NULL;
