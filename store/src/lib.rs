//! The data functions' room: the database (pool, TLS policy, migrations, the "live caller" SQL),
//! rate limits, users and sessions, passwords (argon2id), the handler state and the one start-up
//! path. Nothing here is reachable from the authorizer or the JWKS function.
//!
//! Module tree (each arrow an import; no cycle):
//!
//! ```text
//! lib ─┬─ email      the canonical form of an address
//!      ├─ password   policy and argon2id hashing ─▶ email
//!      ├─ mfa_key    AES-256-GCM encryption of TOTP secrets at rest
//!      ├─ db         pool, TLS, migrations, statements, the live caller ─▶ email
//!      ├─ ratelimit  counters in PostgreSQL ─▶ db, email
//!      ├─ events     the security event log ─▶ db
//!      ├─ state      AppState ─▶ password, mfa_key
//!      ├─ users      users, sessions, refresh tokens, token responses ─▶ db, email, state
//!      └─ startup    settings → secrets → pool → state ─▶ db, state
//! ```

pub mod db;
pub mod email;
pub mod events;
pub mod mfa_key;
pub mod password;
pub mod ratelimit;
pub mod startup;
pub mod state;
pub mod users;

pub use state::AppState;
