#!/usr/bin/env bash
# Installs everything the emulated SR-IOV testbed needs, from Debian's
# packages only: QEMU 10 (bookworm-backports, for the igb NIC), the 6.12
# kernel, busybox, cpio, kmod, iproute2, dmsetup, fio (for the disk
# benchmark's guest), and the musl target for a static vfvm; for the package
# tests, debootstrap, Python's prometheus_client and cargo-deb (from
# crates.io), and cargo-fuzz with a nightly toolchain for the fuzz smoke run.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/testbed.env"

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "setup: adding bookworm-backports to apt sources"
  echo "deb http://deb.debian.org/debian bookworm-backports main" |
    sudo_ tee /etc/apt/sources.list.d/vfvm-backports.list >/dev/null
  sudo_ apt-get update -qq
fi

need=()
qemu_ok() { command -v qemu-system-x86_64 >/dev/null &&
  qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'; }
qemu_ok || need+=(qemu-system-x86)
# ipxe-qemu: the e1000's option ROM (Testbed::e1000); debootstrap and
# python3-prometheus-client: the package and metrics tests.
for p in busybox-static cpio kmod iproute2 xz-utils musl-tools dmsetup fio ipxe-qemu debootstrap python3-prometheus-client; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  [ -n "$(find /var/lib/apt/lists -name '*backports*Packages*' 2>/dev/null | head -1)" ] ||
    sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -t bookworm-backports --no-install-recommends "${need[@]}" >/dev/null
fi
qemu_ok || { echo "setup: qemu-system-x86_64 has no igb device (need QEMU >= 8 from bookworm-backports)" >&2; exit 1; }

# The kernel used for both the emulated host and the guest.
if [ ! -f "$KDIR/vmlinuz" ]; then
  echo "setup: fetching $KPKG"
  mkdir -p "$CACHE/dl" && cd "$CACHE/dl"
  apt-get download "$KPKG" >/dev/null 2>&1 || { sudo_ apt-get update -qq; apt-get download "$KPKG"; }
  rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
  dpkg-deb -x "$CACHE"/dl/"$KPKG"_*.deb "$KDIR.tmp"
  cp "$KDIR.tmp"/boot/vmlinuz-* "$KDIR.tmp/vmlinuz"
  depmod -b "$KDIR.tmp" "$KVER"
  mv "$KDIR.tmp" "$KDIR"
fi

if command -v rustup >/dev/null; then
  rustup target list --installed | grep -q x86_64-unknown-linux-musl ||
    rustup target add x86_64-unknown-linux-musl
fi
# cargo-deb builds the .deb (resources/package.sh); about a minute to compile.
if ! command -v cargo-deb >/dev/null; then
  echo "setup: installing cargo-deb"
  cargo install -q --locked cargo-deb@3.8.0
fi
# cargo-fuzz and a nightly toolchain run the fuzz targets (resources/fuzz.sh).
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q '^nightly'; then
  echo "setup: installing the nightly toolchain (for cargo-fuzz)"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "setup: installing cargo-fuzz"
  cargo install -q --locked cargo-fuzz@0.13.2
fi
echo "setup: ok"
