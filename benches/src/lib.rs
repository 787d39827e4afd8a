//! Fixtures shared by the criterion benches in `benches/benches/` (run by `scripts/bench.sh`).
//!
//! Every supported token algorithm is one entry of [`ALGORITHMS`]; the token benches iterate over
//! it, so a new algorithm (EdDSA, ES256) is benchmarked by adding one entry here.

use std::io::Write as _;
use std::time::{Duration, Instant};

use access::roles::Role;
use access::tokens::{KeySet, Keys, SigningKey, TokenSettings, Tokens};
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use secrecy::SecretString;
use uuid::Uuid;

/// A fixed 48-byte HMAC key: the benches sign nothing that leaves the process.
const BENCH_HMAC_KEY: &str = "benchmark-only-hmac-key-0123456789abcdefghijklmn";

/// The token API gateway event the tests use, with `__TOKEN__` and `__TASK_ID__` to fill in.
pub const AUTHORIZER_EVENT_FIXTURE: &str = include_str!("../../tests/fixtures/apigw-token-authorizer.json");

/// One supported signing algorithm: its name as in the JWT `alg` header and how to build the
/// issuer/verifier for it with the production code.
pub struct Algorithm {
    pub name: &'static str,
    pub build: fn() -> anyhow::Result<Tokens>,
}

/// Every algorithm the production code supports today. Add an entry to benchmark another.
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm {
        name: "HS256",
        build: hs256,
    },
    Algorithm {
        name: "EdDSA",
        build: eddsa,
    },
];

/// The settings the functions use by default (`JWT_ISSUER`/`JWT_AUDIENCE` = `todo-api`, 15 min).
pub fn token_settings() -> TokenSettings {
    TokenSettings {
        issuer: "todo-api".into(),
        audience: "todo-api".into(),
        ttl: Duration::from_secs(900),
    }
}

/// HS256 with a key from "the environment", named by its fingerprint as the functions name it.
pub fn hs256() -> anyhow::Result<Tokens> {
    let secret = SecretString::from(BENCH_HMAC_KEY.to_owned());
    let kid = SigningKey::fingerprint_kid(&secret);
    tokens_for(SigningKey::hmac(kid, secret)?)
}

/// EdDSA (Ed25519) with a freshly generated key pair, as the rotation function makes them.
pub fn eddsa() -> anyhow::Result<Tokens> {
    let pem = SigningKey::generate_ed25519_pem()?;
    let current = SigningKey::ed25519_pem("bench-ed25519", &pem)?;
    tokens_for(current)
}

fn tokens_for(current: SigningKey) -> anyhow::Result<Tokens> {
    let keys = Keys::from_set(KeySet {
        current,
        previous: None,
    })?;
    Ok(Tokens::new(keys, token_settings(), None))
}

/// A fresh access token for a random user and session, as login issues it.
pub fn sample_token(tokens: &Tokens) -> anyhow::Result<String> {
    let issued = tokens.issue(Uuid::now_v7(), Uuid::now_v7(), Role::User)?;
    Ok(secrecy::ExposeSecret::expose_secret(&issued.token).to_owned())
}

/// The authorizer fixture as JSON text, with a real token and task id filled in.
pub fn authorizer_event_json(token: &str) -> String {
    AUTHORIZER_EVENT_FIXTURE
        .replace("__TOKEN__", token)
        .replace("__TASK_ID__", &Uuid::now_v7().to_string())
}

/// The authorizer fixture, parsed.
pub fn authorizer_event(token: &str) -> anyhow::Result<ApiGatewayCustomAuthorizerRequest> {
    Ok(serde_json::from_str(&authorizer_event_json(token))?)
}

/// Per-call latency distribution, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub calls: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// Time `calls` single calls of `f` one by one (after `warmup` untimed ones) and return the
/// distribution. Criterion reports means over batches; targets stated as a p99 need this.
pub fn per_call_percentiles<T>(warmup: usize, calls: usize, mut f: impl FnMut() -> T) -> Percentiles {
    for _ in 0..warmup {
        std::hint::black_box(f());
    }
    let mut samples: Vec<u64> = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        std::hint::black_box(f());
        samples.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    samples.sort_unstable();
    let at = |q: f64| -> u64 {
        if samples.is_empty() {
            return 0;
        }
        let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(idx.min(samples.len() - 1)).copied().unwrap_or(0)
    };
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64
    };
    Percentiles {
        calls: samples.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: samples.last().copied().unwrap_or(0),
        mean,
    }
}

/// Print the distribution, and append it as one JSON line to `$BENCH_PERCENTILES_OUT` when set
/// (`scripts/bench.sh` reads that file to write BENCHMARKS.md).
pub fn report_percentiles(name: &str, p: &Percentiles) -> anyhow::Result<()> {
    println!(
        "{name:<40} per call over {} calls: p50 {:.2} µs  p90 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs  max {:.2} µs",
        p.calls,
        p.p50 as f64 / 1e3,
        p.p90 as f64 / 1e3,
        p.p99 as f64 / 1e3,
        p.p999 as f64 / 1e3,
        p.max as f64 / 1e3,
    );
    if let Some(path) = std::env::var_os("BENCH_PERCENTILES_OUT") {
        let line = serde_json::json!({
            "name": name,
            "calls": p.calls,
            "p50_ns": p.p50,
            "p90_ns": p.p90,
            "p99_ns": p.p99,
            "p999_ns": p.p999,
            "max_ns": p.max,
            "mean_ns": p.mean,
        });
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_issues_what_it_verifies() -> anyhow::Result<()> {
        for algorithm in ALGORITHMS {
            let tokens = (algorithm.build)()?;
            let token = sample_token(&tokens)?;
            assert!(tokens.verify(&token).is_ok(), "{}", algorithm.name);
            let event = authorizer_event(&token)?;
            assert!(authorizer::handle(&tokens, &event).is_ok(), "{}", algorithm.name);
        }
        Ok(())
    }

    #[test]
    fn percentiles_are_ordered() {
        let p = per_call_percentiles(10, 1000, || std::hint::black_box(3u64).pow(3));
        assert_eq!(p.calls, 1000);
        assert!(p.p50 <= p.p99 && p.p99 <= p.max);
    }
}
