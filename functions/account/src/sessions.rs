//! The caller's sessions and security events: `GET /auth/sessions`, `DELETE /auth/sessions/{id}`
//! and `GET /auth/events`.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use store::events::{self, Event, EventType, Origin, Scope, Sources};
use store::{AppState, db};
use time::OffsetDateTime;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::auth::Caller;
use web::cursor;
use web::error::{ApiError, ApiResult, Challenge};
use web::http::{empty_response, json_response};

/// Most sessions listed (newest first): far more than anyone has devices, and a bound on the
/// answer whatever a script did.
const MAX_SESSIONS: i64 = 200;

/// A live session as its user sees it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Opened with a second factor.
    pub mfa: bool,
    /// The session of the token that asked.
    pub current: bool,
}

#[derive(Serialize)]
struct SessionList {
    items: Vec<SessionView>,
}

fn dead_session() -> ApiError {
    ApiError::Unauthenticated(Challenge::InvalidToken)
}

/// `GET /auth/sessions`: the caller's live sessions (not revoked, not expired), newest first.
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
pub async fn list(state: &AppState, caller: &Caller) -> ApiResult<Response<Body>> {
    // The caller's own session is live or nothing is listed: no row at all is a dead session.
    let sql = format!(
        "WITH {}
         SELECT s.id, s.created_at, s.last_used_at, s.ip, s.user_agent, s.mfa, s.id = $1 AS current
           FROM caller c JOIN sessions s ON s.user_id = c.user_id
          WHERE s.revoked_at IS NULL AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
          ORDER BY s.created_at DESC, s.id DESC
          LIMIT $3",
        db::LIVE_CALLER
    );
    let rows = db::caller_query(
        &state.pool,
        &state.config.db,
        caller,
        &sql,
        &[(&MAX_SESSIONS, Type::INT8)],
    )
    .await?;
    if rows.is_empty() {
        return Err(dead_session());
    }
    let items = rows
        .iter()
        .map(|r| {
            Ok(SessionView {
                id: r.try_get("id")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
                mfa: r.try_get("mfa")?,
                current: r.try_get("current")?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(json_response(StatusCode::OK, &SessionList { items }))
}

/// Ends one live session of the caller's, and records `session_revoked` (parameters from `$4`),
/// in one statement. Without the last-used update: the ended session may be the caller's own.
const END_SESSION: &str = "
WITH {live},
revoked AS (
    UPDATE sessions s SET revoked_at = now(), revoked_reason = 'session_revoked'
      FROM caller c
     WHERE s.id = $3 AND s.user_id = c.user_id AND s.revoked_at IS NULL
       AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
    RETURNING s.id),
{event}
SELECT (SELECT count(*) FROM caller) AS live, (SELECT count(*) FROM revoked) AS revoked";

/// `DELETE /auth/sessions/{id}`: its access tokens are refused on the next data request (every
/// one checks its session) and its refresh token is dead. Another user's session, an ended one,
/// a random id or no UUID at all: 404, the same answer.
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
pub async fn end(state: &AppState, caller: &Caller, id: &str, req: &Request) -> ApiResult<Response<Body>> {
    // Not a UUID: no such session, found after the caller's session is checked like any other
    // request (the nil UUID is never issued).
    let target = Uuid::parse_str(id).ok().filter(|u| !u.is_nil()).unwrap_or(Uuid::nil());
    let origin = Origin::of(req);
    let event = Event::by_user(EventType::SessionRevoked, caller.user_id, Some(target), &origin);
    let sql = END_SESSION.replace("{live}", db::LIVE_CALLER_CHECK).replace(
        "{event}",
        &events::cte("revoked_event", 4, "revoked", Sources::default()),
    );
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&target, Type::UUID)];
    params.extend(event.params());
    let rows = db::caller_query(&state.pool, &state.config.db, caller, &sql, &params).await?;
    let row = rows
        .first()
        .ok_or_else(|| anyhow::anyhow!("ending a session returned no row"))?;
    if row.try_get::<_, i64>("live")? == 0 {
        return Err(dead_session());
    }
    if row.try_get::<_, i64>("revoked")? == 0 {
        return Err(ApiError::NotFound);
    }
    events::log(&event);
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `GET /auth/events?limit=&cursor=`: the caller's own security events, newest first.
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
pub async fn events(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let mut errors = Vec::new();
    let page = cursor::page_params(req, &mut errors)?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (_, list) = events::list(&state.pool, &state.config.db, caller, Scope::Own, &page)
        .await?
        .ok_or_else(dead_session)?;
    Ok(json_response(StatusCode::OK, &list))
}
