-- 0026: the publisher figures of a notice (GET /v1/notices/{id}/stats) become counters kept
-- current by the transactions that change them, instead of a count over the account's followers
-- at query time (O(followers): ~0.4 s at 1,000,000 followers).
--
-- What is counted, per published notice addressed to every follower (no org, tag, segment or
-- staff-only target):
--   followers_targeted  the current followers who followed before it was published
--   followers_read      of those, the ones whose read position passed it
-- "Followed before it was published" is decided in the account's stream, not by clocks: a
-- follow records the account's last_seq at that moment (account_follows.since_seq), read under
-- the account row lock that every publication takes, so a follower is in notice s's audience
-- exactly when since_seq < s, whichever commits first.
--
-- A targeted notice keeps NULL counters: its audience depends on the followers' org, tags,
-- segment and role, which change without touching the account, so its figures are still counted
-- at query time (storage/accounts.py, _TARGETED_FOLLOWERS, bounded by the account's followers).
--
-- No hot row: a counter that every follower changes (a notice's read count, an account's
-- follower count) is split over 64 slot rows, the slot chosen by the follower's user id
-- (follow_slot), each created when first needed (INSERT ... ON CONFLICT DO UPDATE). Followers
-- on different slots never wait on each other; the figures sum at most 64 rows (O(1)).
--   account_follower_counts (account_id, slot, n)       the account's current followers
--   notice_counts (notice_id, slot, targeted, read)     changes to a counted notice's figures
--                                                        after its publication, per slot
-- A counted notice's figures are its base columns (notices.followers_targeted, the followers
-- at publication; notices.followers_read, 0 at publication) plus the sum of its slot rows.
--
-- Who maintains what (all in the changing transaction, so a rolled-back change counts nothing):
--   * a follow (INSERT into account_follows): a row trigger takes a SHARE lock on the account
--     row (follows do not block each other; a publication, which updates the row, waits for
--     them and they for it) and stamps since_seq; a statement trigger adds the follows to the
--     follower's slot row of account_follower_counts;
--   * a publication (a notice taking its seq, INSERT or UPDATE): a row trigger sums the
--     account's follower slots (the account row is locked by the seq allocation, so no follow
--     or unfollow of the account is in flight) and sets followers_read to 0 (no follower can
--     have read past the end of the stream);
--   * a read (UPDATE of account_follows.read_seq): a statement trigger adds (or removes) one,
--     in the reader's slot, per counted notice the read position crossed, over the notices
--     after the follower's since_seq;
--   * an unfollow (DELETE): a statement trigger takes a SHARE lock on the account rows first
--     (so a publication either counted the follower and is seen by the next statement, or
--     waits and does not), then takes the follower out of its follower slot and, in its slot,
--     out of every counted notice published after it followed (one slot row per such notice:
--     O(notices published since the follow)).
-- Slot rows are written in (account or notice id, slot) order within a statement: two
-- transactions crossing the same rows never wait on each other in opposite orders.
--
-- Backfilled from the existing rows: since_seq from followed_at against the notices' publication
-- times (the definition this replaces), the follower slots by count, the base counters by recount.

ALTER TABLE account_follows ADD COLUMN since_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE notices ADD COLUMN followers_targeted bigint, ADD COLUMN followers_read bigint;

-- the slot of a follower's counters: 0..63 from the last byte of the user id (random in both
-- UUIDv4 and UUIDv7)
CREATE FUNCTION follow_slot(user_id uuid) RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (get_byte(uuid_send(user_id), 15) & 63)::smallint;

CREATE TABLE account_follower_counts (
    account_id uuid NOT NULL REFERENCES official_accounts (id) ON DELETE CASCADE,
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 63),
    n bigint NOT NULL,
    PRIMARY KEY (account_id, slot)
);

CREATE TABLE notice_counts (
    notice_id uuid NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 63),
    targeted bigint NOT NULL DEFAULT 0,
    read bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (notice_id, slot)
);

UPDATE account_follows f
SET since_seq = (SELECT max(n.seq) FROM notices n
                 WHERE n.account_id = f.account_id AND n.seq IS NOT NULL AND n.published_at < f.followed_at)
WHERE EXISTS (SELECT 1 FROM notices n
              WHERE n.account_id = f.account_id AND n.seq IS NOT NULL AND n.published_at < f.followed_at);

INSERT INTO account_follower_counts (account_id, slot, n)
SELECT account_id, follow_slot(user_id), count(*) FROM account_follows GROUP BY 1, 2;

UPDATE notices n SET followers_targeted = c.t, followers_read = c.r
FROM (SELECT n2.id, count(f.user_id) AS t, count(f.user_id) FILTER (WHERE f.read_seq >= n2.seq) AS r
      FROM notices n2
      LEFT JOIN account_follows f ON f.account_id = n2.account_id AND f.since_seq < n2.seq
      WHERE n2.seq IS NOT NULL AND n2.target_org_ids IS NULL AND n2.target_tags IS NULL
        AND n2.target_segments IS NULL AND NOT n2.staff_only
      GROUP BY n2.id) c
WHERE n.id = c.id;

-- a follow: the account's stream position, under a SHARE lock of the account row (follows of
-- one account run side by side; a publication waits for them, they wait for a publication)
CREATE FUNCTION account_follow_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.last_seq INTO NEW.since_seq FROM official_accounts a WHERE a.id = NEW.account_id FOR SHARE;
    RETURN NEW;
END $$;

CREATE FUNCTION account_follows_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_follower_counts AS c (account_id, slot, n)
    SELECT account_id, follow_slot(user_id), count(*) FROM added GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE FUNCTION account_follows_read() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- per counted notice and reader slot: the followers whose position moved past it, minus
    -- those moved back
    INSERT INTO notice_counts AS c (notice_id, slot, read)
    SELECT d.id, d.slot, d.k FROM (
        SELECT n.id, follow_slot(nw.user_id) AS slot,
               sum((nw.read_seq >= n.seq)::int - (o.read_seq >= n.seq)::int) AS k
        FROM before_read o
        JOIN after_read nw ON nw.account_id = o.account_id AND nw.user_id = o.user_id
        JOIN notices n ON n.account_id = nw.account_id
                      AND n.seq > GREATEST(LEAST(o.read_seq, nw.read_seq), nw.since_seq)
                      AND n.seq <= GREATEST(o.read_seq, nw.read_seq)
        WHERE o.read_seq <> nw.read_seq AND n.followers_read IS NOT NULL
        GROUP BY 1, 2) d
    WHERE d.k <> 0
    ORDER BY d.id, d.slot
    ON CONFLICT (notice_id, slot) DO UPDATE SET read = c.read + EXCLUDED.read;
    RETURN NULL;
END $$;

CREATE FUNCTION account_follows_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the account rows first: a publication that counted these followers has committed and is
    -- seen by the next statement, or waits until this transaction ends and does not count them
    PERFORM 1 FROM official_accounts a WHERE a.id IN (SELECT account_id FROM removed) ORDER BY a.id FOR SHARE;
    INSERT INTO account_follower_counts AS c (account_id, slot, n)
    SELECT account_id, follow_slot(user_id), -count(*) FROM removed GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    INSERT INTO notice_counts AS c (notice_id, slot, targeted, read)
    SELECT n.id, follow_slot(o.user_id), -count(*), -count(*) FILTER (WHERE o.read_seq >= n.seq)
    FROM removed o JOIN notices n ON n.account_id = o.account_id AND n.seq > o.since_seq
    WHERE n.followers_targeted IS NOT NULL
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (notice_id, slot) DO UPDATE SET targeted = c.targeted + EXCLUDED.targeted, read = c.read + EXCLUDED.read;
    RETURN NULL;
END $$;

-- a publication: the audience of a notice addressed to every follower is the account's
-- followers now (the seq allocation in the same statement holds the account row lock, so no
-- follow or unfollow of the account is in flight)
CREATE FUNCTION notice_published_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.target_org_ids IS NULL AND NEW.target_tags IS NULL AND NEW.target_segments IS NULL AND NOT NEW.staff_only THEN
        SELECT coalesce(sum(c.n), 0)::bigint INTO NEW.followers_targeted FROM account_follower_counts c WHERE c.account_id = NEW.account_id;
        NEW.followers_read := 0;
    ELSE
        NEW.followers_targeted := NULL;
        NEW.followers_read := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER account_follow_stamp BEFORE INSERT ON account_follows
    FOR EACH ROW EXECUTE FUNCTION account_follow_stamp();
CREATE TRIGGER account_follows_added AFTER INSERT ON account_follows
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION account_follows_added();
CREATE TRIGGER account_follows_read AFTER UPDATE ON account_follows
    REFERENCING OLD TABLE AS before_read NEW TABLE AS after_read FOR EACH STATEMENT EXECUTE FUNCTION account_follows_read();
CREATE TRIGGER account_follows_removed AFTER DELETE ON account_follows
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION account_follows_removed();
CREATE TRIGGER notice_published_insert BEFORE INSERT ON notices
    FOR EACH ROW WHEN (NEW.seq IS NOT NULL) EXECUTE FUNCTION notice_published_count();
CREATE TRIGGER notice_published_update BEFORE UPDATE ON notices
    FOR EACH ROW WHEN (OLD.seq IS NULL AND NEW.seq IS NOT NULL) EXECUTE FUNCTION notice_published_count();
