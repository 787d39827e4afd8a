//! `POST /auth/logout` revokes the caller's session; `POST /auth/logout-all` every session of the
//! caller. Both are idempotent: a session that is already gone answers 204 and changes nothing.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use store::events::{self, Event, EventType, Origin, Sources};
use store::{AppState, db};
use web::auth::caller;
use web::error::ApiResult;
use web::http::{empty_response, respond};

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(logout(state, req).await)
}

/// Only a live caller can revoke: a token whose session is already revoked changes nothing and
/// records nothing. The event (`logout` or `logout_all`, parameters from `$3`) is recorded in the
/// same statement as the revocation.
const LOGOUT: &str = "
WITH {live},
revoked AS (
    UPDATE sessions s SET revoked_at = now(), revoked_reason = 'logout'
      FROM caller c WHERE s.id = $1 AND s.user_id = c.user_id
    RETURNING s.id),
{event}
SELECT count(*) AS revoked FROM revoked";

const LOGOUT_ALL: &str = "
WITH {live},
revoked AS (
    UPDATE sessions s SET revoked_at = now(), revoked_reason = 'logout_all'
      FROM caller c WHERE s.user_id = c.user_id AND s.revoked_at IS NULL
    RETURNING s.id),
{event}
SELECT count(*) AS revoked FROM revoked";

#[tracing::instrument(name = "logout", skip_all)]
async fn logout(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let caller = caller(&req, &state.tokens).await?;
    let all = req.uri().path().trim_end_matches('/').ends_with("/logout-all");
    let kind = if all { EventType::LogoutAll } else { EventType::Logout };
    let origin = Origin::of(&req);
    let event = Event::by_user(kind, caller.user_id, Some(caller.session_id), &origin);
    // Without the last-used update: this statement updates the caller's session row itself.
    let sql = if all { LOGOUT_ALL } else { LOGOUT }
        .replace("{live}", db::LIVE_CALLER_CHECK)
        .replace(
            "{event}",
            &events::cte(
                "logout_event",
                3,
                "caller c WHERE EXISTS (SELECT 1 FROM revoked)",
                Sources::default(),
            ),
        );
    let rows = db::caller_query(&state.pool, &state.config.db, &caller, &sql, &event.params()).await?;
    let revoked: i64 = rows.first().map(|r| r.try_get("revoked")).transpose()?.unwrap_or(0);
    if revoked > 0 {
        events::log(&event);
    }
    tracing::info!(user_id = %caller.user_id, all, "logged out");
    Ok(empty_response(StatusCode::NO_CONTENT))
}
