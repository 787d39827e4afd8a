//! Who is calling. Deployed, API Gateway ran the TOKEN authorizer and put its answer in the
//! request context: that is the caller ([`from_authorizer_context`]). Under `cargo lambda watch`
//! no authorizer runs, so there is exactly one other path, [`without_authorizer`]: the function
//! verifies the Bearer token itself with the same verifier, and fails closed when it holds no key.
//! No header other than `Authorization` is looked at, and no header is ever taken as identity.

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use uuid::Uuid;

use access::roles::Role;
use access::tokens::{LEEWAY_SECS, Tokens, bearer_token};

use crate::error::{ApiError, ApiResult, Challenge};

/// The authenticated caller of a Bearer route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// The role in the token; functions that care (admin) re-read it from the database.
    pub role: Role,
}

pub async fn caller(req: &Request, tokens: &Tokens) -> ApiResult<Caller> {
    if let Some(RequestContext::ApiGatewayV1(ctx)) = req.request_context_ref()
        && ctx.authorizer.fields.contains_key("sub")
    {
        return from_authorizer_context(&ctx.authorizer.fields);
    }
    without_authorizer(req, tokens).await
}

/// The caller API Gateway's authorizer vouched for (its context: `sub`, `sid`, `role`, `exp`).
fn from_authorizer_context(fields: &std::collections::HashMap<String, serde_json::Value>) -> ApiResult<Caller> {
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
    // API Gateway reuses a cached Allow for `AuthorizerCacheTtl` whatever the token's `exp`: the
    // function refuses a token past it (with the verifier's leeway) itself. No `exp` in the
    // context at all: refused too (fail closed).
    match (parsed, exp) {
        (Some(caller), Some(exp)) if !expired(exp, SystemTime::now()) => Ok(caller),
        (Some(_), Some(_)) => {
            tracing::info!("access token expired while its authorizer answer was cached");
            Err(ApiError::Unauthenticated(Challenge::InvalidToken))
        }
        _ => Err(ApiError::Unauthenticated(Challenge::InvalidToken)),
    }
}

/// The one in-function token check, for requests that no authorizer saw: `cargo lambda watch`
/// serves the functions directly (HTTP API v2 events, no authorizer), and handler tests do the
/// same. The Bearer token is verified here with the verifier the authorizer uses.
///
/// Fail closed: a deployed data function runs with `JWT_TRUST_AUTHORIZER_CONTEXT=true` and holds
/// no verifying key, so a request that reaches it without the authorizer's context (a route
/// wired without the authorizer, say) is refused (401) without the token being looked at.
async fn without_authorizer(req: &Request, tokens: &Tokens) -> ApiResult<Caller> {
    let Some(header) = req.headers().get(http::header::AUTHORIZATION) else {
        return Err(ApiError::Unauthenticated(Challenge::Bearer));
    };
    if !tokens.can_verify() {
        tracing::warn!("a Bearer request without the authorizer's context, and no key to verify it: refused");
        return Err(ApiError::Unauthenticated(Challenge::InvalidToken));
    }
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
