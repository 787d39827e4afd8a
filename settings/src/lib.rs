//! One typed configuration for every binary, read from the environment once at start-up and
//! validated here: a bad value stops the process with one line per problem, all problems at once,
//! rather than failing a request later. No other crate reads a configuration variable.
//!
//! The configuration is cut into sections, and each binary reads only the sections it needs
//! (the authorizer needs no database URL, the clean-up no signing key):
//!
//! | binary | loader |
//! |---|---|
//! | authorizer | [`VerifierSettings`] |
//! | jwks | [`JwksSettings`] |
//! | signup, login, refresh, logout, account, tasks, admin | [`FunctionSettings`] |
//! | recovery | [`FunctionSettings::keyless_from_env`] |
//! | cleanup, `todo-admin` | [`DatabaseSettings`] |
//! | mail-sender | [`MailSenderSettings`] |
//! | rotate-key | [`RotationSettings`] |
//! | local-api | [`LocalApiSettings`] |
//!
//! Module tree: `lib` (the sections and loaders) uses `env` (the reader that collects problems);
//! `mail` (the mail sender's and the local API's mail sections) uses both; `telemetry` (logging
//! set-up, `RUST_LOG`) stands alone.

pub mod env;
pub mod mail;
pub mod telemetry;

use std::time::Duration;

use secrecy::SecretString;

pub use env::{ConfigError, EnvReader};
pub use mail::{LocalMailSettings, MailSenderSettings, MailSettings, OutboxSettings};

const DAY: u64 = 24 * 60 * 60;

/// What the issuer signs into, and the verifier requires of, every access token.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

impl TokenSettings {
    /// `JWT_ISSUER`, `JWT_AUDIENCE` (default `todo-api` both), `ACCESS_TOKEN_TTL_SECONDS`.
    pub fn read(env: &mut EnvReader<'_>) -> Self {
        TokenSettings {
            issuer: env.string("JWT_ISSUER", "todo-api"),
            audience: env.string("JWT_AUDIENCE", "todo-api"),
            ttl: env.seconds("ACCESS_TOKEN_TTL_SECONDS", 900, 60, 3600),
        }
    }
}

/// The one access-token algorithm of a deployment (`JWT_ALGORITHM`). Nothing else is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    EdDSA,
}

impl Algorithm {
    /// `JWT_ALGORITHM`: `HS256` (default) or `EdDSA`.
    pub fn read(env: &mut EnvReader<'_>) -> Self {
        env.choice(
            "JWT_ALGORITHM",
            Algorithm::HS256,
            &[("HS256", Algorithm::HS256), ("EdDSA", Algorithm::EdDSA)],
        )
    }
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `JWT_SECRET_ARN` (HS256): the secret's `AWSCURRENT` signs, `AWSPREVIOUS` still verifies;
    /// each key's `kid` is its Secrets Manager version id.
    SecretsManager { arn: String },
    /// `JWT_PRIVATE_KEY_ARN` (EdDSA issuers): `AWSCURRENT` holds the Ed25519 private key in PEM that
    /// signs; tokens are verified with the public keys of `JWT_JWKS_ARN` when set.
    PrivateKey { arn: String, jwks_arn: Option<String> },
    /// `JWT_JWKS_ARN` alone (EdDSA verifiers: the authorizer, the data functions): public keys
    /// only, as a JWKS document, kept current by the rotation function.
    Jwks { arn: String },
    /// The environment, for local runs and tests: `JWT_SECRET` (and `JWT_SECRET_PREVIOUS`) for
    /// HS256, `JWT_PRIVATE_KEY` (and `JWT_PRIVATE_KEY_PREVIOUS`, PEM) for EdDSA ([`EnvKeys`]).
    Env,
    /// `JWT_TRUST_AUTHORIZER_CONTEXT=true` (deployed data functions): no key at all. The caller
    /// comes from the authorizer's context, which API Gateway puts on every request of a route
    /// with the TOKEN authorizer; a request without that context is refused (401), so a missing
    /// authorizer fails closed. Lets the data functions run without read access to the HMAC key.
    AuthorizerContext,
}

impl KeySource {
    /// Whether reading this source needs a Secrets Manager client.
    pub fn remote(&self) -> bool {
        !matches!(self, KeySource::Env | KeySource::AuthorizerContext)
    }
}

/// Keys given in the environment (local runs and tests; [`KeySource::Env`]).
#[derive(Debug, Clone, Default)]
pub struct EnvKeys {
    pub current: Option<SecretString>,
    pub previous: Option<SecretString>,
}

/// How a binary gets the keys that sign or verify access tokens.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub algorithm: Algorithm,
    pub source: KeySource,
    /// The keys of [`KeySource::Env`] (empty for the other sources).
    pub env_keys: EnvKeys,
    /// How long a freshly rotated key waits before it signs (`JWT_KEY_ACTIVATION_SECONDS`, 900 by
    /// default): verifiers and other services reading the JWKS (function cache 5 min + `max-age`
    /// 5 min) all know it by then. Until it has aged, issuers keep signing with `AWSPREVIOUS`.
    pub activation: Duration,
}

impl KeyConfig {
    /// The source follows the algorithm: EdDSA reads `JWT_PRIVATE_KEY_ARN` (issuers) or
    /// `JWT_JWKS_ARN` (verifiers); HS256 reads `JWT_SECRET_ARN`; without an ARN the keys are the
    /// environment's, and then a key must be set: there is no default key.
    /// `JWT_TRUST_AUTHORIZER_CONTEXT=true` wins over all of them.
    pub fn read(env: &mut EnvReader<'_>) -> Self {
        let algorithm = Algorithm::read(env);
        let trust = env.boolean("JWT_TRUST_AUTHORIZER_CONTEXT", false);
        let source = if trust {
            KeySource::AuthorizerContext
        } else if algorithm == Algorithm::EdDSA {
            match (env.optional("JWT_PRIVATE_KEY_ARN"), env.optional("JWT_JWKS_ARN")) {
                (Some(arn), jwks_arn) => KeySource::PrivateKey { arn, jwks_arn },
                (None, Some(arn)) => KeySource::Jwks { arn },
                (None, None) => KeySource::Env,
            }
        } else {
            match env.optional("JWT_SECRET_ARN") {
                Some(arn) => KeySource::SecretsManager { arn },
                None => KeySource::Env,
            }
        };
        Self::with_source(env, algorithm, source)
    }

    /// The rest of the section for a source chosen already (tests choose it themselves).
    pub fn with_source(env: &mut EnvReader<'_>, algorithm: Algorithm, source: KeySource) -> Self {
        let env_keys = if source == KeySource::Env {
            let (current, previous) = match algorithm {
                Algorithm::HS256 => ("JWT_SECRET", "JWT_SECRET_PREVIOUS"),
                Algorithm::EdDSA => ("JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_PREVIOUS"),
            };
            let keys = EnvKeys {
                current: env.secret(current),
                previous: env.secret(previous),
            };
            if keys.current.is_none() {
                env.problem(match algorithm {
                    Algorithm::HS256 => {
                        "JWT_SECRET (or JWT_SECRET_ARN) must be set: there is no default signing key".into()
                    }
                    Algorithm::EdDSA => {
                        "JWT_PRIVATE_KEY (PEM) must be set when JWT_ALGORITHM=EdDSA: there is no default key".into()
                    }
                });
            }
            keys
        } else {
            EnvKeys::default()
        };
        KeyConfig {
            algorithm,
            source,
            env_keys,
            activation: env.seconds("JWT_KEY_ACTIVATION_SECONDS", 900, 0, 30 * DAY),
        }
    }
}

/// Where the database URL comes from.
#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    /// `DATABASE_URL_SECRET_ARN`: the secret's `AWSCURRENT`, read once per cold start.
    SecretsManager { arn: String },
    /// `DATABASE_URL` (local runs and tests).
    Env(SecretString),
}

impl DatabaseUrl {
    /// `DATABASE_URL_SECRET_ARN`, else `DATABASE_URL`; one of them must be set.
    pub fn read(env: &mut EnvReader<'_>) -> Option<Self> {
        if let Some(arn) = env.optional("DATABASE_URL_SECRET_ARN") {
            return Some(DatabaseUrl::SecretsManager { arn });
        }
        let url = env.secret("DATABASE_URL").map(DatabaseUrl::Env);
        if url.is_none() {
            env.problem("DATABASE_URL (or DATABASE_URL_SECRET_ARN) must be set".into());
        }
        url
    }
}

/// OWASP's minimum argon2id parameters (m=19456 KiB, t=2, p=1); configuration may only raise them.
pub const OWASP_MIN_MEMORY_KIB: u32 = 19_456;
pub const OWASP_MIN_ITERATIONS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
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
    /// `SESSION_TRACK_LAST_USED` (default true): every data request's liveness check also moves
    /// its session's `last_used_at` forward when it is over a minute old (same statement; each
    /// process sends that update with at most one request a minute per session). Off,
    /// `last_used_at` moves only on refresh (for measuring what tracking costs).
    pub track_last_used: bool,
}

impl DbSettings {
    /// The pool and timeouts. `default_pool_size` is the binary's documented default for
    /// `DB_POOL_SIZE`: 1 in a Lambda function, 16 in the local API (which serves every route).
    pub fn read(env: &mut EnvReader<'_>, default_pool_size: usize) -> Self {
        DbSettings {
            pool_size: env.number("DB_POOL_SIZE", default_pool_size, 1, 256),
            connect_timeout: env.millis("DB_CONNECT_TIMEOUT_MS", 3000, 100, 60_000),
            statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000, 0, 600_000),
            operation_timeout: env.millis("DB_OPERATION_TIMEOUT_MS", 8000, 100, 600_000),
            prepared_statements: env.boolean("DB_PREPARED_STATEMENTS", true),
            prepared_fallback: Default::default(),
            track_last_used: env.boolean("SESSION_TRACK_LAST_USED", true),
        }
    }
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
    /// Password checks (argon2) per account on the signed-in MFA routes (enrolment, turning it
    /// off), right or wrong.
    pub mfa_password_per_account: Limit,
}

/// Account recovery and email verification (issue 16). In [`Config`]: login reads
/// `require_verified_email`, and the recovery routes and the mail sender the token lifetimes.
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    /// `REQUIRE_VERIFIED_EMAIL`: login with the right password of an unverified account is 403.
    pub require_verified_email: bool,
    /// `PASSWORD_RESET_TTL_SECONDS` (30 min by default).
    pub password_reset_ttl: Duration,
    /// `EMAIL_VERIFICATION_TTL_SECONDS` (24 h by default).
    pub email_verification_ttl: Duration,
}

impl RecoverySettings {
    pub fn read(env: &mut EnvReader<'_>) -> Self {
        RecoverySettings {
            require_verified_email: env.boolean("REQUIRE_VERIFIED_EMAIL", false),
            password_reset_ttl: env.seconds("PASSWORD_RESET_TTL_SECONDS", 30 * 60, 1, DAY),
            email_verification_ttl: env.seconds("EMAIL_VERIFICATION_TTL_SECONDS", DAY, 1, 30 * DAY),
        }
    }
}

/// Where the key that encrypts TOTP secrets at rest comes from (issue 17).
#[derive(Debug, Clone)]
pub enum MfaKeySource {
    /// `MFA_ENCRYPTION_KEY_ARN`: the secret's `AWSCURRENT` encrypts, `AWSPREVIOUS` still decrypts;
    /// each key's id is its Secrets Manager version id.
    SecretsManager { arn: String },
    /// `MFA_ENCRYPTION_KEY` (and `MFA_ENCRYPTION_KEY_PREVIOUS`): base64 of at least 32 random
    /// bytes, for local runs and tests; the key id is a fingerprint of the key.
    Env {
        current: SecretString,
        previous: Option<SecretString>,
    },
}

/// The second factor (issue 17).
#[derive(Debug, Clone)]
pub struct MfaSettings {
    /// The TOTP secret encryption key. `None`: the MFA routes cannot serve (the MFA function
    /// refuses to start; the local API answers them 503).
    pub key: Option<MfaKeySource>,
    /// `ADMIN_REQUIRE_MFA`: admin routes need a session made with a second factor.
    pub admin_require_mfa: bool,
    /// `MFA_TOTP_ISSUER` (`todo-api` by default): the issuer shown by authenticator apps.
    pub totp_issuer: String,
}

impl MfaSettings {
    pub fn read(env: &mut EnvReader<'_>) -> Self {
        let key = match env.optional("MFA_ENCRYPTION_KEY_ARN") {
            Some(arn) => Some(MfaKeySource::SecretsManager { arn }),
            None => env.secret("MFA_ENCRYPTION_KEY").map(|current| MfaKeySource::Env {
                current,
                previous: env.secret("MFA_ENCRYPTION_KEY_PREVIOUS"),
            }),
        };
        MfaSettings {
            key,
            admin_require_mfa: env.boolean("ADMIN_REQUIRE_MFA", false),
            totp_issuer: env.string("MFA_TOTP_ISSUER", "todo-api"),
        }
    }
}

/// What the data functions need besides their secrets: tokens they issue, sessions, passwords,
/// the database pool, rate limits and quotas.
#[derive(Debug, Clone)]
pub struct Config {
    pub tokens: TokenSettings,
    pub refresh_reuse_grace: Duration,
    pub session_idle_timeout: Duration,
    pub session_absolute_lifetime: Duration,
    pub password_min_length: usize,
    pub argon2: Argon2Settings,
    pub db: DbSettings,
    pub rate_limits: RateLimits,
    pub task_quota: i64,
    pub recovery: RecoverySettings,
    pub mfa: MfaSettings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    /// Every value has a documented default (README, "Configuration"): an empty environment is
    /// a valid one.
    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let config = Self::read(&mut env, 1);
        env.finish(config)
    }

    pub fn read(env: &mut EnvReader<'_>, default_pool_size: usize) -> Self {
        let tokens = TokenSettings::read(env);
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
        let db = DbSettings::read(env, default_pool_size);
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
            mfa_password_per_account: limit("RATE_MFA_PASSWORD", 10, "RATE_MFA_PASSWORD_WINDOW_SECONDS", 3600),
        };
        let task_quota = env.number("TASK_QUOTA_PER_USER", 10_000i64, 1, 10_000_000);
        let recovery = RecoverySettings::read(env);
        let mfa = MfaSettings::read(env);
        Config {
            tokens,
            refresh_reuse_grace,
            session_idle_timeout,
            session_absolute_lifetime,
            password_min_length,
            argon2,
            db,
            rate_limits,
            task_quota,
            recovery,
            mfa,
        }
    }
}

/// The authorizer: it verifies tokens, and needs nothing else.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub tokens: TokenSettings,
    pub keys: KeyConfig,
    /// `ADMIN_REQUIRE_MFA`: the policy of a session without a second factor leaves the admin
    /// routes out (403 `mfa_required` from the gateway).
    pub admin_require_mfa: bool,
}

impl VerifierSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = VerifierSettings {
            tokens: TokenSettings::read(&mut env),
            keys: KeyConfig::read(&mut env),
            admin_require_mfa: env.boolean("ADMIN_REQUIRE_MFA", false),
        };
        env.finish(settings)
    }
}

/// The JWKS function: in EdDSA mode the verifier's keys (public keys only); in HS256 mode nothing
/// at all, since a shared secret is never published.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub verifier: Option<VerifierSettings>,
}

impl JwksSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let verifier = match Algorithm::read(&mut env) {
            Algorithm::EdDSA => Some(VerifierSettings {
                tokens: TokenSettings::read(&mut env),
                keys: KeyConfig::read(&mut env),
                admin_require_mfa: false,
            }),
            Algorithm::HS256 => None,
        };
        env.finish(JwksSettings { verifier })
    }
}

/// An HTTP function that touches the database (everything but the authorizer and the JWKS).
#[derive(Debug, Clone)]
pub struct FunctionSettings {
    pub config: Config,
    pub keys: KeyConfig,
    pub database: DatabaseUrl,
}

impl FunctionSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process(), 1)
    }

    /// A function that signs no token and reads no caller (recovery: public routes only): no key
    /// at all, whatever the environment holds, and `JWT_TRUST_AUTHORIZER_CONTEXT` is not read
    /// (template.yaml gives it only to functions behind the authorizer).
    pub fn keyless_from_env() -> Result<Self, ConfigError> {
        Self::keyless_from_reader(EnvReader::process())
    }

    pub fn keyless_from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let config = Config::read(&mut env, 1);
        let algorithm = Algorithm::read(&mut env);
        let keys = KeyConfig::with_source(&mut env, algorithm, KeySource::AuthorizerContext);
        let database = DatabaseUrl::read(&mut env);
        match database {
            Some(database) => env.finish(FunctionSettings { config, keys, database }),
            None => Err(env.into_error()),
        }
    }

    /// `default_pool_size`: see [`DbSettings::read`].
    pub fn from_reader(mut env: EnvReader<'_>, default_pool_size: usize) -> Result<Self, ConfigError> {
        let config = Config::read(&mut env, default_pool_size);
        let keys = KeyConfig::read(&mut env);
        let database = DatabaseUrl::read(&mut env);
        match database {
            Some(database) => env.finish(FunctionSettings { config, keys, database }),
            None => Err(env.into_error()),
        }
    }
}

/// The scheduled clean-up and `todo-admin`: the database, nothing else.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub db: DbSettings,
    pub database: DatabaseUrl,
    /// `EVENT_RETENTION_DAYS` (1 to 3650, default 90): the clean-up deletes security events
    /// older than this.
    pub event_retention: Duration,
}

impl DatabaseSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let db = DbSettings::read(&mut env, 1);
        let event_retention = Duration::from_secs(env.number("EVENT_RETENTION_DAYS", 90u64, 1, 3650) * DAY);
        match DatabaseUrl::read(&mut env) {
            Some(database) => env.finish(DatabaseSettings {
                db,
                database,
                event_retention,
            }),
            None => Err(env.into_error()),
        }
    }
}

/// `todo-admin reencrypt-mfa-secrets`: the TOTP secret encryption keys, from the environment
/// only (the command talks to no AWS service): `MFA_ENCRYPTION_KEY` (required) and
/// `MFA_ENCRYPTION_KEY_PREVIOUS`, each with its key id, `MFA_ENCRYPTION_KEY_ID` and
/// `MFA_ENCRYPTION_KEY_PREVIOUS_ID`: a deployed stack's ids are the secret's version ids (README,
/// "Rotating the MFA encryption key"); without them, the fingerprint ids the local API uses.
#[derive(Debug, Clone)]
pub struct MfaKeyEnv {
    pub current: SecretString,
    pub current_id: Option<String>,
    pub previous: Option<SecretString>,
    pub previous_id: Option<String>,
}

impl MfaKeyEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let current = env.secret("MFA_ENCRYPTION_KEY");
        let current_id = env.optional("MFA_ENCRYPTION_KEY_ID");
        let previous = env.secret("MFA_ENCRYPTION_KEY_PREVIOUS");
        let previous_id = env.optional("MFA_ENCRYPTION_KEY_PREVIOUS_ID");
        if previous_id.is_some() && previous.is_none() {
            env.problem("MFA_ENCRYPTION_KEY_PREVIOUS_ID is set without MFA_ENCRYPTION_KEY_PREVIOUS".into());
        }
        // Both ids or neither (review finding L2): a given id next to a fingerprint id is how a
        // deployed key's version id gets left out, and secrets would be sealed under an id no
        // function knows.
        if previous.is_some() && current_id.is_some() != previous_id.is_some() {
            env.problem(
                "MFA_ENCRYPTION_KEY_ID and MFA_ENCRYPTION_KEY_PREVIOUS_ID must be set together (a deployed stack's are \
                 the secret's version ids) or both left out (the local fingerprint ids)"
                    .into(),
            );
        }
        match current {
            Some(current) => env.finish(MfaKeyEnv {
                current,
                current_id,
                previous,
                previous_id,
            }),
            None => {
                env.problem("MFA_ENCRYPTION_KEY must be set (the current key, base64)".into());
                Err(env.into_error())
            }
        }
    }
}

/// The rotation function: which secret holds the Ed25519 private key (its rotations are EdDSA,
/// any other secret's are HS256), and the JWKS it publishes to.
#[derive(Debug, Clone)]
pub struct RotationSettings {
    pub private_key_arn: Option<String>,
    pub jwks_arn: Option<String>,
}

impl RotationSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = RotationSettings {
            private_key_arn: env.optional("JWT_PRIVATE_KEY_ARN"),
            jwks_arn: env.optional("JWT_JWKS_ARN"),
        };
        env.finish(settings)
    }
}

/// The local API: a data function's settings (keys and database URL from the environment only,
/// a pool of 16 by default), plus its port, its emulated authorizer cache and its mail sender.
#[derive(Debug, Clone)]
pub struct LocalApiSettings {
    pub function: FunctionSettings,
    /// `PORT`, 3000 by default.
    pub port: u16,
    /// `AUTHORIZER_CACHE_TTL_SECONDS` (0 to 3600), 300 by default like template.yaml's
    /// `AuthorizerCacheTtl`.
    pub authorizer_cache_ttl: Duration,
    /// The outbox's sender, run as a background task (`MAIL_*`, `APP_URL`).
    pub mail: LocalMailSettings,
}

impl LocalApiSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::process())
    }

    pub fn from_reader(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let config = Config::read(&mut env, 16);
        let keys = KeyConfig::read(&mut env);
        if keys.source != KeySource::Env {
            env.problem("the local API reads its keys from JWT_SECRET or JWT_PRIVATE_KEY only".into());
        }
        let database = DatabaseUrl::read(&mut env);
        if matches!(database, Some(DatabaseUrl::SecretsManager { .. })) {
            env.problem("the local API reads DATABASE_URL only, not DATABASE_URL_SECRET_ARN".into());
        }
        if matches!(config.mfa.key, Some(MfaKeySource::SecretsManager { .. })) {
            env.problem("the local API reads MFA_ENCRYPTION_KEY only, not MFA_ENCRYPTION_KEY_ARN".into());
        }
        let port = env.number("PORT", 3000u16, 1, u16::MAX);
        let authorizer_cache_ttl = env.seconds("AUTHORIZER_CACHE_TTL_SECONDS", 300, 0, 3600);
        let mail = LocalMailSettings::read(&mut env);
        match database {
            Some(database) => env.finish(LocalApiSettings {
                function: FunctionSettings { config, keys, database },
                port,
                authorizer_cache_ttl,
                mail,
            }),
            None => Err(env.into_error()),
        }
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
        assert_eq!(c.tokens.ttl, Duration::from_secs(900));
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
        assert_eq!(c.rate_limits.mfa_password_per_account, Limit { max: 10, window: hour });
        let c = from(&[("REQUIRE_VERIFIED_EMAIL", "true"), ("PASSWORD_RESET_TTL_SECONDS", "60")])?;
        assert!(c.recovery.require_verified_email);
        assert_eq!(c.recovery.password_reset_ttl, Duration::from_secs(60));
        assert!(from(&[("REQUIRE_VERIFIED_EMAIL", "yes")]).is_err());
        Ok(())
    }

    #[test]
    fn the_mail_sender_reports_mail_and_database_problems_together() {
        let err = MailSenderSettings::from_reader(reader(&[("MAIL_MAX_ATTEMPTS", "0")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for expected in [
            "MAIL_FROM: must be set",
            "APP_URL: must be set",
            "MAIL_MAX_ATTEMPTS: must be between 1",
            "DATABASE_URL (or DATABASE_URL_SECRET_ARN) must be set",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
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

    fn reader(pairs: &[(&str, &str)]) -> EnvReader<'static> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EnvReader::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn every_section_reports_its_problems_together() {
        let err = LocalApiSettings::from_reader(reader(&[
            ("PORT", "0"),
            ("DB_POOL_SIZE", "many"),
            ("JWT_ALGORITHM", "none"),
            ("JWT_KEY_ACTIVATION_SECONDS", "soon"),
            ("AUTHORIZER_CACHE_TTL_SECONDS", "-1"),
            ("MAIL_POLL_MS", "often"),
        ]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        for expected in [
            "PORT: must be between 1",
            "DB_POOL_SIZE: must be a whole number",
            "JWT_ALGORITHM: must be HS256 or EdDSA",
            "JWT_KEY_ACTIVATION_SECONDS: must be a whole number",
            "AUTHORIZER_CACHE_TTL_SECONDS: must be a whole number",
            "MAIL_POLL_MS: must be a whole number",
            "JWT_SECRET (or JWT_SECRET_ARN) must be set",
            "DATABASE_URL (or DATABASE_URL_SECRET_ARN) must be set",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
    }

    #[test]
    fn each_binary_reads_only_its_sections() -> Result<(), ConfigError> {
        // The authorizer needs a key and nothing of the database, not even a valid pool size.
        let verifier = VerifierSettings::from_reader(reader(&[
            ("JWT_JWKS_ARN", "arn:jwks"),
            ("JWT_ALGORITHM", "EdDSA"),
            ("DB_POOL_SIZE", "not read here"),
        ]))?;
        assert_eq!(verifier.keys.source, KeySource::Jwks { arn: "arn:jwks".into() });
        // HS256 JWKS: nothing to read at all.
        assert!(JwksSettings::from_reader(reader(&[]))?.verifier.is_none());
        // The clean-up needs the database only.
        let cleanup = DatabaseSettings::from_reader(reader(&[("DATABASE_URL_SECRET_ARN", "arn:db")]))?;
        assert!(matches!(cleanup.database, DatabaseUrl::SecretsManager { .. }));
        // Trusting the authorizer's context: no key is needed.
        let function = FunctionSettings::from_reader(
            reader(&[
                ("JWT_TRUST_AUTHORIZER_CONTEXT", "true"),
                ("DATABASE_URL", "postgres://x"),
            ]),
            1,
        )?;
        assert_eq!(function.keys.source, KeySource::AuthorizerContext);
        assert_eq!(function.config.db.pool_size, 1);
        // Recovery: no key, and none asked for.
        let recovery = FunctionSettings::keyless_from_reader(reader(&[("DATABASE_URL", "postgres://x")]))?;
        assert_eq!(recovery.keys.source, KeySource::AuthorizerContext);
        assert!(recovery.keys.env_keys.current.is_none());
        Ok(())
    }

    #[test]
    fn the_local_api_pool_default_is_explicit_and_overridable() -> Result<(), ConfigError> {
        let local = |pairs: &[(&str, &str)]| {
            let mut all = vec![("DATABASE_URL", "postgres://x"), ("JWT_SECRET", "s")];
            all.extend_from_slice(pairs);
            LocalApiSettings::from_reader(reader(&all))
        };
        assert_eq!(local(&[])?.function.config.db.pool_size, 16);
        assert_eq!(local(&[("DB_POOL_SIZE", "3")])?.function.config.db.pool_size, 3);
        assert_eq!(local(&[])?.port, 3000);
        let err = local(&[("JWT_SECRET_ARN", "arn:x")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("the local API reads its keys from JWT_SECRET"), "{err}");
        Ok(())
    }

    /// Review finding L2: one key id given and the other left to its fingerprint is refused
    /// (the old reader accepted it, and the bulk re-encryption then sealed secrets under an id no
    /// deployed function knows); both or neither are fine.
    #[test]
    fn the_reencryption_key_ids_come_together_or_not_at_all() {
        let (k, p) = (
            "a2V5LW9uZS0zMi1ieXRlcy1sb25nLi4uLi4uLi4uLi4=",
            "a2V5LXR3by0zMi1ieXRlcy1sb25nLi4uLi4uLi4uLi4=",
        );
        let half = MfaKeyEnv::from_reader(reader(&[
            ("MFA_ENCRYPTION_KEY", k),
            ("MFA_ENCRYPTION_KEY_PREVIOUS", p),
            ("MFA_ENCRYPTION_KEY_PREVIOUS_ID", "v1"),
        ]));
        let err = half.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert!(err.contains("must be set together"), "{err:?}");
        let other_half = MfaKeyEnv::from_reader(reader(&[
            ("MFA_ENCRYPTION_KEY", k),
            ("MFA_ENCRYPTION_KEY_ID", "v2"),
            ("MFA_ENCRYPTION_KEY_PREVIOUS", p),
        ]));
        assert!(other_half.is_err());
        assert!(
            MfaKeyEnv::from_reader(reader(&[
                ("MFA_ENCRYPTION_KEY", k),
                ("MFA_ENCRYPTION_KEY_ID", "v2"),
                ("MFA_ENCRYPTION_KEY_PREVIOUS", p),
                ("MFA_ENCRYPTION_KEY_PREVIOUS_ID", "v1"),
            ]))
            .is_ok()
        );
        assert!(
            MfaKeyEnv::from_reader(reader(&[("MFA_ENCRYPTION_KEY", k), ("MFA_ENCRYPTION_KEY_PREVIOUS", p)])).is_ok()
        );
        assert!(MfaKeyEnv::from_reader(reader(&[("MFA_ENCRYPTION_KEY", k), ("MFA_ENCRYPTION_KEY_ID", "v2")])).is_ok());
    }
}
