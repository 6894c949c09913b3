//! The REST API on `vfvm run --api-sock`, driven by `vfvm ctl` (and by
//! `api/examples/api_stress.rs` where busybox has no client) against real
//! guests in one emulated SR-IOV host: a VM with a VF at 5:0 and a disk at
//! 4:0 (info, counters read from the PF, pause/resume, load, malformed
//! requests, the power button), then a guest that ignores the button
//! (shutdown --timeout), a guest under hostile clients (SIGTERM), and a
//! reboot. `cloud_hypervisors_ch_remote` (ignored unless VFVM_CH_REMOTE
//! names a ch-remote built from Cloud Hypervisor's source) drives the same
//! API with Cloud Hypervisor's own client, hotplug and NMI included.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vfvm_tests::Testbed;

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// The guest: acpid (if asked) powers off on the button; the VF up (if
/// there is one); its disk read; then a tick every 100 ms on the console.
const GUEST: &str = r#"
if grep -q acpid=on /proc/cmdline; then
  marker guest.button "$(on_power_button 'poweroff -f')"
fi
if vf_if >/dev/null; then
  marker guest.vf "$(vf_up 192.0.2.2)"
fi
if [ -b /dev/vda ]; then dd if=/dev/vda of=/dev/null bs=4k count=64 2>/dev/null; fi
i=0
while :; do
  i=$((i + 1))
  echo "tick $i"
  usleep 100000
done
"#;

const SCENARIO: &str = r#"
S=/tmp/api.sock
ticks() { grep -c '^tick' /tmp/com1.log; }
# start_vm NAME CMDLINE_EXTRA -s...: vfvm in the background, console in /tmp/com1.log
start_vm() {
  name=$1 extra=$2; shift 2
  : >/tmp/com1.log
  vfvm run -c 2 -m 256M -l com1,/tmp/com1.log -s 0,hostbridge "$@" -s 31,lpc \
    --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "KCMD $extra" \
    --api-sock $S "$name" 2>/tmp/vfvm.err &
  pid=$!
  wait_for 20 "test -S $S" || die "$name: no API socket"
  wait_for 120 "grep -qs '^tick 5' /tmp/com1.log" || die "$name: the guest does not tick"
}
tenths() { awk '{ printf "%d", $1 * 10 }' /proc/uptime; }
# gone_in KEY: waits for vfvm ($pid; not in a subshell, which cannot wait
# for it) and marks KEY with the tenths of a second it took and its status.
gone_in() {
  t0=$(tenths); st=0; wait $pid || st=$?
  marker "$1" "$(( $(tenths) - t0 )) $st"
}

pf_up
make_vfs 1
VF=$(vf_bdf 0)
bind_vfio $VF >/dev/null
guest_initrd g /guest.sh >/dev/null
dd if=/dev/zero of=/tmp/d.img bs=1M count=4 2>/dev/null
ulimit -n 4096

# A path that is not a socket is refused before anything starts, and kept.
echo keep >/tmp/notsock
s=0; vfvm run --kernel /guest/vmlinuz --api-sock /tmp/notsock x 2>/tmp/err || s=$?
marker host.notsock "$s $(cat /tmp/notsock) $(cat /tmp/err)"

# 1. The VF at 5:0 and the disk at 4:0. Created under umask 0: still 0600.
umask 000
start_vm vm1 acpid=on -s 4,virtio-blk,/tmp/d.img -s 5,passthru,$VF
umask 022
marker host.mode "$(stat -c %a $S)"
s=0; vfvm run --kernel /guest/vmlinuz --api-sock $S other 2>/tmp/err || s=$?
marker host.second "$s $(cat /tmp/err)"
marker host.button "$(sed -n 's/^@@guest.button=//p' /tmp/com1.log | tr -d '\r')"
wait_for 30 "grep -qs '^@@guest.vf=' /tmp/com1.log" || die "the VF did not come up in the guest"
marker host.ping "$(ctl ping | head -n 1)"
ctl info >/tmp/info.txt
marker host.info_vf "$(grep '^0000:00:05.0' /tmp/info.txt)"
marker host.info_disk "$(grep '^0000:00:04.0' /tmp/info.txt)"
marker host.vf_bdf $VF
json_marker host.info_json ctl info --json

json_marker host.counters_before ctl counters --json
marker host.host_ping "$(ping -c 20 -W 2 192.0.2.2 | sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p')"
ctl counters >/tmp/counters.txt
marker host.counters_vf "$(grep '^vf@5:0' /tmp/counters.txt | head -n 1)"
json_marker host.counters_json ctl counters --json

s=0; ctl resume 2>/tmp/err || s=$?
marker host.resume_running "$s $(cat /tmp/err)"
ctl pause
json_marker host.info_paused ctl info --json
a=$(ticks); sleep 1; b=$(ticks)
marker host.paused_ticks "$a $b"
ctl resume
sleep 1
marker host.resumed_ticks "$b $(ticks)"

t1=$(ticks)
/api_stress $S load
marker host.load_ticks "$t1 $(ticks)"

ctl power-button
gone_in host.vm1
marker host.sock_left "$(ls $S 2>/dev/null | wc -l)"
s=0; ctl info 2>/tmp/err || s=$?
marker host.after "$s $(wc -l </tmp/err) $(cat /tmp/err)"

# 2. A guest without acpid: the button does nothing; shutdown --timeout 2 stops it.
start_vm vm2 ""
ctl power-button
sleep 2
marker host.ignored "$(kill -0 $pid 2>/dev/null && echo running)"
ctl shutdown --timeout 2
gone_in host.vm2

# 3. Hostile clients, then SIGTERM during all of it.
start_vm vm3 ""
/api_stress $S hostile >/tmp/stress.out &
spid=$!
wait_for 120 "grep -q '^@@host.stress.ready' /tmp/stress.out" || die "api_stress did not get ready"
cat /tmp/stress.out
t1=$(ticks); sleep 1
marker host.hostile_ticks "$t1 $(ticks)"
kill -TERM $pid
gone_in host.vm3
marker host.sock_left3 "$(ls $S 2>/dev/null | wc -l)"
kill $spid

# 4. Reboot: bhyve's status 0.
start_vm vm4 ""
ctl reboot
gone_in host.vm4
"#;

/// Builds `api/examples/api_stress.rs` as a static binary for the emulated
/// host.
fn api_stress() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = "x86_64-unknown-linux-musl";
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-q", "--release", "--target", target])
        .args(["-p", "api", "--example", "api_stress"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build api_stress");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    std::fs::read(dir.join(target).join("release/examples/api_stress")).expect("api_stress built")
}

fn numbers(s: &str) -> Vec<u64> {
    s.split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

#[test]
fn ctl_and_api_with_a_vf_and_a_disk() {
    let run = Testbed::new()
        .file("guest.sh", GUEST)
        .file("api_stress", api_stress())
        .scenario(&SCENARIO.replace("KCMD", GUEST_CMDLINE))
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    let m = |k: &str| run.expect_marker(k);

    let notsock = m("host.notsock");
    assert!(
        notsock.starts_with("4 keep ") && notsock.contains("not a socket"),
        "{notsock}"
    );
    assert_eq!(m("host.mode"), "600", "socket mode under umask 0");
    let second = m("host.second");
    assert!(
        second.starts_with("4 ") && second.contains("socket in use"),
        "{second}"
    );
    assert!(m("host.ping").starts_with("vfvm "), "{}", m("host.ping"));

    // info: the VF at 00:05.0 with its host address and MAC, the disk at 00:04.0.
    let vf = m("host.vf_bdf");
    let row: Vec<&str> = m("host.info_vf").split_whitespace().collect();
    assert_eq!(&row[..3], ["0000:00:05.0", "passthru", vf], "{row:?}");
    assert!(row[3].len() == 17 && row[3].contains(':'), "MAC {}", row[3]);
    let row: Vec<&str> = m("host.info_disk").split_whitespace().collect();
    assert_eq!(&row[..3], ["0000:00:04.0", "virtio-blk", "/tmp/d.img"]);
    let info: api::VmInfo = serde_json::from_str(m("host.info_json")).expect("--json parses");
    assert_eq!(
        (info.name.as_str(), info.state),
        ("vm1", api::VmState::Running)
    );
    assert_eq!(info.memory.size, 256 << 20);
    assert_eq!(info.cpus.count, 2);
    // No -U: the UUID the guest sees, derived from the name (issue 16).
    assert_eq!(
        info.config["platform"]["uuid"],
        "fe8e35a6-4f41-5beb-8feb-2b18131e3438"
    );
    let dev = info.devices.iter().find(|d| d.id == "5:0").unwrap();
    let p = dev.passthru.as_ref().unwrap();
    assert_eq!(p.host_bdf, vf);
    assert_eq!(p.vf, Some(0), "{p:?}");
    assert!(p.mac.as_deref() == Some(row_mac(&run)), "{p:?}");
    assert!(p.pf.is_some() && p.error.is_none(), "{p:?}");
    assert_eq!(
        info.config["cpus"]["boot_vcpus"], 2,
        "Cloud Hypervisor's field names"
    );
    assert!(info.memory.dma_map_secs > 0.0);
    // Every phase of the start, as the start line has them (issue 13).
    let t = &info.start;
    assert!(t.reserve_secs > 0.0 && t.load_kernel_secs > 0.0, "{t:?}");
    assert_eq!(t.dma_map_secs, info.memory.dma_map_secs, "{t:?}");
    // The kernel loads while guest RAM is reserved; DMA mapping follows.
    assert!(
        t.first_vcpu_entry_secs >= t.reserve_secs.max(t.load_kernel_secs) + t.dma_map_secs,
        "{t:?}"
    );
    assert!(t.reserve.contains("pinned by VFIO"), "{t:?}");
    assert!(t.kernel.contains("bzImage"), "{t:?}");

    // The guest answered 20 pings. A PF driver that counts per VF shows 20
    // more packets sent by the VF; igb (the emulated host's 82576) reports
    // IFLA_VF_STATS as zeros, and vfvm says so rather than show them.
    assert_eq!(m("host.host_ping"), "0");
    let counters =
        |key| -> api::VmCounters { serde_json::from_value(run.json(key).unwrap()).unwrap() };
    let (c0, c) = (
        counters("host.counters_before"),
        counters("host.counters_json"),
    );
    let tx = |c: &api::VmCounters| c.get("vf@5:0", "tx_packets");
    if p.pf_driver.as_deref() == Some("igb") {
        assert!(!p.vf_stats, "{p:?}");
        assert_eq!(
            (tx(&c0), tx(&c)),
            (None, None),
            "igb's zeros shown as counts"
        );
    } else {
        assert!(p.vf_stats, "{p:?}");
        let (t0, t1) = (tx(&c0).unwrap(), tx(&c).unwrap());
        assert!(t1 >= t0 + 20, "VF tx_packets {t0} -> {t1}");
        assert!(m("host.counters_vf").starts_with("vf@5:0 "));
    }
    assert!(c.get("blk@4:0", "read_bytes").unwrap() >= 64 * 4096);
    assert!(
        c.get("blk@4:0", "msix_fired").unwrap() > 0,
        "virtio-blk MSI-X"
    );
    assert!(c.get("vmm", "io_out").unwrap() > 0);

    // Resume while running is a state error (Cloud Hypervisor's 405).
    let resume = m("host.resume_running");
    assert!(
        resume.starts_with("1 ") && resume.contains("not paused (405)"),
        "{resume}"
    );
    let paused_info: api::VmInfo =
        serde_json::from_value(run.json("host.info_paused").unwrap()).unwrap();
    assert_eq!(paused_info.state, api::VmState::Paused);
    let paused = numbers(m("host.paused_ticks"));
    assert_eq!(paused[0], paused[1], "ticks while paused");
    let resumed = numbers(m("host.resumed_ticks"));
    assert!(resumed[1] > resumed[0], "no ticks after resume");

    // 1,000 sequential and 16x10 concurrent vm.info, malformed requests:
    // all answered; the guest ticks on.
    assert_eq!(m("host.stress.ping"), "100/100");
    assert_eq!(m("host.stress.sequential"), "1000/1000");
    assert_eq!(m("host.stress.concurrent"), "160/160");
    for status in m("host.stress.malformed").split(',') {
        let s: u16 = status.parse().unwrap();
        assert!(s == 0 || (400..500).contains(&s), "malformed -> {s}");
    }
    assert_eq!(m("host.stress.after"), "200");
    let load = numbers(m("host.load_ticks"));
    assert!(load[1] > load[0], "the guest stalled under API load");

    // The power button: the guest's acpid powers off, vfvm exits 1.
    assert_eq!(m("host.button"), "Power Button");
    assert_eq!(numbers(m("host.vm1"))[1], 1);
    assert_eq!(m("host.sock_left"), "0");
    let after = m("host.after");
    assert!(
        after.starts_with("1 1 ") && after.contains("is `vfvm run --api-sock"),
        "{after}"
    );

    // A guest that ignores the button: stopped after about 2 s, status 1.
    assert_eq!(m("host.ignored"), "running");
    let vm2 = numbers(m("host.vm2"));
    assert_eq!(vm2[1], 1);
    assert!(
        (15..=100).contains(&vm2[0]),
        "forced stop after {} tenths",
        vm2[0]
    );

    // Hostile clients: the good one is served, the rest bounded.
    // Every one of its requests is answered (how many fit in 8 s depends
    // on how loaded the machine is).
    let good = numbers(m("host.stress.good"));
    assert!(
        good[0] >= 3 && good[1] == 0,
        "good client: {good:?} answered/failed"
    );
    let header: u16 = m("host.stress.header").parse().unwrap();
    assert!(header == 0 || header == 431, "1 MiB header -> {header}");
    let slow = m("host.stress.slow");
    assert!(slow.starts_with("408@") || slow.starts_with("0@"), "{slow}");
    assert!(numbers(&slow.replace(['@', 's'], " "))[1] <= 10, "{slow}");
    let hostile = numbers(m("host.hostile_ticks"));
    assert!(
        hostile[1] > hostile[0],
        "the guest stalled under hostile clients"
    );
    // SIGTERM during all of it: out within 5 s, socket gone.
    let vm3 = numbers(m("host.vm3"));
    assert!(vm3[0] <= 50, "SIGTERM took {} tenths", vm3[0]);
    assert_eq!(m("host.sock_left3"), "0");

    // vm.reboot: status 0.
    assert_eq!(numbers(m("host.vm4"))[1], 0);
}

/// The MAC in the info table's VF row.
fn row_mac(run: &vfvm_tests::Run) -> &str {
    run.marker("host.info_vf")
        .and_then(|r| r.split_whitespace().nth(3))
        .unwrap_or("")
}

/// The guest of the Cloud Hypervisor client's test: acpid powers off on the
/// button; slots 1 to 7 are watched. A device that appears is reported
/// (`guest.up.SLOT.N`, N counting its appearances); a VF is brought up at
/// 192.0.2.(10 + SLOT) and pings the PF (`guest.vf.SLOT.N`: MAC and loss);
/// a disk has its first 15 bytes read (`guest.disk.SLOT.N`); a device that
/// goes is reported (`guest.gone.SLOT.N`). The kernel's first report of an
/// NMI is `guest.nmi`.
const CH_GUEST: &str = r#"
marker guest.button "$(on_power_button 'poweroff -f')"
nmis() { dmesg | grep -c NMI || true; }
nmi0=$(nmis) nmi=""
echo 1 >/proc/sys/net/ipv4/conf/all/arp_ignore
echo 2 >/proc/sys/net/ipv4/conf/all/arp_announce
dev() { echo "/sys/bus/pci/devices/0000:00:0$1.0"; }
wait_path() { k=100; while [ ! -e "$1" ] && [ $k -gt 0 ]; do k=$((k - 1)); sleep 0.1; done; }
present=""
echo "watching"
while :; do
  if [ -z "$nmi" ] && [ "$(nmis)" -gt "$nmi0" ]; then
    nmi=yes
    marker guest.nmi "$(dmesg | grep NMI | tail -n 1)"
  fi
  for s in 1 2 3 4 5 6 7; do
    d=$(dev $s)
    eval "n=\${n$s:-0}"
    case " $present " in
    *" $s "*)
      if [ ! -e "$d" ]; then
        present=$(echo " $present " | sed "s/ $s / /")
        marker guest.gone.$s.$n yes
      fi ;;
    *)
      if [ -e "$d" ]; then
        n=$((n + 1)); eval "n$s=$n"
        present="$present $s"
        wait_path "$d/driver"
        drv=$(basename "$(readlink "$d/driver")")
        marker guest.up.$s.$n "$(cat "$d/vendor"):$(cat "$d/device") $drv"
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
          loss=$(ping -I "$ifc" -c 3 -W 2 192.0.2.1 | sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p')
          marker guest.vf.$s.$n "$(cat "/sys/class/net/$ifc/address") $loss" ;;
        virtio-pci)
          k=100
          until b=$(ls "$d"/virtio*/block 2>/dev/null) || [ $k = 0 ]; do k=$((k - 1)); sleep 0.1; done
          k=100 v=""
          until v=$(head -c 15 "/dev/$b" 2>/dev/null) && [ ${#v} = 15 ] || [ $k = 0 ]; do
            k=$((k - 1)); sleep 0.1
          done
          marker guest.disk.$s.$n "$v" ;;
        esac
      fi ;;
    esac
  done
  usleep 100000
done
"#;

/// Cloud Hypervisor's own client against vfvm's API: every command the two
/// share, each one's status and output as a marker (`ch.NAME`).
const CH_SCENARIO: &str = r#"
S=/tmp/ch.sock
# ch KEY ARGS...: ch-remote's exit status and what it printed, on one line.
ch() {
  k=$1; shift; s=0
  timeout 60 /ch-remote --api-socket $S "$@" >/tmp/out 2>&1 </dev/null || s=$?
  marker "$k" "$s $(tr -d '\r' </tmp/out | tr '\n' ' ')"
}
# got KEY [SECS]: waits for the guest's marker KEY and marks it for the harness.
got() {
  wait_for "${2:-90}" "grep -qs '^@@$1=' /tmp/com1.log" || die "the guest did not report $1"
  marker "$1" "$(sed -n "s/^@@$1=//p" /tmp/com1.log | tr -d '\r' | head -n 1)"
}
start_vm() {
  name=$1
  : >/tmp/com1.log
  vfvm run -c 2 -m 256M -l com1,/tmp/com1.log -s 0,hostbridge -s 31,lpc \
    --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "KCMD" \
    --api-sock $S "$name" 2>/tmp/$name.err &
  pid=$!
  wait_for 20 "test -S $S" || die "$name: no API socket"
  wait_for 120 "grep -qs '^watching' /tmp/com1.log" || die "$name: the guest does not watch its slots"
  got guest.button
}
# gone KEY: waits for vfvm ($pid) and marks its exit status.
gone() { st=0; wait $pid || st=$?; marker "$1" "$st"; }
trap 'for f in ch1.err ch2.err ch3.err ch4.err com1.log; do sed "s/^/$f: /" /tmp/$f 2>/dev/null; done' EXIT

pf_up
make_vfs 2
VF0=$(vf_bdf 0) VF1=$(vf_bdf 1)
for v in $VF0 $VF1; do bind_vfio $v >/dev/null; done
marker host.vfs "$VF0 $VF1"
guest_initrd g /guest.sh >/dev/null
dd if=/dev/zero of=/tmp/d.img bs=1M count=4 2>/dev/null
printf 'vfvm-chremote-ok' | dd of=/tmp/d.img conv=notrunc 2>/dev/null

# 1. Every read, pause and resume, hotplug, then the power button.
start_vm ch1
ch ch.ping ping
ch ch.info info
ch ch.counters counters
ch ch.pause pause
ch ch.info_paused info
ch ch.pause_again pause
ch ch.resume resume
ch ch.resume_again resume
ch ch.nmi nmi
got guest.nmi
# A VF at the lowest free slot (1), named x.
ch ch.add_x add-device path=/sys/bus/pci/devices/$VF0/,id=x
got guest.up.1.1
got guest.vf.1.1
# The same VF again, the same id again, what vfvm lacks.
ch ch.add_same_path add-device path=/sys/bus/pci/devices/$VF0/,id=y
ch ch.add_same_id add-device path=/sys/bus/pci/devices/$VF1/,id=x
ch ch.add_segment1 add-device path=/sys/bus/pci/devices/$VF1/,pci_segment=1
ch ch.add_iommu add-device path=/sys/bus/pci/devices/$VF1/,iommu=on
ch ch.add_no_path add-device id=nopath
# Every field Cloud Hypervisor has that vfvm can honour.
ch ch.add_vf6 add-device path=/sys/bus/pci/devices/$VF1/,id=vf6,iommu=off,pci_segment=0,pci_device_id=6,x_nv_gpudirect_clique=0
got guest.up.6.1
got guest.vf.6.1
ch ch.info_vfs info
ch ch.remove_x remove-device x
got guest.gone.1.1 30
ch ch.remove_none remove-device nope
ch ch.add_disk add-disk path=/tmp/d.img,id=d1,pci_device_id=7,pci_segment=0,num_queues=1,queue_size=128
got guest.up.7.1
got guest.disk.7.1
ch ch.add_disk_ro add-disk path=/tmp/d.img,readonly=on,id=d1
ch ch.remove_d1 remove-device d1
got guest.gone.7.1 30
ch ch.remove_vf6 remove-device vf6
got guest.gone.6.1 30
ch ch.info_after info
ch ch.power_button power-button
gone host.ch1
marker host.released "$(driver_of $VF0) $(driver_of $VF1)"

# 2. vm.shutdown: the guest powers off on the button.
start_vm ch2
ch ch.shutdown shutdown
gone host.ch2

# 3. vm.reboot: bhyve's status 0.
start_vm ch3
ch ch.reboot reboot
gone host.ch3

# 4. vmm.shutdown, then nothing answers.
start_vm ch4
ch ch.shutdown_vmm shutdown-vmm
gone host.ch4
ch ch.after ping
"#;

/// ch-remote's status and output in marker `key`.
fn ch_result<'a>(run: &'a vfvm_tests::Run, key: &str) -> (i32, &'a str) {
    let v = run.marker(key).unwrap_or_else(|| panic!("no marker {key}"));
    let (status, out) = v.split_once(' ').unwrap_or((v, ""));
    (status.parse().unwrap_or(-1), out.trim())
}

/// ch-remote's JSON answer in marker `key`, which must have succeeded.
fn ch_json(run: &vfvm_tests::Run, key: &str) -> serde_json::Value {
    let (status, out) = ch_result(run, key);
    assert_eq!(status, 0, "{key}: {out}");
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{key}: {e}: {out}"))
}

/// ch-remote succeeded and printed nothing (a 204).
fn ch_done(run: &vfvm_tests::Run, key: &str) {
    assert_eq!(ch_result(run, key), (0, ""), "{key}");
}

/// ch-remote failed with its name for the status (`api_client`'s
/// `StatusCode`: "Unknown" for the codes it has no name for, 405 and 409
/// among them) and printed vfvm's message, containing `wants`.
fn ch_refused(run: &vfvm_tests::Run, key: &str, status: &str, wants: &str) {
    let (code, out) = ch_result(run, key);
    assert_eq!(code, 1, "{key}: {out}");
    assert!(
        out.contains(&format!("Server responded with {status} ")) && out.contains(wants),
        "{key}: want {status} and {wants:?}: {out}"
    );
}

#[test]
#[ignore = "needs ch-remote built from Cloud Hypervisor's source: VFVM_CH_REMOTE=/path/ch-remote cargo test -p vfvm-tests --test api -- --ignored"]
fn cloud_hypervisors_ch_remote() {
    let Some(ch_remote) = std::env::var_os("VFVM_CH_REMOTE") else {
        panic!("set VFVM_CH_REMOTE to a static ch-remote built from a checkout of Cloud Hypervisor (resources/README.md says how)");
    };
    let ch_remote = std::fs::read(&ch_remote)
        .unwrap_or_else(|e| panic!("VFVM_CH_REMOTE={}: {e}", Path::new(&ch_remote).display()));
    let run = Testbed::new()
        .file("guest.sh", CH_GUEST)
        .file("ch-remote", ch_remote)
        .scenario(&CH_SCENARIO.replace("KCMD", &format!("{GUEST_CMDLINE} acpid=on")))
        .timeout(Duration::from_secs(900))
        .run()
        .unwrap();
    let m = |k: &str| run.expect_marker(k);
    let vfs: Vec<&str> = m("host.vfs").split_whitespace().collect();

    // Reads: Cloud Hypervisor's field names.
    let ping = ch_json(&run, "ch.ping");
    assert!(
        ping["version"].is_string() && ping["pid"].is_i64(),
        "{ping}"
    );
    let info = ch_json(&run, "ch.info");
    assert_eq!(info["state"], "Running", "{info}");
    assert_eq!(info["memory_actual_size"], 256u64 << 20, "{info}");
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 2, "{info}");
    let counters = ch_json(&run, "ch.counters");
    assert!(counters.is_object(), "{counters}");

    // Pause and resume, and each one's state error (405, which
    // api_client calls Unknown).
    ch_done(&run, "ch.pause");
    assert_eq!(ch_json(&run, "ch.info_paused")["state"], "Paused");
    ch_refused(&run, "ch.pause_again", "Unknown", "already paused");
    ch_done(&run, "ch.resume");
    ch_refused(&run, "ch.resume_again", "Unknown", "not paused");
    // vm.nmi: the guest's kernel reports the NMI.
    ch_done(&run, "ch.nmi");
    assert!(m("guest.nmi").contains("NMI"), "{}", m("guest.nmi"));

    // A VF hot-added with Cloud Hypervisor's DeviceConfig: the answer is
    // its PciDeviceInfo, and the guest sees it and pings the PF.
    let x = ch_json(&run, "ch.add_x");
    assert_eq!(
        (x["id"].as_str(), x["bdf"].as_str()),
        (Some("x"), Some("0000:00:01.0"))
    );
    assert!(
        m("guest.up.1.1").ends_with(" igbvf"),
        "{}",
        m("guest.up.1.1")
    );
    assert!(
        m("guest.vf.1.1").ends_with(" 0"),
        "slot 1's VF: {}",
        m("guest.vf.1.1")
    );
    // A path or id already in the VM: Cloud Hypervisor's 409.
    ch_refused(&run, "ch.add_same_path", "Unknown", vfs[0]);
    ch_refused(&run, "ch.add_same_id", "Unknown", "id x is in use");
    // What vfvm lacks, in one sentence: 400.
    ch_refused(&run, "ch.add_segment1", "BadRequest", "PCI segment 0 only");
    ch_refused(&run, "ch.add_iommu", "BadRequest", "no virtual IOMMU");
    ch_refused(&run, "ch.add_no_path", "BadRequest", "path is missing");
    let vf6 = ch_json(&run, "ch.add_vf6");
    assert_eq!(
        (vf6["id"].as_str(), vf6["bdf"].as_str()),
        (Some("vf6"), Some("0000:00:06.0"))
    );
    assert!(
        m("guest.vf.6.1").ends_with(" 0"),
        "slot 6's VF: {}",
        m("guest.vf.6.1")
    );
    let ids = |info: &serde_json::Value| -> Vec<String> {
        info["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["id"].as_str().map(String::from))
            .collect()
    };
    let with_vfs = ids(&ch_json(&run, "ch.info_vfs"));
    assert!(
        with_vfs.contains(&"x".into()) && with_vfs.contains(&"vf6".into()),
        "{with_vfs:?}"
    );

    // Removal: the guest ejects, the device goes; an unknown id is 404.
    ch_done(&run, "ch.remove_x");
    assert_eq!(m("guest.gone.1.1"), "yes");
    ch_refused(
        &run,
        "ch.remove_none",
        "NotFound",
        "no device has id \"nope\"",
    );

    // A disk with Cloud Hypervisor's DiskConfig: the guest reads it.
    let d1 = ch_json(&run, "ch.add_disk");
    assert_eq!(
        (d1["id"].as_str(), d1["bdf"].as_str()),
        (Some("d1"), Some("0000:00:07.0"))
    );
    assert_eq!(m("guest.disk.7.1"), "vfvm-chremote-o");
    ch_refused(&run, "ch.add_disk_ro", "Unknown", "id d1 is in use");
    ch_done(&run, "ch.remove_d1");
    ch_done(&run, "ch.remove_vf6");
    assert_eq!((m("guest.gone.7.1"), m("guest.gone.6.1")), ("yes", "yes"));
    let after = ids(&ch_json(&run, "ch.info_after"));
    assert!(
        !after
            .iter()
            .any(|id| ["x", "vf6", "d1"].contains(&id.as_str())),
        "{after:?}"
    );

    // The power button: the guest powers off, vfvm exits 1 and gives
    // both VFs back to vfio-pci.
    ch_done(&run, "ch.power_button");
    assert_eq!(m("host.ch1"), "1");
    assert_eq!(m("host.released"), "vfio-pci vfio-pci");
    // vm.shutdown (status 1), vm.reboot (0), vmm.shutdown (1).
    ch_done(&run, "ch.shutdown");
    assert_eq!(m("host.ch2"), "1");
    ch_done(&run, "ch.reboot");
    assert_eq!(m("host.ch3"), "0");
    ch_done(&run, "ch.shutdown_vmm");
    assert_eq!(m("host.ch4"), "1");
    assert_eq!(ch_result(&run, "ch.after").0, 1, "{}", m("ch.after"));
}
