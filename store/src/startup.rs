//! The one start-up path: settings, then secrets, then the pool, then the state. The Lambda
//! functions ([`run_http`]), the local API and the scheduled clean-up all start here, so what a
//! deployed function and the local API run with is built the same way.

use std::future::Future;
use std::sync::Arc;

use access::keys::{self, EnvOnly, SecretStore};
use anyhow::{Context, anyhow};
use deadpool_postgres::Pool;
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use settings::{DatabaseSettings, DatabaseUrl, DbSettings, FunctionSettings, MfaKeySource};

use crate::db;
use crate::mfa_key::MfaKeys;
use crate::state::AppState;

/// Read the database URL: the environment's, or the secret's `AWSCURRENT`.
pub async fn load_database_url<S: SecretStore>(
    source: &DatabaseUrl,
    client: Option<&S>,
) -> anyhow::Result<SecretString> {
    match source {
        DatabaseUrl::Env(url) => Ok(url.clone()),
        DatabaseUrl::SecretsManager { arn } => {
            let client = client.ok_or_else(|| anyhow!("no Secrets Manager client"))?;
            let v = client
                .get(arn, "AWSCURRENT")
                .await?
                .ok_or_else(|| anyhow!("database URL secret has no AWSCURRENT version"))?;
            Ok(v.value)
        }
    }
}

/// Apply the pending migrations (the local API, at start, and `todo-admin migrate`). Kept apart
/// from [`state`] so that the functions, which never migrate, do not link the migration runner.
pub async fn apply_migrations(url: &SecretString, settings: &DbSettings) -> anyhow::Result<Vec<String>> {
    let mut client = db::connect(url, settings).await?;
    db::migrate(&mut client, settings).await
}

/// Secrets (from Secrets Manager where ARNs are configured), then the pool, then the state: a
/// function's start-up.
pub async fn state(settings: FunctionSettings) -> anyhow::Result<AppState> {
    let mfa_remote = matches!(settings.config.mfa.key, Some(MfaKeySource::SecretsManager { .. }));
    let remote =
        settings.keys.source.remote() || matches!(settings.database, DatabaseUrl::SecretsManager { .. }) || mfa_remote;
    let client = if remote { Some(keys::client().await) } else { None };
    state_from(settings, client).await
}

/// [`state`] for the local API, whose settings name no secret by ARN (they refuse one): the same
/// path with [`EnvOnly`] secrets, so the local API never links the AWS SDK.
pub async fn local_state(settings: FunctionSettings) -> anyhow::Result<AppState> {
    state_from(settings, Some(EnvOnly)).await
}

async fn state_from<S: SecretStore>(settings: FunctionSettings, client: Option<S>) -> anyhow::Result<AppState> {
    let FunctionSettings { config, keys, database } = settings;
    let mfa_arn = match &config.mfa.key {
        Some(MfaKeySource::SecretsManager { arn }) => Some(arn.clone()),
        _ => None,
    };
    let tokens = keys::tokens(keys, client.clone(), config.tokens.clone())
        .await
        .context("loading the signing key")?;
    let url = load_database_url(&database, client.as_ref())
        .await
        .context("loading the database URL")?;
    let pool = db::pool(&url, &config.db)?;
    let mut state = AppState::with_tokens(config, pool, tokens)?;
    if let Some(arn) = mfa_arn {
        let client = client.as_ref().ok_or_else(|| anyhow!("no Secrets Manager client"))?;
        state.mfa_keys = Some(
            load_mfa_keys(client, &arn)
                .await
                .context("loading the MFA encryption key")?,
        );
    }
    Ok(state)
}

/// The MFA encryption keys from Secrets Manager: `AWSCURRENT` encrypts, `AWSPREVIOUS` (when there
/// is one) still decrypts; each key's id is its version id.
pub async fn load_mfa_keys<S: SecretStore>(client: &S, arn: &str) -> anyhow::Result<MfaKeys> {
    let current = client
        .get(arn, "AWSCURRENT")
        .await?
        .ok_or_else(|| anyhow!("the MFA encryption key secret has no AWSCURRENT version"))?;
    let previous = client.get(arn, "AWSPREVIOUS").await?;
    MfaKeys::new(
        (current.version_id.clone(), &current.value),
        previous.as_ref().map(|p| (p.version_id.clone(), &p.value)),
    )
}

/// The pool alone, for what signs nothing (the scheduled clean-up).
pub async fn pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let client = match settings.database {
        DatabaseUrl::Env(_) => None,
        DatabaseUrl::SecretsManager { .. } => Some(keys::client().await),
    };
    let url = load_database_url(&settings.database, client.as_ref())
        .await
        .context("loading the database URL")?;
    db::pool(&url, &settings.db)
}

/// An HTTP function's whole `main`: logging, settings, state, then serve `handler` forever.
/// Any problem stops start-up with a clear message.
pub async fn run_http<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Arc<AppState>, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    serve_http(FunctionSettings::from_env, handler).await
}

/// [`run_http`] for a function that encrypts or decrypts TOTP secrets: without a usable MFA
/// encryption key (`MFA_ENCRYPTION_KEY_ARN` or `MFA_ENCRYPTION_KEY`) it does not start.
pub async fn run_http_mfa<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Arc<AppState>, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    serve_http(require_mfa_key, handler).await
}

fn require_mfa_key() -> Result<FunctionSettings, settings::ConfigError> {
    let settings = FunctionSettings::from_env()?;
    if settings.config.mfa.key.is_none() {
        return Err(settings::ConfigError {
            problems: vec![
                "MFA_ENCRYPTION_KEY (or MFA_ENCRYPTION_KEY_ARN) must be set: 32 random bytes, base64".into(),
            ],
        });
    }
    Ok(settings)
}

/// [`run_http`] for a function that holds no key ([`FunctionSettings::keyless_from_env`]).
pub async fn run_http_keyless<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Arc<AppState>, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    serve_http(FunctionSettings::keyless_from_env, handler).await
}

async fn serve_http<F, Fut>(
    load: fn() -> Result<FunctionSettings, settings::ConfigError>,
    handler: F,
) -> Result<(), lambda_http::Error>
where
    F: Fn(Arc<AppState>, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    settings::telemetry::init()?;
    let state = match load() {
        Ok(settings) => state(settings).await,
        Err(e) => Err(e.into()),
    };
    let state = match state {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = ?e, "start-up failed");
            return Err(e.into());
        }
    };
    web::lambda::serve(state, handler).await
}
