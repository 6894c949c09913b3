//! Issue 3: virtio-blk disks in a real guest. Each check looks at what the
//! guest saw or at the image files in the emulated host after vfvm exited.
//! Two emulated-host boots: one for guest I/O, one for command-line errors.

use std::time::Duration;

use vfvm_tests::Testbed;

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// 1000 bytes the guest writes at several offsets (ASCII, so a mismatch in
/// the console is readable).
fn pattern() -> Vec<u8> {
    (0..1000u32)
        .map(|i| b"vfvm-virtio-blk-pattern-"[(i % 24) as usize] ^ ((i / 24) % 16) as u8)
        .collect()
}

/// The writes of the guest (and of the host building the expected image):
/// `dd` commands with `$DEV` as the target.
const WRITES: &str = r#"
    dd if=/pat of=$DEV bs=1 seek=0 conv=notrunc 2>/dev/null
    dd if=/pat of=$DEV bs=1 seek=12345 conv=notrunc 2>/dev/null
    dd if=/big of=$DEV bs=65536 seek=64 conv=notrunc 2>/dev/null
    dd if=/pat of=$DEV bs=1 seek=$((8388608 - 1000)) conv=notrunc 2>/dev/null
"#;

/// One emulated-host boot, two guests.
///
/// Guest 1: a writable 8 MiB disk at slot 4 (random contents) and a
/// host-prepared 5 MiB + 1536 B disk at slot 7. The guest reports which PCI
/// function backs vda and vdb, the functions' IDs, the read disk's size and
/// checksum, then writes the pattern at four offsets (unaligned ones, the
/// last bytes of the disk, and 1 MiB at 4 MiB), syncs, drops its caches,
/// reads the whole disk back and powers off. The host applies the same
/// writes to a copy of the original image with its own dd and compares.
///
/// Guest 2: an `ro` disk at slot 4 and a fully allocated 16 MiB disk at
/// slot 5 whose first 8 MiB the guest discards.
#[test]
fn guest_writes_reads_ro_two_slots_and_discard() {
    let run = Testbed::new()
        .igb(false)
        .file("pat", pattern())
        .file(
            "io.sh",
            format!(
                r#"
                for d in vda vdb; do
                  marker guest.$d.pci "$(basename "$(readlink -f /sys/block/$d/device/..)")"
                  marker guest.$d.sectors "$(cat /sys/block/$d/size)"
                  marker guest.$d.ro "$(cat /sys/block/$d/ro)"
                done
                for s in 04 07; do
                  p=/sys/bus/pci/devices/0000:00:$s.0
                  marker guest.pci.$s "$(cat $p/vendor) $(cat $p/device)"
                done
                marker guest.vdb.md5 "$(md5sum /dev/vdb | cut -d' ' -f1)"
                DEV=/dev/vda
                {WRITES}
                sync
                echo 3 >/proc/sys/vm/drop_caches
                marker guest.vda.md5 "$(md5sum /dev/vda | cut -d' ' -f1)"
                "#
            ),
        )
        .file(
            "rodisc.sh",
            r#"
            marker guest.ro.ro "$(cat /sys/block/vda/ro)"
            marker guest.ro.md5 "$(md5sum /dev/vda | cut -d' ' -f1)"
            if dd if=/pat of=/dev/vda bs=512 count=1 conv=notrunc,fsync 2>/tmp/ro.err; then
              marker guest.ro.write ok
            else
              marker guest.ro.write "failed: $(head -n1 /tmp/ro.err)"
            fi
            marker guest.disc.max_bytes "$(cat /sys/block/vdb/queue/discard_max_bytes)"
            blkdiscard -o 0 -l 8388608 /dev/vdb
            echo 3 >/proc/sys/vm/drop_caches
            marker guest.disc.head_md5 "$(dd if=/dev/vdb bs=1M count=8 2>/dev/null | md5sum | cut -d' ' -f1)"
            marker guest.disc.tail_md5 "$(dd if=/dev/vdb bs=1M skip=8 2>/dev/null | md5sum | cut -d' ' -f1)"
            "#,
        )
        .scenario(&format!(
            r#"
            md5() {{ md5sum "$1" | cut -d' ' -f1; }}
            dd if=/dev/urandom of=/tmp/big bs=65536 count=16 2>/dev/null
            dd if=/dev/urandom of=/tmp/w.img bs=1M count=8 2>/dev/null
            cp /tmp/w.img /tmp/expected.img
            dd if=/dev/urandom of=/tmp/r.img bs=512 count=$((10240 + 3)) 2>/dev/null
            marker host.r.md5 "$(md5 /tmp/r.img)"
            guest_initrd io /io.sh /pat /tmp/big >/dev/null
            st=0
            vfvm run -c 1 -m 256M -l com1,stdio -s 0,hostbridge \
              -s 4,virtio-blk,/tmp/w.img -s 7:0,virtio-blk,/tmp/r.img \
              --kernel /guest/vmlinuz --initrd /tmp/io.img --cmdline "{GUEST_CMDLINE}" io || st=$?
            marker host.io.status $st
            cp /tmp/big /big
            DEV=/tmp/expected.img
            {WRITES}
            marker host.expected.md5 "$(md5 /tmp/expected.img)"
            marker host.w.md5 "$(md5 /tmp/w.img)"
            marker host.w.size "$(stat -c %s /tmp/w.img)"
            marker host.r.md5_after "$(md5 /tmp/r.img)"
            cmp /tmp/w.img /tmp/expected.img | head -n 3 || true

            dd if=/dev/urandom of=/tmp/ro.img bs=1M count=4 2>/dev/null
            marker host.ro.md5 "$(md5 /tmp/ro.img)"
            dd if=/dev/urandom of=/tmp/d.img bs=1M count=16 2>/dev/null
            marker host.d.tail_md5 "$(dd if=/tmp/d.img bs=1M skip=8 2>/dev/null | md5sum | cut -d' ' -f1)"
            marker host.d.blocks_before "$(stat -c %b /tmp/d.img)"
            marker host.d.du_before "$(du -k /tmp/d.img | cut -f1)"
            guest_initrd rodisc /rodisc.sh /pat >/dev/null
            st=0
            vfvm run -c 1 -m 256M -l com1,stdio \
              -s 4,virtio-blk,/tmp/ro.img,ro -s 5,virtio-blk,/tmp/d.img \
              --kernel /guest/vmlinuz --initrd /tmp/rodisc.img --cmdline "{GUEST_CMDLINE}" rodisc \
              || st=$?
            marker host.rodisc.status $st
            marker host.ro.md5_after "$(md5 /tmp/ro.img)"
            marker host.d.blocks_after "$(stat -c %b /tmp/d.img)"
            marker host.d.du_after "$(du -k /tmp/d.img | cut -f1)"
            marker host.d.size_after "$(stat -c %s /tmp/d.img)"
            marker host.d.tail_md5_after "$(dd if=/tmp/d.img bs=1M skip=8 2>/dev/null | md5sum | cut -d' ' -f1)"
            "#
        ))
        .timeout(Duration::from_secs(400))
        .run()
        .unwrap();

    // Both guests ran their whole scenario and powered off.
    let exits: Vec<_> = run.markers("guest.exit").into_iter().map(|m| m.1).collect();
    assert_eq!(exits, ["0", "0"], "guest exit markers");
    assert_eq!(run.marker("host.io.status"), Some("1"));
    assert_eq!(run.marker("host.rodisc.status"), Some("1"));

    // Two disks at slots 4 and 7, modern virtio-blk IDs, vda/vdb in slot order.
    assert_eq!(run.marker("guest.pci.04"), Some("0x1af4 0x1042"));
    assert_eq!(run.marker("guest.pci.07"), Some("0x1af4 0x1042"));
    assert_eq!(run.marker("guest.vda.pci"), Some("0000:00:04.0"));
    assert_eq!(run.marker("guest.vdb.pci"), Some("0000:00:07.0"));
    assert_eq!(run.marker("guest.vda.sectors"), Some("16384"));
    assert_eq!(run.marker("guest.vdb.sectors"), Some("10243"));
    assert_eq!(run.marker("guest.vda.ro"), Some("0"));

    // The guest read the host's image exactly; nothing wrote to it.
    let r = run.expect_marker("host.r.md5");
    assert_eq!(
        run.expect_marker("guest.vdb.md5"),
        r,
        "guest's checksum of r.img"
    );
    assert_eq!(run.expect_marker("host.r.md5_after"), r, "r.img changed");

    // The guest's writes landed exactly where it put them, nothing else
    // changed, and the guest reads back what the host has.
    let expected = run.expect_marker("host.expected.md5");
    assert_eq!(
        run.expect_marker("host.w.md5"),
        expected,
        "w.img vs expected image"
    );
    assert_eq!(
        run.expect_marker("guest.vda.md5"),
        expected,
        "guest's read-back"
    );
    assert_eq!(run.marker("host.w.size"), Some("8388608"));

    // Read-only: the guest sees it, its write fails, the image is intact.
    let ro = run.expect_marker("host.ro.md5");
    assert_eq!(run.marker("guest.ro.ro"), Some("1"));
    assert_eq!(
        run.expect_marker("guest.ro.md5"),
        ro,
        "guest's checksum of ro.img"
    );
    let w = run.expect_marker("guest.ro.write");
    assert!(w.starts_with("failed"), "write to the ro disk: {w}");
    assert_eq!(run.expect_marker("host.ro.md5_after"), ro, "ro.img changed");

    // Discard: advertised, the range reads as zeros in the guest, its blocks
    // left the host file, the rest of the file is intact.
    let max: u64 = run.expect_marker("guest.disc.max_bytes").parse().unwrap();
    assert!(max > 0, "discard_max_bytes {max}");
    // md5 of 8 MiB of zeros.
    assert_eq!(
        run.expect_marker("guest.disc.head_md5"),
        "96995b58d4cbf6aaa9041b4f00c7f6ae"
    );
    let tail = run.expect_marker("host.d.tail_md5");
    assert_eq!(run.expect_marker("guest.disc.tail_md5"), tail);
    assert_eq!(run.expect_marker("host.d.tail_md5_after"), tail);
    assert_eq!(run.marker("host.d.size_after"), Some("16777216"));
    let before: u64 = run.expect_marker("host.d.blocks_before").parse().unwrap();
    let after: u64 = run.expect_marker("host.d.blocks_after").parse().unwrap();
    assert!(before >= 32768, "d.img allocated {before} blocks before");
    assert!(
        after <= before - 16384,
        "d.img blocks {before} -> {after}: 8 MiB should have been released"
    );
    let du_before: u64 = run.expect_marker("host.d.du_before").parse().unwrap();
    let du_after: u64 = run.expect_marker("host.d.du_after").parse().unwrap();
    assert!(
        du_after <= du_before - 8192,
        "du -k {du_before} -> {du_after}"
    );
}

/// One emulated-host boot: bad disks stop vfvm before anything starts
/// (status 4, one line on stderr, no console output).
///
/// - a missing image;
/// - a path that cannot be read as an image: a directory (the scenario runs
///   as root, so `chmod 000` would not stop it), writable (open fails with
///   EISDIR) and `ro` (opens, but is not a file or block device);
/// - an image in use by a running VM, writable and `ro` (the running VM
///   has it writable, so it holds the exclusive lock). The lock is taken
///   before guest memory is reserved, so not even the "reserved" info line
///   is printed.
#[test]
fn bad_disks_are_one_line_errors() {
    let run = Testbed::new()
        .igb(false)
        .file("up.sh", "marker guest.bg_up 1\nsleep 4\n")
        .file("never.sh", "marker guest.started 1\n")
        .scenario(&format!(
            r#"
            guest_initrd never /never.sh >/dev/null
            try() {{
              name=$1; shift
              check $name vfvm run -c 1 -m 128M -l com1,stdio "$@" --kernel /guest/vmlinuz \
                --initrd /tmp/never.img --cmdline "{GUEST_CMDLINE}" $name
            }}
            try missing -s 4,virtio-blk,/tmp/missing.img
            mkdir /tmp/adir
            try dir -s 4,virtio-blk,/tmp/adir
            try dirro -s 4,virtio-blk,/tmp/adir,ro

            dd if=/dev/zero of=/tmp/shared.img bs=1M count=4 2>/dev/null
            guest_initrd bg /up.sh >/dev/null
            vfvm run -c 1 -m 128M -l com1,stdio -s 4,virtio-blk,/tmp/shared.img \
              --kernel /guest/vmlinuz --initrd /tmp/bg.img --cmdline "{GUEST_CMDLINE}" bg \
              >/tmp/bg.out 2>&1 &
            bg=$!
            wait_for 120 "grep -q @@guest.bg_up /tmp/bg.out"
            try inuse -s 4,virtio-blk,/tmp/shared.img
            try inusero -s 4,virtio-blk,/tmp/shared.img,ro
            st=0; wait $bg || st=$?
            marker host.bg.status $st
            marker host.bg.up "$(grep -c @@guest.bg_up /tmp/bg.out)"
            "#
        ))
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();

    assert_eq!(run.marker("host.bg.up"), Some("1"), "the first VM ran");
    assert_eq!(
        run.marker("host.bg.status"),
        Some("1"),
        "the first VM kept running"
    );
    assert!(run.marker("guest.started").is_none(), "a bad VM booted");
    for (name, path, what) in [
        ("missing", "/tmp/missing.img", "not found"),
        ("dir", "/tmp/adir", "Is a directory"),
        ("dirro", "/tmp/adir", "not a regular file or block device"),
        ("inuse", "/tmp/shared.img", "in use by another VM"),
        ("inusero", "/tmp/shared.img", "in use by another VM"),
    ] {
        run.assert_error(name, &[path, what]);
    }
}
