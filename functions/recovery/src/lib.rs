//! Account recovery and email verification: `POST /auth/password/forgot`,
//! `POST /auth/password/reset` and `POST /auth/email/verify` (this function, public), and
//! `POST /auth/email/verify/resend` ([`resend`], served by the account function: Bearer).
//!
//! Requests that should end in a message (forgot, resend; signup too) only queue a job in the
//! outbox ([`outbox`]) and answer 202: the mail-sender step resolves the account, makes the token
//! and sends. So forgot-password costs the same for every email, known or not: two rate-limit
//! counters and one insert, nothing that looks at `users`.

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use store::email::{canonical_email, normalize_email};
use store::events::{self, Event, EventType, Origin, Sources};
use store::password::check_policy;
use store::ratelimit::{self, Bucket, Counter};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::auth::Caller;
use web::error::{ApiError, ApiResult, Challenge};
use web::http::{RequestBody, client_ip, empty_response, json_response, parse_json, respond};

pub mod outbox;

/// 400 `invalid_reset_token`: unknown, used, expired or superseded, one answer for all.
pub const INVALID_RESET_TOKEN: ApiError = ApiError::BadRequest {
    code: "invalid_reset_token",
    detail: "The password reset link is invalid, used, expired or superseded by a newer one; ask for a new one.",
};

/// 400 `invalid_verification_token`.
pub const INVALID_VERIFICATION_TOKEN: ApiError = ApiError::BadRequest {
    code: "invalid_verification_token",
    detail: "The verification link is invalid, used or expired; ask for a new one.",
};

/// 409 `email_already_verified`.
pub const EMAIL_ALREADY_VERIFIED: ApiError = ApiError::Conflict {
    code: "email_already_verified",
    detail: "This email address is already verified.",
};

/// The one body of every 202 from forgot-password, known email or not.
pub const FORGOT_ACCEPTED: &str =
    "If an account exists for this email, a message with a link to reset its password is on its way.";

/// The body of a 202 from resend.
pub const RESEND_ACCEPTED: &str = "A new verification message is on its way.";

/// Longest token accepted for a look-up (ours are 43 characters); longer ones are simply invalid.
const MAX_TOKEN_CHARS: usize = 256;

#[derive(Serialize)]
struct Accepted {
    message: &'static str,
}

#[derive(Deserialize)]
pub struct ForgotBody {
    email: String,
}

impl RequestBody for ForgotBody {
    const FIELDS: &'static [&'static str] = &["email"];
}

#[derive(Deserialize)]
pub struct ResetBody {
    token: SecretString,
    new_password: SecretString,
}

impl RequestBody for ResetBody {
    const FIELDS: &'static [&'static str] = &["token", "new_password"];
}

#[derive(Deserialize)]
pub struct VerifyBody {
    token: SecretString,
}

impl RequestBody for VerifyBody {
    const FIELDS: &'static [&'static str] = &["token"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(dispatch(state, req).await)
}

async fn dispatch(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    if req.method() != Method::POST {
        return Err(ApiError::NoRoute);
    }
    let path = req.uri().path().trim_end_matches('/');
    if path.ends_with("/auth/password/forgot") {
        forgot(state, &req).await
    } else if path.ends_with("/auth/password/reset") {
        reset(state, &req).await
    } else if path.ends_with("/auth/email/verify") {
        verify(state, &req).await
    } else {
        Err(ApiError::NoRoute)
    }
}

/// `POST /auth/password/forgot`: the same work, status, headers, body and time for every email.
#[tracing::instrument(name = "forgot_password", skip_all)]
async fn forgot(state: &AppState, req: &Request) -> ApiResult<Response<Body>> {
    let body: ForgotBody = parse_json(req)?;
    let email = normalize_email(&body.email).map_err(|e| ApiError::Validation(vec![e]))?;
    let canonical = canonical_email(&email);
    let limits = &state.config.rate_limits;
    let ip = ratelimit::ip_key(client_ip(req));
    let email_key = ratelimit::email_key(&email);
    let origin = Origin::of(req);
    let event = Event::new(EventType::PasswordResetRequested, &origin);
    // One event for every request that queues a job, in the statement that queues it: with the
    // account's id when one exists, without a user (like `login_failed` for an unknown email)
    // when none does. Known and unknown emails do the same work, row for row; the log line,
    // written for both alike, carries no user id (this path never learns whether there is one).
    let requested_event = events::cte(
        "requested_event",
        14,
        "(VALUES (1)) one LEFT JOIN users u ON u.email_canonical = $13 WHERE EXISTS (SELECT 1 FROM then_work)",
        Sources {
            user_id: "u.id",
            ..Sources::default()
        },
    );
    let mut then_params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&canonical, Type::TEXT)];
    then_params.extend(event.params());
    // The address first: one over its limit does not count against the email. Unknown emails
    // are counted exactly like real ones (the key is the canonical form's hash either way). The
    // job is queued in the same statement, only within the limits.
    ratelimit::hit_in_turn_then(
        &state.pool,
        &state.config.db,
        Counter {
            bucket: Bucket::ForgotIp,
            key: &ip,
            limit: limits.forgot_per_ip,
        },
        Counter {
            bucket: Bucket::ForgotEmail,
            key: &email_key,
            limit: limits.forgot_per_email,
        },
        outbox::ENQUEUE_PASSWORD_RESET,
        &requested_event,
        &then_params,
    )
    .await?;
    events::log(&event);
    tracing::info!("password reset requested");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Accepted {
            message: FORGOT_ACCEPTED,
        },
    ))
}

/// A reset token that still works: unused, unexpired, its user enabled, and no reset request for
/// that user's email made after the one that produced it (supersession). `t` is
/// `account_tokens`, `u` its user. A password change or reset deletes the user's reset tokens
/// (trigger in migrations/V7), and a token of a request made before the password last changed
/// never works (V8): one made by a sender racing the change, or sent after it.
const LIVE_RESET_TOKEN: &str = "t.purpose = 'password_reset' AND t.used_at IS NULL AND t.expires_at > now()
       AND NOT u.disabled AND t.requested_at > u.password_changed_at
       AND NOT EXISTS (SELECT 1 FROM mail_outbox o
                        WHERE o.kind = 'password_reset' AND o.email_canonical = u.email_canonical
                          AND o.created_at > t.requested_at)";

/// `POST /auth/password/reset`.
#[tracing::instrument(name = "reset_password", skip_all)]
async fn reset(state: &AppState, req: &Request) -> ApiResult<Response<Body>> {
    let body: ResetBody = parse_json(req)?;
    let origin = Origin::of(req);
    let settings = &state.config.db;
    let ip = ratelimit::ip_key(client_ip(req));
    ratelimit::hit(
        &state.pool,
        settings,
        Bucket::ResetIp,
        &ip,
        state.config.rate_limits.reset_per_ip,
    )
    .await?;
    let token = body.token.expose_secret();
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return Err(INVALID_RESET_TOKEN);
    }
    let hash = outbox::token_hash(token);
    // Which account, for the policy check (the password must not be its email) before hashing.
    let sql = format!(
        "SELECT u.id, u.email FROM account_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = $1 AND {LIVE_RESET_TOKEN}"
    );
    let rows = db::query(&state.pool, settings, &sql, &[(&hash, Type::BYTEA)]).await?;
    let row = rows.first().ok_or(INVALID_RESET_TOKEN)?;
    let user_id: Uuid = row.try_get("id")?;
    let email: String = row.try_get("email")?;
    let new_password = check_policy(
        &body.new_password,
        &email,
        state.config.password_min_length,
        "new_password",
    )
    .map_err(|e| ApiError::Validation(vec![e]))?;
    let new_hash = state.passwords.hash(new_password).await?;
    let consume = format!(
        "UPDATE account_tokens t SET used_at = now() FROM users u
          WHERE t.token_hash = $1 AND u.id = t.user_id AND u.id = $2 AND {LIVE_RESET_TOKEN}
         RETURNING t.user_id"
    );
    let login_key = ratelimit::email_key(&email);
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        // The user row first, as a password change does: a login holding it finishes first and
        // its session is revoked below; one arriving later finds the new hash.
        store::users::lock_user_for_update(&tx, settings, user_id).await?;
        // Single use: of two resets with one token, the second waits for the first's row lock,
        // then finds the token used (or deleted by the trigger) and consumes nothing.
        let consumed = db::run(&tx, settings, &consume, &[(&hash, Type::BYTEA), (&user_id, Type::UUID)]).await?;
        if consumed.is_empty() {
            return Err(INVALID_RESET_TOKEN);
        }
        // The new hash, every session revoked (the old access tokens fail on the next data
        // request: every one checks its session), and the account's login failures forgotten.
        // Reading the reset mail proved the mailbox, so the address is verified too; `before`
        // (the row as this statement found it) says whether that is a change to record.
        let updated = db::run(
            &tx,
            settings,
            "WITH updated AS (
                UPDATE users u SET password_hash = $2, password_rehashed_from = NULL,
                                   email_verified = true, updated_at = now()
                  FROM users before
                 WHERE u.id = $1 AND before.id = u.id
                RETURNING u.id, before.email_verified AS was_verified),
             revoked AS (
                UPDATE sessions s SET revoked_at = now(), revoked_reason = 'password_reset'
                  FROM updated WHERE s.user_id = updated.id AND s.revoked_at IS NULL),
             unthrottled AS (
                DELETE FROM rate_limits WHERE bucket = $3 AND key = $4 AND EXISTS (SELECT 1 FROM updated))
             SELECT id, was_verified FROM updated",
            &[
                (&user_id, Type::UUID),
                (&new_hash, Type::TEXT),
                (&Bucket::LoginAccount.name(), Type::TEXT),
                (&login_key, Type::TEXT),
            ],
        )
        .await?;
        let Some(row) = updated.first() else {
            return Err(INVALID_RESET_TOKEN);
        };
        // Recorded first, so the trail reads in the order the reset made the changes.
        let verified = (!row.try_get::<_, bool>("was_verified")?)
            .then(|| Event::by_user(EventType::EmailVerified, user_id, None, &origin));
        if let Some(verified) = &verified {
            events::record(&tx, settings, verified).await?;
        }
        let event = Event::by_user(EventType::PasswordReset, user_id, None, &origin);
        events::record(&tx, settings, &event).await?;
        tx.commit().await?;
        if let Some(verified) = &verified {
            events::log(verified);
        }
        events::log(&event);
        tracing::info!(user_id = %user_id, "password reset; every session revoked");
        Ok(empty_response(StatusCode::NO_CONTENT))
    })
    .await
}

/// `POST /auth/email/verify`: consume the token and mark the address verified, in one statement.
#[tracing::instrument(name = "verify_email", skip_all)]
async fn verify(state: &AppState, req: &Request) -> ApiResult<Response<Body>> {
    let body: VerifyBody = parse_json(req)?;
    let settings = &state.config.db;
    let ip = ratelimit::ip_key(client_ip(req));
    ratelimit::hit(
        &state.pool,
        settings,
        Bucket::VerifyIp,
        &ip,
        state.config.rate_limits.verify_per_ip,
    )
    .await?;
    let token = body.token.expose_secret();
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return Err(INVALID_VERIFICATION_TOKEN);
    }
    let hash = outbox::token_hash(token);
    let origin = Origin::of(req);
    let mut event = Event::new(EventType::EmailVerified, &origin);
    let sql = format!(
        "WITH consumed AS (
            UPDATE account_tokens SET used_at = now()
             WHERE token_hash = $1 AND purpose = 'email_verification'
               AND used_at IS NULL AND expires_at > now()
            RETURNING user_id),
         verified AS (
            UPDATE users u SET email_verified = true, updated_at = now()
              FROM consumed c WHERE u.id = c.user_id
            RETURNING u.id),
         {}
         SELECT id FROM verified",
        events::cte(
            "verified_event",
            2,
            "verified v",
            Sources {
                user_id: "v.id",
                actor_id: "v.id",
                ..Sources::default()
            }
        )
    );
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&hash, Type::BYTEA)];
    params.extend(event.params());
    let rows = db::query(&state.pool, settings, &sql, &params).await?;
    let row = rows.first().ok_or(INVALID_VERIFICATION_TOKEN)?;
    let user_id: Uuid = row.try_get("id")?;
    event.user_id = Some(user_id);
    event.actor_id = Some(user_id);
    events::log(&event);
    tracing::info!(user_id = %user_id, "email verified");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `POST /auth/email/verify/resend` (Bearer): queue another verification message. Served by the
/// account function (Bearer routes only, trusting the authorizer's context, holding no key); the
/// public routes above are this crate's function, which holds no key either.
#[tracing::instrument(name = "resend_verification", skip_all, fields(user_id = %caller.user_id))]
pub async fn resend(state: &AppState, caller: &Caller) -> ApiResult<Response<Body>> {
    let settings = &state.config.db;
    let sql = format!(
        "WITH {} SELECT u.email_verified FROM caller c JOIN users u ON u.id = c.user_id",
        db::LIVE_CALLER
    );
    let rows = db::caller_query(&state.pool, settings, caller, &sql, &[]).await?;
    let row = rows.first().ok_or(ApiError::Unauthenticated(Challenge::InvalidToken))?;
    if row.try_get::<_, bool>("email_verified")? {
        return Err(EMAIL_ALREADY_VERIFIED);
    }
    ratelimit::hit(
        &state.pool,
        settings,
        Bucket::VerifyResendUser,
        &caller.user_id.to_string(),
        state.config.rate_limits.verify_resend_per_user,
    )
    .await?;
    db::query(
        &state.pool,
        settings,
        outbox::ENQUEUE_VERIFICATION,
        &[(&caller.user_id, Type::UUID)],
    )
    .await?;
    tracing::info!(user_id = %caller.user_id, "verification message requested");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Accepted {
            message: RESEND_ACCEPTED,
        },
    ))
}
