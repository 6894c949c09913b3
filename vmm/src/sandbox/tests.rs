use std::process::Command;

use super::*;

/// Runs the ignored test `name` of this binary in a child process with
/// `VFVM_SANDBOX_CHILD` set; returns (status code, stderr).
fn child(name: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VFVM_SANDBOX_CHILD", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs child test `name`, which must succeed and say `says`.
fn child_succeeds(name: &str, says: &str) {
    let (status, stderr) = child(name);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

fn in_child() -> bool {
    std::env::var_os("VFVM_SANDBOX_CHILD").is_some()
}

/// The value of `key` in a /proc/.../status text.
fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap()
}

/// A line of /proc/thread-self/status, read before a filter forbids it.
fn status_line(key: &str) -> String {
    field(
        &std::fs::read_to_string("/proc/thread-self/status").unwrap(),
        key,
    )
}

fn forbidden_socket() -> i32 {
    // SAFETY: socket(2) with integer arguments; the descriptor, if any, is
    // closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            libc::close(fd);
        }
        fd
    }
}

#[test]
#[ignore = "run by a_forbidden_call_kills_vfvm_with_one_line, in a child process"]
fn child_makes_a_forbidden_call() {
    if !in_child() {
        return;
    }
    let sandbox = Sandbox::new(SeccompMode::On).unwrap();
    let t = sandbox
        .spawn(ThreadKind::Signals, "sig-test".into(), || {
            forbidden_socket();
        })
        .unwrap();
    let _ = t.join();
    eprintln!("the forbidden call returned");
}

#[test]
fn a_forbidden_call_kills_vfvm_with_one_line() {
    let (status, stderr) = child("sandbox::tests::child_makes_a_forbidden_call");
    assert_eq!(status, Some(4), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("vfvm: ")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(
            "vfvm: error: seccomp: the signals thread 'sig-test' made the system call socket (41, arguments 0x2, 0x1, ...), which its filter forbids"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("returned"), "{stderr}");
}

#[test]
#[ignore = "run by log_mode_lets_the_call_run, in a child process"]
fn child_makes_a_logged_call() {
    if !in_child() {
        return;
    }
    let sandbox = Sandbox::new(SeccompMode::Log).unwrap();
    let t = sandbox
        .spawn(ThreadKind::BlockIo, "log-test".into(), || {
            assert!(forbidden_socket() >= 0);
        })
        .unwrap();
    t.join().unwrap();
    eprintln!("the logged call returned");
}

#[test]
fn log_mode_lets_the_call_run() {
    child_succeeds(
        "sandbox::tests::child_makes_a_logged_call",
        "the logged call returned",
    );
}

#[test]
fn a_sandboxed_thread_is_filtered_and_keeps_only_its_capabilities() {
    // Off: no filter (this test process goes on), capabilities and
    // no_new_privs as with any mode.
    let sandbox = Sandbox::new(SeccompMode::Off).unwrap();
    let (tx, rx) = mpsc::channel();
    sandbox
        .spawn(ThreadKind::Vcpu, "caps-test".into(), move || {
            let _ = tx.send([
                status_line("CapEff:"),
                status_line("CapPrm:"),
                status_line("CapBnd:"),
                status_line("CapInh:"),
                status_line("NoNewPrivs:"),
                status_line("Seccomp:"),
            ]);
        })
        .unwrap()
        .join()
        .unwrap();
    let [eff, prm, bnd, inh, nnp, seccomp] = rx.recv().unwrap();
    assert_eq!(eff, "0000000000000000");
    assert_eq!(prm, "0000000000000000");
    assert_eq!(inh, "0000000000000000");
    if caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap() {
        assert_eq!(bnd, "0000000000000000");
    }
    assert_eq!(nnp, "1");
    assert_eq!(seccomp, "0");
}

#[test]
#[ignore = "run by the_event_loop_keeps_net_admin_under_its_filter, in a child process"]
fn child_enters_the_event_loop() {
    if !in_child() {
        return;
    }
    let sandbox = Sandbox::new(SeccompMode::On).unwrap();
    let (tx, rx) = mpsc::channel();
    sandbox
        .spawn(ThreadKind::EventLoop, "evl-test".into(), move || {
            // What the event loop reads at teardown: a file, netlink.
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            // SAFETY: socket(2) with integer arguments, closed at once.
            let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
            assert!(fd >= 0);
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
            let _ = tx.send(status);
        })
        .unwrap()
        .join()
        .unwrap();
    let status = rx.recv().unwrap();
    let line = |key: &str| field(&status, key);
    let eff = u64::from_str_radix(&line("CapEff:"), 16).unwrap();
    let allowed =
        caps::Capability::CAP_NET_ADMIN.bitmask() | caps::Capability::CAP_IPC_LOCK.bitmask();
    assert_eq!(eff & !allowed, 0, "{eff:#x}");
    assert_eq!(line("Seccomp:"), "2");
    eprintln!("the event loop ran");
}

#[test]
fn the_event_loop_keeps_net_admin_under_its_filter() {
    child_succeeds(
        "sandbox::tests::child_enters_the_event_loop",
        "the event loop ran",
    );
}

#[test]
fn modes_parse_as_cloud_hypervisor_spells_them_too() {
    for (text, mode) in [
        ("on", SeccompMode::On),
        ("true", SeccompMode::On),
        ("log", SeccompMode::Log),
        ("off", SeccompMode::Off),
        ("false", SeccompMode::Off),
    ] {
        assert_eq!(text.parse::<SeccompMode>().ok(), Some(mode));
    }
    assert_eq!(SeccompMode::default(), SeccompMode::On);
    assert_eq!(
        "yes".parse::<SeccompMode>().unwrap_err().to_string(),
        "--seccomp yes: expected on, log or off (default on)"
    );
}

#[test]
fn the_trap_line_names_unknown_calls_too() {
    let mut line = trap::Line::new();
    trap::message(
        &mut line,
        Some(ThreadKind::Vcpu),
        b"vcpu0\0\0\0",
        1000,
        [3, 0xae80],
    );
    let text = String::from_utf8(line.as_bytes().to_vec()).unwrap();
    assert!(
        text.starts_with(
            "vfvm: error: seccomp: the vcpu thread 'vcpu0' made the system call ? (1000, arguments 0x3, 0xae80, ...)"
        ),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    assert_eq!(syscall_names::name(0), Some("read"));
    assert_eq!(syscall_names::name(435), Some("clone3"));
    assert_eq!(syscall_names::name(400), None);
    assert_eq!(syscall_names::name(-1), None);
}
