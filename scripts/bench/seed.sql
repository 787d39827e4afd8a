-- Seed a benchmark database (scripts/bench.sh), directly in SQL:
--   psql -v users=N -v tasks_per_user=T -v hash='$argon2id$...' -f scripts/bench/seed.sql DB_URL
-- Users bench1..benchN@bench.example all share one argon2id hash (made once by the API's own
-- signup at the configured parameters), plus benchadmin@bench.example with role admin. Each
-- bench user gets T tasks, newest first one minute apart; every third completed, every other one
-- with a description. Ids are random UUIDs (the API makes UUIDv7s; lookups do not care).
\set ON_ERROR_STOP on
\timing on
-- The migration made the role's default statement timeout (DB_STATEMENT_TIMEOUT_MS) this
-- database's; seeding 1,000,000 rows takes longer than that, in this session only.
SET statement_timeout = 0;

BEGIN;
-- These addresses are lower-case ASCII, which is its own canonical form
-- (shared::users::canonical_email), so email_canonical is the address itself.
INSERT INTO users (id, email, email_canonical, password_hash, role, created_at, updated_at)
SELECT gen_random_uuid(), format('bench%s@bench.example', g), format('bench%s@bench.example', g), :'hash', 'user',
       now() - interval '30 days', now() - interval '30 days'
  FROM generate_series(1, :users) AS g;

INSERT INTO users (id, email, email_canonical, password_hash, role)
VALUES (gen_random_uuid(), 'benchadmin@bench.example', 'benchadmin@bench.example', :'hash', 'admin');

INSERT INTO tasks (id, user_id, title, description, completed, created_at, updated_at)
SELECT gen_random_uuid(), u.id, format('task %s', t),
       CASE WHEN t % 2 = 0 THEN 'a short description of the task' END,
       t % 3 = 0,
       now() - make_interval(mins => t), now() - make_interval(mins => t)
  FROM users u CROSS JOIN generate_series(1, :tasks_per_user) AS t
 WHERE u.email LIKE 'bench%@bench.example' AND u.role = 'user';
COMMIT;

VACUUM ANALYZE users;
VACUUM ANALYZE tasks;
VACUUM ANALYZE sessions;
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM tasks) AS tasks;
