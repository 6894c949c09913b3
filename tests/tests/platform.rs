//! Issue 16 (and #9's guest-log flood): what the guest sees of its
//! platform (SMBIOS, the RTC), how vfvm ends when the guest halts, and that
//! a guest flooding bad register writes cannot flood vfvm's log. One
//! emulated-host boot, several vfvm runs in it.

use std::time::Duration;

use vfvm_tests::Testbed;

/// The guest. Its mode comes from `mode=` on the kernel command line:
/// - `dmi`: SMBIOS and RTC checks, then `halt -f`;
/// - `idle`: the system UUID, then 30 s idle, then power off;
/// - `uuid`: the system UUID only;
/// - `flood`: the UUID, then hundreds of bad writes to the virtio-blk
///   device's common config (its driver unbound so /dev/mem may map it).
const GUEST: &str = r#"
tag=$(sed -n 's/.*run=\([^ ]*\).*/\1/p' /proc/cmdline)
mode=$(sed -n 's/.*mode=\([^ ]*\).*/\1/p' /proc/cmdline)
id=/sys/class/dmi/id
marker "$tag.uuid" "$(cat $id/product_uuid 2>&1)"
case $mode in
dmi)
  marker "$tag.vendor" "$(cat $id/sys_vendor)"
  marker "$tag.product" "$(cat $id/product_name)"
  marker "$tag.bios_vendor" "$(cat $id/bios_vendor)"
  if grep -q 'io.systemd.credential:hello=world' /sys/firmware/dmi/entries/11-0/raw; then
    marker "$tag.oem" found
  fi
  marker "$tag.dmi_types" $(cat /sys/firmware/dmi/entries/*/type | sort -n | uniq)
  marker "$tag.sockets" "$(ls /sys/firmware/dmi/entries | grep -c '^4-')"
  marker "$tag.dmesg_bad" "$(dmesg | grep -c -e 'DMI not present' -e 'rtc_cmos.*failed' || true)"
  marker "$tag.rtc0" "$(ls /dev/rtc0 2>&1)"
  rtc=$(hwclock -r -u 2>&1)
  marker "$tag.hwclock" "$rtc"
  rtc_s=$(date -u -D '%a %b %e %H:%M:%S %Y' -d "${rtc%  *}" +%s)
  skew=$(( $(date -u +%s) - rtc_s ))
  marker "$tag.rtc_skew" "${skew#-}"
  # The alarm interrupt, end to end: rtc_cmos programs the alarm, IRQ 8
  # arrives through the IOAPIC, the RTC core clears the alarm.
  # rtc0's count in /proc/interrupts, summed over the CPUs.
  irqs() { awk '/rtc0/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' /proc/interrupts; }
  before=$(irqs)
  echo +2 > /sys/class/rtc/rtc0/wakealarm
  n=60
  while [ -n "$(cat /sys/class/rtc/rtc0/wakealarm)" ] && [ $n -gt 0 ]; do
    n=$((n - 1)); sleep 0.1
  done
  marker "$tag.alarm" "$(cat /sys/class/rtc/rtc0/wakealarm) irqs=$(( $(irqs) - before ))"
  marker "$tag.halt_at" "$(date +%s)"
  halt -f
  ;;
idle)
  sleep 30
  marker "$tag.idle_done" yes
  ;;
flood)
  d=/sys/bus/pci/devices/0000:00:04.0
  echo 0000:00:04.0 > $d/driver/unbind
  bar=$(head -n 1 $d/resource | cut -d' ' -f1)
  start=$(date +%s)
  i=0
  while [ $i -lt 300 ]; do
    devmem $bar 8 0x01
    i=$((i + 1))
  done
  marker "$tag.flooded" $i
  marker "$tag.flood_secs" $(( $(date +%s) - start ))
  ;;
esac
"#;

/// `vm TAG MODE ARGS...` boots the guest with ARGS (after the common ones),
/// keeps its console in /tmp/vm-TAG.log and vfvm's stderr in
/// /tmp/vm-TAG.err, and records vfvm's status as `host.TAG.status` and
/// when it ended (`date +%s`) as `host.TAG.end`.
const HOST: &str = r#"
pf_up
make_vfs 1
vf=$(vf_bdf 0)
bind_vfio "$vf" >/dev/null
guest_initrd g /guest.sh >/dev/null
dd if=/dev/zero of=/tmp/disk.img bs=1M count=1 2>/dev/null
vm() {
  tag=$1 mode=$2; shift 2
  st=0
  timeout 200 vfvm run -m 256M -l com1,stdio "$@" \
    --kernel /guest/vmlinuz --initrd /tmp/g.img \
    --cmdline "console=ttyS0 quiet panic=-1 run=$tag mode=$mode" \
    </dev/null >/tmp/vm-$tag.log 2>/tmp/vm-$tag.err || st=$?
  grep -a @@ /tmp/vm-$tag.log || true
  tail -n 5 /tmp/vm-$tag.err
  marker "host.$tag.status" "$st"
  marker "host.$tag.end" "$(date +%s)"
}

vm dmi dmi -c 2 -s 0,hostbridge -s 5,passthru,$vf \
  -U 6ba7b810-9dad-11d1-80b4-00c04fd430c8 \
  --oem-string io.systemd.credential:hello=world --oem-string second dmi
# The VF was released: a second VM can have it at once.
vm idle idle -c 2 -s 0,hostbridge -s 5,passthru,$vf alpha
vm again uuid alpha
vm flood flood -s 0,hostbridge -s 4,virtio-blk,/tmp/disk.img beta
marker host.flood.lines "$(wc -l < /tmp/vm-flood.err)"
marker host.flood.common "$(grep -c 'common config' /tmp/vm-flood.err || true)"
marker host.flood.suppressed "$(grep -c 'suppressed' /tmp/vm-flood.err || true)"
"#;

#[test]
fn smbios_rtc_halt_and_a_bounded_guest_log() {
    let run = Testbed::new()
        .file("guest.sh", GUEST)
        .scenario(HOST)
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    let m = |k: &str| run.expect_marker(k);

    // SMBIOS: -U, vendor and product, OEM strings, every table type.
    assert_eq!(m("dmi.uuid"), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
    assert_eq!(m("dmi.vendor"), "vfvm");
    assert_eq!(m("dmi.product"), "vfvm");
    assert_eq!(m("dmi.bios_vendor"), "vfvm");
    assert_eq!(m("dmi.oem"), "found");
    assert_eq!(m("dmi.dmi_types"), "0 1 3 4 11 16 17 19 32 127");
    assert_eq!(
        m("dmi.sockets"),
        "2",
        "-c 2 is two sockets: one type 4 each"
    );
    // The RTC: no probe failure, /dev/rtc0, host time, the alarm interrupt.
    assert_eq!(m("dmi.dmesg_bad"), "0");
    assert_eq!(m("dmi.rtc0"), "/dev/rtc0");
    let skew: u64 = m("dmi.rtc_skew").parse().unwrap();
    assert!(skew <= 3, "hwclock {} is {skew} s off", m("dmi.hwclock"));
    // The alarm is gone (empty wakealarm) and IRQ 8 arrived.
    let alarm = m("dmi.alarm").trim();
    assert!(
        alarm.starts_with("irqs=") && alarm != "irqs=0",
        "alarm: {alarm}"
    );
    // halt -f: bhyve's status 2, a few seconds later (the guest's clock is
    // the host's, through kvmclock), the VF released (the next VM has it).
    assert_eq!(m("host.dmi.status"), "2");
    let halt_at: u64 = m("dmi.halt_at").parse().unwrap();
    let end: u64 = m("host.dmi.end").parse().unwrap();
    assert!(
        end.saturating_sub(halt_at) <= 10,
        "vfvm ended {} s after halt -f",
        end - halt_at
    );

    // Without -U: one name, one UUID across boots; another name, another.
    let alpha = m("idle.uuid");
    assert_eq!(alpha.len(), 36, "{alpha}");
    assert_eq!(m("again.uuid"), alpha);
    assert_ne!(m("flood.uuid"), alpha);
    // Idle for 30 s with a VF is not halted: the guest powers off (status 1).
    assert_eq!(m("idle.idle_done"), "yes");
    assert_eq!(m("host.idle.status"), "1");
    assert_eq!(m("host.again.status"), "1");

    // 300 bad writes: vfvm keeps running and logs at most 10 lines per
    // 10 s about them, and says how many it held back.
    assert_eq!(m("flood.flooded"), "300");
    assert_eq!(m("host.flood.status"), "1");
    let secs: u32 = m("flood.flood_secs").parse().unwrap();
    let common: u32 = m("host.flood.common").parse().unwrap();
    let bound = 10 * (secs / 10 + 2);
    assert!(
        (1..=bound).contains(&common),
        "{common} lines about {secs} s of bad writes"
    );
    assert!(m("host.flood.suppressed").parse::<u32>().unwrap() >= 1);
    let lines: u32 = m("host.flood.lines").parse().unwrap();
    assert!(lines <= bound + 10, "{lines} lines on stderr");
}
