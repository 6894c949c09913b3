//! Issue 9's sandboxing, in the emulated SR-IOV host: a VM with a disk and
//! a `managed` VF lives its whole life under the default `--seccomp=on`
//! (boot, disk I/O, a ping to the PF, `vfvm ctl` pause/info/counters/resume,
//! power-off through the power button): every thread of vfvm runs under its
//! filter and keeps only its capabilities while the guest runs, vfvm exits
//! with status 1 and the VF is back on igbvf. Then `--seccomp=off` runs no
//! filter. (That a forbidden call kills vfvm with one line is a unit test
//! of the `sandbox` module, in a child process.)

use std::time::Duration;

use vfvm_tests::Testbed;

/// The guest: the disk's first MiB as the host wrote it, a write read
/// back, a ping over the VF; then it waits for the power button.
const GUEST: &str = r#"
on_power_button "poweroff -f" >/dev/null
marker guest.disk "$(head -c 1048576 /dev/vda | md5sum | cut -d' ' -f1)"
yes "guest wrote this " | head -c 65536 >/tmp/w
dd if=/tmp/w of=/dev/vda bs=4096 seek=512 oflag=direct conv=notrunc 2>/dev/null
dd if=/dev/vda of=/tmp/r bs=4096 skip=512 count=16 iflag=direct 2>/dev/null
cmp /tmp/w /tmp/r && marker guest.disk_rw ok
ifc=$(vf_up 192.0.2.2)
marker guest.loss "$(ping_loss 192.0.2.1 3)"
marker guest.ready 1
sleep 300
"#;

const SCENARIO: &str = r#"
guest_initrd g /guest.sh >/dev/null
pf_up
make_vfs 1
vf=$(vf_bdf 0)
bind_igbvf "$vf"
yes "host wrote this " | head -c 1048576 >/tmp/d.img
dd if=/dev/zero of=/tmp/d.img bs=1M seek=1 count=15 2>/dev/null
marker host.disk "$(head -c 1048576 /tmp/d.img | md5sum | cut -d' ' -f1)"
# life MODE: one VM life with --seccomp=MODE ("" for the default).
life() {
  mode=$1
  flag=; [ -z "$mode" ] || flag=--seccomp=$mode
  tag=${mode:-default}
  (exec vfvm run $flag -c 2 -m 512M -l com1,/tmp/con-$tag.log -s 0,hostbridge \
    -s 4:0,virtio-blk,/tmp/d.img -s 5:0,passthru,$vf,managed --api-sock /tmp/api.sock \
    --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "$GUEST_CMDLINE" sb) \
    </dev/null >/tmp/vfvm-$tag.log 2>&1 &
  pid=$!
  wait_for 200 "grep -q '@@guest.ready=1' /tmp/con-$tag.log" || {
    cat /tmp/vfvm-$tag.log /tmp/con-$tag.log; die "$tag: the guest did not get ready"; }
  grep @@ /tmp/con-$tag.log | sed "s/@@guest\./@@$tag./"
  # Every thread: its name, Seccomp mode, effective/permitted/bounding sets.
  threads=
  for t in /proc/$pid/task/*; do
    s=$t/status
    f() { sed -n "s/^$1:[[:space:]]*//p" $s; }
    threads="$threads $(cat $t/comm | tr ' ' _):$(f Seccomp):$(f CapEff):$(f CapPrm):$(f CapBnd):$(f NoNewPrivs)"
  done
  marker host.$tag.threads $threads
  check $tag.pause vfvm ctl --api-sock /tmp/api.sock pause
  json_marker host.$tag.info ctl info --json
  json_marker host.$tag.counters ctl counters --json
  check $tag.resume vfvm ctl --api-sock /tmp/api.sock resume
  check $tag.shutdown vfvm ctl --api-sock /tmp/api.sock shutdown
  st=0; wait $pid || st=$?
  marker host.$tag.status $st
  marker host.$tag.vf_driver "$(driver_of $vf)"
  marker host.$tag.errors "$(grep -c 'vfvm: error' /tmp/vfvm-$tag.log || true)"
  grep 'vfvm:' /tmp/vfvm-$tag.log || true
}
life ""
life off
"#;

/// The capability bits of CAP_NET_ADMIN (12) and CAP_IPC_LOCK (14).
const EVENT_LOOP_CAPS: u64 = (1 << 12) | (1 << 14);

#[test]
fn a_vm_with_a_disk_and_a_vf_lives_its_whole_life_sandboxed() {
    let run = Testbed::new()
        .memory_mib(2048)
        .file("guest.sh", GUEST)
        .scenario(SCENARIO)
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    let disk = run.marker("host.disk").unwrap();
    for tag in ["default", "off"] {
        assert_eq!(run.marker(&format!("{tag}.disk")), Some(disk), "{tag}");
        assert_eq!(run.marker(&format!("{tag}.disk_rw")), Some("ok"), "{tag}");
        assert_eq!(run.marker(&format!("{tag}.loss")), Some("0"), "{tag}");
        for step in ["pause", "resume", "shutdown"] {
            let o = run.outcome(&format!("{tag}.{step}"));
            assert_eq!(o.status, 0, "{tag}: ctl {step}: {:?}", o.stderr);
        }
        let info = run.json(&format!("host.{tag}.info")).unwrap();
        assert_eq!(info["state"], "Paused", "{tag}: {info}");
        let counters = run.json(&format!("host.{tag}.counters")).unwrap();
        assert!(counters.is_object(), "{tag}: {counters}");
        // Powered off through the button (bhyve's 1), nothing refused.
        assert_eq!(
            run.marker(&format!("host.{tag}.status")),
            Some("1"),
            "{tag}"
        );
        assert_eq!(
            run.marker(&format!("host.{tag}.errors")),
            Some("0"),
            "{tag}"
        );
        assert_eq!(
            run.marker(&format!("host.{tag}.vf_driver")),
            Some("igbvf"),
            "{tag}: the VF went back to the host"
        );
        let threads = run.marker(&format!("host.{tag}.threads")).unwrap();
        let threads: Vec<Vec<&str>> = threads
            .split_whitespace()
            .map(|t| t.split(':').collect())
            .collect();
        let names: Vec<&str> = threads.iter().map(|t| t[0]).collect();
        for want in ["vfvm", "vcpu0", "vcpu1", "api", "console-out", "signals"] {
            assert!(
                names.contains(&want),
                "{tag}: no {want} thread in {names:?}"
            );
        }
        assert!(
            names.iter().any(|n| n.starts_with("virtio-blk-q")),
            "{tag}: no disk queue thread in {names:?}"
        );
        let seccomp = if tag == "off" { "0" } else { "2" };
        for t in &threads {
            let [name, mode, eff, prm, bnd, nnp] = t[..] else {
                panic!("{tag}: {t:?}");
            };
            assert_eq!(mode, seccomp, "{tag}: thread {name}'s Seccomp");
            assert_eq!(nnp, "1", "{tag}: thread {name}'s NoNewPrivs");
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            let allowed = if name == "vfvm" { EVENT_LOOP_CAPS } else { 0 };
            for (set, v) in [("CapEff", eff), ("CapPrm", prm), ("CapBnd", bnd)] {
                assert_eq!(hex(v) & !allowed, 0, "{tag}: thread {name}'s {set} {v}");
            }
            if name == "vfvm" {
                assert_eq!(hex(eff), EVENT_LOOP_CAPS, "{tag}: the event loop's CapEff");
            }
        }
    }
}
