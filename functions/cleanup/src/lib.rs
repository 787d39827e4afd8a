//! Scheduled clean-up (EventBridge, hourly): delete dead sessions and old rate-limit counters in
//! bounded batches, so no run holds locks for long or outlives its timeout.
//!
//! Consumed refresh tokens are never deleted on their own: they live exactly as long as their
//! session, so a rotated token replayed at any time while the session lives is recognised as reuse
//! and revokes it (RFC 9700 4.14.2). Revoked or expired sessions are kept for `retention` (for
//! investigation), after which they go. A session refreshed every 15 minutes for 30 days leaves
//! ~2,880 token rows, so a dead session's tokens are deleted first, in batches of their own
//! (through `refresh_tokens_session_id_idx`), and a session only once it has none left: deleting
//! 1,000 sessions with their tokens by cascade could be millions of rows in one statement, past
//! the statement timeout. Rate-limit counters go once their window ended over `retention` ago,
//! and security events once they are older than `event_retention` (`EVENT_RETENTION_DAYS`);
//! two-step login challenges (`mfa_challenges`, 5 minutes each) once they expired `retention` ago.
//!
//! Every step runs even when one before it failed (logged): a step that keeps failing must not
//! stop the others for good. The first error is returned at the end.

use std::time::Duration;

use deadpool_postgres::Pool;
use settings::DbSettings;
use store::db;
use tokio_postgres::types::Type;
use web::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy)]
pub struct CleanupSettings {
    pub batch_size: i64,
    pub max_batches: u32,
    pub retention: Duration,
    /// Security events older than this go (`EVENT_RETENTION_DAYS`, 90 days by default).
    pub event_retention: Duration,
}

impl Default for CleanupSettings {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            max_batches: 100,
            retention: Duration::from_secs(24 * 60 * 60),
            event_retention: Duration::from_secs(90 * 24 * 60 * 60),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    /// Refresh tokens (consumed or not) of dead sessions.
    pub refresh_tokens_deleted: u64,
    /// Dead sessions deleted, once their refresh tokens were gone.
    pub sessions_deleted: u64,
    pub rate_limits_deleted: u64,
    /// Security events past their retention.
    pub events_deleted: u64,
    /// Two-step login challenges (`mfa_challenges`) expired for longer than the retention.
    pub mfa_challenges_deleted: u64,
}

/// Session `s` is dead (revoked, or idle- or absolutely expired) for longer than `$1` seconds.
macro_rules! dead_session {
    () => {
        "((s.revoked_at IS NOT NULL AND s.revoked_at < now() - $1 * interval '1 second')
           OR LEAST(s.idle_expires_at, s.absolute_expires_at) < now() - $1 * interval '1 second')"
    };
}

const DELETE_DEAD_TOKENS: &str = concat!(
    "DELETE FROM refresh_tokens WHERE token_hash IN (
    SELECT t.token_hash FROM sessions s JOIN refresh_tokens t ON t.session_id = s.id
     WHERE ",
    dead_session!(),
    " LIMIT $2)"
);

/// Only sessions whose tokens are gone: the cascade never deletes more than the batch.
const DELETE_SESSIONS: &str = concat!(
    "DELETE FROM sessions WHERE id IN (
    SELECT s.id FROM sessions s
     WHERE ",
    dead_session!(),
    " AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)
     LIMIT $2)"
);

const DELETE_RATE_LIMITS: &str = "
DELETE FROM rate_limits WHERE (bucket, key) IN (
    SELECT bucket, key FROM rate_limits WHERE window_end < now() - $1 * interval '1 second' LIMIT $2)";

/// Oldest first, through `security_events_created_idx`.
const DELETE_EVENTS: &str = "
DELETE FROM security_events WHERE id IN (
    SELECT id FROM security_events WHERE created_at < now() - $1 * interval '1 second'
     ORDER BY created_at LIMIT $2)";
const DELETE_MFA_CHALLENGES: &str = "
DELETE FROM mfa_challenges WHERE token_hash IN (
    SELECT token_hash FROM mfa_challenges WHERE expires_at < now() - $1 * interval '1 second' LIMIT $2)";

#[derive(Debug, Clone, Copy)]
enum Step {
    RefreshTokens,
    Sessions,
    RateLimits,
    Events,
    MfaChallenges,
}

impl Step {
    fn sql(self) -> &'static str {
        match self {
            Step::RefreshTokens => DELETE_DEAD_TOKENS,
            Step::Sessions => DELETE_SESSIONS,
            Step::RateLimits => DELETE_RATE_LIMITS,
            Step::Events => DELETE_EVENTS,
            Step::MfaChallenges => DELETE_MFA_CHALLENGES,
        }
    }

    fn counter(self, report: &mut CleanupReport) -> &mut u64 {
        match self {
            Step::RefreshTokens => &mut report.refresh_tokens_deleted,
            Step::Sessions => &mut report.sessions_deleted,
            Step::RateLimits => &mut report.rate_limits_deleted,
            Step::MfaChallenges => &mut report.mfa_challenges_deleted,
            Step::Events => &mut report.events_deleted,
        }
    }

    fn retention(self, settings: &CleanupSettings) -> Duration {
        match self {
            Step::Events => settings.event_retention,
            _ => settings.retention,
        }
    }
}

pub async fn run(pool: &Pool, db_settings: &DbSettings, settings: CleanupSettings) -> ApiResult<CleanupReport> {
    let mut report = CleanupReport::default();
    let mut first_error: Option<ApiError> = None;
    for step in [
        Step::RefreshTokens,
        Step::Sessions,
        Step::RateLimits,
        Step::Events,
        Step::MfaChallenges,
    ] {
        if let Err(e) = run_step(pool, db_settings, settings, step, step.counter(&mut report)).await {
            tracing::error!(?step, error = ?e, "clean-up step failed; going on with the next");
            first_error.get_or_insert(e);
        }
    }
    tracing::info!(?report, "clean-up done");
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// One step, in batches of `batch_size` rows, each its own bounded statement, until a batch
/// comes back short or `max_batches` ran. `deleted` counts as it goes (what a failure leaves done).
async fn run_step(
    pool: &Pool,
    db_settings: &DbSettings,
    settings: CleanupSettings,
    step: Step,
    deleted: &mut u64,
) -> ApiResult<()> {
    let retention = step.retention(&settings).as_secs() as i64;
    for _ in 0..settings.max_batches {
        let n = db::bounded(pool, db_settings, async |client| {
            Ok(client
                .execute_typed(
                    step.sql(),
                    &[(&retention, Type::INT8), (&settings.batch_size, Type::INT8)],
                )
                .await?)
        })
        .await?;
        *deleted += n;
        if (n as i64) < settings.batch_size {
            break;
        }
    }
    Ok(())
}
