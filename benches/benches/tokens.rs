//! Access-token issue and verify, once per supported algorithm (`benchmarks::ALGORITHMS`).
//!
//! Criterion gives the mean per call; the target ("verification under 20 µs at p99") needs the
//! tail, so each verify is also timed call by call afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use benchmarks::{ALGORITHMS, per_call_percentiles, report_percentiles, sample_token};
use criterion::{BenchmarkId, Criterion};
use shared::roles::Role;
use uuid::Uuid;

fn token_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("tokens");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for algorithm in ALGORITHMS {
        let tokens = (algorithm.build)().expect("building the verifier");
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        group.bench_function(BenchmarkId::new("issue", algorithm.name), |b| {
            b.iter(|| {
                tokens
                    .issue(black_box(user), black_box(session), Role::User)
                    .expect("issue")
            })
        });
        let token = sample_token(&tokens).expect("sample token");
        group.bench_with_input(
            BenchmarkId::new("verify", algorithm.name),
            token.as_str(),
            |b, token| b.iter(|| tokens.verify(black_box(token)).expect("verify")),
        );
    }
    group.finish();
}

fn tails() {
    for algorithm in ALGORITHMS {
        let tokens = (algorithm.build)().expect("building the verifier");
        let token = sample_token(&tokens).expect("sample token");
        let verify = per_call_percentiles(20_000, 200_000, || tokens.verify(black_box(&token)).expect("verify"));
        report_percentiles(&format!("tokens/verify/{}", algorithm.name), &verify).expect("report");
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let issue = per_call_percentiles(20_000, 200_000, || {
            tokens
                .issue(black_box(user), black_box(session), Role::User)
                .expect("issue")
        });
        report_percentiles(&format!("tokens/issue/{}", algorithm.name), &issue).expect("report");
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    token_benches(&mut criterion);
    criterion.final_summary();
    tails();
}
