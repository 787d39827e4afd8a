//! Rate limits kept in PostgreSQL, so every Lambda instance and the local API share the counts.
//!
//! Each check is one atomic statement (an upsert that counts and answers in the same step), taken
//! *before* the expensive work: 50 concurrent attempts on one account cannot slip past the limit
//! between a check and a write. A window that ended over its limit makes the next one longer
//! (back-off, where enabled), up to a cap: no permanent lock anyone can trigger.

use std::net::IpAddr;

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;

use crate::config::{DbSettings, Limit};
use crate::db;
use crate::error::{ApiError, ApiResult};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Login attempts per account (reset by a successful login), with back-off.
    LoginAccount,
    /// Login attempts per client address.
    LoginIp,
    /// Signups per client address.
    SignupIp,
    /// Refreshes per session.
    RefreshSession,
}

impl Bucket {
    /// The bucket's name in `rate_limits.bucket`.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::LoginAccount => "login_account",
            Bucket::LoginIp => "login_ip",
            Bucket::SignupIp => "signup_ip",
            Bucket::RefreshSession => "refresh_session",
        }
    }

    fn backoff(self) -> bool {
        matches!(self, Bucket::LoginAccount)
    }
}

/// The longest a back-off window may grow to, as a multiple of the configured window.
const MAX_BACKOFF_FACTOR: i64 = 4;

/// The counter key of an email: case and surrounding spaces do not make a new counter, and the
/// address itself is not stored.
pub fn email_key(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The counter key of a client address (`unknown` when the event carries none).
pub fn ip_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

const HIT: &str = "
INSERT INTO rate_limits AS r (bucket, key, window_start, window_end, count, strikes)
{source}
ON CONFLICT (bucket, key) DO UPDATE SET
    strikes = CASE WHEN r.window_end > now() THEN r.strikes
                   WHEN $5 AND r.count > $4 THEN LEAST(r.strikes + 1, 8)
                   ELSE 0 END,
    count = CASE WHEN r.window_end > now() THEN r.count + 1 ELSE 1 END,
    window_start = CASE WHEN r.window_end > now() THEN r.window_start ELSE now() END,
    window_end = CASE WHEN r.window_end > now() THEN r.window_end
                      ELSE now() + LEAST($3 * power(2, CASE WHEN $5 AND r.count > $4 THEN LEAST(r.strikes + 1, 8) ELSE 0 END),
                                         $3 * $6) * interval '1 second' END
RETURNING count, GREATEST(1, ceil(extract(epoch FROM window_end - now())))::bigint AS retry_after";

/// Count one event for `key` and refuse (429 with `Retry-After`) when over the limit.
pub async fn hit(pool: &Pool, settings: &DbSettings, bucket: Bucket, key: &str, limit: Limit) -> ApiResult<()> {
    let sql = HIT.replace(
        "{source}",
        "VALUES ($1, $2, now(), now() + $3 * interval '1 second', 1, 0)",
    );
    check(pool, settings, &sql, bucket, &key, Type::TEXT, limit).await
}

/// Like [`hit`], keyed by the session of a refresh token (by its hash); nothing is counted for an
/// unknown token, which fails anyway.
pub async fn hit_refresh_session(pool: &Pool, settings: &DbSettings, token_hash: &[u8], limit: Limit) -> ApiResult<()> {
    let sql = HIT.replace(
        "{source}",
        "SELECT $1, session_id::text, now(), now() + $3 * interval '1 second', 1, 0
           FROM refresh_tokens WHERE token_hash = $2",
    );
    check(
        pool,
        settings,
        &sql,
        Bucket::RefreshSession,
        &token_hash,
        Type::BYTEA,
        limit,
    )
    .await
}

async fn check(
    pool: &Pool,
    settings: &DbSettings,
    sql: &str,
    bucket: Bucket,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
    key_type: Type,
    limit: Limit,
) -> ApiResult<()> {
    let window = limit.window.as_secs() as i64;
    let max = i64::from(limit.max);
    let backoff = bucket.backoff();
    let rows = db::query(
        pool,
        settings,
        sql,
        &[
            (&bucket.name(), Type::TEXT),
            (key, key_type),
            (&window, Type::INT8),
            (&max, Type::INT8),
            (&backoff, Type::BOOL),
            (&MAX_BACKOFF_FACTOR, Type::INT8),
        ],
    )
    .await?;
    let Some(row) = rows.first() else { return Ok(()) };
    let count: i32 = row.try_get("count")?;
    if i64::from(count) > max {
        let retry_after: i64 = row.try_get("retry_after")?;
        tracing::info!(bucket = bucket.name(), "rate limit exceeded");
        return Err(ApiError::RateLimited {
            retry_after_secs: retry_after.max(1) as u64,
        });
    }
    Ok(())
}

/// Forget the counter (a successful login resets its account's failures).
pub async fn reset(pool: &Pool, settings: &DbSettings, bucket: Bucket, key: &str) -> ApiResult<()> {
    db::query(
        pool,
        settings,
        "DELETE FROM rate_limits WHERE bucket = $1 AND key = $2",
        &[(&bucket.name(), Type::TEXT), (&key, Type::TEXT)],
    )
    .await?;
    Ok(())
}
