-- A second factor: TOTP (RFC 6238) with recovery codes (issue 17).
--
-- Nothing here lets anyone pass the second factor from a dump alone: the TOTP secret is
-- AES-256-GCM ciphertext under a key that lives in Secrets Manager (MFA_ENCRYPTION_KEY locally),
-- bound to the user id as associated data; recovery codes and login challenges are SHA-256
-- hashes of values with at least 64 (codes) or 256 (challenges) random bits.

CREATE TABLE mfa_totp (
    user_id           uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- nonce (12 bytes) || ciphertext || tag (16 bytes).
    secret_ciphertext bytea NOT NULL,
    -- Which key encrypted it (the key can rotate: the previous key still decrypts).
    key_id            text NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 200),
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- NULL: a pending enrolment, not yet confirmed with a first code.
    enabled_at        timestamptz,
    -- The last accepted RFC 6238 time step: a step is never accepted twice (replay). Only ever
    -- raised by a conditional UPDATE (`last_used_step < $step`).
    last_used_step    bigint
);

CREATE TABLE mfa_recovery_codes (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- The first step of a two-step login: the right password of an account with MFA on.
CREATE TABLE mfa_challenges (
    token_hash    bytea PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The login failure counter's key (store::ratelimit::email_key): wrong codes count there.
    account_key   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    failures      integer NOT NULL DEFAULT 0,
    consumed_at   timestamptz
);
CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_expires_at_idx ON mfa_challenges (expires_at);

-- How the session was made: true after a second factor (`amr` ["pwd","otp"]).
ALTER TABLE sessions ADD COLUMN mfa boolean NOT NULL DEFAULT false;
