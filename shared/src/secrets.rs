//! Secrets: the signing key and the database URL come from AWS Secrets Manager when their ARNs are
//! configured (fetched once per cold start), or from the environment for local runs and tests.
//! A missing, short or unreadable key stops start-up: there is no fallback key.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;

use crate::config::EnvReader;
use crate::tokens::{Jwks, KeySet, Keys, SigningKey, TokenSettings, Tokens};
use jsonwebtoken::Algorithm;

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `JWT_SECRET_ARN` (HS256): the secret's `AWSCURRENT` signs, `AWSPREVIOUS` still verifies;
    /// each key's `kid` is its Secrets Manager version id.
    SecretsManager { arn: String },
    /// `JWT_PRIVATE_KEY_ARN` (EdDSA issuers): `AWSCURRENT` holds the Ed25519 private key in PEM that
    /// signs; tokens are verified with the public keys of `JWT_JWKS_ARN` when set.
    PrivateKey { arn: String, jwks_arn: Option<String> },
    /// `JWT_JWKS_ARN` alone (EdDSA verifiers: the authorizer, the data functions): public keys
    /// only, as a JWKS document, kept current by the rotation function.
    Jwks { arn: String },
    /// The environment, for local runs and tests: `JWT_SECRET` (and `JWT_SECRET_PREVIOUS`) for
    /// HS256, `JWT_PRIVATE_KEY` (and `JWT_PRIVATE_KEY_PREVIOUS`, PEM) for EdDSA.
    Env,
    /// `JWT_TRUST_AUTHORIZER_CONTEXT=true` (deployed data functions): no key at all. The caller
    /// comes from the authorizer's context, which API Gateway puts on every request of a route
    /// with the TOKEN authorizer; a request without that context finds no key to verify its
    /// token with and is refused (401), so a missing authorizer fails closed. Lets the data
    /// functions run without read access to the HMAC key (template.yaml).
    AuthorizerContext,
}

/// `JWT_TRUST_AUTHORIZER_CONTEXT`: `true` or `false` (default); anything else stops start-up.
pub fn trust_authorizer_context(env: &EnvReader<'_>) -> anyhow::Result<bool> {
    match env.get("JWT_TRUST_AUTHORIZER_CONTEXT").as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => bail!("JWT_TRUST_AUTHORIZER_CONTEXT: must be true or false (got {other:?})"),
    }
}

/// `JWT_ALGORITHM`: `HS256` (default) or `EdDSA`. Nothing else is ever accepted.
pub fn algorithm_from_env(env: &EnvReader<'_>) -> anyhow::Result<Algorithm> {
    match env.get("JWT_ALGORITHM").as_deref().map(str::trim) {
        None | Some("HS256") => Ok(Algorithm::HS256),
        Some("EdDSA") => Ok(Algorithm::EdDSA),
        Some(other) => bail!("JWT_ALGORITHM: must be HS256 or EdDSA (got {other:?})"),
    }
}

/// Where the database URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrlSource {
    SecretsManager { arn: String },
    Env,
}

impl KeySource {
    /// The source for the configured algorithm (`JWT_ALGORITHM`): EdDSA reads `JWT_PRIVATE_KEY_ARN`
    /// (issuers) or `JWT_JWKS_ARN` (verifiers); HS256 reads `JWT_SECRET_ARN`; either falls back to
    /// the environment keys for local runs. An unknown algorithm is refused by the loader.
    pub fn from_env(env: &EnvReader<'_>) -> Self {
        if matches!(trust_authorizer_context(env), Ok(true)) {
            return KeySource::AuthorizerContext;
        }
        if matches!(algorithm_from_env(env), Ok(Algorithm::EdDSA)) {
            if let Some(arn) = env.get("JWT_PRIVATE_KEY_ARN") {
                return KeySource::PrivateKey {
                    arn,
                    jwks_arn: env.get("JWT_JWKS_ARN"),
                };
            }
            if let Some(arn) = env.get("JWT_JWKS_ARN") {
                return KeySource::Jwks { arn };
            }
            return KeySource::Env;
        }
        match env.get("JWT_SECRET_ARN") {
            Some(arn) => KeySource::SecretsManager { arn },
            None => KeySource::Env,
        }
    }

    /// Whether reading this source needs a Secrets Manager client.
    pub fn remote(&self) -> bool {
        !matches!(self, KeySource::Env | KeySource::AuthorizerContext)
    }
}

impl DatabaseUrlSource {
    pub fn from_env(env: &EnvReader<'_>) -> Self {
        match env.get("DATABASE_URL_SECRET_ARN") {
            Some(arn) => DatabaseUrlSource::SecretsManager { arn },
            None => DatabaseUrlSource::Env,
        }
    }
}

/// A Secrets Manager client with bounded timeouts, so an unreachable endpoint fails the cold
/// start quickly and clearly. `AWS_ENDPOINT_URL` (e.g. a local emulator) is honoured.
pub async fn client_from_env() -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(10))
        .build();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&config)
}

/// One version of a secret: its version id and its value.
pub struct SecretVersion {
    pub version_id: String,
    pub value: SecretString,
    /// When this version was created (Secrets Manager's `CreatedDate`).
    pub created: Option<std::time::SystemTime>,
}

/// How long a freshly rotated key waits before it signs: verifiers and other services reading the
/// JWKS (function cache 5 min + `max-age` 5 min) all know it by then. Until it has aged, issuers
/// keep signing with `AWSPREVIOUS`, which every verifier accepts. `JWT_KEY_ACTIVATION_SECONDS`.
pub const DEFAULT_KEY_ACTIVATION: Duration = Duration::from_secs(900);

fn key_activation(env: &EnvReader<'_>) -> Duration {
    env.get("JWT_KEY_ACTIVATION_SECONDS")
        .and_then(|v| v.trim().parse().ok())
        .map_or(DEFAULT_KEY_ACTIVATION, Duration::from_secs)
}

/// Sign with `current` unless it is younger than the activation delay and a usable previous key
/// exists; verification accepts both either way.
fn order_for_signing(
    current: SigningKey,
    created: Option<std::time::SystemTime>,
    previous: Option<SigningKey>,
    activation: Duration,
) -> KeySet {
    let young = created
        .and_then(|c| c.elapsed().ok())
        .is_some_and(|age| age < activation);
    match previous {
        Some(previous) if young => {
            tracing::info!(signing = %previous.kid, pending = %current.kid, "new key not active yet");
            KeySet {
                current: previous,
                previous: Some(current),
            }
        }
        previous => KeySet { current, previous },
    }
}

/// Read `arn` at `stage` (`AWSCURRENT`, `AWSPREVIOUS`). `Ok(None)` when the secret has no version
/// at that stage (a secret that was never rotated has no `AWSPREVIOUS`).
pub async fn get_secret(client: &Client, arn: &str, stage: &str) -> anyhow::Result<Option<SecretVersion>> {
    let result = client
        .get_secret_value()
        .secret_id(arn)
        .version_stage(stage)
        .send()
        .await;
    let output = match result {
        Ok(o) => o,
        Err(err) => {
            if stage != "AWSCURRENT"
                && matches!(
                    err.as_service_error(),
                    Some(GetSecretValueError::ResourceNotFoundException(_))
                )
            {
                return Ok(None);
            }
            // The SDK error's Display is terse; its source chain says what failed.
            return Err(anyhow!(
                aws_sdk_secretsmanager::error::DisplayErrorContext(err).to_string()
            ))
            .with_context(|| format!("reading secret {arn} at {stage}"));
        }
    };
    let value = output
        .secret_string()
        .ok_or_else(|| anyhow!("secret {arn} at {stage} has no SecretString"))?;
    let version_id = output
        .version_id()
        .ok_or_else(|| anyhow!("secret {arn} at {stage} has no version id"))?;
    Ok(Some(SecretVersion {
        version_id: version_id.to_owned(),
        value: SecretString::from(value.to_owned()),
        created: output
            .created_date()
            .and_then(|d| std::time::SystemTime::try_from(*d).ok()),
    }))
}

/// Load the signing keys. Fails when a key is missing, unreadable or shorter than 32 bytes.
pub async fn load_keys(source: &KeySource, env: &EnvReader<'_>, client: Option<&Client>) -> anyhow::Result<KeySet> {
    match source {
        KeySource::Env => match algorithm_from_env(env)? {
            Algorithm::EdDSA => {
                let Some(current) = env.get("JWT_PRIVATE_KEY") else {
                    bail!("JWT_PRIVATE_KEY (PEM) must be set when JWT_ALGORITHM=EdDSA: there is no default key");
                };
                let current = SecretString::from(current);
                let current = SigningKey::ed25519_pem(SigningKey::fingerprint_kid(&current), &current)?;
                let previous = match env.get("JWT_PRIVATE_KEY_PREVIOUS") {
                    Some(p) => {
                        let p = SecretString::from(p);
                        Some(SigningKey::ed25519_pem(SigningKey::fingerprint_kid(&p), &p)?)
                    }
                    None => None,
                };
                Ok(KeySet { current, previous })
            }
            _ => {
                let Some(current) = env.get("JWT_SECRET") else {
                    bail!("JWT_SECRET (or JWT_SECRET_ARN) must be set: there is no default signing key");
                };
                let current = SecretString::from(current);
                let current = SigningKey::hmac(SigningKey::fingerprint_kid(&current), current)?;
                let previous = match env.get("JWT_SECRET_PREVIOUS") {
                    Some(p) => {
                        let p = SecretString::from(p);
                        Some(SigningKey::hmac(SigningKey::fingerprint_kid(&p), p)?)
                    }
                    None => None,
                };
                Ok(KeySet { current, previous })
            }
        },
        KeySource::PrivateKey { arn, .. } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let current = get_secret(client, arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("private key secret has no AWSCURRENT version"))?;
            let created = current.created;
            let current = SigningKey::ed25519_pem(current.version_id, &current.value)?;
            // The previous key only matters while the new one is not active yet; the stack's
            // first placeholder is no key at all, so an unreadable previous is simply skipped.
            let previous = get_secret(client, arn, "AWSPREVIOUS")
                .await?
                .filter(|p| p.version_id != current.kid)
                .and_then(|p| SigningKey::ed25519_pem(p.version_id, &p.value).ok());
            Ok(order_for_signing(current, created, previous, key_activation(env)))
        }
        KeySource::Jwks { .. } => bail!("a JWKS holds public keys only: it cannot sign"),
        KeySource::AuthorizerContext => {
            bail!("JWT_TRUST_AUTHORIZER_CONTEXT=true: this function holds no key and cannot sign")
        }
        KeySource::SecretsManager { arn } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let current = get_secret(client, arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("signing key secret has no AWSCURRENT version"))?;
            let created = current.created;
            let current = SigningKey::hmac(current.version_id, current.value)?;
            let previous = match get_secret(client, arn, "AWSPREVIOUS").await? {
                Some(p) if p.version_id != current.kid => Some(SigningKey::hmac(p.version_id, p.value)?),
                _ => None,
            };
            Ok(order_for_signing(current, created, previous, key_activation(env)))
        }
    }
}

/// Load the database URL.
pub async fn load_database_url(
    source: &DatabaseUrlSource,
    env: &EnvReader<'_>,
    client: Option<&Client>,
) -> anyhow::Result<SecretString> {
    match source {
        DatabaseUrlSource::Env => env
            .get("DATABASE_URL")
            .map(SecretString::from)
            .ok_or_else(|| anyhow!("DATABASE_URL (or DATABASE_URL_SECRET_ARN) must be set")),
        DatabaseUrlSource::SecretsManager { arn } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let v = get_secret(client, arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("database URL secret has no AWSCURRENT version"))?;
            Ok(v.value)
        }
    }
}

/// Read the JWKS document of `arn` (`AWSCURRENT`).
pub async fn load_jwks(client: &Client, arn: &str) -> anyhow::Result<Jwks> {
    let v = get_secret(client, arn, "AWSCURRENT")
        .await?
        .ok_or_else(|| anyhow!("JWKS secret has no AWSCURRENT version"))?;
    serde_json::from_str(secrecy::ExposeSecret::expose_secret(&v.value))
        .context("the JWKS secret is not a JWKS document")
}

/// The keys of `source`: what signs (if anything) and what verifies.
pub async fn load_token_keys(source: &KeySource, env: &EnvReader<'_>, client: Option<&Client>) -> anyhow::Result<Keys> {
    match source {
        // Nothing signs and nothing verifies: every token this function would check itself fails.
        KeySource::AuthorizerContext => Ok(Keys::verify_only(algorithm_from_env(env)?, Vec::new())),
        KeySource::Jwks { arn } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let keys = load_jwks(client, arn).await?.verifying_keys()?;
            if keys.is_empty() {
                bail!("the JWKS secret holds no keys yet: rotate the private key once to create one");
            }
            Ok(Keys::verify_only(Algorithm::EdDSA, keys))
        }
        KeySource::PrivateKey {
            jwks_arn: Some(jwks_arn),
            ..
        } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let own = Keys::from_set(load_keys(source, env, Some(client)).await?)?;
            let published = load_jwks(client, jwks_arn).await?.verifying_keys()?;
            // The signing key verifies too, even before the JWKS names it.
            let mut verifying = own.verifying_keys().to_vec();
            verifying.extend(published.into_iter().filter(|k| !own.kids().contains(&k.kid)));
            Ok(own.with_verifying(verifying))
        }
        _ => Ok(Keys::from_set(load_keys(source, env, client).await?)?),
    }
}

/// Build the token service for `source`, reloading from Secrets Manager after start-up when the
/// keys live there (rotation without downtime).
pub async fn tokens_from_source(
    source: KeySource,
    env: &EnvReader<'_>,
    client: Option<Client>,
    settings: TokenSettings,
) -> anyhow::Result<Tokens> {
    let configured = algorithm_from_env(env)?;
    trust_authorizer_context(env)?;
    let keys = load_token_keys(&source, env, client.as_ref()).await?;
    let expected = match source {
        KeySource::PrivateKey { .. } | KeySource::Jwks { .. } => Algorithm::EdDSA,
        KeySource::SecretsManager { .. } => Algorithm::HS256,
        KeySource::Env | KeySource::AuthorizerContext => configured,
    };
    if keys.algorithm != expected || keys.algorithm != configured {
        bail!(
            "JWT_ALGORITHM is {configured:?} but the configured keys are {:?}",
            keys.algorithm
        );
    }
    let activation_secs = key_activation(env).as_secs();
    let reload: Option<crate::tokens::Reload> = match (&source, client) {
        (KeySource::Env | KeySource::AuthorizerContext, _) | (_, None) => None,
        (_, Some(client)) => Some(Box::new(move || {
            let (source, client) = (source.clone(), client.clone());
            Box::pin(async move {
                let activation =
                    EnvReader::new(move |k| (k == "JWT_KEY_ACTIVATION_SECONDS").then(|| activation_secs.to_string()));
                load_token_keys(&source, &activation, Some(&client)).await
            })
        })),
    };
    Ok(Tokens::new(keys, settings, reload))
}
