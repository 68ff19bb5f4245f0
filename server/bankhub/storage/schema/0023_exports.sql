-- 0023: eDiscovery export requests (docs/compliance.md, "eDiscovery export"). A compliance
-- officer requests one (scope, reason code, case reference); a second officer approves it
-- (dual control: never the requester); a node then builds the signed zip in the background,
-- keeping its progress here. The zip is plaintext of many conversations, so it is kept in the
-- blob store only sealed (chunked AES-256-GCM) under a data key of its own, wrapped under the
-- KEK like a conversation's (kek_id, wrapped_dek): destroying the row's key destroys the copy.
-- A build holds a lease (build_token, heartbeat_at): its progress and its completion only
-- change the row while it still holds the token, and it writes its sealed chunks under a key
-- of its own (exports/<id>/<token>/<n>), so two builds can never mix their copies. A ready
-- export expires after BANKHUB_EXPORT_RETENTION_DAYS: its key is destroyed, its chunks deleted.

CREATE TABLE exports (
    id              uuid PRIMARY KEY,
    -- {"custodians": [{user_id, username}], "conversation_ids": [...], "from", "to", "keywords": [...]}
    scope           jsonb NOT NULL,
    reason          text NOT NULL,
    case_ref        text,
    requested_by    uuid NOT NULL REFERENCES users (id),
    approved_by     uuid REFERENCES users (id),
    rejected_by     uuid REFERENCES users (id),
    state           text NOT NULL CHECK (state IN ('pending_approval', 'rejected', 'running', 'ready', 'failed', 'expired')),
    progress_done   bigint NOT NULL DEFAULT 0 CHECK (progress_done >= 0),
    progress_total  bigint NOT NULL DEFAULT 0 CHECK (progress_total >= 0),
    -- the built zip (as downloaded): its size, SHA-256 (hex) and what it holds
    bytes           bigint CHECK (bytes >= 0),
    sha256          text,
    counts          jsonb,
    -- a safe, fixed error text when it failed (never a DB error or message text)
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    -- where the sealed zip is (the blob key prefix of its chunks <blob_key>/<n>, n < chunks)
    -- and the key it is sealed under
    blob_key        text,
    chunks          integer CHECK (chunks >= 1),
    key_id          text,
    kek_id          text,
    wrapped_dek     bytea,
    -- the lease of the build running now (NULL: none claimed it yet) and its last sign of life
    build_token     uuid,
    heartbeat_at    timestamptz,
    expired_at      timestamptz,
    -- dual control, enforced by the database too
    CHECK (approved_by IS NULL OR approved_by <> requested_by),
    CHECK (state <> 'ready' OR blob_key IS NOT NULL)
);
CREATE INDEX exports_created ON exports (created_at DESC, id DESC);
-- the sweeps: stale running builds, ready exports past their retention
CREATE INDEX exports_sweep ON exports (state, finished_at) WHERE state IN ('running', 'ready');
