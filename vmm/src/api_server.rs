//! The VMM's side of the REST API (`vfvm run --api-sock PATH`).
//!
//! [`ApiSocket::start`] opens the socket early, before the host changes, so
//! a socket in use fails the run at once. Once the vCPUs run, an
//! [`ApiHandler`] on the event loop answers each [`ApiRequest`] the API
//! thread forwards: the event loop owns the VM, the API thread only waits
//! for answers, and vCPUs never wait for either.
//!
//! `vm.shutdown` stops the VM with [`VmExit::PowerOff`], so `vfvm run`
//! exits with status 1: bhyve has no status for a stop asked from outside,
//! and a power-off is what it looks like to the guest and to scripts.

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{ApiError, ApiMessage, ApiRequest, ApiResponse, ApiServer, VmCounters, VmInfo, VmState};
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;

use crate::config::VmConfig;
use crate::counters::ExitCounters;
use crate::exit::{ExitSignal, VmExit};
use crate::vcpu::{PauseState, VcpuThread};
use devices::virtio::block::{BlockMetrics, BlockMetricsSnapshot};

/// How long `vm.pause` waits for every vCPU to leave KVM_RUN.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

type SharedReceiver = Arc<Mutex<Option<Receiver<ApiMessage>>>>;

/// The API socket and its thread. Dropping it answers 503 to whatever is
/// still pending, stops the thread and removes the socket.
pub struct ApiSocket {
    requests: SharedReceiver,
    wake: EventFd,
    _server: ApiServer,
}

impl ApiSocket {
    /// Listens on `path`. Requests wait until [`ApiSocket::handler`] is on
    /// the event loop.
    pub fn start(path: &Path) -> Result<Self, api::Error> {
        let (tx, rx) = mpsc::channel();
        let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(api::Error::Thread)?;
        let server = ApiServer::start(path, tx, &wake)?;
        log::info!("API on {}", path.display());
        Ok(ApiSocket {
            requests: Arc::new(Mutex::new(Some(rx))),
            wake,
            _server: server,
        })
    }

    /// The event-loop subscriber that answers requests about `vm`.
    pub fn handler(&self, vm: VmView) -> std::io::Result<ApiHandler> {
        Ok(ApiHandler {
            requests: self.requests.clone(),
            wake: self.wake.try_clone()?,
            vm,
        })
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        // Queued requests lose their reply channel: the API thread answers
        // 503 at once instead of waiting for its timeout.
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// A disk's counters as the API reports them.
fn disk_counters(m: &BlockMetricsSnapshot) -> serde_json::Value {
    serde_json::json!({
        "requests": m.requests,
        "read_bytes": m.read_bytes,
        "write_bytes": m.write_bytes,
        "flushes": m.flushes,
        "discards": m.discards,
        "write_zeroes": m.write_zeroes,
        "errors": m.errors,
        "unsupported": m.unsupported,
    })
}

/// What the API may see and do of a running VM.
pub struct VmView {
    /// The configuration, as `vm.info` shows it.
    pub config: VmConfig,
    /// Time spent reserving guest memory.
    pub memory_reserve_time: Duration,
    /// Userspace exit counters.
    pub counters: Arc<ExitCounters>,
    /// Each disk's counters, by name (`blk@SLOT:FUNCTION`).
    pub disks: Vec<(String, Arc<BlockMetrics>)>,
    /// Stops the VM.
    pub exit: Arc<ExitSignal>,
    /// Pauses the vCPUs.
    pub pause: Arc<PauseState>,
    /// The vCPU threads, to kick them out of KVM_RUN.
    pub vcpus: Arc<Mutex<Vec<VcpuThread>>>,
}

/// Answers API requests on the event loop.
pub struct ApiHandler {
    requests: SharedReceiver,
    wake: EventFd,
    vm: VmView,
}

impl ApiHandler {
    fn answer(&self, request: ApiRequest) -> Result<ApiResponse, ApiError> {
        let vm = &self.vm;
        match request {
            ApiRequest::Info => Ok(ApiResponse::Info(VmInfo {
                name: vm.config.name.clone(),
                state: if vm.pause.is_paused() {
                    VmState::Paused
                } else {
                    VmState::Running
                },
                config: serde_json::to_value(&vm.config)
                    .map_err(|e| ApiError::Internal(format!("cannot encode the config: {e}")))?,
                memory_reserve_secs: vm.memory_reserve_time.as_secs_f64(),
            })),
            ApiRequest::Counters => Ok(ApiResponse::Counters(VmCounters {
                exits: serde_json::to_value(vm.counters.snapshot())
                    .map_err(|e| ApiError::Internal(format!("cannot encode counters: {e}")))?,
                devices: vm
                    .disks
                    .iter()
                    .map(|(name, m)| (name.clone(), disk_counters(&m.snapshot())))
                    .collect(),
            })),
            ApiRequest::Pause => {
                if vm.pause.is_paused() {
                    return Err(ApiError::InvalidState("the VM is already paused".into()));
                }
                vm.pause.pause();
                let lock = || vm.vcpus.lock().unwrap_or_else(|e| e.into_inner());
                let n = lock().len();
                let kick = || lock().iter().for_each(VcpuThread::kick);
                if vm.pause.wait_parked(n, PAUSE_TIMEOUT, kick) {
                    log::info!("VM paused");
                    Ok(ApiResponse::Done)
                } else {
                    vm.pause.resume();
                    Err(ApiError::Internal(format!(
                        "the vCPUs did not stop within {} s; the VM runs on",
                        PAUSE_TIMEOUT.as_secs()
                    )))
                }
            }
            ApiRequest::Resume => {
                if !vm.pause.is_paused() {
                    return Err(ApiError::InvalidState("the VM is not paused".into()));
                }
                vm.pause.resume();
                log::info!("VM resumed");
                Ok(ApiResponse::Done)
            }
            // Handled in `process`: the answer goes out before the stop.
            ApiRequest::Shutdown => Ok(ApiResponse::Done),
        }
    }
}

impl MutEventSubscriber for ApiHandler {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            log::error!("cannot watch the API event: {e:?}");
        }
    }

    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.wake.read();
        loop {
            let message = {
                let rx = self.requests.lock().unwrap_or_else(|e| e.into_inner());
                match rx.as_ref().map(Receiver::try_recv) {
                    Some(Ok(m)) => m,
                    _ => return,
                }
            };
            let answer = self.answer(message.request);
            let _ = message.reply.send(answer);
            if message.request == ApiRequest::Shutdown {
                log::info!("shutdown asked through the API");
                self.vm.exit.request(VmExit::PowerOff);
            }
        }
    }
}
