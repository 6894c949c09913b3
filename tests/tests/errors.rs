//! Issue 2: bad input makes `vfvm run` exit with status 4 (bhyve's
//! "error") and ONE line on stderr naming the flag and the problem, before
//! anything is started.
//!
//! Every case runs in one emulated-host boot: some need /dev/kvm (more
//! vCPUs than KVM allows) or a host whose limits we set (RLIMIT_MEMLOCK for
//! an unprivileged user, a 64 GiB guest in a 2 GiB host), and the pure-CLI
//! cases cost nothing more there while testing the very binary the other
//! tests boot guests with.

use std::time::Duration;

use vfvm_tests::Testbed;

#[test]
fn bad_input_exits_4_with_one_line() {
    let scenario = r#"
        K=/guest/vmlinuz
        : >/tmp/empty
        mkdir -p /tmp/kdir
        # Missing and unusable kernels (root can read anything: a directory,
        # an empty file, a file that is no kernel).
        check kernel_missing vfvm run --kernel /tmp/nonexistent g
        check kernel_dir vfvm run --kernel /tmp/kdir g
        check kernel_empty vfvm run --kernel /tmp/empty g
        check kernel_junk vfvm run --kernel /lib/testbed.sh g
        check no_kernel vfvm run g
        check unknown_flag vfvm run --bogus 1 --kernel $K g
        check mem_zero vfvm run -m 0 --kernel $K g
        check mem_junk vfvm run -m 12Q --kernel $K g
        check cpus_zero vfvm run -c 0 --kernel $K g
        check cpus_kvm vfvm run -c 8192 --kernel $K g
        check slot_junk vfvm run -s foo,hostbridge --kernel $K g
        check slot_range vfvm run -s 32,lpc --kernel $K g
        check slot_no_emulation vfvm run -s 5 --kernel $K g
        check slot_twice vfvm run -s 0,hostbridge -s 0,lpc --kernel $K g
        check emulation vfvm run -s 3,e1000 --kernel $K g
        check mem_huge vfvm run -m 64G --kernel $K g
        # An unprivileged user: no CAP_IPC_LOCK, RLIMIT_MEMLOCK 64 KiB.
        echo 'vfvmuser:x:1000:1000:vfvm test:/tmp:/bin/sh' >>/etc/passwd
        echo 'vfvmuser:x:1000:' >>/etc/group
        chmod 666 /dev/kvm
        # The initramfs's directories and busybox are root-only as unpacked.
        chmod 755 / /bin /sbin /usr /usr/bin /usr/sbin /lib /guest 2>/dev/null || true
        chmod 755 "$(readlink -f /bin/sh)" /usr/bin/vfvm
        chmod 644 $K
        chmod 1777 /tmp
        marker host.perms "$(ls -ldL / /bin /bin/sh /usr/bin/vfvm /tmp | tr '\n' ';')"
        cp $K /tmp/k600
        chmod 600 /tmp/k600
        check kernel_unreadable su -s /bin/sh vfvmuser -c "vfvm run --kernel /tmp/k600 g"
        check memlock su -s /bin/sh vfvmuser -c "ulimit -l 64; exec vfvm run -m 128M --kernel $K g"
        marker host.user_memlock $(su -s /bin/sh vfvmuser -c 'ulimit -l 64; id -u; ulimit -l')
        "#;
    let run = Testbed::new()
        .igb(false)
        .scenario(scenario)
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    run.assert_error(
        "kernel_missing",
        &["--kernel /tmp/nonexistent", "not found"],
    );
    run.assert_error("kernel_dir", &["--kernel /tmp/kdir", "not a regular file"]);
    run.assert_error("kernel_empty", &["--kernel /tmp/empty", "empty file"]);
    run.assert_error(
        "kernel_junk",
        &["--kernel /lib/testbed.sh", "not a Linux kernel"],
    );
    run.assert_error(
        "kernel_unreadable",
        &["--kernel /tmp/k600", "permission denied"],
    );
    run.assert_error("no_kernel", &["--kernel", "not provided"]);
    run.assert_error("unknown_flag", &["--bogus"]);
    run.assert_error("mem_zero", &["-m 0", "greater than 0"]);
    run.assert_error("mem_junk", &["-m 12Q"]);
    run.assert_error("cpus_zero", &["-c 0", "at least 1"]);
    run.assert_error("cpus_kvm", &["-c 8192", "KVM", "at most"]);
    run.assert_error("slot_junk", &["-s foo,hostbridge", "not a number"]);
    run.assert_error("slot_range", &["-s 32,lpc", "out of range"]);
    run.assert_error("slot_no_emulation", &["-s 5", "missing emulation"]);
    run.assert_error(
        "slot_twice",
        &["-s 0,lpc", "already used", "-s 0,hostbridge"],
    );
    run.assert_error("emulation", &["-s 3,e1000", "unknown emulation (known: "]);
    run.assert_error("mem_huge", &["64 GiB", "guest memory", "-m"]);
    // The user really was unprivileged with a 64 KiB limit.
    assert_eq!(run.marker("host.user_memlock"), Some("1000 64"));
    run.assert_error(
        "memlock",
        &["RLIMIT_MEMLOCK", "64 KiB", "128 MiB", "ulimit -l"],
    );
}
