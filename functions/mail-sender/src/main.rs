//! The sender step deployed: invoked by an EventBridge schedule (template.yaml), it sends every
//! due job of the outbox through Amazon SES v2, then purges old jobs and tokens.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use mail_sender::{deliver_due, purge};
use settings::{DatabaseSettings, MailSenderSettings};

/// Jobs per invocation: well inside the function timeout at SES's default send rate.
const MAX_JOBS: usize = 500;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    settings::telemetry::init()?;
    let started = async {
        let MailSenderSettings { outbox, database, mail } = MailSenderSettings::from_env()?;
        let pool = store::startup::pool(&DatabaseSettings {
            db: outbox.db.clone(),
            database,
            // The pool only: the sender deletes no events.
            event_retention: Default::default(),
        })
        .await?;
        anyhow::Ok((outbox, pool, mail))
    };
    let (config, pool, mail) = match started.await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = ?e, "start-up failed");
            return Err(e.into());
        }
    };
    let mailer = Arc::new(mail::ses::SesMailer::from_env(None).await);
    let shared = Arc::new((config, pool, mail));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let shared = shared.clone();
        let mailer = mailer.clone();
        async move {
            let (config, pool, mail) = &*shared;
            let done = deliver_due(pool, config, mail, mailer.as_ref(), MAX_JOBS).await?;
            let purged = purge(pool, config).await?;
            tracing::info!(?done, purged, "mail sender run");
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "sent": done.sent, "skipped": done.skipped, "retrying": done.retrying,
                "failed": done.failed, "purged": purged,
            }))
        }
    }))
    .await
}
