#!/usr/bin/env bash
# `sam build` of every function (arm64, cargo-lambda), one at a time, with the seconds and the
# bootstrap size of each. The figures replace the "sam build" section of BENCHMARKS.md (between
# its markers; scripts/bench/report.py keeps that section). Minutes per function on 2 cores:
# not part of CI or scripts/test.sh. Run it niced on a shared machine (nice -n 19).
#
#   scripts/sam-build.sh [FUNCTION...]   # default: every AWS::Serverless::Function in template.yaml
#
# Needs sam, cargo-lambda and zig: pip install cargo-lambda ziglang aws-sam-cli (README, Deploying).
# Environment:
#   SAM_CARGO_TARGET_DIR  cargo's target directory (default $STATE_DIR/sam-target). Outside the
#                         repository on purpose: the repository root is every function's CodeUri.
#   SAM_BUILD_OUT         where the builds and their logs go (default $STATE_DIR/sam-build)
#   SAM_BUILD_MD          the file to update (default BENCHMARKS.md; "-" prints the section)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

for tool in sam cargo-lambda python3; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "$tool not found: pip install cargo-lambda ziglang aws-sam-cli (in a venv), then activate it"
done

export SAM_CLI_TELEMETRY=0
export CARGO_TARGET_DIR="${SAM_CARGO_TARGET_DIR:-$STATE_DIR/sam-target}"
out="${SAM_BUILD_OUT:-$STATE_DIR/sam-build}"
md="${SAM_BUILD_MD:-BENCHMARKS.md}"
mkdir -p "$CARGO_TARGET_DIR" "$out"
case "$(cd "$CARGO_TARGET_DIR" && pwd)/" in
    "$PWD"/*) die "SAM_CARGO_TARGET_DIR must be outside the repository (SAM would take it for source)" ;;
esac

# Logical id and binary of every function (the template's own layout: two-space resource keys).
mapfile -t all < <(awk '
    /^  [A-Za-z0-9]+:$/ { name = $1; sub(":", "", name); fn = 0 }
    /^    Type: AWS::Serverless::Function$/ { fn = 1 }
    fn && /^        Binary: / { print name " " $2; fn = 0 }' template.yaml)
[[ ${#all[@]} -gt 0 ]] || die "no functions found in template.yaml"
wanted=("$@")

rows=()
started_load="$(cut -d' ' -f1-3 /proc/loadavg)"
for entry in "${all[@]}"; do
    fn="${entry%% *}"
    bin="${entry#* }"
    if [[ ${#wanted[@]} -gt 0 && ! " ${wanted[*]} " =~ \ $fn\  ]]; then
        continue
    fi
    log "sam build $fn (silent for minutes; log: $out/$fn.log)"
    t0="$(date +%s.%N)"
    if ! sam build "$fn" --build-dir "$out/$fn" >"$out/$fn.log" 2>&1; then
        tail -20 "$out/$fn.log" >&2
        die "sam build $fn failed (log: $out/$fn.log)"
    fi
    secs="$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t0" "$(date +%s.%N)")"
    bootstrap="$out/$fn/$fn/bootstrap"
    [[ -f "$bootstrap" ]] || die "sam build $fn made no $bootstrap"
    size="$(stat -c %s "$bootstrap")"
    arch="$(file -b "$bootstrap" 2>/dev/null | cut -d, -f2 | sed 's/^ *//' || true)"
    log "  $fn: ${secs} s, $size bytes ($arch)"
    rows+=("$fn|$bin|$secs|$size|$arch")
done
[[ ${#rows[@]} -gt 0 ]] || die "none of the named functions is in template.yaml: $*"

versions="$(sam --version | sed 's/^SAM CLI, version /sam /'), $(cargo-lambda lambda --version 2>/dev/null || cargo lambda --version 2>/dev/null || echo 'cargo-lambda ?')"
python3 - "$md" "$(git rev-parse --short HEAD)" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" \
    "$started_load" "$(cut -d' ' -f1-3 /proc/loadavg)" "$versions" "${rows[@]}" <<'PY'
import re
import sys
from pathlib import Path

md, commit, when, cores, load0, load1, versions, *rows = sys.argv[1:]
begin, end = "<!-- sam-build:begin -->", "<!-- sam-build:end -->"
mib = lambda n: f"{n / 1048576:.2f} MiB ({n:,} bytes)"
L = [begin, "## sam build (arm64, cargo-lambda)", ""]
L.append(
    f"`scripts/sam-build.sh` at {commit}, {when}: `sam build <Function>` one function at a time in this "
    f"order, cargo's target directory shared and outside the repository, so the first build compiles every "
    f"dependency for aarch64 and the others reuse them. {cores} cores (shared), load average {load0} before "
    f"and {load1} after; {versions}. The bootstrap is what Lambda runs; section 5 has the local (x86_64) "
    f"release build of the same binaries."
)
L += ["", "| function | seconds | bootstrap | file |", "|---|---|---|---|"]
for r in rows:
    fn, binary, secs, size, arch = r.split("|")
    L.append(f"| {fn} (`{binary}`) | {secs} | {mib(int(size))} | {arch} |")
total = sum(int(r.split("|")[2]) for r in rows)
L += ["", f"{len(rows)} builds, {total} s in all ({total / 60:.0f} min).", "", end]
section = "\n".join(L)
if md == "-":
    print(section)
    sys.exit(0)
path = Path(md)
text = path.read_text()
if begin in text and end in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
elif "## What drives these figures" in text:
    text = text.replace("## What drives these figures", section + "\n\n## What drives these figures", 1)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
path.write_text(text)
print(f"wrote the sam build section of {md}", file=sys.stderr)
PY
