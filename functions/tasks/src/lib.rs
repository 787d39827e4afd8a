//! `/tasks` and `/tasks/{id}`: one function, dispatching on method and path parameter.
//!
//! Every statement starts from the caller's live session (`db::LIVE_CALLER`) and joins tasks on
//! `caller.user_id`: a row of another user can never be read or written, and a revoked session
//! gets 401 on its very next request, in the same round trip as the work. A task of another user
//! and a path id that is not a UUID are both 404.

use http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
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

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Task {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Task {
    /// From a row of `TASK_COLUMNS`; `None` when the outer join found no task.
    fn from_row(row: &Row) -> ApiResult<Option<Self>> {
        let Some(id) = row.try_get::<_, Option<Uuid>>("id")? else {
            return Ok(None);
        };
        Ok(Some(Task {
            id,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            completed: row.try_get("completed")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }
}

const TASK_COLUMNS: &str = "t.id, t.title, t.description, t.completed, t.created_at, t.updated_at";

#[derive(Serialize)]
struct TaskList {
    items: Vec<Task>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct CreateTask {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    completed: Option<bool>,
}

impl RequestBody for CreateTask {
    const FIELDS: &'static [&'static str] = &["title", "description", "completed"];
}

#[derive(Deserialize)]
pub struct UpdateTask {
    #[serde(default, deserialize_with = "double_option")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    completed: Option<Option<bool>>,
}

impl RequestBody for UpdateTask {
    const FIELDS: &'static [&'static str] = &["title", "description", "completed"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(dispatch(state, req).await)
}

async fn dispatch(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let caller = caller(&req, &state.tokens).await?;
    let id = path_param(&req, "id", &["tasks"]);
    // A path id that is not a UUID names no task: look up the nil UUID (never issued), so the
    // answer is 404 for a live session and 401 for a dead one, like any other missing task.
    let task_id = id
        .as_deref()
        .map(|s| Uuid::parse_str(s).ok().filter(|u| !u.is_nil()).unwrap_or(Uuid::nil()));
    match (req.method().clone(), task_id) {
        (Method::GET, None) => list(state, &caller, &req).await,
        (Method::POST, None) => create(state, &caller, &req).await,
        (Method::GET, Some(id)) => get(state, &caller, id).await,
        (Method::PATCH, Some(id)) => update(state, &caller, id, &req).await,
        (Method::DELETE, Some(id)) => delete(state, &caller, id).await,
        _ => Err(ApiError::NotFound),
    }
}

async fn query(
    state: &AppState,
    caller: &Caller,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<Vec<Row>> {
    db::caller_query(&state.pool, &state.config.db, caller, sql, params).await
}

fn dead_session() -> ApiError {
    ApiError::Unauthenticated(Challenge::InvalidToken)
}

/// The single row of a `caller LEFT JOIN ...` statement: none means the session is not live.
fn one_row(rows: Vec<Row>) -> ApiResult<Row> {
    rows.into_iter().next().ok_or_else(dead_session)
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn list(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let mut errors = Vec::new();
    let page = cursor::page_params(req, &mut errors)?;
    let completed = match query_param(req, "completed", 16)?.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            errors.push(FieldError::new(
                "completed",
                "invalid_boolean",
                "completed must be true or false.",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (after_time, after_id) = page.after.map_or((None, None), |(t, id)| (Some(t), Some(id)));
    let limit = page.limit;
    let fetch = limit + 1;
    // One statement text per combination of filters (four in all), rather than `$n IS NULL OR
    // ...` in one text: each is a prepared statement whose generic plan walks the
    // (user_id, created_at, id) index from the cursor on, whatever page is asked for. The
    // parameters are bound in every variant; a variant that has no use for one ignores it.
    let completed_filter = if completed.is_some() { "AND completed = $3" } else { "" };
    let cursor_filter = if after_time.is_some() {
        "AND (created_at, id) < ($4, $5)"
    } else {
        ""
    };
    let sql = format!(
        "WITH {live}
         SELECT {TASK_COLUMNS}
           FROM caller c
           LEFT JOIN LATERAL (
                SELECT * FROM tasks
                 WHERE user_id = c.user_id {completed_filter} {cursor_filter}
                 ORDER BY created_at DESC, id DESC
                 LIMIT $6) t ON true
          ORDER BY t.created_at DESC, t.id DESC",
        live = db::LIVE_CALLER
    );
    let rows = query(
        state,
        caller,
        &sql,
        &[
            (&completed, Type::BOOL),
            (&after_time, Type::TIMESTAMPTZ),
            (&after_id, Type::UUID),
            (&fetch, Type::INT8),
        ],
    )
    .await?;
    if rows.is_empty() {
        return Err(dead_session());
    }
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(task) = Task::from_row(row)? {
            items.push(task);
        }
    }
    let (items, next_cursor) = cursor::finish_page(items, limit, |t| (t.created_at, t.id));
    Ok(json_response(StatusCode::OK, &TaskList { items, next_cursor }))
}

fn check_title(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let title = raw.trim();
    let n = title.chars().count();
    if n == 0 || n > MAX_TITLE_CHARS {
        errors.push(FieldError::new(
            "title",
            "invalid_length",
            "title must have 1 to 200 characters after trimming.",
        ));
        return None;
    }
    Some(title.to_owned())
}

fn check_description(raw: &Option<String>, errors: &mut Vec<FieldError>) {
    if raw.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        errors.push(FieldError::new(
            "description",
            "too_long",
            "description must have at most 10000 characters.",
        ));
    }
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn create(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: CreateTask = parse_json(req)?;
    let mut errors = Vec::new();
    let title = check_title(&body.title, &mut errors);
    check_description(&body.description, &mut errors);
    let Some(title) = title.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let id = Uuid::now_v7();
    let completed = body.completed.unwrap_or(false);
    // The quota is a per-user counter (`task_counts`), not a count of the user's rows, so a
    // create costs the same at 0 tasks and at 9,999. The counter moves in the same statement as
    // the insert: the upsert's ON CONFLICT ... WHERE refuses at the quota, and the counter row's
    // lock makes concurrent creates of one user take turns, so they stop exactly at the quota.
    // `owner` locks the user row (FOR KEY SHARE, which the foreign key check takes anyway)
    // before the counter row: the same order as deleting the user (users, then the cascade to
    // tasks and task_counts), so the two cannot deadlock. A user deleted meanwhile leaves no
    // `owner` row: no row at all, which is 401 like any dead session.
    let sql = format!(
        "WITH {live},
         owner AS (SELECT u.id FROM users u JOIN caller c ON u.id = c.user_id FOR KEY SHARE OF u),
         counted AS (
            INSERT INTO task_counts AS k (user_id, n)
            SELECT o.id, 1 FROM owner o WHERE $7 > 0
            ON CONFLICT (user_id) DO UPDATE SET n = k.n + 1 WHERE k.n < $7
            RETURNING k.user_id),
         inserted AS (
            INSERT INTO tasks AS t (id, user_id, title, description, completed)
            SELECT $3, k.user_id, $4, $5, $6 FROM counted k
            RETURNING {TASK_COLUMNS})
         SELECT t.*, NOT EXISTS (SELECT 1 FROM counted) AS over_quota FROM owner o LEFT JOIN inserted t ON true",
        live = db::LIVE_CALLER
    );
    let quota = state.config.task_quota;
    let rows = query(
        state,
        caller,
        &sql,
        &[
            (&id, Type::UUID),
            (&title, Type::TEXT),
            (&body.description, Type::TEXT),
            (&completed, Type::BOOL),
            (&quota, Type::INT8),
        ],
    )
    .await?;
    let row = one_row(rows)?;
    if row.try_get::<_, bool>("over_quota")? {
        return Err(ApiError::Conflict {
            code: "task_quota_exceeded",
            detail: "You have reached the maximum number of tasks; delete some first.",
        });
    }
    let task = Task::from_row(&row)?.ok_or_else(dead_session)?;
    let mut response = json_response(StatusCode::CREATED, &task);
    if let Ok(location) = HeaderValue::from_str(&format!("/tasks/{}", task.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id, task_id = %id))]
async fn get(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Response<Body>> {
    let sql = format!(
        "WITH {live}
         SELECT {TASK_COLUMNS} FROM caller c LEFT JOIN tasks t ON t.user_id = c.user_id AND t.id = $3",
        live = db::LIVE_CALLER
    );
    let rows = query(state, caller, &sql, &[(&id, Type::UUID)]).await?;
    let task = Task::from_row(&one_row(rows)?)?.ok_or(ApiError::NotFound)?;
    Ok(json_response(StatusCode::OK, &task))
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id, task_id = %id))]
async fn update(state: &AppState, caller: &Caller, id: Uuid, req: &Request) -> ApiResult<Response<Body>> {
    let body: UpdateTask = parse_json(req)?;
    let mut errors = Vec::new();
    let title = match &body.title {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("title", "required", "title cannot be null."));
            None
        }
        Some(Some(t)) => check_title(t, &mut errors),
    };
    let completed = match body.completed {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("completed", "required", "completed cannot be null."));
            None
        }
        Some(c) => c,
    };
    let set_description = body.description.is_some();
    let description = body.description.clone().flatten();
    check_description(&description, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if title.is_none() && completed.is_none() && !set_description {
        // An empty merge patch changes nothing (RFC 7396): answer with the task as it is.
        return get(state, caller, id).await;
    }
    let sql = format!(
        "WITH {live},
         upd AS (
            UPDATE tasks t
               SET title = COALESCE($4, t.title),
                   description = CASE WHEN $5 THEN $6 ELSE t.description END,
                   completed = COALESCE($7, t.completed),
                   updated_at = now()
              FROM caller c
             WHERE t.user_id = c.user_id AND t.id = $3
            RETURNING {TASK_COLUMNS})
         SELECT t.* FROM caller c LEFT JOIN upd t ON true",
        live = db::LIVE_CALLER
    );
    let rows = query(
        state,
        caller,
        &sql,
        &[
            (&id, Type::UUID),
            (&title, Type::TEXT),
            (&set_description, Type::BOOL),
            (&description, Type::TEXT),
            (&completed, Type::BOOL),
        ],
    )
    .await?;
    let task = Task::from_row(&one_row(rows)?)?.ok_or(ApiError::NotFound)?;
    Ok(json_response(StatusCode::OK, &task))
}

#[tracing::instrument(skip_all, fields(user_id = %caller.user_id, task_id = %id))]
async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Response<Body>> {
    // The quota counter moves in the same statement as the delete (a task deleted twice at once
    // is deleted, and counted, once: the second DELETE finds no row after the first commits).
    let sql = format!(
        "WITH {live},
         del AS (DELETE FROM tasks t USING caller c WHERE t.user_id = c.user_id AND t.id = $3
                 RETURNING t.id, t.user_id),
         counted AS (UPDATE task_counts k SET n = k.n - 1 FROM del WHERE k.user_id = del.user_id)
         SELECT del.id FROM caller c LEFT JOIN del ON true",
        live = db::LIVE_CALLER
    );
    let rows = query(state, caller, &sql, &[(&id, Type::UUID)]).await?;
    let deleted: Option<Uuid> = one_row(rows)?.try_get("id")?;
    deleted.ok_or(ApiError::NotFound)?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}
