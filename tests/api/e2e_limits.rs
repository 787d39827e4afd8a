//! End to end over HTTP against the local API, real PostgreSQL: the rate limits (per account with
//! growing back-off, per address, per session; one shared counter under concurrency and across
//! instances), the per-user task quota, and the hard request limits every function applies
//! (size, media type, unknown fields, encoding, shape, types, query and path lengths), ending
//! with a seeded random sweep of every route.
//!
//! Every test sets small limits of its own through the `Config`; windows are aged with SQL
//! rather than waited out.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api_tests::{TestApi, spawn_api_with, test_config, test_keys};
use reqwest::header::HeaderValue;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use settings::{Config, Limit};
use uuid::Uuid;

use crate::helpers::{
    Account, PROBLEM_TYPE_PREFIX, Resp, claims, client, client_from, error_fields, login_ok, login_resp,
    mint_test_token, now_secs, post_json, send, signup_ok, signup_resp, unique_email, unique_password,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn limit(max: u32, window_secs: u64) -> Limit {
    Limit {
        max,
        window: Duration::from_secs(window_secs),
    }
}

/// A loopback address: the local API counts 127.0.0.x as a different client address.
fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// The test configuration (every limit generous) with `change` applied.
fn config_with(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config();
    change(&mut config);
    config
}

/// Send with `client`: exactly these headers and body bytes.
async fn send_from(
    client: &Client,
    api: &TestApi,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    send_to(client, &api.base, method, path, headers, body).await
}

/// Like [`send_from`], to the server at `base` (`http://host:port`).
async fn send_to(
    client: &Client,
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let mut req = client.request(method, format!("{base}{path}"));
    for (name, value) in headers {
        req = req.header(*name, HeaderValue::from_str(value).expect("header value"));
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let response = req.send().await.expect("request to the local API");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("read the response body");
    Resp { status, headers, body }
}

/// `POST /auth/login` from `client`, with extra headers (e.g. `X-Forwarded-For`).
async fn login_from(client: &Client, api: &TestApi, email: &str, password: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let body = serde_json::to_vec(&json!({ "email": email, "password": password })).expect("serialize");
    send_from(client, api, Method::POST, "/auth/login", &headers, Some(body)).await
}

/// `POST /auth/signup` from `client`, with extra headers.
async fn signup_from(client: &Client, api: &TestApi, email: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let body = serde_json::to_vec(&json!({ "email": email, "password": unique_password() })).expect("serialize");
    send_from(client, api, Method::POST, "/auth/signup", &headers, Some(body)).await
}

/// `POST /auth/refresh`.
async fn refresh(api: &TestApi, refresh_token: &str) -> Resp {
    post_json(api, "/auth/refresh", &json!({ "refresh_token": refresh_token })).await
}

/// The `Retry-After` of a 429 (asserted to be whole seconds, at least 1 and at most `max_secs`).
#[track_caller]
fn retry_after(r: &Resp, max_secs: u64) -> u64 {
    let raw = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("a 429 needs Retry-After: {}", r.body));
    let secs: u64 = raw
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After must be whole seconds: {raw:?}"));
    assert!(
        (1..=max_secs).contains(&secs),
        "Retry-After {secs} not in 1..={max_secs}"
    );
    secs
}

/// Assert a 429 `rate_limited` problem whose `Retry-After` is at most `max_secs`; returns it.
#[track_caller]
fn assert_limited(r: &Resp, max_secs: u64) -> u64 {
    r.problem(429, "rate_limited");
    retry_after(r, max_secs)
}

/// One rate-limit row.
#[derive(Debug, Clone, PartialEq)]
struct Counter {
    key: String,
    count: i32,
    strikes: i32,
    /// `window_end - window_start`, in seconds.
    window_secs: f64,
}

/// The rows of `bucket`, ordered by key.
async fn counters(api: &TestApi, bucket: &str) -> Vec<Counter> {
    let db = api.sql().await;
    db.query(
        "SELECT key, count, strikes, extract(epoch FROM window_end - window_start)::float8 AS secs
           FROM rate_limits WHERE bucket = $1 ORDER BY key",
        &[&bucket],
    )
    .await
    .expect("read rate_limits")
    .iter()
    .map(|row| Counter {
        key: row.get("key"),
        count: row.get("count"),
        strikes: row.get("strikes"),
        window_secs: row.get("secs"),
    })
    .collect()
}

/// The only row of `bucket`.
async fn only_counter(api: &TestApi, bucket: &str) -> Counter {
    let rows = counters(api, bucket).await;
    assert_eq!(rows.len(), 1, "one {bucket} counter expected: {rows:?}");
    rows.into_iter().next().expect("one row")
}

/// End the current window of every counter of `bucket` (as if it had been waited out).
async fn age_windows(api: &TestApi, bucket: &str) {
    let db = api.sql().await;
    let n = db
        .execute(
            "UPDATE rate_limits SET window_end = now() - interval '1 second' WHERE bucket = $1",
            &[&bucket],
        )
        .await
        .expect("age the windows");
    assert!(n > 0, "no {bucket} counter to age");
}

// ---------------------------------------------------------------------------------------------
// 1-4: login failures per account
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_failures_per_account_are_limited_and_a_success_resets_them() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(3, 600);
    }))
    .await;
    let acct = signup_ok(&api).await;

    // Two failures, then the right password (the 3rd attempt, still within the limit): accepted,
    // and the account's count starts again.
    for _ in 0..2 {
        login_resp(&api, &acct.email, "wrong-password-1")
            .await
            .problem(401, "invalid_credentials");
    }
    login_ok(&api, &acct.email, &acct.password).await;
    assert!(
        counters(&api, "login_account").await.is_empty(),
        "a successful login resets the account's counter"
    );

    // Without the reset the 2nd of these would already be over the limit.
    for _ in 0..3 {
        login_resp(&api, &acct.email, "wrong-password-2")
            .await
            .problem(401, "invalid_credentials");
    }
    let r = login_resp(&api, &acct.email, "wrong-password-3").await;
    assert_limited(&r, 600);
    assert!(r.header("www-authenticate").is_none(), "a 429 is not a 401");

    // While blocked, even the right password is refused (and no session is made).
    let r = login_resp(&api, &acct.email, &acct.password).await;
    assert_limited(&r, 600);
    let db = api.sql().await;
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM sessions WHERE user_id = $1", &[&acct.user_id])
        .await
        .expect("count sessions")
        .get(0);
    assert_eq!(sessions, 2, "only the signup and the first login made sessions");

    // Another account is not affected.
    let other = signup_ok(&api).await;
    login_ok(&api, &other.email, &other.password).await;
}

/// The address is counted first and the account only while the address is within its limit:
/// attempts refused for the address do not count against the account they name, so a blocked
/// address cannot lock other people out. (Both counters are now one statement,
/// `ratelimit::hit_in_turn`; this fails if its second upsert ignores the first's count.)
#[tokio::test]
async fn attempts_refused_for_the_address_do_not_count_against_the_account() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_attempts_per_ip = limit(2, 600);
        c.rate_limits.login_failures_per_account = limit(3, 600);
    }))
    .await;
    let acct = signup_ok(&api).await;
    let attacker = client_from(loopback(4));
    for _ in 0..2 {
        login_from(&attacker, &api, &acct.email, "wrong-password", &[])
            .await
            .problem(401, "invalid_credentials");
    }
    for _ in 0..5 {
        assert_limited(
            &login_from(&attacker, &api, &acct.email, "wrong-password", &[]).await,
            600,
        );
    }
    let ip: Vec<(String, i32)> = counters(&api, "login_ip")
        .await
        .into_iter()
        .map(|c| (c.key, c.count))
        .collect();
    assert_eq!(
        ip,
        [("127.0.0.4".to_owned(), 7)],
        "every attempt counts for the address"
    );
    let account = only_counter(&api, "login_account").await;
    assert_eq!(
        account.count, 2,
        "only the attempts the address was allowed count for the account"
    );
    // So the owner, from another address, is still within the account's limit.
    login_from(&client_from(loopback(5)), &api, &acct.email, &acct.password, &[])
        .await
        .expect(200);
}

#[tokio::test]
async fn unknown_emails_are_throttled_exactly_like_real_ones() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(3, 600);
    }))
    .await;
    let real = signup_ok(&api).await;
    let ghost = unique_email("ghost");

    let mut real_answers = Vec::new();
    let mut ghost_answers = Vec::new();
    for i in 0..6 {
        let password = format!("wrong-password-{i}");
        real_answers.push(login_resp(&api, &real.email, &password).await);
        ghost_answers.push(login_resp(&api, &ghost, &password).await);
    }
    let statuses = |answers: &[Resp]| answers.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>();
    assert_eq!(statuses(&real_answers), [401, 401, 401, 429, 429, 429]);
    assert_eq!(statuses(&ghost_answers), statuses(&real_answers));
    for (i, (real, ghost)) in real_answers.iter().zip(&ghost_answers).enumerate() {
        assert_eq!(real.body, ghost.body, "attempt {}: bodies differ", i + 1);
        for name in ["content-type", "www-authenticate", "cache-control"] {
            assert_eq!(
                real.header(name),
                ghost.header(name),
                "attempt {}: {name} differs",
                i + 1
            );
        }
        if real.status == StatusCode::TOO_MANY_REQUESTS {
            let (a, b) = (assert_limited(real, 600), assert_limited(ghost, 600));
            assert!(a.abs_diff(b) <= 1, "attempt {}: Retry-After {a} vs {b}", i + 1);
        } else {
            real.problem(401, "invalid_credentials");
            assert!(ghost.header("retry-after").is_none());
        }
    }

    // Both are counted the same way, and neither address is stored in the clear.
    let rows = counters(&api, "login_account").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row.count, 6, "{rows:?}");
        assert_eq!(row.key.len(), 64, "the key is a SHA-256 hex digest: {rows:?}");
        assert!(row.key.bytes().all(|b| b.is_ascii_hexdigit()), "{rows:?}");
        assert!(!row.key.contains('@'), "{rows:?}");
    }
}

#[tokio::test]
async fn email_variants_share_one_counter() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(3, 600);
    }))
    .await;
    let local = Uuid::new_v4().simple().to_string();
    let variants = [
        format!("A{local}@x.com"),
        format!(" a{local}@x.com "),
        format!("a{local}@X.COM"),
    ];
    let password = unique_password();
    signup_resp(&api, &variants[0], &password).await.expect(201);

    // A success through one spelling resets the counter of every spelling.
    login_resp(&api, &variants[0], "wrong-password")
        .await
        .problem(401, "invalid_credentials");
    login_resp(&api, &variants[1], "wrong-password")
        .await
        .problem(401, "invalid_credentials");
    login_resp(&api, &variants[2], &password).await.expect(200);
    assert!(counters(&api, "login_account").await.is_empty());

    for email in &variants {
        login_resp(&api, email, "wrong-password")
            .await
            .problem(401, "invalid_credentials");
    }
    // The 4th attempt is over the limit whichever spelling is used, right password included.
    for email in &variants {
        assert_limited(&login_resp(&api, email, &password).await, 600);
    }
    let row = only_counter(&api, "login_account").await;
    assert_eq!(row.count, 6, "{row:?}");

    // Unknown addresses too: case and surrounding spaces make no new counter.
    let ghost = format!("Ghost{local}@Example.org");
    for email in [
        ghost.clone(),
        format!("  {}\t", ghost.to_uppercase()),
        ghost.to_lowercase(),
    ] {
        login_resp(&api, &email, "wrong-password")
            .await
            .problem(401, "invalid_credentials");
    }
    assert_limited(&login_resp(&api, &ghost, "wrong-password").await, 600);
    assert_eq!(counters(&api, "login_account").await.len(), 2);
}

#[tokio::test]
async fn login_back_off_grows_is_capped_and_never_locks_for_good() {
    const WINDOW: u64 = 30;
    const MAX: u32 = 2;
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(MAX, WINDOW);
    }))
    .await;
    let acct = signup_ok(&api).await;
    let fail = |n: u32| format!("wrong-password-{n}");

    // Round 0: the configured window; the 3rd attempt is refused.
    for n in 0..MAX {
        login_resp(&api, &acct.email, &fail(n))
            .await
            .problem(401, "invalid_credentials");
    }
    assert_limited(&login_resp(&api, &acct.email, &fail(9)).await, WINDOW);
    let row = only_counter(&api, "login_account").await;
    assert_eq!((row.count, row.strikes), (3, 0), "{row:?}");
    assert_eq!(row.window_secs, WINDOW as f64, "{row:?}");

    // Every window that ends over the limit makes the next one longer (x2, x4), never more than
    // 4x the configured window however many rounds follow; and each time the window is over,
    // attempts are accepted again.
    for round in 1..=7u32 {
        age_windows(&api, "login_account").await;
        login_resp(&api, &acct.email, &fail(round))
            .await
            .problem(401, "invalid_credentials");
        let row = only_counter(&api, "login_account").await;
        let expected = WINDOW * 2u64.pow(round).min(4);
        assert_eq!(row.count, 1, "round {round}: {row:?}");
        assert!(row.strikes >= 1, "round {round}: {row:?}");
        assert_eq!(row.window_secs, expected as f64, "round {round}: {row:?}");
        assert!(row.window_secs <= (4 * WINDOW) as f64, "round {round}: {row:?}");

        login_resp(&api, &acct.email, &fail(round))
            .await
            .problem(401, "invalid_credentials");
        let r = login_resp(&api, &acct.email, &acct.password).await;
        let secs = assert_limited(&r, 4 * WINDOW);
        // Retry-After tells the client about the longer window.
        assert!(
            secs + 5 >= expected,
            "round {round}: Retry-After {secs}, window {expected}"
        );
    }

    // A window that ends within the limit forgets the back-off: the next one is the configured
    // length again.
    age_windows(&api, "login_account").await;
    login_resp(&api, &acct.email, &fail(20))
        .await
        .problem(401, "invalid_credentials");
    assert_eq!(
        only_counter(&api, "login_account").await.window_secs,
        (4 * WINDOW) as f64
    );
    age_windows(&api, "login_account").await;
    login_resp(&api, &acct.email, &fail(21))
        .await
        .problem(401, "invalid_credentials");
    let row = only_counter(&api, "login_account").await;
    assert_eq!((row.count, row.strikes), (1, 0), "{row:?}");
    assert_eq!(row.window_secs, WINDOW as f64, "{row:?}");

    // No permanent lock: after the longest window, the right password works and resets it all.
    for n in 0..MAX {
        let _ = login_resp(&api, &acct.email, &fail(30 + n)).await;
    }
    assert_limited(&login_resp(&api, &acct.email, &acct.password).await, WINDOW);
    age_windows(&api, "login_account").await;
    login_ok(&api, &acct.email, &acct.password).await;
    assert!(counters(&api, "login_account").await.is_empty());
}

/// The same with real time instead of aged rows: a 1-second window, blocked, then accepted again
/// once the (doubled) window has passed.
#[tokio::test]
async fn login_block_ends_with_its_window() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(1, 1);
    }))
    .await;
    let acct = signup_ok(&api).await;
    login_resp(&api, &acct.email, "wrong-password")
        .await
        .problem(401, "invalid_credentials");
    let r = login_resp(&api, &acct.email, &acct.password).await;
    let secs = assert_limited(&r, 2);
    tokio::time::sleep(Duration::from_millis(secs * 1000 + 100)).await;
    login_ok(&api, &acct.email, &acct.password).await;
}

// ---------------------------------------------------------------------------------------------
// 5-7: per address, per session
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_attempts_per_address_are_limited_and_x_forwarded_for_is_ignored() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_attempts_per_ip = limit(5, 600);
    }))
    .await;
    let acct = signup_ok(&api).await;
    let first = client_from(loopback(1));

    // Five attempts from 127.0.0.1, each on a different account name.
    for _ in 0..5 {
        login_from(&first, &api, &unique_email("spray"), "wrong-password", &[])
            .await
            .problem(401, "invalid_credentials");
    }
    assert_limited(
        &login_from(&first, &api, &unique_email("spray"), "wrong-password", &[]).await,
        600,
    );
    // A real account's right password from the blocked address is refused too.
    assert_limited(&login_from(&first, &api, &acct.email, &acct.password, &[]).await, 600);
    // Naming another address in X-Forwarded-For does not escape the limit.
    for xff in ["127.0.0.9", "203.0.113.7", "127.0.0.2, 127.0.0.9", "garbage"] {
        let r = login_from(&first, &api, &acct.email, &acct.password, &[("x-forwarded-for", xff)]).await;
        assert_limited(&r, 600);
    }

    // Another address is still allowed, whatever it claims in X-Forwarded-For.
    let second = client_from(loopback(2));
    login_from(&second, &api, &acct.email, &acct.password, &[])
        .await
        .expect(200);
    login_from(
        &second,
        &api,
        &acct.email,
        &acct.password,
        &[("x-forwarded-for", "127.0.0.1")],
    )
    .await
    .expect(200);

    // Spoofing X-Forwarded-For does not get the named address throttled: 127.0.0.3 sends six
    // attempts claiming to be 127.0.0.9; 127.0.0.3 is blocked, 127.0.0.9 is not.
    let spoofer = client_from(loopback(3));
    for _ in 0..5 {
        login_from(
            &spoofer,
            &api,
            &unique_email("spoof"),
            "wrong-password",
            &[("x-forwarded-for", "127.0.0.9")],
        )
        .await
        .problem(401, "invalid_credentials");
    }
    let r = login_from(
        &spoofer,
        &api,
        &unique_email("spoof"),
        "wrong-password",
        &[("x-forwarded-for", "127.0.0.9")],
    )
    .await;
    assert_limited(&r, 600);
    let victim = client_from(loopback(9));
    login_from(&victim, &api, &acct.email, &acct.password, &[])
        .await
        .expect(200);

    // Only TCP peers were counted, each attempt once.
    let rows: Vec<(String, i32)> = counters(&api, "login_ip")
        .await
        .into_iter()
        .map(|c| (c.key, c.count))
        .collect();
    assert_eq!(
        rows,
        [
            ("127.0.0.1".to_owned(), 11),
            ("127.0.0.2".to_owned(), 2),
            ("127.0.0.3".to_owned(), 6),
            ("127.0.0.9".to_owned(), 1),
        ]
    );
}

#[tokio::test]
async fn signups_per_address_are_limited() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.signups_per_ip = limit(2, 600);
    }))
    .await;
    let first = client_from(loopback(1));
    for _ in 0..2 {
        signup_from(&first, &api, &unique_email("signup"), &[])
            .await
            .expect(201);
    }
    let refused = unique_email("refused");
    assert_limited(&signup_from(&first, &api, &refused, &[]).await, 600);
    assert_limited(
        &signup_from(&first, &api, &unique_email("xff"), &[("x-forwarded-for", "127.0.0.3")]).await,
        600,
    );

    // Another address is allowed; the refused signup made no account.
    let third = client_from(loopback(3));
    signup_from(&third, &api, &refused, &[]).await.expect(201);
    let db = api.sql().await;
    let users: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count users")
        .get(0);
    assert_eq!(users, 3);
}

#[tokio::test]
async fn refreshes_per_session_are_limited() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.refreshes_per_session = limit(2, 600);
    }))
    .await;
    let acct = signup_ok(&api).await;

    let mut token = acct.refresh_token.clone();
    for _ in 0..2 {
        let body = refresh(&api, &token).await.expect(200);
        token = body["refresh_token"].as_str().expect("refresh_token").to_owned();
    }
    let r = refresh(&api, &token).await;
    assert_limited(&r, 600);

    // Another session of the same user has its own counter.
    let other = login_ok(&api, &acct.email, &acct.password).await;
    refresh(&api, &other.refresh_token).await.expect(200);
    let keys: Vec<String> = counters(&api, "refresh_session")
        .await
        .into_iter()
        .map(|c| c.key)
        .collect();
    let mut expected = vec![acct.session_id.to_string(), other.session_id.to_string()];
    expected.sort();
    assert_eq!(keys, expected);

    // The refused token was not consumed: once its window is over, it still rotates.
    let db = api.sql().await;
    db.execute(
        "UPDATE rate_limits SET window_end = now() - interval '1 second'
          WHERE bucket = 'refresh_session' AND key = $1",
        &[&acct.session_id.to_string()],
    )
    .await
    .expect("age the window");
    refresh(&api, &token).await.expect(200);
}

// ---------------------------------------------------------------------------------------------
// 8: one counter under concurrency, across instances
// ---------------------------------------------------------------------------------------------

/// Send `n` wrong-password logins for `email` at once, round-robin over `bases`; the statuses.
async fn concurrent_failures(bases: &[String], email: &str, n: usize) -> Vec<u16> {
    let client = client();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let url = format!("{}/auth/login", bases[i % bases.len()]);
        let body = json!({ "email": email, "password": format!("wrong-password-{i}") });
        set.spawn(async move {
            let r = client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("request to the local API");
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            (status, text)
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (status, body) = joined.expect("task");
        assert!(
            status == 401 || status == 429,
            "only 401 or 429 expected, got {status}: {body}"
        );
        statuses.push(status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_share_one_counter() {
    let api = spawn_api_with(config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(10, 600);
    }))
    .await;
    let acct = signup_ok(&api).await;

    let statuses = concurrent_failures(std::slice::from_ref(&api.base), &acct.email, 50).await;
    let passed = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(statuses.len(), 50);
    assert!(passed <= 10, "{passed} attempts got past a limit of 10");
    assert_eq!(passed, 10, "every attempt is counted exactly once");
    let row = only_counter(&api, "login_account").await;
    assert_eq!(row.count, 50, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_share_the_counter() {
    let config = config_with(|c| {
        c.rate_limits.login_failures_per_account = limit(10, 600);
    });
    let api = spawn_api_with(config.clone()).await;
    // A second instance: its own state and connection pool, on the same database.
    let pool = store::db::pool(&api.db.url, &config.db).expect("second pool");
    let second = Arc::new(store::AppState::new(config, pool, test_keys()).expect("second state"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let second_base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = local_api::serve(listener, second, api_tests::AUTHORIZER_CACHE_TTL).await;
    });

    let acct = signup_ok(&api).await;
    let bases = [api.base.clone(), second_base.clone()];
    let statuses = concurrent_failures(&bases, &acct.email, 30).await;
    let passed = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(statuses.len(), 30);
    assert!(
        passed <= 10,
        "{passed} attempts got past a limit of 10 across two instances"
    );
    assert_eq!(passed, 10, "every attempt is counted exactly once");
    assert_eq!(only_counter(&api, "login_account").await.count, 30);

    // Each instance sees the block the other one counted.
    for base in &bases {
        let r = send_to(
            &client(),
            base,
            Method::POST,
            "/auth/login",
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(&json!({ "email": acct.email, "password": acct.password })).expect("serialize")),
        )
        .await;
        assert_limited(&r, 600);
    }
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// 9: hard limits on every function
// ---------------------------------------------------------------------------------------------

/// A route that takes a JSON body, with a valid body to vary.
struct BodyRoute {
    method: Method,
    path: String,
    token: Option<String>,
    valid: Value,
    /// The string fields of the body (every one is tried with a NUL and with wrong types).
    strings: &'static [&'static str],
    /// The boolean fields.
    bools: &'static [&'static str],
    /// The status a valid body gets (no route is left in a state that breaks a later one).
    ok_status: u16,
}

impl BodyRoute {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Send `body` bytes with these extra headers (the Bearer token is added).
    async fn send(&self, api: &TestApi, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("authorization", auth.as_str()));
        }
        send_from(&client(), api, self.method.clone(), &self.path, &all, body).await
    }

    /// Send `body` bytes as `application/json`.
    async fn send_json(&self, api: &TestApi, body: Vec<u8>) -> Resp {
        self.send(api, &[("content-type", "application/json")], Some(body))
            .await
    }

    /// The valid body with `field` set to `value`.
    fn with(&self, field: &str, value: Value) -> Vec<u8> {
        let mut body = self.valid.clone();
        body[field] = value;
        serde_json::to_vec(&body).expect("serialize")
    }
}

/// An account, a task of it, and every route that takes a JSON body (all reachable with a valid
/// token), in an order where each valid body succeeds: `DELETE /auth/me` gets a wrong password,
/// and the password change comes last.
async fn body_routes(api: &TestApi) -> (Account, Uuid, Vec<BodyRoute>) {
    let acct = signup_ok(api).await;
    let token = acct.access_token.clone();
    let task = send(
        api,
        Method::POST,
        "/tasks",
        Some(&token),
        Some(&json!({ "title": "first" })),
    )
    .await
    .expect(201);
    let task_id: Uuid = task["id"].as_str().and_then(|s| s.parse().ok()).expect("task id");
    let routes = vec![
        BodyRoute {
            method: Method::POST,
            path: "/auth/signup".into(),
            token: None,
            valid: json!({ "email": unique_email("fresh"), "password": unique_password() }),
            strings: &["email", "password"],
            bools: &[],
            ok_status: 201,
        },
        BodyRoute {
            method: Method::POST,
            path: "/auth/login".into(),
            token: None,
            valid: json!({ "email": acct.email, "password": acct.password }),
            strings: &["email", "password"],
            bools: &[],
            ok_status: 200,
        },
        BodyRoute {
            method: Method::POST,
            path: "/auth/refresh".into(),
            token: None,
            valid: json!({ "refresh_token": acct.refresh_token }),
            strings: &["refresh_token"],
            bools: &[],
            ok_status: 200,
        },
        BodyRoute {
            method: Method::POST,
            path: "/tasks".into(),
            token: Some(token.clone()),
            valid: json!({ "title": "a task", "description": "some words", "completed": false }),
            strings: &["title", "description"],
            bools: &["completed"],
            ok_status: 201,
        },
        BodyRoute {
            method: Method::PATCH,
            path: format!("/tasks/{task_id}"),
            token: Some(token.clone()),
            valid: json!({ "title": "renamed", "description": "other words", "completed": true }),
            strings: &["title", "description"],
            bools: &["completed"],
            ok_status: 200,
        },
        BodyRoute {
            method: Method::DELETE,
            path: "/auth/me".into(),
            token: Some(token.clone()),
            valid: json!({ "password": "not-the-password" }),
            strings: &["password"],
            bools: &[],
            ok_status: 401,
        },
        BodyRoute {
            method: Method::POST,
            path: "/auth/password".into(),
            token: Some(token.clone()),
            valid: json!({ "current_password": acct.password, "new_password": unique_password() }),
            strings: &["current_password", "new_password"],
            bools: &[],
            ok_status: 204,
        },
    ];
    (acct, task_id, routes)
}

/// Assert the account's state is unchanged by refused requests: its password, its one task.
async fn assert_untouched(api: &TestApi, acct: &Account, task_id: Uuid) {
    let db = api.sql().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM tasks) AS tasks,
                    (SELECT title FROM tasks WHERE id = $1) AS title",
            &[&task_id],
        )
        .await
        .expect("read state");
    assert_eq!(row.get::<_, i64>("users"), 1, "no account was made or removed");
    assert_eq!(row.get::<_, i64>("tasks"), 1, "no task was made or removed");
    assert_eq!(row.get::<_, Option<String>>("title").as_deref(), Some("first"));
    login_ok(api, &acct.email, &acct.password).await;
}

#[tokio::test]
async fn bodies_over_16_kib_are_413_on_every_body_route() {
    let api = spawn_api_with(test_config()).await;
    let (acct, task_id, routes) = body_routes(&api).await;
    const MAX: usize = 16 * 1024;
    for route in &routes {
        // A valid object padded with whitespace to 16 KiB + 1 byte.
        let mut body = serde_json::to_vec(&route.valid).expect("serialize");
        body.resize(MAX + 1, b' ');
        let r = route.send_json(&api, body).await;
        r.problem(413, "payload_too_large");

        // Larger, and with no Content-Type: the size is checked first.
        let r = route.send(&api, &[], Some(vec![b'x'; 2 * MAX])).await;
        r.problem(413, "payload_too_large");
    }
    assert_untouched(&api, &acct, task_id).await;

    // Exactly 16 KiB is accepted.
    let tasks = &routes[3];
    let mut body = serde_json::to_vec(&json!({ "title": "exactly 16 KiB" })).expect("serialize");
    body.resize(MAX, b' ');
    tasks.send_json(&api, body).await.expect(201);
}

#[tokio::test]
async fn bodies_need_the_json_media_type_on_every_body_route() {
    let api = spawn_api_with(test_config()).await;
    let (acct, task_id, routes) = body_routes(&api).await;
    for route in &routes {
        let body = serde_json::to_vec(&route.valid).expect("serialize");
        let name = route.name();
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("text/json"),
            Some("application/jsonx"),
            Some("application/json-patch+json"),
            Some("multipart/form-data; boundary=x"),
            Some(""),
        ] {
            let headers: Vec<(&str, &str)> = content_type.map(|ct| ("content-type", ct)).into_iter().collect();
            let r = route.send(&api, &headers, Some(body.clone())).await;
            assert_eq!(r.status, 415, "{name} with {content_type:?}: {}", r.body);
            r.problem(415, "unsupported_media_type");
        }
        // A body on a write that needs one, with no body at all: still the media type first.
        route.send(&api, &[], None).await.problem(415, "unsupported_media_type");
    }
    assert_untouched(&api, &acct, task_id).await;

    // A charset parameter (and any case) is fine: each valid body succeeds.
    for (i, route) in routes.iter().enumerate() {
        let content_type = if i % 2 == 0 {
            "application/json; charset=utf-8"
        } else {
            "Application/JSON;charset=UTF-8"
        };
        let body = serde_json::to_vec(&route.valid).expect("serialize");
        let r = route.send(&api, &[("content-type", content_type)], Some(body)).await;
        assert_eq!(
            r.status.as_u16(),
            route.ok_status,
            "{} with {content_type}: {}",
            route.name(),
            r.body
        );
    }
}

#[tokio::test]
async fn unknown_fields_are_422_on_every_body_route() {
    let api = spawn_api_with(test_config()).await;
    let (acct, task_id, routes) = body_routes(&api).await;
    for route in &routes {
        let name = route.name();
        for field in ["role", "id", "user_id", "Title", "admin", "__proto__"] {
            let r = route.send_json(&api, route.with(field, json!("admin"))).await;
            let v = r.problem(422, "unknown_field");
            assert_eq!(
                error_fields(&v),
                [(field.to_owned(), "unknown_field".to_owned())],
                "{name}: {}",
                r.body
            );
        }
        // Several at once are all named; a NUL in a field name is an unknown field too.
        let mut body = route.valid.clone();
        body["extra1"] = json!(1);
        body["extra\u{0}2"] = json!(null);
        let r = route
            .send_json(&api, serde_json::to_vec(&body).expect("serialize"))
            .await;
        let v = r.problem(422, "unknown_field");
        assert_eq!(error_fields(&v).len(), 2, "{name}: {}", r.body);
    }
    assert_untouched(&api, &acct, task_id).await;
}

/// A field whose name is the empty string is refused like any other unknown field, and the 422
/// still names it: every `errors[].field` is non-empty (found by the random sweep).
#[tokio::test]
async fn an_empty_field_name_is_refused_and_named() {
    let api = spawn_api_with(test_config()).await;
    let (acct, task_id, routes) = body_routes(&api).await;
    for route in &routes {
        let r = route.send_json(&api, route.with("", json!(1))).await;
        assert_eq!(r.status, 422, "{}: {}", route.name(), r.body);
        let v: Value = serde_json::from_str(&r.body).expect("problem JSON");
        assert_eq!(v["code"], "unknown_field", "{}: {}", route.name(), r.body);
        // Checks every errors[].field is a non-empty string.
        r.problem(422, "unknown_field");
    }
    assert_untouched(&api, &acct, task_id).await;
}

#[tokio::test]
async fn malformed_bodies_are_refused_and_never_500() {
    let api = spawn_api_with(test_config()).await;
    let (acct, task_id, routes) = body_routes(&api).await;
    for route in &routes {
        let name = route.name();

        // Bytes that are not UTF-8.
        let first = route.strings[0];
        for bad in [&b"\xff\xfe"[..], b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"] {
            let mut body = format!("{{\"{first}\":\"").into_bytes();
            body.extend_from_slice(bad);
            body.extend_from_slice(b"\"}");
            let r = route.send_json(&api, body).await;
            let v = r.problem(422, "validation_failed");
            assert_eq!(
                error_fields(&v),
                [("body".to_owned(), "invalid_encoding".to_owned())],
                "{name}"
            );
        }
        // A UTF-8 byte-order mark, a lone surrogate escape: refused, never 500.
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(&serde_json::to_vec(&route.valid).expect("serialize"));
        let lone = format!("{{\"{first}\":\"\\ud800\"}}").into_bytes();
        for body in [bom, lone] {
            let r = route.send_json(&api, body).await;
            assert!(
                matches!(r.status.as_u16(), 400 | 422),
                "{name}: {} {}",
                r.status,
                r.body
            );
            let code = if r.status == 400 {
                "malformed_json"
            } else {
                "validation_failed"
            };
            r.problem(r.status.as_u16(), code);
        }

        // A NUL in any string field (PostgreSQL text cannot hold one).
        for field in route.strings {
            for value in ["\u{0}", "before\u{0}after", "nul at end\u{0}"] {
                let r = route.send_json(&api, route.with(field, json!(value))).await;
                let v = r.problem(422, "validation_failed");
                assert_eq!(
                    error_fields(&v),
                    [(field.to_string(), "invalid_characters".to_owned())],
                    "{name}: {}",
                    r.body
                );
            }
        }

        // JSON that is not an object.
        for body in ["[]", "[{}]", "1", "-0.5", "null", "true", "\"a string\""] {
            let r = route.send_json(&api, body.as_bytes().to_vec()).await;
            let v = r.problem(422, "validation_failed");
            assert_eq!(
                error_fields(&v),
                [("body".to_owned(), "expected_object".to_owned())],
                "{name} with {body}"
            );
        }

        // Not JSON at all: 400.
        for body in [
            "",
            "{",
            "{\"a\":}",
            "{'a':1}",
            "{\"a\":1,}",
            "nul",
            "1e999",
            "{\"a\":1}{}",
        ] {
            let r = route.send_json(&api, body.as_bytes().to_vec()).await;
            assert_eq!(r.status, 400, "{name} with {body:?}: {}", r.body);
            r.problem(400, "malformed_json");
        }

        // Deep nesting: refused without a stack overflow (400 or 422, never 500).
        let deep_nests = [
            "[".repeat(10_000),
            format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)),
            format!("{{\"{first}\":{}", "{\"a\":".repeat(2_000)),
            format!("{{\"{first}\":{}1{}}}", "[".repeat(100), "]".repeat(100)),
        ];
        for body in deep_nests {
            let r = route.send_json(&api, body.into_bytes()).await;
            let status = r.status.as_u16();
            assert!(
                matches!(status, 400 | 422),
                "{name}: deep nesting got {status}: {}",
                r.body
            );
            let code = if status == 400 {
                "malformed_json"
            } else {
                "validation_failed"
            };
            r.problem(status, code);
        }

        // Wrong types: every field, several wrong values.
        for field in route.strings {
            for value in [json!(123), json!(true), json!(["a"]), json!({ "a": "b" }), json!(1.5)] {
                let r = route.send_json(&api, route.with(field, value.clone())).await;
                let v = r.problem(422, "validation_failed");
                assert!(
                    error_fields(&v).iter().any(|(f, _)| f == field),
                    "{name}: {field} = {value}: {}",
                    r.body
                );
            }
        }
        for field in route.bools {
            for value in [json!("true"), json!(1), json!(0), json!([true]), json!({})] {
                let r = route.send_json(&api, route.with(field, value.clone())).await;
                let v = r.problem(422, "validation_failed");
                assert!(
                    error_fields(&v).iter().any(|(f, _)| f == field),
                    "{name}: {field} = {value}: {}",
                    r.body
                );
            }
        }
    }
    assert_untouched(&api, &acct, task_id).await;
}

#[tokio::test]
async fn over_long_query_parameters_are_422() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let admin = admin_account(&api).await;
    let long_cursor = "a".repeat(1_000);
    let long_text = "x".repeat(1_000);
    let cases: Vec<(String, &str)> = vec![
        (format!("cursor={long_cursor}"), "cursor"),
        ("limit=9999999999999999999999".into(), "limit"),
        ("limit=99999999999999999".into(), "limit"),
        ("limit=-9223372036854775808".into(), "limit"),
        ("limit=0".into(), "limit"),
        ("limit=101".into(), "limit"),
        ("limit=-1".into(), "limit"),
        ("limit=1.5".into(), "limit"),
        ("limit=ten".into(), "limit"),
        ("limit=".into(), "limit"),
        ("limit=%00".into(), "limit"),
        ("cursor=%00%ff".into(), "cursor"),
        ("cursor=".into(), "cursor"),
    ];
    for (query, field) in &cases {
        for (token, path) in [(&acct.access_token, "/tasks"), (&admin.access_token, "/admin/users")] {
            let r = send(&api, Method::GET, &format!("{path}?{query}"), Some(token), None).await;
            let v = r.problem(422, "validation_failed");
            assert!(
                error_fields(&v).iter().any(|(f, _)| f == field),
                "{path}?{}: {}",
                &query[..query.len().min(40)],
                r.body
            );
        }
    }
    for query in [
        format!("completed={long_text}"),
        "completed=yes".into(),
        "completed=%00".into(),
    ] {
        let r = send(
            &api,
            Method::GET,
            &format!("/tasks?{query}"),
            Some(&acct.access_token),
            None,
        )
        .await;
        let v = r.problem(422, "validation_failed");
        assert!(error_fields(&v).iter().any(|(f, _)| f == "completed"), "{}", r.body);
    }
    let r = send(
        &api,
        Method::GET,
        &format!("/admin/users?email={long_text}"),
        Some(&admin.access_token),
        None,
    )
    .await;
    let v = r.problem(422, "validation_failed");
    assert!(error_fields(&v).iter().any(|(f, _)| f == "email"), "{}", r.body);

    // Every problem of a request is reported together.
    let r = send(
        &api,
        Method::GET,
        "/tasks?limit=0&cursor=nope&completed=maybe",
        Some(&acct.access_token),
        None,
    )
    .await;
    let v = r.problem(422, "validation_failed");
    let mut fields: Vec<String> = error_fields(&v).into_iter().map(|(f, _)| f).collect();
    fields.sort();
    assert_eq!(fields, ["completed", "cursor", "limit"], "{}", r.body);

    // Unknown parameters and a long query string in general are not errors.
    let r = send(
        &api,
        Method::GET,
        &format!("/tasks?unknown={}&limit=5", "z".repeat(4_000)),
        Some(&acct.access_token),
        None,
    )
    .await;
    r.expect(200);
}

/// A new account made admin through SQL, logged in again so its token carries the role.
async fn admin_account(api: &TestApi) -> Account {
    let acct = signup_ok(api).await;
    let db = api.sql().await;
    db.execute("UPDATE users SET role = 'admin' WHERE id = $1", &[&acct.user_id])
        .await
        .expect("promote");
    login_ok(api, &acct.email, &acct.password).await
}

#[tokio::test]
async fn over_long_path_ids_are_404() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let admin = admin_account(&api).await;
    let patch_task = json!({ "title": "renamed" });
    let patch_user = json!({ "disabled": true });
    let ids = [
        "a".repeat(5_000),
        "7".repeat(5_000),
        format!("{}{}", Uuid::new_v4(), "0".repeat(4_964)),
        "%ff".repeat(1_700),
        "%00".repeat(1_700),
        "00000000-0000-0000-0000-000000000000".to_owned(),
        Uuid::new_v4().to_string(),
    ];
    for id in &ids {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let body = (method == Method::PATCH).then_some(&patch_task);
            let r = send(
                &api,
                method.clone(),
                &format!("/tasks/{id}"),
                Some(&acct.access_token),
                body,
            )
            .await;
            assert_eq!(r.status, 404, "{method} /tasks/{}...: {}", &id[..20], r.body);
            r.problem(404, "not_found");

            let body = (method == Method::PATCH).then_some(&patch_user);
            let r = send(
                &api,
                method.clone(),
                &format!("/admin/users/{id}"),
                Some(&admin.access_token),
                body,
            )
            .await;
            assert_eq!(r.status, 404, "{method} /admin/users/{}...: {}", &id[..20], r.body);
            r.problem(404, "not_found");
        }
    }
    // An unknown path of 5,000 characters is a 404 too.
    let r = send(&api, Method::GET, &format!("/{}", "p".repeat(5_000)), None, None).await;
    r.problem(404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// 10: task quota
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn task_quota_is_enforced_and_freed_by_deleting() {
    let api = spawn_api_with(config_with(|c| c.task_quota = 3)).await;
    let acct = signup_ok(&api).await;
    let token = acct.access_token.as_str();
    let create = |title: &'static str| {
        let api = &api;
        async move {
            send(
                api,
                Method::POST,
                "/tasks",
                Some(token),
                Some(&json!({ "title": title })),
            )
            .await
        }
    };
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        let task = create(title).await.expect(201);
        ids.push(task["id"].as_str().expect("id").to_owned());
    }
    let r = create("four").await;
    r.problem(409, "task_quota_exceeded");
    assert!(r.header("location").is_none());
    let db = api.sql().await;
    let count = |db: tokio_postgres::Client| async move {
        db.query_one("SELECT count(*) FROM tasks", &[])
            .await
            .expect("count tasks")
            .get::<_, i64>(0)
    };
    assert_eq!(count(db).await, 3, "the refused task was not stored");

    // The quota is per user.
    let other = signup_ok(&api).await;
    send(
        &api,
        Method::POST,
        "/tasks",
        Some(&other.access_token),
        Some(&json!({ "title": "theirs" })),
    )
    .await
    .expect(201);

    // Deleting one makes room for exactly one more.
    send(&api, Method::DELETE, &format!("/tasks/{}", ids[0]), Some(token), None)
        .await
        .expect(204);
    create("four again").await.expect(201);
    create("five").await.problem(409, "task_quota_exceeded");
    assert_eq!(count(api.sql().await).await, 4);
}

// ---------------------------------------------------------------------------------------------
// 11: a seeded random sweep of every route
// ---------------------------------------------------------------------------------------------

/// xorshift64: a tiny deterministic PRNG (no new crates), so a failure replays from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Text of `len` characters: ASCII, controls, NUL, quotes, non-ASCII.
    fn text(&mut self, len: usize) -> String {
        const ODD: &[char] = &[
            '\u{0}', '\u{1}', '\n', '"', '\\', '/', '%', '\u{7f}', 'é', 'ß', 'İ', '\u{200b}', '\u{feff}', '€', '😀',
            '\u{fffd}', '\u{ff21}',
        ];
        (0..len)
            .map(|_| {
                if self.chance(20) {
                    *self.pick(ODD)
                } else {
                    char::from(b' ' + (self.below(95) as u8))
                }
            })
            .collect()
    }

    /// A percent-encoded path segment or query value (always a valid URI component).
    fn uri_component(&mut self, len: usize) -> String {
        const SAFE: &[u8] = b"abcXYZ019-._~!$&'()*+,;=:@";
        (0..len)
            .map(|_| {
                if self.chance(30) {
                    format!("%{:02X}", self.below(256))
                } else {
                    char::from(*self.pick(SAFE)).to_string()
                }
            })
            .collect()
    }

    fn json_value(&mut self, depth: usize) -> Value {
        match self.below(if depth > 3 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64),
            3 => json!((self.next() % 1000) as f64 / 7.0),
            4 => {
                let len = self.below(40);
                json!(self.text(len))
            }
            5 => {
                let len = *self.pick(&[0, 1, 200, 201, 10_001]);
                json!("t".repeat(len))
            }
            6 => Value::Array((0..self.below(4)).map(|_| self.json_value(depth + 1)).collect()),
            _ => self.json_object(depth + 1),
        }
    }

    /// An object with (mostly) the fields the route takes: values of the right type or not, valid
    /// or not.
    fn route_body(&mut self, template: &str) -> Value {
        let fields: &[&str] = match template {
            "/auth/signup" | "/auth/login" => &["email", "password"],
            "/auth/refresh" => &["refresh_token"],
            "/auth/password" => &["current_password", "new_password"],
            "/auth/me" => &["password"],
            "/tasks" | "/tasks/{id}" => &["title", "description", "completed"],
            "/admin/users/{id}" => &["role", "disabled"],
            _ => return self.json_object(0),
        };
        let mut map = serde_json::Map::new();
        for field in fields {
            if self.chance(25) {
                continue;
            }
            let value = match self.below(6) {
                0 => self.json_value(2),
                1 => json!(self.chance(50)),
                2 => json!(*self.pick(&["user", "admin", "root", ""])),
                3 => json!(format!("sweep.{}@example.com", self.next())),
                _ => {
                    let len = *self.pick(&[0, 5, 12, 40, 201, 300]);
                    json!(self.text(len))
                }
            };
            map.insert((*field).to_owned(), value);
        }
        if self.chance(10) {
            map.insert("role".to_owned(), json!("admin"));
        }
        Value::Object(map)
    }

    fn json_object(&mut self, depth: usize) -> Value {
        const FIELDS: &[&str] = &[
            "email",
            "password",
            "refresh_token",
            "title",
            "description",
            "completed",
            "current_password",
            "new_password",
            "role",
            "disabled",
            "id",
            "user_id",
        ];
        let mut map = serde_json::Map::new();
        for _ in 0..self.below(5) {
            let key = if self.chance(85) {
                (*self.pick(FIELDS)).to_owned()
            } else {
                let len = self.below(10);
                self.text(len)
            };
            let value = self.json_value(depth);
            map.insert(key, value);
        }
        Value::Object(map)
    }
}

/// What the sweep sends with: tokens of live accounts, and ids that exist.
struct SweepFixture {
    user: Account,
    admin: Account,
    task_id: Uuid,
}

async fn sweep_fixture(api: &TestApi) -> SweepFixture {
    let user = signup_ok(api).await;
    let task = send(
        api,
        Method::POST,
        "/tasks",
        Some(&user.access_token),
        Some(&json!({ "title": "swept" })),
    )
    .await
    .expect(201);
    let task_id = task["id"].as_str().and_then(|s| s.parse().ok()).expect("task id");
    let admin = admin_account(api).await;
    SweepFixture { user, admin, task_id }
}

#[tokio::test]
async fn random_sweep_never_500s_and_every_error_is_problem_json() {
    const SEED: u64 = 0x5eed_0fa1_17e5_7001;
    const REQUESTS: usize = 200;
    let api = spawn_api_with(test_config()).await;
    // `SWEEP_SEED=<decimal>` replays or explores another sequence.
    let seed = std::env::var("SWEEP_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s != 0)
        .unwrap_or(SEED);
    let mut rng = XorShift(seed);
    let mut fx = sweep_fixture(&api).await;
    let clients: Vec<Client> = (1..=4).map(|i| client_from(loopback(i))).collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();

    const CONTENT_TYPES: &[&str] = &[
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/json;",
        "application/json; charset=latin1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zz",
        "application/jsonp",
        ";;;",
    ];
    const METHODS: &[&str] = &["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "HEAD"];

    for i in 0..REQUESTS {
        // Requests may log out, change roles or disable accounts: start afresh now and then.
        if i % 20 == 19 {
            fx = sweep_fixture(&api).await;
        }
        // A route of the table (mostly with its own method), or a random path.
        let route = rng.pick(access::roles::ROUTES);
        let method = if rng.chance(85) {
            route.method.clone()
        } else {
            Method::from_bytes(rng.pick(METHODS).as_bytes()).expect("method")
        };
        let template = route.path;
        let admin_route = template.starts_with("/admin");

        // The path: the route with a real, random or junk id, or a random path.
        let path = if rng.chance(90) {
            let id = match rng.below(10) {
                0..=3 if admin_route => fx.user.user_id.to_string(),
                0..=3 => fx.task_id.to_string(),
                4 => fx.admin.user_id.to_string(),
                5 => Uuid::new_v4().to_string(),
                6 => Uuid::nil().to_string(),
                7 => {
                    let len = rng.below(5_000) + 1;
                    rng.uri_component(len)
                }
                _ => {
                    let len = rng.below(40) + 1;
                    rng.uri_component(len)
                }
            };
            let mut path = template.replace("{id}", &id);
            if rng.chance(5) {
                path.push('/');
            }
            path
        } else {
            (0..rng.below(4) + 1)
                .map(|_| {
                    let len = rng.below(20);
                    format!("/{}", rng.uri_component(len))
                })
                .collect()
        };
        let path = if rng.chance(30) {
            const KEYS: &[&str] = &["limit", "cursor", "completed", "email", "x", "limit", ""];
            let query: Vec<String> = (0..rng.below(4) + 1)
                .map(|_| {
                    let key = *rng.pick(KEYS);
                    let len = *rng.pick(&[0, 1, 3, 20, 200, 1_000]);
                    let value = match rng.below(4) {
                        0 => rng.pick(&["1", "100", "101", "0", "-1", "true", "false"]).to_string(),
                        _ => rng.uri_component(len),
                    };
                    format!("{key}={value}")
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        } else {
            path
        };

        // Headers.
        let mut headers: Vec<(String, String)> = Vec::new();
        if rng.chance(85) {
            let auth = match rng.below(12) {
                0..=3 if admin_route => format!("Bearer {}", fx.admin.access_token),
                0..=3 => format!("Bearer {}", fx.user.access_token),
                9 => format!("Bearer {}", fx.user.access_token),
                10 | 11 => format!("Bearer {}", fx.admin.access_token),
                4 => format!(
                    "Bearer {}",
                    mint_test_token(&claims(fx.user.user_id, Uuid::new_v4(), "admin", now_secs(), 300))
                ),
                5 => format!(
                    "Bearer {}",
                    mint_test_token(&claims(
                        fx.user.user_id,
                        fx.user.session_id,
                        "user",
                        now_secs() - 4_000,
                        600
                    ))
                ),
                6 => "Bearer ".to_owned() + &"A".repeat(rng.below(10_000) + 1),
                7 => "Basic dXNlcjpwYXNz".to_owned(),
                _ => {
                    let len = rng.below(60);
                    format!("Bearer {}", rng.uri_component(len).replace('%', ""))
                }
            };
            headers.push(("authorization".into(), auth));
        }
        if rng.chance(85) {
            let content_type = if rng.chance(60) {
                "application/json"
            } else {
                *rng.pick(CONTENT_TYPES)
            };
            headers.push(("content-type".into(), content_type.to_owned()));
        }
        if rng.chance(30) {
            let xff = match rng.below(3) {
                0 => "127.0.0.9".to_owned(),
                1 => "1.2.3.4, 10.0.0.1".to_owned(),
                _ => {
                    let len = rng.below(100);
                    rng.uri_component(len)
                }
            };
            headers.push(("x-forwarded-for".into(), xff));
        }
        if rng.chance(10) {
            headers.push(("accept".into(), "text/html".into()));
        }

        // Body.
        let body: Option<Vec<u8>> = match rng.below(12) {
            0 => None,
            1..=3 => Some(serde_json::to_vec(&rng.route_body(template)).expect("serialize")),
            10 | 11 => Some(serde_json::to_vec(&rng.json_object(0)).expect("serialize")),
            4 => Some(serde_json::to_vec(&rng.json_value(0)).expect("serialize")),
            5 => Some((0..rng.below(2_000)).map(|_| rng.next() as u8).collect()),
            6 => {
                let depth = rng.below(20_000);
                Some(if rng.chance(50) {
                    "[".repeat(depth).into_bytes()
                } else {
                    format!("{{\"title\":{}", "{\"a\":".repeat(depth / 5)).into_bytes()
                })
            }
            7 => Some(vec![b' '; 16 * 1024 + rng.below(3)]),
            8 => {
                let len = rng.below(300);
                Some(rng.text(len).into_bytes())
            }
            _ => Some(
                match rng.below(4) {
                    _ if template == "/auth/refresh" => json!({ "refresh_token": fx.user.refresh_token }),
                    0 => json!({ "email": unique_email("sweep"), "password": unique_password() }),
                    1 => json!({ "email": fx.user.email, "password": fx.user.password }),
                    2 => json!({ "title": rng.text(10), "completed": rng.chance(50) }),
                    _ => json!({ "refresh_token": fx.user.refresh_token }),
                }
                .to_string()
                .into_bytes(),
            ),
        };

        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let client = rng.pick(&clients);
        let body_preview = body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned());
        let what = format!(
            "request #{i} (seed {seed}): {method} {} headers {:?} body {body_preview:?}",
            &path[..path.len().min(120)],
            header_refs
                .iter()
                .map(|(k, v)| (*k, &v[..v.len().min(60)]))
                .collect::<Vec<_>>()
        );
        let r = send_from(client, &api, method.clone(), &path, &header_refs, body).await;
        let status = r.status.as_u16();
        *statuses.entry(status).or_default() += 1;

        assert!(status < 500, "{what}\n→ {status}: {}", r.body);
        // The public key set may be cached briefly (functions/jwks); every other answer, and
        // every error, is no-store.
        let jwks = r.status.is_success() && path.starts_with("/.well-known/jwks.json");
        if !jwks {
            assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        }
        if status >= 400 {
            assert_eq!(
                r.header("content-type"),
                Some("application/problem+json"),
                "{what}\n→ {status}: {}",
                r.body
            );
            if method != Method::HEAD {
                let v: Value = serde_json::from_str(&r.body)
                    .unwrap_or_else(|e| panic!("{what}\n→ {status}: body is not JSON ({e}): {}", r.body));
                let code = v["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}\n→ no code: {}", r.body));
                r.problem(status, code);
                assert_eq!(v["type"], json!(format!("{PROBLEM_TYPE_PREFIX}{code}")));
            }
        }
    }
    // The sweep reached past the gateway and the parsers, not only into one kind of refusal.
    let distinct = statuses.len();
    assert!(distinct >= 6, "too few distinct statuses: {statuses:?}");
    eprintln!("random sweep statuses: {statuses:?}");
}
