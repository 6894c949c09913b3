//! Issue 2: guest memory that crosses the 32-bit MMIO hole, and huge pages.
//!
//! One emulated host with 6 GiB and no igb NIC (the 2 GiB limit is igb's):
//! a `-m 4G` guest, reserved by 2 threads, sees RAM above 4 GiB and powers
//! off (status 1), with all of it locked meanwhile; then `--hugepages`
//! boots a guest when enough 2 MiB pages are reserved on the host, and
//! fails with the one-line hugepages message when too few are; the same
//! for `--hugepages=1G` with the host's 1 GiB pool (issue 13).

use std::time::Duration;

use vfvm_tests::Testbed;

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

#[test]
fn guest_memory_above_4g_and_hugepages() {
    let run = Testbed::new()
        .igb(false)
        .memory_mib(6144)
        .file(
            "guest.sh",
            r#"
            marker guest.memtotal_kib "$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
            marker guest.ram "$(grep 'System RAM' /proc/iomem | tr -d ' ' | tr '\n' ';')"
            marker guest.memmap "$(cat /sys/firmware/memmap/*/start | tr '\n' ' ')"
            "#,
        )
        .scenario(&format!(
            r#"
            guest_initrd g /guest.sh >/dev/null
            # 1 GiB pages: none in the pool, then one allocated at run time
            # (first, while the emulated host's memory is not fragmented).
            gig=/sys/kernel/mm/hugepages/hugepages-1048576kB
            status=0
            vfvm run -c 1 -m 1G --hugepages=1G --kernel /guest/vmlinuz \
              --initrd /tmp/g.img g </dev/null >/dev/null 2>/tmp/nogig.err || status=$?
            marker host.nogig_status $status
            marker host.nogig_stderr "$(tr '\n' '|' </tmp/nogig.err)"
            echo 1 >$gig/nr_hugepages
            marker host.gig_pages "$(cat $gig/nr_hugepages)"

            VFVM_RESERVE_THREADS=2 vfvm run -c 1 -m 4G -l com1,stdio -s 0,hostbridge \
              --kernel /guest/vmlinuz --initrd /tmp/g.img --cmdline "{GUEST_CMDLINE}" big \
              2>/tmp/big.err &
            pid=$!
            wait_for 120 "grep -q 'started in' /tmp/big.err" || true
            marker host.big_vmlck_kib "$(awk '/VmLck/ {{print $2}}' /proc/$pid/status)"
            status=0; wait $pid || status=$?
            marker host.big_status $status
            marker host.big_start "$(grep 'started in' /tmp/big.err)"

            # 256 MiB of 2 MiB pages: 128 pages.
            echo 128 >/proc/sys/vm/nr_hugepages
            marker host.hugepages_reserved "$(cat /proc/sys/vm/nr_hugepages)"
            status=0
            vfvm run -c 1 -m 256M --hugepages -l com1,stdio --kernel /guest/vmlinuz \
              --initrd /tmp/g.img --cmdline "{GUEST_CMDLINE}" huge || status=$?
            marker host.huge_status $status

            echo 64 >/proc/sys/vm/nr_hugepages
            status=0
            vfvm run -c 1 -m 256M --hugepages --kernel /guest/vmlinuz \
              --initrd /tmp/g.img g </dev/null >/tmp/few.out 2>/tmp/few.err || status=$?
            marker host.few_status $status
            marker host.few_lines "$(wc -l </tmp/few.err)"
            marker host.few_stderr "$(tr '\n' '|' </tmp/few.err)"
            status=0
            vfvm run -c 1 -m 1G --hugepages=1G -l com1,stdio --kernel /guest/vmlinuz \
              --initrd /tmp/g.img --cmdline "{GUEST_CMDLINE}" gig 2>/tmp/gig.err || status=$?
            marker host.gig_status $status
            marker host.gig_start "$(grep 'started in' /tmp/gig.err)"
            "#
        ))
        .timeout(Duration::from_secs(480))
        .run()
        .unwrap();

    // The 4 GiB guest (the first guest.* markers).
    let guest = run.markers("guest.");
    let first = |key: &str| {
        guest
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {key}; see {}", run.log_path().display()))
    };
    let mem: u64 = first("guest.memtotal_kib").parse().unwrap();
    assert!(
        mem > 3_800_000 && mem <= 4 << 20,
        "MemTotal {mem} KiB for -m 4G"
    );
    let ram = first("guest.ram");
    assert!(
        ram.contains("100000000-") && ram.contains(":SystemRAM"),
        "no System RAM at 0x100000000 in /proc/iomem: {ram}"
    );
    let memmap = first("guest.memmap");
    assert!(
        memmap.split_whitespace().any(|s| s == "0x100000000"),
        "no memmap entry at 0x100000000: {memmap}"
    );
    assert_eq!(run.marker("host.big_status"), Some("1"));
    // 2 threads reserved it, all of it locked while the guest ran.
    let start = run.marker("host.big_start").unwrap();
    assert!(start.contains("4 KiB pages, locked, 2 threads"), "{start}");
    let vmlck: u64 = run.marker("host.big_vmlck_kib").unwrap().parse().unwrap();
    assert_eq!(vmlck, 4 << 20, "VmLck {vmlck} KiB for -m 4G");

    // --hugepages with enough pages: the second guest booted and powered off.
    assert_eq!(run.marker("host.hugepages_reserved"), Some("128"));
    let memtotals: Vec<_> = guest
        .iter()
        .filter(|(k, _)| *k == "guest.memtotal_kib")
        .collect();
    assert_eq!(memtotals.len(), 3, "the three guests report: {guest:?}");
    let huge_mem: u64 = memtotals[1].1.parse().unwrap();
    assert!(
        huge_mem > 200 * 1024 && huge_mem <= 256 * 1024,
        "MemTotal {huge_mem} KiB for -m 256M --hugepages"
    );
    assert_eq!(run.marker("host.huge_status"), Some("1"));

    // Too few: status 4 and the one hugepages line, naming the fix.
    let stderr = run.marker("host.few_stderr").unwrap();
    assert_eq!(run.marker("host.few_status"), Some("4"), "{stderr}");
    assert_eq!(run.marker("host.few_lines"), Some("1"), "{stderr}");
    let line = stderr.strip_suffix('|').unwrap_or(stderr);
    assert!(line.starts_with("vfvm: error: --hugepages: "), "{line}");
    for want in [
        "need 128",
        "64 are free",
        "256 MiB",
        "echo 128 > /proc/sys/vm/nr_hugepages",
    ] {
        assert!(line.contains(want), "{line:?} does not name {want:?}");
    }

    // --hugepages=1G: the one line while the pool is empty, a boot with a page.
    let stderr = run.marker("host.nogig_stderr").unwrap();
    assert_eq!(run.marker("host.nogig_status"), Some("4"), "{stderr}");
    let line = stderr.strip_suffix('|').unwrap_or(stderr);
    assert!(!line.contains('|'), "one line: {stderr}");
    for want in [
        "vfvm: error: --hugepages=1G: need 1 free 1 GiB pages for 1 GiB of guest memory, 0 are free",
        "echo 1 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
        "hugepagesz=1G hugepages=1",
    ] {
        assert!(line.contains(want), "{line:?} does not name {want:?}");
    }
    assert_eq!(
        run.marker("host.gig_pages"),
        Some("1"),
        "no 1 GiB page for the emulated host"
    );
    assert_eq!(run.marker("host.gig_status"), Some("1"));
    let start = run.marker("host.gig_start").unwrap();
    assert!(start.contains("1 GiB pages, hugetlb, 1 thread"), "{start}");
    let gig_mem: u64 = memtotals[2].1.parse().unwrap();
    assert!(
        gig_mem > 900 * 1024 && gig_mem <= 1 << 20,
        "MemTotal {gig_mem} KiB for -m 1G --hugepages=1G"
    );
}
