//! Issue 2: `vfvm run` boots a Linux guest with fully reserved memory.
//! Every check here looks at what the guest (or the host's /proc) saw.

use std::time::Duration;

use vfvm_tests::{guest_kernel, Testbed};

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// One emulated-host boot: a 2-vCPU 512 MiB guest powers off (status 1),
/// the same guest reboots (status 0), and while one runs, vfvm's VmLck
/// covers all of guest memory. The first boots the bzImage with two
/// reservation threads on the emulated host's two CPUs, so the guest
/// decompresses it; the second the ELF vmlinux inside it, as a file; the
/// third the bzImage beside one reservation thread, so vfvm decompresses it
/// on the CPU left and enters its vmlinux directly (issue 13).
#[test]
fn guest_boots_with_cpus_memory_and_exit_statuses() {
    let bzimage = std::fs::read(guest_kernel().unwrap()).unwrap();
    let (format, vmlinux) = arch::boot::bzimage_vmlinux("vmlinuz".as_ref(), &bzimage)
        .unwrap()
        .expect("the guest kernel's payload is one vfvm decompresses");
    assert_eq!(format, "zstd", "Debian's 6.12 kernel");
    let run = Testbed::new()
        .igb(false)
        .file("vmlinux", vmlinux)
        .file(
            "guest.sh",
            r#"
            marker guest.cpus "$(grep -c ^processor /proc/cpuinfo)"
            marker guest.memtotal_kib "$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
            marker guest.acpi "$(ls /sys/firmware/acpi/tables | tr '\n' ' ')"
            marker guest.pci "$(ls /sys/bus/pci/devices | tr '\n' ' ')"
            sleep 2
            "#,
        )
        .file("reboot.sh", "reboot -f\n")
        .scenario(&format!(
            r#"
            guest_initrd g /guest.sh >/dev/null
            VFVM_RESERVE_THREADS=2 vfvm run -c 2 -m 512M -l com1,stdio -s 0,hostbridge -s 31,lpc \
              --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "{GUEST_CMDLINE}" g \
              2>/tmp/g.err &
            pid=$!
            wait_for 60 "grep -q 'started in' /tmp/g.err" || true
            marker host.vmlck_kib "$(awk '/VmLck/ {{print $2}}' /proc/$pid/status)"
            status=0; wait $pid || status=$?
            marker host.poweroff_status $status
            marker host.bz_start "$(grep 'started in' /tmp/g.err)"
            guest_initrd r /reboot.sh >/dev/null
            status=0
            vfvm run -c 1 -m 128M -l com1,stdio --kernel /vmlinux --initrd /tmp/r.img \
              --cmdline "{GUEST_CMDLINE}" r 2>/tmp/r.err || status=$?
            marker host.reboot_status $status
            marker host.elf_start "$(grep 'started in' /tmp/r.err)"
            status=0
            VFVM_RESERVE_THREADS=1 vfvm run -c 1 -m 128M -l com1,stdio --kernel /guest/vmlinuz \
              --initrd /tmp/r.img --cmdline "{GUEST_CMDLINE}" h 2>/tmp/h.err || status=$?
            marker host.host_decoded_status $status
            marker host.host_decoded_start "$(grep 'started in' /tmp/h.err)"
            "#
        ))
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    assert_eq!(run.marker("guest.cpus"), Some("2"));
    let mem: u64 = run.marker("guest.memtotal_kib").unwrap().parse().unwrap();
    assert!(mem > 400 * 1024 && mem <= 512 * 1024, "MemTotal {mem} KiB");
    let acpi = run.marker("guest.acpi").unwrap();
    for table in ["APIC", "DSDT", "FACP", "MCFG"] {
        assert!(acpi.contains(table), "ACPI tables: {acpi}");
    }
    let pci = run.marker("guest.pci").unwrap();
    assert!(
        pci.contains("0000:00:00.0") && pci.contains("0000:00:1f.0"),
        "{pci}"
    );
    let vmlck: u64 = run.marker("host.vmlck_kib").unwrap().parse().unwrap();
    assert!(vmlck >= 512 * 1024, "VmLck {vmlck} KiB");
    assert_eq!(run.marker("host.poweroff_status"), Some("1"));
    assert_eq!(run.marker("host.reboot_status"), Some("0"));
    assert_eq!(run.marker("host.host_decoded_status"), Some("0"));
    // Each start logs one line of phase times; it says how the kernel went.
    let bz = run.marker("host.bz_start").unwrap();
    for want in [
        "reserve ",
        "DMA map ",
        "load kernel ",
        "zstd payload decompressed by the guest: the 2 reservation threads take every CPU",
        "first vCPU entry ",
    ] {
        assert!(bz.contains(want), "{bz:?} does not say {want:?}");
    }
    let host = run.marker("host.host_decoded_start").unwrap();
    assert!(
        host.contains("zstd payload decompressed by vfvm into guest memory on a CPU"),
        "{host}"
    );
    let elf = run.marker("host.elf_start").unwrap();
    assert!(
        elf.contains("load kernel ") && elf.contains("(vmlinux), first vCPU entry "),
        "{elf}"
    );
}
