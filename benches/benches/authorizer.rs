//! The authorizer's handler from event to policy: the parsed TOKEN event through
//! `authorizer::handle` and through `handle_fresh` (what the deployed function calls: the key-cache
//! check first; keys from the environment never go stale), and the whole path the Lambda runtime
//! drives (event JSON in, policy JSON out), with a valid token from every supported algorithm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use benchmarks::{
    ALGORITHMS, authorizer_event, authorizer_event_json, per_call_percentiles, report_percentiles, sample_token,
};
use criterion::{BenchmarkId, Criterion};

fn json_to_policy(tokens: &access::tokens::Tokens, event_json: &str) -> Vec<u8> {
    let event: ApiGatewayCustomAuthorizerRequest = serde_json::from_str(event_json).expect("event");
    let response = authorizer::handle(tokens, &event).expect("allowed");
    serde_json::to_vec(&response).expect("policy json")
}

fn authorizer_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorizer");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for algorithm in ALGORITHMS {
        let tokens = (algorithm.build)().expect("building the verifier");
        let token = sample_token(&tokens).expect("sample token");
        let event = authorizer_event(&token).expect("event");
        group.bench_with_input(BenchmarkId::new("handle", algorithm.name), &event, |b, event| {
            b.iter(|| authorizer::handle(&tokens, black_box(event)).expect("allowed"))
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        group.bench_with_input(BenchmarkId::new("handle_fresh", algorithm.name), &event, |b, event| {
            b.iter(|| {
                runtime
                    .block_on(authorizer::handle_fresh(&tokens, black_box(event)))
                    .expect("allowed")
            })
        });
        let json = authorizer_event_json(&token);
        group.bench_with_input(
            BenchmarkId::new("event_json_to_policy_json", algorithm.name),
            json.as_str(),
            |b, json| b.iter(|| json_to_policy(&tokens, black_box(json))),
        );
    }
    group.finish();
}

fn tails() {
    for algorithm in ALGORITHMS {
        let tokens = (algorithm.build)().expect("building the verifier");
        let token = sample_token(&tokens).expect("sample token");
        let json = authorizer_event_json(&token);
        let p = per_call_percentiles(10_000, 100_000, || json_to_policy(&tokens, black_box(&json)));
        report_percentiles(&format!("authorizer/event_json_to_policy_json/{}", algorithm.name), &p).expect("report");
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    authorizer_benches(&mut criterion);
    criterion.final_summary();
    tails();
}
