//! Test support: a fresh PostgreSQL database per test, application state built on it, and the
//! local API served in-process on an ephemeral loopback port.
//!
//! The server to create databases on comes from `TEST_DATABASE_URL` (or `DATABASE_URL`);
//! `scripts/test.sh` finds or starts one and sets it.
//!
//! The access-token algorithm of the states and APIs built here comes from `TEST_JWT_ALGORITHM`:
//! `HS256` (the default: [`TEST_JWT_SECRET`]) or `EdDSA` (an Ed25519 key pair generated once per
//! process), both under the kid [`TEST_KID`], so the end-to-end suite runs in either mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use access::tokens::{KeySet, SigningKey, Tokens};
use jsonwebtoken::{Algorithm, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use settings::{Config, EnvReader};
use store::AppState;

/// The HS256 key tests sign with (test-only; 48 bytes).
pub const TEST_JWT_SECRET: &str = "test-only-signing-key-0123456789-abcdefghijklmnop";

/// The kid of the test signing key, in either mode.
pub const TEST_KID: &str = "test-key";

/// The algorithm the end-to-end suite runs with: `TEST_JWT_ALGORITHM` = `HS256` (default) or
/// `EdDSA`. Anything else fails the test rather than silently testing the default.
pub fn test_algorithm() -> Algorithm {
    match std::env::var("TEST_JWT_ALGORITHM").ok().as_deref().map(str::trim) {
        None | Some("") | Some("HS256") => Algorithm::HS256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some(other) => panic!("TEST_JWT_ALGORITHM must be HS256 or EdDSA (got {other:?})"),
    }
}

/// A process-wide Ed25519 private key (PKCS#8 PEM), generated on first use.
fn ed25519_pem(cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        SigningKey::generate_ed25519_pem()
            .expect("generate an Ed25519 key")
            .expose_secret()
            .to_owned()
    })
}

/// The Ed25519 private key the EdDSA-mode tests sign with (PEM; one per test process).
pub fn test_ed25519_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    ed25519_pem(&PEM)
}

/// Another Ed25519 private key: what an attacker or another service would sign with.
pub fn foreign_ed25519_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    ed25519_pem(&PEM)
}

/// The Ed25519 test key set (kid [`TEST_KID`]), whatever `TEST_JWT_ALGORITHM` says.
pub fn test_ed25519_keys() -> KeySet {
    let pem = SecretString::from(test_ed25519_pem().to_owned());
    KeySet {
        current: SigningKey::ed25519_pem(TEST_KID, &pem).expect("a valid Ed25519 PEM"),
        previous: None,
    }
}

/// The key set of the configured algorithm ([`test_algorithm`]): what the states and APIs built
/// here sign and verify with.
pub fn configured_test_keys() -> KeySet {
    match test_algorithm() {
        Algorithm::EdDSA => test_ed25519_keys(),
        _ => test_keys(),
    }
}

/// The algorithm and key that sign tokens the test states and APIs accept (kid [`TEST_KID`]).
pub fn test_encoding_key() -> (Algorithm, EncodingKey) {
    match test_algorithm() {
        Algorithm::EdDSA => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(test_ed25519_pem().as_bytes()).expect("a valid Ed25519 PEM"),
        ),
        _ => (Algorithm::HS256, EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes())),
    }
}

/// A key of the configured algorithm that the test states and APIs do not trust.
pub fn foreign_encoding_key() -> (Algorithm, EncodingKey) {
    match test_algorithm() {
        Algorithm::EdDSA => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(foreign_ed25519_pem().as_bytes()).expect("a valid Ed25519 PEM"),
        ),
        _ => (
            Algorithm::HS256,
            EncodingKey::from_secret(b"another-key-that-is-long-enough-0123456789abcdef"),
        ),
    }
}

/// A database created for one test.
pub struct TestDb {
    pub name: String,
    /// What the application connects with: through `TEST_APP_DATABASE_URL` (a pooler) when set,
    /// else the same as `direct_url`.
    pub url: SecretString,
    /// Straight to the server (where the database was created and migrated).
    pub direct_url: SecretString,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("TEST_DATABASE_URL or DATABASE_URL must point at a PostgreSQL server (scripts/test.sh sets it)")
}

/// Replace the database name of a URL (`postgres://u@h:p/db?x` → `.../name?x`).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// The prefix of every test database's name: `TODO_TEST_DB_PREFIX`, which `scripts/test.sh` sets
/// to `todo_test_<run id>_` so that it can drop exactly its own run's databases when it ends, or
/// `todo_test_` (what the start-of-run sweep of crashed runs looks for) when unset.
pub fn test_db_prefix() -> String {
    match std::env::var("TODO_TEST_DB_PREFIX") {
        Ok(p) if !p.is_empty() => {
            assert!(
                p.starts_with("todo_test_")
                    && p.len() <= 40
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "TODO_TEST_DB_PREFIX must start with todo_test_ and hold only a-z, 0-9 and _ (got {p:?})"
            );
            p
        }
        _ => "todo_test_".to_owned(),
    }
}

/// Create an empty database with the migrations applied. The application reaches it through
/// `TEST_APP_DATABASE_URL` when that is set (a PgBouncer in front of the same server: its
/// wildcard database entry serves every test database), directly otherwise.
pub async fn test_db() -> TestDb {
    let app = std::env::var("TEST_APP_DATABASE_URL").ok().filter(|u| !u.is_empty());
    test_db_on(&admin_url(), app.as_deref()).await
}

/// Create an empty, migrated database through `admin` (a superuser URL of the server), for an
/// application that connects with `app` (same server, possibly through a pooler; its database
/// name is replaced), or directly. Migrations run on the direct connection, as a deployment
/// should run them (Neon: the direct endpoint, not the pooled one).
pub async fn test_db_on(admin: &str, app: Option<&str>) -> TestDb {
    let config = test_config();
    let (test_db, mut db) = create_test_db(admin).await;
    store::db::migrate(&mut db, &config.db)
        .await
        .expect("migrate the test database");
    match app {
        Some(app) => TestDb {
            url: SecretString::from(with_database(app, &test_db.name)),
            ..test_db
        },
        None => test_db,
    }
}

/// A new database (with this run's prefix) migrated only up to `version`, and a direct connection
/// to it: the schema older code wrote rows into, for tests of what a later migration does to them.
pub async fn test_db_at(version: u32) -> (TestDb, tokio_postgres::Client) {
    let (test_db, mut db) = create_test_db(&admin_url()).await;
    store::db::migrate_up_to(&mut db, version)
        .await
        .unwrap_or_else(|e| panic!("migrate to V{version}: {e:#}"));
    (test_db, db)
}

/// Create an empty database named with this run's prefix through `admin` (a superuser URL), and
/// connect to it directly.
async fn create_test_db(admin: &str) -> (TestDb, tokio_postgres::Client) {
    let config = test_config();
    let client = store::db::connect(&SecretString::from(admin.to_owned()), &config.db)
        .await
        .expect("connect to the admin database");
    let name = format!("{}{}", test_db_prefix(), uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let direct_url = SecretString::from(with_database(admin, &name));
    let db = store::db::connect(&direct_url, &config.db)
        .await
        .expect("connect to the test database");
    let test_db = TestDb {
        name,
        url: direct_url.clone(),
        direct_url,
    };
    (test_db, db)
}

/// Named prepared statements (the default) unless `TEST_DB_PREPARED_STATEMENTS=false`: CI runs
/// the end-to-end suite a second time with unnamed statements, as behind a pooler without support.
fn prepared_statements() -> bool {
    std::env::var("TEST_DB_PREPARED_STATEMENTS").map_or(true, |v| v != "false")
}

/// The default configuration, with a pool big enough for concurrency tests and rate limits
/// raised out of the way: every test connects from 127.0.0.1, so address-based limits would
/// couple unrelated tests. The rate-limit tests set small limits of their own.
/// The TOTP secret encryption key of the test APIs (`MFA_ENCRYPTION_KEY`): 32 bytes, base64.
pub const TEST_MFA_KEY: &str = "bWZhLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmctLS0tLS0=";

fn with_mfa_key(mut config: Config) -> Config {
    config.mfa.key = Some(settings::MfaKeySource::Env {
        current: SecretString::from(TEST_MFA_KEY.to_owned()),
        previous: None,
    });
    config
}

pub fn test_config() -> Config {
    let mut config = with_mfa_key(Config::from_reader(EnvReader::new(|_| None)).expect("defaults are valid"));
    config.db.pool_size = 16;
    config.db.prepared_statements = prepared_statements();
    let generous = |l: settings::Limit| settings::Limit { max: 100_000, ..l };
    let limits = &mut config.rate_limits;
    limits.signups_per_ip = generous(limits.signups_per_ip);
    limits.login_attempts_per_ip = generous(limits.login_attempts_per_ip);
    limits.login_failures_per_account = generous(limits.login_failures_per_account);
    limits.refreshes_per_session = generous(limits.refreshes_per_session);
    limits.refreshes_per_ip = generous(limits.refreshes_per_ip);
    limits.forgot_per_ip = generous(limits.forgot_per_ip);
    limits.forgot_per_email = generous(limits.forgot_per_email);
    limits.reset_per_ip = generous(limits.reset_per_ip);
    limits.verify_per_ip = generous(limits.verify_per_ip);
    limits.verify_resend_per_user = generous(limits.verify_resend_per_user);
    limits.mfa_password_per_account = generous(limits.mfa_password_per_account);
    config
}

/// The contract's default configuration, limits included (for the rate-limit tests).
pub fn default_config() -> Config {
    let mut config = with_mfa_key(Config::from_reader(EnvReader::new(|_| None)).expect("defaults are valid"));
    config.db.pool_size = 16;
    config.db.prepared_statements = prepared_statements();
    config
}

/// The HS256 test key set ([`TEST_JWT_SECRET`], kid [`TEST_KID`]), whatever `TEST_JWT_ALGORITHM`
/// says: for the tests of HS256 itself. States and APIs use [`configured_test_keys`].
pub fn test_keys() -> KeySet {
    let secret = SecretString::from(TEST_JWT_SECRET.to_owned());
    KeySet {
        current: SigningKey::hmac(TEST_KID, secret).expect("long enough"),
        previous: None,
    }
}

/// Application state on a fresh database, signing with the configured test keys.
pub async fn test_state_with(config: Config) -> (Arc<AppState>, TestDb) {
    test_state_with_keys(config, configured_test_keys()).await
}

/// Application state on a fresh database, with these keys.
pub async fn test_state_with_keys(config: Config, keys: KeySet) -> (Arc<AppState>, TestDb) {
    let db = test_db().await;
    let pool = store::db::pool(&db.url, &config.db).expect("pool");
    let state = AppState::new(config, pool, keys).expect("state");
    (Arc::new(state), db)
}

/// Application state on a fresh database, with this token service (e.g. keys loaded from a
/// Secrets Manager emulator, which reload after a rotation).
pub async fn test_state_with_tokens(config: Config, tokens: Tokens) -> (Arc<AppState>, TestDb) {
    let db = test_db().await;
    let pool = store::db::pool(&db.url, &config.db).expect("pool");
    let state = AppState::with_tokens(config, pool, tokens).expect("state");
    (Arc::new(state), db)
}

pub async fn test_state() -> (Arc<AppState>, TestDb) {
    test_state_with(test_config()).await
}

/// The local API, served in-process on 127.0.0.1 with an ephemeral port.
pub struct TestApi {
    pub addr: SocketAddr,
    pub base: String,
    pub state: Arc<AppState>,
    pub db: TestDb,
    server: tokio::task::JoinHandle<()>,
    /// The mail sender task, when the API was spawned with one ([`spawn_api_with_mail`]).
    sender: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(sender) = &self.sender {
            sender.abort();
        }
    }
}

impl TestApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A direct connection to this test's database, for checking rows: straight to the server
    /// even when the API goes through a pooler (the checks use the driver's own named
    /// statements, which a pooler without prepared-statement support cannot carry).
    pub async fn sql(&self) -> tokio_postgres::Client {
        store::db::connect(&self.db.direct_url, &self.state.config.db)
            .await
            .expect("connect")
    }
}

pub async fn spawn_api_with(config: Config) -> TestApi {
    let (state, db) = test_state_with(config).await;
    serve(state, db).await
}

/// The local API with these keys (whatever `TEST_JWT_ALGORITHM` says).
pub async fn spawn_api_with_keys(config: Config, keys: KeySet) -> TestApi {
    let (state, db) = test_state_with_keys(config, keys).await;
    serve(state, db).await
}

/// The local API with this token service.
pub async fn spawn_api_with_tokens(config: Config, tokens: Tokens) -> TestApi {
    let (state, db) = test_state_with_tokens(config, tokens).await;
    serve(state, db).await
}

/// The local API with this token service and this authorizer cache TTL (zero: every request is
/// authorized afresh, for tests of the verifier itself through HTTP).
pub async fn spawn_api_with_tokens_and_cache(config: Config, tokens: Tokens, cache_ttl: Duration) -> TestApi {
    let (state, db) = test_state_with_tokens(config, tokens).await;
    serve_with_cache(state, db, cache_ttl).await
}

/// The local API caches the authorizer's answers like the deployed API Gateway does (template.yaml
/// `AuthorizerCacheTtl`, 300 s by default), so every end-to-end test runs with the cache on.
pub const AUTHORIZER_CACHE_TTL: Duration = Duration::from_secs(300);

async fn serve(state: Arc<AppState>, db: TestDb) -> TestApi {
    serve_with_cache(state, db, AUTHORIZER_CACHE_TTL).await
}

async fn serve_with_cache(state: Arc<AppState>, db: TestDb, cache_ttl: Duration) -> TestApi {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = state.clone();
    let server = tokio::spawn(async move {
        let _ = local_api::serve(listener, served, cache_ttl).await;
    });
    TestApi {
        addr,
        base: format!("http://{addr}"),
        state,
        db,
        server,
        sender: None,
    }
}

pub async fn spawn_api() -> TestApi {
    spawn_api_with(test_config()).await
}

/// The local API on a database made by the caller (e.g. [`test_db_on`] another server).
pub async fn spawn_api_on(config: Config, db: TestDb) -> TestApi {
    let pool = store::db::pool(&db.url, &config.db).expect("pool");
    let state = AppState::new(config, pool, configured_test_keys()).expect("state");
    serve(Arc::new(state), db).await
}

/// One more function instance (its own pool and state) on an existing test database.
pub async fn spawn_instance(config: Config, db: &TestDb) -> TestApi {
    let copy = TestDb {
        name: db.name.clone(),
        url: db.url.clone(),
        direct_url: db.direct_url.clone(),
    };
    spawn_api_on(config, copy).await
}

/// The mail settings of the test APIs: a fixed sender and front end, and fast retries.
pub fn test_mail_settings() -> settings::MailSettings {
    let mut env = EnvReader::new(|_| None);
    let mut settings = settings::MailSettings::from_reader(&mut env, false);
    settings.from = "todo-api <no-reply@todo-api.test>".to_owned();
    settings.app_url = "https://app.todo-api.test".to_owned();
    settings.retry_base = Duration::from_millis(50);
    settings.retry_max = Duration::from_millis(400);
    settings
}

/// The local API with the mail sender running as in `local-api` (a background task woken by the
/// outbox's NOTIFY), delivering to `mailer`.
pub async fn spawn_api_with_mail(
    config: Config,
    mailer: Arc<dyn mail::Mailer>,
    settings: settings::MailSettings,
) -> TestApi {
    let (state, db) = test_state_with(config).await;
    let sender = mail_sender::worker::spawn(
        state.pool.clone(),
        (&state.config).into(),
        db.url.clone(),
        settings,
        mailer,
        Duration::from_millis(50),
    );
    let mut api = serve(state, db).await;
    api.sender = Some(sender);
    api
}

/// The key section for a source the test chooses, the rest (algorithm, environment keys,
/// activation delay) read from `env` as the functions read it, every problem reported.
pub fn key_config(source: access::keys::KeySource, env: &EnvReader<'_>) -> anyhow::Result<settings::KeyConfig> {
    let mut reader = EnvReader::new(|k| env.get(k));
    let algorithm = settings::Algorithm::read(&mut reader);
    // Its problems count too, as at start-up.
    reader.boolean("JWT_TRUST_AUTHORIZER_CONTEXT", false);
    let config = settings::KeyConfig::with_source(&mut reader, algorithm, source);
    Ok(reader.finish(config)?)
}

/// The key source the functions would choose for `env`.
pub fn key_source(env: &EnvReader<'_>) -> access::keys::KeySource {
    settings::KeyConfig::read(&mut EnvReader::new(|k| env.get(k))).source
}

/// [`access::keys::tokens`] for a source the test chooses (see [`key_config`]).
pub async fn tokens_from_source(
    source: access::keys::KeySource,
    env: &EnvReader<'_>,
    client: Option<aws_sdk_secretsmanager::Client>,
    settings: access::tokens::TokenSettings,
) -> anyhow::Result<Tokens> {
    access::keys::tokens(key_config(source, env)?, client, settings).await
}

/// [`access::keys::load_keys`] for a source the test chooses (see [`key_config`]).
pub async fn load_keys(
    source: &access::keys::KeySource,
    env: &EnvReader<'_>,
    client: Option<&aws_sdk_secretsmanager::Client>,
) -> anyhow::Result<KeySet> {
    access::keys::load_keys(&key_config(source.clone(), env)?, client).await
}
