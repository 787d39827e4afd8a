//! Mail in the local API: the outbox's sender step runs here as a background task
//! (`mail_sender::worker`), delivering each message to the console (recipient, subject and link,
//! on standard output: the developer's mailbox), to `MAIL_DIR` as an RFC 5322 `.eml` file when
//! that is set, and to an SES-compatible emulator when `MAIL_SES_ENDPOINT` is set (the SES v2
//! code path of the deployed sender, e.g. moto on loopback). The settings are read with the rest
//! of the local API's ([`settings::LocalMailSettings`]).

use std::sync::Arc;

use deadpool_postgres::Pool;
use mail::{ConsoleMailer, DirMailer, Fanout, Mailer};
use secrecy::SecretString;
use settings::{Config, LocalMailSettings};
use tokio::task::JoinHandle;

/// Where the local API's mail goes: the console, and `MAIL_DIR` and `MAIL_SES_ENDPOINT` when set.
pub fn mailer(settings: &LocalMailSettings) -> anyhow::Result<Arc<dyn Mailer>> {
    let mut mailers: Vec<Arc<dyn Mailer>> = vec![Arc::new(ConsoleMailer)];
    if let Some(dir) = &settings.dir {
        let mailer = DirMailer::new(dir).map_err(|e| anyhow::anyhow!("MAIL_DIR {dir}: {e}"))?;
        tracing::info!(dir, "mail is written to MAIL_DIR as .eml files");
        mailers.push(Arc::new(mailer));
    }
    if let Some(endpoint) = &settings.ses_endpoint {
        tracing::info!(endpoint, "mail is sent through the SES v2 API at MAIL_SES_ENDPOINT");
        mailers.push(Arc::new(mail::ses::SesMailer::for_emulator(endpoint)));
    }
    Ok(Arc::new(Fanout(mailers)))
}

/// Start the sender task on `pool` (its LISTEN connection goes to `url`).
pub fn spawn_sender(
    pool: &Pool,
    config: &Config,
    url: SecretString,
    settings: &LocalMailSettings,
    mailer: Arc<dyn Mailer>,
) -> JoinHandle<()> {
    mail_sender::worker::spawn(
        pool.clone(),
        config.into(),
        url,
        settings.mail.clone(),
        mailer,
        settings.poll,
    )
}
