use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    // HS256 keys are never published: that mode serves an empty set and loads no key at all.
    let env = shared::config::EnvReader::process();
    let tokens = match shared::secrets::algorithm_from_env(&env)? {
        jsonwebtoken::Algorithm::EdDSA => Some(Arc::new(shared::state::tokens_from_env().await?)),
        _ => None,
    };
    lambda_http::run(service_fn(move |_: Request| {
        let tokens = tokens.clone();
        async move { Ok::<_, Infallible>(jwks::handle(tokens.as_deref()).await) }
    }))
    .await
}
