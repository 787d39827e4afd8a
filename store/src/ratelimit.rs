//! Rate limits kept in PostgreSQL, so every Lambda instance and the local API share the counts.
//!
//! Each check is one atomic statement (an upsert that counts and answers in the same step), taken
//! *before* the expensive work: 50 concurrent attempts on one account cannot slip past the limit
//! between a check and a write. A window that ended over its limit makes the next one longer
//! (back-off, where enabled), up to a cap: no permanent lock anyone can trigger.

use std::net::IpAddr;
use std::sync::LazyLock;

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;

use settings::{DbSettings, Limit};
use web::error::{ApiError, ApiResult};

use crate::db;

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
    /// Refresh attempts per client address, whatever the token (unknown ones included).
    RefreshIp,
    /// Forgot-password requests per client address.
    ForgotIp,
    /// Forgot-password requests per email, known or not.
    ForgotEmail,
    /// Password-reset attempts per client address.
    ResetIp,
    /// Email-verification attempts per client address.
    VerifyIp,
    /// Verification resends per user.
    VerifyResendUser,
    /// Password checks (argon2) on the signed-in MFA routes per account (user id), right or
    /// wrong: never reset by a success, so one signed-in account cannot keep the hashing function
    /// busy.
    MfaPasswordAccount,
}

impl Bucket {
    /// The bucket's name in `rate_limits.bucket`.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::LoginAccount => "login_account",
            Bucket::LoginIp => "login_ip",
            Bucket::SignupIp => "signup_ip",
            Bucket::RefreshSession => "refresh_session",
            Bucket::RefreshIp => "refresh_ip",
            Bucket::ForgotIp => "forgot_ip",
            Bucket::ForgotEmail => "forgot_email",
            Bucket::ResetIp => "reset_ip",
            Bucket::VerifyIp => "verify_ip",
            Bucket::VerifyResendUser => "verify_resend_user",
            Bucket::MfaPasswordAccount => "mfa_password_account",
        }
    }

    fn backoff(self) -> bool {
        matches!(self, Bucket::LoginAccount)
    }
}

/// The longest a back-off window may grow to, as a multiple of the configured window.
const MAX_BACKOFF_FACTOR: i64 = 4;

/// The counter key of an email: the SHA-256 of its canonical form
/// ([`crate::email::canonical_email`]), so no spelling of one account makes a new counter, and
/// the address itself is not stored.
pub fn email_key(email: &str) -> String {
    let digest = Sha256::digest(crate::email::canonical_email(email).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The counter key of a client address (`unknown` when the event carries none).
///
/// IPv6 clients are counted per /64 prefix (`2001:db8:1:2::/64`), not per address: a /64 is the
/// smallest network a subscriber is given, and every host in it picks its own addresses (privacy
/// extensions rotate them), so one client can present 2^64 different addresses. An IPv4 address
/// written as IPv4-mapped IPv6 (`::ffff:192.0.2.7`) is the IPv4 address.
pub fn ip_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
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

/// One counter to hit: its bucket, its key and its limit.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    pub bucket: Bucket,
    pub key: &'a str,
    pub limit: Limit,
}

/// `$n` placeholders in `sql` renumbered by `offset` (`$1` becomes `$(1 + offset)`).
fn shift_placeholders(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A statement that counts one event against a first counter and, only if that is within its
/// limit, against a second one whose row comes from `second_source` (a `SELECT` of the five
/// values `bucket, key, window_start, window_end, count, strikes` with `$1..$6` numbered as for
/// [`HIT`] and `{first_max}` for the first counter's limit). Data-modifying CTEs: the second
/// upsert reads the first's `RETURNING`; no row for the second (nothing to count) is fine.
fn in_turn_sql(second_source: &str) -> String {
    let first = HIT.replace(
        "{source}",
        "VALUES ($1, $2, now(), now() + $3 * interval '1 second', 1, 0)",
    );
    let second = shift_placeholders(&HIT.replace("{source}", second_source), 6).replace("{first_max}", "$4");
    format!(
        "WITH first AS ({first}),
              second AS ({second})
         SELECT f.count AS first_count, f.retry_after AS first_retry_after,
                s.count AS second_count, s.retry_after AS second_retry_after
           FROM first f LEFT JOIN second s ON true"
    )
}

/// [`hit_in_turn`]'s statement.
static IN_TURN: LazyLock<String> = LazyLock::new(|| {
    in_turn_sql(
        "SELECT $1, $2, now(), now() + $3 * interval '1 second', 1, 0 WHERE (SELECT count FROM first) <= {first_max}",
    )
});

/// [`hit_refresh`]'s statement: the second counter is the session of the presented token's hash.
static REFRESH_IN_TURN: LazyLock<String> = LazyLock::new(|| {
    in_turn_sql(
        "SELECT $1, session_id::text, now(), now() + $3 * interval '1 second', 1, 0
           FROM refresh_tokens WHERE token_hash = $2 AND (SELECT count FROM first) <= {first_max}",
    )
});

/// Which of the two counters of [`hit_in_turn`] is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    First,
    Second,
}

/// A refusal of [`hit_in_turn`]: the counter over its limit and the 429 to answer.
#[derive(Debug)]
pub struct Refused {
    pub turn: Turn,
    pub error: ApiError,
}

/// Count one event against `first` and, only if that is within its limit, against `second`, in
/// one statement (one round trip and one commit, where two [`hit`]s take two of each).
/// `Ok(Some(_))`: refused (429 with `Retry-After`), saying which counter is over its limit. Login
/// uses it for the client address and then the account: an address over its limit does not count
/// against the account (and its refusal is the address's, not the account's).
/// The two counters must differ (bucket or key): one statement cannot update a row twice.
pub async fn hit_in_turn(
    pool: &Pool,
    settings: &DbSettings,
    first: Counter<'_>,
    second: Counter<'_>,
) -> ApiResult<Option<Refused>> {
    debug_assert!(
        (first.bucket, first.key) != (second.bucket, second.key),
        "hit_in_turn needs two different counters"
    );
    in_turn_telling(
        pool,
        settings,
        &IN_TURN,
        first,
        (second.bucket, &second.key, Type::TEXT, second.limit),
        &[],
    )
    .await
}

/// [`hit_in_turn`], and in the same statement, only when both counters are within their limits,
/// the data-modifying `then` (a statement that may read CTEs `first` and `second`, whose own
/// parameters start at `$13`, and whose `{within}` stands for that condition): one round trip and one commit for the limits and the work, where
/// a [`hit_in_turn`] then a statement take two of each. Forgot-password queues its job this way.
/// `after`: more CTEs (each `name AS (...)`, comma-separated) that may read `then_work`, or "".
pub async fn hit_in_turn_then(
    pool: &Pool,
    settings: &DbSettings,
    first: Counter<'_>,
    second: Counter<'_>,
    then: &str,
    after: &str,
    then_params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> ApiResult<()> {
    debug_assert!(
        (first.bucket, first.key) != (second.bucket, second.key),
        "hit_in_turn_then needs two different counters"
    );
    let within = "(SELECT count FROM first) <= $4 AND (SELECT count FROM second) <= $10";
    let after = if after.is_empty() {
        String::new()
    } else {
        format!(",\n              {after}")
    };
    let sql = IN_TURN.replacen(
        "\n         SELECT f.count AS first_count",
        &format!(
            ",\n              then_work AS ({}){after}\n         SELECT f.count AS first_count",
            then.replace("{within}", within)
        ),
        1,
    );
    in_turn(
        pool,
        settings,
        &sql,
        first,
        (second.bucket, &second.key, Type::TEXT, second.limit),
        then_params,
    )
    .await
}

/// Count one refresh attempt against the client address (`ip_key`) and, only if that is within
/// its limit, against the session of the presented token (by its hash; nothing when the token
/// matches no row), in one statement. The address is counted whatever the token, so guesses that
/// match nothing are throttled too. Refuses (429 with `Retry-After`) for either over its limit.
pub async fn hit_refresh(
    pool: &Pool,
    settings: &DbSettings,
    ip_key: &str,
    token_hash: &[u8],
    per_ip: Limit,
    per_session: Limit,
) -> ApiResult<()> {
    in_turn(
        pool,
        settings,
        &REFRESH_IN_TURN,
        Counter {
            bucket: Bucket::RefreshIp,
            key: ip_key,
            limit: per_ip,
        },
        (Bucket::RefreshSession, &token_hash, Type::BYTEA, per_session),
        &[],
    )
    .await
}

/// The second counter of [`in_turn`]: its bucket, key (and the key's type) and limit.
type SecondCounter<'a> = (Bucket, &'a (dyn tokio_postgres::types::ToSql + Sync), Type, Limit);

/// [`in_turn_telling`], a refusal as the 429 error.
async fn in_turn(
    pool: &Pool,
    settings: &DbSettings,
    sql: &str,
    first: Counter<'_>,
    second: SecondCounter<'_>,
    extra: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> ApiResult<()> {
    match in_turn_telling(pool, settings, sql, first, second, extra).await? {
        None => Ok(()),
        Some(refused) => Err(refused.error),
    }
}

async fn in_turn_telling(
    pool: &Pool,
    settings: &DbSettings,
    sql: &str,
    first: Counter<'_>,
    second: SecondCounter<'_>,
    extra: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> ApiResult<Option<Refused>> {
    let (second_bucket, second_key, second_key_type, second_limit) = second;
    let [w1, m1] = window_and_max(first.limit);
    let [w2, m2] = window_and_max(second_limit);
    let (b1, b2) = (first.bucket.backoff(), second_bucket.backoff());
    let (first_name, second_name) = (first.bucket.name(), second_bucket.name());
    let mut params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = vec![
        (&first_name, Type::TEXT),
        (&first.key, Type::TEXT),
        (&w1, Type::INT8),
        (&m1, Type::INT8),
        (&b1, Type::BOOL),
        (&MAX_BACKOFF_FACTOR, Type::INT8),
        (&second_name, Type::TEXT),
        (second_key, second_key_type),
        (&w2, Type::INT8),
        (&m2, Type::INT8),
        (&b2, Type::BOOL),
        (&MAX_BACKOFF_FACTOR, Type::INT8),
    ];
    params.extend(extra.iter().map(|(v, t)| (*v, t.clone())));
    let rows = db::query(pool, settings, sql, &params).await?;
    let row = rows
        .first()
        .ok_or_else(|| anyhow::anyhow!("the rate-limit upsert returned no row"))?;
    let refused = |turn: Turn, result: ApiResult<()>| match result {
        Err(error @ ApiError::RateLimited { .. }) => Ok(Some(Refused { turn, error })),
        Err(other) => Err(other),
        Ok(()) => Ok(None),
    };
    let first_over = over_limit(
        first.bucket,
        row.try_get("first_count")?,
        row.try_get("first_retry_after")?,
        m1,
    );
    if let Some(refusal) = refused(Turn::First, first_over)? {
        return Ok(Some(refusal));
    }
    if let Some(count) = row.try_get::<_, Option<i32>>("second_count")? {
        let retry_after: Option<i64> = row.try_get("second_retry_after")?;
        return refused(
            Turn::Second,
            over_limit(second_bucket, count, retry_after.unwrap_or(1), m2),
        );
    }
    Ok(None)
}

fn window_and_max(limit: Limit) -> [i64; 2] {
    [limit.window.as_secs() as i64, i64::from(limit.max)]
}

/// 429 when `count` is over `max`.
fn over_limit(bucket: Bucket, count: i32, retry_after: i64, max: i64) -> ApiResult<()> {
    if i64::from(count) > max {
        tracing::info!(bucket = bucket.name(), "rate limit exceeded");
        return Err(ApiError::RateLimited {
            retry_after_secs: retry_after.max(1) as u64,
        });
    }
    Ok(())
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
    over_limit(bucket, row.try_get("count")?, row.try_get("retry_after")?, max)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        ip_key(Some(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))))
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_prefix() {
        // One /64 is one subscriber's network: every address in it is one client.
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:abcd::"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        // The next /64 is another client.
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:2:2::1"));
        // IPv4 addresses stay whole, however they are written.
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(ip_key(None), "unknown");
        // The key never collides with an IPv4 key.
        assert_ne!(key("::c000:207"), key("192.0.2.7"));
    }

    #[test]
    fn placeholders_are_renumbered_whole() {
        assert_eq!(
            shift_placeholders("$1, $2 + $12, $ x, $6$", 6),
            "$7, $8 + $18, $ x, $12$"
        );
        assert_eq!(shift_placeholders("no placeholders", 6), "no placeholders");
    }

    #[test]
    fn the_in_turn_statements_number_twelve_parameters() {
        for sql in [&*IN_TURN, &*REFRESH_IN_TURN] {
            for n in 1..=12 {
                assert!(sql.contains(&format!("${n}")), "${n} missing");
            }
            assert!(!sql.contains("$13") && !sql.contains('{'), "{sql}");
        }
    }
}
