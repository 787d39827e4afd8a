//! Reading variables: every problem is collected, and reported together by [`EnvReader::finish`].
//! Unset and empty are the same. Every default is written where the variable is read (the
//! sections in `lib.rs`) and listed in the README's configuration table.

use std::time::Duration;

use secrecy::SecretString;

/// Every problem found, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + Send + Sync + 'a>;

/// Reads variables through a lookup function, so tests can pass a map instead of the process env.
pub struct EnvReader<'a> {
    lookup: Lookup<'a>,
    problems: Vec<String>,
}

impl<'a> EnvReader<'a> {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
            problems: Vec::new(),
        }
    }

    pub fn process() -> EnvReader<'static> {
        EnvReader::new(|k| std::env::var(k).ok())
    }

    /// The raw value, with empty strings treated as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// The value, or `default` when unset (an explicit, documented default).
    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// The value, or `None` when unset (an optional setting with no default).
    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// A secret value, or `None` when unset. Never quoted in a problem.
    pub fn secret(&mut self, name: &str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    /// One of `choices` (exactly as spelled), or `default` when unset; anything else is a problem.
    pub fn choice<T: Copy>(&mut self, name: &str, default: T, choices: &[(&str, T)]) -> T {
        let Some(raw) = self.get(name) else { return default };
        match choices.iter().find(|(spelling, _)| *spelling == raw.trim()) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = choices.iter().map(|(s, _)| *s).collect();
                self.problems
                    .push(format!("{name}: must be {} (got {raw:?})", names.join(" or ")));
                default
            }
        }
    }

    pub fn number<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.get(name) else { return default };
        match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            Ok(_) => {
                self.problems
                    .push(format!("{name}: must be between {min} and {max} (got {raw:?})"));
                default
            }
            Err(_) => {
                self.problems
                    .push(format!("{name}: must be a whole number (got {raw:?})"));
                default
            }
        }
    }

    /// `true` or `false` (any case); anything else is a problem.
    pub fn boolean(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.get(name) else { return default };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                self.problems
                    .push(format!("{name}: must be true or false (got {raw:?})"));
                default
            }
        }
    }

    pub fn seconds(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.number(name, default, min, max))
    }

    pub fn millis(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.number(name, default, min, max))
    }

    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// The problems found so far, as the error (for a loader that cannot build its value).
    pub fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self.problems,
        }
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}
