-- 0024: information barriers. Segments (investment banking, research, retail ...), who is in
-- them (a user may be in several, or in none), and barrier policies: no communication between
-- the members of two segments. The rules are bankhub.compliance.barriers; the decisions
-- bankhub.policy; compliance officers manage these rows (bankhub.actions.barriers), each
-- change audited in its own transaction.

CREATE TABLE barrier_segments (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{1,31}$'),
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE barrier_members (
    segment_id uuid NOT NULL REFERENCES barrier_segments (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_by   uuid NOT NULL REFERENCES users (id),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, user_id)
);
-- the send path and every check start from a user: their segments
CREATE INDEX barrier_members_user ON barrier_members (user_id, segment_id);

-- One row per unordered pair: segment_a < segment_b (by id), so (a, b) and (b, a) are one
-- policy and a segment is never barred from itself.
CREATE TABLE barrier_policies (
    id         uuid PRIMARY KEY,
    segment_a  uuid NOT NULL REFERENCES barrier_segments (id) ON DELETE CASCADE,
    segment_b  uuid NOT NULL REFERENCES barrier_segments (id) ON DELETE CASCADE,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (segment_a < segment_b),
    UNIQUE (segment_a, segment_b)
);
-- the other side of a policy, looked up from either side (the unique index covers segment_a)
CREATE INDEX barrier_policies_b ON barrier_policies (segment_b, segment_a);

-- Whether a barrier policy separates users a and b: some segment of a and some segment of b
-- are the two sides of a policy (either way round). Directory queries filter with it
-- (AND NOT barrier_separates($viewer, u.id)); a user in no segment costs one index probe.
CREATE FUNCTION barrier_separates(a uuid, b uuid) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM barrier_members ma
                   JOIN barrier_policies p ON p.segment_a = ma.segment_id
                   JOIN barrier_members mb ON mb.segment_id = p.segment_b AND mb.user_id = b
                   WHERE ma.user_id = a)
        OR EXISTS (SELECT 1 FROM barrier_members ma
                   JOIN barrier_policies p ON p.segment_b = ma.segment_id
                   JOIN barrier_members mb ON mb.segment_id = p.segment_a AND mb.user_id = b
                   WHERE ma.user_id = a)
$$;
