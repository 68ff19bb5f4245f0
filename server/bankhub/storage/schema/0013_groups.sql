-- 0013: groups with owner and admin roles; staff-internal groups bound to an org subtree.
-- See docs/protocol.md, "Groups".

-- A group has one owner (who may promote members to admin and hand ownership on) and any
-- number of admins (who invite, remove members and rename). Members of direct and service
-- conversations are plain members.
ALTER TABLE conversation_members DROP CONSTRAINT conversation_members_role_check;
ALTER TABLE conversation_members ADD CONSTRAINT conversation_members_role_check
    CHECK (role IN ('owner', 'admin', 'member'));

-- An org group: its members are the active staff of this org and of every org below it,
-- kept so by the hub (bankhub.actions.groups.reconcile_*); nobody joins, leaves or is removed
-- by hand. NULL: a group whose members are managed by its owner and admins.
ALTER TABLE conversations ADD COLUMN org_id uuid REFERENCES orgs (id);
ALTER TABLE conversations ADD CONSTRAINT conversations_org_group CHECK (org_id IS NULL OR kind = 'group');
CREATE INDEX conversations_org ON conversations (org_id) WHERE org_id IS NOT NULL;

-- members by join order: the successor of an owner who leaves, and the member list's order
CREATE INDEX conversation_members_joined ON conversation_members (conversation_id, joined_at, user_id);
