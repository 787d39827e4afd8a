#!/usr/bin/env bash
# Build every cargo-fuzz target in fuzz/ and run each for a bounded time, one after another, with
# one fuzzing job. Prints one summary line per target, appends the run's figures to FUZZING.md,
# and exits non-zero if any target crashed, hung, ran out of memory or did not start.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Environment:
#   FUZZ_TARGETS="a b"   run only these targets (default: every fuzz/fuzz_targets/*.rs)
#   FUZZ_BUILD_JOBS=N    cargo build jobs (default 1: the machine is shared)
#   FUZZ_SANITIZER=S     address (default) | none
#   FUZZ_NO_RECORD=1     do not append to FUZZING.md
#
# Seeds are read from fuzz/corpus/<target>/ and never written to: what the fuzzer finds goes to
# fuzz/target/corpus-work/<target>/ (kept between runs, not committed). A crashing input is saved
# in fuzz/artifacts/<target>/ and the libFuzzer log in fuzz/target/fuzz-logs/<target>.log.
#
# Only local processes are started: the cargo build, then one libFuzzer binary at a time, each
# stopped by its own -max_total_time and, as a backstop, by `timeout`.

set -euo pipefail

# --help: the comment block above, as usage.
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    printf 'usage: %s\n' "$(sed -n 's/^#   \(scripts\/[a-z-]*\.sh.*\)$/\1/p' "$0" | head -n1)"
    sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d' | sed -E 's/^# ?//'
    exit 0
fi

SECONDS_PER_TARGET="${1:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
cd "$ROOT"

SANITIZER="${FUZZ_SANITIZER:-address}"
BUILD_JOBS="${FUZZ_BUILD_JOBS:-1}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"

command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
}

# cargo-fuzz needs nightly for -Zsanitizer. Without a nightly toolchain, build with stable and no
# sanitizer (RUSTC_BOOTSTRAP unlocks the few unstable flags cargo-fuzz still passes).
CARGO=(cargo)
if rustup run nightly rustc --version >/dev/null 2>&1; then
    CARGO=(cargo +nightly)
else
    echo "no nightly toolchain: building with stable, sanitizer none" >&2
    export RUSTC_BOOTSTRAP=1
    SANITIZER=none
fi

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    TARGETS=()
    for f in "$FUZZ"/fuzz_targets/*.rs; do
        TARGETS+=("$(basename "$f" .rs)")
    done
fi

# cargo-fuzz's default build: release optimisations with debug assertions and overflow checks on
# (so an arithmetic overflow is a crash here even where a release build would wrap).
echo "== building ${#TARGETS[@]} fuzz targets (sanitizer: $SANITIZER, jobs: $BUILD_JOBS)"
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    for target in "${TARGETS[@]}"; do
        CARGO_BUILD_JOBS="$BUILD_JOBS" "${CARGO[@]}" fuzz build --fuzz-dir "$FUZZ" -s "$SANITIZER" "$target"
    done
else
    CARGO_BUILD_JOBS="$BUILD_JOBS" "${CARGO[@]}" fuzz build --fuzz-dir "$FUZZ" -s "$SANITIZER"
fi
BIN_DIR="$FUZZ/target/$TRIPLE/release"

# Per-target libFuzzer options: input size bounds just past each limit under test, dictionaries.
options_for() {
    case "$1" in
        token_verify) echo "-max_len=9216 -dict=$FUZZ/dicts/token.dict" ;; # 8 KiB limit
        token_structured) echo "-max_len=4096 -dict=$FUZZ/dicts/token.dict" ;;
        body_*) echo "-max_len=17408 -dict=$FUZZ/dicts/json.dict" ;; # 16 KiB limit
        cursor_decode) echo "-max_len=256" ;; # 128-byte limit
        cursor_roundtrip) echo "-max_len=64" ;;
        bearer_header) echo "-max_len=1024" ;;
        *) echo "-max_len=2048" ;;
    esac
}

# What `cargo fuzz run` sets too: Rust binaries trip ASan's ODR check falsely.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

LOG_DIR="$FUZZ/target/fuzz-logs"
mkdir -p "$LOG_DIR"
CHILD=""
cleanup() {
    if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
}
trap 'cleanup; exit 130' INT TERM

START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ROWS=()
FAILED=()
TOTAL_RUNS=0
TOTAL_SECS=0
for target in "${TARGETS[@]}"; do
    work="$FUZZ/target/corpus-work/$target"
    seeds="$FUZZ/corpus/$target"
    artifacts="$FUZZ/artifacts/$target/"
    log="$LOG_DIR/$target.log"
    mkdir -p "$work" "$seeds" "$artifacts"
    read -r -a extra <<<"$(options_for "$target")"
    before="$(find "$artifacts" -type f | wc -l)"
    t0="$(date +%s)"
    set +e
    # -jobs/-workers stay at libFuzzer's default: one process. -timeout: an input running over
    # 10 s is a hang and counts as a failure. The outer timeout is only a backstop.
    timeout --kill-after=30 "$((SECONDS_PER_TARGET + 120))" \
        "$BIN_DIR/$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts" "${extra[@]}" "$work" "$seeds" >"$log" 2>&1 &
    CHILD=$!
    wait "$CHILD"
    status=$?
    set -e
    CHILD=""
    elapsed=$(($(date +%s) - t0))
    after="$(find "$artifacts" -type f | wc -l)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov_line="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$cov_line")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$cov_line")"
    corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$cov_line")"
    crashes=$((after - before))
    result="ok"
    if [[ $status -ne 0 || $crashes -gt 0 ]]; then
        result="FAILED (exit $status, $crashes new artifact(s); log: ${log#"$ROOT"/})"
        FAILED+=("$target")
    fi
    runs="${runs:-0}"
    TOTAL_RUNS=$((TOTAL_RUNS + runs))
    TOTAL_SECS=$((TOTAL_SECS + elapsed))
    printf '%-22s %4ss  runs %10s  exec/s %7s  cov %5s  ft %6s  corpus %5s  crashes %s  %s\n' \
        "$target" "$elapsed" "$runs" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes" "$result"
    ROWS+=("| \`$target\` | $elapsed | $runs | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes | $result |")
done

echo "== ${#TARGETS[@]} targets, ${TOTAL_SECS}s in total, $TOTAL_RUNS executions, failed: ${FAILED[*]:-none}"

if [[ -z "${FUZZ_NO_RECORD:-}" ]]; then
    report="$ROOT/FUZZING.md"
    [[ -f "$report" ]] || printf '# Fuzzing\n\nRuns of `scripts/fuzz.sh`, newest last.\n' >"$report"
    {
        printf '\n## Run of %s\n\n' "$START"
        printf -- '- Command: `scripts/fuzz.sh %s`%s\n' "$SECONDS_PER_TARGET" \
            "${FUZZ_TARGETS:+ with \`FUZZ_TARGETS=\"$FUZZ_TARGETS\"\`}"
        printf -- '- Toolchain: `%s`, sanitizer: %s, one libFuzzer job, %s s per target\n' \
            "$("${CARGO[@]}" --version 2>/dev/null | sed 's/^cargo //')" "$SANITIZER" "$SECONDS_PER_TARGET"
        printf -- '- Total: %s targets, %s s, %s executions, failed: %s\n\n' \
            "${#TARGETS[@]}" "$TOTAL_SECS" "$TOTAL_RUNS" "${FAILED[*]:-none}"
        printf '| target | seconds | executions | exec/s | cov | ft | corpus | crashes | result |\n'
        printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
        printf '%s\n' "${ROWS[@]}"
    } >>"$report"
    echo "== appended to ${report#"$ROOT"/}"
fi

[[ ${#FAILED[@]} -eq 0 ]]
