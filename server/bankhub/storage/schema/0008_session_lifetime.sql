-- 0008: an absolute session lifetime.
-- A session refreshed from another carries the time of the password sign-in it descends
-- from; no refresh extends it past signed_in_at + BANKHUB_SESSION_MAX_LIFETIME_HOURS.

ALTER TABLE sessions ADD COLUMN signed_in_at timestamptz;
-- sessions open when this delta runs count from their own creation
UPDATE sessions SET signed_in_at = created_at;
ALTER TABLE sessions
    ALTER COLUMN signed_in_at SET DEFAULT now(),
    ALTER COLUMN signed_in_at SET NOT NULL;
