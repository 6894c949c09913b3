//! Drives a running vfvm's API the way the integration tests need it in
//! the emulated host (busybox has no client for unix sockets), printing
//! its findings as `@@host.stress.KEY=VALUE` markers.
//!
//! `api_stress SOCKET load`: 1,000 sequential and 16 concurrent `vm.info`
//! requests, and a set of malformed ones; every answer's status counted.
//!
//! `api_stress SOCKET hostile`: a 1 MiB header, a body sent one byte a
//! second, 1,000 idle connections, while a well-behaved client keeps
//! asking `vm.info`; then it holds the idle and slow connections open
//! (printing `ready`) until it is killed, so that a SIGTERM to vfvm can
//! be sent during all of it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api::client;
use api::ApiRequest;

fn marker(key: &str, value: impl std::fmt::Display) {
    println!("@@host.stress.{key}={value}");
}

/// `vm.info` over a fresh connection: its status, or 0 on failure.
fn info(socket: &Path) -> u16 {
    client::send(socket, ApiRequest::Info).map_or(0, |r| r.status)
}

/// Sends `bytes` on a fresh connection; the status line's code, or 0 if
/// the server closed without one.
fn raw(socket: &Path, bytes: &[u8]) -> u16 {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(bytes);
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn load(socket: &Path) {
    // What a request costs without the VM's side (no PF to read).
    let t = Instant::now();
    let ok = (0..100)
        .filter(|_| client::send(socket, ApiRequest::Ping).is_ok_and(|r| r.status == 200))
        .count();
    marker("ping", format!("{ok}/100"));
    marker("ping_ms", t.elapsed().as_millis());
    let t = Instant::now();
    let ok = (0..1000).filter(|_| info(socket) == 200).count();
    marker("sequential", format!("{ok}/1000"));
    marker("sequential_ms", t.elapsed().as_millis());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let s = socket.to_owned();
            std::thread::spawn(move || (0..10).filter(|_| info(&s) == 200).count())
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    marker("concurrent", format!("{ok}/160"));
    let bad: [&[u8]; 7] = [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET /api/v1/nope HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{not json",
        b"PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
        b"GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /api/v1/vm.info HTTP/9.9\r\n\r\n",
    ];
    let statuses: Vec<String> = bad.iter().map(|b| raw(socket, b).to_string()).collect();
    marker("malformed", statuses.join(","));
    // A client that goes away mid-request.
    if let Ok(mut s) = UnixStream::connect(socket) {
        let _ = s.write_all(b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 10\r\n\r\n{");
    }
    marker("after", info(socket));
}

fn hostile(socket: &Path) {
    // A 1 MiB header.
    let header = std::thread::spawn({
        let s = socket.to_owned();
        move || {
            let mut big = b"GET /api/v1/vm.info HTTP/1.1\r\nX-Big: ".to_vec();
            big.resize(big.len() + (1 << 20), b'a');
            raw(&s, &big)
        }
    });
    // A body one byte a second, for as long as the server lets it.
    let slow = std::thread::spawn({
        let s = socket.to_owned();
        move || {
            let Ok(mut c) = UnixStream::connect(&s) else {
                return (0, 0);
            };
            let t = Instant::now();
            let _ = c.write_all(
                b"PUT /api/v1/vm.shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
            );
            let _ = c.set_read_timeout(Some(Duration::from_millis(10)));
            let mut answer = [0u8; 64];
            for _ in 0..1000 {
                if c.write_all(b" ").is_err() {
                    break;
                }
                match c.read(&mut answer) {
                    Ok(n) => {
                        let code = String::from_utf8_lossy(&answer[..n])
                            .get(9..12)
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        return (code, t.elapsed().as_secs());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            (0, t.elapsed().as_secs())
        }
    });
    let mut idle = Vec::new();
    for _ in 0..1000 {
        match UnixStream::connect(socket) {
            Ok(c) => idle.push(c),
            Err(_) => break,
        }
    }
    marker("idle", idle.len());
    let t = Instant::now();
    let (mut good, mut failed) = (0, 0);
    let mut worst = Duration::ZERO;
    while t.elapsed() < Duration::from_secs(8) {
        let one = Instant::now();
        if info(socket) == 200 {
            good += 1;
        } else {
            failed += 1;
        }
        worst = worst.max(one.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    marker("good", format!("{good} {failed}"));
    marker("good_worst_ms", worst.as_millis());
    marker("header", header.join().unwrap_or(0));
    let (code, secs) = slow.join().unwrap_or((0, 0));
    marker("slow", format!("{code}@{secs}s"));
    // Keep a slow body and the idle connections going until killed.
    let mut slow = UnixStream::connect(socket).ok();
    if let Some(c) = slow.as_mut() {
        let _ = c.write_all(b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    }
    for _ in 0..1000 - idle.len().min(1000) {
        if let Ok(c) = UnixStream::connect(socket) {
            idle.push(c);
        }
    }
    marker("ready", idle.len());
    loop {
        if let Some(c) = slow.as_mut() {
            let _ = c.write_all(b" ");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(socket), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: api_stress SOCKET load|hostile");
        std::process::exit(2);
    };
    let socket = PathBuf::from(socket);
    match mode.as_str() {
        "load" => load(&socket),
        "hostile" => hostile(&socket),
        other => {
            eprintln!("api_stress: unknown mode {other}");
            std::process::exit(2);
        }
    }
}
