-- 0015: per-user privacy of read receipts and presence, and the last-seen time.
--
-- A user without a row has the defaults: read receipts shared, last seen visible to every
-- related user (contacts, their RM, their customers). ``last_seen_at`` is written when a
-- user's last connection closes (batched per node), never per heartbeat: whether a user
-- is online lives in the broker, not here.

CREATE TABLE user_privacy (
    user_id             uuid PRIMARY KEY REFERENCES users (id),
    share_read_receipts boolean NOT NULL DEFAULT true,
    last_seen           text NOT NULL DEFAULT 'everyone' CHECK (last_seen IN ('everyone', 'contacts', 'nobody')),
    last_seen_at        timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
