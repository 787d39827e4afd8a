//! Mail in the local API: the outbox's sender step runs here as a background task
//! (`mail_sender::worker`), delivering each message to the console (recipient, subject and link,
//! on standard output: the developer's mailbox), to `MAIL_DIR` as an RFC 5322 `.eml` file when
//! that is set, and to an SES-compatible emulator when `MAIL_SES_ENDPOINT` is set (the SES v2
//! code path of the deployed sender, e.g. moto on loopback; only in a local API built with the
//! `ses-emulator` feature, which links the AWS SDK). The settings are read with the rest of the
//! local API's ([`settings::LocalMailSettings`]).

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
        mailers.push(ses_emulator(endpoint)?);
    }
    Ok(Arc::new(Fanout(mailers)))
}

/// The SES v2 client for `MAIL_SES_ENDPOINT`.
#[cfg(feature = "ses-emulator")]
fn ses_emulator(endpoint: &str) -> anyhow::Result<Arc<dyn Mailer>> {
    tracing::info!(endpoint, "mail is sent through the SES v2 API at MAIL_SES_ENDPOINT");
    Ok(Arc::new(mail::ses::SesMailer::for_emulator(endpoint)))
}

/// Without the `ses-emulator` feature the binary has no SES client: refuse to start rather than
/// leave out a delivery that was asked for.
#[cfg(not(feature = "ses-emulator"))]
fn ses_emulator(_endpoint: &str) -> anyhow::Result<Arc<dyn Mailer>> {
    anyhow::bail!(
        "MAIL_SES_ENDPOINT is set, but this local API was built without SES support: \
         run it with `cargo run -p local-api --features ses-emulator`"
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ses_endpoint: Option<&str>) -> LocalMailSettings {
        let mut env = settings::EnvReader::new(|_| None);
        let mut s = LocalMailSettings::read(&mut env);
        s.ses_endpoint = ses_endpoint.map(str::to_owned);
        s
    }

    #[test]
    fn the_console_alone_by_default() {
        assert!(mailer(&settings(None)).is_ok());
    }

    #[cfg(not(feature = "ses-emulator"))]
    #[test]
    fn an_ses_endpoint_is_refused_without_the_feature() {
        let err = mailer(&settings(Some("http://127.0.0.1:5000")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--features ses-emulator"), "{err}");
    }

    #[cfg(feature = "ses-emulator")]
    #[tokio::test]
    async fn an_ses_endpoint_adds_the_ses_client_with_the_feature() {
        assert!(mailer(&settings(Some("http://127.0.0.1:5000"))).is_ok());
    }
}
