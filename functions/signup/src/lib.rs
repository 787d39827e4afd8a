//! `POST /auth/signup`: create an account and its first session.

use access::roles::Role;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::Deserialize;
use store::events::{self, Event, EventType, Origin, Sources};
use store::ratelimit::{self, Bucket};
use store::users::{SessionParams, User, canonical_email, normalize_email, session_ctes, token_response};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::error::{ApiError, ApiResult, FieldError};
use web::http::{RequestBody, client_ip, parse_json, respond};

#[derive(Deserialize)]
pub struct SignupBody {
    email: String,
    password: SecretString,
}

impl RequestBody for SignupBody {
    // `role` and anything else is refused: no mass assignment.
    const FIELDS: &'static [&'static str] = &["email", "password"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(signup(state, req).await)
}

#[tracing::instrument(name = "signup", skip_all)]
async fn signup(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let body: SignupBody = parse_json(&req)?;
    let mut errors: Vec<FieldError> = Vec::new();
    let email = normalize_email(&body.email).map_err(|e| errors.push(e)).ok();
    let password = store::password::check_policy(
        &body.password,
        &body.email,
        state.config.password_min_length,
        "password",
    )
    .map_err(|e| errors.push(e))
    .ok();
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Validation(errors));
    };

    let ip = ratelimit::ip_key(client_ip(&req));
    ratelimit::hit(
        &state.pool,
        &state.config.db,
        Bucket::SignupIp,
        &ip,
        state.config.rate_limits.signups_per_ip,
    )
    .await?;

    let password_hash = state.passwords.hash(password).await?;
    let user_id = Uuid::now_v7();
    let origin = Origin::of(&req);
    let session = SessionParams::new(state, &origin)?;
    let event = Event::by_user(EventType::Signup, user_id, Some(session.session_id), &origin);
    // One statement: the user, the session, the refresh token and the `signup` event are written
    // together or not at all. A concurrent signup with the same email loses on the unique index:
    // 409 email_taken. The verification message is queued in the same statement
    // (recovery::outbox sends it): an account never exists without its request for one.
    let sql = format!(
        "WITH new_user AS (
            INSERT INTO users (id, email, email_canonical, password_hash) VALUES ($1, $2, $4, $3)
            RETURNING id, email, role, created_at, email_verified),
         {},
         {},
         {}
         SELECT id, email, role, created_at, email_verified FROM new_user",
        session_ctes("new_user", 5),
        events::cte("signup_event", 11, "new_user", Sources::default()),
        recovery::outbox::verification_cte("new_user")
    );
    let canonical = canonical_email(&email);
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&user_id, Type::UUID),
        (&email, Type::TEXT),
        (&password_hash, Type::TEXT),
        (&canonical, Type::TEXT),
    ];
    params.extend(session.params());
    params.extend(event.params());
    let row = db::query(&state.pool, &state.config.db, &sql, &params).await?;
    let row = row.first().ok_or_else(|| anyhow::anyhow!("signup returned no row"))?;
    let user = User::from_row(row)?;
    tracing::info!(user_id = %user.id, "user signed up");
    events::log(&event);
    let session = session.into_session();
    token_response(state, Some(&user), user.id, Role::User, &session, StatusCode::CREATED).await
}
