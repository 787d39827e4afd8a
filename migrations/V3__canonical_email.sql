-- One canonical form per email (issue 14): lookup, uniqueness and every rate-limit key use
-- `email_canonical`, computed by the application (shared::users::canonical_email: trim, NFKC,
-- Unicode case folding). `lower(email)` is dropped as the uniqueness rule: it follows the
-- database's locale and disagrees with the application on letters such as U+0130.
--
-- SQL cannot run the Rust function, and `normalize(lower(email), NFKC)` is not the same function
-- (lower-casing is not case folding, and `lower` depends on the collation), so the column starts
-- out empty for existing rows: `todo-admin migrate` (shared::db::migrate) fills it right after
-- this file, in batches, refusing to merge two existing accounts that turn out to share a
-- canonical form, and then, in one transaction, makes it NOT NULL and drops
-- `users_email_lower_key`. That index stays until every row has its canonical form, so a legacy
-- row not yet filled (NULL, which the new index does not compare) cannot be signed up again
-- under another case meanwhile. Code older than this migration can no longer sign up once the
-- backfill has made the column NOT NULL: migrate before deploying (README).
ALTER TABLE users ADD COLUMN email_canonical text
    CHECK (email_canonical IS NULL OR char_length(email_canonical) BETWEEN 1 AND 1024);
-- The application maps a violation of this constraint (or, until the backfill, of
-- users_email_lower_key), by name, to 409 email_taken.
CREATE UNIQUE INDEX users_email_canonical_key ON users (email_canonical);
