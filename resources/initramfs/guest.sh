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

# vf_up ADDR: VF interface up with ADDR/24, waiting (10 s at most) for its
# carrier. Prints the interface name.
vf_up() {
  ifc=$(vf_if) || { marker guest.error "no igbvf interface"; return 1; }
  ip link set "$ifc" up
  ip addr add "$1/24" dev "$ifc"
  n=100
  while [ "$(cat "/sys/class/net/$ifc/carrier" 2>/dev/null)" != 1 ]; do
    n=$((n - 1)); [ "$n" -gt 0 ] || { marker guest.error "$ifc: no carrier"; return 1; }
    sleep 0.1
  done
  echo "$ifc"
}

# ping_loss ADDR COUNT: packet loss in percent (a number) of COUNT pings.
ping_loss() {
  ping -c "$2" -W 2 "$1" | sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p'
}
