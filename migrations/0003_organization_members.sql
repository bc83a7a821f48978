-- Organization membership (MODULO 3: members list/add/change role/remove).
--
-- The spec's 35 tables keep a user's primary organization in users_profile.organization_id but
-- have nowhere to say that a user belongs to several organizations, nor with which role. This
-- table is the source of truth for membership and organization roles; the last owner of an
-- organization cannot be removed or demoted (enforced by the service, in one transaction with a
-- row lock on the organization).

CREATE TABLE organization_members (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    role            text NOT NULL DEFAULT 'member',
    invited_by      uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id),
    CONSTRAINT organization_members_role_check CHECK (role IN ('owner', 'admin', 'member'))
);

COMMENT ON TABLE organization_members IS 'Which users belong to which organizations, and with which organization role.';

CREATE INDEX organization_members_user_id_idx ON organization_members (user_id);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON organization_members
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
