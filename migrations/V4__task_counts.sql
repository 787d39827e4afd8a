-- Costs that do not grow with a user's data.
--
-- 1. The task quota reads a per-user counter instead of counting the user's tasks on every
--    create (which cost O(tasks of that user): 10,000 index entries per insert near the quota).
--    The counter is kept exact by the statements that insert and delete tasks (functions/tasks),
--    in the same statement as the row change: a create increments it with an upsert whose
--    ON CONFLICT ... WHERE refuses at the quota, and that row lock is what makes concurrent
--    creates of one user stop exactly at the quota. A user without a row has no tasks. The row
--    goes with the user (ON DELETE CASCADE), like the tasks themselves.
CREATE TABLE task_counts (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    n       integer NOT NULL CHECK (n >= 0)
);
INSERT INTO task_counts (user_id, n)
SELECT user_id, count(*) FROM tasks GROUP BY user_id;

-- 2. The admin list pages users newest first: without this index every page sorted the whole
--    users table (O(users) per request).
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC);

-- 3. Every admin change counts the active admins (the last one may not be demoted, disabled or
--    deleted) and locks them: without this index that was a scan of every user.
CREATE INDEX users_active_admins_idx ON users (id) WHERE role = 'admin' AND NOT disabled;

-- 4. Logout-all, a password change and disabling a user revoke the user's live sessions: this
--    index reaches exactly those, not every session the user ever had (revoked ones stay until
--    the hourly cleanup). It carries the session id too, so the "live caller" lookup of every
--    Bearer request (s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL), which the planner
--    may answer from this index, finds its one entry instead of walking the user's sessions.
CREATE INDEX sessions_user_live_idx ON sessions (user_id, id) WHERE revoked_at IS NULL;
