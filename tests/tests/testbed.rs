//! The emulated SR-IOV host itself, checked without vfvm: it must give VFs
//! to vfio-pci, and QEMU/KVM inside it must drive one from a guest.

use std::time::Duration;
use vfvm_tests::Testbed;

/// The guest of the reference run: VF up at 192.0.2.2, 3 pings to the PF.
const GUEST_PING: &str = r#"
vf_up 192.0.2.2 >/dev/null
marker guest.vf "$(cat /sys/class/net/$(vf_if)/address)"
marker guest.loss "$(ping_loss 192.0.2.1 3)"
"#;

#[test]
fn vfs_bind_to_vfio_and_qemu_guest_pings_pf() {
    let run = Testbed::new()
        .qemu(true)
        .file("guest.sh", GUEST_PING)
        .scenario(
            r#"
            marker host.kvm "$(test -c /dev/kvm && echo yes)"
            pf_up
            make_vfs 2
            vf_mac 0 aa:88:44:00:02:01
            for i in 0 1; do
              bdf=$(vf_bdf $i)
              marker host.vf$i "$bdf $(pci_id $bdf) $(bind_vfio $bdf)"
            done
            t0=$(cut -d' ' -f1 /proc/uptime)
            qemu_guest "$(guest_initrd ping /guest.sh)" "$(vf_bdf 0)"
            marker host.qemu_secs "$(echo "$(cut -d' ' -f1 /proc/uptime) - $t0" | bc)"
            "#,
        )
        .timeout(Duration::from_secs(180))
        .run()
        .unwrap();
    assert_eq!(run.marker("host.kvm"), Some("yes"));
    let vfs: Vec<&str> = run.markers("host.vf").iter().map(|(_, v)| *v).collect();
    assert_eq!(vfs.len(), 2, "{vfs:?}");
    for (vf, bdf) in vfs.iter().zip(["0000:01:10.0", "0000:01:10.2"]) {
        let fields: Vec<&str> = vf.split(' ').collect();
        assert_eq!(fields[..2], [bdf, "8086:10ca"], "{vf}");
        assert!(fields[2].starts_with("/dev/vfio/"), "{vf}");
    }
    assert_eq!(run.marker("guest.vf"), Some("aa:88:44:00:02:01"));
    assert_eq!(run.marker("guest.loss"), Some("0"));
    assert_eq!(run.marker("guest.exit"), Some("0"));
    eprintln!(
        "emulated host booted in {} s (its uptime), QEMU guest took {} s, run {:?}",
        run.marker("host.booted").unwrap(),
        run.marker("host.qemu_secs").unwrap(),
        run.elapsed()
    );
}

#[test]
fn failing_scenario_is_an_error_with_its_log() {
    let err = Testbed::new()
        .igb(false)
        .scenario("marker step 1\nfalse\nmarker step 2\n")
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("exit status 1"), "{err}");
    assert!(
        err.contains("@@step=1") && !err.contains("@@step=2"),
        "{err}"
    );
    assert!(err.contains("console.log"), "{err}");
}

#[test]
fn kernel_panic_fails_fast() {
    let err = Testbed::new()
        .igb(false)
        .scenario("echo c >/proc/sysrq-trigger\nsleep 600\n")
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernel panic"), "{err}");
}
