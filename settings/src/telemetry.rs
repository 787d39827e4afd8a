//! Logging. JSON lines in Lambda (CloudWatch), compact text locally; level from `RUST_LOG`
//! (`info` when unset; a value that is not a valid filter stops start-up like any bad setting).
//! Secrets never reach a log line: they are `secrecy` types, and handlers `skip` them in spans.
//!
//! `RUST_LOG` takes comma-separated `level` and `target=level` directives (`warn`,
//! `info,store=debug`): tracing-subscriber's `Targets`, not `EnvFilter`. `EnvFilter`'s span and
//! field directives (`[span{field=value}]=debug`) are refused at start-up; in exchange no binary
//! carries the regex engine `EnvFilter` needs for them.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::ConfigError;

pub fn init() -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Err(std::env::VarError::NotPresent) => filter(None)?,
        Ok(raw) => filter(Some(&raw))?,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError {
                problems: vec!["RUST_LOG: not valid UTF-8".into()],
            });
        }
    };
    // Set by the Lambda runtime itself: its presence, not its value, says where we run.
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_target(false);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if in_lambda {
        builder
            .json()
            .with_current_span(false)
            .without_time()
            .with_ansi(false)
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder.compact().finish().with(filter).try_init()
    };
    Ok(())
}

/// The filter `RUST_LOG` asks for: `info` when unset or blank. Checked here, strictly, rather
/// than by `Targets`' own parser, which takes any word that is not a level for a target name: a typo
/// such as `RUST_LOG=wran` would silently turn every log line off.
fn filter(raw: Option<&str>) -> Result<Targets, ConfigError> {
    let raw = raw.map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Ok(Targets::new().with_default(LevelFilter::INFO));
    }
    let mut targets = Targets::new();
    let mut problems = Vec::new();
    for directive in raw.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        // `LevelFilter` reads an empty string as `off`: `info,` must not turn anything off.
        let level = match level {
            "" => None,
            level => level.parse::<LevelFilter>().ok(),
        };
        match (target, level) {
            (None, Some(level)) => targets = targets.with_default(level),
            (Some(target), Some(level)) if is_target(target) => targets = targets.with_target(target, level),
            _ => problems.push(format!(
                "RUST_LOG: `{directive}` is not a `level` or `target=level` directive (levels: off, error, warn, info, debug, trace)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(ConfigError { problems })
    }
}

/// A module path such as `store` or `store::db`.
fn is_target(s: &str) -> bool {
    !s.is_empty()
        && s.split("::")
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_takes_levels_and_targets_and_refuses_anything_else() -> Result<(), ConfigError> {
        assert_eq!(filter(None)?.default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter(Some("  "))?.default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter(Some("warn"))?.default_level(), Some(LevelFilter::WARN));
        let mixed = filter(Some("warn, store::db=debug,tokio_postgres=off"))?;
        assert_eq!(mixed.default_level(), Some(LevelFilter::WARN));
        let mut pairs: Vec<(String, LevelFilter)> = mixed.iter().map(|(t, l)| (t.to_owned(), l)).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            pairs,
            vec![
                ("store::db".to_owned(), LevelFilter::DEBUG),
                ("tokio_postgres".to_owned(), LevelFilter::OFF)
            ]
        );
        for bad in [
            "wran",
            "info,",
            "store=loud",
            "=debug",
            "[span]=debug",
            "store[{user}]=debug",
            "a=b=c",
        ] {
            let problems = filter(Some(bad)).err().map(|e| e.problems).unwrap_or_default();
            assert!(
                problems.iter().any(|p| p.starts_with("RUST_LOG: `")),
                "{bad}: {problems:?}"
            );
        }
        // Every bad directive is named, not only the first.
        let problems = filter(Some("wran,store=loud"))
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert_eq!(problems.len(), 2, "{problems:?}");
        Ok(())
    }
}
