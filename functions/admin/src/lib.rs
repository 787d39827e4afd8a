//! `/admin/users`: list, get, change role or disabled, delete; `/admin/events`: every user's
//! security events.
//!
//! The gateway already refused non-admin tokens, but a token's role can be stale: every request
//! re-reads the caller's role and session in the same statement as its work, so a demoted admin is
//! refused (403) at once and a revoked one gets 401. Demoting, disabling or deleting the last active
//! admin is 409 `last_admin`; those changes lock the active admins' rows first, so two admins cannot
//! demote each other at the same time.

use access::roles::Role;
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use settings::DbSettings;
use store::db::Transaction;
use store::events::{self, Event, EventType, Origin, Scope};
use store::users::{LAST_ADMIN, canonical_email, lock_active_admins};
use store::{AppState, db};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::auth::{Caller, caller};
use web::cursor;
use web::error::{ApiError, ApiResult, Challenge, FieldError};
use web::http::{
    RequestBody, double_option, empty_response, json_response, parse_json, path_param, query_param, respond,
};

const MAX_EMAIL_FILTER_LEN: usize = 254;
/// The trigram index needs three characters in a row to narrow anything down: a shorter filter
/// would read every user.
const MIN_EMAIL_FILTER_CHARS: usize = 3;

/// `%text%` as a LIKE pattern that matches `text` literally: the filter is text, not a pattern.
fn like_substring(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// What an admin sees of a user: never the password hash or any token material.
#[derive(Debug, Serialize)]
pub struct AdminUser {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub email_verified: bool,
    /// The second factor is on (issue 17).
    pub mfa_enabled: bool,
}

impl AdminUser {
    fn from_row(row: &Row) -> ApiResult<Option<Self>> {
        let Some(id) = row.try_get::<_, Option<Uuid>>("id")? else {
            return Ok(None);
        };
        let role: String = row.try_get("role")?;
        Ok(Some(AdminUser {
            id,
            email: row.try_get("email")?,
            role: Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role in database"))?,
            disabled: row.try_get("disabled")?,
            created_at: row.try_get("created_at")?,
            email_verified: row.try_get("email_verified")?,
            mfa_enabled: row.try_get("mfa_enabled")?,
        }))
    }
}

const USER_COLUMNS: &str = "u.id, u.email, u.role, u.disabled, u.created_at, u.email_verified,
    EXISTS (SELECT 1 FROM mfa_totp m WHERE m.user_id = u.id AND m.enabled_at IS NOT NULL) AS mfa_enabled";

#[derive(Serialize)]
struct UserList {
    items: Vec<AdminUser>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct PatchUser {
    #[serde(default, deserialize_with = "double_option")]
    role: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    disabled: Option<Option<bool>>,
    /// Only `false`: an admin turns a user's second factor off (account recovery); turning it on
    /// is the user's own enrolment.
    #[serde(default, deserialize_with = "double_option")]
    mfa_enabled: Option<Option<bool>>,
}

impl RequestBody for PatchUser {
    const FIELDS: &'static [&'static str] = &["role", "disabled", "mfa_enabled"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(dispatch(state, req).await)
}

async fn dispatch(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let caller = caller(&req, &state.tokens).await?;
    let step_up = StepUp(state.config.mfa.admin_require_mfa);
    if req.uri().path().trim_end_matches('/').ends_with("/admin/events") {
        return match *req.method() {
            Method::GET => list_events(state, step_up, &caller, &req).await,
            _ => Err(ApiError::NoRoute),
        };
    }
    let id = path_param(&req, "id", &["admin", "users"]);
    // Not a UUID: no such user. The nil UUID is never issued, so it finds nothing, after the
    // caller's session and role are checked like on any other request.
    let user_id = id
        .as_deref()
        .map(|s| Uuid::parse_str(s).ok().filter(|u| !u.is_nil()).unwrap_or(Uuid::nil()));
    match (req.method().clone(), user_id) {
        (Method::GET, None) => list(state, step_up, &caller, &req).await,
        (Method::GET, Some(id)) => get(state, step_up, &caller, id).await,
        (Method::PATCH, Some(id)) => patch(state, step_up, &caller, id, &req).await,
        (Method::DELETE, Some(id)) => delete(state, step_up, &caller, id, &req).await,
        _ => Err(ApiError::NoRoute),
    }
}

/// `ADMIN_REQUIRE_MFA`: the caller's session must have been made with a second factor.
#[derive(Debug, Clone, Copy)]
struct StepUp(bool);

/// The caller's live session, current role and second factor come back as `caller_role` and
/// `caller_mfa` on every row; no row means the session is not live. The gateway refused a session
/// without a second factor already (with `ADMIN_REQUIRE_MFA`); this is the database's word on it.
fn check_admin(rows: &[Row], step_up: StepUp) -> ApiResult<()> {
    let row = rows.first().ok_or(ApiError::Unauthenticated(Challenge::InvalidToken))?;
    let role: String = row.try_get("caller_role")?;
    if role != Role::Admin.as_str() {
        return Err(ApiError::Forbidden);
    }
    if step_up.0 && !row.try_get::<_, bool>("caller_mfa")? {
        return Err(web::error::MFA_REQUIRED);
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(admin_id = %caller.user_id))]
async fn list(state: &AppState, step_up: StepUp, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let mut errors = Vec::new();
    let page = cursor::page_params(req, &mut errors)?;
    let email = query_param(req, "email", MAX_EMAIL_FILTER_LEN)?
        .map(|e| canonical_email(&e))
        .filter(|e| !e.is_empty());
    if let Some(filter) = email.as_deref() {
        if filter.contains('\0') {
            errors.push(FieldError::new(
                "email",
                "invalid_characters",
                "email must not contain NUL characters.",
            ));
        } else if filter.chars().count() < MIN_EMAIL_FILTER_CHARS {
            errors.push(FieldError::new(
                "email",
                "too_short",
                "email must be empty or at least 3 characters long.",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (after_time, after_id) = page.after.map_or((None, None), |(t, id)| (Some(t), Some(id)));
    let limit = page.limit;
    let fetch = limit + 1;
    // The email filter is a substring of the canonical form (the same case folding and NFKC as
    // login and signup), as a LIKE pattern with the filter's own `%`, `_` and `\` escaped, so
    // that the trigram index (migration V6) can answer it.
    // One statement text per combination of filters (four), as in the tasks list: each statement
    // has only the conditions it needs; unused parameters are ignored.
    let pattern = email.as_deref().map(like_substring);
    let email_filter = if pattern.is_some() {
        "AND email_canonical LIKE $3"
    } else {
        ""
    };
    let cursor_filter = if after_time.is_some() {
        "AND (created_at, id) < ($4, $5)"
    } else {
        ""
    };
    let sql = format!(
        "WITH {live}
         SELECT c.role AS caller_role, c.mfa AS caller_mfa, {USER_COLUMNS}
           FROM caller c
           LEFT JOIN LATERAL (
                SELECT * FROM users
                 WHERE c.role = 'admin' {email_filter} {cursor_filter}
                 ORDER BY created_at DESC, id DESC
                 LIMIT $6) u ON true
          ORDER BY u.created_at DESC, u.id DESC",
        live = db::LIVE_CALLER
    );
    // With a filter, the statement is planned for this very pattern (sent unnamed): a rare one
    // is best read through the trigram index, a common one by walking the users newest first
    // until the page fills, and only the pattern's own selectivity tells which (a prepared
    // statement's generic plan would pick one for every pattern).
    let params: [(&(dyn ToSql + Sync), Type); 4] = [
        (&pattern, Type::TEXT),
        (&after_time, Type::TIMESTAMPTZ),
        (&after_id, Type::UUID),
        (&fetch, Type::INT8),
    ];
    let (pool, settings) = (&state.pool, &state.config.db);
    let rows = if pattern.is_some() {
        db::caller_query_planned(pool, settings, caller, &sql, &params).await?
    } else {
        db::caller_query(pool, settings, caller, &sql, &params).await?
    };
    check_admin(&rows, step_up)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(user) = AdminUser::from_row(row)? {
            items.push(user);
        }
    }
    let (items, next_cursor) = cursor::finish_page(items, limit, |u| (u.created_at, u.id));
    Ok(json_response(StatusCode::OK, &UserList { items, next_cursor }))
}

/// `GET /admin/events?user_id=&type=&limit=&cursor=`: every user's security events, newest
/// first. The role is re-read in the same statement (a demoted admin is refused at once).
#[tracing::instrument(skip_all, fields(admin_id = %caller.user_id))]
async fn list_events(state: &AppState, step_up: StepUp, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    if step_up.0 {
        // The session's second factor, from the database (the events statement reads the role
        // only): one statement more, with ADMIN_REQUIRE_MFA only.
        let sql = format!(
            "WITH {} SELECT role AS caller_role, mfa AS caller_mfa FROM caller",
            db::LIVE_CALLER
        );
        let rows = db::caller_query(&state.pool, &state.config.db, caller, &sql, &[]).await?;
        check_admin(&rows, step_up)?;
    }
    let mut errors = Vec::new();
    let page = cursor::page_params(req, &mut errors)?;
    let user_id = match query_param(req, "user_id", 64)? {
        None => None,
        Some(raw) => match Uuid::parse_str(&raw) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new("user_id", "invalid_user_id", "user_id must be a UUID."));
                None
            }
        },
    };
    let kind = match query_param(req, "type", 64)? {
        None => None,
        Some(raw) => match EventType::parse(&raw) {
            Some(kind) => Some(kind),
            None => {
                errors.push(FieldError::new(
                    "type",
                    "invalid_event_type",
                    "type must be one of the security event types.",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (role, list) = events::list(
        &state.pool,
        &state.config.db,
        caller,
        Scope::Admin { user_id, kind },
        &page,
    )
    .await?
    .ok_or(ApiError::Unauthenticated(Challenge::InvalidToken))?;
    if role != Role::Admin.as_str() {
        return Err(ApiError::Forbidden);
    }
    Ok(json_response(StatusCode::OK, &list))
}

#[tracing::instrument(skip_all, fields(admin_id = %caller.user_id, user_id = %id))]
async fn get(state: &AppState, step_up: StepUp, caller: &Caller, id: Uuid) -> ApiResult<Response<Body>> {
    let sql = format!(
        "WITH {live}
         SELECT c.role AS caller_role, c.mfa AS caller_mfa, {USER_COLUMNS}
           FROM caller c LEFT JOIN users u ON c.role = 'admin' AND u.id = $3",
        live = db::LIVE_CALLER
    );
    let rows = db::caller_query(&state.pool, &state.config.db, caller, &sql, &[(&id, Type::UUID)]).await?;
    check_admin(&rows, step_up)?;
    let user = rows
        .first()
        .map(AdminUser::from_row)
        .transpose()?
        .flatten()
        .ok_or(ApiError::NotFound)?;
    Ok(json_response(StatusCode::OK, &user))
}

/// The user a change is about, locked for the rest of the transaction.
struct Target {
    role: Role,
    disabled: bool,
}

impl Target {
    async fn lock(tx: &Transaction<'_>, settings: &DbSettings, id: Uuid) -> ApiResult<Self> {
        let rows = db::run(
            tx,
            settings,
            "SELECT role, disabled FROM users WHERE id = $1 FOR UPDATE",
            &[(&id, Type::UUID)],
        )
        .await?;
        let row = rows.first().ok_or(ApiError::NotFound)?;
        let role: String = row.try_get("role")?;
        Ok(Target {
            role: Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role in database"))?,
            disabled: row.try_get("disabled")?,
        })
    }

    fn active_admin(&self) -> bool {
        self.role == Role::Admin && !self.disabled
    }
}

/// The caller's role (re-read), locking the active admins' rows for the rest of the transaction.
async fn begin_admin_change(
    tx: &Transaction<'_>,
    settings: &DbSettings,
    step_up: StepUp,
    caller: &Caller,
) -> ApiResult<i64> {
    let sql = format!(
        "WITH {} SELECT role AS caller_role, mfa AS caller_mfa FROM caller",
        db::LIVE_CALLER
    );
    let rows = db::run(
        tx,
        settings,
        &sql,
        &[(&caller.session_id, Type::UUID), (&caller.user_id, Type::UUID)],
    )
    .await?;
    check_admin(&rows, step_up)?;
    Ok(lock_active_admins(tx, settings).await?.len() as i64)
}

#[tracing::instrument(skip_all, fields(admin_id = %caller.user_id, user_id = %id))]
async fn patch(
    state: &AppState,
    step_up: StepUp,
    caller: &Caller,
    id: Uuid,
    req: &Request,
) -> ApiResult<Response<Body>> {
    let body: PatchUser = parse_json(req)?;
    let origin = Origin::of(req);
    let mut errors = Vec::new();
    let role = match &body.role {
        None => None,
        Some(r) => match r.as_deref().and_then(Role::parse) {
            Some(role) => Some(role),
            None => {
                errors.push(FieldError::new(
                    "role",
                    "invalid_role",
                    "role must be \"user\" or \"admin\".",
                ));
                None
            }
        },
    };
    let disabled = match body.disabled {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("disabled", "required", "disabled cannot be null."));
            None
        }
        Some(d) => d,
    };
    let turn_off_mfa = match body.mfa_enabled {
        None => false,
        Some(Some(false)) => true,
        Some(_) => {
            errors.push(FieldError::new(
                "mfa_enabled",
                "invalid_value",
                "mfa_enabled can only be set to false: users turn the second factor on themselves.",
            ));
            false
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let role_text = role.map(Role::as_str);
    db::bounded(&state.pool, &state.config.db, async |client| {
        let tx = client.transaction().await?;
        let active_admins = begin_admin_change(&tx, &state.config.db, step_up, caller).await?;
        let target = Target::lock(&tx, &state.config.db, id).await?;
        let after = Target {
            role: role.unwrap_or(target.role),
            disabled: disabled.unwrap_or(target.disabled),
        };
        let (was_active_admin, stays_active_admin) = (target.active_admin(), after.active_admin());
        if was_active_admin && !stays_active_admin && active_admins <= 1 {
            return Err(LAST_ADMIN);
        }
        let mut mfa_removed = false;
        if turn_off_mfa {
            // Account recovery: the second factor goes (secret, recovery codes, pending logins,
            // the flag on the user row) and so does every session of the user. A statement of
            // its own, after the user row's lock (`Target::lock`: a login holding it finishes
            // first and its session is seen here) and before the update, so that the update's
            // answer shows `mfa_enabled: false`. Only a second factor that is on is turned off
            // (event, revocation); a pending enrolment is just deleted, silently.
            mfa_removed = !db::run(
                &tx,
                &state.config.db,
                "WITH removed AS (DELETE FROM mfa_totp WHERE user_id = $1 RETURNING user_id, enabled_at),
                      was_on AS (SELECT user_id FROM removed WHERE enabled_at IS NOT NULL),
                      flag AS (UPDATE users SET mfa_enabled = false WHERE id = $1 AND mfa_enabled),
                      codes AS (DELETE FROM mfa_recovery_codes WHERE user_id = $1),
                      challenges AS (DELETE FROM mfa_challenges WHERE user_id = $1),
                      revoked AS (UPDATE sessions SET revoked_at = now(), revoked_reason = 'mfa_reset'
                                   WHERE user_id = $1 AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM was_on))
                 SELECT user_id FROM was_on",
                &[(&id, Type::UUID)],
            )
            .await?
            .is_empty();
            if mfa_removed {
                tracing::info!("second factor turned off by admin; the user's sessions revoked");
            }
        }
        let sql = format!(
            "WITH updated AS (
                UPDATE users u SET role = COALESCE($2, u.role), disabled = COALESCE($3, u.disabled), updated_at = now()
                 WHERE u.id = $1 RETURNING {USER_COLUMNS}),
             revoked AS (
                -- Disabling revokes every session of the user: their tokens die on the next request.
                UPDATE sessions s SET revoked_at = now(), revoked_reason = 'disabled'
                  FROM updated u WHERE s.user_id = u.id AND u.disabled AND s.revoked_at IS NULL)
             SELECT * FROM updated"
        );
        let rows = db::run(
            &tx,
            &state.config.db,
            &sql,
            &[(&id, Type::UUID), (&role_text, Type::TEXT), (&disabled, Type::BOOL)],
        )
        .await?;
        let user = rows
            .first()
            .map(AdminUser::from_row)
            .transpose()?
            .flatten()
            .ok_or(ApiError::NotFound)?;
        // One event per change that happened, in the same transaction.
        let mut changes = Vec::new();
        if user.role != target.role {
            changes.push(EventType::RoleChanged);
        }
        if user.disabled != target.disabled {
            changes.push(if user.disabled {
                EventType::UserDisabled
            } else {
                EventType::UserEnabled
            });
        }
        if mfa_removed {
            changes.push(EventType::MfaDisabled);
        }
        let changes: Vec<Event> = changes
            .into_iter()
            .map(|kind| admin_event(kind, caller, id, &origin))
            .collect();
        for event in &changes {
            events::record(&tx, &state.config.db, event).await?;
        }
        tx.commit().await?;
        changes.iter().for_each(events::log);
        tracing::info!(role = %user.role, disabled = user.disabled, "user changed by admin");
        Ok(json_response(StatusCode::OK, &user))
    })
    .await
}

/// An event about user `id` caused by the admin `caller`.
fn admin_event<'a>(kind: EventType, caller: &Caller, id: Uuid, origin: &'a Origin) -> Event<'a> {
    Event {
        user_id: Some(id),
        actor_id: Some(caller.user_id),
        session_id: Some(caller.session_id),
        ..Event::new(kind, origin)
    }
}

#[tracing::instrument(skip_all, fields(admin_id = %caller.user_id, user_id = %id))]
async fn delete(
    state: &AppState,
    step_up: StepUp,
    caller: &Caller,
    id: Uuid,
    req: &Request,
) -> ApiResult<Response<Body>> {
    let origin = Origin::of(req);
    let event = admin_event(EventType::UserDeleted, caller, id, &origin);
    db::bounded(&state.pool, &state.config.db, async |client| {
        let tx = client.transaction().await?;
        let active_admins = begin_admin_change(&tx, &state.config.db, step_up, caller).await?;
        let active_admin = Target::lock(&tx, &state.config.db, id).await?.active_admin();
        if active_admin && active_admins <= 1 {
            return Err(LAST_ADMIN);
        }
        // Sessions, refresh tokens and tasks go with the user (ON DELETE CASCADE).
        db::run(
            &tx,
            &state.config.db,
            "DELETE FROM users WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await?;
        events::record(&tx, &state.config.db, &event).await?;
        tx.commit().await?;
        events::log(&event);
        tracing::info!("user deleted by admin");
        Ok(empty_response(StatusCode::NO_CONTENT))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::like_substring;

    #[test]
    fn a_filter_is_matched_literally() {
        assert_eq!(like_substring("alice"), "%alice%");
        assert_eq!(like_substring("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_substring("ünï"), "%ünï%");
    }
}
