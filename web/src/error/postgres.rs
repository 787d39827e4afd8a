//! Database errors as HTTP outcomes (compiled with the `postgres` feature only; see `error`).

use super::ApiError;

/// The constraint that makes emails unique through their canonical form (see
/// migrations/V3__canonical_email.sql and `users::canonical_email`).
pub const EMAIL_UNIQUE_CONSTRAINT: &str = "users_email_canonical_key";

/// The uniqueness rule before V3 (`lower(email)`), kept until the canonical backfill has filled
/// every row (see `db::backfill_canonical_emails`): a violation is the same 409.
pub const LEGACY_EMAIL_UNIQUE_CONSTRAINT: &str = "users_email_lower_key";

impl From<tokio_postgres::Error> for ApiError {
    /// Map database errors: known constraint violations become client errors; a lost or refused
    /// connection or a statement timeout becomes 503; anything else is a 500 with the cause logged.
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNIQUE_VIOLATION
                && matches!(
                    db.constraint(),
                    Some(EMAIL_UNIQUE_CONSTRAINT | LEGACY_EMAIL_UNIQUE_CONSTRAINT)
                )
            {
                return ApiError::EmailTaken;
            }
            let unavailable = code.code().starts_with("08")
                || *code == SqlState::QUERY_CANCELED
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                // A pooled server session lost a prepared statement, or already has one of that
                // name: proof that a pooler moved this connection (see `db::run`); inside a
                // transaction it cannot be retried there, but the request can be: retryable.
                || *code == SqlState::INVALID_SQL_STATEMENT_NAME
                || *code == SqlState::DUPLICATE_PSTATEMENT;
            // Log the SQLSTATE, constraint and message only: a DbError's `detail` can quote a
            // whole failing row, password hash included.
            let summary = anyhow::anyhow!(
                "database error {}: {} (constraint: {:?})",
                code.code(),
                db.message(),
                db.constraint()
            );
            return if unavailable {
                ApiError::ServiceUnavailable(summary)
            } else {
                ApiError::Internal(summary)
            };
        }
        // No DbError: the connection is closed or broke, or the server could not be reached.
        ApiError::ServiceUnavailable(anyhow::Error::new(err).context("database connection failed"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => ApiError::ServiceUnavailable(anyhow::anyhow!("database pool: {other}")),
        }
    }
}
