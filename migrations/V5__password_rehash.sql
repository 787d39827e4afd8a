-- A login whose argon2 parameters are out of date stores a rehash of the same password. A second
-- login that verified the old hash concurrently must still open its session (same password),
-- while a login that raced a real password change must not (issue 14 point 4). So a rehash
-- records which hash it replaced: the SHA-256 of that hash string (not the weaker hash itself,
-- which a copy of the database would otherwise keep around for cracking). A password change sets
-- it back to NULL.
ALTER TABLE users ADD COLUMN password_rehashed_from bytea
    CHECK (password_rehashed_from IS NULL OR octet_length(password_rehashed_from) = 32);
