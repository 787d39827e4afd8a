//! The public recovery routes deployed. They sign and verify no access token, so this function
//! holds no key at all (template.yaml): its token service verifies nothing.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{Request, service_fn};
use shared::AppState;
use shared::config::EnvReader;
use shared::tokens::{Keys, Tokens};

async fn state() -> anyhow::Result<AppState> {
    let (config, pool) = shared::state::pool_from_env().await?;
    let algorithm = shared::secrets::algorithm_from_env(&EnvReader::process())?;
    let tokens = Tokens::new(
        Keys::verify_only(algorithm, Vec::new()),
        shared::state::token_settings(&config),
        None,
    );
    AppState::with_tokens(config, pool, tokens)
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let state = match state().await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = ?e, "start-up failed");
            return Err(e.into());
        }
    };
    lambda_http::run(service_fn(move |req: Request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(recovery::handle(&state, req).await) }
    }))
    .await
}
