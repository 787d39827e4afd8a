//! `local-api`: serve every route on 127.0.0.1:3000 (`PORT` overrides), applying migrations first.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use settings::{DatabaseUrl, LocalApiSettings};
use store::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    settings::telemetry::init()?;
    let settings = LocalApiSettings::from_env()?;
    let function = settings.function;
    // The local API reads DATABASE_URL only (its settings refuse a secret's ARN): migrations and
    // the mail sender's LISTEN connection use it.
    let url = match &function.database {
        DatabaseUrl::Env(url) => url.clone(),
        DatabaseUrl::SecretsManager { .. } => anyhow::bail!("the local API reads DATABASE_URL only"),
    };
    let applied = startup::apply_migrations(&url, &function.config.db).await?;
    tracing::info!(?applied, "migrations applied");
    let mail = local_api::mail::mailer(&settings.mail)?;
    let state = Arc::new(startup::local_state(function).await?);
    let _sender = local_api::mail::spawn_sender(&state.pool, &state.config, url, &settings.mail, mail);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!("local API listening on http://{addr}");
    tokio::select! {
        result = local_api::serve(listener, state, settings.authorizer_cache_ttl) => result.context("server failed"),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
