#!/usr/bin/env bash
# Builds the Debian package into target/debian/vfvm_VERSION_amd64.deb:
# the static (musl) vfvm, its man pages and shell completions (generated from
# the clap definitions by the binary itself), the systemd units and
# /etc/vfvm/ examples. Needs cargo-deb (setup-host.sh installs it) and the
# musl target. Run from anywhere: bash resources/package.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
triple=x86_64-unknown-linux-musl
# cargo-deb finds the binary, and the assets name the docs, in the
# workspace's own target dir, whatever the caller's CARGO_TARGET_DIR.
export CARGO_TARGET_DIR=$root/target
command -v cargo-deb >/dev/null ||
  { echo "package: cargo-deb not found; run: bash resources/setup-host.sh" >&2; exit 1; }

cargo build -q --release --target $triple -p vmm
bin=$root/target/$triple/release/vfvm
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "package: $bin is dynamically linked" >&2; exit 1
fi

docs=$root/target/debian/docs
rm -rf "$docs"
"$bin" generate-docs "$docs"
gzip -9n "$docs"/man/*.[18]

# Prints the path of the .deb.
cargo deb -q -p vmm --target $triple --no-build --output "$root/target/debian/"
