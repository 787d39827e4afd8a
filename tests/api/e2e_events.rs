//! Sessions a user can see and end, and the security event log (issue 18), end to end over HTTP
//! against the local API on real PostgreSQL.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use api_tests::{TestApi, spawn_api_with, test_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use settings::Limit;
use uuid::Uuid;

use crate::e2e_recovery::{mail_api, nth_mail, token_of};
use crate::helpers::{
    Account, client_from, delete, error_fields, get, is_rfc3339_utc, login_ok, login_resp, patch, post, post_json,
    send_raw, send_with, signup_ok, signup_resp, unique_email, unique_password,
};

/// Every event type of the given user, through the admin listing (newest first).
async fn types_of(api: &TestApi, admin: &Account, user: Uuid) -> Vec<String> {
    let body = get(
        api,
        &admin.access_token,
        &format!("/admin/events?user_id={user}&limit=100"),
    )
    .await
    .expect(200);
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

/// Rows of `security_events` (all of them, every column).
async fn event_count(api: &TestApi) -> i64 {
    let db = api.sql().await;
    db.query_one("SELECT count(*) FROM security_events", &[])
        .await
        .expect("count")
        .get(0)
}

/// A new account made an admin in the database, with a fresh login (its token carries `admin`).
async fn admin_account(api: &TestApi) -> Account {
    let account = signup_ok(api).await;
    let db = api.sql().await;
    db.execute("UPDATE users SET role = 'admin' WHERE id = $1", &[&account.user_id])
        .await
        .expect("grant admin");
    login_ok(api, &account.email, &account.password).await
}

async fn login_with(api: &TestApi, ip: [u8; 4], user_agent: &str, acct: &Account) -> Account {
    let body = json!({ "email": acct.email, "password": acct.password });
    let r = send_with(
        &client_with_agent(IpAddr::V4(Ipv4Addr::from(ip)), user_agent),
        api,
        Method::POST,
        "/auth/login",
        None,
        Some(&body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    login_token_account(acct, &r.json())
}

fn client_with_agent(ip: IpAddr, user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip)
        .user_agent(user_agent)
        .build()
        .expect("client")
}

fn login_token_account(acct: &Account, body: &Value) -> Account {
    let access_token = body["access_token"].as_str().expect("access_token").to_owned();
    let (_, claims) = crate::helpers::jwt_parts(&access_token);
    Account {
        session_id: claims["sid"].as_str().and_then(|s| s.parse().ok()).expect("sid"),
        access_token,
        refresh_token: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
        ..acct.clone()
    }
}

#[tokio::test]
async fn the_session_list_shows_live_sessions_where_they_were_opened_and_which_is_current() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let long_agent = format!("Browser/1.0 {}", "x".repeat(400));
    let second = login_with(&api, [127, 0, 0, 2], &long_agent, &acct).await;
    let third = login_with(&api, [127, 0, 0, 3], "Phone/2", &acct).await;
    // An ended session is not listed.
    post(&api, &third.access_token, "/auth/logout", &json!({})).await;

    let body = get(&api, &second.access_token, "/auth/sessions").await.expect(200);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{body}");
    let by_id = |id: Uuid| {
        items
            .iter()
            .find(|s| s["id"] == id.to_string())
            .unwrap_or_else(|| panic!("session {id} missing from {body}"))
    };
    let mine = by_id(second.session_id);
    assert_eq!(mine["current"], true);
    assert_eq!(mine["ip"], "127.0.0.2");
    let agent = mine["user_agent"].as_str().expect("user_agent");
    assert_eq!(agent.chars().count(), 256, "cut to 256 characters");
    assert!(long_agent.starts_with(agent));
    assert_eq!(mine["mfa"], false);
    for field in ["created_at", "last_used_at"] {
        assert!(is_rfc3339_utc(mine[field].as_str().expect(field)), "{field}: {mine}");
    }
    let first = by_id(acct.session_id);
    assert_eq!(first["current"], false);
    assert_eq!(first["ip"], "127.0.0.1");
    let keys: HashSet<&str> = mine.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from(["id", "created_at", "last_used_at", "ip", "user_agent", "mfa", "current"])
    );
    // A forwarded header is never the address.
    let r = send_raw(
        &api,
        Method::POST,
        "/auth/login",
        &[("content-type", "application/json"), ("x-forwarded-for", "203.0.113.9")],
        Some(serde_json::to_vec(&json!({ "email": acct.email, "password": acct.password })).expect("json")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = get(&api, &second.access_token, "/auth/sessions").await.expect(200);
    assert!(!body.to_string().contains("203.0.113.9"), "{body}");
}

#[tokio::test]
async fn ending_a_session_kills_its_tokens_and_a_foreign_or_random_id_is_404() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let other_device = login_ok(&api, &acct.email, &acct.password).await;
    let stranger = signup_ok(&api).await;

    // Another user's session, a random id and no UUID: the same 404, nothing changes.
    let before = event_count(&api).await;
    for id in [
        stranger.session_id.to_string(),
        Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
    ] {
        delete(&api, &acct.access_token, &format!("/auth/sessions/{id}"))
            .await
            .problem(404, "not_found");
    }
    assert_eq!(event_count(&api).await, before, "a refused end records nothing");
    get(&api, &stranger.access_token, "/tasks").await.expect(200);

    delete(
        &api,
        &acct.access_token,
        &format!("/auth/sessions/{}", other_device.session_id),
    )
    .await
    .expect(204);
    // Its access token is refused on the next data request, its refresh token is dead.
    let r = get(&api, &other_device.access_token, "/tasks").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post_json(
        &api,
        "/auth/refresh",
        &json!({ "refresh_token": other_device.refresh_token }),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Ended once: a second time is 404; the caller's own session lives on.
    delete(
        &api,
        &acct.access_token,
        &format!("/auth/sessions/{}", other_device.session_id),
    )
    .await
    .problem(404, "not_found");
    let body = get(&api, &acct.access_token, "/auth/sessions").await.expect(200);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");

    let events = get(&api, &acct.access_token, "/auth/events").await.expect(200);
    let revoked: Vec<&Value> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["type"] == "session_revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{events}");
    assert_eq!(revoked[0]["session_id"], other_device.session_id.to_string());
    assert_eq!(revoked[0]["actor_id"], acct.user_id.to_string());

    // Ending the caller's own session works like logout.
    delete(&api, &acct.access_token, &format!("/auth/sessions/{}", acct.session_id))
        .await
        .expect(204);
    assert_eq!(
        get(&api, &acct.access_token, "/tasks").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn last_used(api: &TestApi, session: Uuid) -> time::OffsetDateTime {
    let db = api.sql().await;
    db.query_one("SELECT last_used_at FROM sessions WHERE id = $1", &[&session])
        .await
        .expect("session")
        .get(0)
}

async fn age_last_used(api: &TestApi, session: Uuid) {
    let db = api.sql().await;
    db.execute(
        "UPDATE sessions SET last_used_at = now() - interval '2 minutes' WHERE id = $1",
        &[&session],
    )
    .await
    .expect("age");
}

#[tokio::test]
async fn last_used_moves_on_data_requests_at_most_once_a_minute_and_can_be_turned_off() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    age_last_used(&api, acct.session_id).await;
    let aged = last_used(&api, acct.session_id).await;
    get(&api, &acct.access_token, "/tasks").await.expect(200);
    let touched = last_used(&api, acct.session_id).await;
    assert!(touched > aged + time::Duration::seconds(90), "{aged} -> {touched}");
    // Within the minute: not again.
    get(&api, &acct.access_token, "/tasks").await.expect(200);
    get(&api, &acct.access_token, "/auth/me").await.expect(200);
    assert_eq!(last_used(&api, acct.session_id).await, touched);
    // A refresh moves it too (once a minute).
    age_last_used(&api, acct.session_id).await;
    let aged = last_used(&api, acct.session_id).await;
    post_json(&api, "/auth/refresh", &json!({ "refresh_token": acct.refresh_token }))
        .await
        .expect(200);
    assert!(last_used(&api, acct.session_id).await > aged + time::Duration::seconds(90));

    let mut config = test_config();
    config.db.track_last_used = false;
    let api = spawn_api_with(config).await;
    let acct = signup_ok(&api).await;
    age_last_used(&api, acct.session_id).await;
    let aged = last_used(&api, acct.session_id).await;
    get(&api, &acct.access_token, "/tasks").await.expect(200);
    assert_eq!(last_used(&api, acct.session_id).await, aged, "tracking off");
}

/// The process sends the `last_used_at` update with one request a minute per session; the
/// others are read-only. Aging the row again right after the first update shows it: the next
/// data request within the minute leaves the row alone (the old code sent the update with every
/// request and moved it again).
#[tokio::test]
async fn data_requests_within_the_minute_do_not_send_the_last_used_update() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    age_last_used(&api, acct.session_id).await;
    get(&api, &acct.access_token, "/tasks").await.expect(200);
    let touched = last_used(&api, acct.session_id).await;
    age_last_used(&api, acct.session_id).await;
    let aged = last_used(&api, acct.session_id).await;
    assert!(aged < touched);
    for path in ["/tasks", "/auth/me", "/tasks"] {
        get(&api, &acct.access_token, path).await.expect(200);
    }
    assert_eq!(
        last_used(&api, acct.session_id).await,
        aged,
        "no update sent within the minute"
    );
    // Another session of the same user is due on its own first request.
    let other = login_ok(&api, &acct.email, &acct.password).await;
    age_last_used(&api, other.session_id).await;
    let other_aged = last_used(&api, other.session_id).await;
    get(&api, &other.access_token, "/tasks").await.expect(200);
    assert!(last_used(&api, other.session_id).await > other_aged);
}

/// A reset proves the mailbox, so it verifies the address (issue 16); that change is recorded as
/// `email_verified` in the same transaction, before `password_reset`. A reset of an address that
/// was already verified records no second `email_verified`.
#[tokio::test]
async fn a_reset_that_verifies_the_address_records_email_verified() {
    let (api, mailer) = mail_api(test_config()).await;
    let admin = admin_account(&api).await;
    let acct = signup_ok(&api).await;
    let reset_once = async |n: usize| {
        post_json(&api, "/auth/password/forgot", &json!({ "email": acct.email }))
            .await
            .expect(202);
        let token = token_of(&nth_mail(&mailer, &acct.email, mail::Purpose::PasswordReset, n).await);
        post_json(
            &api,
            "/auth/password/reset",
            &json!({ "token": token, "new_password": unique_password() }),
        )
        .await
        .expect(204);
    };
    reset_once(1).await;
    let types = types_of(&api, &admin, acct.user_id).await;
    assert_eq!(
        types.iter().take(2).map(String::as_str).collect::<Vec<_>>(),
        ["password_reset", "email_verified"],
        "{types:?}"
    );
    reset_once(2).await;
    let types = types_of(&api, &admin, acct.user_id).await;
    assert_eq!(types.first().map(String::as_str), Some("password_reset"), "{types:?}");
    assert_eq!(
        types.iter().filter(|t| *t == "email_verified").count(),
        1,
        "already verified: no second event: {types:?}"
    );
}

/// The whole life of an account, each action followed by its event; then the table holds none
/// of the run's secrets.
#[tokio::test]
async fn every_event_type_follows_its_action_and_the_table_holds_no_secret() {
    let mut config = test_config();
    config.refresh_reuse_grace = Duration::ZERO;
    config.rate_limits.login_failures_per_account.max = 3;
    let (api, mailer) = mail_api(config).await;
    let mut secrets: Vec<String> = Vec::new();
    let admin = admin_account(&api).await;
    secrets.extend([
        admin.password.clone(),
        admin.access_token.clone(),
        admin.refresh_token.clone(),
    ]);

    let acct = signup_ok(&api).await;
    secrets.extend([
        acct.password.clone(),
        acct.access_token.clone(),
        acct.refresh_token.clone(),
    ]);
    let user = acct.user_id;
    let expect_latest = async |kind: &str| {
        let types = types_of(&api, &admin, user).await;
        assert_eq!(types.first().map(String::as_str), Some(kind), "after {kind}: {types:?}");
    };
    expect_latest("signup").await;

    let verification = token_of(&nth_mail(&mailer, &acct.email, mail::Purpose::EmailVerification, 1).await);
    secrets.push(verification.clone());
    post_json(&api, "/auth/email/verify", &json!({ "token": verification }))
        .await
        .expect(204);
    expect_latest("email_verified").await;

    let s2 = login_ok(&api, &acct.email, &acct.password).await;
    secrets.extend([s2.access_token.clone(), s2.refresh_token.clone()]);
    expect_latest("login_succeeded").await;

    let wrong = unique_password();
    secrets.push(wrong.clone());
    assert_eq!(
        login_resp(&api, &acct.email, &wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    expect_latest("login_failed").await;

    // Refresh, then the rotated token again (no grace): reuse, the session is revoked.
    let rotated = post_json(&api, "/auth/refresh", &json!({ "refresh_token": s2.refresh_token }))
        .await
        .expect(200);
    secrets.extend([
        rotated["access_token"].as_str().expect("access").to_owned(),
        rotated["refresh_token"].as_str().expect("refresh").to_owned(),
    ]);
    post_json(&api, "/auth/refresh", &json!({ "refresh_token": s2.refresh_token }))
        .await
        .problem(401, "refresh_token_reused");
    expect_latest("refresh_reuse_detected").await;

    let s3 = login_ok(&api, &acct.email, &acct.password).await;
    let s4 = login_ok(&api, &acct.email, &acct.password).await;
    secrets.extend([
        s3.access_token.clone(),
        s4.access_token.clone(),
        s3.refresh_token.clone(),
        s4.refresh_token.clone(),
    ]);
    delete(&api, &s3.access_token, &format!("/auth/sessions/{}", s4.session_id))
        .await
        .expect(204);
    expect_latest("session_revoked").await;
    post(&api, &s3.access_token, "/auth/logout", &json!({}))
        .await
        .expect(204);
    expect_latest("logout").await;
    let s5 = login_ok(&api, &acct.email, &acct.password).await;
    secrets.extend([s5.access_token.clone(), s5.refresh_token.clone()]);
    post(&api, &s5.access_token, "/auth/logout-all", &json!({}))
        .await
        .expect(204);
    expect_latest("logout_all").await;

    let s6 = login_ok(&api, &acct.email, &acct.password).await;
    secrets.extend([s6.access_token.clone(), s6.refresh_token.clone()]);
    let changed = unique_password();
    secrets.push(changed.clone());
    post(
        &api,
        &s6.access_token,
        "/auth/password",
        &json!({ "current_password": acct.password, "new_password": changed }),
    )
    .await
    .expect(204);
    expect_latest("password_changed").await;

    post_json(&api, "/auth/password/forgot", &json!({ "email": acct.email }))
        .await
        .expect(202);
    let reset_token = token_of(&nth_mail(&mailer, &acct.email, mail::Purpose::PasswordReset, 1).await);
    secrets.push(reset_token.clone());
    let before_unknown = event_count(&api).await;
    post_json(
        &api,
        "/auth/password/forgot",
        &json!({ "email": unique_email("nobody") }),
    )
    .await
    .expect(202);
    // An unknown email is recorded too, without a user, so that forgot-password does the same
    // work for every email (the answer and its timing must not tell them apart).
    assert_eq!(
        event_count(&api).await,
        before_unknown + 1,
        "one event, without a user, for an unknown email"
    );
    let db = api.sql().await;
    let anonymous: i64 = db
        .query_one(
            "SELECT count(*) FROM security_events WHERE type = 'password_reset_requested' AND user_id IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(anonymous, 1);
    let types = types_of(&api, &admin, user).await;
    assert!(types.contains(&"password_reset_requested".to_owned()), "{types:?}");
    let after_reset = unique_password();
    secrets.push(after_reset.clone());
    post_json(
        &api,
        "/auth/password/reset",
        &json!({ "token": reset_token, "new_password": after_reset }),
    )
    .await
    .expect(204);
    expect_latest("password_reset").await;

    // Throttled: the account's failure budget (3) is spent, the fourth attempt is refused.
    for _ in 0..3 {
        assert_eq!(
            login_resp(&api, &acct.email, &wrong).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_resp(&api, &acct.email, &wrong).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    expect_latest("login_throttled").await;

    let path = format!("/admin/users/{user}");
    patch(&api, &admin.access_token, &path, &json!({ "role": "admin" }))
        .await
        .expect(200);
    expect_latest("role_changed").await;
    patch(&api, &admin.access_token, &path, &json!({ "disabled": true }))
        .await
        .expect(200);
    expect_latest("user_disabled").await;
    patch(&api, &admin.access_token, &path, &json!({ "disabled": false }))
        .await
        .expect(200);
    expect_latest("user_enabled").await;
    delete(&api, &admin.access_token, &path).await.expect(204);
    expect_latest("user_deleted").await;

    // Who acted: the user itself, an admin, or nobody (an anonymous attempt).
    let body = get(
        &api,
        &admin.access_token,
        &format!("/admin/events?user_id={user}&limit=100"),
    )
    .await
    .expect(200);
    for event in body["items"].as_array().expect("items") {
        let expected_actor = match event["type"].as_str().expect("type") {
            "role_changed" | "user_disabled" | "user_enabled" | "user_deleted" => json!(admin.user_id),
            "login_failed" | "login_throttled" | "refresh_reuse_detected" | "password_reset_requested" => Value::Null,
            _ => json!(user),
        };
        assert_eq!(event["actor_id"], expected_actor, "{event}");
        assert_eq!(event["user_id"], json!(user), "{event}");
    }
    let seen: HashSet<String> = types_of(&api, &admin, user).await.into_iter().collect();
    for kind in [
        "signup",
        "login_succeeded",
        "login_failed",
        "login_throttled",
        "refresh_reuse_detected",
        "logout",
        "logout_all",
        "session_revoked",
        "password_changed",
        "password_reset_requested",
        "password_reset",
        "email_verified",
        "role_changed",
        "user_disabled",
        "user_enabled",
        "user_deleted",
    ] {
        assert!(seen.contains(kind), "{kind} missing: {seen:?}");
    }

    // The table, every column of every row, holds none of the run's secrets.
    let db = api.sql().await;
    let rows = db
        .query("SELECT row_to_json(e)::text FROM security_events e", &[])
        .await
        .expect("dump");
    let dump: String = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(rows.len() >= 16, "{dump}");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "a secret is in the event table");
    }
    for word in ["argon2", "$argon", "password_hash"] {
        assert!(!dump.contains(word), "{word} in the event table");
    }
}

#[tokio::test]
async fn refused_actions_record_nothing_but_bounded_failures() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let stranger = signup_ok(&api).await;
    let before = event_count(&api).await;

    // Refusals that change nothing and are no login: no event.
    post(
        &api,
        &acct.access_token,
        "/auth/password",
        &json!({ "current_password": "wrong-password-1", "new_password": unique_password() }),
    )
    .await
    .problem(401, "invalid_credentials");
    post_json(
        &api,
        "/auth/password/reset",
        &json!({ "token": "no-such-token", "new_password": unique_password() }),
    )
    .await
    .problem(400, "invalid_reset_token");
    post_json(&api, "/auth/email/verify", &json!({ "token": "no-such-token" }))
        .await
        .problem(400, "invalid_verification_token");
    delete(
        &api,
        &acct.access_token,
        &format!("/auth/sessions/{}", stranger.session_id),
    )
    .await
    .problem(404, "not_found");
    let r = post_json(&api, "/auth/refresh", &json!({ "refresh_token": "not-a-token" })).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    get(&api, &acct.access_token, "/admin/events")
        .await
        .problem(403, "forbidden");
    assert_eq!(event_count(&api).await, before, "no event for a refusal");

    // Failed logins: one row per account (none for an unknown email), address and minute, counting.
    for _ in 0..5 {
        assert_eq!(
            login_resp(&api, &acct.email, "wrong-password-2").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let unknown = unique_email("nobody");
    for _ in 0..3 {
        assert_eq!(
            login_resp(&api, &unknown, "wrong-password-3").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // From another address: a row of its own.
    let other = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let r = send_with(
        &other,
        &api,
        Method::POST,
        "/auth/login",
        None,
        Some(&json!({ "email": acct.email, "password": "wrong-password-2" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let db = api.sql().await;
    let rows = db
        .query(
            "SELECT user_id, ip, count FROM security_events WHERE type = 'login_failed' ORDER BY count DESC",
            &[],
        )
        .await
        .expect("rows");
    let rows: Vec<(Option<Uuid>, Option<String>, i32)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        rows,
        vec![
            (Some(acct.user_id), Some("127.0.0.1".to_owned()), 5),
            (None, Some("127.0.0.1".to_owned()), 3),
            (Some(acct.user_id), Some("127.0.0.2".to_owned()), 1),
        ]
    );
    assert_eq!(event_count(&api).await, before + 3);
}

/// The rows of the bounded failure types (`login_failed`, `login_throttled`) and their counts.
async fn bounded_rows(api: &TestApi) -> Vec<(String, Option<Uuid>, i32)> {
    let db = api.sql().await;
    db.query(
        "SELECT type, user_id, count FROM security_events
          WHERE type IN ('login_failed', 'login_throttled') ORDER BY type, created_at",
        &[],
    )
    .await
    .expect("rows")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// An attacker chooses the email it types: a new email per request must not make a new row.
/// From one address, 200 logins with 200 different unknown emails (the address over its limit
/// after the first 50) leave one row per type and minute, not one per email; and once the
/// address is over its limit, typing a real account's email does not make the refusal that
/// account's (it never counted against it).
#[tokio::test]
async fn random_emails_from_one_address_cannot_multiply_the_bounded_rows() {
    let mut config = test_config();
    config.rate_limits.login_attempts_per_ip = Limit {
        max: 50,
        window: Duration::from_secs(600),
    };
    let api = spawn_api_with(config).await;
    let victim = signup_ok(&api).await;
    let attacker = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    let mut statuses: Vec<StatusCode> = Vec::new();
    for _ in 0..200 {
        let r = send_with(
            &attacker,
            &api,
            Method::POST,
            "/auth/login",
            None,
            Some(&json!({ "email": unique_email("random"), "password": "wrong-password-4" })),
        )
        .await;
        statuses.push(r.status);
    }
    assert!(
        statuses[..50].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[50..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let rows = bounded_rows(&api).await;
    // One row per type, two if a minute boundary fell inside the run.
    assert!(rows.len() <= 4, "{} rows: {:?}", rows.len(), &rows[..rows.len().min(6)]);
    assert_eq!(rows.iter().map(|r| i64::from(r.2)).sum::<i64>(), 200, "{rows:?}");
    assert!(rows.iter().all(|r| r.1.is_none()), "no account: {rows:?}");

    // The address is over its limit: the victim's email typed from it is the address's refusal.
    let r = send_with(
        &attacker,
        &api,
        Method::POST,
        "/auth/login",
        None,
        Some(&json!({ "email": victim.email, "password": "wrong-password-4" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let rows = bounded_rows(&api).await;
    assert!(rows.len() <= 4, "{} rows: {:?}", rows.len(), &rows[..rows.len().min(6)]);
    assert!(
        rows.iter().all(|r| r.1 != Some(victim.user_id)),
        "an address's refusal is not the typed account's: {rows:?}"
    );
}

/// A user who types the password into the email field: neither the password nor the SHA-256 of
/// its canonical form (the account counter's key) is in any column of any event.
#[tokio::test]
async fn a_password_typed_as_the_email_leaves_neither_it_nor_its_digest_in_the_events() {
    let api = spawn_api_with(test_config()).await;
    let email = unique_email("typo");
    let password = format!("Secret-{}", Uuid::new_v4().simple());
    assert_eq!(signup_resp(&api, &email, &password).await.status, StatusCode::CREATED);
    assert_eq!(
        login_resp(&api, &password, &password).await.status,
        StatusCode::UNAUTHORIZED
    );
    let digest = store::ratelimit::email_key(&password);
    assert_eq!(digest.len(), 64);
    let db = api.sql().await;
    let rows = db
        .query("SELECT row_to_json(e)::text FROM security_events e", &[])
        .await
        .expect("dump");
    let dump = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(dump.contains("login_failed"), "{dump}");
    assert!(!dump.contains(&password), "the password is in the event table");
    assert!(
        !dump.to_lowercase().contains(&password.to_lowercase()),
        "the password is in the event table"
    );
    assert!(!dump.contains(&digest), "the password's digest is in the event table");
}

#[tokio::test]
async fn event_lists_page_newest_first_and_filter_and_refuse_bad_parameters() {
    let api = spawn_api_with(test_config()).await;
    let admin = admin_account(&api).await;
    let acct = signup_ok(&api).await;
    for _ in 0..4 {
        let s = login_ok(&api, &acct.email, &acct.password).await;
        post(&api, &s.access_token, "/auth/logout", &json!({}))
            .await
            .expect(204);
    }
    // signup + 4 × (login_succeeded, logout) = 9 own events, newest first, 2 per page.
    let mut seen = Vec::new();
    let mut path = "/auth/events?limit=2".to_owned();
    loop {
        let page = get(&api, &acct.access_token, &path).await.expect(200);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        for e in items {
            assert_eq!(e["user_id"], json!(acct.user_id));
            let keys: HashSet<&str> = e.as_object().expect("object").keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                HashSet::from([
                    "id",
                    "type",
                    "user_id",
                    "actor_id",
                    "session_id",
                    "ip",
                    "user_agent",
                    "created_at"
                ])
            );
            seen.push((
                e["created_at"].as_str().expect("created_at").to_owned(),
                e["type"].as_str().expect("type").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/auth/events?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert_eq!(seen.last().map(|s| s.1.as_str()), Some("signup"));
    assert_eq!(seen.first().map(|s| s.1.as_str()), Some("logout"));
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(
        seen.iter().map(|s| &s.0).collect::<Vec<_>>(),
        sorted.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    // The admin's own events are not the user's.
    let mine = get(&api, &admin.access_token, "/auth/events").await.expect(200);
    assert!(
        mine["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["user_id"] == json!(admin.user_id))
    );

    // Admin filters: by user and type, together.
    let logouts = get(
        &api,
        &admin.access_token,
        &format!("/admin/events?user_id={}&type=logout", acct.user_id),
    )
    .await
    .expect(200);
    assert_eq!(logouts["items"].as_array().map(Vec::len), Some(4), "{logouts}");
    let all_signups = get(&api, &admin.access_token, "/admin/events?type=signup")
        .await
        .expect(200);
    assert_eq!(all_signups["items"].as_array().map(Vec::len), Some(2), "{all_signups}");
    let everything = get(&api, &admin.access_token, "/admin/events?limit=100")
        .await
        .expect(200);
    // The admin's signup and login, the user's nine.
    assert_eq!(everything["items"].as_array().map(Vec::len), Some(11), "{everything}");
    assert!(everything["next_cursor"].is_null());

    for (query, field) in [
        ("type=nope", "type"),
        ("user_id=not-a-uuid", "user_id"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=bogus", "cursor"),
    ] {
        let problem = get(&api, &admin.access_token, &format!("/admin/events?{query}"))
            .await
            .problem(422, "validation_failed");
        assert!(
            error_fields(&problem).iter().any(|(f, _)| f == field),
            "{query}: {problem}"
        );
    }
    for query in ["limit=0", "cursor=bogus"] {
        get(&api, &acct.access_token, &format!("/auth/events?{query}"))
            .await
            .problem(422, "validation_failed");
    }
    // Admin only, at the gateway and in the function (a demoted admin's old token).
    get(&api, &acct.access_token, "/admin/events")
        .await
        .problem(403, "forbidden");
    let db = api.sql().await;
    db.execute("UPDATE users SET role = 'user' WHERE id = $1", &[&admin.user_id])
        .await
        .expect("demote");
    get(&api, &admin.access_token, "/admin/events")
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_event() {
    let api = spawn_api_with(test_config()).await;
    let admin = admin_account(&api).await;
    let before = event_count(&api).await;
    // The last active admin can neither demote nor delete itself: 409, and no event.
    let path = format!("/admin/users/{}", admin.user_id);
    patch(&api, &admin.access_token, &path, &json!({ "role": "user" }))
        .await
        .problem(409, "last_admin");
    let r = crate::helpers::send(
        &api,
        Method::DELETE,
        "/auth/me",
        Some(&admin.access_token),
        Some(&json!({ "password": admin.password })),
    )
    .await;
    r.problem(409, "last_admin");
    assert_eq!(event_count(&api).await, before);
    // A PATCH that changes nothing records nothing either.
    patch(&api, &admin.access_token, &path, &json!({ "role": "admin" }))
        .await
        .expect(200);
    assert_eq!(event_count(&api).await, before);
}

#[tokio::test]
async fn the_clean_up_deletes_events_past_their_retention_in_batches() {
    let api = spawn_api_with(test_config()).await;
    let acct = signup_ok(&api).await;
    let db = api.sql().await;
    db.execute(
        "INSERT INTO security_events (id, type, user_id, created_at)
         SELECT gen_random_uuid(), 'login_succeeded', $1, now() - interval '100 days' - g * interval '1 second'
           FROM generate_series(1, 5) g",
        &[&acct.user_id],
    )
    .await
    .expect("old events");
    db.execute(
        "INSERT INTO security_events (id, type, user_id, created_at)
         VALUES (gen_random_uuid(), 'logout', $1, now() - interval '80 days')",
        &[&acct.user_id],
    )
    .await
    .expect("kept event");
    let settings = |max_batches| cleanup::CleanupSettings {
        batch_size: 2,
        max_batches,
        ..cleanup::CleanupSettings::default()
    };
    let report = cleanup::run(&api.state.pool, &api.state.config.db, settings(1))
        .await
        .expect("clean-up");
    assert_eq!(report.events_deleted, 2, "one bounded batch");
    let report = cleanup::run(&api.state.pool, &api.state.config.db, settings(100))
        .await
        .expect("clean-up");
    assert_eq!(report.events_deleted, 3);
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM security_events WHERE created_at < now() - interval '90 days'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    // The recent ones stay: the signup and the 80-day-old event.
    assert_eq!(event_count(&api).await, 2);
    // A shorter retention (EVENT_RETENTION_DAYS) takes the 80-day-old one too.
    let report = cleanup::run(
        &api.state.pool,
        &api.state.config.db,
        cleanup::CleanupSettings {
            event_retention: Duration::from_secs(30 * 24 * 3600),
            ..settings(100)
        },
    )
    .await
    .expect("clean-up");
    assert_eq!(report.events_deleted, 1);
}
