//! Test support: a fresh PostgreSQL database per test, application state built on it, and the
//! local API served in-process on an ephemeral loopback port.
//!
//! The server to create databases on comes from `TEST_DATABASE_URL` (or `DATABASE_URL`);
//! `scripts/test.sh` finds or starts one and sets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use shared::AppState;
use shared::config::{Config, EnvReader};
use shared::tokens::{KeySet, SigningKey};

/// The HS256 key tests sign with (test-only; 48 bytes).
pub const TEST_JWT_SECRET: &str = "test-only-signing-key-0123456789-abcdefghijklmnop";

/// A database created for one test.
pub struct TestDb {
    pub name: String,
    pub url: SecretString,
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

/// Create an empty database with the migrations applied.
pub async fn test_db() -> TestDb {
    let admin = SecretString::from(admin_url());
    let config = test_config();
    let client = shared::db::connect(&admin, &config.db)
        .await
        .expect("connect to the admin database");
    let name = format!("todo_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let url = SecretString::from(with_database(admin.expose_secret(), &name));
    let mut db = shared::db::connect(&url, &config.db)
        .await
        .expect("connect to the test database");
    shared::db::migrate(&mut db).await.expect("migrate the test database");
    TestDb { name, url }
}

/// The default configuration, with a pool big enough for concurrency tests and rate limits
/// raised out of the way: every test connects from 127.0.0.1, so address-based limits would
/// couple unrelated tests. The rate-limit tests set small limits of their own.
pub fn test_config() -> Config {
    let mut config = Config::from_reader(EnvReader::new(|_| None)).expect("defaults are valid");
    config.db.pool_size = 16;
    let generous = |l: shared::config::Limit| shared::config::Limit { max: 100_000, ..l };
    let limits = &mut config.rate_limits;
    limits.signups_per_ip = generous(limits.signups_per_ip);
    limits.login_attempts_per_ip = generous(limits.login_attempts_per_ip);
    limits.login_failures_per_account = generous(limits.login_failures_per_account);
    limits.refreshes_per_session = generous(limits.refreshes_per_session);
    config
}

/// The contract's default configuration, limits included (for the rate-limit tests).
pub fn default_config() -> Config {
    let mut config = Config::from_reader(EnvReader::new(|_| None)).expect("defaults are valid");
    config.db.pool_size = 16;
    config
}

pub fn test_keys() -> KeySet {
    let secret = SecretString::from(TEST_JWT_SECRET.to_owned());
    KeySet {
        current: SigningKey::hmac("test-key", secret).expect("long enough"),
        previous: None,
    }
}

/// Application state on a fresh database.
pub async fn test_state_with(config: Config) -> (Arc<AppState>, TestDb) {
    let db = test_db().await;
    let pool = shared::db::pool(&db.url, &config.db).expect("pool");
    let state = AppState::new(config, pool, test_keys()).expect("state");
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
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A direct connection to this test's database, for checking rows.
    pub async fn sql(&self) -> tokio_postgres::Client {
        shared::db::connect(&self.db.url, &self.state.config.db)
            .await
            .expect("connect")
    }
}

pub async fn spawn_api_with(config: Config) -> TestApi {
    let (state, db) = test_state_with(config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = state.clone();
    let server = tokio::spawn(async move {
        let _ = local_api::serve(listener, served).await;
    });
    TestApi {
        addr,
        base: format!("http://{addr}"),
        state,
        db,
        server,
    }
}

pub async fn spawn_api() -> TestApi {
    spawn_api_with(test_config()).await
}
