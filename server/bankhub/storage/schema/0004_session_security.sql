-- 0004: login lockout and revocation reasons.

ALTER TABLE users
    ADD COLUMN failed_logins integer NOT NULL DEFAULT 0,
    ADD COLUMN locked_until  timestamptz;

ALTER TABLE sessions ADD COLUMN revoked_reason text;

CREATE INDEX sessions_active_user ON sessions (user_id) WHERE revoked_at IS NULL;
