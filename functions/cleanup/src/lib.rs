//! Scheduled clean-up (EventBridge, hourly): delete dead sessions and old rate-limit counters in
//! bounded batches, so no run holds locks for long or outlives its timeout.
//!
//! Consumed refresh tokens are never deleted on their own: they live exactly as long as their
//! session, so a rotated token replayed at any time while the session lives is recognised as reuse
//! and revokes it (RFC 9700 4.14.2). Revoked or expired sessions are kept for `retention` (for
//! investigation), after which they go, with their tokens (ON DELETE CASCADE). Rate-limit counters
//! go once their window ended over `retention` ago.

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
    /// Dead sessions deleted, each with its refresh tokens (consumed or not).
    pub sessions_deleted: u64,
    pub rate_limits_deleted: u64,
}

const DELETE_SESSIONS: &str = "
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions
     WHERE (revoked_at IS NOT NULL AND revoked_at < now() - $1 * interval '1 second')
        OR LEAST(idle_expires_at, absolute_expires_at) < now() - $1 * interval '1 second'
     LIMIT $2)";

const DELETE_RATE_LIMITS: &str = "
DELETE FROM rate_limits WHERE (bucket, key) IN (
    SELECT bucket, key FROM rate_limits WHERE window_end < now() - $1 * interval '1 second' LIMIT $2)";

pub async fn run(pool: &Pool, db_settings: &DbSettings, settings: CleanupSettings) -> ApiResult<CleanupReport> {
    let mut report = CleanupReport::default();
    let retention = settings.retention.as_secs() as i64;
    for (sql, counter) in [(DELETE_SESSIONS, 0), (DELETE_RATE_LIMITS, 1)] {
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
