//! `POST /auth/login`: check the password and open a session.
//!
//! An unknown email and a wrong password take the same path (argon2 verification, against a dummy
//! hash for the unknown email) and get the same 401 body. A disabled account is only revealed
//! (403) after a correct password.
//!
//! An account with a second factor (issue 17) gets no session for its password alone: the
//! answer is `{mfa_required: true, mfa_token, expires_in}`, and `POST /auth/mfa/verify` (the mfa
//! function) opens the session with a code. The failure counter is not reset then: wrong codes
//! count against the same budget, and only a verified code resets it. A login whose password was
//! checked while the second factor was being turned on (the change committed before its session
//! step) gets no password-only session: its session statement re-reads `users.mfa_enabled` under
//! the row lock and finds none to open, and the login answers as a two-step one
//! (`mfa_required`), since the password was right.

use access::roles::Role;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::Deserialize;
use store::events::{self, Event, EventType, Origin, Sources};
use store::ratelimit::{self, Bucket, Counter, Refused, Turn};
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
    let refuse =
        |kind: EventType, user_id: Option<Uuid>, error: ApiError| refused(state, &origin, kind, user_id, None, error);
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
    .await?;
    if let Some(Refused { turn, error }) = throttled {
        // The address over its limit: the event is the address's, whatever email was typed. The
        // account over its limit: the event is that account's, if it exists (found by the
        // event's own statement: nothing was looked up yet).
        let account_email = (turn == Turn::Second).then_some(email.as_str());
        return refused(state, &origin, EventType::LoginThrottled, None, account_email, error).await;
    }

    let found = db::query(
        &state.pool,
        &state.config.db,
        "SELECT id, email, role, created_at, email_verified, password_hash, disabled, mfa_enabled
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

    if !row.try_get::<_, bool>("mfa_enabled")? {
        let opened = open_session(
            state,
            user.id,
            &verified_hash,
            new_hash.as_deref(),
            &account_key,
            &origin,
        )
        .await?;
        if let Some(session) = opened {
            tracing::info!(user_id = %user.id, rehashed = new_hash.is_some(), "user logged in");
            let role: Role = user.role;
            return token_response(state, Some(&user), user.id, role, &session, StatusCode::OK).await;
        }
        // No session: the account was disabled or deleted, or its password changed, between the
        // check and the insert (then the challenge below is refused too), or the second factor
        // was turned on meanwhile: the password was right, so the login goes on in two steps.
    }
    let Some(token) = open_challenge(state, user.id, &verified_hash, new_hash.as_deref(), &account_key).await? else {
        return refuse(EventType::LoginFailed, found_id, ApiError::InvalidCredentials).await;
    };
    tracing::info!(user_id = %user.id, "password verified; second factor required");
    let body = MfaRequired {
        mfa_required: true,
        mfa_token: secrecy::ExposeSecret::expose_secret(&token),
        expires_in: MFA_TOKEN_TTL_SECS as u64,
    };
    Ok(web::http::json_response(StatusCode::OK, &body))
}

/// How long an `mfa_token` lives (contract: 5 minutes).
pub const MFA_TOKEN_TTL_SECS: i64 = 300;

/// The first answer of a two-step login.
#[derive(serde::Serialize)]
struct MfaRequired<'a> {
    mfa_required: bool,
    mfa_token: &'a str,
    expires_in: u64,
}

/// The CTEs `target` (the user, still enabled and still with the password verified as `$hash`,
/// locked) and `rehash` (store `$new` when given), as [`open_session`] and [`open_challenge`]
/// use them. `user`, `new` and `hash` are the placeholders of the user id, the new hash and the
/// verified hash. `password_only`: the target also requires the second factor to be off
/// (`users.mfa_enabled`, re-read under the lock, so a confirmation that committed while this
/// waited is seen). A login that rehashes locks the row for update: two of them both holding a
/// share lock and then both updating would deadlock.
fn verified_target_ctes(rehashing: bool, password_only: bool, user: &str, new: &str, hash: &str) -> String {
    let lock = if rehashing { "FOR NO KEY UPDATE" } else { "FOR SHARE" };
    let mfa = if password_only { "AND NOT mfa_enabled" } else { "" };
    format!(
        "target AS (SELECT id FROM users
                     WHERE id = {user} AND NOT disabled {mfa}
                       AND (password_hash = {hash} OR password_rehashed_from = sha256(convert_to({hash}, 'UTF8')))
                     {lock}),
         rehash AS (UPDATE users SET password_hash = {new},
                                     password_rehashed_from = sha256(convert_to(password_hash, 'UTF8')),
                                     updated_at = now()
                     WHERE id = (SELECT id FROM target) AND {new}::text IS NOT NULL AND password_hash = {hash})"
    )
}

/// The first step of a two-step login: record a challenge (only the SHA-256 of its 256-bit token;
/// 5 minutes, 5 wrong codes) for `user_id` after its password was verified, under the same
/// conditions as [`open_session`]. The account's failure counter is left as it is. `None`: the
/// user is disabled or gone, or its password changed meanwhile.
pub async fn open_challenge(
    state: &AppState,
    user_id: Uuid,
    verified_hash: &str,
    new_hash: Option<&str>,
    account_key: &str,
) -> ApiResult<Option<SecretString>> {
    let token = store::users::new_refresh_token()?;
    let token_hash = store::users::hash_refresh_token(&token);
    let sql = format!(
        "WITH {},
         challenge AS (
            INSERT INTO mfa_challenges (token_hash, user_id, account_key, expires_at)
            SELECT $4, id, $5, now() + $6 * interval '1 second' FROM target
            RETURNING user_id)
         SELECT user_id FROM challenge",
        verified_target_ctes(new_hash.is_some(), false, "$1", "$2", "$3")
    );
    let rows = db::query(
        &state.pool,
        &state.config.db,
        &sql,
        &[
            (&user_id, Type::UUID),
            (&new_hash, Type::TEXT),
            (&verified_hash, Type::TEXT),
            (&token_hash, Type::BYTEA),
            (&account_key, Type::TEXT),
            (&MFA_TOKEN_TTL_SECS, Type::INT8),
        ],
    )
    .await?;
    Ok((!rows.is_empty()).then_some(token))
}

/// A refused login changes nothing but leaves one bounded event (`login_failed`,
/// `login_throttled`) about `user_id`, or else about the account of `account_email` (a login
/// throttled on its account's counter), or else about no account (keyed by the address alone):
/// recorded, then the refusal answered. Recording it failing does not change the answer (it is
/// logged).
async fn refused(
    state: &AppState,
    origin: &Origin,
    kind: EventType,
    user_id: Option<Uuid>,
    account_email: Option<&str>,
    error: ApiError,
) -> ApiResult<Response<Body>> {
    let event = Event {
        user_id,
        ..Event::new(kind, origin)
    };
    if let Err(e) = events::record_failure(&state.pool, &state.config.db, &event, account_email).await {
        tracing::error!(error = ?e, event = kind.as_str(), "could not record a refused login");
    }
    Err(error)
}

/// Open a session for `user_id` after its password was verified against `verified_hash`, storing
/// `new_hash` instead when given (a rehash at raised parameters), and reset the account's failure
/// counter (`account_key`), in one statement. `None`: the user is disabled or gone, or its
/// password is no longer the one verified (a password change committed while argon2 ran; a
/// rehash of the verified hash by a concurrent login is the same password), or the second factor
/// was turned on meanwhile (`users.mfa_enabled`; the change locks the row first, like a password
/// change, and revokes a session made before it).
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
    let sql = format!(
        "WITH {},
         {},
         reset AS (DELETE FROM rate_limits WHERE bucket = $2 AND key = $3 AND EXISTS (SELECT 1 FROM target)),
         {}
         SELECT id FROM new_session",
        verified_target_ctes(new_hash.is_some(), true, "$1", "$4", "$5"),
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
