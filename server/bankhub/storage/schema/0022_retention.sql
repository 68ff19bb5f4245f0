-- 0022: retention policies, purge runs and erasure requests (docs/compliance.md, "Retention").
--
-- A policy keeps the messages of the conversations it applies to for `days` days: by
-- conversation kind, by the role of a member, or by a member's account. A conversation's
-- effective retention is the LONGEST of every policy that applies to it (each rule is a
-- minimum); one no policy applies to is kept forever (bankhub.compliance.retention).
--
-- A purge run deletes, in batches (one transaction each, under the legal holds' shared lock),
-- the messages older than their conversation's effective retention that no active hold
-- holds. Its row is its progress and its resume point: the keyset cursor
-- (cursor_conversation, cursor_seq) and the clock the cutoffs are measured from (now_at,
-- fixed for the run, so a resumed run deletes exactly what an uninterrupted one would have).

CREATE TABLE retention_policies (
    id          uuid PRIMARY KEY,
    scope       text NOT NULL CHECK (scope IN ('kind', 'role', 'user')),
    -- kind: direct | group | service; role: a users.role; user: the account's id (text)
    value       text NOT NULL CHECK (length(value) BETWEEN 1 AND 64),
    user_id     uuid REFERENCES users (id),
    days        integer NOT NULL CHECK (days BETWEEN 1 AND 36500),
    -- NULL: the operator (bankhub retention set)
    created_by  uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'user') = (user_id IS NOT NULL)),
    CHECK (scope <> 'user' OR value = user_id::text),
    -- one policy per scope and value: setting it again replaces the days
    UNIQUE (scope, value)
);

CREATE TABLE purge_runs (
    id                  uuid PRIMARY KEY,
    state               text NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    -- NULL: the node's periodic purge (the audit rows say "system")
    started_by          uuid REFERENCES users (id),
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    -- a running run's worker bumps it every batch; a stale one means the worker died
    heartbeat_at        timestamptz NOT NULL DEFAULT now(),
    -- the database clock every cutoff of this run is measured from
    now_at              timestamptz NOT NULL,
    batch_size          integer NOT NULL CHECK (batch_size BETWEEN 1 AND 100000),
    -- the records floor in force when the run started: no conversation is kept for less
    floor_days          integer NOT NULL CHECK (floor_days >= 1),
    -- resume point: everything up to (cursor_conversation, cursor_seq) in (id, seq) order is done
    cursor_conversation uuid,
    cursor_seq          bigint NOT NULL DEFAULT 0,
    scanned             bigint NOT NULL DEFAULT 0,
    deleted_messages    bigint NOT NULL DEFAULT 0,
    deleted_media       bigint NOT NULL DEFAULT 0,
    refused_held        bigint NOT NULL DEFAULT 0,
    batches             integer NOT NULL DEFAULT 0,
    -- why a run failed (an error class, never data)
    error               text CHECK (error IS NULL OR length(error) <= 200),
    -- the fencing token of the worker that owns the run: set when it starts or is resumed;
    -- every batch and the run's end write only WHERE owner = their token AND state = 'running',
    -- so a worker whose run was taken over (its heartbeat went stale) stops at its next batch
    owner               uuid,
    CHECK ((state IN ('done', 'failed')) = (finished_at IS NOT NULL))
);
-- one run at a time across the cluster
CREATE UNIQUE INDEX purge_runs_one_running ON purge_runs ((true)) WHERE state = 'running';
CREATE INDEX purge_runs_started ON purge_runs (started_at DESC, id DESC);

-- the records floor the hub has seen, in the database: it only ever rises (a node started
-- with a higher BANKHUB_RETENTION_FLOOR_DAYS raises it; one with a lower value cannot lower
-- it), and every purge batch keeps messages for at least this many days
CREATE TABLE retention_floor (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    floor_days  integer NOT NULL CHECK (floor_days BETWEEN 1 AND 36500),
    raised_at   timestamptz NOT NULL DEFAULT now()
);

-- which message carries which media item: written in the send transaction (next to
-- media.attached_at); the same item may be sent again, so a purge deletes a media row only
-- when no remaining message carries it
CREATE TABLE message_media (
    message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    media_id    uuid NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, media_id)
);
CREATE INDEX message_media_media ON message_media (media_id);
-- the messages sent before this delta: every picture or voice message of the conversation
-- committed with the item (the same transaction clock); linking too many only keeps media longer
INSERT INTO message_media (message_id, media_id)
SELECT m.id, md.id FROM media md
JOIN messages m ON m.conversation_id = md.conversation_id AND m.created_at = md.attached_at
WHERE md.attached_at IS NOT NULL AND m.kind IN ('image', 'voice')
ON CONFLICT DO NOTHING;

-- dual control: a policy that creates, shortens or removes retention, and an erasure, take
-- effect only when a second compliance officer approves (within BANKHUB_RETENTION_REQUEST_TTL_HOURS);
-- the requester may withdraw (reject) their own
CREATE TABLE retention_requests (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('policy_set', 'policy_remove', 'erasure')),
    state         text NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    requested_by  uuid NOT NULL REFERENCES users (id),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    -- policy_set: scope, value (a kind, a role, or the user id), user_id, days;
    -- policy_remove: policy_id (and what it was); erasure: user_id and reason
    scope         text CHECK (scope IN ('kind', 'role', 'user')),
    value         text CHECK (length(value) BETWEEN 1 AND 64),
    user_id       uuid REFERENCES users (id),
    days          integer CHECK (days BETWEEN 1 AND 36500),
    policy_id     uuid,
    reason        text CHECK (length(reason) BETWEEN 1 AND 500),
    decided_by    uuid REFERENCES users (id),
    decided_at    timestamptz,
    -- approved: the policy id it set or removed, or the erasure id
    result_id     uuid,
    CHECK ((state = 'pending') = (decided_at IS NULL))
);
CREATE INDEX retention_requests_state ON retention_requests (state, requested_at DESC, id DESC);

-- blob keys of media rows a committed purge batch deleted, until their blobs are removed
-- (after the commit). A crash in between leaves them here: the next purge batch of any run
-- removes them first, so no blob outlives its row for longer than that.
CREATE TABLE purge_blob_queue (
    key        text PRIMARY KEY,
    run_id     uuid NOT NULL REFERENCES purge_runs (id),
    queued_at  timestamptz NOT NULL DEFAULT now()
);

-- erasure requests (PIPL art. 47) and what each one did
CREATE TABLE erasures (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id),
    requested_by  uuid REFERENCES users (id),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- {"shredded": [conversation id], "refused": [{conversation_id, why, hold_ids?, until?}]}
    report        jsonb NOT NULL
);
CREATE INDEX erasures_user ON erasures (user_id, created_at);

-- The texts edits and recalls replaced (message_revisions, 0016) go with their messages when
-- a purge deletes those: the target's (message_id) and the edit's or recall's (change_seq).
-- The hub's role still has no DELETE on the table (bankhub db grant-app-role: append-only);
-- the cascade runs as the table's owner, so only the purge of the messages removes them.
ALTER TABLE message_revisions
    DROP CONSTRAINT message_revisions_message_id_fkey,
    ADD CONSTRAINT message_revisions_message_id_fkey
        FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE,
    DROP CONSTRAINT message_revisions_conversation_id_change_seq_fkey,
    ADD CONSTRAINT message_revisions_conversation_id_change_seq_fkey
        FOREIGN KEY (conversation_id, change_seq) REFERENCES messages (conversation_id, seq) ON DELETE CASCADE;
