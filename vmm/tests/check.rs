//! `vfvm check` on the machine that runs the tests, which has no IOMMU
//! (the emulated SR-IOV host, where it passes, is tests/tests/iov.rs):
//! it must fail there naming the fix, and fail on a RLIMIT_MEMLOCK too low
//! for `-m`.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

fn vfvm_check(args: &[&str], memlock: Option<u64>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfvm"));
    cmd.arg("check").args(args);
    if let Some(limit) = memlock {
        // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root has CAP_IPC_LOCK, which lifts the limit: run as nobody.
            cmd.uid(65534).gid(65534);
        }
    }
    cmd.output().expect("run vfvm check")
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn fails_naming_the_fix_without_an_iommu() {
    let has_iommu = std::fs::read_dir("/sys/kernel/iommu_groups")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    let out = vfvm_check(&[], None);
    let lines = lines(&out);
    if has_iommu {
        eprintln!("this machine has an IOMMU; nothing to check here: {lines:?}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    let iommu = lines
        .iter()
        .find(|l| l.starts_with("FAIL iommu: "))
        .unwrap_or_else(|| panic!("no FAIL iommu line: {lines:?}"));
    assert!(
        iommu.contains(". Fix: ")
            && iommu.contains("intel_iommu=on")
            && iommu.contains("amd_iommu=on"),
        "{iommu}"
    );
    // Every line is one item with its status first.
    for l in &lines {
        assert!(
            ["OK   ", "WARN ", "FAIL "].iter().any(|s| l.starts_with(s)),
            "{l}"
        );
        if l.starts_with("FAIL ") {
            assert!(l.contains(". Fix: "), "a FAIL names its fix: {l}");
        }
    }
    // The same as JSON.
    let out = vfvm_check(&["--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains("\"status\": \"fail\"") && json.contains("\"item\": \"iommu\""),
        "{json}"
    );
}

#[test]
fn fails_when_memlock_is_too_low_for_the_guest() {
    let out = vfvm_check(&["-m", "1G"], Some(64 << 10));
    let lines = lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    let memory = lines
        .iter()
        .find(|l| l.starts_with("FAIL memory: "))
        .unwrap_or_else(|| panic!("no FAIL memory line: {lines:?}"));
    assert!(
        memory.contains("-m 1 GiB")
            && memory.contains("RLIMIT_MEMLOCK is 64 KiB")
            && memory.contains(". Fix: run `ulimit -l unlimited`"),
        "{memory}"
    );
    // Bad arguments are refused like vfvm run's, with status 4.
    let out = vfvm_check(&["-m", "lots"], None);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "vfvm: error: -m lots: not a size (use a number with an optional K, M, G or T suffix, e.g. -m 512M)"
    );
}
