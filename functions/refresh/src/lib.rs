//! `POST /auth/refresh`: rotate a refresh token.
//!
//! The presented token is consumed and a successor issued in one statement, so a session is never
//! half-rotated. Of concurrent refreshes with one token exactly one wins: the others wait on the
//! row lock, then find it consumed. A consumed token presented again within the grace window (a
//! client retrying a lost response) is refused without harm; after it, it is treated as stolen and
//! the whole session is revoked (reuse detection), its newest token included.

use access::roles::Role;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::LazyLock;
use store::users::{NewSession, token_response};
use store::users::{hash_refresh_token, new_refresh_token};
use store::{AppState, db};

use store::events::{self, Event, EventType, Origin, Sources};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::error::{ApiError, ApiResult};
use web::http::{RequestBody, client_ip, parse_json, respond};

/// Longest refresh token looked up (ours are 43 characters).
const MAX_REFRESH_TOKEN_LEN: usize = 512;

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: SecretString,
}

impl RequestBody for RefreshBody {
    const FIELDS: &'static [&'static str] = &["refresh_token"];
}

pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    respond(refresh(state, req).await)
}

/// Consume the presented token only if its session is live (a dead session's token is refused
/// and left as it is), add the successor and slide the idle expiry, in one statement.
const ROTATE: &str = "
WITH consumed AS (
        UPDATE refresh_tokens rt SET consumed_at = now()
          FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE rt.token_hash = $1 AND rt.consumed_at IS NULL
           AND s.id = rt.session_id
           AND s.revoked_at IS NULL AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
           AND NOT u.disabled
        RETURNING s.id, s.user_id, u.role, s.mfa),
     successor AS (
        INSERT INTO refresh_tokens (token_hash, session_id) SELECT $2, id FROM consumed),
     touched AS (
        -- Sliding idle expiry, never past the absolute lifetime.
        UPDATE sessions s
           SET last_refreshed_at = now(),
               -- At most once a minute, like the data requests' tracking (db::LIVE_CALLER).
               last_used_at = CASE WHEN s.last_used_at < now() - interval '1 minute' THEN now()
                                   ELSE s.last_used_at END,
               idle_expires_at = LEAST(now() + $3 * interval '1 second', s.absolute_expires_at)
          FROM consumed c WHERE s.id = c.id)
SELECT id, user_id, role, mfa FROM consumed";

/// Only run when rotation found nothing: unknown, or consumed earlier (by whom, and when?). A
/// reuse revokes the session and records `refresh_reuse_detected` (parameters from `$3`) in the
/// same statement.
static CLASSIFY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
WITH presented AS (
        SELECT session_id, consumed_at < now() - $2 * interval '1 second' AS reused
          FROM refresh_tokens WHERE token_hash = $1),
     revoked AS (
        UPDATE sessions s SET revoked_at = now(), revoked_reason = 'refresh_token_reused'
          FROM presented p
         WHERE s.id = p.session_id AND p.reused AND s.revoked_at IS NULL
        RETURNING s.id, s.user_id),
     {}
SELECT p.reused, r.user_id, r.id AS session_id FROM presented p LEFT JOIN revoked r ON true",
        events::cte(
            "reuse_event",
            3,
            "revoked r",
            Sources {
                user_id: "r.user_id",
                session_id: "r.id",
                ..Sources::default()
            }
        )
    )
});

#[tracing::instrument(name = "refresh", skip_all)]
async fn refresh(state: &AppState, req: Request) -> ApiResult<Response<Body>> {
    let body: RefreshBody = parse_json(&req)?;
    let presented = body.refresh_token;
    if presented.expose_secret().is_empty() || presented.expose_secret().len() > MAX_REFRESH_TOKEN_LEN {
        return Err(ApiError::InvalidRefreshToken);
    }
    let presented_hash = hash_refresh_token(&presented);
    // Per client address first (every attempt, whatever the token: guesses that match no row
    // count too), then per session of the presented token, in one statement.
    let limits = &state.config.rate_limits;
    store::ratelimit::hit_refresh(
        &state.pool,
        &state.config.db,
        &store::ratelimit::ip_key(client_ip(&req)),
        &presented_hash,
        limits.refreshes_per_ip,
        limits.refreshes_per_session,
    )
    .await?;
    let successor = new_refresh_token()?;
    let successor_hash = hash_refresh_token(&successor);
    let idle = state.config.session_idle_timeout.as_secs() as i64;
    let (pool, settings) = (&state.pool, &state.config.db);

    let rows = db::query(
        pool,
        settings,
        ROTATE,
        &[
            (&presented_hash, Type::BYTEA),
            (&successor_hash, Type::BYTEA),
            (&idle, Type::INT8),
        ],
    )
    .await?;
    if let Some(row) = rows.first() {
        let session_id: Uuid = row.try_get("id")?;
        let user_id: Uuid = row.try_get("user_id")?;
        let role: String = row.try_get("role")?;
        let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role in database"))?;
        tracing::info!(%user_id, %session_id, "refresh token rotated");
        // The session keeps how it was made: `amr` survives every refresh.
        let session = NewSession {
            session_id,
            refresh_token: successor,
            mfa: row.try_get("mfa")?,
        };
        return token_response(state, None, user_id, role, &session, StatusCode::OK).await;
    }

    let grace = state.config.refresh_reuse_grace.as_secs() as i64;
    let origin = Origin::of(&req);
    let mut event = Event::new(EventType::RefreshReuseDetected, &origin);
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&presented_hash, Type::BYTEA), (&grace, Type::INT8)];
    params.extend(event.params());
    let rows = db::query(pool, settings, &CLASSIFY, &params).await?;
    let row = rows.first();
    if let Some(session_id) = row
        .map(|r| r.try_get::<_, Option<Uuid>>("session_id"))
        .transpose()?
        .flatten()
    {
        event.session_id = Some(session_id);
        event.user_id = row.map(|r| r.try_get("user_id")).transpose()?.flatten();
        events::log(&event);
    }
    match row
        .map(|r| r.try_get::<_, Option<bool>>("reused"))
        .transpose()?
        .flatten()
    {
        Some(true) => {
            tracing::warn!("refresh token reused after the grace window: session revoked");
            Err(ApiError::RefreshTokenReused)
        }
        // Unknown, consumed within the grace window, or belonging to a dead session.
        _ => Err(ApiError::InvalidRefreshToken),
    }
}
