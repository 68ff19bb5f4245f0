-- 0027: messages and message_revisions become hash-partitioned by conversation_id
-- (docs/scaling.md, "Postgres").
--
-- Why these two: they grow with traffic (every message, every edit or recall), and every read
-- and write of them names the conversation: the send, history, gap filling, sync, the edit's
-- target, the purge's due scan and its deletes. conversation_id is also the distribution
-- column a Citus cluster would use (every message query then runs on one shard), so the same
-- key serves one host now and many later.
--
-- Why not the others: conversation_members and membership_log are read by user (sync, the
-- conversation list, a custodian's legal hold) and grow with memberships, not with traffic;
-- dlp_matches, supervision_flags and message_media are read by fingerprint, review state or
-- media item across conversations and hold a row for a small fraction of messages. They stay
-- plain tables; their foreign keys now name (conversation_id, message_id).
--
-- Why 16 partitions: enough that each partition's indexes and autovacuum work stay a sixteenth
-- of the table, few enough that routing an insert and planning a query that is not pruned cost
-- little (docs/scaling.md has the measured cost). More partitions later: docs/scaling.md,
-- "Splitting partitions" (a partition referenced by foreign keys cannot simply be detached).
--
-- What changes with the partition key: every unique constraint must include it, so a message
-- id is unique per conversation (UNIQUE (conversation_id, id); ids are UUIDv7 made by the
-- hub, so they stay unique in fact) and the tables that reference a message name it by
-- (conversation_id, message_id). message_media gets a conversation_id column, backfilled from
-- its message. The cascades the retention purge relies on stay ON DELETE CASCADE.
--
-- The upgrade runs in one transaction (bankhub.storage.migrate): the old tables are renamed,
-- the partitioned ones made in their place with the same columns, defaults and checks, the
-- rows copied, the privileges granted on the old tables granted again on the new ones, and the
-- constraints and indexes added after the copy (building an index once is faster than
-- maintaining it row by row). Neither table has a trigger or a sequence.
--
-- STOP EVERY NODE before `bankhub migrate` applies this delta. A node still running the code
-- of 0026 fails its sends once message_media has its conversation_id column, and every query
-- on messages queues behind the copy. The delta takes every lock it needs first, in the send
-- path's order (conversations, then messages and the tables that reference a message; users
-- last, only for the foreign keys), waiting at most 30 s for them (lock_timeout; then it fails
-- having changed nothing), so it never deadlocks with a running send once it has started its
-- copy: a send in flight finishes first (tests/integration/test_partitioning.py). The copy runs at about
-- 31,000 messages/s; the free disk needed until commit is about the size of messages and
-- message_revisions with their indexes (old and new copies exist together), plus as much WAL.
--
-- Privileges: the new tables and partitions start with none but their owner's, whatever
-- ALTER DEFAULT PRIVILEGES says (revoked below), and the parents then get exactly what the old
-- tables had: the hub's role keeps what it had, the append-only message_revisions included.

SET LOCAL lock_timeout = '30s';
LOCK TABLE conversations IN EXCLUSIVE MODE;
LOCK TABLE messages, message_revisions, dlp_matches, supervision_flags, message_media IN ACCESS EXCLUSIVE MODE;
LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE messages RENAME TO messages_unpartitioned;
ALTER TABLE message_revisions RENAME TO message_revisions_unpartitioned;

CREATE TABLE messages (
    LIKE messages_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION
) PARTITION BY HASH (conversation_id);

CREATE TABLE message_revisions (
    LIKE message_revisions_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION
) PARTITION BY HASH (conversation_id);

DO $$
BEGIN
    FOR r IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'messages_p' || lpad(r::text, 2, '0'), r);
        EXECUTE format('CREATE TABLE %I PARTITION OF message_revisions FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'message_revisions_p' || lpad(r::text, 2, '0'), r);
    END LOOP;
END $$;

INSERT INTO messages SELECT * FROM messages_unpartitioned;
INSERT INTO message_revisions SELECT * FROM message_revisions_unpartitioned;

-- the planner's statistics for the new tables (the copy leaves none, and autovacuum never
-- analyzes a partitioned parent), before the backfill join and the constraint validations below
ANALYZE messages;
ANALYZE message_revisions;

-- the privileges `bankhub db grant-app-role` gave the hub's role on the old tables (append-only
-- message_revisions: SELECT, INSERT) go to the new ones, so the hub keeps working without a
-- re-run; the partitions get none (the hub reaches them only through their parent). First
-- everything the new relations got from default privileges is taken back, from every role
-- but the owner and from PUBLIC: a default UPDATE or DELETE would otherwise survive on the
-- append-only message_revisions or on a partition (which bypasses its parent's privileges)
DO $$
DECLARE
    t text;
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT c.oid::regclass::text AS rel, a.grantee
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE (c.oid IN ('messages'::regclass, 'message_revisions'::regclass)
                OR c.oid IN (SELECT inhrelid FROM pg_inherits
                              WHERE inhparent IN ('messages'::regclass, 'message_revisions'::regclass)))
           AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', g.rel,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['messages', 'message_revisions'] LOOP
        FOR g IN
            SELECT a.privilege_type, a.grantee, a.is_grantable
              FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = (t || '_unpartitioned')::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON %I TO %s%s', g.privilege_type, t,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END $$;

ALTER TABLE dlp_matches DROP CONSTRAINT dlp_matches_message_id_fkey;
ALTER TABLE message_media DROP CONSTRAINT message_media_message_id_fkey;
ALTER TABLE supervision_flags DROP CONSTRAINT supervision_flags_message_id_fkey;
-- without CASCADE: anything else still depending on the old tables stops the upgrade
DROP TABLE message_revisions_unpartitioned;
DROP TABLE messages_unpartitioned;

ALTER TABLE messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (conversation_id, seq),
    -- makes send idempotent: one client_msg_id per sender per conversation
    ADD CONSTRAINT messages_conversation_id_sender_id_client_msg_id_key UNIQUE (conversation_id, sender_id, client_msg_id),
    -- was UNIQUE (id): a unique constraint must include the partition key
    ADD CONSTRAINT messages_conversation_id_id_key UNIQUE (conversation_id, id),
    ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    ADD CONSTRAINT messages_sender_id_fkey FOREIGN KEY (sender_id) REFERENCES users (id);

-- the hub's role has no DELETE here (append-only); the purge's cascades run as the owner (0022)
ALTER TABLE message_revisions
    ADD CONSTRAINT message_revisions_pkey PRIMARY KEY (conversation_id, message_id, revision),
    ADD CONSTRAINT message_revisions_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    ADD CONSTRAINT message_revisions_message_id_fkey
        FOREIGN KEY (conversation_id, message_id) REFERENCES messages (conversation_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT message_revisions_conversation_id_change_seq_fkey
        FOREIGN KEY (conversation_id, change_seq) REFERENCES messages (conversation_id, seq) ON DELETE CASCADE;
-- the compliance read pages by conversation; the cascade from an edit or recall message
CREATE INDEX message_revisions_conversation ON message_revisions (conversation_id, change_seq);

ALTER TABLE dlp_matches
    ADD CONSTRAINT dlp_matches_message_id_fkey
        FOREIGN KEY (conversation_id, message_id) REFERENCES messages (conversation_id, id) ON DELETE CASCADE;

-- NULL message_id (a flagged group title): no message to reference (MATCH SIMPLE)
ALTER TABLE supervision_flags
    ADD CONSTRAINT supervision_flags_message_id_fkey
        FOREIGN KEY (conversation_id, message_id) REFERENCES messages (conversation_id, id) ON DELETE CASCADE;

ALTER TABLE message_media ADD COLUMN conversation_id uuid;
ANALYZE message_media;
UPDATE message_media l SET conversation_id = m.conversation_id FROM messages m WHERE m.id = l.message_id;
ALTER TABLE message_media
    ALTER COLUMN conversation_id SET NOT NULL,
    ADD CONSTRAINT message_media_message_id_fkey
        FOREIGN KEY (conversation_id, message_id) REFERENCES messages (conversation_id, id) ON DELETE CASCADE;
