//! Signing-key rotation and EdDSA mode against a local Secrets Manager emulator (moto) on
//! loopback: the rotation function driven through its four steps, the key loaders and their
//! reloads, start-up failures, and `GET /.well-known/jwks.json`.
//!
//! `scripts/test.sh` starts `moto_server` and exports `MOTO_ENDPOINT`; without it these tests fail
//! (they never skip). The SDK client is built from an explicit config, never from the process
//! environment (as in `secrets_emulator`). Every test uses its own secrets.
//!
//! How a rotation is emulated: moto invokes no Lambda, so the tests play Secrets Manager's part.
//! `RotateSecret` with a `RotationLambdaARN` that does not exist makes moto stage an empty
//! `AWSPENDING` version under the request token (exactly what the real service does before it
//! invokes `createSecret`) and then fail with `ResourceNotFoundException` when it looks up the
//! Lambda. The tests then call `rotate_key::handle` with `createSecret`, `setSecret`,
//! `testSecret` and `finishSecret` and that token, like the service would. Afterwards they clear
//! the `AWSPENDING` label the function leaves on the new current version: the real service
//! accepts the next rotation in that state, but moto 5.2 refuses it ("Previous rotation request
//! is still in progress": its check is inverted).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use access::keys::KeySource;
use access::roles::Role;
use access::tokens::{
    Jwks, KeySet, Keys, Reload, SigningKey, TokenError, TokenSettings, Tokens, UNKNOWN_KID_RELOAD_INTERVAL,
};
use api_tests::tokens_from_source;
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use rotate_key::{Rotation, RotationEvent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use settings::EnvReader;
use uuid::Uuid;

use crate::helpers::{Resp, get, login_ok, send, signup_ok};

// --- the emulator ----------------------------------------------------------------------------

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

/// An SDK client for the emulator, configured explicitly (no process environment, no profile).
fn client() -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    Client::from_conf(config)
}

fn sdk_error<E: std::error::Error + 'static>(e: E) -> String {
    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()
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

/// The environment of a function in HS256 mode (the default: nothing set).
fn hs256_env() -> EnvReader<'static> {
    env_of(&[])
}

/// The environment of a function in EdDSA mode.
fn eddsa_env() -> EnvReader<'static> {
    env_of(&[("JWT_ALGORITHM", "EdDSA")])
}

fn settings() -> TokenSettings {
    store::state::token_settings(&api_tests::test_config())
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
async fn create_secret(client: &Client, what: &str, value: &str) -> (String, String) {
    let out = client
        .create_secret()
        .name(format!("todo-api-test/rotation/{what}-{}", Uuid::new_v4()))
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create_secret on moto failed: {}", sdk_error(e)));
    (
        out.arn().expect("create_secret returns an ARN").to_owned(),
        out.version_id().expect("create_secret returns a VersionId").to_owned(),
    )
}

/// An ARN of a secret that does not exist (well-formed, in moto's default account).
fn missing_arn() -> String {
    format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:todo-api-test/missing-{}-AbCdEf",
        Uuid::new_v4()
    )
}

/// The staging labels of every version of `arn`.
async fn stages(client: &Client, arn: &str) -> Vec<(String, BTreeSet<String>)> {
    let described = client
        .describe_secret()
        .secret_id(arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe_secret: {}", sdk_error(e)));
    let mut out: Vec<(String, BTreeSet<String>)> = described
        .version_ids_to_stages()
        .map(|m| {
            m.iter()
                .map(|(v, s)| (v.clone(), s.iter().cloned().collect()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The versions of `arn` that carry `stage`.
async fn versions_at(client: &Client, arn: &str, stage: &str) -> Vec<String> {
    stages(client, arn)
        .await
        .into_iter()
        .filter(|(_, s)| s.contains(stage))
        .map(|(v, _)| v)
        .collect()
}

/// The value of `arn` at a version.
async fn value_of(client: &Client, arn: &str, version: &str) -> String {
    client
        .get_secret_value()
        .secret_id(arn)
        .version_id(version)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get_secret_value {version}: {}", sdk_error(e)))
        .secret_string()
        .expect("a SecretString")
        .to_owned()
}

/// The JWKS document in `arn` (AWSCURRENT).
async fn published_jwks(client: &Client, arn: &str) -> Value {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get_secret_value JWKS: {}", sdk_error(e)));
    serde_json::from_str(out.secret_string().expect("a SecretString")).expect("the JWKS secret is JSON")
}

fn jwks_kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .expect("keys[]")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

const NO_SUCH_LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:todo-api-test-no-such-rotation-fn";
const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// Secrets Manager's start of a rotation: a new version id staged `AWSPENDING` with no value yet.
/// (See the module docs: moto stages it, then fails to find the Lambda.)
async fn start_rotation(client: &Client, arn: &str) -> String {
    let token = Uuid::new_v4().to_string();
    let result = client
        .rotate_secret()
        .secret_id(arn)
        .client_request_token(&token)
        .rotation_lambda_arn(NO_SUCH_LAMBDA)
        .send()
        .await;
    if let Err(e) = result {
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()),
            "RotateSecret failed for another reason than the missing Lambda: {}",
            sdk_error(e)
        );
    }
    let staged = stages(client, arn).await;
    assert!(
        staged
            .iter()
            .any(|(v, s)| v == &token && s.iter().eq(["AWSPENDING"].iter())),
        "RotateSecret staged the token as AWSPENDING before any step ran: {staged:?}"
    );
    token
}

/// One step of the rotation function, with the event Secrets Manager sends.
async fn step(client: &Client, rotation: &Rotation, arn: &str, token: &str, step: &str) -> anyhow::Result<()> {
    rotate_key::handle(
        client,
        rotation,
        &RotationEvent {
            step: step.to_owned(),
            secret_id: arn.to_owned(),
            token: token.to_owned(),
        },
    )
    .await
}

/// What the service does once `finishSecret` succeeded, for moto's sake: drop the `AWSPENDING`
/// label that stays on the new current version.
async fn end_rotation(client: &Client, arn: &str, token: &str) {
    client
        .update_secret_version_stage()
        .secret_id(arn)
        .version_stage("AWSPENDING")
        .remove_from_version_id(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("clearing AWSPENDING: {}", sdk_error(e)));
}

/// A whole rotation: start, the four steps, end. Returns the new version id.
async fn rotate(client: &Client, rotation: &Rotation, arn: &str) -> String {
    let token = start_rotation(client, arn).await;
    for s in STEPS {
        step(client, rotation, arn, &token, s)
            .await
            .unwrap_or_else(|e| panic!("{s} failed: {e:#}"));
    }
    end_rotation(client, arn, &token).await;
    token
}

fn hs256() -> Rotation {
    Rotation {
        algorithm: Algorithm::HS256,
        jwks_arn: None,
    }
}

fn eddsa(jwks_arn: &str) -> Rotation {
    Rotation {
        algorithm: Algorithm::EdDSA,
        jwks_arn: Some(jwks_arn.to_owned()),
    }
}

/// An HS256 signing-key secret as the template makes it (64 alphanumerics).
async fn hs256_secret(client: &Client) -> (String, String) {
    create_secret(client, "hs256", &random_key(64)).await
}

/// The EdDSA secrets as the template makes them: the private key holds a 32-character
/// placeholder until the first rotation, the JWKS secret `{"keys":[]}`.
async fn eddsa_secrets(client: &Client) -> (String, String) {
    let (private_arn, _) = create_secret(client, "ed25519", &random_key(32)).await;
    let (jwks_arn, _) = create_secret(client, "jwks", r#"{"keys":[]}"#).await;
    (private_arn, jwks_arn)
}

async fn hs256_tokens(client: &Client, arn: &str) -> Tokens {
    tokens_from_source(
        KeySource::SecretsManager { arn: arn.to_owned() },
        &hs256_env(),
        Some(client.clone()),
        settings(),
    )
    .await
    .unwrap_or_else(|e| panic!("HS256 keys from {arn}: {e:#}"))
}

/// An EdDSA issuer (signup, login, refresh): the private key, verifying with the JWKS too.
async fn eddsa_issuer(client: &Client, private_arn: &str, jwks_arn: &str) -> Tokens {
    tokens_from_source(
        KeySource::PrivateKey {
            arn: private_arn.to_owned(),
            jwks_arn: Some(jwks_arn.to_owned()),
        },
        &eddsa_env(),
        Some(client.clone()),
        settings(),
    )
    .await
    .unwrap_or_else(|e| panic!("EdDSA issuer keys: {e:#}"))
}

/// An EdDSA verifier (the authorizer, the data functions): the JWKS alone.
async fn eddsa_verifier(client: &Client, jwks_arn: &str) -> Tokens {
    tokens_from_source(
        KeySource::Jwks {
            arn: jwks_arn.to_owned(),
        },
        &eddsa_env(),
        Some(client.clone()),
        settings(),
    )
    .await
    .unwrap_or_else(|e| panic!("EdDSA verifier keys: {e:#}"))
}

fn issue(tokens: &Tokens) -> String {
    tokens
        .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User)
        .expect("issue a token")
        .token
        .expose_secret()
        .to_owned()
}

fn header_of(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).expect("a JWT header")
}

fn kid_of(token: &str) -> String {
    header_of(token).kid.expect("tokens carry a kid")
}

/// The authorizer's own entry point on a token (as the local API and Lambda call it).
async fn authorize(tokens: &Tokens, token: &str) -> bool {
    let mut event = ApiGatewayCustomAuthorizerRequest::default();
    event.authorization_token = Some(format!("Bearer {token}"));
    event.method_arn = Some("arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/tasks".to_owned());
    authorizer::handle_fresh(tokens, &event).await.is_ok()
}

/// Check one JWK of an Ed25519 JWKS: exactly the public members, a 32-byte `x`.
#[track_caller]
fn assert_public_ed25519_jwk(jwk: &Value) {
    let obj = jwk.as_object().expect("a JWK is an object");
    let members: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from(["kty", "crv", "x", "kid", "alg", "use"]),
        "only public members: {jwk}"
    );
    assert_eq!(jwk["kty"], "OKP", "{jwk}");
    assert_eq!(jwk["crv"], "Ed25519", "{jwk}");
    assert_eq!(jwk["alg"], "EdDSA", "{jwk}");
    assert_eq!(jwk["use"], "sig", "{jwk}");
    let x = jwk["x"].as_str().expect("x");
    assert_eq!(x.len(), 43, "x is 32 bytes in unpadded base64url: {jwk}");
    assert_eq!(URL_SAFE_NO_PAD.decode(x).map(|b| b.len()).ok(), Some(32), "{jwk}");
    assert!(!jwk["kid"].as_str().expect("kid").is_empty(), "{jwk}");
}

/// Verify `token` with nothing but `jwks` (what another service would do), returning its claims.
fn verify_with_jwks(jwks: &Value, token: &str) -> Result<Value, String> {
    let header = header_of(token);
    if header.alg != Algorithm::EdDSA {
        return Err(format!("not EdDSA: {:?}", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().ok_or("no x")?)
        .map_err(|e| format!("bad x: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["todo-api"]);
    validation.set_issuer(&["todo-api"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| format!("{e}"))
}

// --- HS256 rotation --------------------------------------------------------------------------

#[tokio::test]
async fn hs256_rotation_makes_a_fresh_current_key_and_old_tokens_verify_until_their_key_leaves_previous() {
    let client = client();
    let (arn, v1) = hs256_secret(&client).await;
    let first_value = value_of(&client, &arn, &v1).await;

    // A warm instance: keys loaded before any rotation.
    let warm = hs256_tokens(&client, &arn).await;
    let t1 = issue(&warm);
    assert_eq!(kid_of(&t1), v1, "the kid is the key's Secrets Manager version");

    // First rotation.
    let v2 = rotate(&client, &hs256(), &arn).await;
    assert_eq!(versions_at(&client, &arn, "AWSCURRENT").await, vec![v2.clone()]);
    assert_eq!(versions_at(&client, &arn, "AWSPREVIOUS").await, vec![v1.clone()]);
    let second_value = value_of(&client, &arn, &v2).await;
    assert_eq!(second_value.len(), 64, "the new key is 64 characters");
    assert!(
        second_value.bytes().all(|b| b.is_ascii_alphanumeric()),
        "the new key is alphanumeric"
    );
    assert_ne!(second_value, first_value, "a fresh key, not the old one");

    // A cold start now loads current + previous, signs with the new key, still verifies old tokens.
    let cold = hs256_tokens(&client, &arn).await;
    assert_eq!(cold.snapshot().kids(), vec![v2.clone(), v1.clone()]);
    cold.verify(&t1)
        .expect("a token from before the rotation still verifies");
    let t2 = issue(&cold);
    assert_eq!(kid_of(&t2), v2, "new tokens carry the new kid");
    cold.verify(&t2).expect("a new token verifies");

    // The warm instance keeps signing with its cached key until it reloads (the cache TTL); its
    // tokens still verify everywhere, since that key is AWSPREVIOUS now.
    assert_eq!(kid_of(&issue(&warm)), v1);
    cold.verify(&issue(&warm)).expect("tokens of a warm signer verify");
    warm.reload_if_older_than(Duration::ZERO).await;
    assert_eq!(
        kid_of(&issue(&warm)),
        v2,
        "after its reload the warm instance signs with the new key"
    );
    warm.verify(&t1).expect("and still verifies the old key's tokens");
    warm.verify(&t2).expect("and the new key's");
    assert!(authorize(&warm, &t1).await && authorize(&warm, &t2).await);

    // Second rotation: v1 leaves AWSPREVIOUS, and its tokens are refused everywhere.
    let v3 = rotate(&client, &hs256(), &arn).await;
    assert_eq!(versions_at(&client, &arn, "AWSCURRENT").await, vec![v3.clone()]);
    assert_eq!(versions_at(&client, &arn, "AWSPREVIOUS").await, vec![v2.clone()]);
    assert_ne!(value_of(&client, &arn, &v3).await, second_value);
    let cold = hs256_tokens(&client, &arn).await;
    assert_eq!(cold.snapshot().kids(), vec![v3.clone(), v2.clone()]);
    assert_eq!(
        cold.verify(&t1),
        Err(TokenError::UnknownKey),
        "a key older than the previous one"
    );
    assert_eq!(
        cold.verify_fresh(&t1).await,
        Err(TokenError::UnknownKey),
        "a reload does not bring it back"
    );
    assert!(!authorize(&cold, &t1).await);
    cold.verify(&t2).expect("the previous key still verifies");
    assert_eq!(kid_of(&issue(&cold)), v3);
    warm.reload_if_older_than(Duration::ZERO).await;
    assert_eq!(warm.verify(&t1), Err(TokenError::UnknownKey));
    warm.verify(&t2).expect("previous");
}

#[tokio::test]
async fn hs256_rotation_steps_are_idempotent() {
    let client = client();
    let (arn, v1) = hs256_secret(&client).await;
    let rotation = hs256();
    let token = start_rotation(&client, &arn).await;

    // createSecret twice (Secrets Manager retries steps): one pending version, one value.
    step(&client, &rotation, &arn, &token, "createSecret")
        .await
        .expect("createSecret");
    let pending = value_of(&client, &arn, &token).await;
    assert_eq!(pending.len(), 64);
    step(&client, &rotation, &arn, &token, "createSecret")
        .await
        .expect("createSecret again");
    assert_eq!(versions_at(&client, &arn, "AWSPENDING").await, vec![token.clone()]);
    assert_eq!(
        value_of(&client, &arn, &token).await,
        pending,
        "a second createSecret keeps the pending key"
    );
    assert_eq!(
        stages(&client, &arn).await.len(),
        2,
        "{:?}",
        stages(&client, &arn).await
    );

    // Until finishSecret nothing changes for the loaders: the pending key does not sign.
    assert_eq!(hs256_tokens(&client, &arn).await.snapshot().kids(), vec![v1.clone()]);

    for s in [
        "setSecret",
        "setSecret",
        "testSecret",
        "testSecret",
        "finishSecret",
        "finishSecret",
    ] {
        step(&client, &rotation, &arn, &token, s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e:#}"));
    }
    assert_eq!(versions_at(&client, &arn, "AWSCURRENT").await, vec![token.clone()]);
    assert_eq!(versions_at(&client, &arn, "AWSPREVIOUS").await, vec![v1.clone()]);
    assert_eq!(stages(&client, &arn).await.len(), 2);
    assert_eq!(
        value_of(&client, &arn, &token).await,
        pending,
        "the staged key became current"
    );
    assert_eq!(
        hs256_tokens(&client, &arn).await.snapshot().kids(),
        vec![token.clone(), v1]
    );
}

#[tokio::test]
async fn rotation_steps_refuse_tokens_that_are_not_staged_and_unknown_steps() {
    let client = client();
    let (arn, v1) = hs256_secret(&client).await;
    let rotation = hs256();

    // A token that names no version of the secret.
    let err = step(&client, &rotation, &arn, &Uuid::new_v4().to_string(), "createSecret")
        .await
        .expect_err("a token that is no version of the secret");
    assert!(format!("{err:#}").contains("not a version"), "{err:#}");
    assert_eq!(stages(&client, &arn).await.len(), 1, "nothing was written");

    // A version that is neither AWSPENDING nor AWSCURRENT (the previous one).
    let v2 = rotate(&client, &rotation, &arn).await;
    for s in STEPS {
        let err = step(&client, &rotation, &arn, &v1, s)
            .await
            .expect_err("AWSPREVIOUS is not staged for rotation");
        assert!(format!("{err:#}").contains("not staged"), "{s}: {err:#}");
    }
    assert_eq!(versions_at(&client, &arn, "AWSCURRENT").await, vec![v2]);

    // An unknown step, and a secret that does not exist.
    let token = start_rotation(&client, &arn).await;
    step(&client, &rotation, &arn, &token, "dropSecret")
        .await
        .expect_err("unknown step");
    step(&client, &rotation, &missing_arn(), &token, "createSecret")
        .await
        .expect_err("missing secret");
}

// --- EdDSA rotation --------------------------------------------------------------------------

#[tokio::test]
async fn eddsa_rotation_publishes_the_public_key_before_it_signs() {
    let client = client();
    let (private_arn, jwks_arn) = eddsa_secrets(&client).await;
    let rotation = eddsa(&jwks_arn);

    // The template's placeholder is no key: nothing can start before the first rotation.
    for source in [
        KeySource::PrivateKey {
            arn: private_arn.clone(),
            jwks_arn: Some(jwks_arn.clone()),
        },
        KeySource::Jwks { arn: jwks_arn.clone() },
    ] {
        tokens_from_source(source.clone(), &eddsa_env(), Some(client.clone()), settings())
            .await
            .expect_err(&format!("{source:?} before the first rotation"));
    }

    // First rotation, step by step.
    let k1 = start_rotation(&client, &private_arn).await;
    step(&client, &rotation, &private_arn, &k1, "createSecret")
        .await
        .expect("createSecret");
    let pem = value_of(&client, &private_arn, &k1).await;
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----") && pem.trim_end().ends_with("-----END PRIVATE KEY-----"),
        "createSecret stages a PKCS#8 PEM"
    );
    SigningKey::ed25519_pem("x", &SecretString::from(pem.clone())).expect("an Ed25519 key");
    assert_eq!(
        published_jwks(&client, &jwks_arn).await,
        json!({ "keys": [] }),
        "not yet published"
    );

    step(&client, &rotation, &private_arn, &k1, "setSecret")
        .await
        .expect("setSecret");
    // Published before finishSecret: verifiers can know the key before anything is signed with it.
    let jwks = published_jwks(&client, &jwks_arn).await;
    assert_eq!(jwks_kids(&jwks), BTreeSet::from([k1.clone()]), "{jwks}");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .for_each(assert_public_ed25519_jwk);
    assert!(!jwks.to_string().contains("PRIVATE"), "{jwks}");
    let early = eddsa_verifier(&client, &jwks_arn).await;
    assert_eq!(early.snapshot().kids(), vec![k1.clone()]);

    step(&client, &rotation, &private_arn, &k1, "testSecret")
        .await
        .expect("testSecret");
    step(&client, &rotation, &private_arn, &k1, "finishSecret")
        .await
        .expect("finishSecret");
    end_rotation(&client, &private_arn, &k1).await;
    assert_eq!(versions_at(&client, &private_arn, "AWSCURRENT").await, vec![k1.clone()]);

    // The issuer signs with kid = the version; the JWKS alone verifies.
    let issuer = eddsa_issuer(&client, &private_arn, &jwks_arn).await;
    let t1 = issue(&issuer);
    let header = header_of(&t1);
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(k1.as_str()));
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    early
        .verify(&t1)
        .expect("a verifier that loaded between setSecret and finishSecret");
    let verifier = eddsa_verifier(&client, &jwks_arn).await;
    verifier.verify(&t1).expect("the JWKS verifies the issuer's token");
    assert!(authorize(&verifier, &t1).await);
    verify_with_jwks(&published_jwks(&client, &jwks_arn).await, &t1).expect("another service, from the JWKS alone");

    // The verifier holds public keys only: it cannot sign, and what it would serve is public.
    let err = verifier
        .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User)
        .expect_err("a JWKS verifier cannot sign");
    assert!(format!("{err:#}").contains("cannot sign"), "{err:#}");
    let served = serde_json::to_value(verifier.snapshot().jwks()).expect("JWKS to JSON");
    assert_eq!(served, published_jwks(&client, &jwks_arn).await);
    served["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .for_each(assert_public_ed25519_jwk);
    assert!(!format!("{verifier:?}").contains("PRIVATE"));

    // Second rotation: the JWKS holds the new and the previous key, published before finish.
    let k2 = start_rotation(&client, &private_arn).await;
    for s in ["createSecret", "setSecret"] {
        step(&client, &rotation, &private_arn, &k2, s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e:#}"));
    }
    assert_eq!(
        jwks_kids(&published_jwks(&client, &jwks_arn).await),
        BTreeSet::from([k1.clone(), k2.clone()])
    );
    assert_eq!(
        kid_of(&issue(&eddsa_issuer(&client, &private_arn, &jwks_arn).await)),
        k1,
        "k2 signs nothing yet"
    );
    for s in ["testSecret", "finishSecret"] {
        step(&client, &rotation, &private_arn, &k2, s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e:#}"));
    }
    end_rotation(&client, &private_arn, &k2).await;
    let jwks = published_jwks(&client, &jwks_arn).await;
    assert_eq!(
        jwks_kids(&jwks),
        BTreeSet::from([k1.clone(), k2.clone()]),
        "exactly the two newest keys"
    );
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .for_each(assert_public_ed25519_jwk);
    let issuer = eddsa_issuer(&client, &private_arn, &jwks_arn).await;
    let t2 = issue(&issuer);
    assert_eq!(kid_of(&t2), k2);
    issuer
        .verify(&t1)
        .expect("the issuer verifies the previous key from the JWKS");
    let verifier = eddsa_verifier(&client, &jwks_arn).await;
    verifier.verify(&t1).expect("previous key");
    verifier.verify(&t2).expect("current key");
    verify_with_jwks(&jwks, &t1).expect("previous key from the JWKS alone");
    verify_with_jwks(&jwks, &t2).expect("current key from the JWKS alone");

    // Third rotation: k1 leaves the JWKS and its tokens are refused.
    let k3 = rotate(&client, &rotation, &private_arn).await;
    let jwks = published_jwks(&client, &jwks_arn).await;
    assert_eq!(
        jwks_kids(&jwks),
        BTreeSet::from([k2.clone(), k3.clone()]),
        "exactly the two newest keys"
    );
    let verifier = eddsa_verifier(&client, &jwks_arn).await;
    assert_eq!(verifier.verify(&t1), Err(TokenError::UnknownKey));
    assert_eq!(verifier.verify_fresh(&t1).await, Err(TokenError::UnknownKey));
    assert!(verify_with_jwks(&jwks, &t1).is_err());
    verifier.verify(&t2).expect("previous key");
    let issuer = eddsa_issuer(&client, &private_arn, &jwks_arn).await;
    assert_eq!(issuer.verify(&t1), Err(TokenError::UnknownKey));
    assert_eq!(kid_of(&issue(&issuer)), k3);
}

#[tokio::test]
async fn eddsa_rotation_steps_are_idempotent() {
    let client = client();
    let (private_arn, jwks_arn) = eddsa_secrets(&client).await;
    let rotation = eddsa(&jwks_arn);
    let k1 = rotate(&client, &rotation, &private_arn).await;

    let k2 = start_rotation(&client, &private_arn).await;
    step(&client, &rotation, &private_arn, &k2, "createSecret")
        .await
        .expect("createSecret");
    let pem = value_of(&client, &private_arn, &k2).await;
    for s in STEPS {
        for _ in 0..2 {
            step(&client, &rotation, &private_arn, &k2, s)
                .await
                .unwrap_or_else(|e| panic!("{s} (repeated): {e:#}"));
        }
    }
    assert_eq!(value_of(&client, &private_arn, &k2).await, pem, "one key per rotation");
    assert_eq!(versions_at(&client, &private_arn, "AWSCURRENT").await, vec![k2.clone()]);
    assert_eq!(
        versions_at(&client, &private_arn, "AWSPREVIOUS").await,
        vec![k1.clone()]
    );
    assert_eq!(
        jwks_kids(&published_jwks(&client, &jwks_arn).await),
        BTreeSet::from([k1, k2.clone()])
    );
    let issuer = eddsa_issuer(&client, &private_arn, &jwks_arn).await;
    let t = issue(&issuer);
    assert_eq!(kid_of(&t), k2);
    eddsa_verifier(&client, &jwks_arn).await.verify(&t).expect("verifies");
}

#[tokio::test]
async fn eddsa_set_secret_needs_the_jwks_secret() {
    let client = client();
    let (private_arn, _) = eddsa_secrets(&client).await;
    let token = start_rotation(&client, &private_arn).await;
    let no_jwks = Rotation {
        algorithm: Algorithm::EdDSA,
        jwks_arn: None,
    };
    step(&client, &no_jwks, &private_arn, &token, "createSecret")
        .await
        .expect("createSecret");
    let err = step(&client, &no_jwks, &private_arn, &token, "setSecret")
        .await
        .expect_err("nowhere to publish the public key");
    assert!(format!("{err:#}").contains("JWT_JWKS_ARN"), "{err:#}");
}

// --- reloads ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_verifier_loaded_before_a_rotation_learns_the_new_kid_by_reloading() {
    let client = client();
    let (arn, v1) = hs256_secret(&client).await;
    let verifier = hs256_tokens(&client, &arn).await;
    let old = issue(&verifier);

    let v2 = rotate(&client, &hs256(), &arn).await;
    // An issuer that starts after the rotation signs with the new key.
    let issuer = hs256_tokens(&client, &arn).await;
    let new = issue(&issuer);
    assert_eq!(kid_of(&new), v2);
    assert_eq!(
        verifier.verify(&new),
        Err(TokenError::UnknownKey),
        "not known without a reload"
    );

    // Unknown-kid reloads are at most one per UNKNOWN_KID_RELOAD_INTERVAL since the last load.
    tokio::time::sleep(UNKNOWN_KID_RELOAD_INTERVAL + Duration::from_millis(300)).await;
    let claims = verifier
        .verify_fresh(&new)
        .await
        .expect("an unknown kid makes the verifier reload, and the new key verifies");
    assert_eq!(claims.role, Role::User);
    assert_eq!(verifier.snapshot().kids(), vec![v2, v1]);
    verifier
        .verify(&old)
        .expect("the previous key still verifies after the reload");
    assert!(authorize(&verifier, &new).await && authorize(&verifier, &old).await);
}

/// A verifier that (cold-)started a moment before a rotation must accept the tokens of an issuer
/// that started a moment after it: "a rotation causes no failed request".
#[tokio::test]
async fn a_verifier_started_just_before_a_rotation_accepts_the_new_kid_at_once() {
    let client = client();
    let (arn, _) = hs256_secret(&client).await;
    let verifier = hs256_tokens(&client, &arn).await;
    let v2 = rotate(&client, &hs256(), &arn).await;
    let issuer = hs256_tokens(&client, &arn).await;
    let new = issue(&issuer);
    assert_eq!(kid_of(&new), v2);
    assert!(
        authorize(&verifier, &new).await,
        "a token signed with the new key was refused by an instance that loaded its keys just \
         before the rotation: the unknown-kid reload is rate-limited from the cold start on \
         ({:?}), so for up to {UNKNOWN_KID_RELOAD_INTERVAL:?} after a rotation this instance \
         answers 401 to fresh tokens",
        verifier.verify_fresh(&new).await
    );
}

/// A `Reload` that counts its calls and returns the HS256 test keys (which know no other kid).
fn counting_reload(calls: Arc<AtomicUsize>, fail: bool) -> Reload {
    Box::new(move || {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if fail {
                anyhow::bail!("Secrets Manager is down");
            }
            Ok(Keys::from_set(api_tests::test_keys())?)
        })
    })
}

/// An HS256 token signed with the test secret, naming `kid`.
fn token_with_kid(kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid.to_owned());
    let now = access::tokens::now_secs();
    let claims = json!({
        "iss": "todo-api", "aud": "todo-api", "sub": Uuid::new_v4(), "sid": Uuid::new_v4(),
        "role": "user", "iat": now, "nbf": now, "exp": now + 300, "jti": Uuid::new_v4(),
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(api_tests::TEST_JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// 50 concurrent `verify_fresh` calls, each naming a random unknown kid; all must be refused.
async fn burst_of_unknown_kids(tokens: &Arc<Tokens>) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let tokens = tokens.clone();
        set.spawn(async move {
            let token = token_with_kid(&Uuid::new_v4().to_string());
            tokens.verify_fresh(&token).await
        });
    }
    while let Some(result) = set.join_next().await {
        assert_eq!(result.expect("task"), Err(TokenError::UnknownKey));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_reloads_are_rate_limited() {
    let calls = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Tokens::new(
        Keys::from_set(api_tests::test_keys()).expect("keys"),
        settings(),
        Some(counting_reload(calls.clone(), false)),
    ));

    // Known kids never reload (the cache TTL is minutes away).
    let good = issue(&tokens);
    for _ in 0..20 {
        tokens.verify_fresh(&good).await.expect("a good token");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a known kid caused a reload");

    // A burst of forged kids right after start-up: at most one reload.
    burst_of_unknown_kids(&tokens).await;
    let first = calls.load(Ordering::SeqCst);
    assert!(first <= 1, "{first} reloads for 50 unknown kids within the interval");

    // Once the interval has passed, the next burst reloads exactly once more.
    tokio::time::sleep(UNKNOWN_KID_RELOAD_INTERVAL + Duration::from_millis(300)).await;
    burst_of_unknown_kids(&tokens).await;
    let second = calls.load(Ordering::SeqCst) - first;
    assert_eq!(second, 1, "50 unknown kids after the interval: {second} reloads");
    tokens.verify_fresh(&good).await.expect("still verifies");
}

#[tokio::test]
async fn a_failed_reload_keeps_the_keys() {
    let calls = Arc::new(AtomicUsize::new(0));
    let tokens = Tokens::new(
        Keys::from_set(api_tests::test_keys()).expect("keys"),
        settings(),
        Some(counting_reload(calls.clone(), true)),
    );
    let good = issue(&tokens);
    tokens.reload_if_older_than(Duration::ZERO).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokens.verify(&good).expect("a failed reload logs nobody out");
    assert_eq!(
        kid_of(&issue(&tokens)),
        api_tests::TEST_KID,
        "and the signing key stays"
    );
}

#[tokio::test]
async fn a_reload_cannot_switch_the_algorithm() {
    // Keys reloaded from a secret that now holds another kind of key are not used.
    let reload: Reload = Box::new(|| Box::pin(async { Ok(Keys::from_set(api_tests::test_ed25519_keys())?) }));
    let tokens = Tokens::new(
        Keys::from_set(api_tests::test_keys()).expect("keys"),
        settings(),
        Some(reload),
    );
    let good = issue(&tokens);
    tokens.reload_if_older_than(Duration::ZERO).await;
    tokens.verify(&good).expect("the HS256 keys stay");
    assert_eq!(header_of(&issue(&tokens)).alg, Algorithm::HS256);
}

// --- start-up failures -----------------------------------------------------------------------

async fn startup(source: KeySource, env: &EnvReader<'_>, client: &Client) -> anyhow::Result<Tokens> {
    tokens_from_source(source, env, Some(client.clone()), settings()).await
}

#[tokio::test]
async fn a_missing_key_stops_start_up() {
    let client = client();
    let (private_arn, jwks_arn) = eddsa_secrets(&client).await;
    rotate(&client, &eddsa(&jwks_arn), &private_arn).await;
    eddsa_issuer(&client, &private_arn, &jwks_arn).await; // the real ones load
    let cases = [
        (KeySource::SecretsManager { arn: missing_arn() }, hs256_env()),
        (
            KeySource::PrivateKey {
                arn: missing_arn(),
                jwks_arn: Some(jwks_arn.clone()),
            },
            eddsa_env(),
        ),
        (
            KeySource::PrivateKey {
                arn: private_arn.clone(),
                jwks_arn: Some(missing_arn()),
            },
            eddsa_env(),
        ),
        (KeySource::Jwks { arn: missing_arn() }, eddsa_env()),
    ];
    for (source, env) in cases {
        let err = startup(source.clone(), &env, &client)
            .await
            .expect_err(&format!("{source:?} must not start"));
        let msg = format!("{err:#}");
        assert!(msg.contains("missing-"), "the error names the secret: {msg}");
        assert!(msg.contains("ResourceNotFound"), "{msg}");
    }
    // No client, no keys (and no fallback to the environment).
    let env = env_of(&[("JWT_SECRET", "an-env-key-that-must-not-be-used-0123456789")]);
    tokens_from_source(KeySource::SecretsManager { arn: missing_arn() }, &env, None, settings())
        .await
        .expect_err("no client");
}

#[tokio::test]
async fn a_short_or_unreadable_key_stops_start_up() {
    let client = client();
    // A 31-byte HMAC key.
    let (short, _) = create_secret(&client, "short", &random_key(31)).await;
    let err = startup(KeySource::SecretsManager { arn: short }, &hs256_env(), &client)
        .await
        .expect_err("31 bytes");
    let msg = format!("{err:#}");
    assert!(msg.contains("31") && msg.contains("32"), "{msg}");
    // 32 bytes is enough.
    let (enough, _) = create_secret(&client, "enough", &random_key(32)).await;
    startup(KeySource::SecretsManager { arn: enough }, &hs256_env(), &client)
        .await
        .expect("32 bytes");

    // A binary-only secret has no key string.
    let out = client
        .create_secret()
        .name(format!("todo-api-test/rotation/binary-{}", Uuid::new_v4()))
        .secret_binary(Blob::new(random_key(64).into_bytes()))
        .send()
        .await
        .expect("create a binary secret");
    let binary = out.arn().expect("arn").to_owned();
    startup(KeySource::SecretsManager { arn: binary.clone() }, &hs256_env(), &client)
        .await
        .expect_err("binary HS256 secret");

    // Private keys that are no Ed25519 PKCS#8 PEM.
    let (_, jwks_arn) = eddsa_secrets(&client).await;
    let real_pem = api_tests::test_ed25519_pem();
    // The same DER with the algorithm OID changed from Ed25519 (1.3.101.112) to X25519 (…110),
    // and the DER cut short.
    let der = {
        let body: String = real_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM body")
    };
    let to_pem = |der: &[u8]| {
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let oid = der
        .windows(3)
        .position(|w| w == [0x2b, 0x65, 0x70])
        .expect("the Ed25519 OID");
    let mut x25519 = der.clone();
    x25519[oid + 2] = 0x6e;
    let garbled = to_pem(&x25519);
    let cut = to_pem(&der[..der.len() - 5]);
    let truncated: String = real_pem.lines().take(2).collect::<Vec<_>>().join("\n");
    let not_pem = [
        random_key(32),                        // the template's placeholder
        real_pem.replace("PRIVATE", "PUBLIC"), // another PEM type
        garbled,                               // an X25519 key
        cut,                                   // truncated DER
        truncated,                             // no end line
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".to_owned(),
    ];
    for value in not_pem {
        let (arn, _) = create_secret(&client, "not-pem", &value).await;
        let err = startup(
            KeySource::PrivateKey {
                arn,
                jwks_arn: Some(jwks_arn.clone()),
            },
            &eddsa_env(),
            &client,
        )
        .await
        .expect_err(&format!("private key {value:?}"));
        assert!(
            !format!("{err:#}").contains(&value),
            "the error must not echo the key: {err:#}"
        );
    }
    startup(
        KeySource::PrivateKey {
            arn: binary,
            jwks_arn: Some(jwks_arn.clone()),
        },
        &eddsa_env(),
        &client,
    )
    .await
    .expect_err("binary private key");
}

#[tokio::test]
async fn an_empty_or_invalid_jwks_stops_start_up() {
    let client = client();
    let (_, x) = {
        let keys = Keys::from_set(api_tests::test_ed25519_keys()).expect("keys");
        let jwks = keys.jwks();
        (jwks.clone(), jwks.keys[0].x.clone())
    };
    let bad = [
        r#"{"keys":[]}"#.to_owned(),
        "{}".to_owned(),
        "not json".to_owned(),
        r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}"#.to_owned(),
        json!({"keys": [{"kty": "OKP", "crv": "X25519", "x": x, "kid": "k"}]}).to_string(),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k", "alg": "HS256"}]}).to_string(),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": &x[..40], "kid": "k"}]}).to_string(),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!", "kid": "k"}]}).to_string(),
    ];
    for value in &bad {
        let (arn, _) = create_secret(&client, "jwks", value).await;
        startup(KeySource::Jwks { arn }, &eddsa_env(), &client)
            .await
            .expect_err(&format!("JWKS {value}"));
    }
    // The same key, well-formed, loads.
    let good = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k", "alg": "EdDSA", "use": "sig"}]});
    let (arn, _) = create_secret(&client, "jwks", &good.to_string()).await;
    let tokens = startup(KeySource::Jwks { arn }, &eddsa_env(), &client)
        .await
        .expect("a valid JWKS");
    assert_eq!(tokens.snapshot().kids(), vec!["k".to_owned()]);
}

#[tokio::test]
async fn an_unknown_or_mismatched_algorithm_stops_start_up() {
    let client = client();
    let (hs_arn, _) = hs256_secret(&client).await;
    let (private_arn, jwks_arn) = eddsa_secrets(&client).await;
    rotate(&client, &eddsa(&jwks_arn), &private_arn).await;
    let hs = KeySource::SecretsManager { arn: hs_arn.clone() };
    let private = KeySource::PrivateKey {
        arn: private_arn.clone(),
        jwks_arn: Some(jwks_arn.clone()),
    };
    let public = KeySource::Jwks { arn: jwks_arn.clone() };
    let env_keys = env_of(&[("JWT_SECRET", "a-perfectly-long-current-key-0123456789")]);

    for alg in ["RS256", "none", "hs256", "HS384", "ES256", "eddsa"] {
        let env = env_of(&[
            ("JWT_ALGORITHM", alg),
            ("JWT_SECRET", "a-perfectly-long-current-key-0123456789"),
        ]);
        for source in [hs.clone(), private.clone(), public.clone(), KeySource::Env] {
            let err = startup(source.clone(), &env, &client)
                .await
                .expect_err(&format!("JWT_ALGORITHM={alg} with {source:?}"));
            assert!(format!("{err:#}").contains("JWT_ALGORITHM"), "{err:#}");
        }
    }
    // HS256 keys under EdDSA, EdDSA keys under HS256: refused.
    startup(hs.clone(), &eddsa_env(), &client)
        .await
        .expect_err("HMAC keys in EdDSA mode");
    startup(private.clone(), &hs256_env(), &client)
        .await
        .expect_err("Ed25519 keys in HS256 mode");
    startup(public.clone(), &hs256_env(), &client)
        .await
        .expect_err("a JWKS in HS256 mode");
    // The matching combinations start.
    startup(hs, &hs256_env(), &client).await.expect("HS256");
    startup(private, &eddsa_env(), &client).await.expect("EdDSA issuer");
    startup(public, &eddsa_env(), &client).await.expect("EdDSA verifier");
    startup(KeySource::Env, &env_keys, &client)
        .await
        .expect("HS256 from the env");
}

#[test]
fn eddsa_mode_gives_issuers_the_private_key_and_verifiers_the_jwks_only() {
    // What each function reads, from the variables the template gives it.
    let issuer = env_of(&[
        ("JWT_ALGORITHM", "EdDSA"),
        ("JWT_SECRET_ARN", "arn:hs"),
        ("JWT_PRIVATE_KEY_ARN", "arn:private"),
        ("JWT_JWKS_ARN", "arn:jwks"),
    ]);
    assert_eq!(
        api_tests::key_source(&issuer),
        KeySource::PrivateKey {
            arn: "arn:private".into(),
            jwks_arn: Some("arn:jwks".into())
        }
    );
    let verifier = env_of(&[
        ("JWT_ALGORITHM", "EdDSA"),
        ("JWT_SECRET_ARN", "arn:hs"),
        ("JWT_JWKS_ARN", "arn:jwks"),
    ]);
    assert_eq!(
        api_tests::key_source(&verifier),
        KeySource::Jwks { arn: "arn:jwks".into() }
    );
    let hs = env_of(&[("JWT_SECRET_ARN", "arn:hs"), ("JWT_JWKS_ARN", "arn:jwks")]);
    assert_eq!(
        api_tests::key_source(&hs),
        KeySource::SecretsManager { arn: "arn:hs".into() }
    );
}

#[test]
fn template_gives_the_private_key_to_the_issuers_and_the_rotation_function_only() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let resources = doc["Resources"].as_mapping().expect("Resources");
    let mut readers = BTreeSet::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().expect("name").to_owned();
        let props = &resource["Properties"];
        let yaml = serde_yaml_ng::to_string(props).expect("YAML");
        let env_has_private = !props["Environment"]["Variables"]["JWT_PRIVATE_KEY_ARN"].is_null();
        let policy_has_private = yaml.contains("JwtPrivateKeySecret");
        assert_eq!(
            env_has_private, policy_has_private,
            "{name}: the private key's ARN and its read permission go together"
        );
        if policy_has_private {
            readers.insert(name);
        }
    }
    let allowed: BTreeSet<String> = [
        "SignupFunction",
        "LoginFunction",
        "RefreshFunction",
        "MfaVerifyFunction",
        "RotateKeyFunction",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(
        readers.is_subset(&allowed) && readers.contains("RotateKeyFunction") && readers.len() >= 3,
        "functions that can read the private key: {readers:?}"
    );
    assert!(!readers.iter().any(|r| r.contains("Authorizer")), "{readers:?}");
}

// --- GET /.well-known/jwks.json ----------------------------------------------------------------

async fn get_jwks(api: &api_tests::TestApi) -> (Resp, Value) {
    let r = send(api, Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"), "Cache-Control");
    let ct = r.header("content-type").unwrap_or_default().to_owned();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let body = r.json();
    let obj = body.as_object().expect("a JWKS is an object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["keys"], "{body}");
    (r, body)
}

fn fresh_ed25519(kid: &str) -> (SigningKey, String) {
    let pem = SigningKey::generate_ed25519_pem().expect("generate");
    let key = SigningKey::ed25519_pem(kid, &pem).expect("parse");
    (key, pem.expose_secret().to_owned())
}

#[tokio::test]
async fn jwks_endpoint_in_eddsa_mode_serves_current_and_previous_and_verifies_login_tokens() {
    let (current, _) = fresh_ed25519("k-current");
    let (previous, previous_pem) = fresh_ed25519("k-previous");
    let api = api_tests::spawn_api_with_keys(
        api_tests::test_config(),
        KeySet {
            current,
            previous: Some(previous),
        },
    )
    .await;

    let (_, jwks) = get_jwks(&api).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "current and previous: {jwks}");
    keys.iter().for_each(assert_public_ed25519_jwk);
    assert_eq!(
        jwks_kids(&jwks),
        BTreeSet::from(["k-current".to_owned(), "k-previous".to_owned()])
    );
    let parsed: Jwks = serde_json::from_value(jwks.clone()).expect("a JWKS");
    assert_eq!(parsed.verifying_keys().expect("usable keys").len(), 2);

    // A token from POST /auth/login verifies with the JWKS alone.
    let account = signup_ok(&api).await;
    let session = login_ok(&api, &account.email, &account.password).await;
    let header = header_of(&session.access_token);
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some("k-current"));
    let claims = verify_with_jwks(&jwks, &session.access_token).expect("verifies from the JWKS alone");
    assert_eq!(claims["sub"], json!(account.user_id));
    assert_eq!(claims["sid"], json!(session.session_id));
    // Only with its own key: the same token named as the previous key does not verify.
    let mut other = jwks.clone();
    other["keys"]
        .as_array_mut()
        .expect("keys")
        .retain(|k| k["kid"] == "k-previous");
    other["keys"][0]["kid"] = json!("k-current");
    assert!(verify_with_jwks(&other, &session.access_token).is_err());

    // A token signed with the previous key is still accepted by the API.
    let now = access::tokens::now_secs();
    let mut h = jsonwebtoken::Header::new(Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some("k-previous".into());
    let claims = crate::helpers::claims(session.user_id, session.session_id, "user", now, 300);
    let old = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(previous_pem.as_bytes()).expect("pem"),
    )
    .expect("sign");
    verify_with_jwks(&jwks, &old).expect("the JWKS verifies the previous key's tokens");
    get(&api, &old, "/tasks").await.expect(200);
    get(&api, &session.access_token, "/tasks").await.expect(200);
    // The JWKS needs no token, and a token does not change it.
    let with_token = send(
        &api,
        Method::GET,
        "/.well-known/jwks.json",
        Some(&session.access_token),
        None,
    )
    .await;
    assert_eq!(with_token.json(), jwks);
}

#[tokio::test]
async fn jwks_endpoint_in_hs256_mode_is_empty() {
    let api = api_tests::spawn_api_with_keys(api_tests::test_config(), api_tests::test_keys()).await;
    let (r, jwks) = get_jwks(&api).await;
    assert_eq!(jwks, json!({ "keys": [] }));
    assert!(
        !r.body.contains(api_tests::TEST_JWT_SECRET),
        "a shared secret is never published"
    );
    // And the Lambda's own answer in HS256 mode (no keys loaded at all).
    let response = jwks::handle(None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("cache-control").and_then(|v| v.to_str().ok()),
        Some(jwks::CACHE_CONTROL)
    );
    let body = match response.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8(b.clone()).expect("UTF-8"),
        lambda_http::Body::Empty => String::new(),
        _ => String::new(),
    };
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({ "keys": [] })
    );
}

/// The API on keys from Secrets Manager, through rotations: no request fails, the JWKS follows.
#[tokio::test]
async fn eddsa_api_on_secrets_manager_keeps_serving_through_rotations() {
    let client = client();
    let (private_arn, jwks_arn) = eddsa_secrets(&client).await;
    let rotation = eddsa(&jwks_arn);
    let k1 = rotate(&client, &rotation, &private_arn).await;
    // No authorizer cache: this is about which keys the verifier accepts. (With the cache, a token
    // already seen stays allowed until the cache TTL, as behind API Gateway: see
    // a_cached_policy_outlives_the_key_but_not_the_session below.)
    let api = api_tests::spawn_api_with_tokens_and_cache(
        api_tests::test_config(),
        eddsa_issuer(&client, &private_arn, &jwks_arn).await,
        Duration::ZERO,
    )
    .await;

    let a = signup_ok(&api).await;
    assert_eq!(kid_of(&a.access_token), k1);
    let (_, jwks) = get_jwks(&api).await;
    assert_eq!(jwks_kids(&jwks), BTreeSet::from([k1.clone()]));
    verify_with_jwks(&jwks, &a.access_token).expect("login token from the served JWKS");

    // Rotate; the instance keeps its cached keys until it reloads, and everything keeps working.
    let k2 = rotate(&client, &rotation, &private_arn).await;
    get(&api, &a.access_token, "/tasks").await.expect(200);
    let b = login_ok(&api, &a.email, &a.password).await;
    assert_eq!(
        kid_of(&b.access_token),
        k1,
        "the cached key signs until the cache expires"
    );
    get(&api, &b.access_token, "/tasks").await.expect(200);

    // The cache expires (as after KEY_CACHE_TTL): new tokens carry k2, old ones still verify.
    api.state.tokens.reload_if_older_than(Duration::ZERO).await;
    let c = login_ok(&api, &a.email, &a.password).await;
    assert_eq!(kid_of(&c.access_token), k2);
    for t in [&a.access_token, &b.access_token, &c.access_token] {
        get(&api, t, "/tasks").await.expect(200);
    }
    let (_, jwks) = get_jwks(&api).await;
    assert_eq!(jwks_kids(&jwks), BTreeSet::from([k1.clone(), k2.clone()]));
    verify_with_jwks(&jwks, &a.access_token).expect("previous key");
    verify_with_jwks(&jwks, &c.access_token).expect("current key");

    // Another rotation: k1 is older than the previous key, its tokens are refused.
    let k3 = rotate(&client, &rotation, &private_arn).await;
    api.state.tokens.reload_if_older_than(Duration::ZERO).await;
    for t in [&a.access_token, &b.access_token] {
        get(&api, t, "/tasks").await.problem(401, "invalid_token");
    }
    get(&api, &c.access_token, "/tasks").await.expect(200);
    let d = login_ok(&api, &a.email, &a.password).await;
    assert_eq!(kid_of(&d.access_token), k3);
    let (_, jwks) = get_jwks(&api).await;
    assert_eq!(jwks_kids(&jwks), BTreeSet::from([k2, k3]));
}

#[tokio::test]
async fn hs256_api_on_secrets_manager_keeps_serving_through_rotations() {
    let client = client();
    let (arn, v1) = hs256_secret(&client).await;
    // No authorizer cache: this is about which keys the verifier accepts.
    let api = api_tests::spawn_api_with_tokens_and_cache(
        api_tests::test_config(),
        hs256_tokens(&client, &arn).await,
        Duration::ZERO,
    )
    .await;
    let a = signup_ok(&api).await;
    assert_eq!(kid_of(&a.access_token), v1);
    assert_eq!(header_of(&a.access_token).alg, Algorithm::HS256);

    let v2 = rotate(&client, &hs256(), &arn).await;
    get(&api, &a.access_token, "/tasks").await.expect(200);
    api.state.tokens.reload_if_older_than(Duration::ZERO).await;
    let b = login_ok(&api, &a.email, &a.password).await;
    assert_eq!(kid_of(&b.access_token), v2);
    get(&api, &a.access_token, "/tasks").await.expect(200);
    get(&api, &b.access_token, "/tasks").await.expect(200);
    let (_, jwks) = get_jwks(&api).await;
    assert_eq!(jwks, json!({ "keys": [] }), "HMAC keys are never published");

    rotate(&client, &hs256(), &arn).await;
    api.state.tokens.reload_if_older_than(Duration::ZERO).await;
    get(&api, &a.access_token, "/tasks").await.problem(401, "invalid_token");
    get(&api, &b.access_token, "/tasks").await.expect(200);
}

/// The local API caches the authorizer's answer per token like API Gateway (`AuthorizerCacheTtl`):
/// a token already seen stays allowed after its key left the key set, until the cache TTL; a token
/// of that key never seen before is verified afresh and refused; and the cached Allow does not
/// outlive the session, which the function checks in the database on every request.
#[tokio::test]
async fn a_cached_policy_outlives_the_key_but_not_the_session() {
    let client = client();
    let (arn, _) = hs256_secret(&client).await;
    let api = api_tests::spawn_api_with_tokens(api_tests::test_config(), hs256_tokens(&client, &arn).await).await;
    let seen = signup_ok(&api).await;
    let unseen = login_ok(&api, &seen.email, &seen.password).await;
    get(&api, &seen.access_token, "/tasks").await.expect(200);

    // Two rotations: the first key is no longer current nor previous.
    for _ in 0..2 {
        rotate(&client, &hs256(), &arn).await;
        api.state.tokens.reload_if_older_than(Duration::ZERO).await;
    }
    get(&api, &seen.access_token, "/tasks").await.expect(200);
    get(&api, &unseen.access_token, "/tasks")
        .await
        .problem(401, "invalid_token");

    // Logout revokes the session. The token's entry is still cached (nothing evicts it before the
    // TTL, and the 200 above came from it), so this 401 is the function's: the cached Allow
    // reached it and the session check refused.
    let r = send(&api, Method::POST, "/auth/logout", Some(&seen.access_token), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    get(&api, &seen.access_token, "/tasks")
        .await
        .problem(401, "invalid_token");
}

/// With the production activation delay, a freshly rotated key does not sign yet: issuers keep
/// the previous key (which every verifier accepts) until the new one has been published for longer
/// than any verifier or JWKS cache lasts. Verification accepts the new key at once.
#[tokio::test]
async fn a_new_key_waits_for_its_activation_delay_before_signing() {
    let client = client();
    // HS256.
    let (arn, v1) = hs256_secret(&client).await;
    let v2 = rotate(&client, &hs256(), &arn).await;
    let delayed = env_of(&[("JWT_KEY_ACTIVATION_SECONDS", "900")]);
    let issuer = tokens_from_source(
        KeySource::SecretsManager { arn: arn.clone() },
        &delayed,
        Some(client.clone()),
        settings(),
    )
    .await
    .expect("HS256 keys");
    let token = issue(&issuer);
    assert_eq!(kid_of(&token), v1, "inside the delay the previous key signs");
    let mut verifying = issuer.snapshot().kids();
    verifying.sort();
    let mut both = vec![v1.clone(), v2.clone()];
    both.sort();
    assert_eq!(verifying, both, "and both keys verify");
    let immediate = hs256_tokens(&client, &arn).await;
    assert_eq!(kid_of(&issue(&immediate)), v2, "with no delay the new key signs");
    immediate
        .verify(&token)
        .expect("tokens of a delayed signer verify everywhere");

    // EdDSA: the same for the private key; the verifier (JWKS) knows both keys.
    let (private_arn, jwks_arn) = eddsa_secrets(&client).await;
    let e1 = rotate(&client, &eddsa(&jwks_arn), &private_arn).await;
    let e2 = rotate(&client, &eddsa(&jwks_arn), &private_arn).await;
    let delayed = env_of(&[("JWT_ALGORITHM", "EdDSA"), ("JWT_KEY_ACTIVATION_SECONDS", "900")]);
    let issuer = tokens_from_source(
        KeySource::PrivateKey {
            arn: private_arn.clone(),
            jwks_arn: Some(jwks_arn.clone()),
        },
        &delayed,
        Some(client.clone()),
        settings(),
    )
    .await
    .expect("EdDSA issuer keys");
    let token = issue(&issuer);
    assert_eq!(kid_of(&token), e1, "inside the delay the previous private key signs");
    let verifier = eddsa_verifier(&client, &jwks_arn).await;
    verifier
        .verify(&token)
        .expect("the JWKS verifies the previous key's token");
    let immediate = eddsa_issuer(&client, &private_arn, &jwks_arn).await;
    let fresh = issue(&immediate);
    assert_eq!(kid_of(&fresh), e2);
    verifier.verify(&fresh).expect("and the new key's token");
}
