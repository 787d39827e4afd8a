//! argon2id hash and verify through `store::password::Passwords`, at the parameters the
//! configuration gives (`ARGON2_MEMORY_KIB` / `_ITERATIONS` / `_PARALLELISM`, OWASP's minimum by
//! default), on its hashing threads exactly as the login and signup functions call it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use benchmarks::{per_call_percentiles, report_percentiles};
use criterion::{BenchmarkId, Criterion};
use secrecy::SecretString;
use settings::Config;
use store::password::{Passwords, normalize};

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

    parallel_throughput(&passwords, &params);
    argon2_scaling((a.memory_kib, a.iterations, a.parallelism));
}

/// Hashes per second with every core hashing at once (one concurrent hash per core, as the login
/// function allows), against the single-hash rate times the cores: the login throughput target
/// assumes the two scale perfectly. At m = 19 MiB the buffers of two hashes do not fit the caches
/// together, so the cores compete for memory bandwidth.
fn parallel_throughput(passwords: &Passwords, params: &str) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let per_core = 30;
    let run = |tasks: usize| {
        let started = std::time::Instant::now();
        runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..tasks {
                let passwords = passwords.clone();
                set.spawn(async move {
                    for _ in 0..per_core {
                        passwords.hash(normalize(PASSWORD)).await.expect("hash");
                    }
                });
            }
            while let Some(done) = set.join_next().await {
                done.expect("hashing task");
            }
        });
        (tasks * per_core) as f64 / started.elapsed().as_secs_f64()
    };
    run(cores); // warm-up: every core's buffer allocated
    let one = run(1);
    let all = run(cores);
    report_scaling(
        &format!("password/hash_parallel/{params}"),
        cores,
        (one, all),
        serde_json::json!({ "hashes_each": per_core }),
    );
}

/// Print one scaling figure and write it to `BENCH_THROUGHPUT_OUT` with `extra`'s fields.
fn report_scaling(name: &str, cores: usize, (one, all): (f64, f64), mut extra: serde_json::Value) {
    println!(
        "{name}: 1 at a time {one:.1}/s, {cores} at once {all:.1}/s ({:.0} % of {cores} × the single rate)",
        all / (one * cores as f64) * 100.0
    );
    if let Some(fields) = extra.as_object_mut() {
        fields.insert("name".into(), name.into());
        fields.insert("cores".into(), cores.into());
        fields.insert("one_at_a_time_per_s".into(), one.into());
        fields.insert("all_cores_per_s".into(), all.into());
    }
    write_throughput(extra);
}

/// One JSON line into `BENCH_THROUGHPUT_OUT`, when set (scripts/bench.sh reads them).
fn write_throughput(line: serde_json::Value) {
    if let Some(path) = std::env::var_os("BENCH_THROUGHPUT_OUT") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("throughput file");
        std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()).expect("write");
    }
}

/// How well the cores run argon2 side by side, outside our code: bare `argon2` calls in plain
/// threads (no tokio, no buffer pool, no wiping), one thread alone against one per core, at the
/// configured parameters, OWASP's other recommended argon2id settings (equal in cost, less
/// memory) and a 1 MiB control that fits a core's L2 cache. The login target assumes perfect
/// scaling; this measures what the hardware gives. Three rounds each; the median is reported.
fn argon2_scaling(configured: (u32, u32, u32)) {
    use argon2::{Algorithm, Argon2, Block, Params, Version};

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let others = [(12_288, 3, 1), (9_216, 4, 1), (7_168, 5, 1), (1_024, 38, 1)];
    let settings = std::iter::once(configured).chain(others.into_iter().filter(|s| *s != configured));
    for (m, t, p) in settings {
        let params = Params::new(m, t, p, None).expect("argon2 parameters");
        let rate = |threads: usize| {
            let each = 24;
            let started = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    let params = params.clone();
                    scope.spawn(move || {
                        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                        let mut memory = vec![Block::new(); params.block_count()];
                        let mut out = [0u8; 32];
                        for _ in 0..each {
                            argon2
                                .hash_password_into_with_memory(
                                    PASSWORD.as_bytes(),
                                    b"a 16-byte salt..",
                                    &mut out,
                                    &mut memory,
                                )
                                .expect("hash");
                        }
                    });
                }
            });
            (threads * each) as f64 / started.elapsed().as_secs_f64()
        };
        rate(cores); // warm-up
        let mut rounds: Vec<(f64, f64)> = (0..3).map(|_| (rate(1), rate(cores))).collect();
        rounds.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
        report_scaling(
            &format!("argon2/scaling/m={m},t={t},p={p}"),
            cores,
            rounds[1],
            serde_json::json!({ "memory_kib": m, "iterations": t, "parallelism": p }),
        );
    }
}
