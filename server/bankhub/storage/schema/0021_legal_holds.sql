-- 0021: legal holds. A hold keeps messages from purge and crypto-shredding while a case is
-- open. It names a custodian (every conversation the user was ever a member of, by
-- membership_log), a conversation, or both, and optionally a date range [from_at, to_at) on
-- messages.created_at. A hold is ACTIVE while released_at IS NULL; a requested release stays
-- active until a second compliance officer approves it (dual control). Holds are never
-- deleted, and a released hold never becomes active again: both enforced below.
--
-- Placing a hold takes the exclusive transaction advisory lock HOLD_LOCK_KEY
-- (bankhub.storage.holds); purge batches, erasures and shreds take it shared before they
-- check. So a hold applies from the moment its transaction commits: whatever started before
-- finishes first, everything after sees it.

CREATE TABLE legal_holds (
    id                   uuid PRIMARY KEY,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    case_ref             text CHECK (case_ref IS NULL OR length(case_ref) BETWEEN 1 AND 64),
    custodian_id         uuid REFERENCES users (id),
    conversation_id      uuid REFERENCES conversations (id),
    from_at              timestamptz,
    to_at                timestamptz,
    created_by           uuid NOT NULL REFERENCES users (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    release_requested_by uuid REFERENCES users (id),
    release_requested_at timestamptz,
    release_reason       text CHECK (release_reason IS NULL OR length(release_reason) BETWEEN 1 AND 500),
    released_by          uuid REFERENCES users (id),
    released_at          timestamptz,
    CHECK (custodian_id IS NOT NULL OR conversation_id IS NOT NULL),
    CHECK (from_at IS NULL OR to_at IS NULL OR from_at < to_at),
    CHECK ((release_requested_by IS NULL) = (release_requested_at IS NULL)),
    CHECK ((release_requested_by IS NULL) = (release_reason IS NULL)),
    CHECK ((released_by IS NULL) = (released_at IS NULL)),
    -- released only through an approved request, by a second officer
    CHECK (released_by IS NULL OR (release_requested_by IS NOT NULL AND released_by <> release_requested_by))
);

-- what purge, erasure and shred look up: the active holds, by custodian and by conversation
CREATE INDEX legal_holds_active_custodian ON legal_holds (custodian_id) WHERE released_at IS NULL AND custodian_id IS NOT NULL;
CREATE INDEX legal_holds_active_conversation ON legal_holds (conversation_id) WHERE released_at IS NULL AND conversation_id IS NOT NULL;
-- the list, newest first (keyset paging on created_at, id)
CREATE INDEX legal_holds_created ON legal_holds (created_at DESC, id DESC);

CREATE FUNCTION legal_holds_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'legal holds are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.released_at IS NOT NULL THEN
        RAISE EXCEPTION 'a released legal hold does not change' USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.custodian_id IS DISTINCT FROM OLD.custodian_id OR NEW.conversation_id IS DISTINCT FROM OLD.conversation_id
       OR NEW.from_at IS DISTINCT FROM OLD.from_at OR NEW.to_at IS DISTINCT FROM OLD.to_at
       OR NEW.created_by IS DISTINCT FROM OLD.created_by OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'the scope of a legal hold does not change' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER legal_holds_no_delete BEFORE DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION legal_holds_guard();
CREATE TRIGGER legal_holds_no_rescope BEFORE UPDATE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION legal_holds_guard();
