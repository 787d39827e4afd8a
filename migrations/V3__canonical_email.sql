-- One canonical form per email (issue 14): lookup, uniqueness and every rate-limit key use
-- `email_canonical`, computed by the application (shared::users::canonical_email: trim, NFKC,
-- Unicode case folding). `lower(email)` is dropped as the uniqueness rule: it follows the
-- database's locale and disagrees with the application on letters such as U+0130.
--
-- SQL cannot run the Rust function, and `normalize(lower(email), NFKC)` is not the same function
-- (lower-casing is not case folding, and `lower` depends on the collation), so the column starts
-- out empty for existing rows: `todo-admin migrate` (shared::db::migrate) fills it right after
-- this file, in batches, refusing to merge two existing accounts that turn out to share a
-- canonical form, and then makes it NOT NULL.
ALTER TABLE users ADD COLUMN email_canonical text
    CHECK (email_canonical IS NULL OR char_length(email_canonical) BETWEEN 1 AND 1024);
-- The application maps a violation of this constraint, by name, to 409 email_taken.
CREATE UNIQUE INDEX users_email_canonical_key ON users (email_canonical);
DROP INDEX users_email_lower_key;
