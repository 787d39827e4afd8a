-- Rate-limit counters shared by every function instance and the local API.
-- One row per (bucket, key); a fixed window that, for buckets with back-off, grows after a window
-- that ended over the limit (strikes), up to a cap. Keys are client addresses, session ids, or
-- SHA-256 hashes of normalised emails (no addresses of unknown accounts are stored in the clear).
CREATE TABLE rate_limits (
    bucket       text NOT NULL,
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    count        integer NOT NULL,
    strikes      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX rate_limits_window_end_idx ON rate_limits (window_end);
