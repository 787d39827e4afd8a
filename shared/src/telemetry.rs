//! Logging. JSON lines in Lambda (CloudWatch), compact text locally; level from `RUST_LOG`.
//! Secrets never reach a log line: they are `secrecy` types, and handlers `skip` them in spans.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
}
