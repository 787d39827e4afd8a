//! The deployed mail path, SES API v2 through `aws-sdk-sesv2` (`mail::ses::SesMailer`), against
//! moto's SES on loopback: the messages are read back from the emulator (its `/moto-api/data.json`
//! holds every raw message sent). `scripts/test.sh` starts moto and sets `MOTO_ENDPOINT`; without
//! it these tests fail (they never skip).

use std::sync::Arc;
use std::time::Duration;

use api_tests::{TestApi, spawn_api_with_mail, test_config, test_mail_settings};
use serde_json::{Value, json};

use crate::helpers::{post_json, signup_ok, unique_password};

fn moto_endpoint() -> String {
    match std::env::var("MOTO_ENDPOINT") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!("MOTO_ENDPOINT is not set: scripts/test.sh starts a moto server and sets it"),
    }
}

/// A sender address of this test's own, made a verified identity in the emulator (moto refuses
/// to send from an unverified one, like SES).
async fn verified_sender(mailer: &mail::ses::SesMailer) -> String {
    let address = format!("no-reply-{}@todo-api.test", uuid::Uuid::new_v4().simple());
    mailer
        .client()
        .create_email_identity()
        .email_identity(&address)
        .send()
        .await
        .expect("create the identity in the emulator");
    address
}

/// Every raw message the emulator has accepted for `to`.
async fn sent_to(to: &str) -> Vec<String> {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", moto_endpoint()))
        .await
        .expect("read the emulator's data")
        .json()
        .await
        .expect("JSON");
    data["ses"]["RawMessage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["destinations"]
                .as_array()
                .is_some_and(|d| d.iter().any(|a| a.as_str().is_some_and(|a| a.contains(to))))
        })
        .filter_map(|m| m["raw_data"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_sent(to: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = sent_to(to).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message to {to} in the emulator"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of the MIME part with this content type.
fn part<'a>(raw: &'a str, content_type: &str) -> &'a str {
    let start = raw
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part in {raw}"));
    let body = &raw[start..];
    let body = &body[body.find("\r\n\r\n").expect("part headers end") + 4..];
    &body[..body.find("\r\n--").expect("part ends")]
}

async fn ses_api(from: &str) -> TestApi {
    let mailer = mail::ses::SesMailer::for_emulator(&moto_endpoint());
    let mut settings = test_mail_settings();
    settings.from = format!("todo-api <{from}>");
    spawn_api_with_mail(test_config(), Arc::new(mailer), settings).await
}

#[tokio::test]
async fn reset_mail_goes_through_ses_and_its_link_works() {
    let probe = mail::ses::SesMailer::for_emulator(&moto_endpoint());
    let from = verified_sender(&probe).await;
    let api = ses_api(&from).await;
    let account = signup_ok(&api).await;
    post_json(&api, "/auth/password/forgot", &json!({ "email": account.email }))
        .await
        .expect(202);
    let raw = wait_sent(&account.email, 2).await;
    let reset = raw
        .iter()
        .find(|m| m.contains("Subject: Reset your password\r\n"))
        .expect("the reset message");
    assert!(reset.contains(&format!("\r\nTo: {}\r\n", account.email)), "{reset}");
    assert!(reset.contains(&format!("From: todo-api <{from}>\r\n")), "{reset}");
    let text = part(reset, "text/plain");
    let html = part(reset, "text/html");
    assert!(
        text.contains("expires in 30 minutes") && text.contains("If you did not ask for this"),
        "{text}"
    );
    let link = text
        .lines()
        .find(|l| l.starts_with("https://app.todo-api.test/reset-password?token="))
        .expect("a link line in the plain text");
    assert!(
        html.contains(&format!("href=\"{link}\"")),
        "the HTML part has the same link"
    );
    let token = link.split_once("token=").expect("token").1;
    let new_password = unique_password();
    post_json(
        &api,
        "/auth/password/reset",
        &json!({ "token": token, "new_password": new_password }),
    )
    .await
    .expect(204);
    crate::helpers::login_resp(&api, &account.email, &new_password)
        .await
        .expect(200);
}

#[tokio::test]
async fn an_unverified_sender_is_a_permanent_failure_recorded_without_the_token() {
    let api = ses_api(&format!("unverified-{}@nowhere.test", uuid::Uuid::new_v4().simple())).await;
    let account = signup_ok(&api).await;
    let db = api.sql().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let row = loop {
        let row = db
            .query_opt(
                "SELECT outcome, attempts, last_error FROM mail_outbox WHERE user_id = $1 AND done_at IS NOT NULL",
                &[&account.user_id],
            )
            .await
            .expect("query");
        if let Some(row) = row {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row.get::<_, Option<String>>("outcome").as_deref(), Some("failed"));
    assert_eq!(row.get::<_, i32>("attempts"), 1, "a rejection is not retried");
    let error: String = row.get("last_error");
    assert!(error.starts_with("permanent: SES "), "{error}");
    assert!(!error.contains("token"), "{error}");
    assert!(sent_to(&account.email).await.is_empty());
}
