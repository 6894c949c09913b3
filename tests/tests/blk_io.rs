//! Issue 14 (and 9's image locks): disk queues on I/O threads off the event loop, in
//! a real guest. One emulated-host boot, three guests and a QEMU:
//!
//! - `num_queues=2`, two writers pinned to the two vCPUs writing at once:
//!   the image is exactly what the same writes give on the host, and both
//!   queues served requests (their counters in vm.counters);
//! - a guest's `sync` returns, vfvm is SIGKILLed at once: the data is in the
//!   image (a flush completes only once the data is on stable storage); this
//!   guest runs with io_uring disabled in the host kernel, so the fallback
//!   that carries requests out one at a time serves it;
//! - one disk's backing device stalls (device-mapper suspended): the other
//!   disk, the console (both ways) and the API keep answering, and the
//!   stalled request completes once the device resumes;
//! - QEMU cannot open an image vfvm has open, and vfvm cannot open one
//!   QEMU has (the OFD byte-range locks QEMU takes).

use std::time::Duration;

use vfvm_tests::{Run, Testbed};

const GUEST_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Writer N's data: 4 MiB of `yes` output, the same in guest and host.
const WRITERS: &str = r#"
    writer() { yes "vfvm writer $1 " | head -c 4194304; }
"#;

const MQ_GUEST: &str = r#"
    marker guest.mq.queues "$(ls /sys/block/vda/mq | wc -l)"
    marker guest.mq.cpus "$(nproc)"
    writer a | taskset -c 0 dd of=/dev/vda bs=4096 seek=0 oflag=direct conv=notrunc 2>/dev/null &
    a=$!
    writer b | taskset -c 1 dd of=/dev/vda bs=4096 seek=1024 oflag=direct conv=notrunc 2>/dev/null &
    b=$!
    wait $a; wait $b
    echo 3 >/proc/sys/vm/drop_caches
    marker guest.mq.md5 "$(md5sum /dev/vda | cut -d' ' -f1)"
    sleep 600
"#;

const FLUSH_GUEST: &str = r#"
    yes "flushed data " | head -c 1048576 >/dev/vda
    sync
    marker guest.synced 1
    sleep 60
"#;

const STALL_GUEST: &str = r#"
    marker guest.ready 1
    read -r go
    (dd if=/dev/vdb of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null; marker guest.vdb_done 1) &
    sleep 1
    marker guest.stalled "$go"
    dd if=/dev/urandom of=/tmp/x bs=4096 count=64 2>/dev/null
    dd if=/tmp/x of=/dev/vda bs=4096 oflag=direct conv=notrunc 2>/dev/null
    dd if=/dev/vda of=/tmp/y bs=4096 count=64 iflag=direct 2>/dev/null
    cmp /tmp/x /tmp/y && marker guest.fast_io ok
    read -r ping
    marker guest.pong "$ping"
    wait
"#;

#[test]
fn multiqueue_flush_stall_and_qemu_locks() {
    let run = Testbed::new()
        .igb(false)
        .qemu(true)
        .file("mq.sh", format!("{WRITERS}{MQ_GUEST}"))
        .file("flush.sh", FLUSH_GUEST)
        .file("stall.sh", STALL_GUEST)
        .scenario(&format!(
            r#"
            {WRITERS}
            md5() {{ md5sum "$1" | cut -d' ' -f1; }}
            # requests COUNTERS-NAME: the requests field of one vm.counters entry.
            requests() {{ ctl counters --json | tr -d ' \n' | sed -n "s|.*\"$1\":{{[^}}]*\"requests\":\([0-9]*\).*|\1|p"; }}

            # 1. Two queues, two concurrent writers.
            dd if=/dev/zero of=/tmp/q.img bs=1M count=16 2>/dev/null
            cp /tmp/q.img /tmp/expected.img
            writer a | dd of=/tmp/expected.img bs=4096 seek=0 conv=notrunc 2>/dev/null
            writer b | dd of=/tmp/expected.img bs=4096 seek=1024 conv=notrunc 2>/dev/null
            marker host.mq.expected "$(md5 /tmp/expected.img)"
            guest_initrd mq /mq.sh >/dev/null
            vfvm run -c 2 -m 256M -l com1,/tmp/mq.log -s 0,hostbridge \
              -s 4,virtio-blk,/tmp/q.img,num_queues=2 --api-sock /tmp/api.sock \
              --kernel /guest/vmlinuz --initrd /tmp/mq.img --cmdline "{GUEST_CMDLINE}" mq &
            pid=$!
            wait_for 300 "grep -qs '@@guest.mq.md5' /tmp/mq.log" || die "mq guest did not finish"
            marker host.mq.q0 "$(requests blk@4:0/q0)"
            marker host.mq.q1 "$(requests blk@4:0/q1)"
            ctl shutdown
            st=0; wait $pid || st=$?
            marker host.mq.status $st
            marker host.mq.image "$(md5 /tmp/q.img)"
            cat /tmp/mq.log

            # 2. A flush is durable when the guest hears of it (without io_uring).
            echo 2 >/proc/sys/kernel/io_uring_disabled
            dd if=/dev/zero of=/tmp/f.img bs=1M count=4 2>/dev/null
            marker host.flush.expected "$(yes 'flushed data ' | head -c 1048576 | md5sum | cut -d' ' -f1)"
            guest_initrd flush /flush.sh >/dev/null
            vfvm run -c 1 -m 256M -l com1,/tmp/flush.log -s 4,virtio-blk,/tmp/f.img \
              --kernel /guest/vmlinuz --initrd /tmp/flush.img --cmdline "{GUEST_CMDLINE}" flush \
              2>/tmp/flush.err &
            pid=$!
            wait_for 300 "grep -qs '@@guest.synced' /tmp/flush.log" || die "flush guest did not sync"
            kill -9 $pid
            st=0; wait $pid || st=$?
            marker host.flush.status $st
            marker host.flush.image "$(head -c 1048576 /tmp/f.img | md5sum | cut -d' ' -f1)"
            marker host.flush.fallback "$(grep -c 'no io_uring' /tmp/flush.err)"
            echo 0 >/proc/sys/kernel/io_uring_disabled

            # 3. One disk stalls; the rest keeps answering.
            insmod /lib/modules/loop.ko
            insmod /lib/modules/dm-mod.ko
            dd if=/dev/zero of=/tmp/slow.img bs=1M count=8 2>/dev/null
            losetup /dev/loop0 /tmp/slow.img
            dmsetup create stall --table "0 16384 linear /dev/loop0 0"
            [ -b /dev/mapper/stall ] || dmsetup mknodes stall
            dd if=/dev/zero of=/tmp/fast.img bs=1M count=4 2>/dev/null
            guest_initrd stall /stall.sh >/dev/null
            mkfifo /tmp/in
            vfvm run -c 2 -m 256M -l com1,stdio -s 4,virtio-blk,/tmp/fast.img \
              -s 5,virtio-blk,/dev/mapper/stall,nocache --api-sock /tmp/api.sock \
              --kernel /guest/vmlinuz --initrd /tmp/stall.img --cmdline "{GUEST_CMDLINE}" stall \
              </tmp/in >/tmp/stall.log 2>&1 &
            pid=$!
            exec 3>/tmp/in
            wait_for 300 "grep -qs '@@guest.ready' /tmp/stall.log" || die "stall guest not ready"
            dmsetup suspend stall
            echo go >&3
            wait_for 120 "grep -qs '@@guest.fast_io' /tmp/stall.log" || die "the other disk stalled too"
            ctl info >/dev/null && marker host.stall.api ok
            marker host.stall.vdb_requests "$(requests blk@5:0)"
            echo ping >&3
            wait_for 60 "grep -qs '@@guest.pong' /tmp/stall.log" || die "console input stalled"
            marker host.stall.vdb_done_while_suspended "$(grep -c '@@guest.vdb_done' /tmp/stall.log)"
            # 4. QEMU cannot take an image vfvm has.
            s=0
            timeout 20 qemu-system-x86_64 -machine q35 -accel kvm -nodefaults -display none -S \
              -drive file=/tmp/fast.img,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
              </dev/null >/tmp/qemu.err 2>&1 || s=$?
            marker host.qemu.status "$s"
            marker host.qemu.error "$(grep -o 'Failed to get[a-z ]* "write" lock' /tmp/qemu.err | head -n1)"
            dmsetup resume stall
            wait_for 120 "grep -qs '@@guest.vdb_done' /tmp/stall.log" || die "stalled read never completed"
            st=0; wait $pid || st=$?
            exec 3>&-
            marker host.stall.status $st
            cat /tmp/stall.log

            # 4b. vfvm cannot take an image QEMU has.
            qemu-system-x86_64 -machine q35 -accel kvm -nodefaults -display none -S \
              -drive file=/tmp/fast.img,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
              </dev/null >/dev/null 2>&1 &
            q=$!
            # QEMU opens the image before it locks it, and probes it holding
            # only its read permission (byte 100); the lock that keeps other
            # writers out (byte 201, "write not shared") comes after: wait
            # for that one, or vfvm may take the image first.
            wait_for 60 "grep -q 'OFDLCK.* 201 201\$' /proc/locks" || die "QEMU did not lock the image"
            s=0; vfvm run -c 1 -m 64M -s 4,virtio-blk,/tmp/fast.img --kernel /guest/vmlinuz q 2>/tmp/vfvm.err || s=$?
            marker host.locked "$s $(cat /tmp/vfvm.err)"
            kill $q; wait $q || true
            "#
        ))
        .timeout(Duration::from_secs(900))
        .run()
        .unwrap();
    let m = |k: &str| marker(&run, k);

    // Two queues in the guest, both used, the exact image.
    assert_eq!(m("guest.mq.queues"), "2");
    let expected = m("host.mq.expected");
    assert_eq!(m("host.mq.image"), expected, "image after two writers");
    assert_eq!(m("guest.mq.md5"), expected, "guest's read-back");
    assert_eq!(m("host.mq.status"), "1");
    for q in ["host.mq.q0", "host.mq.q1"] {
        let n: u64 = m(q).parse().unwrap_or(0);
        assert!(n > 100, "{q}: {n} requests");
    }

    // The synced data survived the SIGKILL.
    assert_eq!(m("host.flush.status"), "137");
    assert_eq!(m("host.flush.image"), m("host.flush.expected"));
    assert_ne!(
        m("host.flush.fallback"),
        "0",
        "the flush guest ran without io_uring"
    );

    // The stall delayed nothing else.
    assert_eq!(m("guest.stalled"), "go");
    assert_eq!(m("guest.fast_io"), "ok");
    assert_eq!(m("host.stall.api"), "ok");
    assert_eq!(m("guest.pong"), "ping");
    assert_eq!(m("host.stall.vdb_done_while_suspended"), "0");
    assert_eq!(m("guest.vdb_done"), "1");
    assert_eq!(m("host.stall.status"), "1");

    // QEMU and vfvm see each other's locks.
    assert_ne!(m("host.qemu.status"), "0");
    assert_ne!(m("host.qemu.status"), "143", "QEMU was not refused");
    let refused = m("host.qemu.error");
    assert!(
        refused.starts_with("Failed to get") && refused.ends_with(r#""write" lock"#),
        "{refused}"
    );
    let locked = m("host.locked");
    assert!(
        locked.starts_with("4 ") && locked.contains("in use by another VM (locked)"),
        "{locked}"
    );
}

fn marker<'a>(run: &'a Run, key: &str) -> &'a str {
    run.marker(key)
        .unwrap_or_else(|| panic!("no marker {key}; see the run's console.log"))
}
