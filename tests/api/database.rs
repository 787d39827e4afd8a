//! The statement timeout reaches the server without a startup option (PgBouncer, and so Neon's
//! pooled endpoint, refuses `-c statement_timeout` in the startup packet): it is the role's
//! default in the database, set by the migration command, and a statement that runs past it is
//! cancelled by PostgreSQL and answered 503. Statements are named prepared statements cached per
//! connection, or unnamed when `DB_PREPARED_STATEMENTS=false` (for a pooler without support).

use std::time::Duration;

use api_tests::{test_config, test_db};
use shared::error::ApiError;
use tokio_postgres::types::Type;

#[tokio::test]
async fn no_startup_options_are_sent() {
    let db = test_db().await;
    let config = shared::db::pg_config(&db.url, &test_config().db).unwrap();
    assert_eq!(config.get_options(), None, "a pooler would refuse the connection");
}

#[tokio::test]
async fn migrate_makes_the_statement_timeout_the_roles_default_in_the_database() {
    let db = test_db().await;
    let config = test_config();
    assert_eq!(config.db.statement_timeout, Duration::from_millis(5000));
    let pool = shared::db::pool(&db.url, &config.db).unwrap();
    let client = shared::db::conn(&pool).await.unwrap();
    let shown: String = client.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(shown, "5s");

    // Only in this database: a session in another database of the same server keeps its own.
    let other = test_db().await;
    let mut c = shared::db::connect(&other.url, &config.db).await.unwrap();
    shared::db::set_role_statement_timeout(&c, Duration::ZERO)
        .await
        .unwrap();
    drop(c);
    c = shared::db::connect(&other.url, &config.db).await.unwrap();
    let shown: String = c.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(shown, "0", "zero removes the default");
    let again = shared::db::conn(&pool).await.unwrap();
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
    let mut c = shared::db::connect(&db.url, &config.db).await.unwrap();
    shared::db::migrate(&mut c, &config.db).await.unwrap();
    drop(c);

    let pool = shared::db::pool(&db.url, &config.db).unwrap();
    let started = std::time::Instant::now();
    let err = shared::db::query(&pool, &config.db, "SELECT pg_sleep(20)", &[])
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

/// The named statements this connection's server session holds (not counting SQL `PREPARE`).
async fn prepared_on_connection(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query_typed(
            "SELECT statement FROM pg_prepared_statements WHERE NOT from_sql ORDER BY statement",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn with_prepared_statements_a_statement_is_prepared_once_per_connection_and_reused() {
    let db = test_db().await;
    let mut config = test_config();
    config.db.prepared_statements = true;
    config.db.pool_size = 1;
    let pool = shared::db::pool(&db.url, &config.db).unwrap();
    let sql = "SELECT $1::int8 + 1 AS n";
    for i in 0..3i64 {
        let rows = shared::db::query(&pool, &config.db, sql, &[(&i, Type::INT8)])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>("n"), i + 1, "each execution binds its own value");
    }
    let client = shared::db::conn(&pool).await.unwrap();
    let prepared = prepared_on_connection(&client).await;
    assert_eq!(prepared, vec![sql.to_owned()], "prepared once, reused twice");
}

#[tokio::test]
async fn without_prepared_statements_nothing_outlives_the_statement() {
    let db = test_db().await;
    let mut config = test_config();
    config.db.prepared_statements = false;
    config.db.pool_size = 1;
    let pool = shared::db::pool(&db.url, &config.db).unwrap();
    let rows = shared::db::query(&pool, &config.db, "SELECT $1::int8 + 1 AS n", &[(&41i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>("n"), 42);
    let client = shared::db::conn(&pool).await.unwrap();
    assert!(prepared_on_connection(&client).await.is_empty());
}

#[test]
fn prepared_statements_are_on_by_default_and_switch_off_by_environment() {
    use shared::config::{Config, EnvReader};
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
