//! The Secrets Manager path of `access::keys` (and `store::startup::load_database_url`), against a local emulator (moto) on loopback.
//!
//! `scripts/test.sh` starts `moto_server` and exports `MOTO_ENDPOINT`; without it these tests fail
//! (they never skip). The SDK client is built from an explicit config, never from the process
//! environment, so tests can run in parallel threads. Every test uses its own secret names.

use std::time::Duration;

use access::keys::{EnvOnly, KeySource};
use access::roles::Role;
use access::tokens::{KeySet, TokenError, TokenSettings, Tokens};
use api_tests::load_keys;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use secrecy::{ExposeSecret, SecretString};
use settings::DatabaseUrl;
use settings::EnvReader;
use store::startup::load_database_url;
use uuid::Uuid;

/// The emulator's endpoint. Panics (fails the test) when it is not configured.
fn moto_endpoint() -> String {
    match std::env::var("MOTO_ENDPOINT") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!(
            "MOTO_ENDPOINT is not set: these tests need a local moto server \
             (`moto_server -H 127.0.0.1 -p PORT`, then MOTO_ENDPOINT=http://127.0.0.1:PORT); \
             scripts/test.sh starts one and sets it"
        ),
    }
}

/// An SDK client for `endpoint`, configured explicitly (no process environment, no profile).
fn client_for(endpoint: &str) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    Client::from_conf(config)
}

fn client() -> Client {
    client_for(&moto_endpoint())
}

/// An environment with nothing in it.
fn no_env() -> EnvReader<'static> {
    env_of(&[])
}

/// An environment holding exactly these variables. A new key signs at once here
/// (`JWT_KEY_ACTIVATION_SECONDS=0`) unless the test sets a delay: these tests check the switch;
/// `rotation::a_new_key_waits_for_its_activation_delay_before_signing` checks the delay.
fn env_of(vars: &[(&str, &str)]) -> EnvReader<'static> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    EnvReader::new(move |name| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| (name == "JWT_KEY_ACTIVATION_SECONDS").then(|| "0".to_owned()))
    })
}

fn settings() -> TokenSettings {
    TokenSettings {
        issuer: "todo-api".into(),
        audience: "todo-api".into(),
        ttl: Duration::from_secs(900),
    }
}

fn unique_name(what: &str) -> String {
    format!("todo-api-test/{what}-{}", Uuid::new_v4())
}

/// A random alphanumeric value of `len` bytes (what the template's GenerateSecretString makes).
fn random_key(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&Uuid::new_v4().simple().to_string());
    }
    s.truncate(len);
    s
}

/// Create a string secret; returns (ARN, VersionId).
async fn create_string_secret(client: &Client, value: &str) -> (String, String) {
    let out = client
        .create_secret()
        .name(unique_name("key"))
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create_secret on moto failed: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        });
    let arn = out.arn().expect("create_secret returns an ARN").to_owned();
    let version = out.version_id().expect("create_secret returns a VersionId").to_owned();
    (arn, version)
}

/// Put a new value (moto, like AWS, moves AWSCURRENT to it and the old one to AWSPREVIOUS).
async fn rotate(client: &Client, arn: &str, value: &str) -> String {
    let out = client
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "put_secret_value on moto failed: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        });
    out.version_id()
        .expect("put_secret_value returns a VersionId")
        .to_owned()
}

async fn load_sm(client: &Client, arn: &str) -> anyhow::Result<KeySet> {
    load_keys(
        &KeySource::SecretsManager { arn: arn.to_owned() },
        &no_env(),
        Some(client),
    )
    .await
}

fn kid_of(token: &SecretString) -> String {
    let header = jsonwebtoken::decode_header(token.expose_secret()).expect("a JWT header");
    header.kid.expect("tokens carry a kid")
}

/// An ARN of a secret that does not exist (well-formed, in moto's default account).
fn missing_arn() -> String {
    format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:todo-api-test/missing-{}-AbCdEf",
        Uuid::new_v4()
    )
}

// --- (a) one version -----------------------------------------------------------------------

#[tokio::test]
async fn a_fresh_secret_gives_its_version_as_kid_and_no_previous_key() {
    let client = client();
    let value = random_key(64);
    let (arn, version) = create_string_secret(&client, &value).await;

    let keys = load_sm(&client, &arn).await.expect("a 64-byte secret loads");
    assert_eq!(keys.current.kid, version, "the kid is the secret's VersionId");
    assert!(
        keys.previous.is_none(),
        "a never-rotated secret has no previous key: {:?}",
        keys.previous
    );

    let tokens = Tokens::hs256(keys, settings());
    let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
    let issued = tokens.issue(user, session, Role::User).expect("issue");
    assert_eq!(
        kid_of(&issued.token),
        version,
        "tokens name the signing key by its version id"
    );
    let claims = tokens
        .verify(issued.token.expose_secret())
        .expect("a fresh token verifies");
    assert_eq!((claims.sub, claims.sid, claims.role), (user, session, Role::User));
}

#[tokio::test]
async fn the_key_is_the_secret_string_itself() {
    // A token signed by keys loaded from the emulator verifies with the same bytes loaded from the
    // environment (same key material; only the kid differs), so nothing re-encodes the value.
    let client = client();
    let value = random_key(48);
    let (arn, version) = create_string_secret(&client, &value).await;
    let from_sm = Tokens::hs256(load_sm(&client, &arn).await.expect("load"), settings());
    let issued = from_sm
        .issue(Uuid::new_v4(), Uuid::new_v4(), Role::Admin)
        .expect("issue");

    let env_keys = load_keys(&KeySource::Env, &env_of(&[("JWT_SECRET", &value)]), None)
        .await
        .expect("env key");
    let key = jsonwebtoken::DecodingKey::from_secret(value.as_bytes());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["todo-api"]);
    jsonwebtoken::decode::<serde_json::Value>(issued.token.expose_secret(), &key, &validation)
        .expect("the token is signed with exactly the secret's bytes");
    assert_ne!(
        env_keys.current.kid, version,
        "env keys get a fingerprint kid, not a version id"
    );
}

#[tokio::test]
async fn exactly_32_bytes_is_enough() {
    let client = client();
    let (arn, version) = create_string_secret(&client, &random_key(32)).await;
    let keys = load_sm(&client, &arn)
        .await
        .expect("32 bytes is the minimum and is accepted");
    assert_eq!(keys.current.kid, version);
}

// --- (b) rotation --------------------------------------------------------------------------

#[tokio::test]
async fn after_rotation_current_is_new_previous_is_old_and_old_tokens_still_verify() {
    let client = client();
    let (arn, v1) = create_string_secret(&client, &random_key(64)).await;
    let before = Tokens::hs256(load_sm(&client, &arn).await.expect("load v1"), settings());
    let old_token = before.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).expect("issue");
    assert_eq!(kid_of(&old_token.token), v1);

    let v2 = rotate(&client, &arn, &random_key(64)).await;
    assert_ne!(v1, v2);

    let keys = load_sm(&client, &arn).await.expect("load after rotation");
    assert_eq!(keys.current.kid, v2, "AWSCURRENT (the new version) signs");
    assert_eq!(
        keys.previous.as_ref().map(|k| k.kid.as_str()),
        Some(v1.as_str()),
        "AWSPREVIOUS still verifies"
    );

    let after = Tokens::hs256(keys, settings());
    let claims = after
        .verify(old_token.token.expose_secret())
        .expect("a token issued before rotation still verifies");
    assert_eq!(claims, old_token.claims);

    let new_token = after.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).expect("issue");
    assert_eq!(kid_of(&new_token.token), v2, "new tokens are signed with the new key");
    after
        .verify(new_token.token.expose_secret())
        .expect("a new token verifies");
    // Verifiers that still run with the old keys (warm instances) cannot check the new token:
    // the kid is unknown to them, which is a clean 401, not a crash.
    assert_eq!(
        before.verify(new_token.token.expose_secret()),
        Err(TokenError::UnknownKey)
    );
}

#[tokio::test]
async fn after_two_rotations_the_oldest_key_no_longer_verifies() {
    let client = client();
    let (arn, v1) = create_string_secret(&client, &random_key(64)).await;
    let first = Tokens::hs256(load_sm(&client, &arn).await.expect("load v1"), settings());
    let oldest = first.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).expect("issue");

    let v2 = rotate(&client, &arn, &random_key(64)).await;
    let v3 = rotate(&client, &arn, &random_key(64)).await;

    let keys = load_sm(&client, &arn).await.expect("load after two rotations");
    assert_eq!(keys.current.kid, v3);
    assert_eq!(keys.previous.as_ref().map(|k| k.kid.as_str()), Some(v2.as_str()));
    let now = Tokens::hs256(keys, settings());
    assert_eq!(
        now.verify(oldest.token.expose_secret()),
        Err(TokenError::UnknownKey),
        "a token signed with {v1} (neither AWSCURRENT nor AWSPREVIOUS) must not verify"
    );
}

// --- (c) short key -------------------------------------------------------------------------

#[tokio::test]
async fn a_31_byte_secret_is_refused_with_a_clear_message() {
    let client = client();
    let value = random_key(31);
    let (arn, _) = create_string_secret(&client, &value).await;
    let err = load_sm(&client, &arn)
        .await
        .expect_err("a 31-byte key must stop start-up");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("31") && msg.contains("32"),
        "the error names the length and the minimum: {msg}"
    );
    assert!(msg.contains("bytes"), "the error says bytes: {msg}");
    assert!(
        !msg.contains(&value),
        "the error must not contain the key itself: {msg}"
    );
}

#[tokio::test]
async fn a_short_previous_key_is_refused_too() {
    // No weak key may verify tokens, not even during rotation.
    let client = client();
    let (arn, _) = create_string_secret(&client, &random_key(16)).await;
    rotate(&client, &arn, &random_key(64)).await;
    let err = load_sm(&client, &arn)
        .await
        .expect_err("a short AWSPREVIOUS must not be accepted");
    let msg = format!("{err:#}");
    assert!(msg.contains("16") && msg.contains("32"), "{msg}");
}

// --- (d) missing / unreachable -------------------------------------------------------------

#[tokio::test]
async fn a_missing_secret_fails_with_no_fallback_key() {
    let client = client();
    let arn = missing_arn();
    let err = load_sm(&client, &arn)
        .await
        .expect_err("a missing secret must stop start-up");
    let msg = format!("{err:#}");
    assert!(msg.contains(&arn), "the error names the secret: {msg}");
    assert!(msg.contains("AWSCURRENT"), "the error names the stage: {msg}");
    assert!(
        msg.contains("ResourceNotFound"),
        "the error keeps the service's reason: {msg}"
    );
}

#[tokio::test]
async fn a_missing_secret_fails_even_when_env_keys_are_present() {
    // JWT_SECRET in the environment is not a fallback for a configured ARN.
    let client = client();
    let env = env_of(&[("JWT_SECRET", "an-env-key-that-must-not-be-used-0123456789")]);
    let source = KeySource::SecretsManager { arn: missing_arn() };
    load_keys(&source, &env, Some(&client))
        .await
        .expect_err("no fallback to JWT_SECRET");
}

#[tokio::test]
async fn no_client_for_a_secrets_manager_source_fails() {
    let source = KeySource::SecretsManager { arn: missing_arn() };
    let err = load_keys(&source, &no_env(), None).await.expect_err("no client");
    assert!(format!("{err:#}").contains("Secrets Manager"), "{err:#}");
    let source = DatabaseUrl::SecretsManager { arn: missing_arn() };
    load_database_url(&source, None::<&Client>)
        .await
        .expect_err("no client");
}

/// The local API and `todo-admin` read their secrets from the environment only ([`EnvOnly`]):
/// an ARN is refused with a message that says so, never read.
#[tokio::test]
async fn the_environment_only_store_refuses_every_arn() {
    let source = DatabaseUrl::SecretsManager { arn: missing_arn() };
    let err = load_database_url(&source, Some(&EnvOnly))
        .await
        .expect_err("environment only");
    assert!(format!("{err:#}").contains("environment only"), "{err:#}");
    let err = access::keys::load_keys(
        &api_tests::key_config(KeySource::SecretsManager { arn: missing_arn() }, &no_env()).expect("key config"),
        Some(&EnvOnly),
    )
    .await
    .expect_err("environment only");
    assert!(format!("{err:#}").contains("environment only"), "{err:#}");
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_quickly() {
    // A port nobody listens on: connection refused, retried a few times, then an error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = client_for(&format!("http://127.0.0.1:{port}"));
    let result = tokio::time::timeout(Duration::from_secs(30), load_sm(&client, &missing_arn())).await;
    let result = result.expect("an unreachable endpoint must fail, not hang");
    assert!(result.is_err(), "an unreachable endpoint must not yield a key");
}

// --- (e) binary secret ---------------------------------------------------------------------

#[tokio::test]
async fn a_binary_only_secret_is_refused() {
    let client = client();
    let out = client
        .create_secret()
        .name(unique_name("binary"))
        .secret_binary(Blob::new(random_key(64).into_bytes()))
        .send()
        .await
        .expect("create binary secret");
    let arn = out.arn().expect("arn").to_owned();
    let err = load_sm(&client, &arn)
        .await
        .expect_err("a SecretBinary-only secret has no usable key");
    let msg = format!("{err:#}");
    assert!(msg.contains("SecretString"), "the error says what is missing: {msg}");
}

// --- (f) database URL ----------------------------------------------------------------------

#[tokio::test]
async fn the_database_url_comes_from_its_secret() {
    let client = client();
    let url = format!(
        "postgres://app:{}@db.example.test:5432/todo?sslmode=require",
        random_key(24)
    );
    let out = client
        .create_secret()
        .name(unique_name("db"))
        .secret_string(&url)
        .send()
        .await
        .expect("create db secret");
    let arn = out.arn().expect("arn").to_owned();
    // The env's DATABASE_URL is not used when an ARN is configured.
    let env = env_of(&[
        ("DATABASE_URL", "postgres://wrong@127.0.0.1/wrong"),
        ("DATABASE_URL_SECRET_ARN", &arn),
    ]);
    let source = settings::DatabaseSettings::from_reader(env).expect("settings").database;
    assert!(matches!(&source, DatabaseUrl::SecretsManager { arn: a } if *a == arn));
    let got = load_database_url(&source, Some(&client)).await.expect("load the URL");
    assert_eq!(got.expose_secret(), url);

    // After rotation the current value is returned.
    let url2 = url.replace("db.example.test", "db2.example.test");
    rotate(&client, &arn, &url2).await;
    let got = load_database_url(&DatabaseUrl::SecretsManager { arn }, Some(&client))
        .await
        .expect("load the rotated URL");
    assert_eq!(got.expose_secret(), url2);
}

#[tokio::test]
async fn a_missing_database_url_secret_fails() {
    let client = client();
    let arn = missing_arn();
    let err = load_database_url(&DatabaseUrl::SecretsManager { arn: arn.clone() }, Some(&client))
        .await
        .expect_err("missing secret");
    assert!(format!("{err:#}").contains(&arn), "{err:#}");
}

// --- (g) the environment source ------------------------------------------------------------

#[tokio::test]
async fn env_source_without_jwt_secret_fails() {
    let err = load_keys(&KeySource::Env, &no_env(), None)
        .await
        .expect_err("no JWT_SECRET, no key");
    assert!(
        format!("{err:#}").contains("JWT_SECRET"),
        "the error names the variable: {err:#}"
    );
    // An empty value counts as unset.
    let err = load_keys(&KeySource::Env, &env_of(&[("JWT_SECRET", "  ")]), None)
        .await
        .expect_err("blank");
    assert!(format!("{err:#}").contains("JWT_SECRET"), "{err:#}");
}

#[tokio::test]
async fn env_source_with_a_10_byte_key_fails() {
    let err = load_keys(&KeySource::Env, &env_of(&[("JWT_SECRET", "0123456789")]), None)
        .await
        .expect_err("10 bytes is too short");
    let msg = format!("{err:#}");
    assert!(msg.contains("10") && msg.contains("32"), "{msg}");
    assert!(!msg.contains("0123456789"), "the error must not contain the key: {msg}");
}

#[tokio::test]
async fn env_source_with_a_short_previous_key_fails() {
    let env = env_of(&[
        ("JWT_SECRET", "a-perfectly-long-current-key-0123456789"),
        ("JWT_SECRET_PREVIOUS", "short"),
    ]);
    load_keys(&KeySource::Env, &env, None)
        .await
        .expect_err("a short JWT_SECRET_PREVIOUS is refused");
}

#[tokio::test]
async fn env_source_rotation_verifies_both_and_signs_with_current() {
    const OLD: &str = "the-old-key-for-local-runs-0123456789abcdef";
    const NEW: &str = "the-new-key-for-local-runs-0123456789abcdef";
    let old = Tokens::hs256(
        load_keys(&KeySource::Env, &env_of(&[("JWT_SECRET", OLD)]), None)
            .await
            .expect("old"),
        settings(),
    );
    let old_token = old.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).expect("issue");
    let keys = load_keys(
        &KeySource::Env,
        &env_of(&[("JWT_SECRET", NEW), ("JWT_SECRET_PREVIOUS", OLD)]),
        None,
    )
    .await
    .expect("new + previous");
    let old_kid = keys.previous.as_ref().map(|k| k.kid.clone());
    assert_eq!(
        old_kid.as_deref(),
        Some(kid_of(&old_token.token).as_str()),
        "fingerprint kids are stable"
    );
    assert_ne!(keys.current.kid, kid_of(&old_token.token));
    let new = Tokens::hs256(keys, settings());
    new.verify(old_token.token.expose_secret())
        .expect("the previous key still verifies");
    let new_token = new.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).expect("issue");
    assert_ne!(kid_of(&new_token.token), kid_of(&old_token.token));
}

#[test]
fn key_source_follows_jwt_secret_arn() {
    assert_eq!(api_tests::key_source(&no_env()), KeySource::Env);
    assert_eq!(
        api_tests::key_source(&env_of(&[("JWT_SECRET_ARN", "arn:x"), ("JWT_SECRET", "ignored")])),
        KeySource::SecretsManager { arn: "arn:x".into() }
    );
    // No database URL at all is a configuration problem, named.
    let err = settings::DatabaseSettings::from_reader(no_env()).expect_err("a URL is required");
    assert!(
        err.to_string()
            .contains("DATABASE_URL (or DATABASE_URL_SECRET_ARN) must be set"),
        "{err}"
    );
    let with_arn = settings::DatabaseSettings::from_reader(env_of(&[("DATABASE_URL_SECRET_ARN", "arn:y")]));
    assert!(matches!(
        with_arn.expect("valid").database,
        DatabaseUrl::SecretsManager { arn } if arn == "arn:y"
    ));
}
