//! The second factor (issue 17): TOTP enrolment (`POST /auth/mfa/totp`, then
//! `/auth/mfa/totp/confirm`), turning it off (`DELETE /auth/mfa/totp`), new recovery codes
//! (`POST /auth/mfa/recovery-codes`) and the second step of a two-step login
//! (`POST /auth/mfa/verify`, public: the `mfa_token` from login is the credential).
//!
//! - A TOTP secret is stored only as AES-256-GCM ciphertext (`store::mfa_key`), bound to the user.
//! - An accepted time step is recorded (`mfa_totp.last_used_step`) by a conditional UPDATE
//!   (`last_used_step < $step`) in the same transaction as what the code unlocks, so a code works
//!   once, even when two requests race with it.
//! - Recovery codes carry 80 random bits and are stored as SHA-256 only; each works once.
//! - Verification runs no argon2: a challenge lookup, an AES-GCM decryption, three HMAC-SHA-1s and
//!   the session insert. Every attempt is counted before any code is compared, atomically: against
//!   the `mfa_token` (a conditional UPDATE: 5 attempts at most, however many verifies race) and
//!   then against the account's login failure budget (429 with `Retry-After` once over it). A
//!   right code consumes the token and resets the budget.
//! - Of concurrent verifies of one `mfa_token`, the first to consume it (a row lock on the
//!   challenge) makes the session; the others find it consumed (401 `invalid_mfa_token`).
//! - The signed-in routes that take a code (confirm, new recovery codes, turning it off) count
//!   each attempt against the same login budget before comparing (429 once over it) and reset it
//!   only when everything they check is right.
//! - Enabling and disabling revoke every other session of the user. They lock the user row first
//!   and keep `users.mfa_enabled` in step, which login's session statement checks under a share
//!   lock: no password-only session made by a login racing the change survives it.
//! - Security events (`store::events`): `mfa_enabled`, `mfa_disabled`, `login_succeeded` and
//!   `recovery_code_used` in the same statement or transaction as the change; `mfa_failed`
//!   bounded, like a failed login.

pub mod totp;

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::events::{self, Event, EventType, Origin, Sources};
use store::mfa_key::MfaKeys;
use store::ratelimit::{self, Bucket};
use store::users::{
    NewSession, SessionParams, User, check_password, check_password_counted, count_login_attempt, reset_login_budget,
    session_ctes_made, token_response,
};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::auth::{Caller, caller};
use web::error::{ApiError, ApiResult, Challenge, FieldError};
use web::http::{RequestBody, double_option, empty_response, json_response, parse_json, respond};

/// Recovery codes per set.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per recovery code: 80 bits.
const RECOVERY_CODE_BYTES: usize = 10;
/// Attempts an `mfa_token` allows, counted before the code is compared (a right code consumes
/// the token, so: 5 wrong codes).
pub const MAX_MFA_FAILURES: i32 = 5;
/// Longest `mfa_token` looked up (ours are 43 characters).
const MAX_MFA_TOKEN_LEN: usize = 512;
/// Longest recovery code looked at (ours are 19 characters).
const MAX_RECOVERY_CODE_LEN: usize = 64;

/// 400 `invalid_mfa_code`.
pub const INVALID_MFA_CODE: ApiError = ApiError::BadRequest {
    code: "invalid_mfa_code",
    detail: "The code is wrong, expired or was already used.",
};
/// 409 `mfa_already_enabled`.
pub const MFA_ALREADY_ENABLED: ApiError = ApiError::Conflict {
    code: "mfa_already_enabled",
    detail: "The second factor is already on for this account.",
};
/// 409 `mfa_not_enabled`: turning off, or renewing the recovery codes of, a second factor that is
/// not on.
pub const MFA_NOT_ENABLED: ApiError = ApiError::Conflict {
    code: "mfa_not_enabled",
    detail: "The second factor is not on for this account.",
};
/// 409 `mfa_not_pending`: a confirmation without an enrolment to confirm.
pub const MFA_NOT_PENDING: ApiError = ApiError::Conflict {
    code: "mfa_not_pending",
    detail: "There is no enrolment to confirm: start one with POST /auth/mfa/totp.",
};

#[derive(Deserialize)]
pub struct EnrolBody {
    password: SecretString,
}

impl RequestBody for EnrolBody {
    const FIELDS: &'static [&'static str] = &["password"];
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: SecretString,
}

impl RequestBody for CodeBody {
    const FIELDS: &'static [&'static str] = &["code"];
}

#[derive(Deserialize)]
pub struct DisableBody {
    password: SecretString,
    code: SecretString,
}

impl RequestBody for DisableBody {
    const FIELDS: &'static [&'static str] = &["password", "code"];
}

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

#[derive(Serialize)]
struct Enrolment {
    secret: String,
    otpauth_uri: String,
}

#[derive(Serialize)]
struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(dispatch(state, req).await)
}

async fn dispatch(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    if path.ends_with("/auth/mfa/verify") {
        return match method {
            Method::POST => verify(state, &req).await,
            _ => Err(ApiError::NoRoute),
        };
    }
    let caller = caller(&req, &state.tokens).await?;
    match (method, path.rsplit('/').next().unwrap_or("")) {
        (Method::POST, "totp") => enrol(state, &caller, &req).await,
        (Method::DELETE, "totp") => disable(state, &caller, &req).await,
        (Method::POST, "confirm") => confirm(state, &caller, &req).await,
        (Method::POST, "recovery-codes") => regenerate(state, &caller, &req).await,
        _ => Err(ApiError::NoRoute),
    }
}

/// The encryption keys, or 503 where none is configured (the local API without
/// `MFA_ENCRYPTION_KEY`; the deployed function does not start without one).
fn keys(state: &AppState) -> ApiResult<&MfaKeys> {
    state
        .mfa_keys
        .as_ref()
        .ok_or_else(|| ApiError::ServiceUnavailable(anyhow::anyhow!("no MFA encryption key is configured")))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn dead_session() -> ApiError {
    ApiError::Unauthenticated(Challenge::InvalidToken)
}

/// The caller's account and its TOTP row, if the session is live.
struct Account {
    user: User,
    password_hash: String,
    totp: Option<StoredTotp>,
}

struct StoredTotp {
    ciphertext: Vec<u8>,
    key_id: String,
    enabled: bool,
}

impl StoredTotp {
    fn from_row(row: &tokio_postgres::Row) -> ApiResult<Option<Self>> {
        let Some(ciphertext) = row.try_get::<_, Option<Vec<u8>>>("secret_ciphertext")? else {
            return Ok(None);
        };
        Ok(Some(StoredTotp {
            ciphertext,
            key_id: row.try_get("key_id")?,
            enabled: row.try_get::<_, Option<bool>>("totp_enabled")?.unwrap_or(false),
        }))
    }

    /// The step whose code `code` is, for `user_id`'s secret.
    fn matching_step(&self, keys: &MfaKeys, user_id: Uuid, code: &SecretString) -> ApiResult<Option<u64>> {
        let secret = keys.decrypt(&self.key_id, user_id, &self.ciphertext)?;
        Ok(totp::matching_step(&secret, code.expose_secret().trim(), now_secs()))
    }

    /// [`matching_step`](Self::matching_step) as the statements take it; no step is 400
    /// `invalid_mfa_code`.
    fn accepted_step(&self, keys: &MfaKeys, user_id: Uuid, code: &SecretString) -> ApiResult<i64> {
        let step = self.matching_step(keys, user_id, code)?.ok_or(INVALID_MFA_CODE)?;
        step_param(step)
    }
}

async fn load(state: &AppState, caller: &Caller) -> ApiResult<Account> {
    let sql = format!(
        "WITH {}
         SELECT u.id, u.email, u.role, u.created_at, u.email_verified, u.password_hash,
                t.secret_ciphertext, t.key_id, t.enabled_at IS NOT NULL AS totp_enabled
           FROM caller c JOIN users u ON u.id = c.user_id
           LEFT JOIN mfa_totp t ON t.user_id = u.id",
        db::LIVE_CALLER
    );
    let rows = db::caller_query(&state.pool, &state.config.db, caller, &sql, &[]).await?;
    let row = rows.first().ok_or_else(dead_session)?;
    Ok(Account {
        user: User::from_row(row)?,
        password_hash: row.try_get("password_hash")?,
        totp: StoredTotp::from_row(row)?,
    })
}

/// Steps are stored as `bigint`.
fn step_param(step: u64) -> ApiResult<i64> {
    i64::try_from(step).map_err(|_| ApiError::Internal(anyhow::anyhow!("time step out of range")))
}

/// A fresh set of recovery codes (shown once) and their SHA-256 hashes (stored).
fn new_recovery_codes() -> ApiResult<(Vec<String>, Vec<Vec<u8>>)> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = zeroize::Zeroizing::new([0u8; RECOVERY_CODE_BYTES]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let raw = totp::base32(bytes.as_slice()).to_ascii_lowercase();
        // 16 characters in groups of four: easy to copy by hand.
        let code = raw
            .as_bytes()
            .chunks(4)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect::<Vec<_>>()
            .join("-");
        hashes.push(hash_recovery_code(&code));
        codes.push(code);
    }
    Ok((codes, hashes))
}

/// The stored form of a recovery code: the SHA-256 of its characters without separators or
/// spaces, lower-cased (80 random bits: nothing to brute-force, so a fast hash is enough).
pub fn hash_recovery_code(code: &str) -> Vec<u8> {
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normalized.as_bytes()).to_vec()
}

/// The CTEs that replace the recovery codes of the user in CTE `source` (column `user_id`) with
/// the hashes in `${hashes}` (a `bytea[]`).
fn replace_codes_ctes(source: &str, hashes: usize) -> String {
    format!(
        "old_codes AS (DELETE FROM mfa_recovery_codes WHERE user_id IN (SELECT user_id FROM {source})),
         new_codes AS (INSERT INTO mfa_recovery_codes (user_id, code_hash)
                       SELECT s.user_id, h FROM {source} s, unnest(${hashes}::bytea[]) AS h)"
    )
}

/// `POST /auth/mfa/totp`: a pending enrolment (a fresh secret, replacing any earlier pending one).
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn enrol(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: EnrolBody = parse_json(req)?;
    let keys = keys(state)?;
    let account = load(state, caller).await?;
    check_password(state, &account.user.email, body.password, account.password_hash).await?;
    if account.totp.as_ref().is_some_and(|t| t.enabled) {
        return Err(MFA_ALREADY_ENABLED);
    }
    let secret = totp::new_secret()?;
    let (key_id, ciphertext) = keys.encrypt(caller.user_id, &secret)?;
    let sql = format!(
        "WITH {}
         INSERT INTO mfa_totp (user_id, secret_ciphertext, key_id)
         SELECT user_id, $3, $4 FROM caller
         ON CONFLICT (user_id) DO UPDATE
            SET secret_ciphertext = EXCLUDED.secret_ciphertext, key_id = EXCLUDED.key_id,
                created_at = now(), last_used_step = NULL
          WHERE mfa_totp.enabled_at IS NULL
         RETURNING user_id",
        db::LIVE_CALLER
    );
    let rows = db::caller_query(
        &state.pool,
        &state.config.db,
        caller,
        &sql,
        &[(&ciphertext, Type::BYTEA), (&key_id, Type::TEXT)],
    )
    .await?;
    if rows.is_empty() {
        // Confirmed by a concurrent request meanwhile (or the session died).
        return Err(MFA_ALREADY_ENABLED);
    }
    tracing::info!("TOTP enrolment started");
    let secret = totp::base32(&secret);
    let otpauth_uri = totp::otpauth_uri(&state.config.mfa.totp_issuer, &account.user.email, &secret);
    Ok(json_response(StatusCode::OK, &Enrolment { secret, otpauth_uri }))
}

/// `POST /auth/mfa/totp/confirm`: a first right code turns the second factor on, gives the
/// recovery codes (once) and revokes every other session of the user.
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn confirm(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: CodeBody = parse_json(req)?;
    let keys = keys(state)?;
    let account = load(state, caller).await?;
    let stored = match account.totp {
        None => return Err(MFA_NOT_PENDING),
        Some(t) if t.enabled => return Err(MFA_ALREADY_ENABLED),
        Some(t) => t,
    };
    // Every code tried counts against the account's login budget, before it is compared.
    count_login_attempt(state, &account.user.email).await?;
    let step = stored.accepted_step(keys, caller.user_id, &body.code)?;
    let (codes, hashes) = new_recovery_codes()?;
    // Only the very enrolment the code was checked against (a new one replaces the secret), and
    // only once: the step is recorded in the same statement, and so is the flag on the user row.
    let sql = format!(
        "WITH {},
         enabled AS (
            UPDATE mfa_totp t SET enabled_at = now(), last_used_step = $3
              FROM caller c
             WHERE t.user_id = c.user_id AND t.enabled_at IS NULL AND t.secret_ciphertext = $4
               AND (t.last_used_step IS NULL OR t.last_used_step < $3)
            RETURNING t.user_id),
         flag AS (UPDATE users SET mfa_enabled = true WHERE id IN (SELECT user_id FROM enabled)),
         {},
         revoked AS (
            UPDATE sessions s SET revoked_at = now(), revoked_reason = 'mfa_enabled'
              FROM enabled e WHERE s.user_id = e.user_id AND s.id <> $1 AND s.revoked_at IS NULL),
         {}
         SELECT user_id FROM enabled",
        db::LIVE_CALLER,
        replace_codes_ctes("enabled", 5),
        events::cte("mfa_event", 6, "enabled", Sources::default())
    );
    let origin = Origin::of(req);
    let event = Event::by_user(EventType::MfaEnabled, caller.user_id, Some(caller.session_id), &origin);
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&caller.session_id, Type::UUID),
        (&caller.user_id, Type::UUID),
        (&step, Type::INT8),
        (&stored.ciphertext, Type::BYTEA),
        (&hashes, Type::BYTEA_ARRAY),
    ];
    params.extend(event.params());
    if !locked_change(state, caller.user_id, &sql, &params).await? {
        return Err(INVALID_MFA_CODE);
    }
    reset_login_budget(state, &account.user.email).await?;
    events::log(&event);
    tracing::info!("second factor enabled; other sessions revoked");
    Ok(json_response(StatusCode::OK, &RecoveryCodes { recovery_codes: codes }))
}

/// `POST /auth/mfa/recovery-codes`: a new set for a right code; the old set stops working.
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn regenerate(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: CodeBody = parse_json(req)?;
    let keys = keys(state)?;
    let account = load(state, caller).await?;
    let stored = account.totp.filter(|t| t.enabled).ok_or(MFA_NOT_ENABLED)?;
    // Every code tried counts against the account's login budget, before it is compared.
    count_login_attempt(state, &account.user.email).await?;
    let step = stored.accepted_step(keys, caller.user_id, &body.code)?;
    let (codes, hashes) = new_recovery_codes()?;
    let sql = format!(
        "WITH {},
         stepped AS (
            UPDATE mfa_totp t SET last_used_step = $3
              FROM caller c
             WHERE t.user_id = c.user_id AND t.enabled_at IS NOT NULL
               AND (t.last_used_step IS NULL OR t.last_used_step < $3)
            RETURNING t.user_id),
         {}
         SELECT user_id FROM stepped",
        db::LIVE_CALLER,
        replace_codes_ctes("stepped", 4)
    );
    let rows = db::caller_query(
        &state.pool,
        &state.config.db,
        caller,
        &sql,
        &[(&step, Type::INT8), (&hashes, Type::BYTEA_ARRAY)],
    )
    .await?;
    if rows.is_empty() {
        return Err(INVALID_MFA_CODE);
    }
    reset_login_budget(state, &account.user.email).await?;
    tracing::info!("recovery codes renewed");
    Ok(json_response(StatusCode::OK, &RecoveryCodes { recovery_codes: codes }))
}

/// `DELETE /auth/mfa/totp`: the password and a code turn the second factor off; every other
/// session of the user is revoked.
#[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
async fn disable(state: &AppState, caller: &Caller, req: &Request) -> ApiResult<Response<Body>> {
    let body: DisableBody = parse_json(req)?;
    let keys = keys(state)?;
    let account = load(state, caller).await?;
    // One count against the login budget for the password and the code together; the budget is
    // reset only once both are right (a right password alone must not give the code guesses back).
    check_password_counted(state, &account.user.email, body.password, account.password_hash).await?;
    let stored = account.totp.filter(|t| t.enabled).ok_or(MFA_NOT_ENABLED)?;
    let step = stored.accepted_step(keys, caller.user_id, &body.code)?;
    // The replay check is the DELETE's own condition: a step used before does not turn it off.
    let sql = format!(
        "WITH {},
         removed AS (
            DELETE FROM mfa_totp t USING caller c
             WHERE t.user_id = c.user_id AND t.enabled_at IS NOT NULL
               AND (t.last_used_step IS NULL OR t.last_used_step < $3)
            RETURNING t.user_id),
         flag AS (UPDATE users SET mfa_enabled = false WHERE id IN (SELECT user_id FROM removed)),
         codes AS (DELETE FROM mfa_recovery_codes WHERE user_id IN (SELECT user_id FROM removed)),
         challenges AS (DELETE FROM mfa_challenges WHERE user_id IN (SELECT user_id FROM removed)),
         revoked AS (
            UPDATE sessions s SET revoked_at = now(), revoked_reason = 'mfa_disabled'
              FROM removed r WHERE s.user_id = r.user_id AND s.id <> $1 AND s.revoked_at IS NULL),
         {}
         SELECT user_id FROM removed",
        db::LIVE_CALLER,
        events::cte("mfa_event", 4, "removed", Sources::default())
    );
    let origin = Origin::of(req);
    let event = Event::by_user(EventType::MfaDisabled, caller.user_id, Some(caller.session_id), &origin);
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&caller.session_id, Type::UUID),
        (&caller.user_id, Type::UUID),
        (&step, Type::INT8),
    ];
    params.extend(event.params());
    if !locked_change(state, caller.user_id, &sql, &params).await? {
        return Err(INVALID_MFA_CODE);
    }
    reset_login_budget(state, &account.user.email).await?;
    events::log(&event);
    tracing::info!("second factor disabled; other sessions revoked");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// Turn the second factor on or off: in one transaction, lock the user row (`FOR UPDATE`, a
/// statement of its own), then run `sql` (a statement that starts `WITH` [`db::LIVE_CALLER`], so
/// `params` start with the caller's session and user id; it flips `users.mfa_enabled` and revokes
/// the other sessions). Like a password change: a login whose session step holds the row (share
/// lock) finishes first, and `sql`, a later statement with a new snapshot, sees and revokes the
/// session it made; a login reaching its session step after the lock waits, then re-reads the
/// row, finds `mfa_enabled` changed and opens no password-only session. Whether `sql` returned a
/// row (committed only then).
async fn locked_change(
    state: &AppState,
    user_id: Uuid,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<bool> {
    let settings = &state.config.db;
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        store::users::lock_user_for_update(&tx, settings, user_id).await?;
        let rows = db::run(&tx, settings, sql, params).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    })
    .await
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

/// What the second factor offered.
enum Factor {
    Step(i64),
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
        (Some(code), _) => stored
            .matching_step(keys(state)?, user.id, &code)?
            .map(step_param)
            .transpose()?
            .map(Factor::Step),
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
            Factor::Step(step) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_ten_distinct_80_bit_codes_stored_as_hashes() -> ApiResult<()> {
        let (codes, hashes) = new_recovery_codes()?;
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for (code, hash) in codes.iter().zip(&hashes) {
            assert_eq!(code.len(), 19, "{code}");
            assert_eq!(hash.len(), 32);
            assert_eq!(&hash_recovery_code(&code.to_uppercase().replace('-', " ")), hash);
        }
        Ok(())
    }
}
