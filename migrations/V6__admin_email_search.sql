-- The admin list's email filter is a substring search on the canonical email. Without an index
-- for it, a filter that matches few users walked the users newest first until the page filled:
-- every user, for a filter that matches nobody (213 ms at 100,000 users, and growing with them).
-- A trigram index answers `email_canonical LIKE '%...%'` from the users that contain every
-- three-character piece of the filter, so a rare filter reads about as many rows as it matches.
-- A filter that matches many users is still answered by walking `users_created_idx`, which fills
-- the page after a few rows; the list statement is planned for each filter (sent unnamed, see
-- functions/admin) so that PostgreSQL picks between the two with the filter's own selectivity.
--
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it. Neon ships it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_canonical_trgm_idx ON users USING gin (email_canonical gin_trgm_ops);
