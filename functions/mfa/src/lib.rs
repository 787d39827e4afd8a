//! The second factor (issue 17): TOTP enrolment (`POST /auth/mfa/totp`, then
//! `/auth/mfa/totp/confirm`), turning it off (`DELETE /auth/mfa/totp`) and new recovery codes
//! (`POST /auth/mfa/recovery-codes`), and what the second step of a two-step login
//! (`POST /auth/mfa/verify`, the `mfa-verify` function) shares with them.
//!
//! The second step is a function of its own (finding 7): this one checks passwords (argon2) and
//! is reserved like the other hashing functions, so a signed-in account flooding enrolment with
//! passwords would otherwise take the instances every user's second login step needs. Here, each
//! password check also counts against a per-account budget of its own (`RATE_MFA_PASSWORD`) that
//! a right password does not reset.
//!
//! - A TOTP secret is stored only as AES-256-GCM ciphertext (`store::mfa_key`), bound to the user.
//!   One read under a key that is no longer the current one is sealed again under the current
//!   key by the use that read it, in its transaction (a right code only: a wrong one rewrites
//!   nothing), so a key rotated out stops being needed.
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
use store::mfa_key::{MfaKeys, Rekey};
use store::users::{User, check_mfa_route_password, count_login_attempt, reset_login_budget};
use store::{AppState, db};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::auth::{Caller, caller};
use web::error::{ApiError, ApiResult, Challenge};
use web::http::{RequestBody, empty_response, json_response, parse_json, respond};

/// Recovery codes per set.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per recovery code: 80 bits.
const RECOVERY_CODE_BYTES: usize = 10;
/// Attempts an `mfa_token` allows, counted before the code is compared (a right code consumes
/// the token, so: 5 wrong codes).
pub const MAX_MFA_FAILURES: i32 = 5;

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
    // `POST /auth/mfa/verify` is the mfa-verify function's (no route here, whatever the token).
    if path.ends_with("/auth/mfa/verify") {
        return Err(ApiError::NoRoute);
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
pub fn keys(state: &AppState) -> ApiResult<&MfaKeys> {
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

/// A user's TOTP row: the secret's ciphertext and the key it is under.
pub struct StoredTotp {
    ciphertext: Vec<u8>,
    key_id: String,
    enabled: bool,
}

/// A code checked against a stored secret: the step it is the code of, if any, and, for a right
/// code whose secret was read under a key that is not the current one, the same secret sealed
/// under the current key, to write in the transaction the code is used in.
pub struct Checked {
    pub step: Option<u64>,
    pub rekey: Option<Rekey>,
}

impl StoredTotp {
    /// The row's TOTP columns (`secret_ciphertext`, `key_id`, `totp_enabled`); `None` without a
    /// secret.
    pub fn from_row(row: &tokio_postgres::Row) -> ApiResult<Option<Self>> {
        let Some(ciphertext) = row.try_get::<_, Option<Vec<u8>>>("secret_ciphertext")? else {
            return Ok(None);
        };
        Ok(Some(StoredTotp {
            ciphertext,
            key_id: row.try_get("key_id")?,
            enabled: row.try_get::<_, Option<bool>>("totp_enabled")?.unwrap_or(false),
        }))
    }

    /// Check `code` against `user_id`'s secret. Only a right code gets a [`Rekey`]: a wrong one
    /// must not rewrite the row.
    pub fn check(&self, keys: &MfaKeys, user_id: Uuid, code: &SecretString) -> ApiResult<Checked> {
        // A key this instance does not hold yet: a rotation in progress, and an instance that
        // already runs the new key has re-encrypted this secret under it (review finding L3).
        // Retryable (503 `service_unavailable`: the next attempt may land on a new instance), not
        // a 500, and the code is not judged: no step, no rewrite.
        if !keys.knows(&self.key_id) {
            return Err(ApiError::ServiceUnavailable(anyhow::anyhow!(
                "a TOTP secret is under a key this instance does not hold yet (key rotation in progress)"
            )));
        }
        let secret = keys.decrypt(&self.key_id, user_id, &self.ciphertext)?;
        let step = totp::matching_step(&secret, code.expose_secret().trim(), now_secs());
        let rekey = match step {
            Some(_) => keys.rekey(user_id, &self.key_id, &self.ciphertext, &secret)?,
            None => None,
        };
        Ok(Checked { step, rekey })
    }

    /// [`check`](Self::check) as the statements take it; no step is 400 `invalid_mfa_code`.
    fn accepted_step(&self, keys: &MfaKeys, user_id: Uuid, code: &SecretString) -> ApiResult<(i64, Option<Rekey>)> {
        let checked = self.check(keys, user_id, code)?;
        let step = checked.step.ok_or(INVALID_MFA_CODE)?;
        Ok((step_param(step)?, checked.rekey))
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
pub fn step_param(step: u64) -> ApiResult<i64> {
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
    check_mfa_route_password(
        state,
        caller.user_id,
        &account.user.email,
        body.password,
        account.password_hash,
    )
    .await?;
    // With the second factor on, a right password alone must not give the code guesses back
    // (the signed-in routes' wrong codes count against the login budget): refuse first.
    if account.totp.as_ref().is_some_and(|t| t.enabled) {
        return Err(MFA_ALREADY_ENABLED);
    }
    reset_login_budget(state, &account.user.email).await?;
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
    let (step, rekey) = stored.accepted_step(keys, caller.user_id, &body.code)?;
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
    if !locked_change(state, caller.user_id, &sql, &params, rekey.as_ref()).await? {
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
    let (step, rekey) = stored.accepted_step(keys, caller.user_id, &body.code)?;
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
    let params: [(&(dyn ToSql + Sync), Type); 4] = [
        (&caller.session_id, Type::UUID),
        (&caller.user_id, Type::UUID),
        (&step, Type::INT8),
        (&hashes, Type::BYTEA_ARRAY),
    ];
    if !in_transaction(state, &sql, &params, rekey.as_ref()).await? {
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
    // The password check counts against the account's budget of them first (never reset by a
    // success), then against the login budget.
    check_mfa_route_password(
        state,
        caller.user_id,
        &account.user.email,
        body.password,
        account.password_hash,
    )
    .await?;
    let stored = account.totp.filter(|t| t.enabled).ok_or(MFA_NOT_ENABLED)?;
    // The row goes away: nothing to seal again.
    let (step, _) = stored.accepted_step(keys, caller.user_id, &body.code)?;
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
    if !locked_change(state, caller.user_id, &sql, &params, None).await? {
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
/// row, finds `mfa_enabled` changed and opens no password-only session. Then `rekey`, if any, in
/// the same transaction. Whether `sql` returned a row (committed only then).
async fn locked_change(
    state: &AppState,
    user_id: Uuid,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
    rekey: Option<&Rekey>,
) -> ApiResult<bool> {
    let settings = &state.config.db;
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        store::users::lock_user_for_update(&tx, settings, user_id).await?;
        let rows = db::run(&tx, settings, sql, params).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        if let Some(rekey) = rekey {
            store::mfa_key::rekey(&tx, settings, rekey).await?;
        }
        tx.commit().await?;
        Ok(true)
    })
    .await
}

/// Run `sql` (a statement that returns a row when it did its work) and then `rekey`, if any, in
/// one transaction: the secret is sealed under the current key by the use that read it, or not at
/// all. Whether `sql` returned a row (committed only then).
async fn in_transaction(
    state: &AppState,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
    rekey: Option<&Rekey>,
) -> ApiResult<bool> {
    let settings = &state.config.db;
    db::bounded(&state.pool, settings, async |client| {
        let tx = client.transaction().await?;
        let rows = db::run(&tx, settings, sql, params).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        if let Some(rekey) = rekey {
            store::mfa_key::rekey(&tx, settings, rekey).await?;
        }
        tx.commit().await?;
        Ok(true)
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
