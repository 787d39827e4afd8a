//! Access tokens and permissions: what the authorizer and the JWKS function need, and nothing
//! more. No database, password or rate-limit code lives here or below (a test runs `cargo tree`
//! on the authorizer and the JWKS function to keep it so).
//!
//! Module tree (each arrow an import; no cycle):
//!
//! ```text
//! lib ─┬─ roles    Role, the permission table (route → who may call it), policy resources
//!      ├─ tokens   JWT signing and verification, key sets, JWKS, Bearer parsing ─▶ roles
//!      └─ keys     loading keys from the environment or Secrets Manager ─▶ tokens
//! ```

pub mod keys;
pub mod roles;
pub mod tokens;
