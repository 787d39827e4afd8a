//! What the fuzz targets share: the fixed keys and token verifier, an HS256 signer to build tokens
//! whose header and payload the fuzzer chose, and the properties every parsed request body (or its
//! refusal) must have. A broken property panics: that is what libFuzzer records as a crash.

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::Value;
use sha2::Sha256;
use web::error::ApiError;
use web::http::{MAX_BODY_BYTES, RequestBody, parse_json_bytes};
use access::tokens::{
    AccessClaims, KeySet, LEEWAY_SECS, MAX_TOKEN_BYTES, SigningKey, TokenError, TokenSettings, Tokens, now_secs,
};

pub const CURRENT_KID: &str = "fuzz-current";
/// The fixed 48-byte key of the verifier under test.
pub const CURRENT_SECRET: &str = "fuzz-current-key-0123456789abcdefghijklmnopqrstu";
pub const PREVIOUS_KID: &str = "fuzz-previous";
/// A 48-byte rotated-out key that still verifies.
pub const PREVIOUS_SECRET: &str = "fuzz-previous-key-0123456789abcdefghijklmnopqrst";
/// A 48-byte key the verifier does not know: nothing signed with it may ever verify.
pub const FOREIGN_SECRET: &str = "fuzz-foreign-key-0123456789abcdefghijklmnopqrstu";
pub const ISSUER: &str = "https://auth.fuzz.invalid";
pub const AUDIENCE: &str = "todo-api";

const _: () = assert!(CURRENT_SECRET.len() == 48 && PREVIOUS_SECRET.len() == 48 && FOREIGN_SECRET.len() == 48);

/// The verifier under test: current + previous key, as after a rotation.
pub static TOKENS: LazyLock<Tokens> = LazyLock::new(|| {
    let key = |kid: &str, secret: &str| {
        SigningKey::hmac(kid, SecretString::from(secret.to_owned())).expect("fixed fuzz keys are 48 bytes")
    };
    Tokens::hs256(
        KeySet {
            current: key(CURRENT_KID, CURRENT_SECRET),
            previous: Some(key(PREVIOUS_KID, PREVIOUS_SECRET)),
        },
        TokenSettings {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            ttl: Duration::from_secs(900),
        },
    )
});

/// Base64url that accepts every spelling jsonwebtoken might (padding or not, stray trailing bits),
/// so the properties below never call a token forged that the library merely read leniently.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub fn hs256(secret: &str, message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `base64url(header).base64url(payload).base64url(HS256(secret))`: a token whose signature is
/// right whatever the header and payload say.
pub fn sign(secret: &str, header: &[u8], payload: &[u8]) -> String {
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = URL_SAFE_NO_PAD.encode(hs256(secret, message.as_bytes()));
    format!("{message}.{signature}")
}

/// What any verification result must respect. An accepted token must have: at most 8 KiB, three
/// parts, header `alg: HS256`, `typ: at+jwt`, a known `kid`, no key-location header, an HS256
/// signature by that kid's key, and claims with our issuer and audience, not expired and already
/// valid (30 s leeway), equal to what the payload says.
pub fn check_verify(token: &str, result: &Result<AccessClaims, TokenError>) {
    if token.len() > MAX_TOKEN_BYTES {
        assert_eq!(
            result,
            &Err(TokenError::TooLarge),
            "oversized token not refused up front"
        );
        return;
    }
    let Ok(claims) = result else {
        return;
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted token does not have three parts");
    let header: Value = LENIENT_B64
        .decode(parts[0])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .expect("accepted token's header is not base64url JSON");
    assert_eq!(header["alg"], "HS256", "accepted a token with another algorithm");
    let typ = header["typ"].as_str().expect("accepted a token without typ");
    assert!(
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt"),
        "accepted typ {typ:?}"
    );
    for location in ["jku", "x5u", "jwk", "x5c"] {
        assert!(
            header.get(location).is_none_or(Value::is_null),
            "accepted a token naming a key location ({location})"
        );
    }
    assert!(
        header.get("crit").is_none_or(Value::is_null),
        "accepted a token with a crit header"
    );
    let secret = match header["kid"].as_str() {
        Some(CURRENT_KID) => CURRENT_SECRET,
        Some(PREVIOUS_KID) => PREVIOUS_SECRET,
        other => unreachable!("accepted a token with kid {other:?}"),
    };
    let signature = LENIENT_B64
        .decode(parts[2])
        .expect("accepted signature is not base64url");
    let message = &token[..parts[0].len() + 1 + parts[1].len()];
    assert_eq!(
        signature,
        hs256(secret, message.as_bytes()),
        "accepted a forged signature"
    );

    let now = now_secs();
    assert_eq!(claims.iss, ISSUER, "wrong issuer accepted");
    assert_eq!(claims.aud, AUDIENCE, "wrong audience accepted");
    assert!(
        claims.exp.saturating_add(LEEWAY_SECS) >= now,
        "expired token accepted: {claims:?}"
    );
    assert!(
        claims.nbf <= now + LEEWAY_SECS,
        "not-yet-valid token accepted: {claims:?}"
    );
    let payload: Value = LENIENT_B64
        .decode(parts[1])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .expect("accepted token's payload is not base64url JSON");
    assert_eq!(
        payload["exp"].as_u64(),
        Some(claims.exp),
        "claims differ from the payload"
    );
    assert_eq!(
        payload["nbf"].as_u64(),
        Some(claims.nbf),
        "claims differ from the payload"
    );
    assert_eq!(
        payload["sub"].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()),
        Some(claims.sub),
        "claims differ from the payload"
    );
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A field error may name only the body, a field the type accepts (or a path inside it), or, for
/// `unknown_field`, a key the client sent (cut to 64 characters; the empty key is named `""`).
/// Nothing else from the input, in particular no value (a password), may reach the problem document.
fn field_is_allowed<T: RequestBody>(field: &str, code: &str, input: Option<&serde_json::Map<String, Value>>) -> bool {
    if code == "unknown_field" {
        let shown = |k: &String| {
            if k.is_empty() {
                "\"\"".to_owned()
            } else {
                k.chars().take(64).collect::<String>()
            }
        };
        return input.is_some_and(|m| m.keys().any(|k| !T::FIELDS.contains(&k.as_str()) && shown(k) == field));
    }
    field == "body"
        || T::FIELDS.iter().any(|f| {
            field
                .strip_prefix(f)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('[') || rest.starts_with('.'))
        })
}

/// Parse `data` as a body of type `T` the way every function does, and check the outcome.
/// Returns the JSON object when the body was accepted, for per-type follow-up checks.
pub fn check_body<T: RequestBody>(data: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let result = parse_json_bytes::<T>(data);
    let text = std::str::from_utf8(data).ok();
    let value: Option<Value> = text.and_then(|t| serde_json::from_str(t).ok());
    let object = value.as_ref().and_then(Value::as_object);
    let error = match result {
        Ok(_) => {
            assert!(data.len() <= MAX_BODY_BYTES, "oversized body accepted");
            let object = object.expect("accepted body is not a UTF-8 JSON object");
            assert!(
                object.keys().all(|k| T::FIELDS.contains(&k.as_str())),
                "accepted an unknown field"
            );
            assert!(
                !contains_nul(&Value::Object(object.clone())),
                "accepted a NUL character"
            );
            return Some(object.clone());
        }
        Err(error) => error,
    };
    let fields = match &error {
        ApiError::PayloadTooLarge => {
            assert!(data.len() > MAX_BODY_BYTES, "small body called too large");
            Vec::new()
        }
        ApiError::MalformedJson(_) => {
            assert!(text.is_some() && value.is_none(), "valid JSON called malformed");
            Vec::new()
        }
        ApiError::DuplicateKey { .. } => {
            // serde_json alone keeps the last of two equal keys: the text is valid JSON to it.
            assert!(text.is_some() && value.is_some(), "a duplicate key in invalid JSON");
            Vec::new()
        }
        ApiError::UnknownFields(f) => {
            assert!(!f.is_empty() && object.is_some());
            f.clone()
        }
        ApiError::Validation(f) => {
            assert!(!f.is_empty());
            f.clone()
        }
        other => unreachable!("body parsing returned {other:?}"),
    };
    for f in &fields {
        assert!(
            matches!(
                f.code,
                "unknown_field"
                    | "required"
                    | "invalid_type"
                    | "invalid_characters"
                    | "invalid_encoding"
                    | "expected_object"
            ),
            "unexpected field error code {f:?}"
        );
        assert!(
            field_is_allowed::<T>(&f.field, f.code, object),
            "field error names {f:?}"
        );
        if f.code == "invalid_encoding" {
            assert!(text.is_none(), "UTF-8 body called invalid");
        }
    }
    let status = error.status();
    let code = error.code();
    assert!(matches!(status.as_u16(), 400 | 413 | 422), "status {status} for a body");
    let response = error.into_response();
    assert_eq!(response.status(), status);
    let problem: Value = serde_json::from_slice(response.body().as_ref()).expect("problem body is not JSON");
    assert_eq!(problem["code"], code);
    assert_eq!(problem["status"], status.as_u16());
    None
}

/// A string field of an accepted body.
pub fn str_field<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

/// Reference wildcard match (`*` any run, `?` one byte), by dynamic programming: the oracle for
/// the authorizer's iterative matcher.
pub fn glob_reference(pattern: &[u8], text: &[u8]) -> bool {
    // row[j]: pattern[..i] matches text[..j]
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        if p == b'*' {
            let mut any = false;
            for j in 0..=text.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=text.len() {
                next[j] = row[j - 1] && (p == b'?' || p == text[j - 1]);
            }
        }
        row = next;
    }
    row[text.len()]
}
