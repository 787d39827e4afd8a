//! Account recovery and email verification end to end: over HTTP against the local API on real
//! PostgreSQL, with the mail sender running as in `local-api` (a background task woken by the
//! outbox's NOTIFY) and delivering into memory. The SES path is tests/api/ses_emulator.rs.

use std::sync::Arc;
use std::time::Duration;

use api_tests::{TestApi, default_config, spawn_api_with_mail, test_config, test_mail_settings};
use http::Method;
use mail::{MemoryMailer, Message, SendError};
use serde_json::{Value, json};
use settings::Config;

use crate::helpers::{
    Resp, client_from, get, login_resp, post, post_json, send, send_with, signup_ok, unique_email, unique_password,
};

const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn mail_api(config: Config) -> (TestApi, Arc<MemoryMailer>) {
    let mailer = MemoryMailer::new();
    let api = spawn_api_with_mail(config, mailer.clone(), test_mail_settings()).await;
    (api, mailer)
}

/// The token in a message's link.
pub(crate) fn token_of(m: &Message) -> String {
    m.link()
        .split_once("?token=")
        .map(|(_, t)| t.to_owned())
        .expect("the link has a token")
}

/// The `n`th message (1-based) of `purpose` to `to`, waiting for it.
pub(crate) async fn nth_mail(mailer: &MemoryMailer, to: &str, purpose: mail::Purpose, n: usize) -> Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mine: Vec<Message> = mailer
            .wait_for(to, 0, Duration::ZERO)
            .await
            .into_iter()
            .filter(|m| m.purpose == purpose)
            .collect();
        if mine.len() >= n {
            return mine[n - 1].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message {n} of {purpose:?} to {to} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the sender has nothing left to do (every job finished or deleted).
async fn sender_idle(api: &TestApi) {
    let db = api.sql().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pending: i64 = db
            .query_one("SELECT count(*) FROM mail_outbox WHERE done_at IS NULL", &[])
            .await
            .expect("count jobs")
            .get(0);
        if pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} mail jobs still pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn forgot(api: &TestApi, email: &str) -> Resp {
    post_json(api, "/auth/password/forgot", &json!({ "email": email })).await
}

async fn reset(api: &TestApi, token: &str, new_password: &str) -> Resp {
    post_json(
        api,
        "/auth/password/reset",
        &json!({ "token": token, "new_password": new_password }),
    )
    .await
}

/// `POST /auth/password` of `account` to `new_password`.
async fn change_password(api: &TestApi, account: &crate::helpers::Account, new_password: &str) {
    post(
        api,
        &account.access_token,
        "/auth/password",
        &json!({ "current_password": account.password, "new_password": new_password }),
    )
    .await
    .expect(204);
}

/// Ask for a reset of `email` and return the token of the `n`th reset message to it.
async fn reset_token(api: &TestApi, mailer: &MemoryMailer, email: &str, n: usize) -> String {
    forgot(api, email).await.expect(202);
    token_of(&nth_mail(mailer, email, mail::Purpose::PasswordReset, n).await)
}

#[tokio::test]
async fn the_whole_reset_flow_ends_every_old_session() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let second = crate::helpers::login_ok(&api, &account.email, &account.password).await;

    let r = forgot(&api, &account.email).await;
    let body = r.expect(202);
    assert_eq!(body, json!({ "message": recovery::FORGOT_ACCEPTED }));
    let m = nth_mail(&mailer, &account.email, mail::Purpose::PasswordReset, 1).await;
    assert_eq!(m.to, account.email);
    assert_eq!(m.subject, "Reset your password");
    assert!(
        m.link().starts_with("https://app.todo-api.test/reset-password?token="),
        "{}",
        m.link()
    );
    for part in [m.text(), m.html()] {
        assert!(part.contains(m.link()), "both parts carry the link");
        assert!(part.contains("expires in 30 minutes"));
        assert!(part.contains("If you did not ask for this"));
    }
    let token = token_of(&m);
    assert!(token.len() >= 43, "at least 256 bits: {} characters", token.len());
    // Only the SHA-256 of the token is stored, never the token.
    assert_eq!(token_rows(&api, &recovery::outbox::token_hash(&token)).await, 1);
    let db = api.sql().await;
    let leaked: i64 = db
        .query_one(
            "SELECT count(*) FROM account_tokens WHERE position($1::bytea in token_hash) > 0",
            &[&token.as_bytes()],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(leaked, 0);

    let new_password = unique_password();
    reset(&api, &token, &new_password).await.expect(204);

    // Every old session is dead on its very next data request, access and refresh alike.
    for a in [&account, &second] {
        get(&api, &a.access_token, "/auth/me")
            .await
            .problem(401, "invalid_token");
        post_json(&api, "/auth/refresh", &json!({ "refresh_token": a.refresh_token }))
            .await
            .problem(401, "invalid_refresh_token");
    }
    login_resp(&api, &account.email, &account.password)
        .await
        .problem(401, "invalid_credentials");
    let body = login_resp(&api, &account.email, &new_password).await.expect(200);
    // The reset mail proved the mailbox.
    assert_eq!(body["user"]["email_verified"], true, "{body}");

    // The used token's row is gone: the password change deleted the user's reset tokens.
    assert_eq!(token_rows(&api, &recovery::outbox::token_hash(&token)).await, 0);
}

/// How many `account_tokens` rows have this `token_hash`.
async fn token_rows(api: &TestApi, hash: &[u8]) -> i64 {
    let db = api.sql().await;
    db.query_one("SELECT count(*) FROM account_tokens WHERE token_hash = $1", &[&hash])
        .await
        .expect("count tokens")
        .get(0)
}

#[tokio::test]
async fn forgot_password_answers_alike_for_known_and_unknown_emails_and_mails_no_stranger() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let stranger = unique_email("stranger");
    let known = forgot(&api, &account.email).await;
    let unknown = forgot(&api, &stranger).await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body);
    let names = |r: &Resp| {
        let mut v: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&known), names(&unknown), "the same headers");
    nth_mail(&mailer, &account.email, mail::Purpose::PasswordReset, 1).await;
    sender_idle(&api).await;
    assert!(
        mailer.sent().iter().all(|m| m.to != stranger),
        "no mail to an address without an account"
    );
    // Nothing of the stranger's address is kept.
    let db = api.sql().await;
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM mail_outbox WHERE email_canonical = $1",
            &[&store::email::canonical_email(&stranger)],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(kept, 0);
}

#[tokio::test]
async fn every_invalid_reset_token_is_the_same_400() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let verification = token_of(&nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await);
    let password = unique_password();
    let long = "a".repeat(5000);
    for token in [
        "",
        "not-a-token",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        long.as_str(),
        verification.as_str(),
    ] {
        let p = reset(&api, token, &password).await.problem(400, "invalid_reset_token");
        assert_eq!(p["status"], 400);
    }
    // Wrong shapes are 422, unknown fields too.
    post_json(
        &api,
        "/auth/password/reset",
        &json!({ "token": 5, "new_password": password }),
    )
    .await
    .problem(422, "validation_failed");
    post_json(&api, "/auth/password/reset", &json!({ "new_password": password }))
        .await
        .problem(422, "validation_failed");
    post_json(
        &api,
        "/auth/password/reset",
        &json!({ "token": "x", "new_password": password, "email": account.email }),
    )
    .await
    .problem(422, "unknown_field");
    // The account is untouched.
    login_resp(&api, &account.email, &account.password).await.expect(200);
}

#[tokio::test]
async fn a_reset_token_expires() {
    let mut config = test_config();
    config.recovery.password_reset_ttl = Duration::from_secs(1);
    let (api, mailer) = mail_api(config).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    let m = nth_mail(&mailer, &account.email, mail::Purpose::PasswordReset, 1).await;
    assert!(
        m.text().contains("expires in 1 second"),
        "the message states the configured TTL"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    reset(&api, &token, &unique_password())
        .await
        .problem(400, "invalid_reset_token");
    login_resp(&api, &account.email, &account.password).await.expect(200);
}

#[tokio::test]
async fn a_reset_token_works_once() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    let first = unique_password();
    reset(&api, &token, &first).await.expect(204);
    reset(&api, &token, &unique_password())
        .await
        .problem(400, "invalid_reset_token");
    login_resp(&api, &account.email, &first).await.expect(200);
}

#[tokio::test]
async fn two_concurrent_resets_with_one_token_exactly_one_wins() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    let (a, b) = (unique_password(), unique_password());
    let (ra, rb) = tokio::join!(reset(&api, &token, &a), reset(&api, &token, &b));
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400], "{} / {}", ra.body, rb.body);
    let winner = if ra.status.as_u16() == 204 { &a } else { &b };
    let loser = if ra.status.as_u16() == 204 { &b } else { &a };
    login_resp(&api, &account.email, winner).await.expect(200);
    login_resp(&api, &account.email, loser)
        .await
        .problem(401, "invalid_credentials");
}

#[tokio::test]
async fn a_newer_request_supersedes_the_earlier_token() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let first = reset_token(&api, &mailer, &account.email, 1).await;
    // The same account under another spelling is the same request stream.
    forgot(&api, &account.email.to_uppercase()).await.expect(202);
    let second = token_of(&nth_mail(&mailer, &account.email, mail::Purpose::PasswordReset, 2).await);
    reset(&api, &first, &unique_password())
        .await
        .problem(400, "invalid_reset_token");
    reset(&api, &second, &unique_password()).await.expect(204);
}

#[tokio::test]
async fn a_password_change_and_a_reset_supersede_every_earlier_token() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    let changed = unique_password();
    change_password(&api, &account, &changed).await;
    reset(&api, &token, &unique_password())
        .await
        .problem(400, "invalid_reset_token");

    // Two live tokens of one request (a retried send delivers a second one): a reset with
    // either ends the other.
    let token = reset_token(&api, &mailer, &account.email, 2).await;
    let other = mail::new_token().expect("random");
    let other = secrecy::ExposeSecret::expose_secret(&other).to_owned();
    let db = api.sql().await;
    db.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, requested_at, expires_at)
         SELECT $1, user_id, purpose, requested_at, expires_at FROM account_tokens WHERE token_hash = $2",
        &[
            &recovery::outbox::token_hash(&other),
            &recovery::outbox::token_hash(&token),
        ],
    )
    .await
    .expect("copy the token row");
    reset(&api, &token, &unique_password()).await.expect(204);
    reset(&api, &other, &unique_password())
        .await
        .problem(400, "invalid_reset_token");
}

#[tokio::test]
async fn the_new_password_meets_the_signup_policy_and_a_refusal_keeps_the_token() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    for (password, code) in [
        ("short", "password_too_short"),
        ("password", "password_too_common"),
        (account.email.as_str(), "password_equals_email"),
    ] {
        let p = reset(&api, &token, password).await.problem(422, "validation_failed");
        assert_eq!(p["errors"][0]["field"], "new_password", "{p}");
        assert_eq!(p["errors"][0]["code"], code, "{p}");
    }
    reset(&api, &token, &unique_password()).await.expect(204);
}

#[tokio::test]
async fn forgot_password_limits_per_email_and_per_address_with_retry_after() {
    let (api, _mailer) = mail_api(default_config()).await;
    let account = signup_ok(&api).await;
    let stranger = unique_email("stranger");
    // 3 per email per hour, known or not, whatever the address asks.
    for email in [account.email.as_str(), stranger.as_str()] {
        for i in 0..3u8 {
            let client = client_from(format!("127.0.1.{}", i + 1).parse().expect("ip"));
            let r = send_with(
                &client,
                &api,
                Method::POST,
                "/auth/password/forgot",
                None,
                Some(&json!({ "email": email })),
            )
            .await;
            r.expect(202);
        }
        let client = client_from("127.0.1.9".parse().expect("ip"));
        let r = send_with(
            &client,
            &api,
            Method::POST,
            "/auth/password/forgot",
            None,
            Some(&json!({ "email": email })),
        )
        .await;
        r.problem(429, "rate_limited");
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=3600).contains(&retry), "{retry}");
    }
    // 5 per address per hour, whatever the emails.
    let client = client_from("127.0.2.1".parse().expect("ip"));
    for _ in 0..5 {
        let r = send_with(
            &client,
            &api,
            Method::POST,
            "/auth/password/forgot",
            None,
            Some(&json!({ "email": unique_email("many") })),
        )
        .await;
        r.expect(202);
    }
    let r = send_with(
        &client,
        &api,
        Method::POST,
        "/auth/password/forgot",
        None,
        Some(&json!({ "email": unique_email("many") })),
    )
    .await;
    r.problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // A bad email is 422 before any counting.
    post_json(&api, "/auth/password/forgot", &json!({ "email": "not an email" }))
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn verification_flow_and_resend() {
    let mut config = default_config();
    config.rate_limits.signups_per_ip.max = 1000;
    let (api, mailer) = mail_api(config).await;
    let account = signup_ok(&api).await;
    let me = get(&api, &account.access_token, "/auth/me").await.expect(200);
    assert_eq!(me["email_verified"], false);
    let m = nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await;
    assert_eq!(m.subject, "Confirm your email address");
    assert!(m.link().starts_with("https://app.todo-api.test/verify-email?token="));
    assert!(m.text().contains("expires in 24 hours"));
    assert!(m.text().contains("If you did not sign up"));

    // Resend: a new message; three per hour, then 429.
    for n in 2..=4 {
        let r = post(&api, &account.access_token, "/auth/email/verify/resend", &json!({})).await;
        r.expect(202);
        nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, n).await;
    }
    let r = send(
        &api,
        Method::POST,
        "/auth/email/verify/resend",
        Some(&account.access_token),
        None,
    )
    .await;
    r.problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());

    // Any of the tokens verifies, once.
    let token = token_of(&m);
    for bad in ["", "nope", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        post_json(&api, "/auth/email/verify", &json!({ "token": bad }))
            .await
            .problem(400, "invalid_verification_token");
    }
    post_json(&api, "/auth/email/verify", &json!({ "token": token }))
        .await
        .expect(204);
    post_json(&api, "/auth/email/verify", &json!({ "token": token }))
        .await
        .problem(400, "invalid_verification_token");
    let me = get(&api, &account.access_token, "/auth/me").await.expect(200);
    assert_eq!(me["email_verified"], true);
    send(
        &api,
        Method::POST,
        "/auth/email/verify/resend",
        Some(&account.access_token),
        None,
    )
    .await
    .problem(409, "email_already_verified");
    // A reset token is no verification token.
    let reset = reset_token(&api, &mailer, &account.email, 1).await;
    post_json(&api, "/auth/email/verify", &json!({ "token": reset }))
        .await
        .problem(400, "invalid_verification_token");
    // Resend needs a token.
    send(&api, Method::POST, "/auth/email/verify/resend", None, None)
        .await
        .problem(401, "invalid_token");
}

#[tokio::test]
async fn a_verification_token_expires() {
    let mut config = test_config();
    config.recovery.email_verification_ttl = Duration::from_secs(1);
    let (api, mailer) = mail_api(config).await;
    let account = signup_ok(&api).await;
    let token = token_of(&nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    post_json(&api, "/auth/email/verify", &json!({ "token": token }))
        .await
        .problem(400, "invalid_verification_token");
}

#[tokio::test]
async fn require_verified_email_refuses_login_until_verified() {
    let mut config = test_config();
    config.recovery.require_verified_email = true;
    let (api, mailer) = mail_api(config).await;
    let account = signup_ok(&api).await;
    login_resp(&api, &account.email, "wrong-password-123")
        .await
        .problem(401, "invalid_credentials");
    login_resp(&api, &account.email, &account.password)
        .await
        .problem(403, "email_not_verified");
    let token = token_of(&nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await);
    post_json(&api, "/auth/email/verify", &json!({ "token": token }))
        .await
        .expect(204);
    let body = login_resp(&api, &account.email, &account.password).await.expect(200);
    assert_eq!(body["user"]["email_verified"], true);

    // Off (the default): an unverified account logs in.
    let (api, _mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    login_resp(&api, &account.email, &account.password).await.expect(200);
}

#[tokio::test]
async fn a_failed_send_is_retried_with_backoff_and_a_permanent_failure_is_recorded() {
    let (api, mailer) = mail_api(test_config()).await;
    mailer.fail_next([
        SendError::Transient("SES TooManyRequestsException (HTTP 429)".into()),
        SendError::Transient("SES could not be reached".into()),
    ]);
    let account = signup_ok(&api).await;
    let m = nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await;
    let db = api.sql().await;
    let row = db
        .query_one(
            "SELECT attempts, outcome, last_error FROM mail_outbox WHERE user_id = $1",
            &[&account.user_id],
        )
        .await
        .expect("the job");
    assert_eq!(row.get::<_, i32>("attempts"), 3);
    assert_eq!(row.get::<_, Option<String>>("outcome").as_deref(), Some("sent"));
    assert_eq!(row.get::<_, Option<String>>("last_error"), None);
    // The delivered token works (each attempt made its own).
    post_json(&api, "/auth/email/verify", &json!({ "token": token_of(&m) }))
        .await
        .expect(204);

    mailer.fail_next([SendError::Permanent("SES MessageRejected (HTTP 400)".into())]);
    forgot(&api, &account.email).await.expect(202);
    sender_idle(&api).await;
    let row = db
        .query_one(
            "SELECT attempts, outcome, last_error FROM mail_outbox WHERE kind = 'password_reset'",
            &[],
        )
        .await
        .expect("the job");
    assert_eq!(row.get::<_, i32>("attempts"), 1);
    assert_eq!(row.get::<_, Option<String>>("outcome").as_deref(), Some("failed"));
    let error: String = row.get("last_error");
    assert!(error.contains("MessageRejected"), "{error}");
    assert!(mailer.sent().iter().all(|m| m.purpose != mail::Purpose::PasswordReset));
}

#[tokio::test]
async fn a_request_survives_a_sender_that_died_mid_send() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await;
    sender_idle(&api).await;
    // A job claimed by a sender that then died: its lease runs out and it is sent.
    let db = api.sql().await;
    db.execute(
        "INSERT INTO mail_outbox (kind, user_id, attempts, locked_until)
         VALUES ('email_verification', $1, 1, now() + interval '300 milliseconds')",
        &[&account.user_id],
    )
    .await
    .expect("a claimed job");
    nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 2).await;
}

#[tokio::test]
async fn a_disabled_account_gets_no_reset_mail() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await;
    let db = api.sql().await;
    db.execute("UPDATE users SET disabled = true WHERE id = $1", &[&account.user_id])
        .await
        .expect("disable");
    forgot(&api, &account.email).await.expect(202);
    sender_idle(&api).await;
    assert!(mailer.sent().iter().all(|m| m.purpose != mail::Purpose::PasswordReset));
}

#[tokio::test]
async fn the_local_mail_dir_gets_an_eml_file_per_message() {
    let dir = std::env::temp_dir().join(format!("todo-api-mail-dir-{}", uuid::Uuid::new_v4().simple()));
    let dir_mailer: Arc<dyn mail::Mailer> = Arc::new(mail::DirMailer::new(&dir).expect("MAIL_DIR"));
    let fanout = Arc::new(mail::Fanout(vec![Arc::new(mail::ConsoleMailer), dir_mailer]));
    let api = spawn_api_with_mail(test_config(), fanout, test_mail_settings()).await;
    let account = signup_ok(&api).await;
    sender_idle(&api).await;
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("read MAIL_DIR")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let eml = std::fs::read_to_string(&files[0]).expect("read the .eml");
    assert!(eml.contains(&format!("\r\nTo: {}\r\n", account.email)), "{eml}");
    assert!(eml.contains("Subject: Confirm your email address\r\n"));
    assert!(eml.contains("Content-Type: text/plain"));
    assert!(eml.contains("Content-Type: text/html"));
    let token = eml
        .split("verify-email?token=")
        .nth(1)
        .and_then(|rest| rest.split(['\r', '"', '<']).next())
        .expect("a link");
    post_json(&api, "/auth/email/verify", &json!({ "token": token }))
        .await
        .expect(204);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The user object carries `email_verified` everywhere it appears.
#[tokio::test]
async fn user_objects_carry_email_verified() {
    let (api, _mailer) = mail_api(test_config()).await;
    let email = unique_email("shape");
    let r = post_json(
        &api,
        "/auth/signup",
        &json!({ "email": email, "password": unique_password() }),
    )
    .await;
    let body: Value = r.expect(201);
    assert_eq!(body["user"]["email_verified"], false);
}

/// Security review of issue 16, finding 1: a reset request made before a password change must not
/// produce a working link when it is sent after the change (a sender that runs late).
#[tokio::test]
async fn a_request_made_before_a_password_change_is_not_mailed_after_it() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await;
    sender_idle(&api).await;
    // A forgot request recorded as the endpoint records it, but not due yet: the sender is late.
    // (Inserted here rather than through the endpoint, whose NOTIFY would send it at once.)
    let db = api.sql().await;
    db.execute(
        "INSERT INTO mail_outbox (kind, email_canonical, next_attempt_at)
         SELECT 'password_reset', email_canonical, 'infinity' FROM users WHERE id = $1",
        &[&account.user_id],
    )
    .await
    .expect("a late job");
    change_password(&api, &account, &unique_password()).await;
    db.execute(
        "UPDATE mail_outbox SET next_attempt_at = now() WHERE kind = 'password_reset' AND done_at IS NULL",
        &[],
    )
    .await
    .expect("release the job");
    db.execute("NOTIFY mail_outbox", &[]).await.expect("wake the sender");
    sender_idle(&api).await;
    let outcome: Option<String> = db
        .query_one("SELECT outcome FROM mail_outbox WHERE kind = 'password_reset'", &[])
        .await
        .expect("the job")
        .get(0);
    assert_eq!(outcome.as_deref(), Some("skipped"));
    assert!(
        mailer.sent().iter().all(|m| m.purpose != mail::Purpose::PasswordReset),
        "a link for the old password was mailed after the change"
    );
}

/// Finding 1, second case: a send that SES accepted but that timed out is retried; if the user
/// already reset with the first link, the retry must not mail a second working one.
#[tokio::test]
async fn a_retried_send_after_the_reset_mails_no_second_working_link() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    sender_idle(&api).await;
    reset(&api, &token, &unique_password()).await.expect(204);
    // The job is taken again, as after a lost answer from SES.
    let db = api.sql().await;
    db.execute(
        "UPDATE mail_outbox SET done_at = NULL, outcome = NULL, next_attempt_at = now()
          WHERE kind = 'password_reset'",
        &[],
    )
    .await
    .expect("retry the job");
    db.execute("NOTIFY mail_outbox", &[]).await.expect("wake the sender");
    sender_idle(&api).await;
    let resets: Vec<Message> = mailer
        .sent()
        .into_iter()
        .filter(|m| m.purpose == mail::Purpose::PasswordReset)
        .collect();
    assert_eq!(resets.len(), 1, "no second reset mail after the reset");
}

/// Finding 1 at the point of use: a token whose request predates the last password change
/// never works, even if it exists (a sender that made it while the change committed).
#[tokio::test]
async fn a_token_of_a_request_before_the_last_password_change_never_works() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    nth_mail(&mailer, &account.email, mail::Purpose::EmailVerification, 1).await;
    change_password(&api, &account, &unique_password()).await;
    let raw = mail::new_token().expect("random");
    let raw = secrecy::ExposeSecret::expose_secret(&raw).to_owned();
    let db = api.sql().await;
    db.execute(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, requested_at, expires_at)
         VALUES ($1, $2, 'password_reset', now() - interval '1 minute', now() + interval '30 minutes')",
        &[&recovery::outbox::token_hash(&raw), &account.user_id],
    )
    .await
    .expect("a token of an earlier request");
    reset(&api, &raw, &unique_password())
        .await
        .problem(400, "invalid_reset_token");
}

/// Security review, finding 8: disabling an account voids its reset links, so enabling it again
/// does not bring one back.
#[tokio::test]
async fn disabling_an_account_voids_its_reset_links() {
    let (api, mailer) = mail_api(test_config()).await;
    let account = signup_ok(&api).await;
    let token = reset_token(&api, &mailer, &account.email, 1).await;
    let db = api.sql().await;
    for disabled in [true, false] {
        db.execute(
            "UPDATE users SET disabled = $2 WHERE id = $1",
            &[&account.user_id, &disabled],
        )
        .await
        .expect("disable, then enable");
    }
    reset(&api, &token, &unique_password())
        .await
        .problem(400, "invalid_reset_token");
}

/// Security review of issue 16, finding 3: forgot requests for made-up addresses (each address
/// within its limits, from many client addresses) must not hold up real mail. One sender run
/// that may send 10 messages, behind 2,000 such jobs that came due first, still sends the real one.
#[tokio::test]
async fn requests_for_unknown_emails_do_not_hold_up_real_mail() {
    // No background sender: this test runs the sender step itself.
    let api = api_tests::spawn_api_with(test_config()).await;
    let account = signup_ok(&api).await;
    let db = api.sql().await;
    db.execute(
        "INSERT INTO mail_outbox (kind, email_canonical, next_attempt_at)
         SELECT 'password_reset', 'nobody-' || n || '@example.com', now() - interval '1 hour'
           FROM generate_series(1, 2000) AS n",
        &[],
    )
    .await
    .expect("junk jobs");
    forgot(&api, &account.email).await.expect(202);
    let mailer = MemoryMailer::new();
    let done = mail_sender::deliver_due(
        &api.state.pool,
        &(&api.state.config).into(),
        &test_mail_settings(),
        mailer.as_ref(),
        10,
    )
    .await
    .expect("a sender run");
    assert!(
        mailer
            .sent()
            .iter()
            .any(|m| m.to == account.email && m.purpose == mail::Purpose::PasswordReset),
        "the real reset mail waits behind made-up ones: {done:?}"
    );
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM mail_outbox WHERE kind = 'password_reset' AND email_canonical LIKE 'nobody-%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "no made-up address is kept");
}
