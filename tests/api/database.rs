//! The statement timeout reaches the server without a startup option (PgBouncer, and so Neon's
//! pooled endpoint, refuses `-c statement_timeout` in the startup packet): it is the role's
//! default in the database, set by the migration command, and a statement that runs past it is
//! cancelled by PostgreSQL and answered 503. Statements are named prepared statements cached per
//! connection, or unnamed when `DB_PREPARED_STATEMENTS=false` (for a pooler without support).

use std::time::Duration;

use api_tests::{test_config, test_db};
use tokio_postgres::types::Type;
use web::error::ApiError;

#[tokio::test]
async fn no_startup_options_are_sent() {
    let db = test_db().await;
    let target = store::db::pg_config(&db.url, &test_config().db).unwrap();
    assert_eq!(
        target.config.get_options(),
        None,
        "a pooler would refuse the connection"
    );
}

#[tokio::test]
async fn migrate_makes_the_statement_timeout_the_roles_default_in_the_database() {
    let db = test_db().await;
    let config = test_config();
    assert_eq!(config.db.statement_timeout, Duration::from_millis(5000));
    let pool = store::db::pool(&db.url, &config.db).unwrap();
    let client = store::db::conn(&pool).await.unwrap();
    let shown: String = client.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(shown, "5s");

    // Only in this database: a session in another database of the same server keeps its own.
    let other = test_db().await;
    let mut c = store::db::connect(&other.url, &config.db).await.unwrap();
    store::db::set_role_statement_timeout(&c, Duration::ZERO).await.unwrap();
    drop(c);
    c = store::db::connect(&other.url, &config.db).await.unwrap();
    let shown: String = c.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(shown, "0", "zero removes the default");
    let again = store::db::conn(&pool).await.unwrap();
    let shown: String = again.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(shown, "5s", "the first database is unaffected");
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_cancelled_by_the_server_and_answered_503() {
    let db = test_db().await;
    let mut config = test_config();
    config.db.statement_timeout = Duration::from_millis(200);
    // Far above the statement timeout: only the server can stop the statement in time.
    config.db.operation_timeout = Duration::from_secs(30);
    let mut c = store::db::connect(&db.url, &config.db).await.unwrap();
    store::db::migrate(&mut c, &config.db).await.unwrap();
    drop(c);

    let pool = store::db::pool(&db.url, &config.db).unwrap();
    let started = std::time::Instant::now();
    let err = store::db::query(&pool, &config.db, "SELECT pg_sleep(20)", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::ServiceUnavailable(_)), "{err:?}");
    assert!(
        format!("{err:?}").contains("57014"),
        "cancelled by the server (query_canceled): {err:?}"
    );
    // Not a timing assertion on speed: a sleep of 20 s that returned at all before the client
    // bound of 30 s can only have been cancelled by the server.
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A fresh database and a pool of one connection to it (every call sees the same server
/// session), with or without prepared statements.
async fn one_connection(prepared: bool) -> (api_tests::TestDb, settings::Config, store::db::Pool) {
    let db = test_db().await;
    let mut config = test_config();
    config.db.prepared_statements = prepared;
    config.db.pool_size = 1;
    let pool = store::db::pool(&db.url, &config.db).unwrap();
    (db, config, pool)
}

/// The named statements this connection's server session holds (not counting SQL `PREPARE`), with
/// the time each was prepared.
async fn prepared_on_connection(client: &tokio_postgres::Client) -> Vec<(String, std::time::SystemTime)> {
    client
        .query_typed(
            "SELECT statement, prepare_time FROM pg_prepared_statements WHERE NOT from_sql ORDER BY statement",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn with_prepared_statements_a_statement_is_prepared_once_per_connection_and_reused() {
    let (_db, config, pool) = one_connection(true).await;
    let sql = "SELECT $1::int8 + 1 AS n";
    let run = |i: i64| {
        let (pool, settings) = (&pool, &config.db);
        async move {
            let rows = store::db::query(pool, settings, sql, &[(&i, Type::INT8)])
                .await
                .unwrap();
            assert_eq!(rows[0].get::<_, i64>("n"), i + 1, "each execution binds its own value");
        }
    };
    run(0).await;
    let first = prepared_on_connection(&store::db::conn(&pool).await.unwrap()).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, sql);
    for i in 1..3 {
        run(i).await;
    }
    let after = prepared_on_connection(&store::db::conn(&pool).await.unwrap()).await;
    assert_eq!(
        after, first,
        "the same statement, prepared at the same time: reused, not re-prepared"
    );
}

#[tokio::test]
async fn without_prepared_statements_nothing_outlives_the_statement() {
    let (_db, config, pool) = one_connection(false).await;
    let rows = store::db::query(&pool, &config.db, "SELECT $1::int8 + 1 AS n", &[(&41i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>("n"), 42);
    let client = store::db::conn(&pool).await.unwrap();
    assert!(prepared_on_connection(&client).await.is_empty());
}

#[test]
fn prepared_statements_are_on_by_default_and_switch_off_by_environment() {
    use settings::{Config, EnvReader};
    let config = Config::from_reader(EnvReader::new(|_| None)).unwrap();
    assert!(config.db.prepared_statements);
    let off = Config::from_reader(EnvReader::new(|k| {
        (k == "DB_PREPARED_STATEMENTS").then(|| "false".to_owned())
    }))
    .unwrap();
    assert!(!off.db.prepared_statements);
    let bad = Config::from_reader(EnvReader::new(|k| {
        (k == "DB_PREPARED_STATEMENTS").then(|| "maybe".to_owned())
    }))
    .err()
    .unwrap()
    .to_string();
    assert!(bad.contains("DB_PREPARED_STATEMENTS: must be true or false"), "{bad}");
}

/// A migration that changes a cached statement's result type makes PostgreSQL refuse the cached
/// plan ("cached plan must not change result type"): the statement is prepared again and the
/// call succeeds, instead of failing on that connection until it is recycled.
#[tokio::test]
async fn a_cached_statement_whose_result_type_changed_is_prepared_again() {
    let (db, config, pool) = one_connection(true).await;
    let admin = store::db::connect(&db.url, &config.db).await.unwrap();
    admin
        .batch_execute("CREATE TABLE stale_check (a int); INSERT INTO stale_check VALUES (1)")
        .await
        .unwrap();
    let sql = "SELECT * FROM stale_check";
    let rows = store::db::query(&pool, &config.db, sql, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 1);

    admin
        .batch_execute("ALTER TABLE stale_check ALTER COLUMN a TYPE bigint")
        .await
        .unwrap();
    let rows = store::db::query(&pool, &config.db, sql, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1, "the new result type");
}

/// The server session lost the statement (`DEALLOCATE ALL`, as a pooler without prepared-statement
/// support would): it is prepared again and the call succeeds.
#[tokio::test]
async fn a_cached_statement_the_server_no_longer_has_is_prepared_again() {
    let (_db, config, pool) = one_connection(true).await;
    let sql = "SELECT $1::int8 * 2 AS n";
    let rows = store::db::query(&pool, &config.db, sql, &[(&2i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>("n"), 4);
    store::db::conn(&pool)
        .await
        .unwrap()
        .batch_execute("DEALLOCATE ALL")
        .await
        .unwrap();
    let rows = store::db::query(&pool, &config.db, sql, &[(&3i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>("n"), 6);
}

/// The server-side name of the one statement a fresh one-connection pool prepares in this process.
pub(crate) async fn statement_name_in_this_process(db_url: &secrecy::SecretString) -> String {
    let mut config = test_config();
    config.db.prepared_statements = true;
    config.db.pool_size = 1;
    let pool = store::db::pool(db_url, &config.db).unwrap();
    let rows = store::db::query(&pool, &config.db, "SELECT 41::int8 + 1 AS n", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>("n"), 42);
    let client = store::db::conn(&pool).await.unwrap();
    let row = client
        .query_typed("SELECT name FROM pg_prepared_statements WHERE NOT from_sql", &[])
        .await
        .unwrap();
    assert_eq!(row.len(), 1, "one named statement on the session");
    row[0].get(0)
}

/// Two processes never give their prepared statements the same name (tokio-postgres is patched
/// for it: vendor/tokio-postgres/PATCHED.md). Upstream names them `s0`, `s1`, ... in every
/// process, so behind a transaction-mode pooler without prepared-statement support one instance
/// could run another's statement of the same name on a shared server session.
#[tokio::test]
pub(crate) async fn statement_names_are_unique_per_process() {
    use secrecy::ExposeSecret;
    let db = test_db().await;
    let ours = statement_name_in_this_process(&db.direct_url).await;
    // Blocking is fine here: nothing else runs on this test's runtime meanwhile.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "second_process::statement_name_child_process",
            "--nocapture",
        ])
        .env(
            crate::second_process::STATEMENT_NAME_CHILD_DB_URL,
            db.direct_url.expose_secret(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "child process failed: {stdout}{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let theirs = stdout
        .lines()
        .find_map(|l| l.strip_prefix("statement-name="))
        .unwrap_or_else(|| panic!("no name printed: {stdout}"))
        .to_owned();
    // s<16 hex digits: the process's tag>_<counter>
    let tag = |name: &str| -> String {
        let (tag, n) = name
            .strip_prefix('s')
            .and_then(|rest| rest.split_once('_'))
            .unwrap_or_else(|| panic!("{name}: not s<tag>_<n>"));
        assert!(tag.len() == 16 && tag.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        assert!(n.parse::<u64>().is_ok(), "{name}");
        tag.to_owned()
    };
    assert_ne!(tag(&ours), tag(&theirs), "{ours} and {theirs}: one tag per process");
}
