//! `POST /auth/mfa/verify`: the second step of a two-step login (issue 17), public (the
//! `mfa_token` from login is the credential). A function of its own, apart from the MFA function
//! (finding 7): that one checks passwords with argon2 and is reserved like the other hashing
//! functions, so a signed-in account flooding enrolment would otherwise take the instances every
//! user's second login step needs. This one runs no argon2 and has its own reserved concurrency
//! (template.yaml, `MfaVerifyReservedConcurrency`).
//!
//! - Verification: a challenge lookup, an AES-GCM decryption, three HMAC-SHA-1s and the session
//!   insert. Every attempt is counted before any code is compared, atomically: against the
//!   `mfa_token` (a conditional UPDATE: 5 attempts at most, however many verifies race) and then
//!   against the account's login failure budget (429 with `Retry-After` once over it). A right
//!   code consumes the token and resets the budget.
//! - Of concurrent verifies of one `mfa_token`, the first to consume it (a row lock on the
//!   challenge) makes the session; the others find it consumed (401 `invalid_mfa_token`).
//! - An accepted time step is recorded (`mfa_totp.last_used_step`) by a conditional UPDATE in the
//!   same transaction as the session, so a code works once; a secret read under a key that is no
//!   longer the current one is sealed again under the current key in that transaction too.
//! - Security events: `login_succeeded` and `recovery_code_used` in the session's transaction;
//!   `mfa_failed` bounded, like a failed login.

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mfa::{INVALID_MFA_CODE, MAX_MFA_FAILURES, StoredTotp, hash_recovery_code, step_param};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use store::events::{self, Event, EventType, Origin, Sources};
use store::mfa_key::Rekey;
use store::ratelimit::{self, Bucket};
use store::users::{NewSession, SessionParams, User, session_ctes_made, token_response};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::error::{ApiError, ApiResult, FieldError};
use web::http::{RequestBody, double_option, parse_json, respond};

/// Longest `mfa_token` looked up (ours are 43 characters).
const MAX_MFA_TOKEN_LEN: usize = 512;
/// Longest recovery code looked at (ours are 19 characters).
const MAX_RECOVERY_CODE_LEN: usize = 64;

#[derive(Deserialize)]
pub struct VerifyBody {
    mfa_token: SecretString,
    /// Absent, or a string: `null` is refused like any value of the wrong type.
    #[serde(default, deserialize_with = "double_option")]
    code: Option<Option<SecretString>>,
    #[serde(default, deserialize_with = "double_option")]
    recovery_code: Option<Option<SecretString>>,
}

impl RequestBody for VerifyBody {
    const FIELDS: &'static [&'static str] = &["mfa_token", "code", "recovery_code"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(dispatch(state, req).await)
}

async fn dispatch(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let path = req.uri().path().trim_end_matches('/');
    match (req.method(), path.ends_with("/auth/mfa/verify")) {
        (&Method::POST, true) => verify(state, &req).await,
        _ => Err(ApiError::NoRoute),
    }
}

/// One attempt at the live challenge of a presented `mfa_token` (`$1`), counted before any code
/// is looked at: the conditional UPDATE takes the challenge's row lock, so of concurrent
/// verifies at most [`MAX_MFA_FAILURES`] (`$2`) ever get this far (a waiting one re-checks
/// `failures` on the row as the others left it). No row: unknown, used, expired, used up, or the
/// user is disabled or has no second factor any more. Returns the user and its TOTP row.
const ATTEMPT: &str = "
UPDATE mfa_challenges c SET failures = c.failures + 1
  FROM users u, mfa_totp t
 WHERE c.token_hash = $1 AND c.consumed_at IS NULL AND c.expires_at > now() AND c.failures < $2
   AND u.id = c.user_id AND NOT u.disabled
   AND t.user_id = c.user_id AND t.enabled_at IS NOT NULL
RETURNING u.id, u.email, u.role, u.created_at, u.email_verified, c.account_key,
          t.secret_ciphertext, t.key_id, true AS totp_enabled";

/// Share-lock the user row of a verify (`$1`) first, as every change of the second factor and
/// of the password locks it first (no lock-order deadlock): a disable or password change in
/// flight finishes before, and a verify holding it finishes before they revoke sessions.
const LOCK_USER: &str = "
SELECT id FROM users WHERE id = $1 AND NOT disabled AND mfa_enabled FOR SHARE";

/// Consume the challenge (the row lock decides between concurrent verifies). The attempt was
/// counted already.
const CONSUME: &str = "
UPDATE mfa_challenges SET consumed_at = now()
 WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now()
RETURNING user_id";

/// Record the accepted time step, if it is newer than the last one accepted.
const USE_STEP: &str = "
UPDATE mfa_totp SET last_used_step = $2
 WHERE user_id = $1 AND enabled_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $2)
RETURNING user_id";

/// Use a recovery code, once.
const USE_RECOVERY_CODE: &str = "
UPDATE mfa_recovery_codes SET used_at = now()
 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
RETURNING user_id";

/// What the second factor offered: a code's step (and, when its secret was read under a key that
/// is not the current one, the secret sealed under the current key), or a recovery code's hash.
enum Factor {
    Step(i64, Option<Rekey>),
    RecoveryCode(Vec<u8>),
}

/// How a verification with a factor that looked right ended.
enum Outcome {
    Session(NewSession),
    /// The step was used already, or the recovery code is unknown or used.
    WrongCode,
}

/// `POST /auth/mfa/verify`: the second step of a two-step login.
#[tracing::instrument(name = "mfa_verify", skip_all)]
async fn verify(state: &AppState, req: &Request) -> ApiResult<Response<Body>> {
    let body: VerifyBody = parse_json(req)?;
    let origin = Origin::of(req);
    let nulls: Vec<FieldError> = [
        ("code", body.code.as_ref()),
        ("recovery_code", body.recovery_code.as_ref()),
    ]
    .into_iter()
    .filter(|(_, value)| matches!(value, Some(None)))
    .map(|(field, _)| FieldError::new(field, "invalid_type", format!("{field} must be a string.")))
    .collect();
    if !nulls.is_empty() {
        return Err(ApiError::Validation(nulls));
    }
    let (code, recovery_code) = match (body.code.flatten(), body.recovery_code.flatten()) {
        (Some(code), None) => (Some(code), None),
        (None, Some(recovery)) => (None, Some(recovery)),
        _ => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "code",
                "one_of",
                "Send exactly one of code and recovery_code.",
            )]));
        }
    };
    let token = body.mfa_token.expose_secret();
    if token.is_empty() || token.len() > MAX_MFA_TOKEN_LEN {
        return Err(ApiError::InvalidMfaToken);
    }
    let token_hash = Sha256::digest(token.as_bytes()).to_vec();
    let limit = state.config.rate_limits.login_failures_per_account;
    let (pool, settings) = (&state.pool, &state.config.db);
    // The attempt counts against the token and then the account's login budget before any code
    // is compared: concurrent verifies cannot all read "under the limit" and then all compare.
    let rows = db::query(
        pool,
        settings,
        ATTEMPT,
        &[(&token_hash, Type::BYTEA), (&MAX_MFA_FAILURES, Type::INT4)],
    )
    .await?;
    let row = rows.first().ok_or(ApiError::InvalidMfaToken)?;
    let account_key: String = row.try_get("account_key")?;
    ratelimit::hit(pool, settings, Bucket::LoginAccount, &account_key, limit).await?;
    let user = User::from_row(row)?;
    let stored = StoredTotp::from_row(row)?.ok_or(ApiError::InvalidMfaToken)?;

    let factor = match (code, recovery_code) {
        (Some(code), _) => {
            let checked = stored.check(mfa::keys(state)?, user.id, &code)?;
            match checked.step {
                Some(step) => Some(Factor::Step(step_param(step)?, checked.rekey)),
                None => None,
            }
        }
        (None, Some(recovery)) => {
            let recovery = recovery.expose_secret();
            (!recovery.is_empty() && recovery.len() <= MAX_RECOVERY_CODE_LEN)
                .then(|| Factor::RecoveryCode(hash_recovery_code(recovery)))
        }
        (None, None) => None,
    };
    let outcome = match factor {
        Some(factor) => open_session(state, &token_hash, user.id, &factor, &account_key, &origin).await?,
        None => Outcome::WrongCode,
    };
    match outcome {
        Outcome::Session(session) => {
            tracing::info!(user_id = %user.id, "second factor verified; user logged in");
            token_response(state, Some(&user), user.id, user.role, &session, StatusCode::OK).await
        }
        Outcome::WrongCode => {
            // Counted already (the token's attempt and the account's budget).
            tracing::info!(user_id = %user.id, "wrong second factor code");
            let event = Event {
                user_id: Some(user.id),
                ..Event::new(EventType::MfaFailed, &origin)
            };
            if let Err(e) = events::record_failure(pool, settings, &event, None).await {
                tracing::error!(error = ?e, "could not record a wrong second factor code");
            }
            Err(INVALID_MFA_CODE)
        }
    }
}

/// In one transaction: consume the challenge, use the factor, open a session made with a second
/// factor and reset the account's failure counter. Nothing of it stays when any step fails.
async fn open_session(
    state: &AppState,
    token_hash: &[u8],
    user_id: Uuid,
    factor: &Factor,
    account_key: &str,
    origin: &Origin,
) -> ApiResult<Outcome> {
    let settings = &state.config.db;
    let session = SessionParams::new(state, origin)?;
    let login_event = Event::by_user(EventType::LoginSucceeded, user_id, Some(session.session_id), origin);
    let recovery_event = Event::by_user(EventType::RecoveryCodeUsed, user_id, Some(session.session_id), origin);
    let sql = format!(
        "WITH target AS (SELECT id FROM users WHERE id = $1 AND NOT disabled AND mfa_enabled FOR SHARE),
         reset AS (DELETE FROM rate_limits WHERE bucket = $2 AND key = $3 AND EXISTS (SELECT 1 FROM target)),
         {},
         {}
         SELECT id FROM new_session",
        session_ctes_made("target", 4, true),
        events::cte("login_event", 10, "new_session", Sources::default())
    );
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        if db::run(&tx, settings, LOCK_USER, &[(&user_id, Type::UUID)])
            .await?
            .is_empty()
        {
            // Disabled, or the second factor turned off, meanwhile.
            return Err(ApiError::InvalidMfaToken);
        }
        let consumed = db::run(&tx, settings, CONSUME, &[(&token_hash, Type::BYTEA)]).await?;
        if consumed.is_empty() {
            // A concurrent verify of the same token won (or it just ran out).
            return Err(ApiError::InvalidMfaToken);
        }
        let used = match factor {
            Factor::Step(step, _) => {
                db::run(&tx, settings, USE_STEP, &[(&user_id, Type::UUID), (step, Type::INT8)]).await?
            }
            Factor::RecoveryCode(hash) => {
                db::run(
                    &tx,
                    settings,
                    USE_RECOVERY_CODE,
                    &[(&user_id, Type::UUID), (hash, Type::BYTEA)],
                )
                .await?
            }
        };
        if used.is_empty() {
            // Rolled back: the challenge stays live (this attempt was counted before).
            return Ok(Outcome::WrongCode);
        }
        // The code was right and is used: its secret, read under a key that is not the current
        // one, is sealed under the current key in this transaction (with the use, or not at all).
        if let Factor::Step(_, Some(rekey)) = factor {
            store::mfa_key::rekey(&tx, settings, rekey).await?;
        }
        let bucket = Bucket::LoginAccount.name();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
            (&user_id, Type::UUID),
            (&bucket, Type::TEXT),
            (&account_key, Type::TEXT),
        ];
        params.extend(session.params());
        params.extend(login_event.params());
        let rows = db::run(&tx, settings, &sql, &params).await?;
        if rows.is_empty() {
            return Err(ApiError::InvalidMfaToken);
        }
        let recovery = matches!(factor, Factor::RecoveryCode(_));
        if recovery {
            events::record(&tx, settings, &recovery_event).await?;
        }
        tx.commit().await?;
        events::log(&login_event);
        if recovery {
            events::log(&recovery_event);
        }
        Ok(Outcome::Session(NewSession {
            session_id: session.session_id,
            refresh_token: session.refresh_token.clone(),
            mfa: true,
        }))
    })
    .await
}
