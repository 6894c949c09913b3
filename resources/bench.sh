#!/usr/bin/env bash
# Benchmarks vfvm against QEMU/KVM inside the emulated SR-IOV host and prints
# a table of figures and vfvm/QEMU ratios. See resources/BENCH.md.
#   bash resources/bench.sh [boot|blk|vf|all]     (default: all)
# Each part is one emulated-host boot; runs queue behind other testbed users.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/setup-host.sh" >/dev/null
cd "$(dirname "$here")"
exec cargo run -q --release -p vfvm-tests --example bench -- "${1:-all}"
