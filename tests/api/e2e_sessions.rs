//! End to end over HTTP against the local API, real PostgreSQL: sessions and refresh tokens.
//! Rotation, reuse detection (inside and after the grace window), concurrent refreshes, idle and
//! absolute expiry, logout and logout-all, `GET /auth/me`, password change, account deletion and
//! the scheduled clean-up.

use std::sync::Arc;
use std::time::Duration;

use api_tests::{TestApi, spawn_api, spawn_api_with, test_config};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Account, Resp, client, error_fields, get, jwt_parts, login_ok, login_resp, post, post_json, send, send_with,
    signup_ok,
};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// `POST /auth/refresh` with `{refresh_token}`.
async fn refresh(api: &TestApi, refresh_token: &str) -> Resp {
    post_json(api, "/auth/refresh", &json!({ "refresh_token": refresh_token })).await
}

/// A successful refresh: the body shape is checked and `(access_token, refresh_token)` returned.
#[track_caller]
fn assert_refresh_body(r: &Resp, previous_refresh: &str) -> (String, String) {
    let body = r.expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.body);
    let mut keys: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type"],
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 900, "{body}");
    let access = body["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(access.split('.').count(), 3, "{access}");
    let refresh = body["refresh_token"].as_str().expect("refresh_token").to_owned();
    assert!(refresh.len() >= 43, "refresh token too short: {refresh}");
    assert_ne!(refresh, previous_refresh, "refresh must rotate the refresh token");
    (access, refresh)
}

/// Refresh and expect success.
async fn refresh_ok(api: &TestApi, refresh_token: &str) -> (String, String) {
    let r = refresh(api, refresh_token).await;
    assert_refresh_body(&r, refresh_token)
}

/// Bearer `POST` without a body (logout, logout-all).
async fn post_empty(api: &TestApi, token: &str, path: &str) -> Resp {
    send(api, Method::POST, path, Some(token), None).await
}

/// Bearer `DELETE /auth/me` with `{password}`.
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

/// `POST /auth/password`.
async fn change_password(api: &TestApi, token: &str, current: &str, new: &str) -> Resp {
    post(
        api,
        token,
        "/auth/password",
        &json!({ "current_password": current, "new_password": new }),
    )
    .await
}

/// The access token must be refused on the very next data request.
#[track_caller]
fn assert_dead_access(r: &Resp) {
    r.problem(401, "invalid_token");
    let challenge = r.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "a 401 for a sent token says error=\"invalid_token\": {challenge}"
    );
}

/// The access token works on `GET /tasks`.
async fn assert_access_works(api: &TestApi, token: &str) {
    get(api, token, "/tasks").await.expect(200);
}

/// The access token is refused on `GET /tasks` and `GET /auth/me`.
async fn assert_access_refused(api: &TestApi, token: &str) {
    assert_dead_access(&get(api, token, "/tasks").await);
    assert_dead_access(&get(api, token, "/auth/me").await);
}

/// The session id (`sid`) an access token names.
fn sid_of(access_token: &str) -> Uuid {
    let (_, claims) = jwt_parts(access_token);
    claims["sid"].as_str().and_then(|s| s.parse().ok()).expect("sid claim")
}

/// The SHA-256 of a refresh token, as the API stores it.
fn stored_hash(refresh_token: &str) -> Vec<u8> {
    store::users::hash_refresh_token(&SecretString::from(refresh_token.to_owned()))
}

async fn count(db: &tokio_postgres::Client, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
    db.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn exec(db: &tokio_postgres::Client, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> u64 {
    db.execute(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `(revoked_at IS NOT NULL, revoked_reason)` of a session.
async fn session_revocation(db: &tokio_postgres::Client, session: Uuid) -> (bool, Option<String>) {
    let row = db
        .query_one(
            "SELECT revoked_at IS NOT NULL AS revoked, revoked_reason FROM sessions WHERE id = $1",
            &[&session],
        )
        .await
        .expect("session row");
    (row.get("revoked"), row.get("revoked_reason"))
}

/// How many rows of any table hold `needle` anywhere in their text form.
async fn rows_containing(db: &tokio_postgres::Client, needle: &str) -> i64 {
    count(
        db,
        "SELECT (SELECT count(*) FROM users t WHERE strpos(t::text, $1) > 0)
              + (SELECT count(*) FROM sessions t WHERE strpos(t::text, $1) > 0)
              + (SELECT count(*) FROM refresh_tokens t
                  WHERE strpos(t::text, $1) > 0 OR t.token_hash = convert_to($1, 'UTF8'))
              + (SELECT count(*) FROM tasks t WHERE strpos(t::text, $1) > 0)",
        &[&needle],
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. Rotation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_stores_only_hashes() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let db = api.sql().await;

    let (access, new_refresh) = refresh_ok(&api, &acct.refresh_token).await;
    // Same session, same user, a working access token.
    let (_, claims) = jwt_parts(&access);
    assert_eq!(claims["sid"], json!(acct.session_id), "{claims}");
    assert_eq!(claims["sub"], json!(acct.user_id), "{claims}");
    assert_access_works(&api, &access).await;
    let me = get(&api, &access, "/auth/me").await.expect(200);
    assert_eq!(me["id"], json!(acct.user_id));

    // The old token is consumed, the new one is live, both belong to the session.
    let old = db
        .query_one(
            "SELECT session_id, consumed_at IS NOT NULL AS consumed FROM refresh_tokens WHERE token_hash = $1",
            &[&stored_hash(&acct.refresh_token)],
        )
        .await
        .expect("old token row");
    assert_eq!(old.get::<_, Uuid>("session_id"), acct.session_id);
    assert!(old.get::<_, bool>("consumed"), "the presented token must be consumed");
    let new = db
        .query_one(
            "SELECT session_id, consumed_at IS NULL AS live FROM refresh_tokens WHERE token_hash = $1",
            &[&stored_hash(&new_refresh)],
        )
        .await
        .expect("new token row");
    assert_eq!(new.get::<_, Uuid>("session_id"), acct.session_id);
    assert!(new.get::<_, bool>("live"));
    let per_session = count(
        &db,
        "SELECT count(*) FROM refresh_tokens WHERE session_id = $1",
        &[&acct.session_id],
    )
    .await;
    assert_eq!(per_session, 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sessions WHERE id = $1 AND last_refreshed_at > created_at AND revoked_at IS NULL",
            &[&acct.session_id]
        )
        .await,
        1,
        "last_refreshed_at moves on a refresh"
    );

    // Only hashes: SHA-256 of the token (32 bytes), never the token itself, in any column.
    for token in [&acct.refresh_token, &new_refresh] {
        let hashed = count(
            &db,
            "SELECT count(*) FROM refresh_tokens
              WHERE token_hash = sha256(convert_to($1, 'UTF8')) AND octet_length(token_hash) = 32",
            &[token],
        )
        .await;
        assert_eq!(hashed, 1, "the token is stored as its SHA-256");
        assert_eq!(rows_containing(&db, token).await, 0, "plaintext refresh token stored");
    }
    assert_eq!(rows_containing(&db, &access).await, 0, "access token stored");

    // The successor rotates again; the original access token is still good (its session lives).
    let (access2, _) = refresh_ok(&api, &new_refresh).await;
    assert_access_works(&api, &access2).await;
    assert_access_works(&api, &acct.access_token).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Reuse inside the grace window
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reuse_inside_grace_window_is_refused_without_revoking() {
    let api = spawn_api().await;
    assert_eq!(api.state.config.refresh_reuse_grace, Duration::from_secs(10));
    let acct = signup_ok(&api).await;
    let db = api.sql().await;

    let (access, successor) = refresh_ok(&api, &acct.refresh_token).await;
    // A client retrying a lost response: refused, twice, harmlessly.
    for _ in 0..2 {
        refresh(&api, &acct.refresh_token)
            .await
            .problem(401, "invalid_refresh_token");
    }
    assert_eq!(session_revocation(&db, acct.session_id).await, (false, None));
    assert_access_works(&api, &access).await;
    assert_access_works(&api, &acct.access_token).await;

    // The successor still refreshes, and its successor too.
    let (access2, successor2) = refresh_ok(&api, &successor).await;
    assert_access_works(&api, &access2).await;
    refresh(&api, &successor).await.problem(401, "invalid_refresh_token");
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
    refresh_ok(&api, &successor2).await;
    assert_eq!(session_revocation(&db, acct.session_id).await, (false, None));
}

// ---------------------------------------------------------------------------------------------
// 3. Reuse after the grace window
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reuse_after_grace_window_revokes_the_whole_session() {
    let mut config = test_config();
    config.refresh_reuse_grace = Duration::ZERO;
    let api = spawn_api_with(config).await;
    let acct = signup_ok(&api).await;
    // Another session of the same user: reuse detection revokes one session, not the user.
    let other = login_ok(&api, &acct.email, &acct.password).await;
    let db = api.sql().await;

    let (access, newest) = refresh_ok(&api, &acct.refresh_token).await;
    assert_access_works(&api, &access).await;

    // The stolen (rotated) token comes back after the window.
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "refresh_token_reused");
    assert_eq!(
        session_revocation(&db, acct.session_id).await,
        (true, Some("refresh_token_reused".to_owned()))
    );

    // Everything of that session is dead: the newest refresh token and every access token.
    assert_eq!(refresh(&api, &newest).await.status, 401);
    assert_access_refused(&api, &access).await;
    assert_access_refused(&api, &acct.access_token).await;
    // And stays dead.
    assert_eq!(refresh(&api, &acct.refresh_token).await.status, 401);
    assert_eq!(refresh(&api, &newest).await.status, 401);
    assert_eq!(
        session_revocation(&db, acct.session_id).await,
        (true, Some("refresh_token_reused".to_owned()))
    );

    // The user's other session is untouched.
    assert_eq!(session_revocation(&db, other.session_id).await, (false, None));
    assert_access_works(&api, &other.access_token).await;
    refresh_ok(&api, &other.refresh_token).await;
}

/// The newest token of a session revoked by reuse detection was never presented before: it is
/// invalid, not "reused" (whose detail claims it "was already used").
#[tokio::test]
async fn newest_token_of_a_revoked_session_is_invalid_not_reused() {
    let mut config = test_config();
    config.refresh_reuse_grace = Duration::ZERO;
    let api = spawn_api_with(config).await;
    let acct = signup_ok(&api).await;

    let (_, newest) = refresh_ok(&api, &acct.refresh_token).await;
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "refresh_token_reused");
    // First presentation ever of `newest`.
    refresh(&api, &newest).await.problem(401, "invalid_refresh_token");

    // Same after logout: the refresh token of a logged-out session, presented for the first time.
    let other = signup_ok(&api).await;
    post_empty(&api, &other.access_token, "/auth/logout").await.expect(204);
    refresh(&api, &other.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
}

// ---------------------------------------------------------------------------------------------
// 4. Concurrent refreshes of one token
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_refreshes_of_one_token_have_exactly_one_winner() {
    const N: usize = 10;
    let api = Arc::new(spawn_api().await);
    let acct = signup_ok(&api).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut handles = Vec::with_capacity(N);
    for _ in 0..N {
        let api = api.clone();
        let barrier = barrier.clone();
        let token = acct.refresh_token.clone();
        handles.push(tokio::spawn(async move {
            // One client (one connection) each, opened before the release.
            let client = client();
            let warm = send_with(&client, &api, Method::GET, "/warm-up", None, None).await;
            assert_eq!(warm.status, 404);
            barrier.wait().await;
            let body = json!({ "refresh_token": token });
            send_with(&client, &api, Method::POST, "/auth/refresh", None, Some(&body)).await
        }));
    }
    let mut results = Vec::with_capacity(N);
    for h in handles {
        results.push(h.await.expect("refresh task"));
    }

    let statuses: Vec<u16> = results.iter().map(|r| r.status.as_u16()).collect();
    assert!(statuses.iter().all(|s| *s < 500), "no 5xx: {statuses:?}");
    let winners: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one refresh wins: {statuses:?}");
    for r in results.iter().filter(|r| r.status != 200) {
        r.problem(401, "invalid_refresh_token");
    }
    let (access, successor) = assert_refresh_body(winners[0], &acct.refresh_token);
    assert_eq!(sid_of(&access), acct.session_id, "the winner stays in the session");

    let db = api.sql().await;
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE consumed_at IS NULL) AS live, count(*) AS total
               FROM refresh_tokens WHERE session_id = $1",
            &[&acct.session_id],
        )
        .await
        .expect("counts");
    assert_eq!(
        (row.get::<_, i64>("live"), row.get::<_, i64>("total")),
        (1, 2),
        "one successor, no orphans"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = $1 AND consumed_at IS NULL",
            &[&stored_hash(&successor)]
        )
        .await,
        1,
        "the live token is the winner's"
    );
    assert_eq!(session_revocation(&db, acct.session_id).await, (false, None));

    assert_access_works(&api, &access).await;
    let (access2, _) = refresh_ok(&api, &successor).await;
    assert_access_works(&api, &access2).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Bad refresh tokens and bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_garbage_empty_and_huge_refresh_tokens_are_401() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;

    let unknown = store::users::new_refresh_token().expect("random token");
    let unknown = secrecy::ExposeSecret::expose_secret(&unknown).to_owned();
    let candidates = [
        unknown,
        String::new(),
        " ".to_owned(),
        "garbage".to_owned(),
        "not a token at all, with spaces & symbols <>{}".to_owned(),
        "ä€𝄞 unicode".to_owned(),
        "a".repeat(512),
        "a".repeat(513),
        "x".repeat(10 * 1024),
        // An access token is not a refresh token.
        acct.access_token.clone(),
        // Near misses of the real one.
        acct.refresh_token[..acct.refresh_token.len() - 1].to_owned(),
        format!("{}A", acct.refresh_token),
        acct.refresh_token.to_uppercase(),
    ];
    for candidate in &candidates {
        let r = refresh(&api, candidate).await;
        assert_eq!(r.status, 401, "{} chars: {}", candidate.len(), r.body);
        r.problem(401, "invalid_refresh_token");
    }

    // None of that touched the real session.
    let db = api.sql().await;
    assert_eq!(session_revocation(&db, acct.session_id).await, (false, None));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NOT NULL",
            &[]
        )
        .await,
        0
    );
    refresh_ok(&api, &acct.refresh_token).await;
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422_and_consume_nothing() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;

    for (body, field, code) in [
        (json!({ "refresh_token": 5 }), "refresh_token", "invalid_type"),
        (json!({ "refresh_token": null }), "refresh_token", "invalid_type"),
        (
            json!({ "refresh_token": [acct.refresh_token] }),
            "refresh_token",
            "invalid_type",
        ),
        (
            json!({ "refresh_token": { "value": acct.refresh_token } }),
            "refresh_token",
            "invalid_type",
        ),
        (json!({}), "refresh_token", "required"),
    ] {
        let r = post_json(&api, "/auth/refresh", &body).await;
        let problem = r.problem(422, "validation_failed");
        assert_eq!(error_fields(&problem), [(field.to_owned(), code.to_owned())], "{body}");
    }

    // An unknown field is refused before the token is looked at: it stays unconsumed.
    let body = json!({ "refresh_token": acct.refresh_token, "session_id": acct.session_id });
    let r = post_json(&api, "/auth/refresh", &body).await;
    let problem = r.problem(422, "unknown_field");
    assert_eq!(
        error_fields(&problem),
        [("session_id".to_owned(), "unknown_field".to_owned())]
    );

    // Not JSON / not an object.
    let r = send(
        &api,
        Method::POST,
        "/auth/refresh",
        None,
        Some(&Value::String(acct.refresh_token.clone())),
    )
    .await;
    r.problem(422, "validation_failed");

    let db = api.sql().await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NOT NULL",
            &[]
        )
        .await,
        0
    );
    refresh_ok(&api, &acct.refresh_token).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Idle and absolute expiry (rows moved with SQL, no sleeping)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn idle_expired_session_refuses_refresh_and_access() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let survivor = signup_ok(&api).await;
    let db = api.sql().await;

    let n = exec(
        &db,
        "UPDATE sessions SET idle_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&acct.session_id],
    )
    .await;
    assert_eq!(n, 1);
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
    assert_access_refused(&api, &acct.access_token).await;
    // Logout with a dead session is still 204 and changes nothing.
    post_empty(&api, &acct.access_token, "/auth/logout").await.expect(204);

    assert_access_works(&api, &survivor.access_token).await;
    refresh_ok(&api, &survivor.refresh_token).await;
}

#[tokio::test]
async fn absolutely_expired_session_refuses_refresh_and_access() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let db = api.sql().await;

    exec(
        &db,
        "UPDATE sessions SET absolute_expires_at = now() - interval '1 second',
                             idle_expires_at = now() + interval '1 day'
          WHERE id = $1",
        &[&acct.session_id],
    )
    .await;
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
    assert_access_refused(&api, &acct.access_token).await;
}

#[tokio::test]
async fn refresh_slides_idle_expiry_but_never_past_the_absolute_lifetime() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let db = api.sql().await;

    // Sliding: an idle expiry one minute away moves to about now + 7 days.
    exec(
        &db,
        "UPDATE sessions SET idle_expires_at = now() + interval '1 minute' WHERE id = $1",
        &[&acct.session_id],
    )
    .await;
    let (_, token) = refresh_ok(&api, &acct.refresh_token).await;
    let slid = count(
        &db,
        "SELECT count(*) FROM sessions WHERE id = $1
            AND idle_expires_at BETWEEN now() + interval '7 days' - interval '1 minute'
                                    AND now() + interval '7 days' + interval '1 minute'
            AND idle_expires_at <= absolute_expires_at",
        &[&acct.session_id],
    )
    .await;
    assert_eq!(slid, 1, "idle expiry slides to now + SESSION_IDLE_TIMEOUT");

    // Capped: the absolute expiry is 5 s away, the idle one far off.
    exec(
        &db,
        "UPDATE sessions SET absolute_expires_at = now() + interval '5 seconds',
                             idle_expires_at = now() + interval '300 days'
          WHERE id = $1",
        &[&acct.session_id],
    )
    .await;
    let (access, _) = refresh_ok(&api, &token).await;
    let row = db
        .query_one(
            "SELECT idle_expires_at <= absolute_expires_at AS capped,
                    idle_expires_at = absolute_expires_at AS equal,
                    absolute_expires_at < now() + interval '6 seconds' AS unchanged
               FROM sessions WHERE id = $1",
            &[&acct.session_id],
        )
        .await
        .expect("session");
    assert!(row.get::<_, bool>("capped"), "idle expiry past the absolute lifetime");
    assert!(row.get::<_, bool>("equal"), "idle expiry is capped at the absolute one");
    assert!(
        row.get::<_, bool>("unchanged"),
        "a refresh must not extend the absolute lifetime"
    );
    assert_access_works(&api, &access).await;
}

// ---------------------------------------------------------------------------------------------
// 7, 12. Logout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_revokes_only_the_current_session_and_is_idempotent() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let second = login_ok(&api, &acct.email, &acct.password).await;
    assert_ne!(acct.session_id, second.session_id);
    let db = api.sql().await;

    let r = post_empty(&api, &acct.access_token, "/auth/logout").await;
    r.expect(204);
    assert!(r.body.is_empty(), "204 has no body: {}", r.body);
    assert_eq!(
        session_revocation(&db, acct.session_id).await,
        (true, Some("logout".to_owned()))
    );

    assert_access_refused(&api, &acct.access_token).await;
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");

    // Again with the same (now dead) token: 204, nothing changes.
    post_empty(&api, &acct.access_token, "/auth/logout").await.expect(204);
    assert_eq!(
        session_revocation(&db, acct.session_id).await,
        (true, Some("logout".to_owned()))
    );

    // The second session of the same user is unaffected.
    assert_eq!(session_revocation(&db, second.session_id).await, (false, None));
    assert_access_works(&api, &second.access_token).await;
    get(&api, &second.access_token, "/auth/me").await.expect(200);
    let (access, _) = refresh_ok(&api, &second.refresh_token).await;
    assert_access_works(&api, &access).await;
}

#[tokio::test]
async fn old_access_token_fails_right_after_logout() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    assert_access_works(&api, &acct.access_token).await;
    post_empty(&api, &acct.access_token, "/auth/logout").await.expect(204);
    // The very next request, long before the token's `exp`.
    assert_dead_access(&get(&api, &acct.access_token, "/tasks").await);
    assert_dead_access(&get(&api, &acct.access_token, "/auth/me").await);
    let create = post(&api, &acct.access_token, "/tasks", &json!({ "title": "after logout" })).await;
    assert_dead_access(&create);
    let db = api.sql().await;
    assert_eq!(count(&db, "SELECT count(*) FROM tasks", &[]).await, 0);
}

#[tokio::test]
async fn refreshed_access_token_of_a_logged_out_session_fails_too() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let (access, refresh_token) = refresh_ok(&api, &acct.refresh_token).await;
    // Logging out with the original access token ends the session, whichever token named it.
    post_empty(&api, &acct.access_token, "/auth/logout").await.expect(204);
    assert_access_refused(&api, &access).await;
    refresh(&api, &refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
}

// ---------------------------------------------------------------------------------------------
// 8. Logout-all
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user_only() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let a = login_ok(&api, &acct.email, &acct.password).await;
    let b = login_ok(&api, &acct.email, &acct.password).await;
    let stranger = signup_ok(&api).await;
    let db = api.sql().await;

    post_empty(&api, &a.access_token, "/auth/logout-all").await.expect(204);

    for s in [&acct, &a, &b] {
        assert_eq!(
            session_revocation(&db, s.session_id).await,
            (true, Some("logout_all".to_owned()))
        );
        assert_access_refused(&api, &s.access_token).await;
        refresh(&api, &s.refresh_token)
            .await
            .problem(401, "invalid_refresh_token");
    }
    // Repeat, from a dead session and from another one: 204.
    post_empty(&api, &a.access_token, "/auth/logout-all").await.expect(204);
    post_empty(&api, &b.access_token, "/auth/logout-all").await.expect(204);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
            &[&acct.user_id]
        )
        .await,
        0
    );

    // Other users keep their sessions; the user can log in again.
    assert_eq!(session_revocation(&db, stranger.session_id).await, (false, None));
    assert_access_works(&api, &stranger.access_token).await;
    let again = login_ok(&api, &acct.email, &acct.password).await;
    assert_access_works(&api, &again.access_token).await;
}

// ---------------------------------------------------------------------------------------------
// 9. GET /auth/me
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn me_returns_exactly_the_public_user() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let r = get(&api, &acct.access_token, "/auth/me").await;
    let body = r.expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut keys: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "email", "email_verified", "id", "role"], "{body}");
    assert_eq!(body["id"], json!(acct.user_id));
    assert_eq!(body["email"], json!(acct.email));
    assert_eq!(body["role"], "user");
    let created = body["created_at"].as_str().expect("created_at");
    assert!(crate::helpers::is_rfc3339_utc(created), "{created}");
    let lower = r.body.to_lowercase();
    assert!(
        !lower.contains("argon2") && !lower.contains("password") && !lower.contains("disabled"),
        "{}",
        r.body
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Password change
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn password_change_checks_current_and_policy_then_revokes_other_sessions() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let other = login_ok(&api, &acct.email, &acct.password).await;
    let db = api.sql().await;
    let new_password = format!("new-{}", Uuid::new_v4().simple());

    // Wrong current password: 401, nothing changes.
    change_password(&api, &acct.access_token, "not-the-password-1", &new_password)
        .await
        .problem(401, "invalid_credentials");
    assert_access_works(&api, &other.access_token).await;

    // Weak new passwords: 422 naming new_password.
    for (weak, code) in [
        ("password123".to_owned(), "password_too_common"),
        ("Password123".to_owned(), "password_too_common"),
        ("short1".to_owned(), "password_too_short"),
        (acct.email.clone(), "password_equals_email"),
        (acct.email.to_uppercase(), "password_equals_email"),
    ] {
        let r = change_password(&api, &acct.access_token, &acct.password, &weak).await;
        let problem = r.problem(422, "validation_failed");
        assert_eq!(
            error_fields(&problem),
            [("new_password".to_owned(), code.to_owned())],
            "{weak}: {}",
            r.body
        );
    }
    // Bad bodies.
    let r = post(
        &api,
        &acct.access_token,
        "/auth/password",
        &json!({ "current_password": acct.password, "new_password": new_password, "email": "x@example.com" }),
    )
    .await;
    r.problem(422, "unknown_field");
    let r = post(
        &api,
        &acct.access_token,
        "/auth/password",
        &json!({ "current_password": acct.password }),
    )
    .await;
    let problem = r.problem(422, "validation_failed");
    assert_eq!(
        error_fields(&problem),
        [("new_password".to_owned(), "required".to_owned())]
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
            &[&acct.user_id]
        )
        .await,
        2,
        "failed attempts revoke nothing"
    );

    // Success.
    let r = change_password(&api, &acct.access_token, &acct.password, &new_password).await;
    r.expect(204);
    assert!(r.body.is_empty());

    // Every other session is gone at once.
    assert_eq!(
        session_revocation(&db, other.session_id).await,
        (true, Some("password_changed".to_owned()))
    );
    assert_access_refused(&api, &other.access_token).await;
    refresh(&api, &other.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");

    // The current session keeps working, refresh included.
    assert_eq!(session_revocation(&db, acct.session_id).await, (false, None));
    assert_access_works(&api, &acct.access_token).await;
    let (access, _) = refresh_ok(&api, &acct.refresh_token).await;
    assert_access_works(&api, &access).await;

    // Old password: no; new password: yes.
    login_resp(&api, &acct.email, &acct.password)
        .await
        .problem(401, "invalid_credentials");
    let fresh = login_ok(&api, &acct.email, &new_password).await;
    assert_access_works(&api, &fresh.access_token).await;
    // The stored hash is an argon2id hash, not the password.
    let stored: String = db
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&acct.user_id])
        .await
        .expect("user")
        .get(0);
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(&new_password));
}

// ---------------------------------------------------------------------------------------------
// 11. Account deletion
// ---------------------------------------------------------------------------------------------

async fn rows_of_user(db: &tokio_postgres::Client, user: Uuid, sessions: &[Uuid]) -> [i64; 4] {
    let sessions = sessions.to_vec();
    [
        count(db, "SELECT count(*) FROM users WHERE id = $1", &[&user]).await,
        count(db, "SELECT count(*) FROM sessions WHERE user_id = $1", &[&user]).await,
        count(
            db,
            "SELECT count(*) FROM refresh_tokens WHERE session_id = ANY($1)",
            &[&sessions],
        )
        .await,
        count(db, "SELECT count(*) FROM tasks WHERE user_id = $1", &[&user]).await,
    ]
}

#[tokio::test]
async fn delete_account_needs_the_password_and_removes_everything() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let other_session = login_ok(&api, &acct.email, &acct.password).await;
    let stranger = signup_ok(&api).await;
    for title in ["one", "two", "three"] {
        post(&api, &acct.access_token, "/tasks", &json!({ "title": title }))
            .await
            .expect(201);
    }
    post(&api, &stranger.access_token, "/tasks", &json!({ "title": "kept" }))
        .await
        .expect(201);
    refresh_ok(&api, &other_session.refresh_token).await;
    let db = api.sql().await;
    let sessions = [acct.session_id, other_session.session_id];
    assert_eq!(rows_of_user(&db, acct.user_id, &sessions).await, [1, 2, 3, 3]);

    // Wrong password: 401, nothing deleted.
    delete_me(&api, &acct.access_token, "wrong-password-123")
        .await
        .problem(401, "invalid_credentials");
    assert_eq!(rows_of_user(&db, acct.user_id, &sessions).await, [1, 2, 3, 3]);
    assert_access_works(&api, &acct.access_token).await;
    // Missing body / unknown field: 422, nothing deleted.
    send(
        &api,
        Method::DELETE,
        "/auth/me",
        Some(&acct.access_token),
        Some(&json!({})),
    )
    .await
    .problem(422, "validation_failed");
    send(
        &api,
        Method::DELETE,
        "/auth/me",
        Some(&acct.access_token),
        Some(&json!({ "password": acct.password, "user_id": stranger.user_id })),
    )
    .await
    .problem(422, "unknown_field");
    assert_eq!(rows_of_user(&db, acct.user_id, &sessions).await, [1, 2, 3, 3]);

    // Right password.
    let r = delete_me(&api, &acct.access_token, &acct.password).await;
    r.expect(204);
    assert!(r.body.is_empty());
    assert_eq!(rows_of_user(&db, acct.user_id, &sessions).await, [0, 0, 0, 0]);

    assert_access_refused(&api, &acct.access_token).await;
    assert_access_refused(&api, &other_session.access_token).await;
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
    login_resp(&api, &acct.email, &acct.password)
        .await
        .problem(401, "invalid_credentials");
    // Deleting again with the dead token: 401, not a 5xx.
    delete_me(&api, &acct.access_token, &acct.password)
        .await
        .problem(401, "invalid_token");

    // The stranger is untouched.
    assert_eq!(
        rows_of_user(&db, stranger.user_id, &[stranger.session_id]).await,
        [1, 1, 1, 1]
    );
    assert_access_works(&api, &stranger.access_token).await;
}

// ---------------------------------------------------------------------------------------------
// 13. Scheduled clean-up
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cleanup_deletes_dead_sessions_in_batches_and_keeps_consumed_tokens_of_live_ones() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let mut sessions: Vec<Account> = vec![acct.clone()];
    for _ in 0..6 {
        sessions.push(login_ok(&api, &acct.email, &acct.password).await);
    }
    let db = api.sql().await;

    // Live session 0: rotated 6 times (6 consumed tokens, 1 live), consumed an hour ago.
    let mut token = sessions[0].refresh_token.clone();
    for _ in 0..6 {
        token = refresh_ok(&api, &token).await.1;
    }
    exec(
        &db,
        "UPDATE refresh_tokens SET consumed_at = now() - interval '1 hour'
          WHERE session_id = $1 AND consumed_at IS NOT NULL",
        &[&sessions[0].session_id],
    )
    .await;
    // Live session 1: untouched. Dead: 2..=4 revoked, 5 idle-expired, 6 absolutely expired (their
    // unconsumed tokens go with them, by cascade, uncounted).
    let ids = |range: std::ops::Range<usize>| -> Vec<Uuid> { sessions[range].iter().map(|s| s.session_id).collect() };
    exec(
        &db,
        "UPDATE sessions SET revoked_at = now() - interval '1 hour', revoked_reason = 'logout' WHERE id = ANY($1)",
        &[&ids(2..5)],
    )
    .await;
    exec(
        &db,
        "UPDATE sessions SET idle_expires_at = now() - interval '1 hour' WHERE id = $1",
        &[&sessions[5].session_id],
    )
    .await;
    exec(
        &db,
        "UPDATE sessions SET absolute_expires_at = now() - interval '1 hour',
                             idle_expires_at = now() - interval '1 hour'
          WHERE id = $1",
        &[&sessions[6].session_id],
    )
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM sessions", &[]).await, 7);
    // 7 initial + 6 rotations.
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens", &[]).await, 13);

    // One batch of 2 per kind, then stop (max_batches bounds the run).
    let report = cleanup::run(
        &api.state.pool,
        &api.state.config.db,
        cleanup::CleanupSettings {
            batch_size: 2,
            max_batches: 1,
            retention: Duration::ZERO,
            ..cleanup::CleanupSettings::default()
        },
    )
    .await
    .expect("clean-up");
    assert_eq!(report.sessions_deleted, 2);

    // The rest, in several batches of 2.
    let report = cleanup::run(
        &api.state.pool,
        &api.state.config.db,
        cleanup::CleanupSettings {
            batch_size: 2,
            max_batches: 100,
            retention: Duration::ZERO,
            ..cleanup::CleanupSettings::default()
        },
    )
    .await
    .expect("clean-up");
    assert_eq!(
        report.sessions_deleted, 3,
        "the remaining dead sessions (batches 2 + 1)"
    );

    // Nothing left to do.
    let report = cleanup::run(
        &api.state.pool,
        &api.state.config.db,
        cleanup::CleanupSettings {
            batch_size: 2,
            max_batches: 100,
            retention: Duration::ZERO,
            ..cleanup::CleanupSettings::default()
        },
    )
    .await
    .expect("clean-up");
    assert_eq!(report.sessions_deleted, 0);

    // Left: the two live sessions, their unconsumed tokens, and every consumed token of the live
    // session 0 (kept as long as the session, for reuse detection).
    let left: Vec<Uuid> = db
        .query("SELECT id FROM sessions ORDER BY id", &[])
        .await
        .expect("sessions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut live = ids(0..2);
    live.sort();
    assert_eq!(left, live);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NULL",
            &[]
        )
        .await,
        2
    );
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens", &[]).await, 8);
    assert_eq!(count(&db, "SELECT count(*) FROM users", &[]).await, 1);

    // Both survivors still work.
    assert_access_works(&api, &sessions[1].access_token).await;
    refresh_ok(&api, &token).await;
    refresh_ok(&api, &sessions[1].refresh_token).await;
    // And a replay of session 0's first token, consumed an hour ago, still revokes it.
    refresh(&api, &sessions[0].refresh_token)
        .await
        .problem(401, "refresh_token_reused");
    assert_eq!(
        session_revocation(&db, sessions[0].session_id).await,
        (true, Some("refresh_token_reused".to_owned()))
    );
}

#[tokio::test]
async fn cleanup_keeps_recent_dead_rows_within_retention() {
    let api = spawn_api().await;
    let acct = signup_ok(&api).await;
    let (_, token) = refresh_ok(&api, &acct.refresh_token).await;
    let dead = login_ok(&api, &acct.email, &acct.password).await;
    post_empty(&api, &dead.access_token, "/auth/logout").await.expect(204);
    let db = api.sql().await;

    let report = cleanup::run(
        &api.state.pool,
        &api.state.config.db,
        cleanup::CleanupSettings {
            batch_size: 2,
            max_batches: 100,
            retention: Duration::from_secs(3600),
            ..cleanup::CleanupSettings::default()
        },
    )
    .await
    .expect("clean-up");
    assert_eq!(report.sessions_deleted, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM sessions", &[]).await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens", &[]).await, 3);
    // A replay of the recently consumed token is still recognised (inside the grace window here).
    refresh(&api, &acct.refresh_token)
        .await
        .problem(401, "invalid_refresh_token");
    refresh_ok(&api, &token).await;
}
