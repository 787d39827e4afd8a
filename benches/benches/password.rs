//! argon2id hash and verify through `shared::password::Passwords`, at the parameters the
//! configuration gives (`ARGON2_MEMORY_KIB` / `_ITERATIONS` / `_PARALLELISM`, OWASP's minimum by
//! default), on the blocking pool exactly as the login and signup functions call it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use benchmarks::{per_call_percentiles, report_percentiles};
use criterion::{BenchmarkId, Criterion};
use secrecy::SecretString;
use shared::config::Config;
use shared::password::{Passwords, normalize};

const PASSWORD: &str = "correct horse battery staple";

fn password_benches(c: &mut Criterion, runtime: &tokio::runtime::Runtime, passwords: &Passwords, params: &str) {
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function(BenchmarkId::new("hash", params), |b| {
        b.iter(|| runtime.block_on(passwords.hash(normalize(PASSWORD))).expect("hash"))
    });
    let stored = runtime.block_on(passwords.hash(normalize(PASSWORD))).expect("hash");
    group.bench_function(BenchmarkId::new("verify", params), |b| {
        b.iter(|| {
            let v = runtime
                .block_on(passwords.verify(SecretString::from(PASSWORD), Some(stored.clone())))
                .expect("verify");
            assert!(v.matches);
        })
    });
    group.finish();
}

fn main() {
    let config = Config::from_env().expect("configuration");
    let a = config.argon2;
    let params = format!("m={},t={},p={}", a.memory_kib, a.iterations, a.parallelism);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let passwords = Passwords::new(a).expect("argon2 parameters");

    let mut criterion = Criterion::default().configure_from_args();
    password_benches(&mut criterion, &runtime, &passwords, &params);
    criterion.final_summary();

    let p = per_call_percentiles(2, 30, || {
        runtime.block_on(passwords.hash(normalize(PASSWORD))).expect("hash")
    });
    report_percentiles(&format!("password/hash/{params}"), &p).expect("report");
}
