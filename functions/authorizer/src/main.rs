use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use settings::VerifierSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    settings::telemetry::init()?;
    let settings = VerifierSettings::from_env()?;
    let options = authorizer::Options {
        admin_require_mfa: settings.admin_require_mfa,
    };
    let tokens = Arc::new(access::keys::verifier(&settings).await?);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequest>| {
            let tokens = tokens.clone();
            async move { authorizer::handle_fresh_with(&tokens, &event.payload, options).await }
        },
    ))
    .await
}
