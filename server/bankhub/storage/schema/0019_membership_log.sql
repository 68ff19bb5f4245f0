-- 0019: who was a member of which conversation, and when. conversation_members holds the
-- members of now; compliance needs the members of then: a legal hold on a custodian covers
-- every conversation they were ever in, and an eDiscovery export lists, for each message,
-- who could read it when it was sent. The log is written by triggers on conversation_members,
-- so every path that adds or removes a member (groups, org groups, the service desk, RM
-- handover, direct chats) is recorded in the same transaction, without any of them knowing.
-- Times are the transaction's now(), the same clock as messages.created_at: a member added in
-- the transaction that posts the system message announcing it was a member when it was sent.

CREATE TABLE membership_log (
    id              bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    joined_at       timestamptz NOT NULL,
    -- NULL while still a member
    left_at         timestamptz,
    CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- one open stay per member; a member who leaves and comes back has two rows
CREATE UNIQUE INDEX membership_log_open ON membership_log (conversation_id, user_id) WHERE left_at IS NULL;
CREATE INDEX membership_log_conversation ON membership_log (conversation_id, joined_at);
CREATE INDEX membership_log_user ON membership_log (user_id, conversation_id);

CREATE FUNCTION membership_log_joined() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO membership_log (conversation_id, user_id, joined_at)
    VALUES (NEW.conversation_id, NEW.user_id, now())
    ON CONFLICT (conversation_id, user_id) WHERE left_at IS NULL DO NOTHING;
    RETURN NULL;
END $$;

CREATE FUNCTION membership_log_left() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE membership_log SET left_at = greatest(now(), joined_at)
     WHERE conversation_id = OLD.conversation_id AND user_id = OLD.user_id AND left_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER membership_log_on_insert AFTER INSERT ON conversation_members
    FOR EACH ROW EXECUTE FUNCTION membership_log_joined();
CREATE TRIGGER membership_log_on_delete AFTER DELETE ON conversation_members
    FOR EACH ROW EXECUTE FUNCTION membership_log_left();

-- the members of today, since they joined
INSERT INTO membership_log (conversation_id, user_id, joined_at)
SELECT conversation_id, user_id, joined_at FROM conversation_members;

-- Departures before this delta were not recorded, but whoever sent a message was a member
-- when they sent it: each earlier sender who is no longer a member gets one closed stay, from
-- their first message to their last (a lower bound of the real stay; docs/compliance.md).
INSERT INTO membership_log (conversation_id, user_id, joined_at, left_at)
SELECT msg.conversation_id, msg.sender_id, min(msg.created_at), max(msg.created_at)
  FROM messages msg
 WHERE NOT EXISTS (SELECT 1 FROM conversation_members cm
                    WHERE cm.conversation_id = msg.conversation_id AND cm.user_id = msg.sender_id)
 GROUP BY msg.conversation_id, msg.sender_id;
