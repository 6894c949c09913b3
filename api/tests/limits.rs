//! Process-wide conditions the API server must survive, each in this test
//! binary of its own (one process): running out of file descriptors
//! (EMFILE on accept), and a peer that is neither root nor the owner
//! (SO_PEERCRED), checked with a child process that drops to `nobody`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use api::client;
use api::{Access, ApiMessage, ApiRequest, ApiResponse, ApiServer, Limits, VmmPing};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// As a child: `API_PEER_SOCKET=PATH` asks vmm.ping there and exits with
/// the status's class (2, 4, 5), or 1 if it got none.
fn child_client() {
    if let Ok(path) = std::env::var("API_PEER_SOCKET") {
        let code = match client::send(&PathBuf::from(path), ApiRequest::Ping) {
            Ok(r) => i32::from(r.status / 100),
            Err(e) => {
                eprintln!("{e}");
                1
            }
        };
        // 2 for a 2xx, 4 for a 4xx.
        std::process::exit(code);
    }
}

/// The tests take the whole process's descriptors: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serve(tag: &str) -> (PathBuf, ApiServer, EventFd) {
    let dir = std::env::temp_dir().join(format!("vfvm-limits-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.sock");
    let (tx, rx) = mpsc::channel::<ApiMessage>();
    std::thread::spawn(move || {
        while let Ok(m) = rx.recv() {
            m.reply.send(Ok(ApiResponse::Ping(VmmPing {
                build_version: "t".into(),
                version: "t".into(),
                pid: 1,
                features: vec![],
            })));
        }
    });
    let wake = EventFd::new(EFD_NONBLOCK).unwrap();
    let server = ApiServer::start(&path, Access::default(), Limits::default(), tx, &wake).unwrap();
    (path, server, wake)
}

#[test]
fn emfile_on_accept_is_waited_out() {
    child_client();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (path, _server, _wake) = serve("emfile");
    // Take every free descriptor but one: the client's socket gets it, so
    // the server's accept fails with EMFILE until some are given back.
    let mut held = Vec::new();
    let probe = std::fs::File::open("/dev/null").unwrap();
    loop {
        // SAFETY: dup(2) of a descriptor we own; the result is owned below.
        let fd = unsafe { libc::dup(probe.as_raw_fd()) };
        if fd < 0 {
            break;
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        held.push(unsafe { OwnedFd::from_raw_fd(fd) });
        if held.len() > 1 << 20 {
            panic!("no descriptor limit");
        }
    }
    drop(held.pop());
    let p = path.clone();
    let client = std::thread::spawn(move || client::send(&p, ApiRequest::Ping));
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let r = client
        .join()
        .unwrap()
        .expect("served once descriptors are back");
    assert_eq!(r.status, 200);
    assert_eq!(client::send(&path, ApiRequest::Ping).unwrap().status, 200);
}

#[test]
fn a_peer_that_is_neither_root_nor_the_owner_is_refused() {
    child_client();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot start a peer of another uid; skipped");
        return;
    }
    let (path, _server, _wake) = serve("peer");
    // Past the file mode (which would refuse it first), SO_PEERCRED.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        path.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let peer = |uid: u32| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "a_peer_that_is_neither_root_nor_the_owner_is_refused",
        ])
        .env("API_PEER_SOCKET", &path);
        // SAFETY: setgid/setuid in the child before exec touch no memory
        // of the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgid(uid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let nobody = peer(65534);
    assert_eq!(nobody.0, Some(4), "nobody: {nobody:?}");
    let root = peer(0);
    assert_eq!(root.0, Some(2), "root: {root:?}");
}
