//! The HTTP edge every HTTP function shares: the one error type and the one place it becomes
//! RFC 9457 problem+json, request parsing and limits, keyset cursors, who the caller is, and
//! running a handler in Lambda. No database driver (see `error` for the one optional bridge).
//!
//! Module tree (each arrow an import; no cycle):
//!
//! ```text
//! lib ─┬─ response  JSON bodies and standard headers
//!      ├─ error     ApiError → problem+json ─▶ response
//!      ├─ http      request parsing and limits ─▶ error, response
//!      ├─ cursor    keyset pagination ─▶ error, http
//!      ├─ auth      the caller: authorizer context, or the token itself ─▶ error
//!      └─ lambda    serving a handler
//! ```

pub mod auth;
pub mod cursor;
pub mod error;
pub mod http;
pub mod lambda;
pub mod response;

pub use error::{ApiError, ApiResult};
