//! The sender step as a background task (the local API, and the end-to-end tests through it):
//! it `LISTEN`s on the outbox's channel, so a job queued by a request is sent at once, and also
//! wakes every `poll` for retries that came due and for notifications missed while reconnecting.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use secrecy::SecretString;
use settings::OutboxSettings;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::{MailSettings, SharedMailer, deliver_due, purge};

/// The NOTIFY channel of `mail_outbox` inserts (migrations/V7).
pub const CHANNEL: &str = "mail_outbox";

/// Jobs per wake-up before the task looks at its wake-ups again.
const BATCH: usize = 100;

/// Start the sender task on `pool`, listening through its own connection to `url`.
pub fn spawn(
    pool: Pool,
    config: OutboxSettings,
    url: SecretString,
    mail: MailSettings,
    mailer: SharedMailer,
    poll: Duration,
) -> JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen_forever(url, config.clone(), wake.clone()));
    tokio::spawn(async move {
        // The listener goes when the sender does (the handle is aborted).
        let _listener = AbortOnDrop(listener);
        let mut last_purge = tokio::time::Instant::now();
        loop {
            match deliver_due(&pool, &config, &mail, mailer.as_ref(), BATCH).await {
                Ok(done) if done == crate::Delivered::default() => {}
                Ok(done) => tracing::debug!(?done, "mail sender ran"),
                Err(e) => tracing::warn!(error = %e, "mail sender: database problem; retrying later"),
            }
            if last_purge.elapsed() > Duration::from_secs(3600) {
                last_purge = tokio::time::Instant::now();
                if let Err(e) = purge(&pool, &config).await {
                    tracing::warn!(error = %e, "mail sender: purge failed");
                }
            }
            let _ = tokio::time::timeout(poll, wake.notified()).await;
        }
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keep a `LISTEN` connection open, reconnecting with back-off, and wake the sender on every
/// notification (and once after each reconnect, for jobs queued meanwhile).
async fn listen_forever(url: SecretString, config: OutboxSettings, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&url, &config, &wake).await {
            Ok(()) => tracing::debug!("mail sender: listen connection closed"),
            Err(e) => tracing::debug!(error = %e, "mail sender: listen connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once(url: &SecretString, config: &OutboxSettings, wake: &Arc<Notify>) -> anyhow::Result<()> {
    let target = store::db::pg_config(url, &config.db)?;
    match target.connector() {
        Some(tls) => {
            let (client, connection) = target.config.connect(tls).await?;
            drive(client, connection, wake).await
        }
        None => {
            let (client, connection) = target.config.connect(tokio_postgres::NoTls).await?;
            drive(client, connection, wake).await
        }
    }
}

async fn drive<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    wake: &Arc<Notify>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let notify = wake.clone();
    // The connection must be polled for the LISTEN below to complete: a task of its own.
    let messages = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => notify.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    wake.notify_one();
    let ended = messages.await;
    drop(client);
    Ok(ended??)
}
