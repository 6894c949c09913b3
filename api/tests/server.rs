//! The API server against a fake VMM: routes and errors as Cloud
//! Hypervisor's client reads them, the socket's rules, and clients that
//! misbehave (huge headers, slow bodies, idle connections by the
//! thousand) while a well-behaved one keeps being served.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api::client;
use api::{
    Access, ApiError, ApiMessage, ApiRequest, ApiResponse, ApiServer, Counter, Error, Limits,
    VmCounters, VmInfo, VmShutdown, VmState, VmmPing,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

fn temp_socket(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vfvm-api-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("api.sock")
}

fn info(state: VmState) -> VmInfo {
    VmInfo {
        config: serde_json::json!({"cpus": {"boot_vcpus": 1}}),
        state,
        memory_actual_size: 1 << 28,
        name: "fake".into(),
        memory: Default::default(),
        cpus: Default::default(),
        devices: Vec::new(),
        start: Default::default(),
    }
}

/// A fake VMM: answers like the real one until vmm.shutdown.
fn fake_vmm(rx: Receiver<ApiMessage>) -> JoinHandle<Vec<ApiRequest>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut paused = false;
        while let Ok(m) = rx.recv() {
            seen.push(m.request.clone());
            let answer = match m.request {
                ApiRequest::Ping => Ok(ApiResponse::Ping(VmmPing {
                    build_version: "test".into(),
                    version: "0.1.0".into(),
                    pid: 1,
                    features: vec!["passthru".into()],
                })),
                ApiRequest::Info => Ok(ApiResponse::Info(Box::new(info(if paused {
                    VmState::Paused
                } else {
                    VmState::Running
                })))),
                ApiRequest::Counters => Ok(ApiResponse::Counters(VmCounters(vec![
                    Counter::new("vmm", "io_out", 7),
                    Counter::new("vf@5:0", "tx_packets", 20),
                ]))),
                ApiRequest::Pause if paused => {
                    Err(ApiError::InvalidState("the VM is already paused".into()))
                }
                ApiRequest::Pause => {
                    paused = true;
                    Ok(ApiResponse::Done)
                }
                ApiRequest::Resume if !paused => {
                    Err(ApiError::InvalidState("the VM is not paused".into()))
                }
                ApiRequest::Resume => {
                    paused = false;
                    Ok(ApiResponse::Done)
                }
                ApiRequest::VmmShutdown => {
                    m.reply.send(Ok(ApiResponse::Done));
                    break;
                }
                _ => Ok(ApiResponse::Done),
            };
            m.reply.send(answer);
        }
        seen
    })
}

struct Fixture {
    path: PathBuf,
    server: Option<ApiServer>,
    vmm: Option<JoinHandle<Vec<ApiRequest>>>,
    _wake: EventFd,
}

fn start(tag: &str, limits: Limits) -> Fixture {
    let path = temp_socket(tag);
    let (tx, rx) = mpsc::channel();
    let wake = EventFd::new(EFD_NONBLOCK).unwrap();
    let server = ApiServer::start(&path, Access::default(), limits, tx, &wake).unwrap();
    Fixture {
        path,
        server: Some(server),
        vmm: Some(fake_vmm(rx)),
        _wake: wake,
    }
}

impl Fixture {
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        drop(self.server.take());
        t.elapsed()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop();
        if let Some(v) = self.vmm.take() {
            let _ = v.join();
        }
    }
}

/// One raw request; the raw response (the server closes after it, or
/// the read times out).
fn raw(path: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    // Read up to the end of the body Content-Length announces.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .find("Content-Length: ")
                .and_then(|i| text[i + 16..].split("\r\n").next()?.parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    // Without half_close the server saw EOF and closed with no answer.
    let f = start("halfclose", Limits::default());
    let mut s = UnixStream::connect(&f.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 "), "{out:?}");
    // An incomplete request then EOF: closed, not kept waiting.
    let mut s = UnixStream::connect(&f.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/v1/vmm.ping HTTP/1.1\r\nHost:")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn routes_and_errors_as_cloud_hypervisors_client_reads_them() {
    let f = start("routes", Limits::default());
    let path = &f.path;

    let r = client::send(path, ApiRequest::Ping).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let ping: VmmPing = serde_json::from_str(&r.body).unwrap();
    assert_eq!(ping.version, "0.1.0");

    let r = client::send(path, ApiRequest::Info).unwrap();
    let info: VmInfo = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info.state, VmState::Running);
    assert!(r.body.contains(r#""state":"Running""#), "{}", r.body);

    let r = client::send(path, ApiRequest::Counters).unwrap();
    let c: VmCounters = serde_json::from_str(&r.body).unwrap();
    assert_eq!(c.get("vf@5:0", "tx_packets"), Some(20));

    assert_eq!(client::send(path, ApiRequest::Pause).unwrap().status, 204);
    let r = client::send(path, ApiRequest::Pause).unwrap();
    assert_eq!(
        (r.status, r.error().as_deref()),
        (405, Some("the VM is already paused"))
    );
    assert_eq!(client::send(path, ApiRequest::Resume).unwrap().status, 204);
    let r = client::send(path, ApiRequest::Resume).unwrap();
    assert_eq!(r.status, 405, "resume while running: {}", r.body);

    // What Cloud Hypervisor's api_client needs: no reason phrase, and
    // `Content-Length: ` spelt so. It sends no Connection: close and
    // splits its request in several writes; a body-less 204 ends at the
    // headers.
    let ok = raw(
        path,
        b"GET /api/v1/vm.info HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200 \r\n"), "{ok}");
    assert!(ok.contains("\r\nContent-Length: "), "{ok}");
    assert!(ok.is_ascii());
    let done = raw(
        path,
        b"PUT /api/v1/vm.power-button HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    assert!(done.starts_with("HTTP/1.1 204 \r\n"), "{done}");

    // Errors, each with a JSON body and a fitting status.
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(70 << 10));
    for (method, uri, body, status) in [
        ("GET", "/api/v1/nothing", "", 404),
        ("DELETE", "/api/v1/vm.info", "", 405),
        ("GET", "/api/v1/vm.pause", "", 405),
        ("PUT", "/api/v1/vm.pause", "{not json", 400),
        ("PUT", "/api/v1/vm.pause", "[1]", 400),
        ("PUT", "/api/v1/vm.shutdown", r#"{"timeout_s": "x"}"#, 400),
        ("PUT", "/api/v1/vm.pause", big.as_str(), 413),
    ] {
        let r = client::call(path, method, uri, body).unwrap();
        assert_eq!(r.status, status, "{method} {uri}: {}", r.body);
        assert!(r.error().is_some(), "{}", r.body);
    }
    // An announced body over the limit is refused at once, unread.
    let t = Instant::now();
    let r = raw(
        path,
        b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{",
    );
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let r = raw(path, b"DELETE /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.contains("\r\nAllow: GET\r\n"), "{r}");
    // An error's body is what ch-remote prints: Cloud Hypervisor's JSON
    // array of messages, top error first (an object, it calls broken).
    let r = raw(
        path,
        b"PUT /api/v1/vm.resume HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405 \r\n"), "{r}");
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let messages: Vec<String> = serde_json::from_str(body).expect("an array of strings");
    assert_eq!(messages, ["the VM is not paused"]);

    // Cloud Hypervisor's clients may send bodies with fields of theirs.
    let r = client::call(path, "PUT", "/api/v1/vm.pause", r#"{"ch_field": 1}"#).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    let shutdown = ApiRequest::Shutdown(VmShutdown { timeout_s: Some(2) });
    assert_eq!(client::send(path, shutdown).unwrap().status, 204);

    // Garbage and half requests do not hurt the server.
    for junk in [
        &b"\x00\xff garbage\r\n\r\n"[..],
        b"GET /api/v1/vm.info HTTP/1.1\r\nContent-Len",
    ] {
        let mut s = UnixStream::connect(path).unwrap();
        let _ = s.write_all(junk);
    }
    assert_eq!(client::send(path, ApiRequest::Info).unwrap().status, 200);

    assert_eq!(
        client::send(path, ApiRequest::VmmShutdown).unwrap().status,
        204
    );
    // The VMM is gone: 503 with a sentence.
    let r = client::send(path, ApiRequest::Info).unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error().as_deref(), Some("the VM is stopping"));
}

#[test]
fn the_socket_is_0600_whatever_the_umask_and_goes_at_exit() {
    let path = temp_socket("mode");
    let (tx, _rx) = mpsc::channel();
    let wake = EventFd::new(EFD_NONBLOCK).unwrap();
    let start = |access| ApiServer::start(&path, access, Limits::default(), tx.clone(), &wake);
    // SAFETY: umask(2) only swaps the process's mask.
    let old = unsafe { libc::umask(0) };
    let server = start(Access::default());
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let server = server.unwrap();
    let md = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    // No temporary directory is left next to it.
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["api.sock"]);

    // A second server on the live socket is refused.
    match start(Access::default()) {
        Err(Error::InUse(_)) => {}
        other => panic!("expected InUse, got {:?}", other.err()),
    }
    drop(server);
    assert!(!path.exists(), "socket removed at exit");

    // A group widens it to 0660, with that group.
    // SAFETY: getegid(2) cannot fail.
    let gid = unsafe { libc::getegid() };
    let group = Access { group: Some(gid) };
    let server = start(group).unwrap();
    let md = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!((md.permissions().mode() & 0o777, md.gid()), (0o660, gid));
    drop(server);

    // A stale socket (nobody listens) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let server = start(Access::default()).unwrap();
    drop(server);
    assert!(!path.exists());

    // A file that is not a socket is refused and kept.
    std::fs::write(&path, "not a socket").unwrap();
    assert!(matches!(
        start(Access::default()),
        Err(Error::NotASocket(_))
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");

    // A socket file replaced by someone else is not removed by us.
    std::fs::remove_file(&path).unwrap();
    let server = start(Access::default()).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "theirs").unwrap();
    drop(server);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
}

/// Answers `vm.info` within `limit`, or panics.
fn served(path: &Path, limit: Duration) {
    let t = Instant::now();
    let r = client::send(path, ApiRequest::Info).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(t.elapsed() < limit, "vm.info took {:?}", t.elapsed());
}

#[test]
fn hostile_clients_do_not_stop_a_good_one_nor_the_teardown() {
    let limits = Limits {
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        max_connections: 32,
        ..Limits::default()
    };
    let mut f = start("hostile", limits);
    let path = f.path.clone();

    // A 1 MiB header: refused (431) or cut off; memory stays bounded.
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /api/v1/vm.info HTTP/1.1\r\nX-Big: ");
    let _ = s.write_all(&vec![b'a'; 1 << 20]);
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
        "{answer}"
    );
    drop(s);
    served(&path, Duration::from_secs(1));

    // A body one byte a second, in the background: 408 after the body
    // timeout, while others are served.
    let slow_path = path.clone();
    let slow = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&slow_path).unwrap();
        s.write_all(b"PUT /api/v1/vm.shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        let t = Instant::now();
        for _ in 0..100 {
            if s.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            if t.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.read_to_string(&mut answer);
        (answer, t.elapsed())
    });

    // Meanwhile others are served.
    for _ in 0..10 {
        served(&path, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (answer, took) = slow.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "slow body: {answer}");
    assert!(
        took < Duration::from_secs(8),
        "the slow body was read for {took:?}"
    );

    // 1,000 idle connections: the oldest make room for new ones.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        match UnixStream::connect(&path) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    for _ in 0..20 {
        served(&path, Duration::from_secs(1));
    }

    // Teardown with idle and half-sent clients still connected: prompt.
    let mut half = UnixStream::connect(&path).unwrap();
    half.write_all(b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
        .unwrap();
    let took = f.stop();
    assert!(took < Duration::from_secs(1), "teardown took {took:?}");
    assert!(!path.exists());
    drop(idle);
}

#[test]
fn a_vmm_that_does_not_answer_gives_503_and_teardown_does_not_wait() {
    let path = temp_socket("mute");
    let (tx, rx) = mpsc::channel::<ApiMessage>();
    let wake = EventFd::new(EFD_NONBLOCK).unwrap();
    let limits = Limits {
        reply_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = ApiServer::start(&path, Access::default(), limits, tx, &wake).unwrap();
    let r = client::send(&path, ApiRequest::Info).unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(wake.read().unwrap() >= 1, "the VMM was woken");
    // A request in flight at teardown.
    let p = path.clone();
    let pending = std::thread::spawn(move || client::send(&p, ApiRequest::Info));
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    drop(server);
    assert!(t.elapsed() < Duration::from_secs(1));
    let _ = pending.join().unwrap();
    drop(rx);
}

#[test]
fn an_answer_sent_as_the_vm_stops_still_reaches_its_client() {
    // vm.reboot: the VMM answers and stops at once, dropping the server.
    for _ in 0..20 {
        let path = temp_socket("reboot");
        let (tx, rx) = mpsc::channel::<ApiMessage>();
        let wake = EventFd::new(EFD_NONBLOCK).unwrap();
        let server =
            ApiServer::start(&path, Access::default(), Limits::default(), tx, &wake).unwrap();
        let (stopped_tx, stopped) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(m) = rx.recv() {
                m.reply.send(Ok(ApiResponse::Done));
                let _ = stopped_tx.send(());
            }
        });
        let p = path.clone();
        let client = std::thread::spawn(move || client::send(&p, ApiRequest::Reboot));
        stopped.recv().unwrap();
        let t = Instant::now();
        drop(server);
        assert!(t.elapsed() < Duration::from_secs(1));
        let r = client
            .join()
            .unwrap()
            .expect("an answer, not a closed connection");
        assert_eq!(r.status, 204);
    }
}

#[test]
fn a_request_being_answered_outlives_a_flood_of_idle_connections() {
    let path = temp_socket("busy");
    let (tx, rx) = mpsc::channel::<ApiMessage>();
    let wake = EventFd::new(EFD_NONBLOCK).unwrap();
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let server = ApiServer::start(&path, Access::default(), limits, tx, &wake).unwrap();
    // A VMM that takes its time.
    std::thread::spawn(move || {
        while let Ok(m) = rx.recv() {
            std::thread::sleep(Duration::from_millis(700));
            m.reply
                .send(Ok(ApiResponse::Info(Box::new(info(VmState::Running)))));
        }
    });
    let p = path.clone();
    let asking = std::thread::spawn(move || client::send(&p, ApiRequest::Info));
    std::thread::sleep(Duration::from_millis(200));
    let idle: Vec<_> = (0..100)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let r = asking.join().unwrap().expect("answered, not dropped");
    assert_eq!(r.status, 200, "{}", r.body);
    drop(idle);
    drop(server);
}
