//! Running a handler in Lambda: business errors are already `Ok(Response)` with a 4xx/5xx, so the
//! service never returns `Err`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_http::{Body, Request, Response, service_fn};

use crate::state::AppState;

/// Start-up for an HTTP function: tracing, config, secrets, pool, then serve `handler` forever.
pub async fn run_http<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Arc<AppState>, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    crate::telemetry::init();
    let state = match AppState::from_env().await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = ?e, "start-up failed");
            return Err(e.into());
        }
    };
    lambda_http::run(service_fn(move |req: Request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handler(state, req).await) }
    }))
    .await
}
