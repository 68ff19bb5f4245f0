-- 0009: dual control for administrative accounts. Creating an account of a role that
-- approves what others do (branch_admin, head_office_admin) or reads any conversation
-- (compliance), or moving a user into such a role, is a request that a second, existing
-- administrator approves or rejects. See docs/security.md ("Dual control").

CREATE TABLE admin_requests (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('create_user', 'change_role')),
    requested_by    uuid NOT NULL REFERENCES users (id),
    -- the account to create, or the user whose role changes
    username        text NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    target_user_id  uuid REFERENCES users (id),
    role            text NOT NULL CHECK (role IN ('branch_admin', 'head_office_admin', 'compliance')),
    from_role       text,
    org_id          uuid NOT NULL REFERENCES orgs (id),
    display_name    text CHECK (length(display_name) BETWEEN 1 AND 64),
    -- argon2 hash of the new account's password, held only while the request is pending
    password_hash   text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz NOT NULL,
    decided_by      uuid REFERENCES users (id),
    decided_at      timestamptz,
    -- the account created or changed by the approval
    result_user_id  uuid REFERENCES users (id),
    CHECK ((kind = 'create_user') = (target_user_id IS NULL)),
    CHECK (status = 'pending' OR password_hash IS NULL)
);

-- the pending list, oldest first (keyset paging on created_at, id)
CREATE INDEX admin_requests_pending ON admin_requests (created_at, id) WHERE status = 'pending';
CREATE INDEX admin_requests_username ON admin_requests (username) WHERE status = 'pending';
