-- 0016: recall and edit of one's own message (docs/protocol.md, "Recall and edit").
--
-- A recall or edit is itself a message in the conversation's seq stream (kind 'edit' or
-- 'recall'); in the same transaction the target row gets its new body (the new text, or the
-- 'recalled' marker) and edited_at / recalled_at, and the body it replaced is kept here.
-- Members only ever read the current body; the rows of this table are read only through the
-- reason-coded, audited compliance path.
--
-- body is AES-256-GCM under the conversation's data key (conversation_keys), with associated
-- data binding it to its row: conversation, message, revision number, time and kind of change
-- (bankhub/storage/revisions.py). Crypto-shredding the conversation makes it unreadable too.

ALTER TABLE messages
    ADD COLUMN edited_at   timestamptz,
    ADD COLUMN recalled_at timestamptz;

CREATE TABLE message_revisions (
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    message_id      uuid NOT NULL REFERENCES messages (id),
    -- 1, 2, ... per message: the order of its changes
    revision        integer NOT NULL CHECK (revision >= 1),
    kind            text NOT NULL CHECK (kind IN ('edit', 'recall')),
    -- the seq of the edit/recall message that made this change
    change_seq      bigint NOT NULL,
    -- the body the change replaced (sealed; body_key_id names the scheme)
    body            bytea NOT NULL,
    body_key_id     text NOT NULL,
    changed_at      timestamptz NOT NULL,
    PRIMARY KEY (message_id, revision),
    FOREIGN KEY (conversation_id, change_seq) REFERENCES messages (conversation_id, seq)
);
-- the compliance read pages by conversation
CREATE INDEX message_revisions_conversation ON message_revisions (conversation_id, change_seq);
