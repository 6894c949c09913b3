//! VF and disk hotplug (issue 11) in one emulated SR-IOV host: a guest
//! booted with no VF gets a VF at slot 6 through `vfvm ctl add-device`,
//! loses it, gets a disk at slot 7 and loses it; the VF and the disk then
//! serve a second VM; errors (a VF held by that VM, a missing device, a
//! slot out of range, an occupied slot) change nothing; the VF comes back
//! at slot 6 (add, remove, add again) with a second VF at slot 5; a remove
//! the (paused) guest cannot acknowledge times out and leaves the device;
//! the other removal leaves slot 6 pinging; the guest's power-off ends
//! with status 1 and every VF released. vm1 runs without CAP_IPC_LOCK with
//! RLIMIT_MEMLOCK = guest RAM + 64 MiB: its RAM is charged once, to vfvm's
//! mlock without a VF and to VFIO's pins with one; a hot-add over a lowered
//! limit is refused with the fix, which then works.

use std::time::Duration;

use vfvm_tests::Testbed;

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// The guest watches slots 4 to 7. A device that appears is reported
/// (`guest.up.SLOT.N`, N counting its appearances); a VF is brought up at
/// 192.0.2.(10 + SLOT) and pings the PF from its own interface
/// (`guest.vf.SLOT.N`: MAC, loss, and the loss of every other VF); a disk
/// has its first 15 bytes read (`guest.disk.SLOT.N`). A device that goes
/// is reported with the other VFs' loss (`guest.gone.SLOT.N`).
const GUEST: &str = r#"
if grep -q acpid=on /proc/cmdline; then
  marker guest.button "$(on_power_button 'poweroff -f')"
fi
# Two VFs in one subnet: each answers ARP for its own address only.
echo 1 >/proc/sys/net/ipv4/conf/all/arp_ignore
echo 2 >/proc/sys/net/ipv4/conf/all/arp_announce
dev() { echo "/sys/bus/pci/devices/0000:00:0$1.0"; }
ping_from() {
  ifc=$(ls "$(dev $1)/net" 2>/dev/null) || { echo none; return 0; }
  ping -I "$ifc" -c 3 -W 2 192.0.2.1 | sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p'
}
without() { w=$1; shift; r=""; for x in "$@"; do [ "$x" = "$w" ] || r="$r $x"; done; echo "$r"; }
others() { o=""; for v in $vfs; do [ "$v" = "$1" ] || o="$o $v=$(ping_from $v)"; done; echo "others:$o"; }
wait_path() { k=100; while [ ! -e "$1" ] && [ $k -gt 0 ]; do k=$((k - 1)); sleep 0.1; done; }
present="" vfs=""
echo "watching"
while :; do
  for s in 4 5 6 7; do
    d=$(dev $s)
    eval "n=\${n$s:-0}"
    case " $present " in
    *" $s "*)
      if [ ! -e "$d" ]; then
        present=$(without $s $present)
        vfs=$(without $s $vfs)
        marker guest.gone.$s.$n "$(others $s)"
      fi ;;
    *)
      if [ -e "$d" ]; then
        n=$((n + 1)); eval "n$s=$n"
        present="$present $s"
        wait_path "$d/driver"
        drv=$(basename "$(readlink "$d/driver")")
        marker guest.up.$s.$n "$(cat "$d/vendor"):$(cat "$d/device") $drv $(cut -d' ' -f1 /proc/uptime)"
        case $drv in
        igbvf)
          wait_path "$d/net"
          ifc=$(ls "$d/net")
          ip link set "$ifc" up
          ip addr add 192.0.2.$((10 + s))/24 dev "$ifc"
          k=100
          while [ "$(cat "/sys/class/net/$ifc/carrier" 2>/dev/null)" != 1 ] && [ $k -gt 0 ]; do
            k=$((k - 1)); sleep 0.1
          done
          vfs="$vfs $s"
          marker guest.vf.$s.$n "$(cat "/sys/class/net/$ifc/address") $(ping_from $s) $(others $s)" ;;
        virtio-pci)
          k=100
          until b=$(ls "$d"/virtio*/block 2>/dev/null) || [ $k = 0 ]; do k=$((k - 1)); sleep 0.1; done
          # The node comes before the disk is ready (ENXIO): retry.
          k=100 v=""
          until v=$(head -c 15 "/dev/$b" 2>/dev/null) && [ ${#v} = 15 ] || [ $k = 0 ]; do
            k=$((k - 1)); sleep 0.1
          done
          marker guest.disk.$s.$n "$v"
          echo "disk read at $(cut -d' ' -f1 /proc/uptime)" ;;
        esac
      fi ;;
    esac
  done
  usleep 100000
done
"#;

const SCENARIO: &str = r#"
S=/tmp/vm1.sock
API_SOCK=$S
# got KEY [SECS]: waits for the guest's marker KEY in vm1's console and marks it for the harness.
got() {
  wait_for "${2:-90}" "grep -qs '^@@$1=' /tmp/com1.log" || die "vm1's guest did not report $1"
  marker "$1" "$(sed -n "s/^@@$1=//p" /tmp/com1.log | tr -d '\r' | head -n 1)"
}
# try KEY CTL-ARGS...: a ctl call's status and output (or error).
try() {
  k=$1; shift; s=0
  ctl "$@" >/tmp/out 2>&1 || s=$?
  marker "$k" "$s $(cat /tmp/out)"
}
ups() { grep -c '^@@guest.up' /tmp/com1.log || true; }
journal() { ls /run/vfvm/journal 2>/dev/null | tr '\n' ' '; }
vmlck() { sed -n 's/^VmLck:[^0-9]*\([0-9]*\) kB/\1/p' /proc/$vm1/status; }
# On any exit: what vfvm logged, for the run's log.
trap 'for f in vm1.err vm2.err com1.log; do sed "s/^/$f: /" /tmp/$f 2>/dev/null; done' EXIT

pf_up
make_vfs 3
VF0=$(vf_bdf 0) VF1=$(vf_bdf 1) VF2=$(vf_bdf 2)
for v in $VF0 $VF1 $VF2; do bind_vfio $v >/dev/null; done
marker host.vfs "$VF0 $VF1 $VF2"
guest_initrd g /guest.sh >/dev/null
dd if=/dev/zero of=/tmp/d.img bs=1M count=4 2>/dev/null
printf 'vfvm-hotplug-ok' | dd of=/tmp/d.img conv=notrunc 2>/dev/null

# Without CAP_IPC_LOCK (util-linux setpriv drops it), RLIMIT_MEMLOCK of
# guest RAM + 64 MiB; exec keeps $! the pid of vfvm.
(ulimit -l $(((256 + 64) * 1024))
  exec /usr/bin/setpriv --bounding-set -ipc_lock vfvm run -c 2 -m 256M -l com1,/tmp/com1.log \
  -s 0,hostbridge -s 31,lpc --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "KCMD acpid=on" \
  --api-sock $S vm1) 2>/tmp/vm1.err &
vm1=$!
wait_for 20 "test -S $S" || die "vm1: no API socket"
wait_for 120 "grep -qs '^watching' /tmp/com1.log" || die "vm1's guest does not watch its slots"
got guest.button
marker host.caps "$(grep CapEff /proc/$vm1/status)"
marker host.vmlck_boot "$(vmlck)"

# 0. RLIMIT_MEMLOCK lowered below guest RAM: the add is refused with the
# fix, nothing appears; the fix it names (guest RAM + 64 MiB again) lets
# the same add through (1.).
u=$(ups)
prlimit --pid $vm1 --memlock=$((200 << 20))
try host.pinlimit add-device -s 6:0,passthru,$VF0,mac=aa:88:44:00:06:01
sleep 1
marker host.after_pinlimit "$u $(ups) $(driver_of $VF0) [$(journal)]"
marker host.vmlck_refused "$(vmlck)"
fix=$(sed -n 's/.*`\(prlimit [^`]*\)`.*/\1/p' /tmp/out)
marker host.fix "$fix"
prlimit --pid $vm1 --memlock=$(((256 + 64) << 20))

# 1. A VF at slot 6 with a MAC, then removed.
try host.add6 add-device -s 6:0,passthru,$VF0,mac=aa:88:44:00:06:01
got guest.up.6.1
got guest.vf.6.1
marker host.vmlck_vf "$(vmlck)"
marker host.info6 "$(ctl info | grep '^0000:00:06.0')"
try host.remove6 remove-device 6:0
got guest.gone.6.1 10
marker host.vf0_after_remove "$(driver_of $VF0) [$(journal)]"
# Its pins gone with it, vfvm's mlock holds guest RAM again.
wait_for 10 "[ \"\$(vmlck)\" -ge 262144 ]" || true
marker host.vmlck_removed "$(vmlck)"

# 2. A disk at slot 7 (rw), locked while vm1 has it, then removed.
try host.add7 add-device -s 7:0,virtio-blk,/tmp/d.img
got guest.up.7.1
got guest.disk.7.1
s=0; vfvm run -c 1 -m 64M -s 4,virtio-blk,/tmp/d.img --kernel /guest/vmlinuz x 2>/tmp/err || s=$?
marker host.locked "$s $(cat /tmp/err)"
try host.remove7 remove-device 7:0
got guest.gone.7.1 10

# 3. A second VM boots with both: the disk is free again, the VF pings.
vfvm run -c 1 -m 128M -l com1,/tmp/vm2.log -s 0,hostbridge -s 4,virtio-blk,/tmp/d.img \
  -s 5,passthru,$VF0,mac=aa:88:44:00:02:05 --kernel /guest/vmlinuz --initrd /tmp/g.img \
  --cmdline "KCMD" --api-sock /tmp/vm2.sock vm2 2>/tmp/vm2.err &
vm2=$!
wait_for 120 "grep -qs '^@@guest.vf.5.1=' /tmp/vm2.log" || die "vm2's VF did not come up"
marker host.vm2_disk "$(sed -n 's/^@@guest.disk.4.1=//p' /tmp/vm2.log | tr -d '\r')"
marker host.vm2_vf "$(sed -n 's/^@@guest.vf.5.1=//p' /tmp/vm2.log | tr -d '\r')"

# 4. Errors, each answered in one sentence, the guest unaffected.
u=$(ups)
try host.held add-device -s 6:0,passthru,$VF0
try host.missing add-device -s 6:0,passthru,0000:07:00.0
try host.range add-device -s 0:0,passthru,$VF2
try host.range40 add-device -s 40:0,passthru,$VF2
try host.bridge remove-device 0:0
try host.noid remove-device 9:9
sleep 1
marker host.ups_after_errors "$u $(ups)"
vfvm ctl --api-sock /tmp/vm2.sock shutdown --timeout 0
s=0; wait $vm2 || s=$?
marker host.vm2_status $s

# 5. The same VF at slot 6 again (add, remove, add), and a second VF at 5.
try host.readd6 add-device -s 6:0,passthru,$VF0,mac=aa:88:44:00:06:02
got guest.vf.6.2
try host.add5 add-device -s 5:0,passthru,$VF1,mac=aa:88:44:00:05:01
got guest.vf.5.1
marker host.vmlck_two "$(vmlck)"
try host.occupied add-device -s 6:0,passthru,$VF2

# 6. A remove the paused guest cannot acknowledge times out; the VF stays.
ctl pause
try host.unacked remove-device 6:0 --timeout 2
ctl resume
sleep 2
marker host.after_unacked "$(grep -c '^@@guest.gone.6.2' /tmp/com1.log || true) $(ping -c 3 -W 2 192.0.2.16 | sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p')"
marker host.info_after_unacked "$(ctl info | grep '^0000:00:06.0')"

# 7. Slot 5 goes; slot 6 keeps pinging.
try host.remove5 remove-device 5:0
got guest.gone.5.1 10
marker host.info_ids "$(ctl info --json | tr -d ' \n' | grep -o '"id":"[^"]*"' | tr '\n' ' ')"

# 8. The guest powers off (the button): status 1, every VF released.
ctl power-button
s=0; wait $vm1 || s=$?
marker host.vm1_status $s
marker host.released "$(driver_of $VF0) $(driver_of $VF1) [$(journal)]"
"#;

#[test]
fn vf_and_disk_hotplug() {
    let run = Testbed::new()
        .file("guest.sh", GUEST)
        .scenario(&SCENARIO.replace("KCMD", GUEST_CMDLINE))
        .timeout(Duration::from_secs(900))
        .run()
        .unwrap();
    let m = |k: &str| run.expect_marker(k);
    let vfs: Vec<&str> = m("host.vfs").split_whitespace().collect();
    let vf0 = vfs[0];
    let loss = |v: &str| v.split_whitespace().nth(1).map(str::to_string);
    // Guest RAM (256 MiB = 262144 kB) charged once, never twice: VmLck is
    // vfvm's mlock or VFIO's pins, plus at most a few MiB of its own.
    let once = |key: &str| {
        let v = m(key);
        let kb: u64 = v.parse().unwrap_or_else(|_| panic!("{key}: {v:?}"));
        assert!(
            (262_144..262_144 + 16_384).contains(&kb),
            "{key}: VmLck {kb} kB"
        );
    };

    // 0. vm1 without CAP_IPC_LOCK (bit 14); a lowered RLIMIT_MEMLOCK
    // refuses the add in one sentence naming it and the fix, the guest
    // and the VF unaffected.
    let caps = m("host.caps")
        .trim_start_matches("CapEff:")
        .trim()
        .to_string();
    let caps = u64::from_str_radix(&caps, 16).unwrap();
    assert_eq!(caps & (1 << 14), 0, "CAP_IPC_LOCK not dropped: {caps:x}");
    once("host.vmlck_boot");
    let refused = m("host.pinlimit");
    for want in [
        "1 vfvm: error: passthru: cannot pin 256 MiB of guest memory for the VF's DMA: RLIMIT_MEMLOCK is 200 MiB; raise it with `prlimit --pid ",
        " --memlock=335544320` and add the device again, or run vfvm with CAP_IPC_LOCK (404)",
    ] {
        assert!(refused.contains(want), "{refused:?} does not say {want:?}");
    }
    assert!(!refused.contains('\n'), "one line: {refused:?}");
    let after: Vec<&str> = m("host.after_pinlimit").split_whitespace().collect();
    assert_eq!(after[0], after[1], "nothing new appeared in the guest");
    assert_eq!(after[2..], ["vfio-pci", "[]"], "the VF released");
    once("host.vmlck_refused");
    assert!(
        m("host.fix").starts_with("prlimit --pid ")
            && m("host.fix").ends_with(" --memlock=335544320"),
        "{}",
        m("host.fix")
    );

    // 1. The VF at exactly 0000:00:06.0, bound to igbvf, with the MAC, pinging.
    assert_eq!(m("host.add6"), "0 added 6:0 at 0000:00:06.0");
    assert!(
        m("guest.up.6.1").starts_with("0x8086:0x10ca igbvf "),
        "{}",
        m("guest.up.6.1")
    );
    let vf6 = m("guest.vf.6.1");
    assert!(vf6.starts_with("aa:88:44:00:06:01 0 "), "{vf6}");
    once("host.vmlck_vf");
    let row: Vec<&str> = m("host.info6").split_whitespace().collect();
    assert_eq!(
        row,
        [
            "0000:00:06.0",
            "passthru",
            vf0,
            "aa:88:44:00:06:01",
            "0",
            "6:0"
        ]
    );
    assert_eq!(m("host.remove6"), "0");
    assert_eq!(
        m("host.vf0_after_remove"),
        "vfio-pci []",
        "released, no journal left"
    );
    once("host.vmlck_removed");

    // 2. The disk reads back what the host wrote; it is locked while added.
    assert_eq!(m("host.add7"), "0 added 7:0 at 0000:00:07.0");
    let up7 = m("guest.up.7.1");
    assert!(up7.starts_with("0x1af4:0x1042 virtio-pci "), "{up7}");
    assert_eq!(m("guest.disk.7.1"), "vfvm-hotplug-ok");
    let locked = m("host.locked");
    assert!(
        locked.starts_with("4 ") && locked.contains("in use by another VM (locked)"),
        "{locked}"
    );
    assert_eq!(m("host.remove7"), "0");

    // 3. Another VM gets the image and the VF at once.
    assert_eq!(m("host.vm2_disk"), "vfvm-hotplug-ok");
    assert_eq!(
        loss(m("host.vm2_vf")).as_deref(),
        Some("0"),
        "{}",
        m("host.vm2_vf")
    );

    // 4. Errors: 4xx, one line each, the guest unaffected.
    for (key, status, wants) in [
        ("host.held", "404", "in use by VM vm2"),
        ("host.missing", "404", "0000:07:00.0"),
        ("host.range", "400", "slot 0 is out of range"),
        ("host.bridge", "400", "cannot be removed"),
        ("host.noid", "404", "no device has id \"9:9\""),
    ] {
        let v = m(key);
        assert!(v.starts_with("1 vfvm: error: "), "{key}: {v}");
        assert!(v.ends_with(&format!("({status})")), "{key}: {v}");
        assert!(v.contains(wants), "{key}: {v}");
        assert!(!v.contains('\n'), "{key}: one line");
    }
    // Slot 40 does not get past the -s parser vfvm run uses.
    let range40 = m("host.range40");
    assert!(
        range40.starts_with("1 vfvm: error: -s 40:0,passthru,")
            && range40.contains(": slot is out of range (use 0..31)"),
        "{range40}"
    );
    let ups: Vec<&str> = m("host.ups_after_errors").split_whitespace().collect();
    assert_eq!(ups[0], ups[1], "nothing new appeared in the guest");
    assert_eq!(m("host.vm2_status"), "1");

    // 5. Add, remove, add again; two VFs at once.
    assert_eq!(m("host.readd6"), "0 added 6:0 at 0000:00:06.0");
    assert!(
        m("guest.vf.6.2").starts_with("aa:88:44:00:06:02 0 "),
        "{}",
        m("guest.vf.6.2")
    );
    assert_eq!(m("host.add5"), "0 added 5:0 at 0000:00:05.0");
    let vf5 = m("guest.vf.5.1");
    assert!(vf5.starts_with("aa:88:44:00:05:01 0 others: 6=0"), "{vf5}");
    once("host.vmlck_two");
    let occupied = m("host.occupied");
    assert!(
        occupied.starts_with("1 ")
            && occupied.contains("slot 6 is in use")
            && occupied.ends_with("(400)"),
        "{occupied}"
    );

    // 6. The unacknowledged removal: an error, and the VF stays and pings.
    let unacked = m("host.unacked");
    assert!(
        unacked.starts_with("1 ")
            && unacked.contains("did not eject 0000:00:06.0")
            && unacked.ends_with("(500)"),
        "{unacked}"
    );
    assert_eq!(
        m("host.after_unacked"),
        "0 0",
        "not gone, and the host pings it"
    );
    assert!(m("host.info_after_unacked").split_whitespace().eq([
        "0000:00:06.0",
        "passthru",
        vf0,
        "aa:88:44:00:06:02",
        "0",
        "6:0"
    ]));

    // 7. Slot 5 removed, slot 6 still pings.
    assert_eq!(m("host.remove5"), "0");
    assert_eq!(m("guest.gone.5.1"), "others: 6=0");
    let ids = m("host.info_ids");
    assert!(
        ids.contains(r#""id":"6:0""#) && !ids.contains(r#""id":"5:0""#),
        "{ids}"
    );

    // 8. Power-off: status 1, the VFs back on vfio-pci, no journal left.
    assert_eq!(m("host.vm1_status"), "1");
    assert_eq!(m("host.released"), "vfio-pci vfio-pci []");
}
