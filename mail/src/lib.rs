//! Account mail: what a password-reset or verification message says, the RFC 5322 text of it,
//! and where it goes.
//!
//! Everything here is independent of the database and of the HTTP functions: the sender step
//! (`recovery::outbox`) makes the token, asks [`compose`] for the message and hands it to a
//! [`Mailer`]. Deployed that is Amazon SES API v2 ([`ses::SesMailer`]); locally the console
//! ([`ConsoleMailer`]) and, with `MAIL_DIR`, a directory of `.eml` files ([`DirMailer`]); in tests
//! SES against an emulator, or memory ([`MemoryMailer`]).
//!
//! A message holds a link with a live token: its `Debug` shows neither the link nor the bodies,
//! and no error of a sender quotes them, so a message can never reach a log line by accident.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub mod ses;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    EmailVerification,
}

impl Purpose {
    /// The front-end page the link opens (`APP_URL` + this + `?token=...`).
    pub fn page(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "/reset-password",
            Purpose::EmailVerification => "/verify-email",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "Reset your password",
            Purpose::EmailVerification => "Confirm your email address",
        }
    }
}

/// One message, ready to send. Its link (and so both bodies) carries a live token.
#[derive(Clone)]
pub struct Message {
    pub id: uuid::Uuid,
    pub purpose: Purpose,
    pub from: String,
    pub to: String,
    pub subject: String,
    link: SecretString,
    text: SecretString,
    html: SecretString,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// The link with the token. Only a mailbox (or the local console) may show it.
    pub fn link(&self) -> &str {
        self.link.expose_secret()
    }

    pub fn text(&self) -> &str {
        self.text.expose_secret()
    }

    pub fn html(&self) -> &str {
        self.html.expose_secret()
    }
}

/// `30 minutes`, `24 hours`, `90 seconds`: how long a link lives, in the unit a reader expects.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Escape text for HTML (the link is base64url and an http(s) URL, but nothing is assumed).
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The message for `purpose` to `to`, from `from`, whose link is `app_url` + the purpose's page
/// with `token`, valid for `ttl`. Plain text and a simple HTML part say the same: what the link
/// does, that it works once, when it expires, and what to do if the reader did not ask.
pub fn compose(purpose: Purpose, from: &str, to: &str, app_url: &str, token: &SecretString, ttl: Duration) -> Message {
    let link = format!(
        "{}{}?token={}",
        app_url.trim_end_matches('/'),
        purpose.page(),
        token.expose_secret()
    );
    let expiry = human_duration(ttl);
    let (intro, action, not_you) = match purpose {
        Purpose::PasswordReset => (
            "Someone asked to reset the password of the account registered with this email address.",
            "To choose a new password, open this link:",
            "If you did not ask for this, ignore this message: your password stays as it is, and \
             nobody can use the link without access to your mailbox.",
        ),
        Purpose::EmailVerification => (
            "Thank you for signing up. Please confirm that this email address is yours.",
            "To confirm it, open this link:",
            "If you did not sign up, ignore this message: without the link nobody can confirm \
             this address.",
        ),
    };
    let lifetime = format!("The link works once and expires in {expiry}.");
    let after_reset = match purpose {
        Purpose::PasswordReset => "\r\nResetting the password signs you out everywhere.\r\n",
        Purpose::EmailVerification => "",
    };
    let text = format!(
        "Hello,\r\n\r\n{intro}\r\n\r\n{action}\r\n\r\n{link}\r\n\r\n{lifetime}\r\n{after_reset}\r\n{not_you}\r\n"
    );
    let href = html_escape(&link);
    let after_reset_html = if after_reset.is_empty() {
        String::new()
    } else {
        "<p>Resetting the password signs you out everywhere.</p>\r\n".to_owned()
    };
    let html = format!(
        "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>{subject}</title></head>\r\n<body>\r\n\
         <p>Hello,</p>\r\n<p>{intro}</p>\r\n<p>{action}</p>\r\n<p><a href=\"{href}\">{href}</a></p>\r\n\
         <p>{lifetime}</p>\r\n{after_reset_html}<p>{not_you}</p>\r\n</body></html>\r\n",
        subject = html_escape(purpose.subject()),
        intro = html_escape(intro),
        action = html_escape(action),
        lifetime = html_escape(&lifetime),
        not_you = html_escape(not_you),
    );
    Message {
        id: uuid::Uuid::new_v4(),
        purpose,
        from: from.to_owned(),
        to: to.to_owned(),
        subject: purpose.subject().to_owned(),
        link: SecretString::from(link),
        text: SecretString::from(text),
        html: SecretString::from(html),
    }
}

/// The address part of `Name <addr>` or `addr`.
fn address_of(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(start), Some(end)) if start < end => &mailbox[start + 1..end],
        _ => mailbox.trim(),
    }
}

/// Whether a header value can be written as it is: printable ASCII, no line breaks.
fn header_safe(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The RFC 5322 text of a message (MIME `multipart/alternative`: plain text, then HTML), with
/// CRLF line ends. Every part is 7-bit ASCII (the templates are, and so are base64url tokens and
/// the checked `APP_URL`), so no transfer encoding is needed. An address or subject that is not
/// printable ASCII (an internationalised address needs SMTPUTF8, which this does not speak) is a
/// permanent failure: it cannot be written into a header.
pub fn to_eml(message: &Message, date: time::OffsetDateTime) -> Result<String, SendError> {
    for (name, value) in [
        ("From", &message.from),
        ("To", &message.to),
        ("Subject", &message.subject),
    ] {
        if !header_safe(value) {
            return Err(SendError::Permanent(format!(
                "the {name} header is not printable ASCII (internationalised addresses are not supported)"
            )));
        }
    }
    let date = date
        .format(&time::format_description::well_known::Rfc2822)
        .map_err(|e| SendError::Permanent(format!("formatting the Date header: {e}")))?;
    let domain = address_of(&message.from).rsplit('@').next().unwrap_or("localhost");
    let boundary = format!("=_todo_api_{}", message.id.simple());
    let eml = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}@{domain}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         This is a message in MIME format.\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n\
         --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{html}\r\n\
         --{boundary}--\r\n",
        from = message.from,
        to = message.to,
        subject = message.subject,
        id = message.id.simple(),
        text = message.text(),
        html = message.html(),
    );
    if !eml
        .bytes()
        .all(|b| b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b))
    {
        return Err(SendError::Permanent("the message is not 7-bit ASCII".into()));
    }
    Ok(eml)
}

/// Why a message was not sent. The text names the kind of failure (an SES error code, an I/O
/// error): never the link, the token or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying later (throttling, a timeout, a 5xx, the network).
    Transient(String),
    /// Retrying cannot help (a rejected message, an unverified sender, a bad address).
    Permanent(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Transient(s) => write!(f, "transient: {s}"),
            SendError::Permanent(s) => write!(f, "permanent: {s}"),
        }
    }
}

impl std::error::Error for SendError {}

/// What [`Mailer::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Something that delivers a message: one method, so the sender step can be tested with any.
pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a>;
}

/// Prints recipient, subject and link on standard output: the local API's mailbox for a
/// developer. Never used deployed (where a link in a log line would be a live token in
/// CloudWatch); it writes to stdout, not through `tracing`.
pub struct ConsoleMailer;

impl Mailer for ConsoleMailer {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            println!("mail to {} | {} | {}", message.to, message.subject, message.link());
            Ok(())
        })
    }
}

/// Writes each message as an RFC 5322 `.eml` file into a directory (`MAIL_DIR`), named
/// `<UTC time>-<message id>.eml`: any mail client opens it. Written to a temporary name and
/// renamed, so a reader never sees half a file.
pub struct DirMailer {
    dir: PathBuf,
}

impl DirMailer {
    /// Creates the directory if needed.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

impl Mailer for DirMailer {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            let now = time::OffsetDateTime::now_utc();
            let eml = to_eml(message, now)?;
            let stamp = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}{:09}Z",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second(),
                now.nanosecond()
            );
            let name = format!("{stamp}-{}.eml", message.id.simple());
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let path = self.dir.join(&name);
            std::fs::write(&tmp, eml.as_bytes())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| {
                    SendError::Transient(format!("writing to MAIL_DIR {}: {}", self.dir.display(), e.kind()))
                })?;
            Ok(())
        })
    }
}

/// Delivers to every mailer in turn; the first failure is the answer (the step retries all).
pub struct Fanout(pub Vec<Arc<dyn Mailer>>);

impl Mailer for Fanout {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            for mailer in &self.0 {
                mailer.send(message).await?;
            }
            Ok(())
        })
    }
}

/// Keeps messages in memory (tests), and can be told to fail the next sends.
#[derive(Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<Message>>,
    failures: Mutex<std::collections::VecDeque<SendError>>,
    attempts: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl MemoryMailer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The next sends fail with these errors, in order.
    pub fn fail_next(&self, errors: impl IntoIterator<Item = SendError>) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).extend(errors);
    }

    /// Every message sent so far.
    pub fn sent(&self) -> Vec<Message> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many sends were attempted (failed ones included).
    pub fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The messages to `to`, once there are at least `n` of them, or what there is after `wait`.
    pub async fn wait_for(&self, to: &str, n: usize, wait: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let mine: Vec<Message> = self.sent().into_iter().filter(|m| m.to == to).collect();
            if mine.len() >= n || tokio::time::Instant::now() >= deadline {
                return mine;
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }
}

impl Mailer for MemoryMailer {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let failure = self.failures.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            if let Some(failure) = failure {
                return Err(failure);
            }
            self.sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(message.clone());
            self.arrived.notify_waiters();
            Ok(())
        })
    }
}

/// A new token: 32 random bytes (256 bits), base64url without padding (43 characters).
pub fn new_token() -> Result<SecretString, getrandom::Error> {
    use base64::Engine;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn token() -> SecretString {
        SecretString::from("tok_EN-123".to_owned())
    }

    #[test]
    fn the_reset_message_has_the_link_the_expiry_and_the_not_you_line_in_both_parts() {
        let m = compose(
            Purpose::PasswordReset,
            "Todo <no-reply@example.com>",
            "a@example.com",
            "https://app.example.com/",
            &token(),
            Duration::from_secs(1800),
        );
        assert_eq!(m.link(), "https://app.example.com/reset-password?token=tok_EN-123");
        for body in [m.text(), m.html()] {
            assert!(
                body.contains("https://app.example.com/reset-password?token=tok_EN-123"),
                "{body}"
            );
            assert!(body.contains("expires in 30 minutes"), "{body}");
            assert!(body.contains("If you did not ask for this"), "{body}");
        }
        assert!(
            m.html()
                .contains("<a href=\"https://app.example.com/reset-password?token=tok_EN-123\">")
        );
        let debug = format!("{m:?}");
        assert!(!debug.contains("tok_EN"), "Debug never shows the token: {debug}");
    }

    #[test]
    fn the_verification_message_says_24_hours() {
        let m = compose(
            Purpose::EmailVerification,
            "no-reply@example.com",
            "a@example.com",
            "http://localhost:5173",
            &token(),
            Duration::from_secs(86_400),
        );
        assert_eq!(m.link(), "http://localhost:5173/verify-email?token=tok_EN-123");
        assert!(m.text().contains("expires in 24 hours"));
        assert!(m.text().contains("If you did not sign up"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
    }

    #[test]
    fn the_eml_is_multipart_alternative_with_crlf_and_ascii_only() {
        let m = compose(
            Purpose::PasswordReset,
            "Todo <no-reply@example.com>",
            "a@example.com",
            "https://app.example.com",
            &token(),
            Duration::from_secs(1800),
        );
        let eml = to_eml(&m, time::OffsetDateTime::UNIX_EPOCH).unwrap();
        assert!(
            eml.starts_with(
                "From: Todo <no-reply@example.com>\r\nTo: a@example.com\r\nSubject: Reset your password\r\n"
            )
        );
        assert!(eml.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"), "{eml}");
        assert!(eml.contains(&format!("Message-ID: <{}@example.com>", m.id.simple())));
        assert!(eml.contains("Content-Type: multipart/alternative; boundary="));
        assert!(eml.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(eml.contains("Content-Type: text/html; charset=utf-8"));
        assert!(!eml.replace("\r\n", "").contains('\n'), "every line ends CRLF");
        assert!(eml.lines().all(|l| l.len() <= 998));
        let intl = compose(
            Purpose::PasswordReset,
            "no-reply@example.com",
            "Ünïcode@example.com",
            "https://app.example.com",
            &token(),
            Duration::from_secs(1800),
        );
        assert!(matches!(
            to_eml(&intl, time::OffsetDateTime::UNIX_EPOCH),
            Err(SendError::Permanent(_))
        ));
    }

    #[test]
    fn tokens_have_256_random_bits() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.expose_secret().len(), 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(
            a.expose_secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[tokio::test]
    async fn the_dir_mailer_writes_one_eml_file_per_message() {
        let dir = std::env::temp_dir().join(format!("todo-api-mail-test-{}", uuid::Uuid::new_v4().simple()));
        let mailer = DirMailer::new(&dir).unwrap();
        let m = compose(
            Purpose::EmailVerification,
            "no-reply@example.com",
            "a@example.com",
            "https://app.example.com",
            &token(),
            Duration::from_secs(60),
        );
        mailer.send(&m).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].extension().is_some_and(|e| e == "eml"));
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("https://app.example.com/verify-email?token=tok_EN-123"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
