//! The outbox's sender step: takes each due job from `mail_outbox` (migrations/V7), resolves
//! its account, makes a token (storing only its SHA-256), and sends the message through a
//! [`Mailer`]. Deployed it is this crate's binary on an EventBridge schedule (SES v2); in the
//! local API the same [`deliver_due`] runs as a background task ([`worker`]) woken by the
//! outbox's NOTIFY.
//!
//! No request is lost: a job is claimed with a lease (`locked_until`), and only marked done once
//! the message was sent, found unnecessary, or failed for good. A transient failure (throttling,
//! a timeout, a 5xx) puts it back with exponential back-off; a sender that dies mid-send loses
//! its lease and the job is taken again. A permanent failure, or the last allowed attempt, is
//! recorded (`outcome = 'failed'`, `last_error` = the kind of failure) and logged, never with the
//! token, the link or a body.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use mail::{Mailer, Purpose, SendError};
use secrecy::ExposeSecret;
use settings::{MailSettings, OutboxSettings};
use store::db;
use time::OffsetDateTime;
use tokio_postgres::types::Type;
use uuid::Uuid;

pub mod worker;

/// What one [`deliver_due`] run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: u32,
    /// Nothing to send: no such account (the job is deleted), a disabled one, an already
    /// verified address, or a newer reset request.
    pub skipped: u32,
    /// Failed for now; back in the queue with back-off.
    pub retrying: u32,
    /// Failed for good (recorded and logged).
    pub failed: u32,
}

const CLAIM: &str = "
UPDATE mail_outbox o SET attempts = o.attempts + 1, locked_until = now() + $1 * interval '1 millisecond'
 WHERE o.id = (SELECT id FROM mail_outbox
                WHERE done_at IS NULL AND next_attempt_at <= now()
                  AND (locked_until IS NULL OR locked_until <= now())
                ORDER BY next_attempt_at
                LIMIT 1
                FOR UPDATE SKIP LOCKED)
RETURNING o.id, o.kind, o.email_canonical, o.user_id, o.attempts, o.created_at";

/// The account of a forgot-password job and, if a message is due, its new token (`$1` hash, `$2`
/// canonical email, `$3` the request's time, `$4` TTL in seconds). No token for a disabled
/// account, when a newer reset request for the same email exists (that one will be sent), or
/// when the password changed after the request (a change, or a reset with a link of this same
/// request whose send is retried): the request was about a password that is gone.
const RESOLVE_RESET: &str = "
WITH account AS (SELECT id, email, disabled, password_changed_at FROM users WHERE email_canonical = $2),
 target AS (SELECT a.id, a.email FROM account a
             WHERE NOT a.disabled AND $3 > a.password_changed_at
               AND NOT EXISTS (SELECT 1 FROM mail_outbox o
                                WHERE o.kind = 'password_reset' AND o.email_canonical = $2 AND o.created_at > $3)),
 token AS (INSERT INTO account_tokens (token_hash, user_id, purpose, requested_at, expires_at)
           SELECT $1, id, 'password_reset', $3, now() + $4 * interval '1 second' FROM target
           RETURNING user_id)
SELECT EXISTS (SELECT 1 FROM account) AS known,
       (SELECT email FROM target) AS email,
       (SELECT user_id FROM token) AS user_id";

/// The same for a verification job (`$2` the user id): nothing once the address is verified.
const RESOLVE_VERIFICATION: &str = "
WITH account AS (SELECT id, email, email_verified, disabled FROM users WHERE id = $2),
 target AS (SELECT id, email FROM account WHERE NOT email_verified AND NOT disabled),
 token AS (INSERT INTO account_tokens (token_hash, user_id, purpose, requested_at, expires_at)
           SELECT $1, id, 'email_verification', $3, now() + $4 * interval '1 second' FROM target
           RETURNING user_id)
SELECT EXISTS (SELECT 1 FROM account) AS known,
       (SELECT email FROM target) AS email,
       (SELECT user_id FROM token) AS user_id";

const FINISH: &str = "
UPDATE mail_outbox SET done_at = now(), outcome = $2, locked_until = NULL, last_error = $3 WHERE id = $1";

const RETRY: &str = "
UPDATE mail_outbox SET locked_until = NULL, next_attempt_at = now() + $2 * interval '1 millisecond', last_error = $3
 WHERE id = $1";

/// A forgot-password job that matched no account: nothing of the address is kept.
const FORGET: &str = "DELETE FROM mail_outbox WHERE id = $1";

/// The same for every waiting forgot-password job whose email has no account, a batch at a
/// time: requests for made-up addresses (each within its limits, from many client addresses)
/// go in one statement per batch instead of three round trips each, so they cannot hold up real
/// mail. A claimed job (a sender holds its lease) is left to that sender.
const FORGET_UNKNOWN: &str = "
DELETE FROM mail_outbox WHERE id IN (
    SELECT o.id FROM mail_outbox o
     WHERE o.kind = 'password_reset' AND o.done_at IS NULL
       AND (o.locked_until IS NULL OR o.locked_until <= now())
       AND NOT EXISTS (SELECT 1 FROM users u WHERE u.email_canonical = o.email_canonical)
     LIMIT 1000
       FOR UPDATE SKIP LOCKED)
RETURNING id";

/// Batches of [`FORGET_UNKNOWN`] per run at most: a bound on one run's work, not on the queue
/// (the next run goes on).
const FORGET_UNKNOWN_BATCHES: usize = 100;

struct Job {
    id: Uuid,
    purpose: Purpose,
    email_canonical: Option<String>,
    user_id: Option<Uuid>,
    attempts: i32,
    created_at: OffsetDateTime,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn claim(pool: &Pool, config: &OutboxSettings, mail: &MailSettings) -> anyhow::Result<Option<Job>> {
    let lease = millis(mail.lease());
    let rows = db::query(pool, &config.db, CLAIM, &[(&lease, Type::INT8)]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let kind: String = row.try_get("kind")?;
    let purpose = match kind.as_str() {
        recovery::outbox::PASSWORD_RESET => Purpose::PasswordReset,
        recovery::outbox::EMAIL_VERIFICATION => Purpose::EmailVerification,
        other => anyhow::bail!("unknown mail_outbox kind {other:?}"),
    };
    Ok(Some(Job {
        id: row.try_get("id")?,
        purpose,
        email_canonical: row.try_get("email_canonical")?,
        user_id: row.try_get("user_id")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
    }))
}

async fn finish(
    pool: &Pool,
    config: &OutboxSettings,
    job: Uuid,
    outcome: &str,
    error: Option<&str>,
) -> anyhow::Result<()> {
    db::query(
        pool,
        &config.db,
        FINISH,
        &[(&job, Type::UUID), (&outcome, Type::TEXT), (&error, Type::TEXT)],
    )
    .await?;
    Ok(())
}

/// Drop the forgot-password jobs of unknown emails ([`FORGET_UNKNOWN`]), then send every job that
/// is due, up to `max_jobs`, one at a time. Returns what happened; an `Err`
/// is a database problem (the jobs stay queued for the next run).
pub async fn deliver_due(
    pool: &Pool,
    config: &OutboxSettings,
    mail: &MailSettings,
    mailer: &dyn Mailer,
    max_jobs: usize,
) -> anyhow::Result<Delivered> {
    let mut done = Delivered::default();
    for _ in 0..FORGET_UNKNOWN_BATCHES {
        let n = db::query(pool, &config.db, FORGET_UNKNOWN, &[]).await?.len();
        done.skipped = done.skipped.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if n < 1000 {
            break;
        }
    }
    for _ in 0..max_jobs {
        let Some(job) = claim(pool, config, mail).await? else {
            break;
        };
        deliver_one(pool, config, mail, mailer, job, &mut done).await?;
    }
    Ok(done)
}

async fn deliver_one(
    pool: &Pool,
    config: &OutboxSettings,
    mail: &MailSettings,
    mailer: &dyn Mailer,
    job: Job,
    done: &mut Delivered,
) -> anyhow::Result<()> {
    let kind = match job.purpose {
        Purpose::PasswordReset => "password_reset",
        Purpose::EmailVerification => "email_verification",
    };
    if job.attempts > mail.max_attempts {
        // Claimed more often than allowed without an answer (senders died mid-send).
        tracing::warn!(job = %job.id, kind, attempts = job.attempts, "mail job given up: no attempt finished");
        finish(pool, config, job.id, "failed", Some("no attempt finished")).await?;
        done.failed += 1;
        return Ok(());
    }
    let token = mail::new_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hash = recovery::outbox::token_hash(token.expose_secret());
    let (sql, ttl) = match job.purpose {
        Purpose::PasswordReset => (RESOLVE_RESET, config.recovery.password_reset_ttl),
        Purpose::EmailVerification => (RESOLVE_VERIFICATION, config.recovery.email_verification_ttl),
    };
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let rows = match job.purpose {
        Purpose::PasswordReset => {
            db::query(
                pool,
                &config.db,
                sql,
                &[
                    (&hash, Type::BYTEA),
                    (&job.email_canonical, Type::TEXT),
                    (&job.created_at, Type::TIMESTAMPTZ),
                    (&ttl_secs, Type::INT8),
                ],
            )
            .await?
        }
        Purpose::EmailVerification => {
            db::query(
                pool,
                &config.db,
                sql,
                &[
                    (&hash, Type::BYTEA),
                    (&job.user_id, Type::UUID),
                    (&job.created_at, Type::TIMESTAMPTZ),
                    (&ttl_secs, Type::INT8),
                ],
            )
            .await?
        }
    };
    let row = rows
        .first()
        .ok_or_else(|| anyhow::anyhow!("resolving a mail job returned no row"))?;
    let known: bool = row.try_get("known")?;
    let email: Option<String> = row.try_get("email")?;
    let user_id: Option<Uuid> = row.try_get("user_id")?;
    let (Some(email), Some(user_id)) = (email, user_id) else {
        if job.purpose == Purpose::PasswordReset && !known {
            db::query(pool, &config.db, FORGET, &[(&job.id, Type::UUID)]).await?;
        } else {
            finish(pool, config, job.id, "skipped", None).await?;
        }
        tracing::info!(job = %job.id, kind, "mail job needs no message");
        done.skipped += 1;
        return Ok(());
    };

    let message = mail::compose(job.purpose, &mail.from, &email, &mail.app_url, &token, ttl);
    drop(token);
    let outcome = match tokio::time::timeout(mail.send_timeout, mailer.send(&message)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Transient("the send timed out".into())),
    };
    match outcome {
        Ok(()) => {
            finish(pool, config, job.id, "sent", None).await?;
            tracing::info!(job = %job.id, kind, %user_id, attempt = job.attempts, "mail sent");
            done.sent += 1;
        }
        Err(SendError::Transient(why)) if job.attempts < mail.max_attempts => {
            let wait = mail.backoff(job.attempts);
            db::query(
                pool,
                &config.db,
                RETRY,
                &[(&job.id, Type::UUID), (&millis(wait), Type::INT8), (&why, Type::TEXT)],
            )
            .await?;
            tracing::warn!(job = %job.id, kind, %user_id, attempt = job.attempts, error = %why,
                retry_in_ms = millis(wait), "mail not sent; will retry");
            done.retrying += 1;
        }
        Err(e) => {
            let why = e.to_string();
            finish(pool, config, job.id, "failed", Some(&why)).await?;
            tracing::error!(job = %job.id, kind, %user_id, attempt = job.attempts, error = %why,
                "mail failed permanently; recorded in mail_outbox");
            done.failed += 1;
        }
    }
    Ok(())
}

/// Delete finished jobs older than a week and tokens a day past their expiry, in bounded
/// batches. Returns how many rows went.
pub async fn purge(pool: &Pool, config: &OutboxSettings) -> anyhow::Result<u64> {
    let mut n = 0;
    for sql in [
        "DELETE FROM mail_outbox WHERE id IN (
            SELECT id FROM mail_outbox WHERE done_at < now() - interval '7 days' LIMIT 1000) RETURNING id",
        "DELETE FROM account_tokens WHERE token_hash IN (
            SELECT token_hash FROM account_tokens WHERE expires_at < now() - interval '1 day' LIMIT 1000)
         RETURNING user_id",
    ] {
        n += db::query(pool, &config.db, sql, &[]).await?.len() as u64;
    }
    Ok(n)
}

/// The mailer the local API and tests hand to [`worker::spawn`].
pub type SharedMailer = Arc<dyn Mailer>;
