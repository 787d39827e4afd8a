use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{Request, service_fn};
use settings::JwksSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    settings::telemetry::init()?;
    // HS256 keys are never published: that mode serves an empty set and loads no key at all.
    let tokens = match JwksSettings::from_env()?.verifier {
        Some(verifier) => Some(Arc::new(access::keys::verifier(&verifier).await?)),
        None => None,
    };
    lambda_http::run(service_fn(move |_: Request| {
        let tokens = tokens.clone();
        async move { Ok::<_, Infallible>(jwks::handle(tokens.as_deref()).await) }
    }))
    .await
}
