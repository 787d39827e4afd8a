//! `POST /auth/logout` revokes the caller's session; `POST /auth/logout-all` every session of the
//! caller. Both are idempotent: a session that is already gone answers 204 and changes nothing.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use store::{AppState, db};
use web::auth::caller;
use web::error::ApiResult;
use web::http::{empty_response, respond};

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(logout(state, req).await)
}

/// Only a live caller can revoke: a token whose session is already revoked changes nothing.
const LOGOUT: &str = "
WITH {live}
UPDATE sessions s SET revoked_at = now(), revoked_reason = 'logout'
  FROM caller c WHERE s.id = $1 AND s.user_id = c.user_id";

const LOGOUT_ALL: &str = "
WITH {live}
UPDATE sessions s SET revoked_at = now(), revoked_reason = 'logout_all'
  FROM caller c WHERE s.user_id = c.user_id AND s.revoked_at IS NULL";

#[tracing::instrument(name = "logout", skip_all)]
async fn logout(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let caller = caller(&req, &state.tokens).await?;
    let all = req.uri().path().trim_end_matches('/').ends_with("/logout-all");
    let sql = if all { LOGOUT_ALL } else { LOGOUT }.replace("{live}", db::LIVE_CALLER);
    db::caller_query(&state.pool, &state.config.db, &caller, &sql, &[]).await?;
    tracing::info!(user_id = %caller.user_id, all, "logged out");
    Ok(empty_response(StatusCode::NO_CONTENT))
}
