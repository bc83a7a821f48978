-- Two identity fixes found in review (applied migrations are never edited, so they come here).
--
-- 1. The audit trail's guard let a direct `UPDATE audit_logs SET user_id = NULL` through: it meant
--    to allow only PostgreSQL's own ON DELETE SET NULL of a user or organization. A foreign-key
--    action runs the trigger one level deeper than a statement, so the exception now requires
--    pg_trigger_depth() > 1.
-- 2. Emails were unique across soft-deleted profiles too, so a user who was deleted and signed up
--    again (a new Supabase id, the same email) could never get a profile. Uniqueness now covers
--    live profiles only.

CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND pg_trigger_depth() > 1
       AND (NEW.user_id IS NULL OR NEW.user_id = OLD.user_id)
       AND (NEW.organization_id IS NULL OR NEW.organization_id = OLD.organization_id)
       AND (to_jsonb(NEW) - 'user_id' - 'organization_id')
           = (to_jsonb(OLD) - 'user_id' - 'organization_id')
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP INDEX users_profile_email_lower_key;
CREATE UNIQUE INDEX users_profile_email_lower_key ON users_profile (lower(email)) WHERE deleted_at IS NULL;
