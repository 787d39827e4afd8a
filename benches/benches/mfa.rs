//! The CPU of `POST /auth/mfa/verify` apart from its database round trips: hash the presented
//! `mfa_token` (SHA-256), decrypt the TOTP secret (AES-256-GCM, the user id as associated data),
//! compare the code against the three allowed time steps (HMAC-SHA-1 each, constant time), and
//! issue the access token with `amr: ["pwd","otp"]`; and the recovery-code variant (two SHA-256s
//! and the token). A wrong code is measured: it checks all three steps, the most work a code
//! costs. No argon2 is on this path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use access::roles::Role;
use benchmarks::{ALGORITHMS, per_call_percentiles, report_percentiles};

use criterion::{BenchmarkId, Criterion};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use store::mfa_key::MfaKeys;
use uuid::Uuid;

/// 32 fixed bytes, base64: the benches encrypt nothing that leaves the process.
const BENCH_MFA_KEY: &str = "YmVuY2htYXJrLW9ubHktbWZhLWtleS0wMTIzNDU2Nzg=";
const MFA_TOKEN: &str = "q7Yx1Qb0mR4wS8tV2nE6pL9cK3fH5jD0aG1iU7oZ4yXe";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn main() {
    let keys = MfaKeys::from_env(&SecretString::from(BENCH_MFA_KEY.to_owned()), None).expect("MFA key");
    let user = Uuid::now_v7();
    let session = Uuid::now_v7();
    let secret = mfa::totp::new_secret().expect("secret");
    let (key_id, blob) = keys.encrypt(user, &secret).expect("encrypt");
    // A code of no allowed step: all three are computed and compared.
    let right = mfa::totp::code_at_step(&secret, mfa::totp::step_of(now()));
    let wrong = if right == "000000" { "000001" } else { "000000" };

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("mfa");
    for algorithm in ALGORITHMS {
        let tokens = (algorithm.build)().expect("tokens");
        let code_path = || {
            let token_hash = Sha256::digest(black_box(MFA_TOKEN).as_bytes());
            let plain = keys.decrypt(&key_id, user, black_box(&blob)).expect("decrypt");
            let step = mfa::totp::matching_step(&plain, black_box(wrong), now());
            let issued = tokens.issue_with_amr(user, session, Role::User, true).expect("issue");
            (token_hash, step, issued)
        };
        let recovery_path = || {
            let token_hash = Sha256::digest(black_box(MFA_TOKEN).as_bytes());
            let code_hash = mfa::hash_recovery_code(black_box("abcd-efgh-ijkl-mnop"));
            let issued = tokens.issue_with_amr(user, session, Role::User, true).expect("issue");
            (token_hash, code_hash, issued)
        };
        group.bench_function(BenchmarkId::new("verify_cpu_code", algorithm.name), |b| {
            b.iter(code_path)
        });
        group.bench_function(BenchmarkId::new("verify_cpu_recovery_code", algorithm.name), |b| {
            b.iter(recovery_path)
        });
        let p = per_call_percentiles(2_000, 20_000, code_path);
        report_percentiles(&format!("mfa/verify_cpu_code/{}", algorithm.name), &p).expect("report");
        let p = per_call_percentiles(2_000, 20_000, recovery_path);
        report_percentiles(&format!("mfa/verify_cpu_recovery_code/{}", algorithm.name), &p).expect("report");
    }
    group.finish();
    criterion.final_summary();
}
