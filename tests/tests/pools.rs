//! Issue 8's VF pools (`-s 5:0,passthru,pf=PF`) and issue 9's host state:
//! the VF clean for the next tenant, and put back after SIGTERM or
//! SIGKILL in the window before the guest starts. One emulated-host boot.

use std::time::Duration;

use vfvm_tests::Testbed;

/// The guest reports its VF's MAC, pings the PF (unless `noping`), says it
/// is up and, with `hold`, waits a while. Markers carry `run=TAG`.
const GUEST: &str = r#"
tag=$(sed -n 's/.*run=\([^ ]*\).*/\1/p' /proc/cmdline)
d=/sys/bus/pci/devices/0000:00:05.0
ifc=$(ls $d/net)
marker "$tag.mac" "$(cat /sys/class/net/$ifc/address)"
if ! grep -q noping /proc/cmdline; then
  addr=$(sed -n 's/.*addr=\([0-9]*\).*/\1/p' /proc/cmdline)
  if_up "$ifc" "192.0.2.${addr:-2}"
  marker "$tag.loss" "$(ping_loss 192.0.2.1 3)"
fi
marker "$tag.up" yes
if grep -q hold /proc/cmdline; then hold; fi
"#;

/// The guests are the harness's `vm_start` (1 vCPU, 256 MiB), `vm_up`,
/// `release` and `vm_wait`.
const HELPERS: &str = r#"
guest_initrd g /guest.sh >/dev/null
VM_CPUS=1 VM_MEM=256M
driver_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver")" 2>/dev/null || echo none; }
vf_line() { ip link show "$pf" | grep "vf $1 " | sed 's/^ *//'; }
journal() { ls /run/vfvm/journal 2>/dev/null | tr '\n' ' '; }
"#;

#[test]
fn pools_clean_tenants_and_restore_after_signals() {
    let run = Testbed::new()
        .memory_mib(2048)
        .file("guest.sh", GUEST)
        .scenario(&format!(
            r#"{HELPERS}
            pf_up
            pf=$(pf_if)
            grep -q '^igbvf ' /proc/modules || insmod /lib/modules/igbvf.ko
            make_vfs 3
            bind_vfio "$(vf_bdf 0)" >/dev/null
            bind_vfio "$(vf_bdf 1)" >/dev/null
            bind_igbvf "$(vf_bdf 2)"

            # Pools: two VMs at the same moment get two VFs; a third none.
            vm_start a "hold addr=2" -s "5:0,passthru,pf=$pf"
            vm_start b "hold addr=3" -s "5:0,passthru,pf=$pf"
            vm_up a; vm_up b
            st=0; vfvm run -m 128M -s "5:0,passthru,pf=$pf" --kernel /guest/vmlinuz c </dev/null >/dev/null 2>/tmp/c.err || st=$?
            marker host.c "$st $(wc -l </tmp/c.err) $(tail -n 1 /tmp/c.err)"
            release a; release b; vm_wait a; vm_wait b
            marker host.a.took "$(sed -n 's/.*pf=[^:]*: took VF \([0-9a-f:.]*\).*/\1/p' /tmp/vm-a.log)"
            marker host.b.took "$(sed -n 's/.*pf=[^:]*: took VF \([0-9a-f:.]*\).*/\1/p' /tmp/vm-b.log)"
            # The same VM on two different VFs keeps its MAC: h holds the
            # first VF while a takes the second, then a alone takes the first.
            vm_start h "hold noping" -s "5:0,passthru,pf=$pf"; vm_up h
            VMNAME=vma; vm_start a2 "run=a noping" -s "5:0,passthru,pf=$pf"; VMNAME=
            vm_wait a2
            marker host.a2.took "$(sed -n 's/.*took VF \([0-9a-f:.]*\).*/\1/p' /tmp/vm-a2.log)"
            marker host.a2.mac "$(sed -n 's/.*@@a.mac=\(.*\)/\1/p' /tmp/vm-a2.log | tr -d '\r')"
            release h; vm_wait h
            VMNAME=vma; vm_start a3 "run=a noping" -s "5:0,passthru,pf=$pf"; VMNAME=
            vm_wait a3
            marker host.a3.took "$(sed -n 's/.*took VF \([0-9a-f:.]*\).*/\1/p' /tmp/vm-a3.log)"
            marker host.a3.mac "$(sed -n 's/.*@@a.mac=\(.*\)/\1/p' /tmp/vm-a3.log | tr -d '\r')"

            # The next tenant sees none of the previous one's settings.
            marker host.vf0.before "$(vf_line 0)"
            vm_start s1 "hold noping" -s "5:0,passthru,$(vf_bdf 0),mac=aa:88:44:00:09:01,vlan=42,trust=on,spoofchk=off"
            vm_up s1
            marker host.vf0.s1 "$(vf_line 0)"
            release s1; vm_wait s1
            marker host.vf0.after "$(vf_line 0)"
            vm_start s2 "hold noping" -s "5:0,passthru,$(vf_bdf 0)"
            vm_up s2
            marker host.vf0.s2 "$(vf_line 0)"
            release s2; vm_wait s2

            # Signals while guest memory is reserved, with a managed VF on igbvf.
            vf=$(vf_bdf 2)
            big() {{
              vfvm run -m 1024M -s "5:0,passthru,$vf,managed" --kernel /guest/vmlinuz --initrd /tmp/g.img \
                --cmdline "console=ttyS0 quiet panic=-1 run=big noping" big </dev/null >/tmp/big.log 2>&1 &
              big=$!
              wait_for 60 "[ \"\$(driver_of $vf)\" = vfio-pci ]" || marker host.big.no_vfio yes
            }}
            big; kill -KILL $big; wait $big || true
            marker host.kill1.driver "$(driver_of $vf)"
            marker host.kill1.journal "$(journal)"
            st=0; vfvm recover >/tmp/rec.out 2>&1 || st=$?
            marker host.recover "$st $(tr '\n' '|' </tmp/rec.out)"
            marker host.recovered.driver "$(driver_of $vf)"
            marker host.recovered.journal "$(journal)"
            big; kill -KILL $big; wait $big || true
            marker host.kill2.driver "$(driver_of $vf)"
            st=0; vfvm run --kernel /nonexistent e </dev/null >/dev/null 2>/tmp/e.err || st=$?
            marker host.next_run "$st $(tr '\n' '|' </tmp/e.err)"
            marker host.next_run.driver "$(driver_of $vf)"
            big; kill -TERM $big; st=0; wait $big || st=$?
            marker host.term.driver "$(driver_of $vf)"
            marker host.term "$st $(tr '\n' '|' </tmp/big.log)"
            marker host.term.journal "$(journal)"
            "#
        ))
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();

    // Two VMs at once: two different VFs, both ping; the third is refused
    // in one line naming the PF and the VMs holding its VFs.
    let (a, b) = (
        run.expect_marker("host.a.took"),
        run.expect_marker("host.b.took"),
    );
    assert!(
        !a.is_empty() && !b.is_empty() && a != b,
        "a took {a:?}, b took {b:?}"
    );
    assert_eq!(run.marker("a.loss"), Some("0"));
    assert_eq!(run.marker("b.loss"), Some("0"));
    assert_eq!(run.expect_marker("host.a.status"), "1");
    assert_eq!(run.expect_marker("host.b.status"), "1");
    // The line names the slot as typed, the PF only there, and the fix.
    let c = run.expect_marker("host.c");
    let (pf, why) = c
        .strip_prefix("4 1 vfvm: error: -s 5:0,passthru,pf=")
        .and_then(|rest| rest.split_once(": "))
        .unwrap_or_else(|| panic!("{c}"));
    assert!(why.starts_with("no free VF: "), "{c}");
    assert!(!why.contains(pf), "the PF named twice: {c}");
    assert!(
        why.contains("held by VM vma") && why.contains("held by VM vmb"),
        "{c}"
    );
    assert!(why.contains("is on igbvf"), "{c}");
    assert!(
        why.ends_with(" (to get one: stop a VM that holds one, or add `managed` to take VFs on host drivers, or create more with vfvm iov)"),
        "{c}"
    );
    // One VM, two VFs, one MAC: its stable one.
    let (t2, t3) = (
        run.expect_marker("host.a2.took"),
        run.expect_marker("host.a3.took"),
    );
    assert!(!t2.is_empty() && !t3.is_empty() && t2 != t3, "{t2} {t3}");
    let mac = run.expect_marker("host.a2.mac");
    assert_eq!(mac, run.expect_marker("host.a3.mac"));
    assert_eq!(
        u8::from_str_radix(&mac[..2], 16).unwrap() & 3,
        2,
        "locally administered: {mac}"
    );

    // The first tenant's settings are on the VF while it runs, gone after.
    let s1 = run.expect_marker("host.vf0.s1");
    assert!(
        s1.contains("aa:88:44:00:09:01")
            && s1.contains("vlan 42")
            && s1.contains("spoof checking off")
            && s1.contains("trust on"),
        "{s1}"
    );
    for key in ["host.vf0.after", "host.vf0.s2"] {
        let line = run.expect_marker(key);
        assert!(!line.contains("aa:88:44:00:09:01"), "{key}: {line}");
        assert!(!line.contains("vlan"), "{key}: {line}");
        assert!(
            line.contains("spoof checking on") && line.contains("trust off"),
            "{key}: {line}"
        );
    }
    assert_eq!(
        run.expect_marker("host.vf0.after"),
        run.expect_marker("host.vf0.before")
    );
    assert_ne!(run.marker("s2.mac"), Some("aa:88:44:00:09:01"));

    // SIGKILL leaves the VF on vfio-pci with a journal record; vfvm
    // recover (or the next vfvm run) puts it back on igbvf.
    assert_eq!(
        run.marker("host.big.no_vfio"),
        None,
        "the VF never reached vfio-pci"
    );
    assert_eq!(run.expect_marker("host.kill1.driver"), "vfio-pci");
    assert_eq!(run.expect_marker("host.kill1.journal"), "0000:01:10.4.json");
    let rec = run.expect_marker("host.recover");
    assert!(
        rec.starts_with("0 0000:01:10.4: restored what VM big (pid "),
        "{rec}"
    );
    assert_eq!(run.expect_marker("host.recovered.driver"), "igbvf");
    assert_eq!(run.expect_marker("host.recovered.journal"), "");
    assert_eq!(run.expect_marker("host.kill2.driver"), "vfio-pci");
    let next = run.expect_marker("host.next_run");
    assert!(
        next.starts_with("4 ") && next.contains("--kernel"),
        "{next}"
    );
    assert_eq!(run.expect_marker("host.next_run.driver"), "igbvf");
    // SIGTERM in the same window: put back at once, by vfvm itself.
    assert_eq!(run.expect_marker("host.term.driver"), "igbvf");
    let term = run.expect_marker("host.term");
    assert!(
        term.contains("stopped by signal 15 before the guest started")
            || term.contains("stopped by a signal"),
        "{term}"
    );
    assert_eq!(run.expect_marker("host.term.journal"), "");
}
