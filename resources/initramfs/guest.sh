# Shell helpers for guest scenarios, sourced by the guest's /init before
# /scenario.sh. Scenarios run with `set -e` in /tmp. See resources/README.md.

PF_ADDR=192.0.2.1

# marker KEY VALUE...: a line the Rust harness parses (Run::marker); it
# reaches the harness through the VMM's serial console and the host's.
marker() { k=$1; shift; echo "@@$k=$*"; }

# vf_if: the interface of the first igbvf device.
vf_if() {
  for n in /sys/class/net/*; do
    [ "$(basename "$(readlink "$n/device/driver" 2>/dev/null)")" = igbvf ] &&
      { basename "$n"; return 0; }
  done
  return 1
}

# if_up IFC ADDR: interface IFC up with ADDR/24, waiting (10 s at most)
# for its carrier; without one, marker guest.error (on stderr, so it is
# seen inside $(...) too) and status 1.
if_up() {
  ip link set "$1" up
  ip addr add "$2/24" dev "$1"
  local n=100
  while [ "$(cat "/sys/class/net/$1/carrier" 2>/dev/null)" != 1 ]; do
    n=$((n - 1)); [ "$n" -gt 0 ] || { marker guest.error "$1: no carrier" >&2; return 1; }
    sleep 0.1
  done
}

# vf_up ADDR: the igbvf interface up with ADDR/24 (if_up). Prints its name.
vf_up() {
  ifc=$(vf_if) || { marker guest.error "no igbvf interface" >&2; return 1; }
  if_up "$ifc" "$1" && echo "$ifc"
}

# hold: waits for a line on the console (the host's `release TAG`), 100 s
# at most.
hold() { read -r -t 100 reply || true; }

# ping_loss ADDR COUNT: packet loss in percent (a number) of COUNT pings.
ping_loss() {
  ping -c "$2" -W 2 "$1" | sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p'
}

# on_power_button CMD: run CMD when the ACPI power button is pressed, as a
# distribution's acpid or systemd-logind would: loads the button and evdev
# drivers, waits for the button's input device and starts busybox acpid
# with CMD as its handler of "button/power PWRF 00000080". Prints the
# input device's name.
on_power_button() {
  insmod /lib/modules/evdev.ko 2>/dev/null || true
  insmod /lib/modules/button.ko 2>/dev/null || true
  n=50
  until grep -qs "Power Button" /sys/class/input/input*/name && ls /dev/input/event* >/dev/null 2>&1; do
    n=$((n - 1)); [ "$n" -gt 0 ] || { marker guest.error "no power button input device"; return 1; }
    sleep 0.1
  done
  mkdir -p /etc/acpi/PWRF
  printf '#!/bin/sh\n%s\n' "$1" >/etc/acpi/PWRF/00000080
  chmod 755 /etc/acpi/PWRF/00000080
  acpid -c /etc/acpi -l /tmp/acpid.log
  grep -h "Power Button" /sys/class/input/input*/name | head -n 1
}
