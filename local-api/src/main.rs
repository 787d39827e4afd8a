//! `local-api`: serve every route on 127.0.0.1:3000 (`PORT` overrides), applying migrations first.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use shared::AppState;
use shared::config::{Config, EnvReader};
use shared::secrets::{self, KeySource};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let env = EnvReader::process();
    let mut config = Config::from_env()?;
    let mut local = EnvReader::process();
    let cache_ttl = local_api::authorizer_cache_ttl(&mut local);
    let cache_ttl = local.finish(cache_ttl)?;
    if env.get("DB_POOL_SIZE").is_none() {
        // One connection suits one Lambda instance; this process serves every route at once.
        config.db.pool_size = 16;
    }
    let keys = secrets::load_keys(&KeySource::Env, &env, None)
        .await
        .context("loading the signing key")?;
    let url = SecretString::from(env.get("DATABASE_URL").context("DATABASE_URL must be set")?);

    let mut client = shared::db::connect(&url, &config.db).await?;
    let applied = shared::db::migrate(&mut client, &config.db).await?;
    tracing::info!(?applied, "migrations applied");
    drop(client);

    let pool = shared::db::pool(&url, &config.db)?;
    let mail = local_api::mail::from_env().await?;
    let _sender = local_api::mail::spawn_sender(&pool, &config, url.clone(), mail);
    let state = Arc::new(AppState::new(config, pool, keys)?);
    let port: u16 = match env.get("PORT") {
        Some(p) => p.parse().context("PORT must be a port number")?,
        None => 3000,
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!("local API listening on http://{addr}");
    tokio::select! {
        result = local_api::serve(listener, state, cache_ttl) => result.context("server failed"),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
