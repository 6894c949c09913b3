#!/usr/bin/env bash
# Builds the emulated SR-IOV host's images into resources/out/:
#   vmlinuz             kernel of the emulated host (and of its guests)
#   host-base.cpio.gz   the host's initramfs: busybox, modules, iproute2's ip,
#                       dmsetup (to stall a disk), util-linux's setpriv and prlimit, /usr/bin/vfvm,
#                       /lib/testbed.sh, and the guest's
#                       kernel and initramfs under /guest/
#   guest-base.cpio.gz  the guest's initramfs: busybox, igbvf, virtio_blk,
#                       /lib/guest.sh
#   qemu-layer.cpio.gz  (--with-qemu) qemu-system-x86_64, its libraries and
#                       firmware, appended to the host's initramfs on demand
#   fio-layer.cpio.gz   (--with-fio) fio and its libraries, for the disk
#                       benchmark's guest (appended to its initramfs)
# Idempotent: an image is rebuilt only when its inputs changed.
# VFVM_BIN=path uses that (static) vfvm instead of building it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/testbed.env"
out=$here/out
with_qemu=0 with_fio=0
for a in "$@"; do
  case $a in
    --with-qemu) with_qemu=1 ;;
    --with-fio) with_fio=1 ;;
    *) echo "usage: $0 [--with-qemu] [--with-fio]" >&2; exit 2 ;;
  esac
done

[ -f "$KDIR/vmlinuz" ] && [ -x /bin/busybox ] && command -v cpio >/dev/null &&
  command -v qemu-system-x86_64 >/dev/null ||
  { echo "build-images: testbed not set up; run: bash resources/setup-host.sh" >&2; exit 1; }
mkdir -p "$out"

# vfvm, static. Always the workspace's own target dir, whatever the caller's
# CARGO_TARGET_DIR (the harness may use another one for itself).
if [ -z "${VFVM_BIN:-}" ]; then
  cargo build -q --release --target x86_64-unknown-linux-musl -p vmm \
    --manifest-path "$root/Cargo.toml" --target-dir "$root/target"
  VFVM_BIN=$root/target/x86_64-unknown-linux-musl/release/vfvm
fi
[ -x "$VFVM_BIN" ] || { echo "build-images: no vfvm binary at $VFVM_BIN" >&2; exit 1; }
if ldd "$VFVM_BIN" 2>&1 | grep -q '=>'; then
  echo "build-images: $VFVM_BIN is dynamically linked; the host image needs a static binary" >&2
  exit 1
fi

# up_to_date NAME INPUT...: true if out/NAME exists and was built from
# exactly these inputs (by content); otherwise records them for stamp NAME.
up_to_date() {
  local name=$1; shift
  stamp_new=$( (echo "$KVER"; sha256sum "$@") | sha256sum | cut -d' ' -f1)
  [ -f "$out/$name" ] && [ "$(cat "$out/.$name.stamp" 2>/dev/null)" = "$stamp_new" ]
}
stamp() { echo "$stamp_new" >"$out/.$1.stamp"; }

# pack DIR FILE: DIR as a gzip'd newc cpio archive, written under a name of
# this process's and renamed into place, so a test reading FILE, or another
# build running at the same time (the benchmark builds its fio layer outside
# the testbed lock), only ever sees a whole image.
pack() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$2.tmp.$$" && mv "$2.tmp.$$" "$2"; }

# add_busybox DIR: busybox and a symlink for each of its applets.
add_busybox() {
  mkdir -p "$1"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,lib/modules}
  cp /bin/busybox "$1/bin/busybox"
  for a in $(/bin/busybox --list-full); do
    [ -e "$1/$a" ] || ln -s /bin/busybox "$1/$a"
  done
}

# add_modules DIR BOOT_MODULE... [-- EXTRA_MODULE...]: the modules and their
# dependencies, decompressed for busybox insmod, as /lib/modules/NAME.ko;
# /lib/modules/boot.list names those /init loads, in load order.
add_modules() {
  local dir=$1 list=boot m f; shift
  for m in "$@"; do
    [ "$m" = -- ] && { list=; continue; }
    /sbin/modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}' |
      while read -r f; do
        name=$(basename "$f" .ko.xz)
        [ -f "$dir/lib/modules/$name.ko" ] && continue
        xz -dc "$f" >"$dir/lib/modules/$name.ko"
        [ -z "$list" ] || echo "$name" >>"$dir/lib/modules/boot.list"
      done
  done
}

# add_elf DIR BINARY...: the binaries with their shared libraries and loader.
add_elf() {
  local dir=$1 f; shift
  for f in "$@" $(ldd "$@" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | sort -u); do
    mkdir -p "$dir$(dirname "$f")"
    cp -L "$f" "$dir$f"
  done
}

guest_mods=(igbvf virtio_blk -- button evdev e1000)
host_mods=(kvm-amd vfio-pci vfio_iommu_type1 igb -- igbvf loop dm-mod)

inputs=("$here/testbed.env" "$here/build-images.sh" "$here/initramfs/guest-init" "$here/initramfs/guest.sh")
if ! up_to_date guest-base.cpio.gz "${inputs[@]}"; then
  t=$(mktemp -d) && trap 'rm -rf "$t"' EXIT
  add_busybox "$t"
  add_modules "$t" "${guest_mods[@]}"
  install -m 755 "$here/initramfs/guest-init" "$t/init"
  install -m 644 "$here/initramfs/guest.sh" "$t/lib/guest.sh"
  pack "$t" "$out/guest-base.cpio.gz" && rm -rf "$t" && stamp guest-base.cpio.gz
  echo "build-images: built $out/guest-base.cpio.gz"
fi

inputs=("$here/testbed.env" "$here/build-images.sh" "$here/initramfs/host-init" "$here/initramfs/testbed.sh"
  "$VFVM_BIN" "$out/guest-base.cpio.gz" /sbin/ip /usr/sbin/dmsetup /usr/bin/setpriv /usr/bin/prlimit)
if ! up_to_date host-base.cpio.gz "${inputs[@]}"; then
  t=$(mktemp -d) && trap 'rm -rf "$t"' EXIT
  add_busybox "$t"
  rm "$t/sbin/ip" "$t/bin/ip" "$t/usr/bin/setpriv" "$t/bin/setpriv" 2>/dev/null || true
  add_modules "$t" "${host_mods[@]}"
  # util-linux's setpriv can drop a capability from the bounding set
  # (busybox's cannot): tests run vfvm without CAP_IPC_LOCK with it;
  # prlimit changes a running vfvm's RLIMIT_MEMLOCK.
  add_elf "$t" /sbin/ip /usr/sbin/dmsetup /usr/bin/setpriv /usr/bin/prlimit
  install -m 755 "$here/initramfs/host-init" "$t/init"
  install -m 644 "$here/initramfs/testbed.sh" "$t/lib/testbed.sh"
  install -D -m 755 "$VFVM_BIN" "$t/usr/bin/vfvm"
  install -D -m 644 "$KDIR/vmlinuz" "$t/guest/vmlinuz"
  install -m 644 "$out/guest-base.cpio.gz" "$t/guest/base.cpio.gz"
  pack "$t" "$out/host-base.cpio.gz" && rm -rf "$t" && stamp host-base.cpio.gz
  echo "build-images: built $out/host-base.cpio.gz"
fi

if ! cmp -s "$KDIR/vmlinuz" "$out/vmlinuz"; then
  cp "$KDIR/vmlinuz" "$out/vmlinuz.tmp.$$" && mv "$out/vmlinuz.tmp.$$" "$out/vmlinuz"
fi

qemu=$(command -v qemu-system-x86_64)
firmware=(/usr/share/seabios/bios-256k.bin /usr/share/qemu/{linuxboot_dma,kvmvapic,pvh}.bin)
if [ $with_qemu = 1 ] && ! up_to_date qemu-layer.cpio.gz "$here/build-images.sh" "$qemu" "${firmware[@]}"; then
  t=$(mktemp -d) && trap 'rm -rf "$t"' EXIT
  add_elf "$t" "$qemu"
  for f in "${firmware[@]}"; do install -D -m 644 "$f" "$t$f"; done
  pack "$t" "$out/qemu-layer.cpio.gz" && rm -rf "$t" && stamp qemu-layer.cpio.gz
  echo "build-images: built $out/qemu-layer.cpio.gz"
fi

fio=/usr/bin/fio
if [ $with_fio = 1 ] && ! up_to_date fio-layer.cpio.gz "$here/build-images.sh" "$fio"; then
  t=$(mktemp -d) && trap 'rm -rf "$t"' EXIT
  add_elf "$t" "$fio"
  pack "$t" "$out/fio-layer.cpio.gz" && rm -rf "$t" && stamp fio-layer.cpio.gz
  echo "build-images: built $out/fio-layer.cpio.gz"
fi
