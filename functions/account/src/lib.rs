//! The caller's own account: `GET /auth/me`, `POST /auth/password`, `DELETE /auth/me`, and
//! `POST /auth/email/verify/resend` (the recovery crate's handler), and the caller's sessions and
//! security events ([`sessions`]: `GET /auth/sessions`, `DELETE /auth/sessions/{id}`,
//! `GET /auth/events`).

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::Deserialize;
use store::events::{self, Event, EventType, Origin, Sources};
use store::password::check_policy;
use store::users::{LAST_ADMIN, User, lock_active_admins};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use web::auth::{Caller, caller};
use web::error::{ApiError, ApiResult, Challenge};
use web::http::{RequestBody, empty_response, json_response, parse_json, path_param, respond};

pub mod sessions;

#[derive(Deserialize)]
pub struct PasswordBody {
    current_password: SecretString,
    new_password: SecretString,
}

impl RequestBody for PasswordBody {
    const FIELDS: &'static [&'static str] = &["current_password", "new_password"];
}

#[derive(Deserialize)]
pub struct DeleteBody {
    password: SecretString,
}

impl RequestBody for DeleteBody {
    const FIELDS: &'static [&'static str] = &["password"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(dispatch(state, req).await)
}

async fn dispatch(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let caller = caller(&req, &state.tokens).await?;
    let path = req.uri().path().trim_end_matches('/');
    if path.ends_with("/auth/email/verify/resend") {
        return match *req.method() {
            Method::POST => recovery::resend(state, &caller).await,
            _ => Err(ApiError::NoRoute),
        };
    }
    if path.ends_with("/auth/events") {
        return match *req.method() {
            Method::GET => sessions::events(state, &caller, &req).await,
            _ => Err(ApiError::NoRoute),
        };
    }
    if path.ends_with("/auth/sessions") {
        return match *req.method() {
            Method::GET => sessions::list(state, &caller).await,
            _ => Err(ApiError::NoRoute),
        };
    }
    if let Some(id) = path_param(&req, "id", &["auth", "sessions"]) {
        return match *req.method() {
            Method::DELETE => sessions::end(state, &caller, &id, &req).await,
            _ => Err(ApiError::NoRoute),
        };
    }
    match (req.method().clone(), path.ends_with("/password")) {
        (Method::GET, false) => me(state, &caller).await,
        (Method::DELETE, false) => delete(state, &caller, &req).await,
        (Method::POST, true) => change_password(state, &caller, &req).await,
        _ => Err(ApiError::NoRoute),
    }
}

fn dead_session() -> ApiError {
    ApiError::Unauthenticated(Challenge::InvalidToken)
}

/// The caller's user row (with its hash, for the password checks), if the session is live.
async fn load(state: &AppState, caller: &Caller) -> ApiResult<(User, String)> {
    let sql = format!(
        "WITH {} SELECT u.id, u.email, u.role, u.created_at, u.email_verified, u.password_hash
                  FROM caller c JOIN users u ON u.id = c.user_id",
        db::LIVE_CALLER
    );
    let rows = db::caller_query(&state.pool, &state.config.db, caller, &sql, &[]).await?;
    let row = rows.first().ok_or_else(dead_session)?;
    Ok((User::from_row(row)?, row.try_get("password_hash")?))
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn me(state: &AppState, caller: &Caller) -> ApiResult<Response<Body>> {
    let sql = format!(
        "WITH {} SELECT u.id, u.email, u.role, u.created_at, u.email_verified FROM caller c JOIN users u ON u.id = c.user_id",
        db::LIVE_CALLER
    );
    let rows = db::caller_query(&state.pool, &state.config.db, caller, &sql, &[]).await?;
    let user = User::from_row(rows.first().ok_or_else(dead_session)?)?;
    Ok(json_response(StatusCode::OK, &user))
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn change_password(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: PasswordBody = parse_json(req)?;
    let origin = Origin::of(req);
    let event = Event::by_user(
        EventType::PasswordChanged,
        caller.user_id,
        Some(caller.session_id),
        &origin,
    );
    let (user, stored) = load(state, caller).await?;
    let new_password = check_policy(
        &body.new_password,
        &user.email,
        state.config.password_min_length,
        "new_password",
    )
    .map_err(|e| ApiError::Validation(vec![e]))?;
    store::users::check_password(state, &user.email, body.current_password, stored).await?;
    let new_hash = state.passwords.hash(new_password).await?;
    // The new hash and the revocation of every other session land together, and only if the
    // caller's session is still live.
    let sql = format!(
        "WITH {},
         updated AS (UPDATE users u SET password_hash = $3, password_rehashed_from = NULL, updated_at = now()
                       FROM caller c WHERE u.id = c.user_id RETURNING u.id),
         revoked AS (UPDATE sessions s SET revoked_at = now(), revoked_reason = 'password_changed'
                       FROM updated WHERE s.user_id = updated.id AND s.id <> $1 AND s.revoked_at IS NULL),
         {}
         SELECT id FROM updated",
        db::LIVE_CALLER,
        events::cte("password_event", 4, "updated", Sources::default())
    );
    let settings = &state.config.db;
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        // Lock the user row first, in a statement of its own: a login whose session step holds
        // the row (share lock) finishes before this goes on, and the revocation below, a new
        // statement with a new snapshot, then sees and revokes the session it made. A login
        // reaching its session step after this lock waits, then finds the new hash and opens none.
        store::users::lock_user_for_update(&tx, settings, caller.user_id).await?;
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
            (&caller.session_id, Type::UUID),
            (&caller.user_id, Type::UUID),
            (&new_hash, Type::TEXT),
        ];
        params.extend(event.params());
        let rows = db::run(&tx, settings, &sql, &params).await?;
        if rows.is_empty() {
            return Err(dead_session());
        }
        tx.commit().await?;
        events::log(&event);
        tracing::info!("password changed; other sessions revoked");
        Ok(empty_response(StatusCode::NO_CONTENT))
    })
    .await
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn delete(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: DeleteBody = parse_json(req)?;
    let origin = Origin::of(req);
    let event = Event::by_user(EventType::UserDeleted, caller.user_id, Some(caller.session_id), &origin);
    let (user, stored) = load(state, caller).await?;
    // The password first: a stolen access token alone learns nothing, not even "last admin".
    store::users::check_password(state, &user.email, body.password, stored).await?;
    let settings = &state.config.db;
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        // Under the same row locks, taken in the same order, as the admin routes: an admin
        // deleting itself while another admin is demoted or deletes itself leaves one of them.
        let admins = lock_active_admins(&tx, settings).await?;
        if admins.contains(&caller.user_id) && admins.len() <= 1 {
            return Err(LAST_ADMIN);
        }
        // Sessions, refresh tokens and tasks go with the user (ON DELETE CASCADE).
        let sql = format!(
            "WITH {} DELETE FROM users u USING caller c WHERE u.id = c.user_id RETURNING u.id",
            db::LIVE_CALLER_CHECK
        );
        let rows = db::run(
            &tx,
            settings,
            &sql,
            &[(&caller.session_id, Type::UUID), (&caller.user_id, Type::UUID)],
        )
        .await?;
        if rows.is_empty() {
            return Err(dead_session());
        }
        events::record(&tx, settings, &event).await?;
        tx.commit().await?;
        events::log(&event);
        tracing::info!("account deleted");
        Ok(empty_response(StatusCode::NO_CONTENT))
    })
    .await
}
