//! The statement timeout reaches the server without a startup option (PgBouncer, and so Neon's
//! pooled endpoint, refuses `-c statement_timeout` in the startup packet): it is the role's
//! default in the database, set by the migration command, and a statement that runs past it is
//! cancelled by PostgreSQL and answered 503.

use std::time::Duration;

use api_tests::{test_config, test_db};
use shared::error::ApiError;

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
