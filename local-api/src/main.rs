//! `local-api`: serve every route on 127.0.0.1:3000 (`PORT` overrides), applying migrations first.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use settings::LocalApiSettings;
use store::startup::{self, Migrations};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    settings::telemetry::init()?;
    let settings = LocalApiSettings::from_env()?;
    let state = Arc::new(startup::state(settings.function, Migrations::Apply).await?);
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
