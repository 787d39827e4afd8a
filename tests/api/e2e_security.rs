//! End to end over HTTP against the local API, real PostgreSQL: the findings of security review
//! 14. Reuse detection that lasts as long as the session, one canonical email (lookup, uniqueness
//! and every rate-limit key), the last admin deleting itself, a login racing a password change,
//! the per-address refresh limit and duplicate JSON keys.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api_tests::{TestApi, default_config, spawn_api, spawn_api_with, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use settings::Limit;
use uuid::Uuid;

use crate::helpers::{
    Account, Resp, client_from, login_ok, login_resp, post_json, send, send_raw, signup_ok, signup_resp,
    unique_password,
};

/// The test configuration (every limit generous) with `change` applied to its rate limits.
fn config_with(change: impl FnOnce(&mut settings::RateLimits)) -> settings::Config {
    let mut config = test_config();
    change(&mut config.rate_limits);
    config
}

fn limit(max: u32, window_secs: u64) -> Limit {
    Limit {
        max,
        window: Duration::from_secs(window_secs),
    }
}

async fn refresh(api: &TestApi, refresh_token: &str) -> Resp {
    post_json(api, "/auth/refresh", &json!({ "refresh_token": refresh_token })).await
}

async fn refresh_ok(api: &TestApi, refresh_token: &str) -> String {
    let body = refresh(api, refresh_token).await.expect(200);
    body["refresh_token"].as_str().expect("refresh_token").to_owned()
}

async fn session_revoked_reason(api: &TestApi, session: Uuid) -> Option<String> {
    api.sql()
        .await
        .query_one("SELECT revoked_reason FROM sessions WHERE id = $1", &[&session])
        .await
        .expect("session row")
        .get(0)
}

async fn delete_me(api: &TestApi, token: &str, password: &str) -> Resp {
    send(
        api,
        Method::DELETE,
        "/auth/me",
        Some(token),
        Some(&json!({ "password": password })),
    )
    .await
}

async fn promote(api: &TestApi, acct: &Account) -> Account {
    api.sql()
        .await
        .execute("UPDATE users SET role = 'admin' WHERE id = $1", &[&acct.user_id])
        .await
        .expect("promote");
    login_ok(api, &acct.email, &acct.password).await
}

async fn user_exists(api: &TestApi, id: Uuid) -> bool {
    let n: i64 = api
        .sql()
        .await
        .query_one("SELECT count(*) FROM users WHERE id = $1", &[&id])
        .await
        .expect("count")
        .get(0);
    n == 1
}

// ---------------------------------------------------------------------------------------------
// 1. Reuse detection lasts as long as the session
// ---------------------------------------------------------------------------------------------

/// RFC 9700 4.14.2: a stolen and used token replayed by the real client days later (past the
/// grace window, past the clean-up's retention) still revokes the session.
#[tokio::test]
async fn a_rotated_token_replayed_after_the_clean_up_still_revokes_the_session() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let newest = refresh_ok(&api, &acct.refresh_token).await;
    let newest = refresh_ok(&api, &newest).await;
    let db = api.sql().await;
    // The rotation happened two days ago; the session itself is still live.
    db.execute(
        "UPDATE refresh_tokens SET consumed_at = now() - interval '2 days', created_at = now() - interval '2 days'
          WHERE consumed_at IS NOT NULL",
        &[],
    )
    .await
    .expect("age the consumed tokens");

    // The hourly clean-up, with its retention in the past.
    cleanup::run(
        &api.state.pool,
        &api.state.config.db,
        cleanup::CleanupSettings {
            retention: Duration::ZERO,
            ..cleanup::CleanupSettings::default()
        },
    )
    .await
    .expect("clean-up");

    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "refresh_token_reused");
    assert_eq!(
        session_revoked_reason(&api, acct.session_id).await.as_deref(),
        Some("refresh_token_reused")
    );
    refresh(&api, &newest).await.problem(401, "invalid_refresh_token");
}

// ---------------------------------------------------------------------------------------------
// 2. One canonical email
// ---------------------------------------------------------------------------------------------

/// The reported attack: after the victim's budget is spent, `vİctim@example.com` (U+0130) must
/// neither get a fresh budget nor log in as the victim.
#[tokio::test]
async fn a_dotted_capital_i_neither_resets_the_budget_nor_logs_in_as_the_victim() {
    let api = spawn_api_with(default_config()).await;
    let local = format!("victim{}", Uuid::new_v4().simple());
    let victim = format!("{local}@example.com");
    let password = unique_password();
    signup_resp(&api, &victim, &password).await.expect(201);
    let budget = api.state.config.rate_limits.login_failures_per_account.max;
    for _ in 0..budget {
        login_resp(&api, &victim, "wrong-password-0")
            .await
            .problem(401, "invalid_credentials");
    }
    login_resp(&api, &victim, &password).await.problem(429, "rate_limited");

    let dotted = victim.replacen('i', "\u{130}", 1);
    assert_ne!(dotted, victim);
    login_resp(&api, &dotted, "wrong-password-1")
        .await
        .problem(429, "rate_limited");
    login_resp(&api, &dotted, &password).await.problem(429, "rate_limited");
    // Nor can the spelling be registered as a second account (addresses are ASCII only: it is
    // refused before the uniqueness check).
    signup_resp(&api, &dotted, &unique_password())
        .await
        .problem(422, "validation_failed");
}

/// Fullwidth letters (NFKC), case and surrounding spaces: one account, one budget. (Addresses are
/// ASCII only since the recovery review, so an account spelled with a final sigma no longer
/// exists; login still takes any spelling through the canonical form.)
#[tokio::test]
async fn spellings_of_one_email_are_one_account_with_one_budget() {
    let api = spawn_api_with(config_with(|l| {
        l.login_failures_per_account = limit(4, 600);
    }))
    .await;
    let tag = Uuid::new_v4().simple().to_string();
    let stored = format!("odysseus.{tag}@example.com");
    let password = unique_password();
    let body = signup_resp(&api, &stored, &password).await.expect(201);
    let id = body["user"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        body["user"]["email"],
        json!(stored),
        "the stored address keeps the spelling"
    );

    // The first characters fullwidth (3 bytes each in UTF-8: a local part has at most 64 bytes).
    let fullwidth_tag: String = tag
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i < 6 {
                char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c)
            } else {
                c
            }
        })
        .collect();
    let variants = [
        format!("ODYSSEUS.{tag}@EXAMPLE.COM"),
        format!(" Odysseus.{tag}@Example.Com "),
        format!("  odysseus.{fullwidth_tag}@ｅｘａｍｐｌｅ.ｃｏｍ\t"),
    ];
    for email in &variants {
        let body = login_resp(&api, email, &password).await.expect(200);
        assert_eq!(body["user"]["id"], json!(id), "{email} is the same account");
        // A second account under this spelling: taken, or (not ASCII) refused outright.
        let r = signup_resp(&api, email, &unique_password()).await;
        if email.is_ascii() {
            r.problem(409, "email_taken");
        } else {
            r.problem(422, "validation_failed");
        }
    }
    // Four failures spread over the spellings spend the one budget.
    for email in variants.iter().chain([&stored]) {
        login_resp(&api, email, "wrong-password")
            .await
            .problem(401, "invalid_credentials");
    }
    for email in variants.iter().chain([&stored]) {
        login_resp(&api, email, &password).await.problem(429, "rate_limited");
    }
    let keys: i64 = api
        .sql()
        .await
        .query_one("SELECT count(*) FROM rate_limits WHERE bucket = 'login_account'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(keys, 1, "one counter for every spelling");
}

/// The password endpoints spend the same budget as login, under the same canonical key.
#[tokio::test]
async fn password_checks_of_the_account_share_the_login_budget() {
    let api = spawn_api_with(config_with(|l| {
        l.login_failures_per_account = limit(2, 600);
    }))
    .await;
    let tag = Uuid::new_v4().simple().to_string();
    let password = unique_password();
    // Another spelling (case) of the same address counts under the same key.
    let email = format!("{tag}.SAS@example.com");
    signup_resp(&api, &email, &password).await.expect(201);
    let acct = login_ok(&api, &email, &password).await;
    login_resp(&api, &format!("{tag}.sas@EXAMPLE.com"), "wrong-password")
        .await
        .problem(401, "invalid_credentials");
    delete_me(&api, &acct.access_token, "wrong-password")
        .await
        .problem(401, "invalid_credentials");
    delete_me(&api, &acct.access_token, &password)
        .await
        .problem(429, "rate_limited");
}

// ---------------------------------------------------------------------------------------------
// 3. The last active admin cannot delete itself
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_last_active_admin_cannot_delete_itself() {
    let api = spawn_api().await;
    let admin = promote(&api, &signup_ok(&api).await).await;

    // The password is checked first: a stolen access token alone learns nothing.
    delete_me(&api, &admin.access_token, "wrong-password")
        .await
        .problem(401, "invalid_credentials");
    delete_me(&api, &admin.access_token, &admin.password)
        .await
        .problem(409, "last_admin");
    assert!(user_exists(&api, admin.user_id).await);

    // A disabled admin does not count: still the last active one.
    let other = promote(&api, &signup_ok(&api).await).await;
    api.sql()
        .await
        .execute("UPDATE users SET disabled = true WHERE id = $1", &[&other.user_id])
        .await
        .expect("disable");
    delete_me(&api, &admin.access_token, &admin.password)
        .await
        .problem(409, "last_admin");

    // With a second active admin it may go.
    let second = promote(&api, &signup_ok(&api).await).await;
    delete_me(&api, &admin.access_token, &admin.password).await.expect(204);
    assert!(!user_exists(&api, admin.user_id).await);
    delete_me(&api, &second.access_token, &second.password)
        .await
        .problem(409, "last_admin");

    // A plain user is unaffected.
    let user = signup_ok(&api).await;
    delete_me(&api, &user.access_token, &user.password).await.expect(204);
}

/// Two admins deleting themselves at once: the admin rows are locked, so one of them stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_deleting_themselves_at_once_leave_one() {
    let api = Arc::new(spawn_api().await);
    for _ in 0..3 {
        let a = promote(&api, &signup_ok(&api).await).await;
        let b = promote(&api, &signup_ok(&api).await).await;
        let (ra, rb) = tokio::join!(
            delete_me(&api, &a.access_token, &a.password),
            delete_me(&api, &b.access_token, &b.password)
        );
        let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 409], "{} / {}", ra.body, rb.body);
        // Clean the survivor away through the database for the next round.
        api.sql()
            .await
            .execute("DELETE FROM users WHERE role = 'admin'", &[])
            .await
            .expect("reset");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A login does not outlive a password change it raced
// ---------------------------------------------------------------------------------------------

/// The stored password hash of a user (also for the review-fix tests).
pub(crate) async fn stored_hash(api: &TestApi, user: Uuid) -> String {
    api.sql()
        .await
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&user])
        .await
        .expect("user")
        .get(0)
}

/// The session step of a login that verified the old hash runs after the password change
/// committed: no session.
#[tokio::test]
async fn a_login_that_verified_a_replaced_hash_opens_no_session() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let verified = stored_hash(&api, acct.user_id).await;
    let new_password = unique_password();
    send(
        &api,
        Method::POST,
        "/auth/password",
        Some(&acct.access_token),
        Some(&json!({ "current_password": acct.password, "new_password": new_password })),
    )
    .await
    .expect(204);

    let opened = login::open_session(
        &api.state,
        acct.user_id,
        &verified,
        None,
        "no-counter",
        &store::events::Origin::default(),
    )
    .await;
    assert!(
        matches!(opened, Ok(None)),
        "a session for a replaced hash: {:?}",
        opened.map(|s| s.map(|s| s.session_id))
    );
    // The current hash still opens one.
    let current = stored_hash(&api, acct.user_id).await;
    let opened = login::open_session(
        &api.state,
        acct.user_id,
        &current,
        None,
        "no-counter",
        &store::events::Origin::default(),
    )
    .await;
    assert!(matches!(opened, Ok(Some(_))));
}

/// Wait (bounded) until some backend waits for a lock; false if none did.
async fn someone_waits_for_a_lock(db: &tokio_postgres::Client) -> bool {
    for _ in 0..200 {
        let n: i64 = db
            .query_one(
                // A row-lock waiter waits on the other transaction's id: a lock with no
                // database of its own, so the waiting backend is found through its session.
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE NOT l.granted AND a.datname = current_database()",
                &[],
            )
            .await
            .expect("pg_locks")
            .get(0);
        if n > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The password change is in flight (row updated, not committed) when the login's session step
/// runs: the step waits for it and then refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_session_step_waits_for_an_uncommitted_password_change() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let verified = stored_hash(&api, acct.user_id).await;
    let mut change = api.sql().await;
    let tx = change.transaction().await.expect("begin");
    tx.execute(
        "UPDATE users SET password_hash = 'replaced', updated_at = now() WHERE id = $1",
        &[&acct.user_id],
    )
    .await
    .expect("update");

    let state = api.state.clone();
    let user = acct.user_id;
    let step = tokio::spawn(async move {
        login::open_session(
            &state,
            user,
            &verified,
            None,
            "no-counter",
            &store::events::Origin::default(),
        )
        .await
        .map(|s| s.is_some())
    });
    let observer = api.sql().await;
    assert!(
        someone_waits_for_a_lock(&observer).await,
        "the session step must lock the user row"
    );
    tx.commit().await.expect("commit");
    let opened = step.await.expect("join");
    assert!(matches!(opened, Ok(false)), "{opened:?}");
}

/// A login's session step is in flight (user row share-locked, session inserted, not committed)
/// when the password changes: the change waits for it and then revokes that session too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_revokes_the_session_of_a_login_in_flight() {
    let api = Arc::new(spawn_api().await);
    let acct = signup_ok(&api).await;
    let mut login_db = api.sql().await;
    let tx = login_db.transaction().await.expect("begin");
    tx.query_one("SELECT id FROM users WHERE id = $1 FOR SHARE", &[&acct.user_id])
        .await
        .expect("lock");
    let raced = Uuid::now_v7();
    tx.execute(
        "INSERT INTO sessions (id, user_id, idle_expires_at, absolute_expires_at)
         VALUES ($1, $2, now() + interval '1 day', now() + interval '1 day')",
        &[&raced, &acct.user_id],
    )
    .await
    .expect("insert session");

    let (api2, token, password) = (api.clone(), acct.access_token.clone(), acct.password.clone());
    let change = tokio::spawn(async move {
        send(
            &api2,
            Method::POST,
            "/auth/password",
            Some(&token),
            Some(&json!({ "current_password": password, "new_password": unique_password() })),
        )
        .await
    });
    let observer = api.sql().await;
    assert!(
        someone_waits_for_a_lock(&observer).await,
        "the password change must wait for the login in flight"
    );
    tx.commit().await.expect("commit");
    change.await.expect("join").expect(204);
    assert_eq!(
        session_revoked_reason(&api, raced).await.as_deref(),
        Some("password_changed")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Refresh per client address, unknown tokens included
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refreshes_per_address_are_limited_and_unknown_tokens_count() {
    let api = spawn_api_with(config_with(|l| {
        l.refreshes_per_ip = limit(3, 600);
    }))
    .await;
    let acct = signup_ok(&api).await;
    let send_from = |ip: [u8; 4], token: String| {
        let client = client_from(IpAddr::from(ip));
        let url = api.url("/auth/refresh");
        async move {
            let r = client
                .post(url)
                .json(&json!({ "refresh_token": token }))
                .send()
                .await
                .expect("request");
            let status = r.status();
            let headers = r.headers().clone();
            Resp {
                status,
                headers,
                body: r.text().await.expect("body"),
            }
        }
    };
    for i in 0..3 {
        send_from([127, 0, 0, 21], format!("guess-{i}"))
            .await
            .problem(401, "invalid_refresh_token");
    }
    let r = send_from([127, 0, 0, 21], "guess-4".into()).await;
    r.problem(429, "rate_limited");
    // The real token from the exhausted address is refused too, and not consumed.
    send_from([127, 0, 0, 21], acct.refresh_token.clone())
        .await
        .problem(429, "rate_limited");
    // Another address has its own budget.
    send_from([127, 0, 0, 22], "guess-5".into())
        .await
        .problem(401, "invalid_refresh_token");
    send_from([127, 0, 0, 22], acct.refresh_token.clone()).await.expect(200);
}

// ---------------------------------------------------------------------------------------------
// 7. Duplicate JSON keys
// ---------------------------------------------------------------------------------------------

async fn raw_post(api: &TestApi, path: &str, token: Option<&str>, body: &str) -> Resp {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    send_raw(api, Method::POST, path, &headers, Some(body.as_bytes().to_vec())).await
}

#[tokio::test]
async fn duplicate_json_keys_are_refused_at_every_depth() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let password = acct.password.clone();

    // Top level: which of the two emails would be used is not the server's to guess.
    let body = format!(
        r#"{{"email":"{}","email":"someone-else@example.com","password":"{password}"}}"#,
        acct.email
    );
    let problem: Value = raw_post(&api, "/auth/login", None, &body)
        .await
        .problem(400, "malformed_json");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("\"email\""), "the detail names the key: {detail}");

    // Nested and inside arrays: refused before any field (even an unknown one) is looked at.
    for (body, key) in [
        (r#"{"title":"t","description":{"a":1,"a":2}}"#, "a"),
        (r#"{"title":"t","x":[{"k":1},{"k":2,"k":3}]}"#, "k"),
        (r#"{"title":"t","title":"u"}"#, "title"),
    ] {
        let problem = raw_post(&api, "/tasks", Some(&acct.access_token), body)
            .await
            .problem(400, "malformed_json");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("\"{key}\"")), "{body}: {detail}");
    }
    // Same key in sibling objects is fine (and the unknown field is then what is refused).
    raw_post(
        &api,
        "/tasks",
        Some(&acct.access_token),
        r#"{"title":"t","x":[{"k":1},{"k":2}]}"#,
    )
    .await
    .problem(422, "unknown_field");
}

// ---------------------------------------------------------------------------------------------
// 2b. Migration V3: existing rows get their canonical email
// ---------------------------------------------------------------------------------------------

/// A fresh database with only migrations V1 and V2: the schema the old code wrote rows into.
async fn database_at_v2() -> tokio_postgres::Client {
    api_tests::test_db_at(2).await.1
}

async fn insert_legacy_user(db: &tokio_postgres::Client, email: &str) -> Uuid {
    let id = Uuid::now_v7();
    db.execute(
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'legacy')",
        &[&id, &email],
    )
    .await
    .expect("insert a legacy user");
    id
}

#[tokio::test]
async fn migrate_gives_existing_rows_their_canonical_email_in_batches() {
    let mut db = database_at_v2().await;
    let victim = insert_legacy_user(&db, "  V\u{130}ctim@Example.COM").await;
    let greek = insert_legacy_user(&db, "ΟΔΥΣΣΕΥΣ@example.gr").await;
    // More than one batch of 1,000.
    db.execute(
        "INSERT INTO users (id, email, password_hash)
         SELECT gen_random_uuid(), 'User' || g || '@Example.com', 'legacy' FROM generate_series(1, 1500) g",
        &[],
    )
    .await
    .expect("bulk insert");

    let config = test_config();
    store::db::migrate(&mut db, &config.db).await.expect("migrate");
    let canonical = |id: Uuid| {
        let db = &db;
        async move {
            db.query_one("SELECT email_canonical FROM users WHERE id = $1", &[&id])
                .await
                .expect("row")
                .get::<_, String>(0)
        }
    };
    assert_eq!(canonical(victim).await, "victim@example.com");
    assert_eq!(
        canonical(greek).await,
        store::users::canonical_email("οδυσσευς@example.gr")
    );
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE email_canonical IS NULL) AS missing,
                    count(*) FILTER (WHERE email LIKE 'User%' AND email_canonical = lower(email)) AS ascii,
                    (SELECT attnotnull FROM pg_attribute
                      WHERE attrelid = 'users'::regclass AND attname = 'email_canonical') AS not_null
               FROM users",
            &[],
        )
        .await
        .expect("summary");
    assert_eq!(row.get::<_, i64>("missing"), 0);
    // The 1,500 ASCII addresses only: what `lower()` does to the Greek one depends on the
    // server's locale (the C locale leaves it alone), which is exactly why SQL never compares.
    assert_eq!(row.get::<_, i64>("ascii"), 1500);
    assert!(row.get::<_, bool>("not_null"), "NOT NULL once filled");
    // Migrating again changes nothing and succeeds.
    store::db::migrate(&mut db, &config.db).await.expect("migrate again");
}

#[tokio::test]
async fn migrate_refuses_to_merge_two_accounts_with_one_canonical_email() {
    let mut db = database_at_v2().await;
    // Distinct for the old `lower(email)` index, one address once canonicalised.
    let first = insert_legacy_user(&db, "victim@example.com").await;
    let second = insert_legacy_user(&db, "ｖｉｃｔｉｍ@example.com").await;
    let error = store::db::migrate(&mut db, &test_config().db)
        .await
        .expect_err("two accounts would become one");
    let message = format!("{error:#}");
    assert!(
        message.contains(&first.to_string()) && message.contains(&second.to_string()),
        "{message}"
    );
    let filled: i64 = db
        .query_one("SELECT count(email_canonical) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(filled, 0, "nothing half-done");
}
