-- 0011: at most one pending dual-control request per username, enforced by the database.
--
-- Filing checked for a pending request and then inserted; two filings at once both passed
-- the check. A partial unique index makes the second insert fail, which the hub answers
-- 409 conflict (bankhub.storage.admin_requests.RequestPending).
--
-- A request past expires_at is still 'pending' until something decides it, and must not
-- block a new one: filing first marks such requests 'expired' (and audits that,
-- admin_request.expired). The rows below are those already lapsed or duplicated when this
-- delta runs: lapsed pending requests become 'expired' (nobody can approve them any more;
-- deciding one answered 409 already), and of several live pending requests about one
-- username, all but the oldest become 'expired' too (their makers file again).

UPDATE admin_requests SET status = 'expired', decided_at = clock_timestamp(), password_hash = NULL
WHERE status = 'pending' AND expires_at <= clock_timestamp();

UPDATE admin_requests a SET status = 'expired', decided_at = clock_timestamp(), password_hash = NULL
WHERE a.status = 'pending' AND EXISTS (
    SELECT 1 FROM admin_requests b
    WHERE b.username = a.username AND b.status = 'pending' AND (b.created_at, b.id) < (a.created_at, a.id));

-- replaces the plain index on the same rows
DROP INDEX admin_requests_username;
CREATE UNIQUE INDEX admin_requests_one_pending ON admin_requests (username) WHERE status = 'pending';
