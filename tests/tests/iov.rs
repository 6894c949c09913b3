//! Issue 8: `vfvm iov` (iovctl.conf files) and `vfvm check`, in the
//! emulated SR-IOV host (igb PF 0000:01:00.0, up to 7 VFs). One boot: the
//! refusals first (nothing may change), then create / show / a VM on the
//! passthrough VF / delete, by interface name and by PCI address.

use std::time::Duration;

use vfvm_tests::{Run, Testbed};

/// The guest reports the VF at 00:05.0 and pings the PF; with `hold` it
/// then waits a while, so the host can look at it running.
const GUEST: &str = r#"
d=/sys/bus/pci/devices/0000:00:05.0
marker guest.dev "$(cut -c3- $d/vendor):$(cut -c3- $d/device) $(basename "$(readlink $d/driver)")"
ifc=$(ls $d/net)
marker guest.mac "$(cat /sys/class/net/$ifc/address)"
if_up "$ifc" 192.0.2.2
marker guest.loss "$(ping_loss 192.0.2.1 3)"
marker guest.up yes
if grep -q hold /proc/cmdline; then hold; fi
"#;

/// `run TAG CMD...`: runs CMD; markers `host.TAG.status`, `.out` and
/// `.err` (lines joined with '|').
const HELPERS: &str = r#"
run() {
  tag=$1; shift
  st=0
  timeout 60 "$@" </dev/null >/tmp/out 2>/tmp/err || st=$?
  marker "host.$tag.status" "$st"
  marker "host.$tag.out" "$(tr '\n' '|' </tmp/out)"
  marker "host.$tag.err" "$(tr '\n' '|' </tmp/err)"
}
numvfs() { cat /sys/bus/pci/devices/0000:01:00.0/sriov_numvfs; }
driver_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver")" 2>/dev/null || echo none; }
vf_line() { ip link show "$pf" | grep "vf $1 " | sed 's/^ *//'; }
"#;

fn conf(device: &str) -> String {
    format!(
        "# iovctl.conf(5), as FreeBSD would read it\n\
         PF {{\n\tdevice : \"{device}\";\n\tnum_vfs : 3;\n}}\n\n\
         DEFAULT {{\n\tallow-set-mac : true;\n}}\n\n\
         VF-0 {{\n\tmac-addr : \"aa:88:44:00:03:00\";\n\tpassthrough : true;\n}}\n\n\
         VF-1 {{\n\tmac-addr : \"aa:88:44:00:03:01\";\n}}\n"
    )
}

/// Asserts that `tag` failed with status 1 and one stderr line that
/// contains every string of `wants`.
fn refused(run: &Run, tag: &str, wants: &[&str]) {
    let err = run.expect_marker(&format!("host.{tag}.err"));
    assert_eq!(
        run.expect_marker(&format!("host.{tag}.status")),
        "1",
        "{tag}: {err}"
    );
    let line = err.strip_suffix('|').unwrap_or(err);
    assert!(!line.contains('|'), "{tag}: one line: {err}");
    assert!(line.starts_with("vfvm: error: "), "{tag}: {line}");
    for want in wants {
        assert!(line.contains(want), "{tag}: {line:?} lacks {want:?}");
    }
    assert_eq!(
        run.expect_marker(&format!("host.{tag}.numvfs")),
        "0",
        "{tag}: the host changed"
    );
}

#[test]
fn iov_create_show_vm_delete_and_refusals() {
    let by_addr = conf("0000:01:00.0");
    let run = Testbed::new()
        .memory_mib(2048)
        .file("guest.sh", GUEST)
        .file("addr.conf", by_addr.as_str())
        .scenario(&format!(
            r#"{HELPERS}
            pf_up
            pf=$(pf_if)
            grep -q '^igbvf ' /proc/modules || insmod /lib/modules/igbvf.ko
            guest_initrd g /guest.sh >/dev/null
            cat >/tmp/good.conf <<EOF
{good}EOF
            # Refusals: each before anything changes.
            sed '7s/$/ allow-promisc : ;/' /tmp/good.conf >/tmp/line.conf
            marker host.line_of_error "$(grep -n 'allow-promisc : ;' /tmp/line.conf | cut -d: -f1)"
            run syntax vfvm iov create -f /tmp/line.conf; marker host.syntax.numvfs "$(numvfs)"
            sed 's/num_vfs : 3/num_vfs : 8/' /tmp/good.conf >/tmp/many.conf
            run many vfvm iov create -f /tmp/many.conf; marker host.many.numvfs "$(numvfs)"
            sed 's/aa:88:44:00:03:01/01:00:5e:00:00:01/' /tmp/good.conf >/tmp/mcast.conf
            run mcast vfvm iov create -f /tmp/mcast.conf; marker host.mcast.numvfs "$(numvfs)"
            sed 's/aa:88:44:00:03:01/aa:88:44:00:03:00/' /tmp/good.conf >/tmp/twice.conf
            run twice vfvm iov create -f /tmp/twice.conf; marker host.twice.numvfs "$(numvfs)"
            sed 's/passthrough : true/passthru : true/' /tmp/good.conf >/tmp/key.conf
            run key vfvm iov create -f /tmp/key.conf; marker host.key.numvfs "$(numvfs)"
            run dry vfvm iov create -n -f /tmp/good.conf; marker host.dry.numvfs "$(numvfs)"
            marker host.check_before "$(vfvm check >/dev/null 2>&1; echo $?)"

            # Create, by interface name.
            run create vfvm iov create -f /tmp/good.conf
            marker host.create.numvfs "$(numvfs)"
            for i in 0 1 2; do
              marker host.vf$i.driver "$(driver_of $(vf_bdf $i))"
              marker host.vf$i.line "$(vf_line $i)"
            done
            run again vfvm iov -C -f /tmp/good.conf
            run show vfvm iov show "$pf"
            run json vfvm iov -L --json
            run schema vfvm iov schema -d "$pf"
            run check vfvm check -s "5,passthru,$(vf_bdf 0)"

            # A VM on the passthrough VF; show names it while it runs.
            VM_CPUS=1 VM_MEM=256M VMNAME=vmone
            vm_start vm hold -s "5:0,passthru,$(vf_bdf 0)"
            wait_for 120 "grep -q '@@guest.up=' /tmp/vm-vm.log" || marker host.vm_timeout yes
            run busy_show vfvm iov show "$pf"
            run busy_delete vfvm iov delete -d "$pf"
            marker host.busy_delete.numvfs "$(numvfs)"
            release vm; vm_wait vm
            VM_CPUS= VM_MEM= VMNAME=

            run delete vfvm iov delete -f /tmp/good.conf
            marker host.delete.numvfs "$(numvfs)"
            # The same file naming the PF by its PCI address.
            run addr_create vfvm iov create -f /addr.conf
            marker host.addr.numvfs "$(numvfs)"
            marker host.addr.vf0 "$(driver_of $(vf_bdf 0))"
            run addr_delete vfvm iov -D -d 0000:01:00.0
            marker host.addr_delete.numvfs "$(numvfs)"
            "#,
            good = conf("$pf"),
        ))
        .timeout(Duration::from_secs(400))
        .run()
        .unwrap();

    // Refusals, each naming FILE:LINE:COLUMN and leaving sriov_numvfs at 0.
    let line = run.expect_marker("host.line_of_error");
    assert_eq!(line, "7");
    refused(
        &run,
        "syntax",
        &[
            &format!("/tmp/line.conf:{line}:"),
            "found ';', expected a value",
        ],
    );
    refused(
        &run,
        "many",
        &[
            "/tmp/many.conf:4:",
            "num_vfs 8",
            "at most 7 (sriov_totalvfs",
        ],
    );
    refused(
        &run,
        "mcast",
        &["/tmp/mcast.conf:17:", "01:00:5e:00:00:01", "unicast"],
    );
    refused(
        &run,
        "twice",
        &["/tmp/twice.conf:17:", "not already given to VF-0"],
    );
    refused(
        &run,
        "key",
        &["/tmp/key.conf:13:", "'passthru'", "expected a VF key"],
    );
    assert_eq!(run.expect_marker("host.dry.status"), "0");
    let dry = run.expect_marker("host.dry.out");
    assert!(
        dry.contains("would set sriov_numvfs 3")
            && dry.contains("would set VF-0: bind to vfio-pci"),
        "{dry}"
    );
    assert_eq!(
        run.expect_marker("host.dry.numvfs"),
        "0",
        "-n changes nothing"
    );
    assert_eq!(
        run.expect_marker("host.check_before"),
        "0",
        "vfvm check passes in the emulated host"
    );

    // Created: VF-0 passthrough on vfio-pci with its MAC and trust, VF-1 on
    // igbvf with its MAC, VF-2 the defaults (trust from DEFAULT).
    assert_eq!(
        run.expect_marker("host.create.status"),
        "0",
        "{}",
        run.expect_marker("host.create.err")
    );
    assert_eq!(run.expect_marker("host.create.numvfs"), "3");
    assert_eq!(run.expect_marker("host.vf0.driver"), "vfio-pci");
    assert_eq!(run.expect_marker("host.vf1.driver"), "igbvf");
    assert_eq!(run.expect_marker("host.vf2.driver"), "igbvf");
    let vf0 = run.expect_marker("host.vf0.line");
    assert!(
        vf0.contains("aa:88:44:00:03:00")
            && vf0.contains("spoof checking on")
            && vf0.contains("trust on"),
        "{vf0}"
    );
    let vf1 = run.expect_marker("host.vf1.line");
    assert!(
        vf1.contains("aa:88:44:00:03:01") && vf1.contains("trust on"),
        "{vf1}"
    );
    let vf2 = run.expect_marker("host.vf2.line");
    assert!(
        vf2.contains("spoof checking on") && vf2.contains("trust on") && !vf2.contains("vlan"),
        "{vf2}"
    );
    // Twice: nothing to change.
    assert_eq!(run.expect_marker("host.again.status"), "0");
    assert!(
        run.expect_marker("host.again.out")
            .contains("nothing to change"),
        "{}",
        run.expect_marker("host.again.out")
    );
    let show = run.expect_marker("host.show.out");
    assert!(
        show.contains("0000:01:10.0  vfio-pci  aa:88:44:00:03:00"),
        "{show}"
    );
    assert!(
        show.contains("passthrough") && show.contains("0000:01:10.2  igbvf     aa:88:44:00:03:01"),
        "{show}"
    );
    let json = run.expect_marker("host.json.out");
    assert!(
        json.contains("\"use\": \"passthrough\"") && json.contains("\"iommu_group\""),
        "{json}"
    );
    let schema = run.expect_marker("host.schema.out");
    assert!(
        schema.contains("passthrough : bool (default = false)") && !schema.contains("link-state"),
        "{schema}"
    );
    assert_eq!(
        run.expect_marker("host.check.status"),
        "0",
        "{}",
        run.expect_marker("host.check.out")
    );
    assert!(run
        .expect_marker("host.check.out")
        .contains("OK   -s 5,passthru,0000:01:10.0: "));

    // The VM on VF-0 pinged the PF with the file's MAC; show named it;
    // delete refused to remove its VF.
    assert_eq!(run.marker("guest.dev"), Some("8086:10ca igbvf"));
    assert_eq!(run.marker("guest.mac"), Some("aa:88:44:00:03:00"));
    assert_eq!(run.marker("guest.loss"), Some("0"));
    assert_eq!(run.marker("host.vm.status"), Some("1"), "guest powered off");
    let busy = run.expect_marker("host.busy_show.out");
    assert!(busy.contains("vmone (pid "), "{busy}");
    assert_eq!(run.expect_marker("host.busy_delete.status"), "1");
    assert!(run
        .expect_marker("host.busy_delete.err")
        .contains("in use by VM vmone"));
    assert_eq!(run.expect_marker("host.busy_delete.numvfs"), "3");
    assert_eq!(
        run.expect_marker("host.delete.status"),
        "0",
        "{}",
        run.expect_marker("host.delete.err")
    );
    assert_eq!(run.expect_marker("host.delete.numvfs"), "0");
    assert_eq!(
        run.expect_marker("host.addr_create.status"),
        "0",
        "{}",
        run.expect_marker("host.addr_create.err")
    );
    assert_eq!(run.expect_marker("host.addr.numvfs"), "3");
    assert_eq!(run.expect_marker("host.addr.vf0"), "vfio-pci");
    assert_eq!(run.expect_marker("host.addr_delete.numvfs"), "0");
}
