use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let (config, pool) = shared::state::pool_from_env().await?;
    let config = Arc::new(config);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let (pool, config) = (pool.clone(), config.clone());
        async move {
            let report = cleanup::run(&pool, &config.db, cleanup::CleanupSettings::default())
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "sessions_deleted": report.sessions_deleted,
                "rate_limits_deleted": report.rate_limits_deleted,
            }))
        }
    }))
    .await
}
