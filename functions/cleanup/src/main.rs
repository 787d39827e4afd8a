use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use settings::DatabaseSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    settings::telemetry::init()?;
    let settings = DatabaseSettings::from_env()?;
    let pool = store::startup::pool(&settings).await?;
    let cleanup_settings = cleanup::CleanupSettings {
        event_retention: settings.event_retention,
        ..cleanup::CleanupSettings::default()
    };
    let db = Arc::new(settings.db);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let (pool, db) = (pool.clone(), db.clone());
        async move {
            let report = cleanup::run(&pool, &db, cleanup_settings)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "sessions_deleted": report.sessions_deleted,
                "rate_limits_deleted": report.rate_limits_deleted,
                "events_deleted": report.events_deleted,
            }))
        }
    }))
    .await
}
