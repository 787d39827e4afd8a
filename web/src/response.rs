//! Building responses: JSON bodies and the headers every response carries. Knows nothing of
//! errors (they use it to build problem+json, in `error`).

use http::{HeaderMap, HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_response_with_type(status, value, "application/json")
}

pub(crate) fn json_response_with_type<T: Serialize>(
    status: StatusCode,
    value: &T,
    content_type: &'static str,
) -> Response<Body> {
    // Serializing our own response types cannot fail (no maps with non-string keys); fall back to
    // an empty object rather than panic if it ever did.
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    add_standard_headers(headers);
    response
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    add_standard_headers(response.headers_mut());
    response
}

/// Headers on every response: nothing here may be cached by a browser or proxy.
pub fn add_standard_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
}
