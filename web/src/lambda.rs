//! Running a handler in Lambda: business errors are already `Ok(Response)` with a 4xx/5xx, so the
//! service never returns `Err`. The state is built before (the `store` crate's start-up path).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_http::{Body, Request, Response, service_fn};

/// Serve `handler` forever with `state`.
pub async fn serve<S, F, Fut>(state: Arc<S>, handler: F) -> Result<(), lambda_http::Error>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    lambda_http::run(service_fn(move |req: Request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handler(state, req).await) }
    }))
    .await
}
