-- Sessions a user can see and end, and the security event log (issue 18).
--
-- Sessions remember where they were opened (the client address API Gateway saw, never a
-- forwarded header; the user agent, at most 256 characters) and when they were last used. Every
-- data request already reads its session (db::LIVE_CALLER); the same statement moves
-- `last_used_at` forward when it is over a minute old, so tracking costs no round trip and at
-- most one row update per session and minute. Existing sessions start at the migration's time.
ALTER TABLE sessions
    ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN ip text CHECK (ip IS NULL OR char_length(ip) <= 64),
    ADD COLUMN user_agent text CHECK (user_agent IS NULL OR char_length(user_agent) <= 256);

-- One row per security event, written in the same transaction (most often the same statement)
-- as the change it records (store::events). Never a password, token, code or hash of either:
-- who, what, from where, when.
CREATE TABLE security_events (
    id            uuid PRIMARY KEY,
    type          text NOT NULL CHECK (type IN (
                      'signup', 'login_succeeded', 'login_failed', 'login_throttled', 'mfa_failed',
                      'refresh_reuse_detected', 'logout', 'logout_all', 'session_revoked',
                      'password_changed', 'password_reset_requested', 'password_reset',
                      'email_verified', 'mfa_enabled', 'mfa_disabled', 'recovery_code_used',
                      'role_changed', 'user_disabled', 'user_enabled', 'user_deleted')),
    -- The account the event is about; NULL for an attempt on an unknown email. No foreign key:
    -- the trail outlives a deleted account (until the retention deletes it).
    user_id       uuid,
    -- The account that acted: the user itself, an admin, or NULL for an anonymous attempt.
    actor_id      uuid,
    session_id    uuid,
    ip            text CHECK (ip IS NULL OR char_length(ip) <= 64),
    user_agent    text CHECK (user_agent IS NULL OR char_length(user_agent) <= 256),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Failures that change nothing (login_failed, login_throttled, mfa_failed) are bounded: one
    -- row per (type, account key, address, minute), `count` attempts. `bucket_key` is the
    -- account's rate-limit key (a digest of the canonical email, known account or not); NULL
    -- for every other event.
    count         integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    bucket_key    text CHECK (bucket_key IS NULL OR char_length(bucket_key) <= 128),
    bucket_minute timestamptz,
    CHECK ((bucket_key IS NULL) = (bucket_minute IS NULL))
);
CREATE UNIQUE INDEX security_events_bucket_key
    ON security_events (type, bucket_key, ip, bucket_minute) NULLS NOT DISTINCT
    WHERE bucket_key IS NOT NULL;
-- GET /auth/events (a user's own, newest first) and GET /admin/events?user_id=.
CREATE INDEX security_events_user_idx ON security_events (user_id, created_at DESC, id DESC);
-- GET /admin/events (all, newest first) and the retention's batches (oldest first).
CREATE INDEX security_events_created_idx ON security_events (created_at DESC, id DESC);
-- GET /admin/events?type=.
CREATE INDEX security_events_type_idx ON security_events (type, created_at DESC, id DESC);
