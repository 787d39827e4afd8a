//! Who is calling: the authorizer's context when API Gateway ran it, otherwise the Bearer token
//! verified here with the same verifier (under `cargo lambda watch` there is no authorizer).
//! No header other than `Authorization` is looked at, and no header is ever taken as identity.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Challenge};
use crate::roles::Role;
use crate::tokens::{Tokens, bearer_token};

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
            let parsed = (|| {
                Some(Caller {
                    user_id: get("sub")?.parse().ok()?,
                    session_id: get("sid")?.parse().ok()?,
                    role: Role::parse(get("role")?)?,
                })
            })();
            return parsed.ok_or(ApiError::Unauthenticated(Challenge::InvalidToken));
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
