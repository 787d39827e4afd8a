//! Logging. JSON lines in Lambda (CloudWatch), compact text locally; level from `RUST_LOG`
//! (`info` when unset; a value that is not a valid filter stops start-up like any bad setting).
//! Secrets never reach a log line: they are `secrecy` types, and handlers `skip` them in spans.

use tracing_subscriber::EnvFilter;

use crate::ConfigError;

pub fn init() -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Err(std::env::VarError::NotPresent) => EnvFilter::new("info"),
        Ok(raw) if raw.trim().is_empty() => EnvFilter::new("info"),
        Ok(raw) => EnvFilter::try_new(&raw).map_err(|e| ConfigError {
            problems: vec![format!("RUST_LOG: not a valid log filter ({e})")],
        })?,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError {
                problems: vec!["RUST_LOG: not valid UTF-8".into()],
            });
        }
    };
    // Set by the Lambda runtime itself: its presence, not its value, says where we run.
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if in_lambda {
        builder
            .json()
            .with_current_span(false)
            .without_time()
            .with_ansi(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    Ok(())
}
