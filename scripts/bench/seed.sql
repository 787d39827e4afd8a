-- Seed a benchmark database (scripts/bench.sh), directly in SQL:
--   psql -v users=N -v tasks_per_user=T -v hash='$argon2id$...' -f scripts/bench/seed.sql DB_URL
-- Users bench1..benchN@bench.example all share one argon2id hash (made once by the API's own
-- signup at the configured parameters), plus benchadmin@bench.example with role admin. Each
-- bench user gets T tasks, newest first one minute apart; every third completed, every other one
-- with a description. Ids are random UUIDs (the API makes UUIDv7s; lookups do not care).
-- For the growth runs, heavy@bench.example gets H tasks (-v heavy_tasks=H, default 0) and
-- empty@bench.example none. Every user's task counter (task_counts, what the quota reads) is set
-- from the rows, as the API keeps it. Every user gets one live session.
\set ON_ERROR_STOP on
\if :{?heavy_tasks}
\else
\set heavy_tasks 0
\endif
\timing on
-- The migration made the role's default statement timeout (DB_STATEMENT_TIMEOUT_MS) this
-- database's; seeding 1,000,000 rows takes longer than that, in this session only.
SET statement_timeout = 0;

BEGIN;
-- These addresses are lower-case ASCII, which is its own canonical form
-- (store::email::canonical_email), so email_canonical is the address itself.
INSERT INTO users (id, email, email_canonical, password_hash, role, created_at, updated_at)
SELECT gen_random_uuid(), format('bench%s@bench.example', g), format('bench%s@bench.example', g), :'hash', 'user',
       now() - interval '30 days', now() - interval '30 days'
  FROM generate_series(1, :users) AS g;

INSERT INTO users (id, email, email_canonical, password_hash, role)
VALUES (gen_random_uuid(), 'benchadmin@bench.example', 'benchadmin@bench.example', :'hash', 'admin'),
       (gen_random_uuid(), 'heavy@bench.example', 'heavy@bench.example', :'hash', 'user'),
       (gen_random_uuid(), 'empty@bench.example', 'empty@bench.example', :'hash', 'user');

INSERT INTO tasks (id, user_id, title, description, completed, created_at, updated_at)
SELECT gen_random_uuid(), u.id, format('task %s', t),
       CASE WHEN t % 2 = 0 THEN 'a short description of the task' END,
       t % 3 = 0,
       now() - make_interval(mins => t), now() - make_interval(mins => t)
  FROM users u CROSS JOIN generate_series(1, :tasks_per_user) AS t
 WHERE u.email LIKE 'bench%@bench.example' AND u.role = 'user';

INSERT INTO tasks (id, user_id, title, description, completed, created_at, updated_at)
SELECT gen_random_uuid(), u.id, format('heavy task %s', t), NULL, t % 3 = 0,
       now() - make_interval(secs => t), now() - make_interval(secs => t)
  FROM users u CROSS JOIN generate_series(1, :heavy_tasks) AS t
 WHERE u.email = 'heavy@bench.example';

-- One live session per user, as if each had logged in once: the "live caller" lookup then runs
-- against a sessions table of the users' size, as it would deployed.
INSERT INTO sessions (id, user_id, created_at, last_refreshed_at, idle_expires_at, absolute_expires_at)
SELECT gen_random_uuid(), u.id, now() - interval '1 hour', now() - interval '1 hour',
       now() + interval '6 days', now() + interval '29 days'
  FROM users u;

INSERT INTO task_counts (user_id, n)
SELECT user_id, count(*) FROM tasks GROUP BY user_id
ON CONFLICT (user_id) DO UPDATE SET n = EXCLUDED.n;
COMMIT;

VACUUM ANALYZE users;
VACUUM ANALYZE tasks;
VACUUM ANALYZE sessions;
VACUUM ANALYZE task_counts;
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM tasks) AS tasks;
