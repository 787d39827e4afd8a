use std::sync::Arc;

use jsonwebtoken::Algorithm;
use lambda_runtime::{LambdaEvent, service_fn};
use rotate_key::{Rotation, RotationEvent};
use settings::RotationSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    settings::telemetry::init()?;
    // One function rotates both keys: the Ed25519 private key (EdDSA) and the HMAC secret.
    let RotationSettings {
        private_key_arn,
        jwks_arn,
    } = RotationSettings::from_env()?;
    let private_key_arn = Arc::new(private_key_arn);
    let client = access::keys::client().await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RotationEvent>| {
        let (client, private_key_arn, jwks_arn) = (client.clone(), private_key_arn.clone(), jwks_arn.clone());
        async move {
            let event = event.payload;
            let algorithm = if private_key_arn.as_deref() == Some(event.secret_id.as_str()) {
                Algorithm::EdDSA
            } else {
                Algorithm::HS256
            };
            tracing::info!(step = %event.step, ?algorithm, "rotation step");
            rotate_key::handle(&client, &Rotation { algorithm, jwks_arn }, &event)
                .await
                .map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))
        }
    }))
    .await
}
