//! Access-token issue and verify, once per supported algorithm (`benchmarks::ALGORITHMS`).
//!
//! Criterion gives the mean per call; the target ("verification under 20 µs at p99") needs the
//! tail, so each verify is also timed call by call afterwards.
//!
//! For scale, the bare signature checks under the asymmetric algorithms are timed the same way
//! (`signature/verify/*`, aws-lc-rs, the library `jsonwebtoken` verifies with): what a token
//! verification cannot go below whatever the JWT code around it does. Ed25519 is EdDSA's; ES256
//! (P-256) is the contract's other asymmetric option; RS256 (RSA-2048) is for comparison only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use access::roles::Role;
use benchmarks::{ALGORITHMS, per_call_percentiles, report_percentiles, sample_token};
use criterion::{BenchmarkId, Criterion};
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

/// The bare signature check of each asymmetric algorithm on a token-sized message, call by call.
fn signature_tails() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, KeyPair};

    let message = [b'x'; 300];
    let rng = SystemRandom::new();

    let ed = signature::Ed25519KeyPair::generate().expect("Ed25519 key");
    let ed_sig = ed.sign(&message);
    let ed_pub = signature::UnparsedPublicKey::new(&signature::ED25519, ed.public_key().as_ref().to_vec());
    let p = per_call_percentiles(20_000, 200_000, || {
        ed_pub.verify(black_box(&message), ed_sig.as_ref()).expect("verify")
    });
    report_percentiles("signature/verify/Ed25519", &p).expect("report");

    let es = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key");
    let es_sig = es.sign(&rng, &message).expect("sign");
    let es_pub =
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, es.public_key().as_ref().to_vec());
    let p = per_call_percentiles(20_000, 200_000, || {
        es_pub.verify(black_box(&message), es_sig.as_ref()).expect("verify")
    });
    report_percentiles("signature/verify/ES256 (P-256)", &p).expect("report");

    let rsa = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let mut rsa_sig = vec![0; rsa.public_modulus_len()];
    rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, &message, &mut rsa_sig)
        .expect("sign");
    let rsa_pub = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        rsa.public_key().as_ref().to_vec(),
    );
    let p = per_call_percentiles(2_000, 50_000, || {
        rsa_pub.verify(black_box(&message), &rsa_sig).expect("verify")
    });
    report_percentiles("signature/verify/RS256 (RSA-2048)", &p).expect("report");
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    token_benches(&mut criterion);
    criterion.final_summary();
    tails();
    signature_tails();
}
