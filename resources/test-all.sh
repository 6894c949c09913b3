#!/usr/bin/env bash
# Sets up the machine and runs every check and test of the project: format,
# clippy, unit tests, and the integration tests that boot the emulated SR-IOV
# host (tests/). Needs root or sudo for setup-host.sh. About 5-10 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
command -v cargo >/dev/null || { echo "test-all: cargo not found; install Rust with rustup" >&2; exit 1; }

step() {
  local name=$1 t0=$SECONDS; shift
  echo "=== $name"
  "$@"
  echo "=== $name: ok ($((SECONDS - t0)) s)"
}

log=$(mktemp) && trap 'rm -f "$log"' EXIT
cargo_test() {
  # Both the build's and the tests' output stream through; the summaries
  # are repeated at the end.
  cargo test --workspace 2>&1 | tee "$log"
}

step setup bash "$here/setup-host.sh"
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step images bash "$here/build-images.sh" --with-qemu
step test cargo_test
# Every fuzz target for a short smoke run on its seeds (resources/fuzz.sh;
# the long runs and their figures are in resources/FUZZ.md).
step fuzz env FUZZ_NO_RECORD=1 bash "$here/fuzz.sh" "${FUZZ_SMOKE_SECONDS:-10}"
echo "=== summaries"
grep -E '^\s+(Running|Doc-tests) |^test result:' "$log"
