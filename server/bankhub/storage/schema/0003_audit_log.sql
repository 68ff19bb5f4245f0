-- 0003: the tamper-evident audit log (see docs/security.md, "Audit log").
--
-- Append-only and hash-chained: hash = SHA-256(prev_hash || canonical encoding of the row),
-- computed by the application (bankhub/storage/audit.py defines the encoding). Appends are
-- serialised with a transaction-scoped advisory lock, so seq is gap-free and every row
-- chains from the one before it. `bankhub audit verify` re-computes the chain.

CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    at         timestamptz NOT NULL,
    actor_id   uuid,
    -- a username, or a system name such as 'system' or 'anonymous'
    actor      text NOT NULL,
    -- e.g. 'session.login', 'session.login_failed', 'session.revoked', 'user.role_changed'
    action     text NOT NULL,
    target     text NOT NULL,
    reason     text,
    ip         text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    prev_hash  bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- Rows are never changed or removed, by anyone: the trigger fires for the table owner too.
-- (The owner or a superuser can still disable the trigger or drop the table; that is why
-- the hub runs as a non-owner role, see `bankhub db grant-app-role`, and why the chain and
-- an externally anchored head exist: they make such tampering evident.)
CREATE FUNCTION audit_log_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'raise_exception', HINT = 'audit rows are never updated or deleted';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
