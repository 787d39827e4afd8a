-- Security review of the second factor (issue 17).
--
-- 1. Whether the second factor is on, on the users row itself, kept in step with mfa_totp by
--    every statement that turns it on or off (confirm, DELETE /auth/mfa/totp, an admin's PATCH
--    mfa_enabled:false). Login's session-opening statement share-locks the user row and requires
--    `NOT mfa_enabled`: a login whose password was checked before the second factor was turned on
--    and that reaches its session step after the change committed re-reads the row (PostgreSQL
--    re-checks a locked row's newest version) and opens no password-only session. A change on
--    another table (mfa_totp) would not be re-read that way; the users row is.
ALTER TABLE users ADD COLUMN mfa_enabled boolean NOT NULL DEFAULT false;
UPDATE users u SET mfa_enabled = true
 WHERE EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id AND t.enabled_at IS NOT NULL);

-- 2. A password change or reset ends the pending two-step logins (mfa_tokens) of the account:
--    they were opened with a password that is gone. Same condition as V7's trigger: a rehash of
--    the same password (login; it records password_rehashed_from) is not a change.
CREATE FUNCTION mfa_challenges_password_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM mfa_challenges WHERE user_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_password_changed_mfa AFTER UPDATE OF password_hash ON users
    FOR EACH ROW
    WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash AND NEW.password_rehashed_from IS NULL)
    EXECUTE FUNCTION mfa_challenges_password_changed();
