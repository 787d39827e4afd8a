//! Scheduled clean-up (EventBridge, hourly): delete dead sessions and old consumed refresh-token
//! rows in bounded batches, so no run holds locks for long or outlives its timeout.
//!
//! Kept: consumed refresh tokens of live sessions for `retention` (a replay within it is still
//! recognised as reuse and revokes the session); revoked or expired sessions for `retention` too
//! (for investigation), after which they go, with their tokens (ON DELETE CASCADE); rate-limit
//! counters whose window ended over `retention` ago.

use std::time::Duration;

use deadpool_postgres::Pool;
use shared::config::DbSettings;
use shared::{ApiResult, db};
use tokio_postgres::types::Type;

#[derive(Debug, Clone, Copy)]
pub struct CleanupSettings {
    pub batch_size: i64,
    pub max_batches: u32,
    pub retention: Duration,
}

impl Default for CleanupSettings {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            max_batches: 100,
            retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    pub sessions_deleted: u64,
    pub refresh_tokens_deleted: u64,
    pub rate_limits_deleted: u64,
}

const DELETE_SESSIONS: &str = "
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions
     WHERE (revoked_at IS NOT NULL AND revoked_at < now() - $1 * interval '1 second')
        OR LEAST(idle_expires_at, absolute_expires_at) < now() - $1 * interval '1 second'
     LIMIT $2)";

const DELETE_CONSUMED: &str = "
DELETE FROM refresh_tokens WHERE token_hash IN (
    SELECT token_hash FROM refresh_tokens
     WHERE consumed_at IS NOT NULL AND consumed_at < now() - $1 * interval '1 second'
     LIMIT $2)";

const DELETE_RATE_LIMITS: &str = "
DELETE FROM rate_limits WHERE (bucket, key) IN (
    SELECT bucket, key FROM rate_limits WHERE window_end < now() - $1 * interval '1 second' LIMIT $2)";

pub async fn run(pool: &Pool, db_settings: &DbSettings, settings: CleanupSettings) -> ApiResult<CleanupReport> {
    let mut report = CleanupReport::default();
    let retention = settings.retention.as_secs() as i64;
    for (sql, counter) in [(DELETE_SESSIONS, 0), (DELETE_CONSUMED, 1), (DELETE_RATE_LIMITS, 2)] {
        for _ in 0..settings.max_batches {
            let deleted = db::bounded(db_settings, async {
                let client = db::conn(pool).await?;
                Ok(client
                    .execute_typed(sql, &[(&retention, Type::INT8), (&settings.batch_size, Type::INT8)])
                    .await?)
            })
            .await?;
            match counter {
                0 => report.sessions_deleted += deleted,
                1 => report.refresh_tokens_deleted += deleted,
                _ => report.rate_limits_deleted += deleted,
            }
            if (deleted as i64) < settings.batch_size {
                break;
            }
        }
    }
    tracing::info!(?report, "clean-up done");
    Ok(report)
}
