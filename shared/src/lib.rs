//! The common crate every function uses. It knows nothing about which function calls it.

pub mod auth;
pub mod config;
pub mod cursor;
pub mod db;
pub mod error;
pub mod http;
pub mod lambda;
pub mod password;
pub mod ratelimit;
pub mod roles;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod tokens;
pub mod users;

pub use error::{ApiError, ApiResult};
pub use state::AppState;
