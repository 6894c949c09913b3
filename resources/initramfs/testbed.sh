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

# json_marker KEY CMD...: CMD's output, JSON, as one marker line (newlines
# are only whitespace in JSON); the harness parses it (Run::json).
json_marker() { k=$1; shift; marker "$k" "$("$@" | tr -d '\n')"; }

# json_lines FILE: FILE's lines as a JSON array of strings (tabs become
# spaces, other control characters go).
json_lines() {
  tr '\t' ' ' <"$1" | tr -d '\000-\010\013-\037' |
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' |
    awk 'BEGIN { printf "[" } { printf "%s\"%s\"", (NR > 1 ? "," : ""), $0 } END { printf "]" }'
}

# check NAME CMD...: runs CMD (60 s at most, so a hang fails the case, not
# the run) with no input, and reports marker host.NAME as JSON:
# {"status": N, "stderr": [LINE...], "stdout_bytes": N} (Run::outcome).
check() {
  name=$1; shift
  st=0
  timeout 60 "$@" </dev/null >"/tmp/$name.out" 2>"/tmp/$name.err" || st=$?
  marker "host.$name" "{\"status\":$st,\"stderr\":$(json_lines "/tmp/$name.err"),\"stdout_bytes\":$(wc -c <"/tmp/$name.out")}"
}

# ctl CTL-ARGS...: vfvm ctl on the API socket $API_SOCK (default
# /tmp/api.sock). A shell function: check and timeout need vfvm ctl itself.
ctl() { vfvm ctl --api-sock "${API_SOCK:-/tmp/api.sock}" "$@"; }

GUEST_CMDLINE="console=ttyS0 quiet panic=-1"

# vm TAG EXTRA-CMDLINE VFVM-ARGS...: boots /guest/vmlinuz with /tmp/g.img
# (make it with guest_initrd g SCRIPT) as VM "vmTAG", 2 vCPUs, 512 MiB, a
# host bridge and VFVM-ARGS (150 s at most). The kernel command line gets
# "run=TAG EXTRA-CMDLINE", so several runs can be told apart. The console
# goes to /tmp/vm-TAG.log, of which the markers and vfvm's lines are
# printed; vfvm's exit status is marker host.TAG.status.
vm() {
  tag=$1 extra=$2; shift 2
  st=0
  # Through a file: once, with the console going straight to the emulated
  # host's console, a run stalled without any output.
  timeout 150 vfvm run -c 2 -m 512M -l com1,stdio -s 0,hostbridge "$@" \
    --kernel /guest/vmlinuz --initrd /tmp/g.img \
    --cmdline "console=ttyS0 quiet panic=-1 run=$tag $extra" "${VMNAME:-vm$tag}" \
    </dev/null >"/tmp/vm-$tag.log" 2>&1 || st=$?
  grep -e @@ -e vfvm: -e igbvf -e BUG -e WARN "/tmp/vm-$tag.log" || true
  marker "host.$tag.status" "$st"
}

# vm_start TAG EXTRA-CMDLINE VFVM-ARGS...: `vm` in the background (pid in
# /tmp/vm-TAG.pid), VM_CPUS vCPUs (2) and VM_MEM (512M), its console input a
# FIFO that stays open until vm_wait: `release TAG` writes the guest a line,
# which a guest in `hold` waits for.
vm_start() {
  tag=$1 extra=$2; shift 2
  rm -f "/tmp/vm-$tag.in" && mkfifo "/tmp/vm-$tag.in"
  timeout 150 vfvm run -c "${VM_CPUS:-2}" -m "${VM_MEM:-512M}" -l com1,stdio -s 0,hostbridge "$@" \
    --kernel /guest/vmlinuz --initrd /tmp/g.img \
    --cmdline "console=ttyS0 quiet panic=-1 run=$tag $extra" "${VMNAME:-vm$tag}" \
    <"/tmp/vm-$tag.in" >"/tmp/vm-$tag.log" 2>&1 &
  echo $! >"/tmp/vm-$tag.pid"
  # The FIFO's writer until vm_wait: without one vfvm would read EOF.
  sleep 600 >"/tmp/vm-$tag.in" &
  echo $! >"/tmp/vm-$tag.writer"
}

# vm_up TAG: waits (150 s at most) for the guest's marker TAG.up; else
# marker host.TAG.timeout.
vm_up() { wait_for 150 "grep -q '@@$1.up=' /tmp/vm-$1.log" || marker "host.$1.timeout" yes; }

# release TAG: a line on VM TAG's console (a guest in `hold` goes on);
# 10 s at most, as a FIFO without a reader (vfvm gone) would block.
release() { timeout 10 sh -c 'echo >"$0"' "/tmp/vm-$1.in" || true; }

# vm_wait TAG: waits for VM TAG of vm_start to end; as `vm`, its markers
# and vfvm's lines printed, its status as marker host.TAG.status.
vm_wait() {
  st=0; wait "$(cat "/tmp/vm-$1.pid")" || st=$?
  kill "$(cat "/tmp/vm-$1.writer")" 2>/dev/null || true
  grep -e @@ -e vfvm: -e igbvf -e BUG -e WARN "/tmp/vm-$1.log" || true
  marker "host.$1.status" "$st"
}

# vm_err NAME VFVM-ARGS...: a vfvm run with /tmp/g.img that must fail
# before the guest starts: check NAME with 1 vCPU, 128 MiB, a host bridge.
vm_err() {
  name=$1; shift
  check "$name" vfvm run -c 1 -m 128M -l com1,stdio -s 0,hostbridge "$@" \
    --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "$GUEST_CMDLINE" e
}

# driver_of BDF: the driver bound to a PCI device.
driver_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver")"; }

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
