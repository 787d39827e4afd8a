//! Everything a handler needs, built once per cold start (see `startup`) and passed in
//! explicitly, so tests can build the same thing against their own database and call handlers
//! directly.

use access::tokens::{KeySet, Keys, TokenSettings, Tokens};
use deadpool_postgres::Pool;
use settings::Config;

use crate::password::Passwords;

pub struct AppState {
    pub config: Config,
    pub pool: Pool,
    pub tokens: Tokens,
    pub passwords: Passwords,
}

impl AppState {
    pub fn new(config: Config, pool: Pool, keys: KeySet) -> anyhow::Result<Self> {
        let tokens = Tokens::new(Keys::from_set(keys)?, token_settings(&config), None);
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
}

pub fn token_settings(config: &Config) -> TokenSettings {
    config.tokens.clone()
}
