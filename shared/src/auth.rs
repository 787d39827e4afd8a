//! Who is calling: the authorizer's context when API Gateway ran it, otherwise the Bearer token
//! verified here with the same verifier (under `cargo lambda watch` there is no authorizer).
//! No header other than `Authorization` is looked at, and no header is ever taken as identity.

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Challenge};
use crate::roles::Role;
use crate::tokens::{LEEWAY_SECS, Tokens, bearer_token};

/// The authenticated caller of a Bearer route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// The role in the token; functions that care (admin) re-read it from the database.
    pub role: Role,
}

pub async fn caller(req: &Request, tokens: &Tokens) -> ApiResult<Caller> {
    if let Some(RequestContext::ApiGatewayV1(ctx)) = req.request_context_ref() {
        let fields = &ctx.authorizer.fields;
        if fields.contains_key("sub") {
            let get = |k: &str| fields.get(k).and_then(|v| v.as_str());
            // API Gateway hands context values over as strings; a number is accepted too.
            let exp = fields.get("exp").and_then(|v| match v {
                serde_json::Value::String(s) => s.parse::<u64>().ok(),
                other => other.as_u64(),
            });
            let parsed = (|| {
                Some(Caller {
                    user_id: get("sub")?.parse().ok()?,
                    session_id: get("sid")?.parse().ok()?,
                    role: Role::parse(get("role")?)?,
                })
            })();
            // API Gateway reuses a cached Allow for `AuthorizerCacheTtl` whatever the token's
            // `exp`: the function refuses a token past it (with the verifier's leeway) itself.
            // No `exp` in the context at all: refused too (fail closed).
            return match (parsed, exp) {
                (Some(caller), Some(exp)) if !expired(exp, SystemTime::now()) => Ok(caller),
                (Some(_), Some(_)) => {
                    tracing::info!("access token expired while its authorizer answer was cached");
                    Err(ApiError::Unauthenticated(Challenge::InvalidToken))
                }
                _ => Err(ApiError::Unauthenticated(Challenge::InvalidToken)),
            };
        }
    }
    let header = req.headers().get(http::header::AUTHORIZATION);
    let Some(header) = header else {
        return Err(ApiError::Unauthenticated(Challenge::Bearer));
    };
    let token = header
        .to_str()
        .ok()
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthenticated(Challenge::InvalidToken))?;
    match tokens.verify_fresh(token).await {
        Ok(claims) => Ok(Caller {
            user_id: claims.sub,
            session_id: claims.sid,
            role: claims.role,
        }),
        Err(reason) => {
            tracing::info!(%reason, "access token refused");
            Err(ApiError::Unauthenticated(Challenge::InvalidToken))
        }
    }
}

/// Whether a token with this `exp` is past it at `now`, allowing the verifier's leeway.
pub fn expired(exp: u64, now: SystemTime) -> bool {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    now > exp.saturating_add(LEEWAY_SECS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expiry_allows_the_verifiers_leeway_and_no_more() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        assert!(!expired(1_000, at(999)));
        assert!(!expired(1_000, at(1_000 + LEEWAY_SECS)));
        assert!(expired(1_000, at(1_001 + LEEWAY_SECS)));
        assert!(!expired(u64::MAX, at(1_000)), "no overflow");
    }
}
