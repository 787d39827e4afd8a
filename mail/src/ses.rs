//! Amazon SES API v2 (`SendEmail` with raw content: the same RFC 5322 text as a `.eml` file, so
//! the plain-text and HTML parts reach the reader exactly as rendered). Deployed the client comes
//! from the Lambda role (IAM: `ses:SendEmail` on the sender identity only); in tests and locally
//! it can point at an SES-compatible emulator on loopback.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};

use crate::{Mailer, Message, SendError, SendFuture, to_eml};

pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client from the environment (region, credentials: the Lambda role), optionally with
    /// another endpoint (`AWS_ENDPOINT_URL_SESV2` is also honoured by the SDK itself).
    pub async fn from_env(endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self::new(Client::new(&loader.load().await))
    }

    /// A client for an emulator at `endpoint` (moto on loopback), configured explicitly: fixed
    /// region and dummy credentials, nothing read from the process environment.
    pub fn for_emulator(endpoint: &str) -> Self {
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
            .build();
        Self::new(Client::from_conf(config))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Throttling, a paused account, 429 and 5xx, timeouts and network failures are worth a retry;
/// any other refusal (a rejected message, an unverified sender, a bad request) is not. The
/// description is the SES error code and HTTP status only: SES messages can quote addresses.
pub fn classify(err: &SdkError<SendEmailError>) -> SendError {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let e = service.err();
            let code = e.code().unwrap_or("unknown");
            let what = format!("SES {code} (HTTP {status})");
            if e.is_too_many_requests_exception()
                || e.is_limit_exceeded_exception()
                || e.is_sending_paused_exception()
                || status == 429
                || status >= 500
            {
                SendError::Transient(what)
            } else {
                SendError::Permanent(what)
            }
        }
        SdkError::TimeoutError(_) => SendError::Transient("SES request timed out".into()),
        SdkError::DispatchFailure(_) => SendError::Transient("SES could not be reached".into()),
        SdkError::ResponseError(_) => SendError::Transient("SES answered something unreadable".into()),
        SdkError::ConstructionFailure(_) => SendError::Permanent("the SES request could not be built".into()),
        _ => SendError::Transient("SES call failed".into()),
    }
}

impl Mailer for SesMailer {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            let eml = to_eml(message, time::OffsetDateTime::now_utc())?;
            let raw = RawMessage::builder()
                .data(Blob::new(eml.into_bytes()))
                .build()
                .map_err(|_| SendError::Permanent("the raw SES message could not be built".into()))?;
            self.client
                .send_email()
                .from_email_address(&message.from)
                .destination(Destination::builder().to_addresses(&message.to).build())
                .content(EmailContent::builder().raw(raw).build())
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(())
        })
    }
}
