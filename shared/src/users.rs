//! Users and sessions: what signup, login, refresh and the account functions share.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::config::DbSettings;
use crate::db::{self, Transaction};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::roles::Role;
use crate::state::AppState;
use crate::tokens::{hash_refresh_token, new_refresh_token};

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

/// Longest email accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// The one canonical form of an email: what lookup, uniqueness (`users.email_canonical`, unique)
/// and every rate-limit key use, computed here and nowhere else (PostgreSQL's `lower()` follows
/// the database's locale and disagrees with Rust on letters such as U+0130, so SQL never
/// compares emails itself).
///
/// Trimmed (Unicode white space), NFKC (fullwidth `ｖ` is `v`, `ﬁ` is `fi`), then Unicode full
/// default case folding rather than lower-casing: lower-casing is contextual (a capital sigma at
/// the end of a word becomes the final `ς`, elsewhere `σ`), folding maps `Σ`, `σ` and `ς` alike to
/// `σ` (and `ß` to `ss`, the Kelvin sign to `k`). Folding turns `İ` (U+0130) into `i` + U+0307
/// COMBINING DOT ABOVE; that dot is dropped after a soft-dotted `i` or `j`, where it adds nothing
/// visible, so `vİctim` is `victim`: the spelling a Turkish keyboard produces for `VICTIM` in
/// capitals is the same account. The steps repeat until nothing changes (at most a few rounds),
/// so the form is idempotent: `canonical_email(canonical_email(x)) == canonical_email(x)`.
pub fn canonical_email(raw: &str) -> String {
    let mut current = raw.to_owned();
    for _ in 0..4 {
        let next = canonical_step(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn canonical_step(s: &str) -> String {
    let nfkc: String = s.trim().nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    let mut out = String::with_capacity(folded.len());
    let mut previous = None;
    for c in folded.chars() {
        if c == '\u{307}' && matches!(previous, Some('i' | 'j')) {
            continue;
        }
        out.push(c);
        previous = Some(c);
    }
    out.nfkc().collect::<String>().trim().to_owned()
}

/// Trim and check an email. The stored address keeps the user's spelling; comparisons go through
/// [`canonical_email`].
pub fn normalize_email(raw: &str) -> Result<String, FieldError> {
    let email = raw.trim();
    let invalid = || FieldError::new("email", "invalid_email", "This is not a valid email address.");
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || email.chars().any(char::is_control) {
        return Err(invalid());
    }
    let parsed = email_address::EmailAddress::parse_with_options(
        email,
        email_address::Options::default()
            .without_display_text()
            .without_domain_literal(),
    )
    .map_err(|_| invalid())?;
    // A deliverable address has a dot in its domain; `user@localhost` is not one.
    if !parsed.domain().contains('.') || parsed.domain().ends_with('.') {
        return Err(invalid());
    }
    // The canonical form is what identifies the account: it must fit the same bound.
    let canonical = canonical_email(email);
    if canonical.is_empty() || canonical.len() > MAX_EMAIL_LEN {
        return Err(invalid());
    }
    Ok(email.to_owned())
}

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

/// A new session and its first refresh token, as returned to the client.
pub struct NewSession {
    pub session_id: Uuid,
    pub refresh_token: SecretString,
}

/// The SQL that creates a session for the user in CTE `source` (a CTE with an `id` column and at
/// most one row; none means no session is made) and stores its first refresh token's hash, as CTEs
/// to put after a statement's `WITH`. Parameters: session id, refresh hash, idle and absolute
/// lifetimes in seconds, at positions `first..first + 4`.
pub fn session_ctes(source: &str, first: usize) -> String {
    let (sid, hash, idle, abs) = (first, first + 1, first + 2, first + 3);
    format!(
        "new_session AS (
            INSERT INTO sessions (id, user_id, idle_expires_at, absolute_expires_at)
            SELECT ${sid}, src.id, now() + ${idle} * interval '1 second', now() + ${abs} * interval '1 second'
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
}

impl SessionParams {
    pub fn new(state: &AppState) -> ApiResult<Self> {
        let refresh_token = new_refresh_token()?;
        let refresh_hash = hash_refresh_token(&refresh_token);
        Ok(Self {
            session_id: Uuid::now_v7(),
            refresh_token,
            refresh_hash,
            idle_secs: state.config.session_idle_timeout.as_secs() as i64,
            absolute_secs: state.config.session_absolute_lifetime.as_secs() as i64,
        })
    }

    pub fn types() -> [Type; 4] {
        [Type::UUID, Type::BYTEA, Type::INT8, Type::INT8]
    }

    pub fn into_session(self) -> NewSession {
        NewSession {
            session_id: self.session_id,
            refresh_token: self.refresh_token,
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
    let issued = state.tokens.issue(user_id, session.session_id, role)?;
    let body = TokenResponse {
        user,
        access_token: issued.token.expose_secret(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: session.refresh_token.expose_secret(),
    };
    Ok(crate::http::json_response(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").ok(),
            Some("Alice@Example.COM".to_owned())
        );
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
            "Alice <a@example.com>",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn one_canonical_form_per_email() {
        let same = [
            "victim@example.com",
            "  VICTIM@Example.COM\t",
            "v\u{130}ctim@example.com",
            "V\u{130}CT\u{130}M@EXAMPLE.COM",
            "vi\u{307}ctim@example.com",
            "ｖｉｃｔｉｍ@ｅｘａｍｐｌｅ.ｃｏｍ",
            "\u{3000}victim@example.com\u{3000}",
        ];
        for email in same {
            assert_eq!(canonical_email(email), "victim@example.com", "{email:?}");
        }
        // Final sigma, capital sigma and sigma are one letter.
        let sigma = canonical_email("οδυσσευσ@example.gr");
        for email in ["ΟΔΥΣΣΕΥΣ@EXAMPLE.GR", "οδυσσευς@example.gr", "ΟΔΥΣΣΕΥς@example.gr"] {
            assert_eq!(canonical_email(email), sigma, "{email:?}");
        }
        assert_eq!(canonical_email("STRASSE@x.de"), canonical_email("straße@x.de"));
        assert_eq!(canonical_email("\u{212A}elvin@x.com"), "kelvin@x.com");
        // Different letters stay different: the dotless ı is not i.
        assert_ne!(canonical_email("v\u{131}ctim@example.com"), "victim@example.com");
    }

    #[test]
    fn the_canonical_form_is_idempotent() {
        for email in [
            "v\u{130}ctim@example.com",
            "ΟΔΥΣΣΕΥΣ@EXAMPLE.GR",
            "\u{1E9E}@x.com",
            "\u{FB03}\u{2160}\u{0345}@x.com",
            "\u{1FC3}\u{0399}\u{0308}\u{0301}@x.com",
            " ＡＢＣ\u{212B}@x.com ",
        ] {
            let once = canonical_email(email);
            assert_eq!(canonical_email(&once), once, "{email:?}");
        }
    }
}
