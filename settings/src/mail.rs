//! Account mail (issue 16): where messages come from and point to, how the sender retries, and
//! the two binaries that send it: the deployed mail-sender ([`MailSenderSettings`]) and the local
//! API's background sender ([`LocalMailSettings`]).

use std::time::Duration;

use crate::{Config, ConfigError, DatabaseUrl, DbSettings, EnvReader, RecoverySettings};

/// Where messages come from and point to, and how sending is retried.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `MAIL_FROM`: the SES identity's address (optionally `Name <address>`).
    pub from: String,
    /// `APP_URL`: the front end; links are `APP_URL/reset-password?token=...` and
    /// `APP_URL/verify-email?token=...`.
    pub app_url: String,
    /// `MAIL_MAX_ATTEMPTS`: sends tried before a job is recorded as failed.
    pub max_attempts: i32,
    /// `MAIL_RETRY_BASE_MS`: the first back-off; each further one doubles, up to `retry_max`.
    pub retry_base: Duration,
    /// `MAIL_RETRY_MAX_SECONDS`.
    pub retry_max: Duration,
    /// `MAIL_SEND_TIMEOUT_MS`: one send is abandoned (and retried) past this.
    pub send_timeout: Duration,
}

impl MailSettings {
    pub const LOCAL_FROM: &'static str = "todo-api <no-reply@example.com>";
    pub const LOCAL_APP_URL: &'static str = "http://localhost:5173";

    /// From the process environment. `required`: `MAIL_FROM` and `APP_URL` must be set
    /// (deployed); otherwise local defaults apply.
    pub fn from_env(required: bool) -> Result<Self, ConfigError> {
        let mut env = EnvReader::process();
        let settings = Self::from_reader(&mut env, required);
        env.finish(settings)
    }

    pub fn from_reader(env: &mut EnvReader<'_>, required: bool) -> Self {
        if required {
            for name in ["MAIL_FROM", "APP_URL"] {
                if env.get(name).is_none() {
                    env.problem(format!("{name}: must be set"));
                }
            }
        }
        let from = env.string("MAIL_FROM", Self::LOCAL_FROM).trim().to_owned();
        let address = match (from.rfind('<'), from.rfind('>')) {
            (Some(a), Some(b)) if a < b => from[a + 1..b].to_owned(),
            _ => from.clone(),
        };
        let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !printable(&from) || address.split('@').count() != 2 || address.contains(' ') {
            env.problem(format!(
                "MAIL_FROM: must be an ASCII email address, optionally as Name <address> (got {from:?})"
            ));
        }
        let app_url = env
            .string("APP_URL", Self::LOCAL_APP_URL)
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let scheme_ok = app_url.starts_with("https://") || app_url.starts_with("http://");
        if !scheme_ok || !printable(&app_url) || app_url.contains(['?', '#', ' ', '"', '<', '>']) {
            env.problem(format!(
                "APP_URL: must be an http(s) URL without query or fragment, in ASCII (got {app_url:?})"
            ));
        }
        Self {
            from,
            app_url,
            max_attempts: env.number("MAIL_MAX_ATTEMPTS", 16, 1, 100),
            retry_base: env.millis("MAIL_RETRY_BASE_MS", 2000, 1, 3_600_000),
            retry_max: env.seconds("MAIL_RETRY_MAX_SECONDS", 900, 1, 86_400),
            send_timeout: env.millis("MAIL_SEND_TIMEOUT_MS", 10_000, 100, 60_000),
        }
    }

    /// The wait before attempt `attempts + 1`: base, 2 x base, 4 x base, ... up to the maximum.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        self.retry_base.saturating_mul(1 << doublings).min(self.retry_max)
    }

    /// How long a claimed job stays claimed: past the send timeout, so a live sender keeps it.
    pub fn lease(&self) -> Duration {
        self.send_timeout + Duration::from_secs(30)
    }
}

/// What the sender step reads of the configuration: how it reaches the database and how long
/// the tokens it mails live. Nothing of the request paths (keys, limits, passwords).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub db: DbSettings,
    pub recovery: RecoverySettings,
}

impl OutboxSettings {
    pub fn read(env: &mut EnvReader<'_>, default_pool_size: usize) -> Self {
        OutboxSettings {
            db: DbSettings::read(env, default_pool_size),
            recovery: RecoverySettings::read(env),
        }
    }
}

impl From<&Config> for OutboxSettings {
    /// The local API's sender runs beside the routes, on their configuration.
    fn from(config: &Config) -> Self {
        OutboxSettings {
            db: config.db.clone(),
            recovery: config.recovery.clone(),
        }
    }
}

/// The deployed sender step: the database, the token lifetimes and the mail settings, with
/// `MAIL_FROM` and `APP_URL` required.
#[derive(Debug, Clone)]
pub struct MailSenderSettings {
    pub outbox: OutboxSettings,
    pub database: DatabaseUrl,
    pub mail: MailSettings,
}

impl MailSenderSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let outbox = OutboxSettings::read(&mut env, 1);
        let mail = MailSettings::from_reader(&mut env, true);
        match DatabaseUrl::read(&mut env) {
            Some(database) => env.finish(MailSenderSettings { outbox, database, mail }),
            None => Err(env.into_error()),
        }
    }
}

/// The local API's mail: local defaults for `MAIL_FROM` and `APP_URL`, and where messages go
/// besides the console.
#[derive(Debug, Clone)]
pub struct LocalMailSettings {
    pub mail: MailSettings,
    /// `MAIL_POLL_MS`: how often the sender looks for retries that came due (jobs queued by a
    /// request wake it at once).
    pub poll: Duration,
    /// `MAIL_DIR`: also write each message there as an RFC 5322 `.eml` file.
    pub dir: Option<String>,
    /// `MAIL_SES_ENDPOINT`: also send through an SES v2 compatible emulator there.
    pub ses_endpoint: Option<String>,
}

impl LocalMailSettings {
    pub fn read(env: &mut EnvReader<'_>) -> Self {
        LocalMailSettings {
            mail: MailSettings::from_reader(env, false),
            poll: env.millis("MAIL_POLL_MS", 1000, 10, 60_000),
            dir: env.optional("MAIL_DIR"),
            ses_endpoint: env.optional("MAIL_SES_ENDPOINT"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)], required: bool) -> Result<MailSettings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut env = EnvReader::new(move |k| map.get(k).cloned());
        let s = MailSettings::from_reader(&mut env, required);
        env.finish(s)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = settings(
            &[("MAIL_RETRY_BASE_MS", "1000"), ("MAIL_RETRY_MAX_SECONDS", "5")],
            false,
        )
        .unwrap();
        let waits: Vec<u64> = (1..=5).map(|a| s.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(s.backoff(i32::MAX), Duration::from_secs(5), "no overflow");
    }

    /// Security review of issue 16, finding 4: with the defaults, a transient SES outage of an
    /// hour (throttling, a paused account, a regional incident) turns no queued mail into a
    /// permanent failure.
    #[test]
    fn the_default_retries_outlast_an_hour_of_outage() {
        let s = settings(&[], false).unwrap();
        let waited: Duration = (1..s.max_attempts).map(|a| s.backoff(a)).sum();
        assert!(
            waited >= Duration::from_secs(3600),
            "the last attempt comes {waited:?} after the first"
        );
    }

    #[test]
    fn deployed_the_sender_and_the_front_end_must_be_set_and_sane() {
        let err = settings(&[], true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("MAIL_FROM: must be set") && err.contains("APP_URL: must be set"),
            "{err}"
        );
        let ok = settings(
            &[
                ("MAIL_FROM", "Todo <no-reply@example.com>"),
                ("APP_URL", "https://app.example.com/"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(ok.app_url, "https://app.example.com", "the trailing slash goes");
        for (name, value) in [
            ("MAIL_FROM", "no address"),
            ("MAIL_FROM", "a@b@c"),
            ("APP_URL", "ftp://x.example"),
            ("APP_URL", "https://x.example/?a=b"),
            ("APP_URL", "https://ü.example"),
        ] {
            assert!(settings(&[(name, value)], false).is_err(), "{name}={value}");
        }
    }
}
