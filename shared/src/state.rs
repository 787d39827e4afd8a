//! Everything a handler needs, built once per cold start and passed in explicitly, so tests can
//! build the same thing against their own database and call handlers directly.

use anyhow::Context;
use deadpool_postgres::Pool;

use crate::config::{Config, EnvReader};
use crate::password::Passwords;
use crate::secrets::{self, DatabaseUrlSource, KeySource};
use crate::tokens::{KeySet, TokenSettings, Tokens};

pub struct AppState {
    pub config: Config,
    pub pool: Pool,
    pub tokens: Tokens,
    pub passwords: Passwords,
}

impl AppState {
    pub fn new(config: Config, pool: Pool, keys: KeySet) -> anyhow::Result<Self> {
        let tokens = Tokens::new(crate::tokens::Keys::from_set(keys)?, token_settings(&config), None);
        Self::with_tokens(config, pool, tokens)
    }

    pub fn with_tokens(config: Config, pool: Pool, tokens: Tokens) -> anyhow::Result<Self> {
        let passwords = Passwords::new(config.argon2)?;
        Ok(Self {
            config,
            pool,
            tokens,
            passwords,
        })
    }

    /// Read configuration and secrets from the environment (and Secrets Manager where ARNs are
    /// set) and build the pool. Any problem stops start-up with a clear message.
    pub async fn from_env() -> anyhow::Result<Self> {
        let env = EnvReader::process();
        let config = Config::from_env()?;
        let key_source = KeySource::from_env(&env);
        let url_source = DatabaseUrlSource::from_env(&env);
        let client = match (key_source.remote(), &url_source) {
            (false, DatabaseUrlSource::Env) => None,
            _ => Some(secrets::client_from_env().await),
        };
        let tokens = secrets::tokens_from_source(key_source, &env, client.clone(), token_settings(&config))
            .await
            .context("loading the signing key")?;
        let url = secrets::load_database_url(&url_source, &env, client.as_ref())
            .await
            .context("loading the database URL")?;
        let pool = crate::db::pool(&url, &config.db)?;
        Self::with_tokens(config, pool, tokens)
    }
}

pub fn token_settings(config: &Config) -> TokenSettings {
    TokenSettings {
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        ttl: config.access_token_ttl,
    }
}

/// The verifier alone, for the authorizer: it needs no database and no password hasher.
pub async fn tokens_from_env() -> anyhow::Result<Tokens> {
    let env = EnvReader::process();
    let config = Config::from_env()?;
    let source = KeySource::from_env(&env);
    let client = if source.remote() {
        Some(secrets::client_from_env().await)
    } else {
        None
    };
    secrets::tokens_from_source(source, &env, client, token_settings(&config))
        .await
        .context("loading the signing key")
}

/// The pool alone, for functions that sign nothing (the scheduled clean-up).
pub async fn pool_from_env() -> anyhow::Result<(Config, Pool)> {
    let env = EnvReader::process();
    let config = Config::from_env()?;
    let source = DatabaseUrlSource::from_env(&env);
    let client = match source {
        DatabaseUrlSource::Env => None,
        DatabaseUrlSource::SecretsManager { .. } => Some(secrets::client_from_env().await),
    };
    let url = secrets::load_database_url(&source, &env, client.as_ref())
        .await
        .context("loading the database URL")?;
    let pool = crate::db::pool(&url, &config.db)?;
    Ok((config, pool))
}
