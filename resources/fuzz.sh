#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one
# after another, on the seeds in fuzz/corpus/TARGET, and records libFuzzer's
# final statistics (executions, coverage, corpus size) in resources/FUZZ.md.
# Needs cargo-fuzz (setup-host.sh installs it) and a nightly toolchain
# (rustup toolchain install nightly). A crash stops the script with status 1
# and leaves the input in fuzz/artifacts/TARGET/.
#   resources/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_NO_RECORD=1 resources/fuzz.sh 20     # CI smoke run: FUZZ.md untouched
#   FUZZ_RUNS=10000000 resources/fuzz.sh 900  # stop each at 10M executions
#   FUZZ_SANITIZER=address resources/fuzz.sh 60  # with AddressSanitizer
# No sanitizer by default: the code the targets feed is safe Rust, whose
# out-of-bounds accesses and overflows (debug assertions are on) panic
# without one, and AddressSanitizer's allocator and checks cost 3-5 times
# the executions (FUZZ.md). Rerun with FUZZ_SANITIZER=address after
# adding unsafe code to what a target reaches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
secs=${1:-60}
shift || true
cd "$root/fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
out=$(mktemp -d) && trap 'rm -rf "$out"' EXIT
san=(-a -s "${FUZZ_SANITIZER:-none}")

# One build of every target first (release, with debug assertions and so
# overflow checks), so the timed runs are runs only.
cargo +nightly fuzz build "${san[@]}" >/dev/null 2>"$out/build" ||
  { cat "$out/build" >&2; exit 1; }

md=$here/FUZZ.md
if [ -z "${FUZZ_NO_RECORD:-}" ] && ! [ -f "$md" ]; then
  cat >"$md" <<'HEAD'
# Fuzzing results

Written by `resources/fuzz.sh SECONDS [TARGET...]` (cargo-fuzz, nightly, release
with debug assertions, one target at a time; each run updates its target's row).
Executions are libFuzzer's `stat::number_of_executed_units`; cov and ft its final
coverage (edges, features; they depend on the sanitizer's instrumentation, so
compare them only between runs with the same one); corpus the inputs it holds at
the end, starting from the seeds in fuzz/corpus/TARGET (what a run adds is not
committed); load the machine's mean 1-minute load average during the run.

| target | date | sanitizer | seconds | executions | cov | ft | corpus | crashes | load |
|---|---|---|---|---|---|---|---|---|---|
HEAD
fi

for t in "${targets[@]}"; do
  echo "fuzz: $t for $secs s"
  mkdir -p "corpus/$t"
  # A private copy of the corpus: what the run finds stays out of the tree
  # (fuzz/corpus holds only the committed seeds).
  cp -r "corpus/$t" "$out/corpus-$t"
  status=0 t0=$SECONDS
  # The machine's load, sampled while the target runs.
  while cut -d' ' -f1 /proc/loadavg >>"$out/load-$t"; do sleep 5; done &
  sampler=$!
  cargo +nightly fuzz run "${san[@]}" "$t" "$out/corpus-$t" "corpus/$t" -- \
    -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -print_final_stats=1 -rss_limit_mb=2048 -timeout=20 \
    >"$out/$t.log" 2>&1 || status=$?
  kill "$sampler" && wait "$sampler" 2>/dev/null || true
  load=$(awk '{ s += $1 } END { if (NR) printf "%.1f", s / NR }' "$out/load-$t")
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -oE '(INITED|DONE|#[0-9]+).* cov: [0-9]+' "$out/$t.log" | grep -oE 'cov: [0-9]+' | tail -1 | grep -oE '[0-9]+')
  ft=$(grep -oE ' ft: [0-9]+' "$out/$t.log" | tail -1 | grep -oE '[0-9]+')
  corpus=$(grep -oE ' corp: [0-9]+' "$out/$t.log" | tail -1 | grep -oE '[0-9]+')
  if [ "$status" != 0 ]; then
    tail -40 "$out/$t.log" >&2
    echo "fuzz: $t FAILED (status $status); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  echo "fuzz: $t: ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus:-?}, load ${load:-?}"
  [ -z "${FUZZ_NO_RECORD:-}" ] || continue
  row="| \`$t\` | $(date -u +%Y-%m-%d) | ${san[2]} | $((SECONDS - t0)) | ${execs:-?} | ${cov:-?} | ${ft:-?} | ${corpus:-?} | none | ${load:-?} |"
  { grep -v "^| \`$t\` |" "$md" || true; echo "$row"; } >"$out/md" && cp "$out/md" "$md"
  echo "fuzz: recorded $t in resources/FUZZ.md"
done
