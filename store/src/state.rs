//! Everything a handler needs, built once per cold start (see `startup`) and passed in
//! explicitly, so tests can build the same thing against their own database and call handlers
//! directly.

use access::tokens::{KeySet, Keys, TokenSettings, Tokens};
use deadpool_postgres::Pool;
use settings::Config;

use crate::mfa_key::MfaKeys;
use crate::password::Passwords;

pub struct AppState {
    pub config: Config,
    pub pool: Pool,
    pub tokens: Tokens,
    pub passwords: Passwords,
    /// The TOTP secret encryption keys (`None` without `MFA_ENCRYPTION_KEY`: the MFA routes then
    /// answer 503, and the MFA function does not start).
    pub mfa_keys: Option<MfaKeys>,
}

impl AppState {
    pub fn new(config: Config, pool: Pool, keys: KeySet) -> anyhow::Result<Self> {
        let tokens = Tokens::new(Keys::from_set(keys)?, token_settings(&config), None);
        Self::with_tokens(config, pool, tokens)
    }

    pub fn with_tokens(config: Config, pool: Pool, tokens: Tokens) -> anyhow::Result<Self> {
        let passwords = Passwords::new(config.argon2)?;
        // Keys given in the environment are decoded here (a short one stops start-up); keys in
        // Secrets Manager are loaded by `startup::state`.
        let mfa_keys = match &config.mfa.key {
            Some(settings::MfaKeySource::Env { current, previous }) => Some(
                MfaKeys::from_env(current, previous.as_ref())
                    .map_err(|e| anyhow::anyhow!("MFA_ENCRYPTION_KEY: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            config,
            pool,
            tokens,
            passwords,
            mfa_keys,
        })
    }
}

pub fn token_settings(config: &Config) -> TokenSettings {
    config.tokens.clone()
}
