//! The API thread: HTTP/1.1 over the unix socket in, [`ApiMessage`]s out.
//!
//! hyper serves each connection on a current-thread tokio runtime that
//! lives only on this thread; the VMM never sees tokio. Everything a client
//! controls is bounded ([`Limits`]): header size, body size, the time to
//! send the header and the body, each connection's lifetime, and the number
//! of connections (the oldest idle one is dropped to make room for a new
//! one, so idle connections cannot lock a well-behaved client out, nor a
//! flood of them cut off an answer on its way). Accept errors
//! (EMFILE) are waited out, never fatal. Stopping never waits for a client.
//!
//! Responses are what Cloud Hypervisor's `api_client` can read: a status
//! line without a reason phrase (`HTTP/1.1 204 `), `Content-Length: `
//! spelt so, ASCII-only JSON bodies, and errors as a JSON array of
//! messages ([`ErrorBody`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use vmm_sys_util::eventfd::EventFd;

use crate::prometheus;
use crate::routes::{route, NoRoute};
use crate::socket::{self, Access, Peer};
use crate::types::{to_ascii_json, ApiError, ApiRequest, ApiResponse, ErrorBody};

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another server answers on the socket.
    #[error("--api-sock {0}: socket in use (another vfvm answers on it)")]
    InUse(PathBuf),
    /// The path exists and is not a socket; vfvm will not remove it.
    #[error("--api-sock {0}: exists and is not a socket (remove it or choose another path)")]
    NotASocket(PathBuf),
    /// Creating, checking or replacing the socket failed.
    #[error("--api-sock {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The thread could not start or its eventfd could not be cloned.
    #[error("API thread: {0}")]
    Thread(#[source] io::Error),
}

/// What the server accepts from a client, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line and headers, in bytes.
    pub max_header_bytes: usize,
    /// Request body, in bytes.
    pub max_body_bytes: usize,
    /// Time to send the request line and headers (also the keep-alive
    /// idle time).
    pub header_timeout: Duration,
    /// Time to send the body once the headers are in.
    pub body_timeout: Duration,
    /// A connection's whole life; this also bounds writing the answer to a
    /// client that does not read it.
    pub connection_lifetime: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Time the VMM has to answer.
    pub reply_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 << 10,
            max_body_bytes: 64 << 10,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 64,
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the VMM sends its answer to one request (once).
pub struct Reply(oneshot::Sender<Result<ApiResponse, ApiError>>);

impl Reply {
    /// Sends `answer`; a client that has gone away is no error.
    pub fn send(self, answer: Result<ApiResponse, ApiError>) {
        let _ = self.0.send(answer);
    }
}

/// A request on its way to the VMM, with where to send the answer.
pub struct ApiMessage {
    /// What is asked.
    pub request: ApiRequest,
    /// Where the VMM sends its answer.
    pub reply: Reply,
}

/// Starts a named thread running the closure (as `devices::Spawner`).
pub type Spawner =
    Arc<dyn Fn(String, Box<dyn FnOnce() + Send>) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// How long dropping the server waits for its thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The running API thread; dropping it stops the thread (without waiting
/// for any client) and removes the socket.
pub struct ApiServer {
    stop: Option<oneshot::Sender<()>>,
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    socket_id: (u64, u64),
}

impl ApiServer {
    /// Creates the socket at `path` (refusing a live socket or a file that
    /// is not a socket) and serves it, forwarding each request to `to_vmm`
    /// and writing `wake` after each.
    pub fn start(
        path: &Path,
        access: Access,
        limits: Limits,
        to_vmm: Sender<ApiMessage>,
        wake: &EventFd,
    ) -> Result<Self, Error> {
        let plain: Spawner = Arc::new(|name, f| std::thread::Builder::new().name(name).spawn(f));
        Self::start_with(path, access, limits, to_vmm, wake, &plain)
    }

    /// [`ApiServer::start`], its thread started by `spawner` (the VMM's,
    /// which puts it in its sandbox first).
    pub fn start_with(
        path: &Path,
        access: Access,
        limits: Limits,
        to_vmm: Sender<ApiMessage>,
        wake: &EventFd,
        spawner: &Spawner,
    ) -> Result<Self, Error> {
        let wake = wake.try_clone().map_err(Error::Thread)?;
        let bound = socket::bind(path, access)?;
        let socket_id = bound.id;
        let fail = |e: io::Error| {
            socket::remove(path, socket_id);
            Error::Thread(e)
        };
        bound.listener.set_nonblocking(true).map_err(fail)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = mpsc::channel();
        let ctx = Arc::new(Context {
            to_vmm,
            wake,
            limits,
            access,
            owner: geteuid(),
        });
        let listener = bound.listener;
        let thread = spawner(
            "api".into(),
            Box::new(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(serve(listener, ctx, stop_rx)),
                    Err(e) => log::error!("API: cannot start its runtime: {e}"),
                }
                // The runtime is gone: every connection is closed.
                let _ = stopped_tx.send(());
            }),
        )
        .map_err(fail)?;
        Ok(ApiServer {
            stop: Some(stop_tx),
            stopped,
            thread: Some(thread),
            path: path.to_owned(),
            socket_id,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Gone first: no new client connects while we stop.
        socket::remove(&self.path, self.socket_id);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.stopped.recv_timeout(STOP_WAIT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    if t.join().is_err() {
                        warn!("the API thread panicked");
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                warn!(
                    "the API thread did not stop within {} s; leaving it",
                    STOP_WAIT.as_secs()
                );
            }
        }
    }
}

fn geteuid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// What every connection shares.
struct Context {
    to_vmm: Sender<ApiMessage>,
    wake: EventFd,
    limits: Limits,
    access: Access,
    owner: u32,
}

/// An open connection: how to close it, and whether one of its requests
/// is being answered (such a connection is the last to make room).
struct Open {
    task: AbortHandle,
    busy: Arc<AtomicBool>,
}

type Connections = Arc<Mutex<BTreeMap<u64, Open>>>;

/// How long answers already on their way get to reach their clients once
/// the server stops (an answer to vm.reboot, say): connections close as
/// soon as their answer is out, idle ones at once.
const STOP_GRACE: Duration = Duration::from_millis(500);

async fn serve(
    listener: std::os::unix::net::UnixListener,
    ctx: Arc<Context>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("API: cannot serve the socket: {e}");
            return;
        }
    };
    let connections: Connections = Arc::default();
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let mut next_id = 0u64;
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED: none is
                // the end of the API. Wait a little and go on.
                if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    warn!("API: accept: {e} (retrying)");
                    last_accept_warning = Some(Instant::now());
                }
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let allowed = match stream.peer_cred() {
            Ok(c) => ctx.access.allows(
                Peer {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid(),
                },
                ctx.owner,
            ),
            Err(e) => {
                debug!("API: no peer credentials: {e}");
                false
            }
        };
        // Make room: the oldest idle connections go, then the oldest.
        let victims: Vec<AbortHandle> = {
            let mut open = connections.lock().unwrap_or_else(|e| e.into_inner());
            let mut victims = Vec::new();
            while open.len() >= ctx.limits.max_connections.max(1) {
                let oldest_idle = open
                    .iter()
                    .find(|(_, c)| !c.busy.load(Ordering::Relaxed))
                    .map(|(&id, _)| id);
                let Some(id) = oldest_idle.or_else(|| open.keys().next().copied()) else {
                    break;
                };
                if let Some(c) = open.remove(&id) {
                    victims.push(c.task);
                }
            }
            victims
        };
        if !victims.is_empty() {
            debug!("API: {} connection(s) dropped to make room", victims.len());
        }
        victims.iter().for_each(AbortHandle::abort);
        let id = next_id;
        next_id += 1;
        let busy = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(connection(
            stream,
            ctx.clone(),
            allowed,
            busy.clone(),
            stopping.clone(),
            Deregister(connections.clone(), id),
        ));
        // Current-thread runtime: the task has not run yet, so it cannot
        // have deregistered before this.
        connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Open {
                    task: task.abort_handle(),
                    busy,
                },
            );
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline
        && !connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Removes a connection from the open set when its task ends (or is
/// dropped).
struct Deregister(Connections, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// Serves one connection: the socket's, or in the fuzz target an
/// in-memory stream (`serve_stream`).
async fn connection<S>(
    stream: S,
    ctx: Arc<Context>,
    allowed: bool,
    busy: Arc<AtomicBool>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    _registered: Deregister,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let limits = ctx.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        // A client may shut down its sending side once the request is out
        // (`printf ... | socat - UNIX:...` does): it still gets the answer.
        .half_close(true)
        .title_case_headers(true);
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        let busy = busy.clone();
        async move {
            Ok::<_, Infallible>(if allowed {
                busy.store(true, Ordering::Relaxed);
                let r = handle(req, &ctx).await;
                busy.store(false, Ordering::Relaxed);
                r
            } else {
                error(
                    403,
                    "permission denied: only root, the VM's owner and the --api-group may use this API",
                )
            })
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let serve = async {
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = async { drop(stopping.wait_for(|s| *s).await) } => {
                // Finish the answer in flight, if any, then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    match tokio::time::timeout(limits.connection_lifetime, serve).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("API: connection: {e}"),
        Err(_) => debug!("API: connection closed after its lifetime"),
    }
}

/// Serves one client on `stream` as the server serves a connection it
/// accepted from a permitted peer (hyper with `limits`, the routes, bodies,
/// the VMM's answers over `to_vmm`) until the client closes or a limit
/// ends it. The entry point of the fuzz target `api_http`: the same code as
/// on the socket, fed bytes without one.
#[cfg(feature = "fuzzing")]
pub async fn serve_stream<S>(
    stream: S,
    limits: Limits,
    to_vmm: Sender<ApiMessage>,
    wake: &EventFd,
) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let ctx = Arc::new(Context {
        to_vmm,
        wake: wake.try_clone()?,
        limits,
        access: Access::default(),
        owner: geteuid(),
    });
    // Never stopping: the sender lives until the connection ends.
    let (_stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let registered = Deregister(Connections::default(), 0);
    connection(stream, ctx, true, Arc::default(), stopping, registered).await;
    Ok(())
}

async fn handle(req: Request<Incoming>, ctx: &Context) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let text = prometheus::wanted(
        req.headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let response = match route(&method, &path) {
        Err(NoRoute::NotFound(msg)) => error(404, &msg),
        Err(NoRoute::Method { message, allow }) => {
            let mut r = error(405, &message);
            if let Ok(v) = HeaderValue::from_str(&allow) {
                r.headers_mut().insert(ALLOW, v);
            }
            r
        }
        Ok(_) if req.body().size_hint().lower() > ctx.limits.max_body_bytes as u64 => {
            error(413, &too_large(ctx))
        }
        Ok(route) => {
            let body = Limited::new(req.into_body(), ctx.limits.max_body_bytes);
            match tokio::time::timeout(ctx.limits.body_timeout, body.collect()).await {
                Err(_) => error(
                    408,
                    &format!(
                        "the body did not arrive within {} s",
                        ctx.limits.body_timeout.as_secs()
                    ),
                ),
                Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    error(413, &too_large(ctx))
                }
                Ok(Err(e)) => error(400, &format!("cannot read the body: {e}")),
                Ok(Ok(body)) => match route.request(&body.to_bytes()) {
                    Err(msg) => error(400, &msg),
                    Ok(request) => ask_vmm(request, text, ctx).await,
                },
            }
        }
    };
    debug!(
        "API: {} {} -> {}",
        method.escape_debug(),
        path.escape_debug(),
        response.status().as_u16()
    );
    response
}

fn too_large(ctx: &Context) -> String {
    format!(
        "the body is larger than {} bytes",
        ctx.limits.max_body_bytes
    )
}

/// Hands `request` to the VMM and turns its answer into a response: JSON,
/// or for counters with `text` (`Accept: text/plain`) Prometheus' format,
/// with the VM's name (from `vm.info`) as the `vm` label.
async fn ask_vmm(request: ApiRequest, text: bool, ctx: &Context) -> Response<Full<Bytes>> {
    match ask(request, ctx).await {
        Ok(ApiResponse::Done) => respond(204, None),
        Ok(ApiResponse::Ping(p)) => json(&p),
        Ok(ApiResponse::Info(i)) => json(&i),
        Ok(ApiResponse::Counters(c)) if text => match ask(ApiRequest::Info, ctx).await {
            Ok(ApiResponse::Info(i)) => {
                let samples =
                    c.0.iter()
                        .map(|c| (c.labels.as_slice(), c.name.as_str(), c.value));
                let mut r = respond(200, Some(prometheus::render(&i.name, samples)));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(prometheus::CONTENT_TYPE),
                );
                r
            }
            Ok(_) => error(500, "the VMM answered vm.info with something else"),
            Err(e) => error(e.status(), &e.to_string()),
        },
        Ok(ApiResponse::Counters(c)) => json(&c),
        Ok(ApiResponse::Device(d)) => json(&d),
        Err(e) => error(e.status(), &e.to_string()),
    }
}

/// One request to the VMM and its answer.
async fn ask(request: ApiRequest, ctx: &Context) -> Result<ApiResponse, ApiError> {
    let wait = request
        .route()
        .reply_timeout()
        .map_or(ctx.limits.reply_timeout, |t| {
            t.max(ctx.limits.reply_timeout)
        });
    let (tx, rx) = oneshot::channel();
    let sent = ctx.to_vmm.send(ApiMessage {
        request,
        reply: Reply(tx),
    });
    if sent.is_err() {
        return Err(ApiError::Unavailable("the VM is stopping".into()));
    }
    if let Err(e) = ctx.wake.write(1) {
        warn!("API: cannot wake the VMM: {e}");
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(ApiError::Unavailable("the VM is stopping".into())),
        Err(_) => Err(ApiError::Unavailable(format!(
            "the VMM did not answer within {} s",
            wait.as_secs()
        ))),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match to_ascii_json(value) {
        Ok(body) => respond(200, Some(body)),
        Err(e) => error(500, &format!("cannot encode the answer: {e}")),
    }
}

fn error(status: u16, msg: &str) -> Response<Full<Bytes>> {
    let body = to_ascii_json(&ErrorBody::new(msg)).unwrap_or_else(|_| String::from("[\"?\"]"));
    respond(status, Some(body))
}

/// A response with no reason phrase on its status line, as Cloud
/// Hypervisor's client needs.
fn respond(status: u16, body: Option<String>) -> Response<Full<Bytes>> {
    let has_body = body.is_some();
    let mut r = Response::new(Full::new(Bytes::from(body.unwrap_or_default())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if has_body {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    r.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b""));
    r
}
