# Shell helpers for host scenarios, sourced by /init before /scenario.sh.
# Scenarios run with `set -e` in /tmp (a tmpfs). See resources/README.md.

PF=0000:01:00.0
PF_ADDR=192.0.2.1

# Busybox sh runs its own applets before searching PATH: iproute2's ip (which
# can set VF attributes) must be called by its path.
ip() { /sbin/ip "$@"; }

# marker KEY VALUE...: a line the Rust harness parses (Run::marker).
marker() { k=$1; shift; echo "@@$k=$*"; }

# die MSG: report the error as a marker and fail the scenario.
die() { marker host.error "$*"; exit 1; }

# pf_if: the PF's network interface name.
pf_if() { ls "/sys/bus/pci/devices/$PF/net"; }

# pf_up: PF up with 192.0.2.1/24, waiting (10 s at most) for its carrier.
# Do this before make_vfs: a VF MAC set while the PF is down is ignored.
pf_up() {
  ifc=$(pf_if)
  ip link set "$ifc" up
  pf_wait_carrier
  ip addr add "$PF_ADDR/24" dev "$ifc"
}

# pf_wait_carrier: wait (10 s at most) for the PF's link.
pf_wait_carrier() {
  wait_for 10 "[ \"\$(cat /sys/class/net/$(pf_if)/carrier 2>/dev/null)\" = 1 ]" ||
    die "PF $(pf_if) has no carrier"
}

# wait_for SECS SHELL-CONDITION: poll the condition every 0.1 s.
wait_for() {
  n=$(($1 * 10)); shift
  while ! eval "$*"; do
    n=$((n - 1)); [ "$n" -gt 0 ] || return 1
    sleep 0.1
  done
}

# make_vfs N: create N VFs (up to 7), left unbound (no driver autoprobe).
# Enabling SR-IOV resets the PF: if it is up, this waits for its link.
make_vfs() {
  echo 0 >"/sys/bus/pci/devices/$PF/sriov_drivers_autoprobe"
  echo "$1" >"/sys/bus/pci/devices/$PF/sriov_numvfs"
  [ $(($(cat "/sys/class/net/$(pf_if)/flags") & 1)) = 0 ] || pf_wait_carrier
}

# vf_bdf IDX: the PCI address of VF IDX (0 -> 0000:01:10.0, 1 -> 0000:01:10.2).
vf_bdf() { basename "$(readlink "/sys/bus/pci/devices/$PF/virtfn$1")"; }

# vf_mac IDX MAC: set VF IDX's MAC through the PF (needs the PF up).
vf_mac() { ip link set "$(pf_if)" vf "$1" mac "$2"; }

# bind_driver BDF DRIVER: (re)bind a PCI device to DRIVER.
bind_driver() {
  d=/sys/bus/pci/devices/$1
  [ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
  echo "$2" >"$d/driver_override"
  echo "$1" >/sys/bus/pci/drivers_probe
  [ "$(basename "$(readlink "$d/driver")")" = "$2" ] || die "$1 did not bind to $2"
}

# bind_vfio BDF: hand a VF to vfio-pci; prints its /dev/vfio/GROUP path.
bind_vfio() {
  bind_driver "$1" vfio-pci
  g=/dev/vfio/$(iommu_group "$1")
  wait_for 5 "[ -c $g ]" || die "$g did not appear"
  echo "$g"
}

# bind_igbvf BDF: give a VF to the host's own igbvf driver.
bind_igbvf() {
  grep -q '^igbvf ' /proc/modules || insmod /lib/modules/igbvf.ko
  bind_driver "$1" igbvf
}

# iommu_group BDF: the device's IOMMU group number.
iommu_group() { basename "$(readlink "/sys/bus/pci/devices/$1/iommu_group")"; }

# pci_id BDF: VENDOR:DEVICE without 0x, e.g. 8086:10ca for an igb VF.
pci_id() {
  d=/sys/bus/pci/devices/$1
  echo "$(cut -c3- "$d/vendor"):$(cut -c3- "$d/device")"
}

# guest_initrd NAME SCRIPT [FILE...]: /tmp/NAME.img = the guest base
# initramfs + SCRIPT as the guest's /scenario.sh (+ FILEs in the guest's /).
# Prints the image path.
guest_initrd() {
  name=$1 script=$2; shift 2
  o=/tmp/.overlay-$name
  rm -rf "$o" && mkdir -p "$o"
  cp "$script" "$o/scenario.sh"
  [ $# -eq 0 ] || cp "$@" "$o/"
  (cd "$o" && find . | cpio -o -H newc 2>/dev/null) | gzip >"$o.cpio.gz"
  cat /guest/base.cpio.gz "$o.cpio.gz" >"/tmp/$name.img"
  rm -rf "$o" "$o.cpio.gz"
  echo "/tmp/$name.img"
}

# qemu_guest IMG VF_BDF [QEMU-ARGS...]: boot the guest kernel with IMG and
# VF_BDF passed through under QEMU/KVM (needs the QEMU layer: Testbed::qemu).
# The guest's console goes to stdout.
qemu_guest() {
  img=$1 vf=$2; shift 2
  qemu-system-x86_64 -machine q35 -accel kvm -cpu host -smp 1 -m 256 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel /guest/vmlinuz -initrd "$img" \
    -append "console=ttyS0 quiet panic=-1" \
    -device "vfio-pci,host=$vf" "$@" </dev/null
}

# debug_shell: an interactive shell with these helpers, on the console. The
# harness gives QEMU no input, so it returns at once there; replay the run's
# qemu.sh in a terminal to use it (resources/README.md).
debug_shell() { ENV=/lib/testbed.sh setsid cttyhack sh || true; }
