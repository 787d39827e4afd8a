//! Users and sessions: what signup, login, refresh and the account functions share.

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use access::roles::Role;
use settings::DbSettings;
use web::error::{ApiError, ApiResult};

use crate::db::{self, Transaction};
use crate::events::Origin;
use crate::state::AppState;

/// The public view of a user: `{id, email, role, created_at, email_verified}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub email_verified: bool,
}

impl User {
    /// From a row with columns `id, email, role, created_at, email_verified`.
    pub fn from_row(row: &Row) -> ApiResult<Self> {
        let role: String = row.try_get("role")?;
        Ok(User {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role in database"))?,
            created_at: row.try_get("created_at")?,
            email_verified: row.try_get("email_verified")?,
        })
    }
}

pub use crate::email::{MAX_EMAIL_LEN, canonical_email, normalize_email};

/// 409 `last_admin`: the change would leave no active (enabled) admin.
pub const LAST_ADMIN: ApiError = ApiError::Conflict {
    code: "last_admin",
    detail: "This change would leave no active admin.",
};

/// Lock the rows of every active admin, in id order, for the rest of the transaction, and return
/// their ids. Every change that could remove the last active admin (an admin's demotion,
/// disabling or deletion, and an admin deleting its own account) takes these locks first and in
/// the same order, so two such changes cannot both see "another admin is left" and no two of
/// them deadlock.
pub async fn lock_active_admins(tx: &Transaction<'_>, settings: &DbSettings) -> ApiResult<Vec<Uuid>> {
    let rows = db::run(
        tx,
        settings,
        "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE",
        &[],
    )
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// Lock user `id`'s row (`FOR UPDATE`) for the rest of the transaction, in a statement of its
/// own. Every change that must not race a login's session step (a password change or reset,
/// turning the second factor on or off) takes it first: a login whose session statement holds
/// the row (share lock) finishes before, and the change's later statements (new snapshots) see
/// and revoke the session it made; a login reaching its session step after this waits, then
/// re-reads the changed row and opens none.
pub async fn lock_user_for_update(tx: &Transaction<'_>, settings: &DbSettings, id: Uuid) -> ApiResult<()> {
    db::run(
        tx,
        settings,
        "SELECT id FROM users WHERE id = $1 FOR UPDATE",
        &[(&id, Type::UUID)],
    )
    .await?;
    Ok(())
}

/// A fresh refresh token: 256 random bits, URL-safe; only its SHA-256 is stored.
pub fn new_refresh_token() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// The stored form of a refresh token. A fast hash is right here: the token has 256 bits of
/// entropy, so there is nothing to brute-force, and lookups must be cheap.
pub fn hash_refresh_token(token: &SecretString) -> Vec<u8> {
    Sha256::digest(token.expose_secret().as_bytes()).to_vec()
}

/// A new session and its first refresh token, as returned to the client.
pub struct NewSession {
    pub session_id: Uuid,
    pub refresh_token: SecretString,
    /// Made with a second factor: its access tokens say `amr: ["pwd", "otp"]`.
    pub mfa: bool,
}

/// The SQL that creates a session for the user in CTE `source` (a CTE with an `id` column and at
/// most one row; none means no session is made) and stores its first refresh token's hash, as CTEs
/// to put after a statement's `WITH`. Parameters: session id, refresh hash, idle and absolute
/// lifetimes in seconds, the client address and user agent, at positions `first..first + 6`.
pub fn session_ctes(source: &str, first: usize) -> String {
    session_ctes_made(source, first, false)
}

/// [`session_ctes`] for a session made with a second factor (`mfa`) or not: the flag is part of
/// the statement text (two constant statements), not a parameter.
pub fn session_ctes_made(source: &str, first: usize, mfa: bool) -> String {
    let (sid, hash, idle, abs, ip, ua) = (first, first + 1, first + 2, first + 3, first + 4, first + 5);
    format!(
        "new_session AS (
            INSERT INTO sessions (id, user_id, idle_expires_at, absolute_expires_at, ip, user_agent, mfa)
            SELECT ${sid}, src.id, now() + ${idle} * interval '1 second', now() + ${abs} * interval '1 second',
                   ${ip}, ${ua}, {mfa}
              FROM {source} src
            RETURNING id),
         new_refresh AS (
            INSERT INTO refresh_tokens (token_hash, session_id) SELECT ${hash}, id FROM new_session)"
    )
}

/// Values for [`session_ctes`]' parameters.
pub struct SessionParams {
    pub session_id: Uuid,
    pub refresh_token: SecretString,
    pub refresh_hash: Vec<u8>,
    pub idle_secs: i64,
    pub absolute_secs: i64,
    /// Where the session was opened (shown by `GET /auth/sessions`).
    pub origin: Origin,
}

impl SessionParams {
    pub fn new(state: &AppState, origin: &Origin) -> ApiResult<Self> {
        let refresh_token = new_refresh_token()?;
        let refresh_hash = hash_refresh_token(&refresh_token);
        Ok(Self {
            session_id: Uuid::now_v7(),
            refresh_token,
            refresh_hash,
            idle_secs: state.config.session_idle_timeout.as_secs() as i64,
            absolute_secs: state.config.session_absolute_lifetime.as_secs() as i64,
            origin: origin.clone(),
        })
    }

    /// [`session_ctes`]' parameters, in order.
    pub fn params(&self) -> [(&(dyn ToSql + Sync), Type); 6] {
        [
            (&self.session_id, Type::UUID),
            (&self.refresh_hash, Type::BYTEA),
            (&self.idle_secs, Type::INT8),
            (&self.absolute_secs, Type::INT8),
            (&self.origin.ip, Type::TEXT),
            (&self.origin.user_agent, Type::TEXT),
        ]
    }

    pub fn into_session(self) -> NewSession {
        NewSession {
            session_id: self.session_id,
            refresh_token: self.refresh_token,
            mfa: false,
        }
    }
}

/// The body of signup, login and refresh answers.
#[derive(Serialize)]
pub struct TokenResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a User>,
    pub access_token: &'a str,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: &'a str,
}

/// Issue the access token for a session and build the token response.
pub async fn token_response(
    state: &AppState,
    user: Option<&User>,
    user_id: Uuid,
    role: Role,
    session: &NewSession,
    status: http::StatusCode,
) -> ApiResult<lambda_http::Response<lambda_http::Body>> {
    // Sign with the current key: reload it first if the cache is stale (key rotation).
    state.tokens.refresh_if_stale().await;
    let issued = state
        .tokens
        .issue_with_amr(user_id, session.session_id, role, session.mfa)?;
    let body = TokenResponse {
        user,
        access_token: issued.token.expose_secret(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: session.refresh_token.expose_secret(),
    };
    Ok(web::http::json_response(status, &body))
}

/// Verify the account's password. Guesses here share the account's login budget, so a stolen
/// access token cannot be used to brute-force the password. A right password resets the budget.
pub async fn check_password(state: &AppState, email: &str, password: SecretString, stored: String) -> ApiResult<()> {
    check_password_counted(state, email, password, stored).await?;
    reset_login_budget(state, email).await
}

/// [`check_password`] without the reset after a right password: for a route that checks a
/// second factor too (`DELETE /auth/mfa/totp`), whose attempt is this one count, and which resets
/// the budget ([`reset_login_budget`]) only once both are right.
pub async fn check_password_counted(
    state: &AppState,
    email: &str,
    password: SecretString,
    stored: String,
) -> ApiResult<()> {
    count_login_attempt(state, email).await?;
    if !state.passwords.verify(password, Some(stored)).await?.matches {
        return Err(ApiError::InvalidCredentials);
    }
    Ok(())
}

/// A password check on a signed-in MFA route (enrolment, turning it off), without the reset after
/// a right password. Counted before the hash, in one statement: first against the account's
/// budget of such checks (`RATE_MFA_PASSWORD`, keyed by user id, right or wrong, never reset by a
/// success: the argon2 work one signed-in account can cause is bounded even with the right
/// password), then, only within it, against the login budget ([`count_login_attempt`]'s). 429
/// with `Retry-After` once over either; a refusal by the first does not count against the second.
pub async fn check_mfa_route_password(
    state: &AppState,
    user_id: Uuid,
    email: &str,
    password: SecretString,
    stored: String,
) -> ApiResult<()> {
    let user_key = user_id.to_string();
    let account_key = crate::ratelimit::email_key(email);
    let limits = &state.config.rate_limits;
    let refused = crate::ratelimit::hit_in_turn(
        &state.pool,
        &state.config.db,
        crate::ratelimit::Counter {
            bucket: crate::ratelimit::Bucket::MfaPasswordAccount,
            key: &user_key,
            limit: limits.mfa_password_per_account,
        },
        crate::ratelimit::Counter {
            bucket: crate::ratelimit::Bucket::LoginAccount,
            key: &account_key,
            limit: limits.login_failures_per_account,
        },
    )
    .await?;
    if let Some(refused) = refused {
        return Err(refused.error);
    }
    if !state.passwords.verify(password, Some(stored)).await?.matches {
        return Err(ApiError::InvalidCredentials);
    }
    Ok(())
}

/// Count one attempt against the account's login budget (the bucket login failures count in),
/// before the secret is compared: 429 with `Retry-After` once over it. An atomic upsert, so
/// concurrent attempts cannot slip past the limit.
pub async fn count_login_attempt(state: &AppState, email: &str) -> ApiResult<()> {
    crate::ratelimit::hit(
        &state.pool,
        &state.config.db,
        crate::ratelimit::Bucket::LoginAccount,
        &crate::ratelimit::email_key(email),
        state.config.rate_limits.login_failures_per_account,
    )
    .await
}

/// Forget the account's login failures (after a right password, or a right password and code).
pub async fn reset_login_budget(state: &AppState, email: &str) -> ApiResult<()> {
    crate::ratelimit::reset(
        &state.pool,
        &state.config.db,
        crate::ratelimit::Bucket::LoginAccount,
        &crate::ratelimit::email_key(email),
    )
    .await
}
