//! The mail outbox, as the request paths see it: each request that should end in a message
//! records one job (a row of `mail_outbox`, migrations/V7) and answers. Nothing here resolves
//! an account, makes a token or talks to a mail service: that is the sender step
//! (`mail_sender`), so a request's work and timing do not depend on what the job will find.

use sha2::{Digest, Sha256};

/// `mail_outbox.kind` of a forgot-password job.
pub const PASSWORD_RESET: &str = "password_reset";
/// `mail_outbox.kind` of a verification job.
pub const EMAIL_VERIFICATION: &str = "email_verification";

/// Queue a forgot-password job for the canonical email `$13`, whether or not it has an account,
/// when the rate limits allow (`{within}`; see `store::ratelimit::hit_in_turn_then`, which runs
/// the limits and this insert as one statement: one round trip, one commit). The same statement
/// for every email.
pub const ENQUEUE_PASSWORD_RESET: &str =
    "INSERT INTO mail_outbox (kind, email_canonical) SELECT 'password_reset', $13 WHERE {within} RETURNING id";

/// Queue a verification message for the user `$1`.
pub const ENQUEUE_VERIFICATION: &str =
    "INSERT INTO mail_outbox (kind, user_id) VALUES ('email_verification', $1) RETURNING id";

/// A CTE (to put after a statement's `WITH`) that queues a verification message for the user in
/// CTE `source` (with an `id` column): signup queues it in the statement that makes the account.
pub fn verification_cte(source: &str) -> String {
    format!(
        "verification_mail AS (
            INSERT INTO mail_outbox (kind, user_id) SELECT 'email_verification', id FROM {source})"
    )
}

/// What is stored of a reset or verification token: its SHA-256 (the token has 256 random bits,
/// so no salt or slow hash is needed: nothing can be guessed from the digest).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
