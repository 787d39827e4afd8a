//! Key loading: the signing and verifying keys come from AWS Secrets Manager when their ARNs are
//! configured (fetched once per cold start, then reloaded on a timer and on an unknown `kid`), or
//! from the environment for local runs and tests. Which source applies is decided by the
//! configuration ([`settings::KeyConfig`]); a missing, short or unreadable key stops start-up:
//! there is no fallback key.
//!
//! The loaders are generic over a [`SecretStore`]: the functions pass the Secrets Manager
//! [`Client`]; the local binaries, which read the environment only, pass [`EnvOnly`], so nothing
//! they run can reach the AWS SDK and the linker leaves it out of them.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
pub use settings::KeySource;
use settings::{KeyConfig, TokenSettings, VerifierSettings};

use crate::tokens::{Jwks, KeySet, Keys, SigningKey, Tokens};

/// The token library's algorithm for the configured one.
pub fn jwt_algorithm(algorithm: settings::Algorithm) -> Algorithm {
    match algorithm {
        settings::Algorithm::HS256 => Algorithm::HS256,
        settings::Algorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// A Secrets Manager client with bounded timeouts, so an unreachable endpoint fails the cold
/// start quickly and clearly. `AWS_ENDPOINT_URL` (e.g. a local emulator) is honoured.
pub async fn client() -> Client {
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

/// Where secrets named by ARN are read.
pub trait SecretStore: Clone + Send + Sync + 'static {
    /// `arn` at `stage`, as [`get_secret`] says.
    fn get(&self, arn: &str, stage: &str) -> impl Future<Output = anyhow::Result<Option<SecretVersion>>> + Send;
}

impl SecretStore for Client {
    fn get(&self, arn: &str, stage: &str) -> impl Future<Output = anyhow::Result<Option<SecretVersion>>> + Send {
        get_secret(self, arn, stage)
    }
}

/// The store of a binary that reads its secrets from the environment only (the local API, the
/// admin command): every read by ARN is an error, and the AWS SDK is never linked in.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvOnly;

impl SecretStore for EnvOnly {
    async fn get(&self, arn: &str, _stage: &str) -> anyhow::Result<Option<SecretVersion>> {
        bail!("this binary reads secrets from the environment only, not from Secrets Manager ({arn})")
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
pub async fn load_keys<S: SecretStore>(config: &KeyConfig, client: Option<&S>) -> anyhow::Result<KeySet> {
    match &config.source {
        KeySource::Env => {
            let Some(current) = config.env_keys.current.clone() else {
                bail!("no signing key in the environment (JWT_SECRET or JWT_PRIVATE_KEY): there is no default key");
            };
            let key = |secret: SecretString| match config.algorithm {
                settings::Algorithm::EdDSA => SigningKey::ed25519_pem(SigningKey::fingerprint_kid(&secret), &secret),
                settings::Algorithm::HS256 => SigningKey::hmac(SigningKey::fingerprint_kid(&secret), secret),
            };
            let current = key(current)?;
            let previous = config.env_keys.previous.clone().map(key).transpose()?;
            Ok(KeySet { current, previous })
        }
        KeySource::PrivateKey { arn, .. } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let current = client
                .get(arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("private key secret has no AWSCURRENT version"))?;
            let created = current.created;
            let current = SigningKey::ed25519_pem(current.version_id, &current.value)?;
            // The previous key only matters while the new one is not active yet; the stack's
            // first placeholder is no key at all, so an unreadable previous is simply skipped.
            let previous = client
                .get(arn, "AWSPREVIOUS")
                .await?
                .filter(|p| p.version_id != current.kid)
                .and_then(|p| SigningKey::ed25519_pem(p.version_id, &p.value).ok());
            Ok(order_for_signing(current, created, previous, config.activation))
        }
        KeySource::Jwks { .. } => bail!("a JWKS holds public keys only: it cannot sign"),
        KeySource::AuthorizerContext => {
            bail!("JWT_TRUST_AUTHORIZER_CONTEXT=true: this function holds no key and cannot sign")
        }
        KeySource::SecretsManager { arn } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let current = client
                .get(arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("signing key secret has no AWSCURRENT version"))?;
            let created = current.created;
            let current = SigningKey::hmac(current.version_id, current.value)?;
            let previous = match client.get(arn, "AWSPREVIOUS").await? {
                Some(p) if p.version_id != current.kid => Some(SigningKey::hmac(p.version_id, p.value)?),
                _ => None,
            };
            Ok(order_for_signing(current, created, previous, config.activation))
        }
    }
}

/// Read the JWKS document of `arn` (`AWSCURRENT`).
pub async fn load_jwks<S: SecretStore>(client: &S, arn: &str) -> anyhow::Result<Jwks> {
    let v = client
        .get(arn, "AWSCURRENT")
        .await?
        .ok_or_else(|| anyhow!("JWKS secret has no AWSCURRENT version"))?;
    serde_json::from_str(secrecy::ExposeSecret::expose_secret(&v.value))
        .context("the JWKS secret is not a JWKS document")
}

/// The keys of `source`: what signs (if anything) and what verifies.
pub async fn load_token_keys<S: SecretStore>(config: &KeyConfig, client: Option<&S>) -> anyhow::Result<Keys> {
    match &config.source {
        // Nothing signs and nothing verifies: every token this function would check itself fails.
        KeySource::AuthorizerContext => Ok(Keys::verify_only(jwt_algorithm(config.algorithm), Vec::new())),
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
            let own = Keys::from_set(load_keys(config, Some(client)).await?)?;
            let published = load_jwks(client, jwks_arn).await?.verifying_keys()?;
            // The signing key verifies too, even before the JWKS names it.
            let mut verifying = own.verifying_keys().to_vec();
            verifying.extend(published.into_iter().filter(|k| !own.kids().contains(&k.kid)));
            Ok(own.with_verifying(verifying))
        }
        _ => Ok(Keys::from_set(load_keys(config, client).await?)?),
    }
}

/// Build the token service for `config`, reloading from Secrets Manager after start-up when the
/// keys live there (rotation without downtime).
pub async fn tokens<S: SecretStore>(
    config: KeyConfig,
    client: Option<S>,
    settings: TokenSettings,
) -> anyhow::Result<Tokens> {
    let configured = jwt_algorithm(config.algorithm);
    let keys = load_token_keys(&config, client.as_ref()).await?;
    let expected = match config.source {
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
    let reload: Option<crate::tokens::Reload> = match (&config.source, client) {
        (KeySource::Env | KeySource::AuthorizerContext, _) | (_, None) => None,
        (_, Some(client)) => Some(Box::new(move || {
            let (config, client) = (config.clone(), client.clone());
            Box::pin(async move { load_token_keys(&config, Some(&client)).await })
        })),
    };
    Ok(Tokens::new(keys, settings, reload))
}

/// The token service of `config`, with a Secrets Manager client when its keys live there: what
/// every binary that signs or verifies builds at start.
pub async fn tokens_for(config: &KeyConfig, settings: TokenSettings) -> anyhow::Result<Tokens> {
    let client = if config.source.remote() {
        Some(client().await)
    } else {
        None
    };
    tokens(config.clone(), client, settings)
        .await
        .context("loading the signing key")
}

/// The verifier alone, for the authorizer and the JWKS function: no database, no password hasher.
pub async fn verifier(settings: &VerifierSettings) -> anyhow::Result<Tokens> {
    tokens_for(&settings.keys, settings.tokens.clone()).await
}
