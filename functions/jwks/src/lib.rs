//! `GET /.well-known/jwks.json`: the public keys that verify access tokens (EdDSA mode), current
//! and previous, so another service can verify our tokens from the JWKS alone. In HS256 mode the
//! set is empty: a shared secret is never published.

use access::tokens::Tokens;
use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use web::http::json_response;

/// Verifiers may cache the set briefly. A rotation publishes the next key at once, but issuers only
/// sign with it after the activation delay (15 min, `JWT_KEY_ACTIVATION_SECONDS`), longer than this
/// function's own key cache (5 min) plus this `max-age` (5 min): no fresh token is unverifiable.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// `tokens` is `None` in HS256 mode, where there is nothing public to serve.
pub async fn handle(tokens: Option<&Tokens>) -> Response<Body> {
    let jwks = match tokens {
        Some(tokens) => {
            tokens.refresh_if_stale().await;
            tokens.snapshot().jwks()
        }
        None => access::tokens::Jwks::default(),
    };
    let mut response = json_response(StatusCode::OK, &jwks);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    response
}
