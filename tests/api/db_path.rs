//! The deployed database path, for real: TLS with verification against a PostgreSQL whose
//! certificate was issued at test time, PgBouncer in transaction mode, an outage under load and
//! a server that runs out of connections.
//!
//! These need services the plain test run does not have, so they are `#[ignore]`d there and run
//! by `scripts/test.sh`'s "database path" step, which starts them (scripts/lib/pg-aux.sh) and
//! runs `cargo test -p api-tests --test api -- --ignored --test-threads=1 db_path::` (one at a
//! time: the outage test stops the server the others use).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use api_tests::{TestApi, spawn_api_on, spawn_instance, test_config, test_db_on};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{client, get, post, send_with, signup_ok};

pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests run from scripts/test.sh, which starts their services (scripts/lib/pg-aux.sh)")
    })
}

/// The TLS cluster's admin URL (`localhost`, `sslmode=verify-full`, `sslrootcert` = the test CA).
fn aux_admin() -> String {
    env("TEST_AUX_ADMIN_URL")
}

/// Short timeouts, so that a refused or unreachable server answers quickly.
fn quick_config() -> settings::Config {
    let mut config = test_config();
    config.db.connect_timeout = Duration::from_millis(1000);
    config.db.operation_timeout = Duration::from_millis(2000);
    config
}

/// The PostgreSQL sessions of one database and whether each is encrypted, seen by the server.
async fn ssl_of_sessions(api: &TestApi) -> Vec<(bool, Option<String>)> {
    let admin = store::db::connect(&SecretString::from(aux_admin()), &api.state.config.db)
        .await
        .expect("admin connection");
    admin
        .query(
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.datname = $1 AND a.backend_type = 'client backend'",
            &[&api.db.name],
        )
        .await
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Sign up, create a task and list it: the API works end to end on this database path.
async fn round_trip(api: &TestApi) {
    let account = signup_ok(api).await;
    let created = post(api, &account.access_token, "/tasks", &json!({"title": "over the wire"})).await;
    created.expect(201);
    let list = get(api, &account.access_token, "/tasks").await.expect(200);
    assert_eq!(list["items"][0]["title"], "over the wire", "{list}");
}

#[tokio::test]
#[ignore = "needs the TLS cluster of scripts/lib/pg-aux.sh (run by scripts/test.sh)"]
async fn verify_full_connects_and_the_server_sees_every_session_encrypted() {
    let admin = aux_admin();
    assert!(
        admin.contains("sslmode=verify-full") && admin.contains("@localhost:"),
        "{admin}"
    );
    let api = spawn_api_on(quick_config(), test_db_on(&admin, None).await).await;
    assert_eq!(
        store::db::pg_config(&api.db.url, &api.state.config.db)
            .expect("url")
            .tls,
        store::db::TlsPolicy::VerifyFull
    );
    round_trip(&api).await;
    let sessions = ssl_of_sessions(&api).await;
    assert!(!sessions.is_empty(), "the API's connections are open");
    assert!(
        sessions
            .iter()
            .all(|(ssl, v)| *ssl && v.as_deref().is_some_and(|v| v.starts_with("TLSv1."))),
        "every session of the test database is encrypted: {sessions:?}"
    );
}

/// A certificate for another name, one from a CA we do not trust, an expired one: each refused
/// when connecting, with an error that says which, and every request answered 503 quickly.
#[tokio::test]
#[ignore = "needs the TLS cluster of scripts/lib/pg-aux.sh (run by scripts/test.sh)"]
async fn a_certificate_that_does_not_verify_is_refused_at_connect_and_requests_get_503() {
    let admin = aux_admin();
    let port = env("TEST_AUX_PG_PORT");
    let tls = env("TEST_AUX_TLS_DIR");
    let cases = [
        (
            "a certificate for another name",
            format!(
                "postgres://postgres@wrong-name.test:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={tls}/ca.crt"
            ),
            "not valid for name",
        ),
        (
            "a CA we do not trust",
            format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={tls}/other-ca.crt"),
            "UnknownIssuer",
        ),
        (
            // `require` verifies too (stricter than libpq): the same untrusted CA is refused.
            "a CA we do not trust, sslmode=require",
            format!("postgres://postgres@localhost:{port}/postgres?sslmode=require&sslrootcert={tls}/other-ca.crt"),
            "UnknownIssuer",
        ),
        (
            "the public roots (no sslrootcert) for a private CA",
            format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full"),
            "UnknownIssuer",
        ),
        ("an expired certificate", env("TEST_AUX_EXPIRED_URL"), "expired"),
    ];
    let config = quick_config();
    for (what, url, expected) in cases {
        let err = store::db::connect(&SecretString::from(url.clone()), &config.db)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: connected"));
        let message = format!("{err:#}");
        assert!(
            message.contains("invalid peer certificate") && message.contains(expected),
            "{what}: {message}"
        );

        let api = spawn_api_on(config.clone(), test_db_on(&admin, Some(&url)).await).await;
        let started = Instant::now();
        let body = json!({"email": format!("tls-{}@example.com", uuid::Uuid::new_v4()), "password": "a long enough password 1"});
        let resp = send_with(&client(), &api, Method::POST, "/auth/signup", None, Some(&body)).await;
        resp.problem(503, "service_unavailable");
        assert!(
            started.elapsed() < config.db.operation_timeout,
            "{what}: refused at connect, not after a timeout ({:?})",
            started.elapsed()
        );
    }
}

/// PgBouncer with TLS on both sides (the client side with its own certificate for `localhost`),
/// in transaction mode with `max_prepared_statements`, in front of the TLS cluster.
#[tokio::test]
#[ignore = "needs the PgBouncer of scripts/lib/pg-aux.sh (run by scripts/test.sh)"]
async fn tls_to_pgbouncer_and_from_it_to_the_server() {
    let pooled = env("TEST_AUX_PGBOUNCER_URL");
    let mut config = quick_config();
    config.db.prepared_statements = true;
    let api = spawn_api_on(config, test_db_on(&aux_admin(), Some(&pooled)).await).await;
    assert_eq!(
        store::db::pg_config(&api.db.url, &api.state.config.db)
            .expect("url")
            .tls,
        store::db::TlsPolicy::VerifyFull
    );
    round_trip(&api).await;
    let sessions = ssl_of_sessions(&api).await;
    assert!(!sessions.is_empty(), "PgBouncer holds server connections");
    assert!(sessions.iter().all(|(ssl, _)| *ssl), "{sessions:?}");
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    created: u64,
    ok: u64,
    unavailable: u64,
    /// Anything else: another status, a 503 with another code, a transport error (reset, hang).
    wrong: Vec<String>,
    slowest: Duration,
}

/// The server the test owns: `$TEST_AUX_CTL stop` (immediate mode) or `start`.
async fn ctl(action: &str) {
    let (ctl, arg) = (env("TEST_AUX_CTL"), action.to_owned());
    let status = tokio::task::spawn_blocking(move || std::process::Command::new(ctl).arg(arg).status())
        .await
        .expect("control script task")
        .expect("run the control script");
    assert!(status.success(), "{action}: {status}");
}

/// 8 clients read and write tasks while the server is stopped in immediate mode for 3 s and
/// started again. During the outage every answer is 503 `service_unavailable` within the
/// operation timeout (no hang, reset or other 5xx); after it, requests succeed on the same API
/// (not restarted); and the 201s are exactly the task rows.
async fn outage_under_load(app: Option<&str>) {
    let config = quick_config();
    let bound = config.db.operation_timeout + Duration::from_millis(1500);
    let api = Arc::new(spawn_api_on(config, test_db_on(&aux_admin(), app).await).await);
    let account = signup_ok(&api).await;
    let token = Arc::new(account.access_token);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(bound + Duration::from_secs(5))
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (api, token, http, stop) = (api.clone(), token.clone(), http.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let write = i.is_multiple_of(2);
                let started = Instant::now();
                let req = if write {
                    http.post(api.url("/tasks"))
                        .json(&json!({"title": format!("client {c} request {i}")}))
                } else {
                    http.get(api.url("/tasks?limit=5"))
                };
                let result = req.bearer_auth(token.as_str()).send().await;
                let elapsed = started.elapsed();
                tally.slowest = tally.slowest.max(elapsed);
                let resp = match result {
                    Ok(r) => r,
                    Err(e) => {
                        tally.wrong.push(format!("transport error after {elapsed:?}: {e}"));
                        continue;
                    }
                };
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                match status {
                    StatusCode::CREATED if write => tally.created += 1,
                    StatusCode::OK if !write => tally.ok += 1,
                    StatusCode::SERVICE_UNAVAILABLE if body["code"] == "service_unavailable" => {
                        tally.unavailable += 1;
                        // Not a busy loop against a server that is down.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => tally.wrong.push(format!("{other} after {elapsed:?}: {body}")),
                }
                if elapsed > bound {
                    tally.wrong.push(format!("{status} took {elapsed:?}, past {bound:?}"));
                }
            }
            tally
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    ctl("stop").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ctl("start").await;
    // The first requests after the restart, from a fresh client, succeed (on the same API).
    let back = Instant::now();
    let mut first_ok = None;
    while back.elapsed() < Duration::from_secs(15) {
        let r = http
            .get(api.url("/tasks?limit=1"))
            .bearer_auth(token.as_str())
            .send()
            .await;
        if r.as_ref().is_ok_and(|r| r.status() == StatusCode::OK) {
            first_ok = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_ok = first_ok.expect("requests succeed again within 15 s of the restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for handle in clients {
        let t = handle.await.expect("client task");
        total.created += t.created;
        total.ok += t.ok;
        total.unavailable += t.unavailable;
        total.wrong.extend(t.wrong);
        total.slowest = total.slowest.max(t.slowest);
    }
    let rows: i64 = api
        .sql()
        .await
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .expect("count")
        .get(0);
    eprintln!(
        "outage ({}): {} created, {} listed, {} answered 503, slowest {:?}, first success {:?} after the restart, {} rows",
        app.map_or("direct", |_| "through PgBouncer"),
        total.created,
        total.ok,
        total.unavailable,
        total.slowest,
        first_ok,
        rows
    );
    assert!(
        total.wrong.is_empty(),
        "{} unexpected answers: {:#?}",
        total.wrong.len(),
        total.wrong
    );
    assert!(total.unavailable > 0, "the outage was seen");
    assert!(total.created > 0 && total.ok > 0);
    assert_eq!(
        i64::try_from(total.created).expect("count"),
        rows,
        "every 201 is a row and every row a 201"
    );
}

#[tokio::test]
#[ignore = "needs a PostgreSQL the test may stop (scripts/lib/pg-aux.sh, run by scripts/test.sh)"]
async fn an_outage_under_load_is_503_then_recovers_without_a_restart() {
    outage_under_load(None).await;
}

#[tokio::test]
#[ignore = "needs a PostgreSQL the test may stop and PgBouncer (scripts/lib/pg-aux.sh, run by scripts/test.sh)"]
async fn an_outage_under_load_through_pgbouncer_is_503_then_recovers_without_a_restart() {
    outage_under_load(Some(&env("TEST_AUX_PGBOUNCER_URL"))).await;
}

/// 100 concurrent clients spread over 25 function instances with a pool of one connection each,
/// against a server with `max_connections = 20`: the instances that get a connection queue their
/// requests on it, the others answer 503 at once; nothing waits past the operation timeout.
#[tokio::test]
#[ignore = "needs the small cluster of scripts/lib/pg-aux.sh (run by scripts/test.sh)"]
async fn many_clients_against_few_connections_queue_or_get_503_never_hang() {
    let mut config = quick_config();
    config.db.pool_size = 1;
    let db = test_db_on(&aux_admin(), None).await;
    let first = spawn_api_on(config.clone(), db).await;
    let account = signup_ok(&first).await;
    post(&first, &account.access_token, "/tasks", &json!({"title": "t"}))
        .await
        .expect(201);
    let mut instances = vec![Arc::new(first)];
    for _ in 1..25 {
        instances.push(Arc::new(spawn_instance(config.clone(), &instances[0].db).await));
    }
    let bound = config.db.operation_timeout + Duration::from_millis(1000);
    let token = Arc::new(account.access_token);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(bound + Duration::from_secs(5))
        .build()
        .expect("client");
    let mut clients = Vec::new();
    for c in 0..100usize {
        let (api, token, http) = (instances[c % instances.len()].clone(), token.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                let r = http.get(api.url("/tasks")).bearer_auth(token.as_str()).send().await;
                let elapsed = started.elapsed();
                let outcome = match r {
                    Ok(r) => {
                        let status = r.status();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        match status {
                            StatusCode::OK if body["items"][0]["title"] == "t" => "ok".to_owned(),
                            StatusCode::SERVICE_UNAVAILABLE if body["code"] == "service_unavailable" => {
                                "503".to_owned()
                            }
                            other => format!("{other}: {body}"),
                        }
                    }
                    Err(e) => format!("transport error: {e}"),
                };
                seen.push((outcome, elapsed));
            }
            seen
        }));
    }
    let mut ok = 0;
    let mut unavailable = 0;
    let mut slowest = Duration::ZERO;
    for handle in clients {
        for (outcome, elapsed) in handle.await.expect("client task") {
            slowest = slowest.max(elapsed);
            match outcome.as_str() {
                "ok" => ok += 1,
                "503" => unavailable += 1,
                other => panic!("unexpected answer: {other}"),
            }
            assert!(elapsed <= bound, "a request took {elapsed:?}, past {bound:?}");
        }
    }
    eprintln!("connection limits: {ok} ok, {unavailable} answered 503, slowest {slowest:?}");
    assert!(ok > 0, "the instances with a connection served their queue");
    assert!(
        unavailable > 0,
        "the server ran out of connections (max_connections = 20)"
    );
}

/// Prepared statements on (the default) against PgBouncer with `max_prepared_statements = 0`:
/// a statement prepared on one server connection is executed on another. Every answer is either
/// right or a 503; never a 500, never another user's or another statement's rows. Two processes
/// share the pooler (this one and a child running
/// [`crate::second_process::noprep_second_process`]), preparing their statements in different
/// orders. Both fall back to unnamed statements at their first proof (in the signups already),
/// so this run does not catch upstream tokio-postgres's per-process names `s0`, `s1`, ... by
/// itself (it passed with them too); `database::statement_names_are_unique_per_process` does.
#[tokio::test]
#[ignore = "needs the PgBouncer of scripts/lib/pg-aux.sh (run by scripts/test.sh)"]
async fn prepared_statements_against_a_pooler_without_support_never_answer_wrong() {
    let pooled = env("TEST_PGBOUNCER_NOPREP_URL");
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let api = Arc::new(spawn_api_on(noprep_config(), test_db_on(&admin, Some(&pooled)).await).await);
    let child = {
        let name = api.db.name.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--ignored",
                    "--exact",
                    "second_process::noprep_second_process",
                    "--nocapture",
                ])
                .env(NOPREP_CHILD_DB, name)
                .output()
                .expect("run the second process")
        })
    };
    let (ok, unavailable) = noprep_workload(api.clone(), false).await;
    let child = child.await.expect("second process");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "the second process: {stdout}{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let fell_back = api.state.config.db.prepared_fallback.load(Ordering::Relaxed);
    eprintln!(
        "prepared statements against a pooler without support: {ok} right answers, {unavailable} answered 503; \
         fell back to unnamed statements: {fell_back}; second process: {}",
        stdout
            .lines()
            .find(|l| l.starts_with("second process:"))
            .unwrap_or("(no summary)")
    );
    assert!(ok > 0);
}

pub(crate) const NOPREP_CHILD_DB: &str = "TODO_TEST_NOPREP_CHILD_DB";

pub(crate) fn noprep_config() -> settings::Config {
    let mut config = test_config();
    config.db.prepared_statements = true;
    config
}

/// 8 clients, each signing up, then creating tasks and listing them (`list_first`: listing
/// before each create) 15 times, checking every list against what it created. Returns the
/// number of right answers and of 503s; anything else fails the test.
pub(crate) async fn noprep_workload(api: Arc<TestApi>, list_first: bool) -> (usize, usize) {
    let mut clients = Vec::new();
    for c in 0..8 {
        let api = api.clone();
        clients.push(tokio::spawn(async move {
            let mut account = None;
            for _ in 0..5 {
                let email = crate::helpers::unique_email("noprep");
                let r = crate::helpers::signup_resp(&api, &email, "a long enough password 1").await;
                match r.status.as_u16() {
                    201 => {
                        account = Some(r.json()["access_token"].as_str().expect("token").to_owned());
                        break;
                    }
                    _ => {
                        r.problem(503, "service_unavailable");
                    }
                }
            }
            let token = account.expect("a signup succeeds within 5 tries");
            let mut mine = Vec::new();
            let mut outcomes = Vec::new();
            for i in 0..15 {
                if list_first {
                    outcomes.push(check_list(&api, &token, c, &mine).await);
                }
                let title = format!("client {c} task {i}");
                let r = post(&api, &token, "/tasks", &json!({"title": title})).await;
                match r.status.as_u16() {
                    201 => mine.push(title),
                    503 => {
                        r.problem(503, "service_unavailable");
                    }
                    other => panic!("create: {other} {}", r.body),
                }
                if !list_first {
                    outcomes.push(check_list(&api, &token, c, &mine).await);
                }
            }
            outcomes
        }));
    }
    let (mut ok, mut unavailable) = (0, 0);
    for handle in clients {
        for right in handle.await.expect("client task") {
            if right {
                ok += 1;
            } else {
                unavailable += 1;
            }
        }
    }
    (ok, unavailable)
}

/// `GET /tasks`: true when it lists exactly `mine`, false for a 503; anything else panics.
async fn check_list(api: &TestApi, token: &str, c: usize, mine: &[String]) -> bool {
    let r = get(api, token, "/tasks?limit=100").await;
    match r.status.as_u16() {
        200 => {
            let body = r.json();
            let mut titles: Vec<String> = body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|t| t["title"].as_str().expect("title").to_owned())
                .collect();
            titles.sort();
            let mut expected = mine.to_vec();
            expected.sort();
            assert_eq!(titles, expected, "client {c}: exactly its own tasks");
            true
        }
        503 => {
            r.problem(503, "service_unavailable");
            false
        }
        other => panic!("list: {other} {}", r.body),
    }
}
