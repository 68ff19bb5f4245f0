-- 0025: supervision (docs/compliance.md, "Supervision"): rules that flag messages into a review
-- queue, random sampling of RMs' and agents' messages, and the reviewers' decisions.
--
-- Rules are never deleted, only marked removed (removed_at): a flag keeps naming the rule that
-- raised it, and a node still evaluating a rule removed a moment ago on another node can write
-- its flag. supervision_state.version is raised with every change of the rules, in the changing
-- transaction; each node compares it with the version of its compiled rule set at most every
-- BANKHUB_SUPERVISION_RELOAD_SECONDS and recompiles when it moved.

CREATE TABLE supervision_rules (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('lexicon', 'pattern')),
    terms       text[] NOT NULL DEFAULT '{}',
    pattern     text,
    enabled     boolean NOT NULL DEFAULT true,
    created_by  uuid REFERENCES users (id),  -- NULL: seeded (demo data)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz,
    CHECK ((kind = 'lexicon' AND pattern IS NULL) OR (kind = 'pattern' AND pattern IS NOT NULL))
);
-- a name names one rule among those not removed
CREATE UNIQUE INDEX supervision_rules_name ON supervision_rules (lower(name)) WHERE removed_at IS NULL;

-- one row: the rules' version, and the key of the sampling hash: 32 random bytes made by the
-- first node that needs them, stored only wrapped by the key provider (like the DLP compliance
-- key), so a database dump does not tell which messages are sampled; `bankhub keys rotate`
-- re-wraps it, and a KEK that still wraps it is not retired
CREATE TABLE supervision_state (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    version             bigint NOT NULL DEFAULT 1,
    kek_id              text,
    wrapped_sample_key  bytea,
    CHECK ((kek_id IS NULL) = (wrapped_sample_key IS NULL))
);
INSERT INTO supervision_state DEFAULT VALUES;

CREATE TABLE supervision_flags (
    id              uuid PRIMARY KEY,
    -- what was flagged: a message, or a group's title (set when the group was created or
    -- renamed; no message carries it, so message_id is NULL and seq 0)
    subject         text NOT NULL DEFAULT 'message' CHECK (subject IN ('message', 'group_title')),
    -- a purge of the message removes its flags (the message is what was reviewed)
    message_id      uuid REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL,
    seq             bigint NOT NULL,
    sender_id       uuid NOT NULL REFERENCES users (id),
    -- NULL: the message was sampled
    rule_id         uuid REFERENCES supervision_rules (id),
    -- what the rule matched when it flagged: the term of a lexicon, the pattern of a pattern
    -- rule (the rule's own text, never the message's), kept though the rule changes later
    matched         text,
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'escalated', 'closed')),
    -- the escalation, kept when the flag is closed: four eyes, the closer of an escalated
    -- flag is another officer than the one who escalated it
    escalated_by    uuid REFERENCES users (id),
    escalated_at    timestamptz,
    escalation_note text,
    -- the latest decision (the escalation, then the close)
    decided_by      uuid REFERENCES users (id),
    decided_at      timestamptz,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((subject = 'message') = (message_id IS NOT NULL)),
    CHECK (subject = 'message' OR rule_id IS NOT NULL),
    CHECK (state <> 'open' OR (escalated_by IS NULL AND decided_by IS NULL)),
    CHECK (state <> 'escalated' OR (escalated_by IS NOT NULL AND decided_by = escalated_by)),
    CHECK (state <> 'closed' OR decided_by IS NOT NULL),
    -- four eyes: an escalated flag is closed by another officer
    CHECK (state <> 'closed' OR escalated_by IS NULL OR escalated_by <> decided_by),
    -- nobody decides a flag on their own message
    CHECK (decided_by IS NULL OR decided_by <> sender_id)
);
-- one flag per message and rule, one sample per message
CREATE UNIQUE INDEX supervision_flags_once ON supervision_flags (message_id, rule_id) WHERE rule_id IS NOT NULL;
CREATE UNIQUE INDEX supervision_flags_sample_once ON supervision_flags (message_id) WHERE rule_id IS NULL;
-- a purge deletes messages and the flags go with them (ON DELETE CASCADE): the cascade looks
-- flags up by message id alone, which the two partial indexes above cannot serve
CREATE INDEX supervision_flags_message ON supervision_flags (message_id);
-- the queue: by state, oldest first
CREATE INDEX supervision_flags_queue ON supervision_flags (state, created_at, id);
-- the figures: per rule and state, and per sampled sender
CREATE INDEX supervision_flags_rule ON supervision_flags (rule_id, state);
CREATE INDEX supervision_flags_sampled ON supervision_flags (sender_id, state) WHERE rule_id IS NULL;
