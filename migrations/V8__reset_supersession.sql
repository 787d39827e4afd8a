-- Reset links that outlive the password they were asked against (security review of issue 16).
--
-- V7 voids the reset tokens that exist when a password changes. But the sender makes a token
-- when it sends, which can be after the change: a forgot request queued before a password change
-- (or a reset) and sent after it, or a send retried after SES accepted the first one and the
-- user already reset with it. Such a token must be as dead as one made before the change. So
-- every user row records when its password last changed, and a reset token is only made, and
-- only works, for a request made after that.

-- Accounts that exist now: no change recorded (-infinity). New accounts: their creation, so a
-- forgot request for an address made before anyone signed up with it is never sent to them.
ALTER TABLE users ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE users ALTER COLUMN password_changed_at SET DEFAULT clock_timestamp();

-- Set in the same row update as the new hash, for every path that changes a password (a
-- password change, a reset, and whatever comes later); a rehash at new argon2 parameters (login;
-- it records password_rehashed_from) is the same password, not a change. clock_timestamp, like
-- mail_outbox.created_at, which it is compared with.
CREATE FUNCTION users_password_changed_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.password_changed_at := clock_timestamp();
    RETURN NEW;
END
$$;
CREATE TRIGGER users_password_changed_at BEFORE UPDATE OF password_hash ON users
    FOR EACH ROW
    WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash AND NEW.password_rehashed_from IS NULL)
    EXECUTE FUNCTION users_password_changed_at();

-- Disabling an account voids its reset tokens too: re-enabling it must not bring back a link
-- mailed before.
CREATE FUNCTION account_tokens_user_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM account_tokens WHERE user_id = NEW.id AND purpose = 'password_reset';
    RETURN NULL;
END
$$;
CREATE TRIGGER users_disabled AFTER UPDATE OF disabled ON users
    FOR EACH ROW
    WHEN (NEW.disabled AND NOT OLD.disabled)
    EXECUTE FUNCTION account_tokens_user_disabled();
