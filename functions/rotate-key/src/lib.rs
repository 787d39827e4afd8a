//! Rotation of the signing-key secret through Secrets Manager's four steps.
//!
//! - `createSecret`: put a fresh key at `AWSPENDING` (HS256: 64 random alphanumerics; EdDSA: a
//!   new Ed25519 private key in PKCS#8 PEM). Idempotent: a pending version that exists is kept.
//! - `setSecret`: EdDSA only: publish the pending public key in the JWKS secret next to the
//!   current one, *before* it signs anything, so verifiers know it in advance.
//! - `testSecret`: the pending key must load, sign a token, and verify it (EdDSA: through the
//!   published JWKS).
//! - `finishSecret`: move `AWSCURRENT` to the pending version; the old one becomes `AWSPREVIOUS`,
//!   which every verifier still accepts, and the one before it is no longer accepted anywhere.
//!
//! Signers keep their cached key for up to the cache TTL, and verifiers accept current and
//! previous, so a rotation causes no failed request.

use access::keys::get_secret;
use access::tokens::{Jwks, KeySet, Keys, SigningKey, TokenSettings, Tokens, VerifyingKey};
use anyhow::{Context, anyhow, bail};
use aws_sdk_secretsmanager::Client;
use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The event Secrets Manager sends to a rotation function.
#[derive(Debug, Deserialize)]
pub struct RotationEvent {
    #[serde(rename = "Step")]
    pub step: String,
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
}

/// What is rotated.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub algorithm: Algorithm,
    /// EdDSA: the secret holding the published JWKS.
    pub jwks_arn: Option<String>,
}

pub async fn handle(client: &Client, rotation: &Rotation, event: &RotationEvent) -> anyhow::Result<()> {
    check_version(client, event).await?;
    match event.step.as_str() {
        "createSecret" => create(client, rotation, event).await,
        "setSecret" => set(client, rotation, event).await,
        "testSecret" => test(client, rotation, event).await,
        "finishSecret" => finish(client, event).await,
        other => bail!("unknown rotation step {other:?}"),
    }
}

/// Rotation must be enabled and the token must name a version staged for rotation.
async fn check_version(client: &Client, event: &RotationEvent) -> anyhow::Result<()> {
    let described = client
        .describe_secret()
        .secret_id(&event.secret_id)
        .send()
        .await
        .context("describe_secret")?;
    let stages = described
        .version_ids_to_stages()
        .and_then(|m| m.get(&event.token))
        .ok_or_else(|| anyhow!("version {} is not a version of the secret", event.token))?;
    if stages.iter().any(|s| s == "AWSCURRENT") || stages.iter().any(|s| s == "AWSPENDING") {
        return Ok(());
    }
    bail!("version {} is not staged for rotation", event.token)
}

fn new_key(algorithm: Algorithm) -> anyhow::Result<SecretString> {
    match algorithm {
        Algorithm::EdDSA => SigningKey::generate_ed25519_pem(),
        _ => {
            // 64 alphanumerics from a uniform draw: ~381 bits.
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let mut out = String::with_capacity(64);
            while out.len() < 64 {
                let mut b = [0u8; 64];
                getrandom_fill(&mut b)?;
                // Rejection sampling: 248 = 4 × 62 keeps the draw unbiased.
                out.extend(
                    b.iter()
                        .filter(|&&x| x < 248)
                        .map(|&x| ALPHABET[(x % 62) as usize] as char),
                );
            }
            out.truncate(64);
            Ok(SecretString::from(out))
        }
    }
}

fn getrandom_fill(buf: &mut [u8]) -> anyhow::Result<()> {
    use aws_lc_rs::rand::SecureRandom;
    aws_lc_rs::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| anyhow!("no randomness"))
}

async fn pending(client: &Client, event: &RotationEvent) -> anyhow::Result<Option<SecretString>> {
    let result = client
        .get_secret_value()
        .secret_id(&event.secret_id)
        .version_id(&event.token)
        .version_stage("AWSPENDING")
        .send()
        .await;
    match result {
        Ok(o) => Ok(o.secret_string().map(|s| SecretString::from(s.to_owned()))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!(
            aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()
        )),
    }
}

async fn create(client: &Client, rotation: &Rotation, event: &RotationEvent) -> anyhow::Result<()> {
    if pending(client, event).await?.is_some() {
        tracing::info!("createSecret: pending version exists already");
        return Ok(());
    }
    let value = new_key(rotation.algorithm)?;
    client
        .put_secret_value()
        .secret_id(&event.secret_id)
        .client_request_token(&event.token)
        .secret_string(value.expose_secret())
        .version_stages("AWSPENDING")
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))
        .context("put_secret_value AWSPENDING")?;
    tracing::info!("createSecret: new key staged as AWSPENDING");
    Ok(())
}

fn signing_key(algorithm: Algorithm, kid: &str, value: &SecretString) -> anyhow::Result<SigningKey> {
    Ok(match algorithm {
        Algorithm::EdDSA => SigningKey::ed25519_pem(kid, value)?,
        _ => SigningKey::hmac(kid, value.clone())?,
    })
}

/// The JWKS to publish: the pending key and the current one (if it is a usable key).
async fn jwks_with_pending(client: &Client, event: &RotationEvent, pending_pem: &SecretString) -> anyhow::Result<Jwks> {
    let pending_key = SigningKey::ed25519_pem(&event.token, pending_pem)?;
    let mut verifying: Vec<VerifyingKey> = Keys::from_set(KeySet {
        current: pending_key,
        previous: None,
    })?
    .verifying_keys()
    .to_vec();
    if let Some(current) = get_secret(client, &event.secret_id, "AWSCURRENT").await?
        && current.version_id != event.token
        && let Ok(key) = SigningKey::ed25519_pem(&current.version_id, &current.value)
    {
        verifying.extend(
            Keys::from_set(KeySet {
                current: key,
                previous: None,
            })?
            .verifying_keys()
            .iter()
            .cloned(),
        );
    }
    Ok(Keys::verify_only(Algorithm::EdDSA, verifying).jwks())
}

async fn set(client: &Client, rotation: &Rotation, event: &RotationEvent) -> anyhow::Result<()> {
    if rotation.algorithm != Algorithm::EdDSA {
        return Ok(());
    }
    let jwks_arn = rotation
        .jwks_arn
        .as_deref()
        .ok_or_else(|| anyhow!("EdDSA rotation needs JWT_JWKS_ARN"))?;
    let value = pending(client, event)
        .await?
        .ok_or_else(|| anyhow!("setSecret: no pending version"))?;
    let jwks = jwks_with_pending(client, event, &value).await?;
    client
        .put_secret_value()
        .secret_id(jwks_arn)
        .client_request_token(&event.token)
        .secret_string(serde_json::to_string(&jwks)?)
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))
        .context("publishing the JWKS")?;
    tracing::info!(kids = ?jwks.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(), "setSecret: JWKS published");
    Ok(())
}

async fn test(client: &Client, rotation: &Rotation, event: &RotationEvent) -> anyhow::Result<()> {
    let value = pending(client, event)
        .await?
        .ok_or_else(|| anyhow!("testSecret: no pending version"))?;
    let key = signing_key(rotation.algorithm, &event.token, &value)?;
    let settings = TokenSettings {
        issuer: "rotation-test".into(),
        audience: "rotation-test".into(),
        ttl: std::time::Duration::from_secs(60),
    };
    let signer = Tokens::new(
        Keys::from_set(KeySet {
            current: key,
            previous: None,
        })?,
        settings.clone(),
        None,
    );
    let token = signer.issue(uuid::Uuid::nil(), uuid::Uuid::nil(), access::roles::Role::User)?;
    let verifier = match (rotation.algorithm, &rotation.jwks_arn) {
        (Algorithm::EdDSA, Some(jwks_arn)) => {
            let jwks = access::keys::load_jwks(client, jwks_arn).await?;
            Tokens::new(
                Keys::verify_only(Algorithm::EdDSA, jwks.verifying_keys()?),
                settings,
                None,
            )
        }
        _ => signer,
    };
    verifier
        .verify(token.token.expose_secret())
        .map_err(|e| anyhow!("the pending key does not verify: {e}"))?;
    tracing::info!("testSecret: pending key signs and verifies");
    Ok(())
}

async fn finish(client: &Client, event: &RotationEvent) -> anyhow::Result<()> {
    let described = client
        .describe_secret()
        .secret_id(&event.secret_id)
        .send()
        .await
        .context("describe_secret")?;
    let current = described
        .version_ids_to_stages()
        .into_iter()
        .flatten()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(v, _)| v.clone());
    if current.as_deref() == Some(event.token.as_str()) {
        tracing::info!("finishSecret: already current");
        return Ok(());
    }
    let mut request = client
        .update_secret_version_stage()
        .secret_id(&event.secret_id)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&event.token);
    if let Some(current) = current {
        request = request.remove_from_version_id(current);
    }
    request
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))
        .context("update_secret_version_stage")?;
    tracing::info!("finishSecret: pending version is now AWSCURRENT");
    Ok(())
}
