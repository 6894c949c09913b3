//! The API's HTTP request path (api crate: hyper with the server's limits,
//! routes, bodies, the VMM's answers, responses) on arbitrary bytes. Each
//! input is one client connection, served by `api::serve_stream`, the code
//! that serves every connection the API socket accepts, over an in-memory
//! stream instead of a socket (accepting, peer credentials and the
//! connection cap are the socket's and input-independent; the api crate's
//! tests cover them). The client writes the input, half-closes, and reads
//! to the end, while a fake VMM answers on the same thread: no socket,
//! thread hop or system call per input. The server must answer in HTTP
//! (1.1, or 1.0 to a 1.0 request) or close, never panic or hang.
#![no_main]

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use api::{
    ApiError, ApiMessage, ApiRequest, ApiResponse, Counter, Limits, VmCounters, VmInfo, VmState,
    VmmPing,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Answers as vfvm's VMM would, with fixed values.
fn answer(request: ApiRequest) -> Result<ApiResponse, ApiError> {
    match request {
        ApiRequest::Ping => Ok(ApiResponse::Ping(VmmPing {
            build_version: "fuzz".into(),
            version: "0.1.0".into(),
            pid: 1,
            features: vec!["passthru".into()],
        })),
        ApiRequest::Info => Ok(ApiResponse::Info(Box::new(VmInfo {
            config: serde_json::json!({"cpus": {"boot_vcpus": 1}}),
            state: VmState::Running,
            memory_actual_size: 1 << 28,
            name: "fuzz".into(),
            memory: Default::default(),
            cpus: Default::default(),
            devices: Vec::new(),
            start: Default::default(),
        }))),
        ApiRequest::Counters => Ok(ApiResponse::Counters(VmCounters(vec![
            Counter::new("vmm", "io_out", 7),
            Counter::new("vf@5:0", "tx_packets", 20),
        ]))),
        ApiRequest::Pause => Err(ApiError::InvalidState("already paused".into())),
        ApiRequest::Resume => Err(ApiError::Internal("cannot".into())),
        ApiRequest::Reboot => Err(ApiError::Unavailable("stopping".into())),
        _ => Ok(ApiResponse::Done),
    }
}

/// The fake VMM: answers what arrives, yielding to the connection between
/// looks (the runtime has one thread: this is how both make progress).
/// Never ends: the connection's end ends the exchange.
async fn vmm(rx: Receiver<ApiMessage>) {
    loop {
        match rx.try_recv() {
            Ok(m) => m.reply.send(answer(m.request)),
            Err(TryRecvError::Empty) => tokio::task::yield_now().await,
            Err(TryRecvError::Disconnected) => std::future::pending().await,
        }
    }
}

/// What every input shares: the runtime the API thread would run, and the
/// VMM's wake-up eventfd.
struct Fixture {
    runtime: Runtime,
    wake: EventFd,
    limits: Limits,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap(),
        wake: EventFd::new(EFD_NONBLOCK).unwrap(),
        // Small limits, so that inputs reach them.
        limits: Limits {
            max_header_bytes: 4 << 10,
            max_body_bytes: 4 << 10,
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(2),
            connection_lifetime: Duration::from_secs(5),
            ..Limits::default()
        },
    })
}

/// Serves `input` as one connection; returns what the server wrote.
async fn exchange(f: &Fixture, input: &[u8]) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 << 10);
    let (tx, rx) = mpsc::channel();
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let send = async {
        // The server may close early (a bad header): that is an answer too.
        let _ = to_server.write_all(input).await;
        let _ = to_server.shutdown().await;
    };
    let receive = async {
        let mut out = Vec::new();
        let _ = from_server.read_to_end(&mut out).await;
        out
    };
    let serve = async {
        api::serve_stream(server, f.limits, tx, &f.wake)
            .await
            .expect("the eventfd clones");
    };
    tokio::select! {
        ((), (), out) = async { tokio::join!(serve, send, receive) } => out,
        () = vmm(rx) => unreachable!("the fake VMM never ends"),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    static HARNESS: Once = Once::new();
    HARNESS.call_once(|| {
        // The VMM behind the connection answers: the routes are reached.
        let ping = b"GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n";
        let out = f.runtime.block_on(exchange(f, ping));
        assert!(out.starts_with(b"HTTP/1.1 200 "), "{out:?}");
        assert!(out.ends_with(b"\"passthru\"]}"), "{out:?}");
    });
    let out = f.runtime.block_on(exchange(f, data));
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
        "not an HTTP answer: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );
});
