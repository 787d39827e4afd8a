//! Mail in the local API: the outbox's sender step runs here as a background task
//! (`mail_sender::worker`), delivering each message to the console (recipient, subject and link,
//! on standard output: the developer's mailbox), to `MAIL_DIR` as an RFC 5322 `.eml` file when
//! that is set, and to an SES-compatible emulator when `MAIL_SES_ENDPOINT` is set (the SES v2
//! code path of the deployed sender, e.g. moto on loopback).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use mail::{ConsoleMailer, DirMailer, Fanout, Mailer};
use mail_sender::MailSettings;
use secrecy::SecretString;
use shared::config::{Config, EnvReader};
use tokio::task::JoinHandle;

/// Where the local API's mail goes, and how it is sent.
pub struct LocalMail {
    pub settings: MailSettings,
    pub mailer: Arc<dyn Mailer>,
    /// `MAIL_POLL_MS`: how often the sender looks for retries that came due (jobs queued by a
    /// request wake it at once).
    pub poll: Duration,
}

/// From the environment: `MAIL_FROM`, `APP_URL` (local defaults), `MAIL_DIR`,
/// `MAIL_SES_ENDPOINT`, `MAIL_POLL_MS` and the retry settings.
pub async fn from_env() -> anyhow::Result<LocalMail> {
    let mut env = EnvReader::process();
    let settings = MailSettings::from_reader(&mut env, false);
    let poll = env.millis("MAIL_POLL_MS", 1000, 10, 60_000);
    let dir = env.get("MAIL_DIR");
    let endpoint = env.get("MAIL_SES_ENDPOINT");
    env.finish(())?;
    let mut mailers: Vec<Arc<dyn Mailer>> = vec![Arc::new(ConsoleMailer)];
    if let Some(dir) = dir {
        let mailer = DirMailer::new(&dir).map_err(|e| anyhow::anyhow!("MAIL_DIR {dir}: {e}"))?;
        tracing::info!(dir, "mail is written to MAIL_DIR as .eml files");
        mailers.push(Arc::new(mailer));
    }
    if let Some(endpoint) = endpoint {
        tracing::info!(endpoint, "mail is sent through the SES v2 API at MAIL_SES_ENDPOINT");
        mailers.push(Arc::new(mail::ses::SesMailer::for_emulator(&endpoint)));
    }
    Ok(LocalMail {
        settings,
        mailer: Arc::new(Fanout(mailers)),
        poll,
    })
}

/// Start the sender task on `pool` (its LISTEN connection goes to `url`).
pub fn spawn_sender(pool: &Pool, config: &Config, url: SecretString, mail: LocalMail) -> JoinHandle<()> {
    mail_sender::worker::spawn(pool.clone(), config.clone(), url, mail.settings, mail.mailer, mail.poll)
}
