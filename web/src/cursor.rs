//! Opaque keyset-pagination cursors: the `(created_at, id)` of the last item of a page, at
//! PostgreSQL's microsecond precision, base64url-encoded. Only the canonical spelling decodes, so
//! a cursor cannot be forged into another form of the same position.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ApiResult, FieldError};
use crate::http::query_param;

/// Longest cursor accepted (ours are about 70 characters).
pub const MAX_CURSOR_LEN: usize = 128;

pub fn encode(created_at: OffsetDateTime, id: Uuid) -> String {
    let micros = created_at.unix_timestamp_nanos() / 1000;
    URL_SAFE_NO_PAD.encode(format!("{micros}:{id}"))
}

pub fn decode(raw: &str) -> Option<(OffsetDateTime, Uuid)> {
    if raw.len() > MAX_CURSOR_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (micros, id) = text.split_once(':')?;
    let micros: i64 = micros.parse().ok()?;
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()?;
    let id = Uuid::parse_str(id).ok()?;
    (encode(time, id) == raw).then_some((time, id))
}

/// Page size bounds of every list endpoint.
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// The `limit` and `cursor` query parameters of a list request. Problems are added to `errors`
/// (all of a request's problems are reported together).
pub struct Page {
    pub limit: i64,
    pub after: Option<(OffsetDateTime, Uuid)>,
}

pub fn page_params(req: &lambda_http::Request, errors: &mut Vec<FieldError>) -> ApiResult<Page> {
    let limit = match query_param(req, "limit", 16)? {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    "invalid_limit",
                    "limit must be a whole number from 1 to 100.",
                ));
                DEFAULT_LIMIT
            }
        },
    };
    let after = match query_param(req, "cursor", MAX_CURSOR_LEN)? {
        None => None,
        Some(raw) => {
            let decoded = decode(&raw);
            if decoded.is_none() {
                errors.push(FieldError::new(
                    "cursor",
                    "invalid_cursor",
                    "cursor is not one this API issued.",
                ));
            }
            decoded
        }
    };
    Ok(Page { limit, after })
}

/// Cut a page fetched with `limit + 1` rows to `limit`, with the cursor of its last item when more
/// remain.
pub fn finish_page<T>(
    mut items: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (OffsetDateTime, Uuid),
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if items.len() <= limit {
        return (items, None);
    }
    items.truncate(limit);
    let next = items.last().map(|item| {
        let (created_at, id) = key(item);
        encode(created_at, id)
    });
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let t =
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let id = Uuid::now_v7();
        let c = encode(t, id);
        assert_eq!(decode(&c), Some((t, id)));
        for bad in [
            "",
            "!!!",
            "abc",
            &URL_SAFE_NO_PAD.encode("x:y"),
            &URL_SAFE_NO_PAD.encode(format!("1:{id}:extra")),
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(decode(&format!("{c}=")), None, "non-canonical padding");
        assert_eq!(decode(&"A".repeat(500)), None);
    }
}
