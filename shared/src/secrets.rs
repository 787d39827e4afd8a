//! Secrets: the signing key and the database URL come from AWS Secrets Manager when their ARNs are
//! configured (fetched once per cold start), or from the environment for local runs and tests.
//! A missing, short or unreadable key stops start-up: there is no fallback key.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;

use crate::config::EnvReader;
use crate::tokens::{KeySet, SigningKey};

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `JWT_SECRET_ARN`: the secret's `AWSCURRENT` signs, `AWSPREVIOUS` still verifies;
    /// each key's `kid` is its Secrets Manager version id.
    SecretsManager { arn: String },
    /// `JWT_SECRET` (and optionally `JWT_SECRET_PREVIOUS`), for local runs and tests.
    Env,
}

/// Where the database URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrlSource {
    SecretsManager { arn: String },
    Env,
}

impl KeySource {
    pub fn from_env(env: &EnvReader<'_>) -> Self {
        match env.get("JWT_SECRET_ARN") {
            Some(arn) => KeySource::SecretsManager { arn },
            None => KeySource::Env,
        }
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
    }))
}

/// Load the signing keys. Fails when a key is missing, unreadable or shorter than 32 bytes.
pub async fn load_keys(source: &KeySource, env: &EnvReader<'_>, client: Option<&Client>) -> anyhow::Result<KeySet> {
    match source {
        KeySource::Env => {
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
        KeySource::SecretsManager { arn } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let current = get_secret(client, arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("signing key secret has no AWSCURRENT version"))?;
            let current = SigningKey::hmac(current.version_id, current.value)?;
            let previous = match get_secret(client, arn, "AWSPREVIOUS").await? {
                Some(p) if p.version_id != current.kid => Some(SigningKey::hmac(p.version_id, p.value)?),
                _ => None,
            };
            Ok(KeySet { current, previous })
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
