//! One test binary for every integration and end-to-end test (faster to link than one per file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod authorizer_events;
mod database;
mod db_path;
mod e2e_admin;
mod e2e_auth;
mod e2e_events;
mod e2e_limits;
mod e2e_mfa;
mod e2e_quota;
mod e2e_recovery;
mod e2e_security;
mod e2e_sessions;
mod e2e_tasks;
mod handler_events;
mod review_fixes;
mod rotation;
mod route_tables;
mod second_process;
mod secrets_emulator;
mod ses_emulator;
mod template;
mod tokens;
mod trust_boundary;
