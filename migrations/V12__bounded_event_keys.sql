-- Bounded failure events keyed by what a client cannot multiply (issue 18, review).
--
-- V9 bounded `login_failed`, `login_throttled` and `mfa_failed` to one row per (type, account
-- key, full address, minute), the account key being the SHA-256 of whatever was typed in the
-- email field. Both parts were the attacker's choice: random emails (or addresses rotated inside
-- one IPv6 /64) made one new row per request, and the digest of a password typed into the email
-- field stayed in the table for the retention period.
--
-- Now the key (store::events::record_failure) is `user <id> <address>` for a known account and
-- `address <address>` otherwise (an unknown email, an address over its limit), the address being
-- the rate limits' key (an IPv6 client by its /64): nothing typed, no digest, at most one row per
-- type, account or address, and minute. The full first address stays in `ip`.
DROP INDEX security_events_bucket_key;

-- The old keys are digests of typed emails: replaced by a value unique per row (their minutes
-- are over, nothing counts into them again).
UPDATE security_events SET bucket_key = 'legacy ' || id::text WHERE bucket_key IS NOT NULL;

CREATE UNIQUE INDEX security_events_bucket_key
    ON security_events (type, bucket_key, bucket_minute)
    WHERE bucket_key IS NOT NULL;

COMMENT ON COLUMN security_events.bucket_key IS
    'Bounded failure events only: user <id> <address key> or address <address key> (never typed input nor a digest of it); NULL for every other event.';
