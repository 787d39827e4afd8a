//! Typed configuration, read from the environment once at start-up and validated there: a bad
//! value stops the function with one clear line per problem, rather than failing a request later.
//!
//! Secrets (the database URL and the signing key) are not read here: see [`crate::secrets`].

use std::time::Duration;

use crate::password::{Argon2Settings, OWASP_MIN_ITERATIONS, OWASP_MIN_MEMORY_KIB};

#[derive(Debug, Clone)]
pub struct Config {
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_reuse_grace: Duration,
    pub session_idle_timeout: Duration,
    pub session_absolute_lifetime: Duration,
    pub password_min_length: usize,
    pub argon2: Argon2Settings,
    pub db: DbSettings,
    pub rate_limits: RateLimits,
    pub task_quota: i64,
    pub recovery: RecoverySettings,
}

/// Account recovery and email verification (issue 16).
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    /// `REQUIRE_VERIFIED_EMAIL`: login with the right password of an unverified account is 403.
    pub require_verified_email: bool,
    /// `PASSWORD_RESET_TTL_SECONDS` (30 min by default).
    pub password_reset_ttl: Duration,
    /// `EMAIL_VERIFICATION_TTL_SECONDS` (24 h by default).
    pub email_verification_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Connections per pool. One per Lambda instance: an instance serves one request at a time.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Server-side statement timeout: the role's default in the database, set by `db::migrate`
    /// (PgBouncer refuses it as a startup option); zero removes it. Calls are bounded client-side too.
    pub statement_timeout: Duration,
    /// Client-side bound on any one database call (connect + query), so a request never hangs
    /// past the function timeout when PostgreSQL is unreachable.
    pub operation_timeout: Duration,
    /// Named (protocol-level) prepared statements, cached per connection: each statement is
    /// planned once per connection. Turn off for a transaction-mode pooler without prepared
    /// statement support (PgBouncer before 1.21, or `max_prepared_statements = 0`).
    pub prepared_statements: bool,
    /// Set once this process has seen the server lose a statement it had just prepared (a
    /// transaction-mode pooler without prepared-statement support): from then on every statement
    /// is sent unnamed, as with `prepared_statements = false` (see `db::run`). Shared by clones.
    pub prepared_fallback: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A limit of `max` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub login_failures_per_account: Limit,
    pub login_attempts_per_ip: Limit,
    pub signups_per_ip: Limit,
    pub refreshes_per_session: Limit,
    /// Refresh attempts per client address (IPv6: per /64), counted before the token is looked
    /// up, so tokens that match no row count too.
    pub refreshes_per_ip: Limit,
    /// Forgot-password requests per client address (IPv6: per /64).
    pub forgot_per_ip: Limit,
    /// Forgot-password requests per email (its canonical form), known or not.
    pub forgot_per_email: Limit,
    /// Password-reset attempts per client address.
    pub reset_per_ip: Limit,
    /// Email-verification attempts per client address.
    pub verify_per_ip: Limit,
    /// Verification resends per user.
    pub verify_resend_per_user: Limit,
}

/// Every problem found, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + Send + Sync + 'a>;

/// Reads variables through a lookup function, so tests can pass a map instead of the process env.
pub struct EnvReader<'a> {
    lookup: Lookup<'a>,
    problems: Vec<String>,
}

impl<'a> EnvReader<'a> {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
            problems: Vec::new(),
        }
    }

    pub fn process() -> EnvReader<'static> {
        EnvReader::new(|k| std::env::var(k).ok())
    }

    /// The raw value, with empty strings treated as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn number<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.get(name) else { return default };
        match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            Ok(_) => {
                self.problems
                    .push(format!("{name}: must be between {min} and {max} (got {raw:?})"));
                default
            }
            Err(_) => {
                self.problems
                    .push(format!("{name}: must be a whole number (got {raw:?})"));
                default
            }
        }
    }

    /// `true` or `false` (any case); anything else is a problem.
    pub fn boolean(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.get(name) else { return default };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                self.problems
                    .push(format!("{name}: must be true or false (got {raw:?})"));
                default
            }
        }
    }

    pub fn seconds(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.number(name, default, min, max))
    }

    pub fn millis(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.number(name, default, min, max))
    }

    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

const DAY: u64 = 24 * 60 * 60;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let jwt_issuer = env.string("JWT_ISSUER", "todo-api");
        let jwt_audience = env.string("JWT_AUDIENCE", "todo-api");
        let access_token_ttl = env.seconds("ACCESS_TOKEN_TTL_SECONDS", 900, 60, 3600);
        let refresh_reuse_grace = env.seconds("REFRESH_REUSE_GRACE_SECONDS", 10, 0, 300);
        let session_idle_timeout = env.seconds("SESSION_IDLE_TIMEOUT_SECONDS", 7 * DAY, 60, 365 * DAY);
        let session_absolute_lifetime = env.seconds("SESSION_ABSOLUTE_LIFETIME_SECONDS", 30 * DAY, 60, 365 * DAY);
        if session_idle_timeout > session_absolute_lifetime {
            env.problem("SESSION_IDLE_TIMEOUT_SECONDS: must not exceed SESSION_ABSOLUTE_LIFETIME_SECONDS".into());
        }
        let password_min_length = env.number("PASSWORD_MIN_LENGTH", 8usize, 8, 128);
        let argon2 = Argon2Settings {
            memory_kib: env.number("ARGON2_MEMORY_KIB", OWASP_MIN_MEMORY_KIB, OWASP_MIN_MEMORY_KIB, 1 << 21),
            iterations: env.number("ARGON2_ITERATIONS", OWASP_MIN_ITERATIONS, OWASP_MIN_ITERATIONS, 64),
            parallelism: env.number("ARGON2_PARALLELISM", 1u32, 1, 16),
        };
        let db = DbSettings {
            pool_size: env.number("DB_POOL_SIZE", 1usize, 1, 256),
            connect_timeout: env.millis("DB_CONNECT_TIMEOUT_MS", 3000, 100, 60_000),
            statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000, 0, 600_000),
            operation_timeout: env.millis("DB_OPERATION_TIMEOUT_MS", 8000, 100, 600_000),
            prepared_statements: env.boolean("DB_PREPARED_STATEMENTS", true),
            prepared_fallback: Default::default(),
        };
        let mut limit = |max_name: &str, max: u32, window_name: &str, window: u64| Limit {
            max: env.number(max_name, max, 1, 1_000_000),
            window: env.seconds(window_name, window, 1, 30 * DAY),
        };
        let rate_limits = RateLimits {
            login_failures_per_account: limit(
                "RATE_LOGIN_ACCOUNT_FAILURES",
                10,
                "RATE_LOGIN_ACCOUNT_WINDOW_SECONDS",
                15 * 60,
            ),
            login_attempts_per_ip: limit("RATE_LOGIN_IP_ATTEMPTS", 60, "RATE_LOGIN_IP_WINDOW_SECONDS", 5 * 60),
            signups_per_ip: limit("RATE_SIGNUP_IP", 20, "RATE_SIGNUP_IP_WINDOW_SECONDS", 3600),
            refreshes_per_session: limit("RATE_REFRESH_SESSION", 60, "RATE_REFRESH_SESSION_WINDOW_SECONDS", 3600),
            refreshes_per_ip: limit("RATE_REFRESH_IP", 600, "RATE_REFRESH_IP_WINDOW_SECONDS", 300),
            forgot_per_ip: limit("RATE_FORGOT_IP", 5, "RATE_FORGOT_IP_WINDOW_SECONDS", 3600),
            forgot_per_email: limit("RATE_FORGOT_EMAIL", 3, "RATE_FORGOT_EMAIL_WINDOW_SECONDS", 3600),
            reset_per_ip: limit("RATE_RESET_IP", 20, "RATE_RESET_IP_WINDOW_SECONDS", 3600),
            verify_per_ip: limit("RATE_VERIFY_IP", 20, "RATE_VERIFY_IP_WINDOW_SECONDS", 3600),
            verify_resend_per_user: limit("RATE_VERIFY_RESEND", 3, "RATE_VERIFY_RESEND_WINDOW_SECONDS", 3600),
        };
        let task_quota = env.number("TASK_QUOTA_PER_USER", 10_000i64, 1, 10_000_000);
        let recovery = RecoverySettings {
            require_verified_email: env.boolean("REQUIRE_VERIFIED_EMAIL", false),
            password_reset_ttl: env.seconds("PASSWORD_RESET_TTL_SECONDS", 30 * 60, 1, DAY),
            email_verification_ttl: env.seconds("EMAIL_VERIFICATION_TTL_SECONDS", DAY, 1, 30 * DAY),
        };
        let config = Config {
            jwt_issuer,
            jwt_audience,
            access_token_ttl,
            refresh_reuse_grace,
            session_idle_timeout,
            session_absolute_lifetime,
            password_min_length,
            argon2,
            db,
            rate_limits,
            task_quota,
            recovery,
        };
        env.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_reader(EnvReader::new(move |k| map.get(k).cloned()))
    }

    #[test]
    fn defaults_follow_the_contract() -> Result<(), ConfigError> {
        let c = from(&[])?;
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_reuse_grace, Duration::from_secs(10));
        assert_eq!(c.db.pool_size, 1);
        assert_eq!(c.password_min_length, 8);
        assert_eq!(c.argon2.memory_kib, 19456);
        assert_eq!(
            c.rate_limits.login_attempts_per_ip,
            Limit {
                max: 60,
                window: Duration::from_secs(300)
            }
        );
        Ok(())
    }

    #[test]
    fn recovery_defaults_follow_the_contract() -> Result<(), ConfigError> {
        let c = from(&[])?;
        assert!(!c.recovery.require_verified_email);
        assert_eq!(c.recovery.password_reset_ttl, Duration::from_secs(30 * 60));
        assert_eq!(c.recovery.email_verification_ttl, Duration::from_secs(24 * 3600));
        let hour = Duration::from_secs(3600);
        assert_eq!(c.rate_limits.forgot_per_ip, Limit { max: 5, window: hour });
        assert_eq!(c.rate_limits.forgot_per_email, Limit { max: 3, window: hour });
        let c = from(&[("REQUIRE_VERIFIED_EMAIL", "true"), ("PASSWORD_RESET_TTL_SECONDS", "60")])?;
        assert!(c.recovery.require_verified_email);
        assert_eq!(c.recovery.password_reset_ttl, Duration::from_secs(60));
        assert!(from(&[("REQUIRE_VERIFIED_EMAIL", "yes")]).is_err());
        Ok(())
    }

    #[test]
    fn every_bad_value_is_named() {
        let err = from(&[
            ("DB_POOL_SIZE", "zero"),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("PASSWORD_MIN_LENGTH", "4"),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("DB_POOL_SIZE: must be a whole number"), "{err}");
        assert!(err.contains("ARGON2_MEMORY_KIB: must be between 19456"), "{err}");
        assert!(err.contains("PASSWORD_MIN_LENGTH: must be between 8"), "{err}");
    }
}
