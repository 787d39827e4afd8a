//! The one error type every handler returns, and the one place that turns it into RFC 9457
//! `application/problem+json`.
//!
//! Variants are HTTP outcomes. Expected outcomes (bad input, wrong password, ...) carry what the
//! client needs to know; unexpected ones (`Internal`, `ServiceUnavailable`) carry the cause for the
//! log and answer with a generic body, so no SQL, driver message or secret ever reaches a client.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

/// One problem with one field of a request, listed in a 422's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// What the `WWW-Authenticate` header of a 401 says (RFC 6750).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No access token was sent: `Bearer`.
    Bearer,
    /// An access token was sent and is not acceptable: `Bearer error="invalid_token"`.
    InvalidToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// A key repeated in one JSON object (400 `malformed_json`, the detail names it).
    #[error("duplicate key in JSON body")]
    DuplicateKey { key: String, path: String },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unknown fields in request body")]
    UnknownFields(Vec<FieldError>),
    #[error("request failed validation")]
    Validation(Vec<FieldError>),
    #[error("missing or unacceptable access token")]
    Unauthenticated(Challenge),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account disabled")]
    AccountDisabled,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// The `mfa_token` of a two-step login is unknown, used, expired or out of attempts.
    #[error("invalid mfa token")]
    InvalidMfaToken,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    /// No route has this method and path (what the gateway answers, deployed and local alike).
    #[error("no such route")]
    NoRoute,
    #[error("email taken")]
    EmailTaken,
    #[error("conflict: {code}")]
    Conflict { code: &'static str, detail: &'static str },
    /// 400 with its own code (an unusable reset or verification token).
    #[error("bad request: {code}")]
    BadRequest { code: &'static str, detail: &'static str },
    /// 403 with its own code (`email_not_verified`).
    #[error("refused: {code}")]
    Refused { code: &'static str, detail: &'static str },
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable")]
    ServiceUnavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The `type` URI of a problem: a stable, non-dereferenceable URN per code.
pub fn problem_type(code: &str) -> String {
    format!("urn:todo-api:problem:{code}")
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedJson(_) | DuplicateKey { .. } | BadRequest { .. } => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnknownFields(_) | Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Unauthenticated(_) | InvalidCredentials | InvalidRefreshToken | RefreshTokenReused | InvalidMfaToken => {
                StatusCode::UNAUTHORIZED
            }
            AccountDisabled | Forbidden | Refused { .. } => StatusCode::FORBIDDEN,
            NotFound | NoRoute => StatusCode::NOT_FOUND,
            EmailTaken | Conflict { .. } => StatusCode::CONFLICT,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable `code` of the problem.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MalformedJson(_) | DuplicateKey { .. } => "malformed_json",
            UnsupportedMediaType => "unsupported_media_type",
            PayloadTooLarge => "payload_too_large",
            UnknownFields(_) => "unknown_field",
            Validation(_) => "validation_failed",
            Unauthenticated(_) => "invalid_token",
            InvalidCredentials => "invalid_credentials",
            AccountDisabled => "account_disabled",
            InvalidRefreshToken => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            InvalidMfaToken => "invalid_mfa_token",
            Forbidden => "forbidden",
            NotFound | NoRoute => "not_found",
            EmailTaken => "email_taken",
            Conflict { code, .. } | BadRequest { code, .. } | Refused { code, .. } => code,
            RateLimited { .. } => "rate_limited",
            ServiceUnavailable(_) => "service_unavailable",
            Internal(_) => "internal_error",
        }
    }

    fn detail(&self) -> std::borrow::Cow<'static, str> {
        use ApiError::*;
        if let DuplicateKey { key, path } = self {
            // Bounded, and quoted as JSON so any character in the key stays visible and harmless.
            let quote = |s: &str| serde_json::to_string(&s.chars().take(64).collect::<String>()).unwrap_or_default();
            return format!(
                "The JSON body has the key {} more than once (at {}).",
                quote(key),
                quote(path)
            )
            .into();
        }
        let text: &'static str = match self {
            MalformedJson(_) | DuplicateKey { .. } => "The request body is not valid JSON.",
            UnsupportedMediaType => "The request body must be sent as application/json.",
            PayloadTooLarge => "The request body is too large.",
            UnknownFields(_) => "The request body has fields this operation does not accept.",
            Validation(_) => "The request has invalid values.",
            Unauthenticated(_) => "A valid Bearer access token is required.",
            InvalidCredentials => "The email or password is incorrect.",
            AccountDisabled => "This account is disabled.",
            InvalidRefreshToken => "The refresh token is invalid or expired.",
            RefreshTokenReused => "The refresh token was already used; the session has been revoked.",
            InvalidMfaToken => "The MFA token is invalid, expired or used up; sign in again.",
            Forbidden => access::roles::FORBIDDEN_DETAIL,
            NotFound => "No such resource.",
            NoRoute => "No such route.",
            EmailTaken => "An account with this email already exists.",
            Conflict { detail, .. } | BadRequest { detail, .. } | Refused { detail, .. } => detail,
            RateLimited { .. } => "Too many requests; retry later.",
            ServiceUnavailable(_) => "The service is temporarily unavailable.",
            Internal(_) => "An unexpected error occurred.",
        };
        text.into()
    }

    /// Turn the error into the response the client sees. Unexpected errors are logged here, with
    /// their whole cause chain, and nowhere else.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            ApiError::ServiceUnavailable(cause) => {
                tracing::warn!(error = ?cause, "dependency unavailable")
            }
            _ => tracing::debug!(code = self.code(), status = status.as_u16(), "request refused"),
        }
        let errors = match &self {
            ApiError::UnknownFields(e) | ApiError::Validation(e) => Some(e.as_slice()),
            _ => None,
        };
        let detail = self.detail();
        let body = Problem {
            type_: problem_type(self.code()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code: self.code(),
            detail: &detail,
            errors,
        };
        let mut response = crate::response::json_response_with_type(status, &body, "application/problem+json");
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthenticated(Challenge::InvalidToken) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            ApiError::Unauthenticated(Challenge::Bearer)
            | ApiError::InvalidCredentials
            | ApiError::InvalidRefreshToken
            | ApiError::RefreshTokenReused
            | ApiError::InvalidMfaToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        ApiError::Validation(errors)
    }

    pub fn field(field: &str, code: &'static str, message: &str) -> Self {
        ApiError::Validation(vec![FieldError::new(field, code, message)])
    }
}

/// 403 `email_not_verified`: the right password of an account whose email is not verified, with
/// `REQUIRE_VERIFIED_EMAIL=true`.
pub const EMAIL_NOT_VERIFIED: ApiError = ApiError::Refused {
    code: "email_not_verified",
    detail: "Confirm your email address first: follow the link in the verification message.",
};

/// 403 `mfa_required`: an admin route called from a session made without a second factor, with
/// `ADMIN_REQUIRE_MFA=true` (the gateway answers it first; the admin function checks again).
pub const MFA_REQUIRED: ApiError = ApiError::Refused {
    code: access::roles::MFA_REQUIRED,
    detail: access::roles::MFA_REQUIRED_DETAIL,
};

/// Results of handler steps.
pub type ApiResult<T> = Result<T, ApiError>;

/// `?` on a driver error in a handler (`row.try_get(..)?`) needs `From<tokio_postgres::Error>`
/// for this type, and the orphan rule lets only this crate write it. So the conversion is here,
/// behind the `postgres` feature that only the `store` crate turns on: the authorizer and the
/// JWKS function, which use this crate without `store`, link no database driver.
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{EMAIL_UNIQUE_CONSTRAINT, LEGACY_EMAIL_UNIQUE_CONSTRAINT};
