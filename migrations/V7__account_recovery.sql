-- Account recovery and email verification (issue 16).
--
-- Mail is never sent on a request's path. A request records a job in `mail_outbox` and answers;
-- a separate sender step (functions/mail-sender: an EventBridge-scheduled function deployed, a
-- background task in the local API, woken by the NOTIFY below) resolves the account, makes the
-- token, stores only its SHA-256 in `account_tokens`, and sends the message, retrying with
-- back-off. So forgot-password does exactly the same work for every email, known or not.

ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

CREATE TABLE mail_outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text NOT NULL CHECK (kind IN ('password_reset', 'email_verification')),
    -- Forgot-password: the canonical email asked for, which may match no account. The sender
    -- deletes such a job as soon as it finds no account, so no stranger's address is kept.
    email_canonical text CHECK (email_canonical IS NULL OR char_length(email_canonical) BETWEEN 1 AND 1024),
    -- Verification: the account.
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    -- clock_timestamp, not the transaction's start: "a newer request" compares these.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A sender that claimed the job holds it until then; one that died mid-send loses the claim
    -- and the job is taken again: a request is never lost.
    locked_until    timestamptz,
    done_at         timestamptz,
    outcome         text CHECK (outcome IN ('sent', 'skipped', 'failed')),
    -- The kind of the last failure (an SES error code, a timeout): never a token or a body.
    last_error      text CHECK (last_error IS NULL OR char_length(last_error) <= 500),
    CHECK ((kind = 'password_reset' AND email_canonical IS NOT NULL AND user_id IS NULL)
        OR (kind = 'email_verification' AND user_id IS NOT NULL AND email_canonical IS NULL)),
    CHECK ((done_at IS NULL) = (outcome IS NULL))
);
-- The sender's next job.
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE done_at IS NULL;
-- "Is there a newer reset request for this email?" (supersession).
CREATE INDEX mail_outbox_reset_email_idx ON mail_outbox (email_canonical, created_at) WHERE kind = 'password_reset';
-- Purging finished jobs.
CREATE INDEX mail_outbox_done_idx ON mail_outbox (done_at) WHERE done_at IS NOT NULL;

-- Wake a listening sender (the local API's background task) when a job is queued. Delivered at
-- commit; nobody listens deployed, where the schedule runs the sender.
CREATE FUNCTION mail_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mail_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER mail_outbox_queued AFTER INSERT ON mail_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION mail_outbox_notify();

-- Reset and verification tokens: only the SHA-256 of the 256-bit token is stored.
CREATE TABLE account_tokens (
    token_hash   bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose      text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    -- When the request that produced it was made (its outbox job's created_at): a reset token is
    -- superseded by any reset request for the same email made after this.
    requested_at timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_idx ON account_tokens (expires_at);

-- Any change of a user's password (a password change, a reset, and whatever path comes later)
-- makes every reset token of that user useless, in the same transaction. A rehash of the same
-- password at new argon2 parameters (login; it records password_rehashed_from) is not a change.
CREATE FUNCTION account_tokens_password_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM account_tokens WHERE user_id = NEW.id AND purpose = 'password_reset';
    RETURN NULL;
END
$$;
CREATE TRIGGER users_password_changed AFTER UPDATE OF password_hash ON users
    FOR EACH ROW
    WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash AND NEW.password_rehashed_from IS NULL)
    EXECUTE FUNCTION account_tokens_password_changed();
