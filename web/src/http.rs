//! Request parsing and response building that every HTTP function shares.
//!
//! Limits are applied before anything is parsed: a body over [`MAX_BODY_BYTES`] is 413, a body on
//! a write without `Content-Type: application/json` is 415, bytes that are not UTF-8 are 422.
//! JSON is first read as a generic value (syntax errors are 400 `malformed_json`), unknown fields
//! are rejected by name (422 `unknown_field`: no mass assignment), then the typed body is
//! deserialized with the failing field's path reported (422).

use std::net::IpAddr;

use http::{HeaderMap, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult, FieldError};

/// Largest request body accepted, in bytes (contract: 16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A request body type: the fields it accepts, so unknown ones are named in the 422.
pub trait RequestBody: DeserializeOwned {
    const FIELDS: &'static [&'static str];
}

pub use crate::response::{add_standard_headers, empty_response, json_response};

/// Turn a handler's result into the response, in the one place errors become problem+json.
pub fn respond(result: ApiResult<Response<Body>>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(s) => s.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parse and check a JSON request body of type `T`.
pub fn parse_json<T: RequestBody>(req: &Request) -> ApiResult<T> {
    let bytes = body_bytes(req);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if !is_json_content_type(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json_bytes(bytes)
}

/// The body checks of [`parse_json`] on raw bytes (exposed for fuzzing and tests).
pub fn parse_json_bytes<T: RequestBody>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::field("body", "invalid_encoding", "The body must be UTF-8."))?;
    let value = parse_strict(text)?;
    let serde_json::Value::Object(map) = &value else {
        return Err(ApiError::field(
            "body",
            "expected_object",
            "The body must be a JSON object.",
        ));
    };
    let unknown: Vec<FieldError> = map
        .keys()
        .filter(|k| !T::FIELDS.contains(&k.as_str()))
        .map(|k| {
            // An empty key still needs a visible name in the error.
            let name = if k.is_empty() {
                "\"\"".to_owned()
            } else {
                truncate(k, 64)
            };
            FieldError::new(name, "unknown_field", "This field is not accepted.")
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::UnknownFields(unknown));
    }
    if let Some(field) = find_nul(&value, "") {
        return Err(ApiError::field(
            &field,
            "invalid_characters",
            "Text must not contain NUL characters.",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        let inner = e.into_inner().to_string();
        let (code, message) = if inner.starts_with("missing field") {
            ("required", "This field is required.".to_owned())
        } else {
            ("invalid_type", "This field has the wrong type.".to_owned())
        };
        let field = missing_field_name(&inner).unwrap_or(field);
        ApiError::Validation(vec![FieldError::new(field, code, message)])
    })
}

/// Parse JSON text into a value, refusing a key that appears twice in one object, at any depth
/// (400 `malformed_json` naming the key and where it is). serde_json keeps the last of two equal
/// keys without a word, so `{"email":"a@x","email":"b@x"}` would mean whatever the parser that
/// reads it decides; a proxy or log that keeps the first would disagree with us. The check is part
/// of the parse, so it comes before any field is looked at.
fn parse_strict(text: &str) -> ApiResult<serde_json::Value> {
    use serde::de::DeserializeSeed;
    let duplicate = std::cell::RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue {
        duplicate: &duplicate,
        path: String::new(),
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| match duplicate.into_inner() {
        Some((key, path)) => ApiError::DuplicateKey { key, path },
        None => ApiError::MalformedJson(e.to_string()),
    })
}

/// A JSON value whose objects have no repeated key; the first repeated key found (and its path)
/// is left in `duplicate`. serde_json's own depth limit (128) still bounds the recursion.
struct StrictValue<'a> {
    duplicate: &'a std::cell::RefCell<Option<(String, String)>>,
    path: String,
}

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue {
            duplicate: self.duplicate,
            path: format!("{}[{}]", self.path, items.len()),
        })? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some((key, path));
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(StrictValue {
                duplicate: self.duplicate,
                path,
            })?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// The path of the first string (or key) holding a NUL character: PostgreSQL text cannot store one.
fn find_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path.into() })
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') { Some(p) } else { find_nul(v, &p) }
        }),
        _ => None,
    }
}

/// For PATCH bodies: tell "absent" (`None`) from "null" (`Some(None)`).
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// The client address: API Gateway's `sourceIp` (set locally from the TCP peer). Headers such as
/// `X-Forwarded-For` are never consulted: any client can send them.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    let ip = match req.request_context_ref()? {
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.clone(),
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        _ => None,
    }?;
    ip.parse().ok()
}

/// The last non-empty path segment after `collection` (e.g. the id in `/tasks/{id}`), for events
/// that carry no path parameters (`cargo lambda watch` sends HTTP API v2 events).
pub fn path_segment_after<'a>(path: &'a str, collection: &[&str]) -> Option<&'a str> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let n = collection.len();
    (0..segments.len()).find_map(|i| {
        (segments.get(i..i + n)? == collection)
            .then(|| segments.get(i + n).copied())
            .flatten()
    })
}

/// The path parameter `name` from API Gateway, or parsed from the path after `collection`.
pub fn path_param(req: &Request, name: &str, collection: &[&str]) -> Option<String> {
    if let Some(v) = req.path_parameters_ref().and_then(|p| p.first(name)) {
        return Some(v.to_owned());
    }
    path_segment_after(req.uri().path(), collection).map(|s| {
        // API Gateway decodes path parameters; do the same for the parsed fallback.
        percent_decode(s)
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match bytes.get(i..i + 3) {
            Some([b'%', h, l]) if hex(*h).is_some() && hex(*l).is_some() => {
                out.push(hex(*h).unwrap_or(0) * 16 + hex(*l).unwrap_or(0));
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of query parameter `name`, bounded in length (a longer one is a 422).
pub fn query_param(req: &Request, name: &str, max_len: usize) -> ApiResult<Option<String>> {
    let value = req
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned);
    match value {
        Some(v) if v.len() > max_len => Err(ApiError::field(name, "too_long", "This query parameter is too long.")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Sample {
        a: serde_json::Value,
        #[serde(default)]
        b: Option<serde_json::Value>,
    }

    impl RequestBody for Sample {
        const FIELDS: &'static [&'static str] = &["a", "b"];
    }

    fn duplicate_detail(json: &str) -> Option<String> {
        match parse_json_bytes::<Sample>(json.as_bytes()) {
            Err(e) if e.code() == "malformed_json" && e.status() == StatusCode::BAD_REQUEST => {
                let response = e.into_response();
                let Body::Text(text) = response.body() else { return None };
                let v: serde_json::Value = serde_json::from_str(text).ok()?;
                Some(v["detail"].as_str()?.to_owned())
            }
            _ => None,
        }
    }

    #[test]
    fn duplicate_keys_are_malformed_at_every_depth_and_named() {
        for (json, key) in [
            (r#"{"a":1,"a":2}"#, r#""a""#),
            (r#"{"a":{"x":1,"y":{"z":1,"z":1}}}"#, r#""z""#),
            (r#"{"a":[1,{"k":1},{"k":[],"k":{}}]}"#, r#""k""#),
            // Unknown fields too: duplicates are refused before any field is looked at.
            (r#"{"a":1,"c":1,"c":2}"#, r#""c""#),
            (r#"{"a":1,"":1,"":2}"#, r#""""#),
            // Escapes that spell the same key.
            (r#"{"a":1,"a":2}"#, r#""a""#),
        ] {
            let detail = duplicate_detail(json).unwrap_or_else(|| panic!("{json} must be malformed_json"));
            assert!(detail.contains(key), "{json}: {detail}");
        }
        // Distinct keys, and equal keys in different objects, are fine.
        assert!(parse_json_bytes::<Sample>(br#"{"a":[{"k":1},{"k":2}],"b":{"k":3}}"#).is_ok());
    }

    #[test]
    fn path_segment_fallback() {
        assert_eq!(path_segment_after("/tasks/abc", &["tasks"]), Some("abc"));
        assert_eq!(path_segment_after("/v1/tasks/abc", &["tasks"]), Some("abc"));
        assert_eq!(path_segment_after("/tasks", &["tasks"]), None);
        assert_eq!(path_segment_after("/tasks/", &["tasks"]), None);
        assert_eq!(path_segment_after("/admin/users/x", &["admin", "users"]), Some("x"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
