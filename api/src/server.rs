//! The API thread: HTTP over a unix socket in, [`ApiMessage`]s out.

use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, warn};
use vmm_sys_util::eventfd::EventFd;

use crate::{ApiError, ApiRequest, ApiResponse, ErrorBody, ROUTES};

/// How long the API thread waits for the VMM's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body read; these requests take none.
const MAX_BODY: u64 = 4096;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another server answers on the socket.
    #[error("--api-sock {0}: socket in use (another vfvm answers on it)")]
    InUse(PathBuf),
    /// The path exists and is not a socket; vfvm will not remove it.
    #[error("--api-sock {0}: exists and is not a socket")]
    NotASocket(PathBuf),
    /// Checking or removing a stale socket failed.
    #[error("--api-sock {path}: {source}")]
    Stale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Binding the socket failed.
    #[error("--api-sock {path}: cannot listen: {reason}")]
    Bind { path: PathBuf, reason: String },
    /// The thread could not start or its eventfd could not be cloned.
    #[error("API thread: {0}")]
    Thread(#[source] io::Error),
}

/// A request on its way to the VMM, with where to send the answer.
pub struct ApiMessage {
    /// What is asked.
    pub request: ApiRequest,
    /// Where the VMM sends its answer (once).
    pub reply: Sender<Result<ApiResponse, ApiError>>,
}

/// The running API thread; dropping it stops the thread and removes the
/// socket.
pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl ApiServer {
    /// Listens on `path` and forwards every request to `to_vmm`, writing
    /// `wake` after each. A stale socket (nobody answers) is replaced; a
    /// live one is an error.
    pub fn start(path: &Path, to_vmm: Sender<ApiMessage>, wake: &EventFd) -> Result<Self, Error> {
        remove_stale_socket(path)?;
        let wake = wake.try_clone().map_err(Error::Thread)?;
        let server = tiny_http::Server::http_unix(path).map_err(|e| Error::Bind {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let server = server.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("api".into())
                .spawn(move || serve(&server, &stop, &to_vmm, &wake))
                .map_err(Error::Thread)?
        };
        Ok(ApiServer {
            server,
            stop,
            thread: Some(thread),
            path: path.to_owned(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("the API thread panicked");
            }
        }
        // tiny_http removes the socket when the last reference goes; make
        // sure even if it did not.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes `path` if it is a socket nobody answers on.
fn remove_stale_socket(path: &Path) -> Result<(), Error> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Stale {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !md.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            debug!("removing stale API socket {}", path.display());
            std::fs::remove_file(path).map_err(|source| Error::Stale {
                path: path.to_owned(),
                source,
            })
        }
        Err(source) => Err(Error::Stale {
            path: path.to_owned(),
            source,
        }),
    }
}

fn serve(
    server: &tiny_http::Server,
    stop: &AtomicBool,
    to_vmm: &Sender<ApiMessage>,
    wake: &EventFd,
) {
    loop {
        let rq = match server.recv() {
            Ok(rq) => rq,
            Err(e) => {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                warn!("API: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stop.load(Ordering::Acquire) {
            let _ = rq.respond(error(503, "the VM is stopping"));
            return;
        }
        handle(rq, to_vmm, wake);
    }
}

type Reply = tiny_http::Response<io::Cursor<Vec<u8>>>;

fn json(status: u16, body: String) -> Reply {
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(content_type())
}

fn content_type() -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("a valid header")
}

fn error(status: u16, msg: &str) -> Reply {
    let body = serde_json::to_string(&ErrorBody {
        error: msg.to_string(),
    })
    .unwrap_or_else(|_| String::from("{\"error\":\"?\"}"));
    json(status, body)
}

/// Maps a method and URL to a request, or to an error status and message.
pub(crate) fn route(method: &str, url: &str) -> Result<ApiRequest, (u16, String)> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let mut allowed = Vec::new();
    for (m, p, r) in ROUTES {
        if *p == path {
            if m.as_str() == method {
                return Ok(*r);
            }
            allowed.push(m.as_str());
        }
    }
    if allowed.is_empty() {
        Err((404, format!("no such route: {path}")))
    } else {
        Err((
            405,
            format!(
                "{method} is not allowed on {path} (use {})",
                allowed.join(", ")
            ),
        ))
    }
}

/// Checks a body: these requests take none, or an empty JSON object.
pub(crate) fn check_body(body: &[u8]) -> Result<(), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(()),
        Ok(_) => Err("this request takes no body (or {})".into()),
        Err(e) => Err(format!("body is not JSON: {e}")),
    }
}

fn handle(mut rq: tiny_http::Request, to_vmm: &Sender<ApiMessage>, wake: &EventFd) {
    let method = rq.method().as_str().to_string();
    let url = rq.url().to_string();
    let reply = match route(&method, &url) {
        Err((status, msg)) => {
            let mut r = error(status, &msg);
            if status == 405 {
                let allow = ROUTES
                    .iter()
                    .filter(|(_, p, _)| url.starts_with(p))
                    .map(|(m, _, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(h) = tiny_http::Header::from_bytes(&b"Allow"[..], allow.as_bytes()) {
                    r = r.with_header(h);
                }
            }
            r
        }
        Ok(request) => {
            let mut body = Vec::new();
            let read = rq.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
            match read {
                Err(e) => error(400, &format!("cannot read the body: {e}")),
                Ok(_) if body.len() as u64 > MAX_BODY => error(400, "body too large"),
                Ok(_) => match check_body(&body) {
                    Err(msg) => error(400, &msg),
                    Ok(()) => ask_vmm(request, to_vmm, wake),
                },
            }
        }
    };
    debug!("API: {method} {url} -> {}", reply.status_code().0);
    if let Err(e) = rq.respond(reply) {
        debug!("API: cannot answer {method} {url}: {e}");
    }
}

/// Hands `request` to the VMM and turns its answer into a response.
fn ask_vmm(request: ApiRequest, to_vmm: &Sender<ApiMessage>, wake: &EventFd) -> Reply {
    let (tx, rx) = mpsc::channel();
    if to_vmm.send(ApiMessage { request, reply: tx }).is_err() {
        return error(503, "the VM is stopping");
    }
    if let Err(e) = wake.write(1) {
        warn!("API: cannot wake the VMM: {e}");
    }
    let answer = match rx.recv_timeout(REPLY_TIMEOUT) {
        Ok(answer) => answer,
        Err(RecvTimeoutError::Timeout) => Err(ApiError::Unavailable(format!(
            "the VMM did not answer within {} s",
            REPLY_TIMEOUT.as_secs()
        ))),
        Err(RecvTimeoutError::Disconnected) => {
            Err(ApiError::Unavailable("the VM is stopping".into()))
        }
    };
    match answer {
        Ok(ApiResponse::Done) => tiny_http::Response::from_data(Vec::new()).with_status_code(204),
        Ok(ApiResponse::Info(info)) => to_json(&info),
        Ok(ApiResponse::Counters(c)) => to_json(&c),
        Err(e) => error(e.status(), &e.to_string()),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Reply {
    match serde_json::to_string_pretty(v) {
        Ok(s) => json(200, s),
        Err(e) => error(500, &format!("cannot encode the answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;
    use crate::{VmCounters, VmInfo, VmState};

    #[test]
    fn routes_and_method_errors() {
        assert_eq!(route("GET", "/api/v1/vm.info"), Ok(ApiRequest::Info));
        assert_eq!(route("GET", "/api/v1/vm.info?x=1"), Ok(ApiRequest::Info));
        assert_eq!(
            route("PUT", "/api/v1/vm.shutdown"),
            Ok(ApiRequest::Shutdown)
        );
        assert_eq!(route("PUT", "/api/v1/vm.info").unwrap_err().0, 405);
        assert_eq!(route("GET", "/api/v1/vm.pause").unwrap_err().0, 405);
        assert_eq!(route("GET", "/api/v1/vm.nope").unwrap_err().0, 404);
        assert_eq!(route("GET", "/").unwrap_err().0, 404);
        assert_eq!(route("BREW", "\u{0}\u{ff}").unwrap_err().0, 404);
    }

    #[test]
    fn bodies() {
        assert!(check_body(b"").is_ok());
        assert!(check_body(b" \n").is_ok());
        assert!(check_body(b"{}").is_ok());
        assert!(check_body(b"{\"a\":1}").is_err());
        assert!(check_body(b"[").is_err());
        assert!(check_body(&[0xff, 0xfe]).is_err());
    }

    fn temp_socket(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vfvm-api-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("api.sock")
    }

    /// A fake VMM: answers requests until Shutdown, like the real one.
    fn fake_vmm(rx: mpsc::Receiver<ApiMessage>) -> JoinHandle<Vec<ApiRequest>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut paused = false;
            while let Ok(m) = rx.recv() {
                seen.push(m.request);
                let answer = match m.request {
                    ApiRequest::Info => Ok(ApiResponse::Info(VmInfo {
                        name: "fake".into(),
                        state: if paused {
                            VmState::Paused
                        } else {
                            VmState::Running
                        },
                        config: serde_json::json!({"name": "fake"}),
                        memory_reserve_secs: 0.25,
                    })),
                    ApiRequest::Counters => Ok(ApiResponse::Counters(VmCounters {
                        exits: serde_json::json!({"io_out": 7}),
                        devices: Default::default(),
                    })),
                    ApiRequest::Pause if paused => {
                        Err(ApiError::InvalidState("already paused".into()))
                    }
                    ApiRequest::Pause => {
                        paused = true;
                        Ok(ApiResponse::Done)
                    }
                    ApiRequest::Resume => {
                        paused = false;
                        Ok(ApiResponse::Done)
                    }
                    ApiRequest::Shutdown => {
                        let _ = m.reply.send(Ok(ApiResponse::Done));
                        break;
                    }
                };
                let _ = m.reply.send(answer);
            }
            seen
        })
    }

    #[test]
    fn round_trip_over_a_socket() {
        let path = temp_socket("rt");
        let (tx, rx) = mpsc::channel();
        let wake = EventFd::new(libc_nonblock()).unwrap();
        let server = ApiServer::start(&path, tx, &wake).unwrap();
        let vmm = fake_vmm(rx);

        let r = client::send(&path, ApiRequest::Info).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let info: VmInfo = serde_json::from_str(&r.body).unwrap();
        assert_eq!((info.name.as_str(), info.state), ("fake", VmState::Running));
        assert!(wake.read().unwrap() >= 1);

        let r = client::send(&path, ApiRequest::Counters).unwrap();
        let c: VmCounters = serde_json::from_str(&r.body).unwrap();
        assert_eq!(c.exits["io_out"], 7);

        assert_eq!(client::send(&path, ApiRequest::Pause).unwrap().status, 204);
        let r = client::send(&path, ApiRequest::Pause).unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.error().as_deref(), Some("already paused"));
        let r = client::send(&path, ApiRequest::Info).unwrap();
        assert!(r.body.contains("\"paused\""), "{}", r.body);
        assert_eq!(client::send(&path, ApiRequest::Resume).unwrap().status, 204);

        // Errors, each a JSON body.
        for (method, uri, body, status) in [
            ("GET", "/api/v1/nothing", "", 404),
            ("DELETE", "/api/v1/vm.info", "", 405),
            ("GET", "/api/v1/vm.pause", "", 405),
            ("PUT", "/api/v1/vm.pause", "{not json", 400),
            ("PUT", "/api/v1/vm.pause", "[1]", 400),
        ] {
            let r = client::call(&path, method, uri, body).unwrap();
            assert_eq!(r.status, status, "{method} {uri}: {}", r.body);
            assert!(r.error().is_some(), "{}", r.body);
        }
        // Garbage on the socket does not hurt the server.
        {
            use std::io::Write;
            let mut s = UnixStream::connect(&path).unwrap();
            let _ = s.write_all(b"\x00\xff garbage\r\n\r\n");
        }
        assert_eq!(client::send(&path, ApiRequest::Info).unwrap().status, 200);

        // A second server on the same socket is refused.
        let (tx2, _rx2) = mpsc::channel();
        match ApiServer::start(&path, tx2, &wake) {
            Err(Error::InUse(_)) => {}
            other => panic!("expected InUse, got {:?}", other.err()),
        }

        assert_eq!(
            client::send(&path, ApiRequest::Shutdown).unwrap().status,
            204
        );
        let seen = vmm.join().unwrap();
        assert_eq!(seen.last(), Some(&ApiRequest::Shutdown));
        // The VMM is gone: 503.
        let r = client::send(&path, ApiRequest::Info).unwrap();
        assert_eq!(r.status, 503, "{}", r.body);

        drop(server);
        assert!(!path.exists(), "socket removed at exit");
        assert!(client::send(&path, ApiRequest::Info).is_err());
    }

    #[test]
    fn stale_socket_is_replaced_and_files_are_kept() {
        let path = temp_socket("stale");
        // A socket nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (tx, _rx) = mpsc::channel();
        let wake = EventFd::new(libc_nonblock()).unwrap();
        let server = ApiServer::start(&path, tx, &wake).unwrap();
        drop(server);
        assert!(!path.exists());

        std::fs::write(&path, "not a socket").unwrap();
        let (tx, _rx) = mpsc::channel();
        assert!(matches!(
            ApiServer::start(&path, tx, &wake),
            Err(Error::NotASocket(_))
        ));
        assert!(path.exists());
    }

    fn libc_nonblock() -> i32 {
        // EFD_NONBLOCK == O_NONBLOCK on Linux.
        0o4000
    }
}
