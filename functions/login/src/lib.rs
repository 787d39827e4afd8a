//! `POST /auth/login`: check the password and open a session.
//!
//! An unknown email and a wrong password take the same path (argon2 verification, against a dummy
//! hash for the unknown email) and get the same 401 body. A disabled account is only revealed
//! (403) after a correct password.

use access::roles::Role;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::Deserialize;
use store::events::{self, Event, EventType, Origin, Sources};
use store::ratelimit::{self, Bucket, Counter};
use store::users::{NewSession, SessionParams, User, canonical_email, session_ctes, token_response};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::error::{ApiError, ApiResult};
use web::http::{RequestBody, client_ip, parse_json, respond};

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: SecretString,
}

impl RequestBody for LoginBody {
    const FIELDS: &'static [&'static str] = &["email", "password"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(login(state, req).await)
}

#[tracing::instrument(name = "login", skip_all)]
async fn login(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let body: LoginBody = parse_json(&req)?;
    // The one canonical form: the account looked up and the account counter are the same
    // whatever the spelling (case, NFKC, surrounding spaces).
    let email = canonical_email(&body.email);

    // Throttle before any hashing: per client address, then per account. The account counter is
    // keyed by the normalised email whether or not an account exists, so unknown emails are
    // throttled exactly like real ones.
    let limits = &state.config.rate_limits;
    // One statement: an address over its limit is refused without counting against the account.
    let ip = ratelimit::ip_key(client_ip(&req));
    let account_key = ratelimit::email_key(&email);
    let origin = Origin::of(&req);
    let refuse = |kind: EventType, user_id: Option<Uuid>, error: ApiError| {
        refused(state, &origin, kind, user_id, &account_key, &email, error)
    };
    let throttled = ratelimit::hit_in_turn(
        &state.pool,
        &state.config.db,
        Counter {
            bucket: Bucket::LoginIp,
            key: &ip,
            limit: limits.login_attempts_per_ip,
        },
        Counter {
            bucket: Bucket::LoginAccount,
            key: &account_key,
            limit: limits.login_failures_per_account,
        },
    )
    .await;
    if let Err(e @ ApiError::RateLimited { .. }) = throttled {
        return refuse(EventType::LoginThrottled, None, e).await;
    }
    throttled?;

    let found = db::query(
        &state.pool,
        &state.config.db,
        "SELECT id, email, role, created_at, email_verified, password_hash, disabled
           FROM users WHERE email_canonical = $1",
        &[(&email, Type::TEXT)],
    )
    .await?;
    let found = found.first();
    let stored_hash: Option<String> = found.map(|r| r.try_get("password_hash")).transpose()?;
    let verified_hash = stored_hash.clone().unwrap_or_default();

    let verified = state.passwords.verify(body.password.clone(), stored_hash).await?;
    let found_id: Option<Uuid> = found.map(|r| r.try_get("id")).transpose()?;
    let Some(row) = found.filter(|_| verified.matches) else {
        // Unknown email and wrong password alike: one bounded event (no user id for the first).
        return refuse(EventType::LoginFailed, found_id, ApiError::InvalidCredentials).await;
    };
    let user = User::from_row(row)?;
    if row.try_get::<_, bool>("disabled")? {
        return refuse(EventType::LoginFailed, found_id, ApiError::AccountDisabled).await;
    }
    // Like `disabled`, only revealed after the right password.
    if state.config.recovery.require_verified_email && !user.email_verified {
        return refuse(EventType::LoginFailed, found_id, web::error::EMAIL_NOT_VERIFIED).await;
    }
    // Parameters were raised since this hash was made: store a fresh one while we know the password.
    let new_hash = if verified.needs_rehash {
        Some(
            state
                .passwords
                .hash(store::password::normalize(secrecy::ExposeSecret::expose_secret(
                    &body.password,
                )))
                .await?,
        )
    } else {
        None
    };

    let opened = open_session(
        state,
        user.id,
        &verified_hash,
        new_hash.as_deref(),
        &account_key,
        &origin,
    )
    .await?;
    let Some(session) = opened else {
        // Disabled, deleted or its password changed between the check and the insert.
        return refuse(EventType::LoginFailed, found_id, ApiError::InvalidCredentials).await;
    };
    tracing::info!(user_id = %user.id, rehashed = new_hash.is_some(), "user logged in");
    let role: Role = user.role;
    token_response(state, Some(&user), user.id, role, &session, StatusCode::OK).await
}

/// A refused login changes nothing but leaves one bounded event (`login_failed`,
/// `login_throttled`): recorded, then the refusal answered. Recording it failing does not change
/// the answer (it is logged).
async fn refused(
    state: &AppState,
    origin: &Origin,
    kind: EventType,
    user_id: Option<Uuid>,
    account_key: &str,
    email: &str,
    error: ApiError,
) -> ApiResult<Response<Body>> {
    let event = Event {
        user_id,
        ..Event::new(kind, origin)
    };
    // Throttled before any look-up: the account, if any, is found by the event's own statement.
    let canonical = (kind == EventType::LoginThrottled).then_some(email);
    if let Err(e) = events::record_failure(&state.pool, &state.config.db, &event, account_key, canonical).await {
        tracing::error!(error = ?e, event = kind.as_str(), "could not record a refused login");
    }
    Err(error)
}

/// Open a session for `user_id` after its password was verified against `verified_hash`, storing
/// `new_hash` instead when given (a rehash at raised parameters), and reset the account's failure
/// counter (`account_key`), in one statement. `None`: the user is disabled or gone, or its
/// password is no longer the one verified (a password change committed while argon2 ran; a
/// rehash of the verified hash by a concurrent login is the same password).
///
/// The user row is share-locked: a password change in flight (row updated, not yet committed)
/// makes this wait and then re-check the row, finding the new hash, so no session; and a password
/// change arriving after this lock waits for this statement to commit, then revokes the session it
/// made (account: the revocation runs as a statement of its own after the row lock).
pub async fn open_session(
    state: &AppState,
    user_id: Uuid,
    verified_hash: &str,
    new_hash: Option<&str>,
    account_key: &str,
    origin: &Origin,
) -> ApiResult<Option<NewSession>> {
    let session = SessionParams::new(state, origin)?;
    let event = Event::by_user(EventType::LoginSucceeded, user_id, Some(session.session_id), origin);
    // The session is only created if the user is still enabled and its password is still the
    // one verified at this instant: the stored hash is the verified one, or a rehash of it (a
    // concurrent login of the same account stored one; `password_rehashed_from` is the SHA-256 of
    // the hash it replaced, and a password change clears it). In the same statement (one round
    // trip fewer per login): the password was right, so this account's failure count starts again.
    //
    // The rehash replaces only the hash this login verified (a concurrent login's rehash of the
    // same password stays). A login that rehashes locks the row for update: two of them both
    // holding a share lock and then both updating would deadlock.
    let lock = if new_hash.is_some() {
        "FOR NO KEY UPDATE"
    } else {
        "FOR SHARE"
    };
    let sql = format!(
        "WITH target AS (SELECT id FROM users
                          WHERE id = $1 AND NOT disabled
                            AND (password_hash = $5 OR password_rehashed_from = sha256(convert_to($5, 'UTF8')))
                          {lock}),
         rehash AS (UPDATE users SET password_hash = $4,
                                     password_rehashed_from = sha256(convert_to(password_hash, 'UTF8')),
                                     updated_at = now()
                     WHERE id = (SELECT id FROM target) AND $4::text IS NOT NULL AND password_hash = $5),
         {},
         reset AS (DELETE FROM rate_limits WHERE bucket = $2 AND key = $3 AND EXISTS (SELECT 1 FROM target)),
         {}
         SELECT id FROM new_session",
        session_ctes("target", 6),
        events::cte("login_event", 12, "new_session", Sources::default())
    );
    let bucket = Bucket::LoginAccount.name();
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&user_id, Type::UUID),
        (&bucket, Type::TEXT),
        (&account_key, Type::TEXT),
        (&new_hash, Type::TEXT),
        (&verified_hash, Type::TEXT),
    ];
    params.extend(session.params());
    params.extend(event.params());
    let rows = db::query(&state.pool, &state.config.db, &sql, &params).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    events::log(&event);
    Ok(Some(session.into_session()))
}
