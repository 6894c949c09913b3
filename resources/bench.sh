#!/usr/bin/env bash
# Benchmarks vfvm against QEMU/KVM inside the emulated SR-IOV host and prints
# a table of figures and vfvm/QEMU ratios; `reserve` measures guest-memory
# reservation alone on this machine. See resources/BENCH.md.
#   bash resources/bench.sh [reserve|boot|pages|blk|vf|trace|all]  (default: all but trace)
# VFVM_BENCH_BOOTS=N rounds of boots; VFVM_BENCH_CH=PATH adds Cloud Hypervisor;
# VFVM_BENCH_PEERS_RESERVE=1 makes QEMU and CH reserve guest RAM up front as vfvm does.
# Each emulated-host part is one emulated-host boot; runs queue behind other
# testbed users.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
part=${1:-all}
if [ "$part" = reserve ] || [ "$part" = all ]; then
  cargo bench -q -p vmm --bench reserve
  [ "$part" = reserve ] && exit 0
fi
bash "$here/setup-host.sh" >/dev/null
exec cargo run -q --release -p vfvm-tests --example bench -- "$part"
