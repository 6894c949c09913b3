//! The VMM's side of the REST API (`vfvm run --api-sock PATH`).
//!
//! [`ApiSocket::start`] creates the socket early, before the host changes,
//! so a socket in use fails the run at once. Once the vCPUs run, an
//! [`ApiHandler`] on the event loop answers each [`ApiRequest`] the API
//! thread forwards: the event loop owns the VM, the API thread only waits
//! for answers, and vCPUs never wait for either.
//!
//! How the VM ends through the API (bhyve's statuses):
//! - `vm.shutdown`: the power button, then, after `timeout_s` (a timerfd
//!   on the event loop), a forced stop; exit 1 either way;
//! - `vmm.shutdown`: a stop at once, exit 1;
//! - `vm.reboot`: a stop with the reboot status, exit 0.
//!
//! Hotplug (`vm.add-device`, `vm.add-disk`, `vm.remove-device`) goes
//! through [`crate::hotplug`]; a removal's answer waits for the guest's
//! eject (or its timeout, a timerfd here).
//!
//! [`info`] and [`counters`] build the answers from a [`VmView`].

mod counters;
mod info;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use api::{
    Access, ApiError, ApiMessage, ApiRequest, ApiResponse, ApiServer, Limits, Reply, VmmPing,
};
use devices::acpi::ged::{Ged, GedEvent};
use devices::metrics::Metrics;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::config::VmConfig;
use crate::counters::ExitCounters;
use crate::exit::{ExitSignal, VmExit};
use crate::host::netlink::Rtnetlink;
use crate::hotplug::Hotplug;
use crate::irq::MsiCounts;
use crate::vcpu::{PauseError, Vcpus};

/// How long `vm.pause` and `vm.nmi` wait for every vCPU to leave KVM_RUN.
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
    /// Listens on `path`, on a thread `spawner` starts. Requests wait
    /// until [`ApiSocket::handler`] is on the event loop.
    pub fn start(path: &Path, access: Access, spawner: &api::Spawner) -> Result<Self, api::Error> {
        let (tx, rx) = mpsc::channel();
        let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(api::Error::Thread)?;
        let server = ApiServer::start_with(path, access, Limits::default(), tx, &wake, spawner)?;
        log::info!("API on {}", path.display());
        Ok(ApiSocket {
            requests: Arc::new(Mutex::new(Some(rx))),
            wake,
            _server: server,
        })
    }

    /// The event-loop subscriber that answers requests about `vm`, its
    /// slots changed through `hotplug`.
    pub fn handler(&self, vm: VmView, hotplug: Hotplug) -> std::io::Result<ApiHandler> {
        Ok(ApiHandler {
            requests: self.requests.clone(),
            wake: self.wake.try_clone()?,
            shutdown_timer: TimerFd::new()?,
            shutdown_deadline: None,
            netlink: None,
            eject_timer: nonblocking_timer()?,
            removals: Vec::new(),
            hotplug,
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

/// A passed-through function as the API reports it.
pub struct VfView {
    /// Guest slot and function.
    pub slot: u8,
    /// Guest function.
    pub function: u8,
    /// Host address.
    pub host: String,
    /// The PF's interface and the VF's index, for a VF of a NIC.
    pub pf_vf: Option<(String, u32)>,
    /// The PF's driver.
    pub pf_driver: Option<String>,
}

impl VfView {
    /// Whether the PF's IFLA_VF_STATS for this VF are real counts.
    pub fn counted(&self) -> bool {
        self.pf_vf.is_some()
            && self
                .pf_driver
                .as_deref()
                .is_none_or(crate::host::vf::counts_vf_traffic)
    }
}

/// What the API may see and do of a running VM.
pub struct VmView {
    /// The configuration, as `vm.info` shows it.
    pub config: VmConfig,
    /// How long each phase of the start took.
    pub start: api::StartTimes,
    /// Userspace exit counters.
    pub counters: Arc<ExitCounters>,
    /// Each disk's counters, by device id (`blk@SLOT:FUNCTION`).
    pub devices: Vec<(String, Arc<dyn Metrics>)>,
    /// Each emulated device's MSI-X vectors fired, by device id.
    pub msix: Vec<(String, Arc<MsiCounts>)>,
    /// The passed-through functions.
    pub vfs: Vec<VfView>,
    /// Stops the VM.
    pub exit: Arc<ExitSignal>,
    /// The vCPUs, to pause and resume them (gone once the VM stops).
    pub vcpus: Weak<Vcpus>,
    /// The ACPI Generic Event Device (power button).
    pub ged: Arc<Ged>,
}

/// A timerfd whose read never blocks: it is re-armed from the event loop,
/// possibly between its readiness and its read.
fn nonblocking_timer() -> std::io::Result<TimerFd> {
    let timer = TimerFd::new()?;
    // SAFETY: F_SETFL on a descriptor we own; no memory is passed.
    if unsafe { libc::fcntl(timer.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(timer)
}

/// A `vm.remove-device` waiting for the guest's eject.
struct Removal {
    slot: u8,
    deadline: Instant,
    reply: Reply,
}

/// Answers API requests on the event loop.
pub struct ApiHandler {
    requests: SharedReceiver,
    wake: EventFd,
    /// Fires when a `vm.shutdown`'s grace period is over.
    shutdown_timer: TimerFd,
    shutdown_deadline: Option<std::time::Instant>,
    /// Opened at the first request that reads a PF.
    netlink: Option<Rtnetlink>,
    /// Fires at the earliest removal's deadline.
    eject_timer: TimerFd,
    /// Removals waiting for the guest.
    removals: Vec<Removal>,
    hotplug: Hotplug,
    vm: VmView,
}

impl ApiHandler {
    fn stopping(&self) -> bool {
        self.vm.exit.reason().is_some()
    }

    fn refuse_if_stopping(&self) -> Result<(), ApiError> {
        if self.stopping() {
            Err(ApiError::InvalidState("the VM is shutting down".into()))
        } else {
            Ok(())
        }
    }

    /// The rtnetlink socket, opened on first use.
    fn netlink(&mut self) -> Result<&Rtnetlink, String> {
        if self.netlink.is_none() {
            self.netlink = Some(Rtnetlink::new().map_err(|e| e.to_string())?);
        }
        Ok(self.netlink.as_ref().expect("just opened"))
    }

    fn press_power_button(&self) -> Result<(), ApiError> {
        self.vm
            .ged
            .notify(GedEvent::PowerButton)
            .map_err(|e| ApiError::Internal(format!("cannot raise the GED interrupt: {e}")))
    }

    fn answer(&mut self, request: ApiRequest) -> Result<ApiResponse, ApiError> {
        match request {
            ApiRequest::Ping => Ok(ApiResponse::Ping(ping())),
            ApiRequest::Info => {
                let state = self.state();
                let reports = self.read_pfs();
                Ok(ApiResponse::Info(Box::new(info::vm_info(
                    &self.vm, state, &reports,
                ))))
            }
            ApiRequest::Counters => {
                let reports = self.read_pfs();
                Ok(ApiResponse::Counters(counters::vm_counters(
                    &self.vm, &reports,
                )))
            }
            ApiRequest::Pause => self.pause(),
            ApiRequest::Resume => {
                self.refuse_if_stopping()?;
                self.vcpus()?.resume().map_err(pause_error)?;
                log::info!("VM resumed");
                Ok(ApiResponse::Done)
            }
            ApiRequest::PowerButton => {
                self.refuse_if_stopping()?;
                self.press_power_button()?;
                log::info!("power button pressed through the API");
                Ok(ApiResponse::Done)
            }
            ApiRequest::Nmi => {
                self.refuse_if_stopping()?;
                self.vcpus()?
                    .nmi(PAUSE_TIMEOUT)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                log::info!("NMI sent to every vCPU through the API");
                Ok(ApiResponse::Done)
            }
            ApiRequest::Shutdown(body) => {
                self.refuse_if_stopping()?;
                let grace = Duration::from_secs(body.timeout_s());
                // A paused guest cannot see the button.
                if grace.is_zero() || self.paused() {
                    log::info!("shutdown through the API: stopping the VM now");
                    self.vm.exit.request(VmExit::PowerOff);
                    return Ok(ApiResponse::Done);
                }
                self.press_power_button()?;
                let deadline = std::time::Instant::now() + grace;
                if self.shutdown_deadline.is_none_or(|d| deadline < d) {
                    self.shutdown_timer.reset(grace, None).map_err(|e| {
                        ApiError::Internal(format!("cannot arm the shutdown timer: {e}"))
                    })?;
                    self.shutdown_deadline = Some(deadline);
                }
                log::info!(
                    "shutdown through the API: power button pressed, forced stop in {} s",
                    grace.as_secs()
                );
                Ok(ApiResponse::Done)
            }
            ApiRequest::Reboot => {
                self.refuse_if_stopping()?;
                log::info!("reboot through the API");
                self.vm.exit.request(VmExit::Reset);
                Ok(ApiResponse::Done)
            }
            ApiRequest::VmmShutdown => {
                log::info!("vmm.shutdown through the API: stopping the VM now");
                self.vm.exit.request(VmExit::PowerOff);
                Ok(ApiResponse::Done)
            }
            ApiRequest::AddDevice(body) => {
                self.refuse_if_stopping()?;
                let added = self.hotplug.add_device(&body);
                self.hotplug.refresh(&mut self.vm);
                Ok(ApiResponse::Device(added?))
            }
            ApiRequest::AddDisk(body) => {
                self.refuse_if_stopping()?;
                let added = self.hotplug.add_disk(&body);
                self.hotplug.refresh(&mut self.vm);
                Ok(ApiResponse::Device(added?))
            }
            ApiRequest::RemoveDevice(_) => Err(ApiError::Internal(
                "vm.remove-device is answered once the guest ejected the device".into(),
            )),
        }
    }

    /// Starts a removal; its answer comes from [`ApiHandler::ejected`] or
    /// [`ApiHandler::eject_timeouts`].
    fn remove_device(&mut self, body: &api::VmRemoveDevice, reply: Reply) {
        if let Err(e) = self.refuse_if_stopping() {
            return reply.send(Err(e));
        }
        match self.hotplug.request_removal(&body.id) {
            Err(e) => reply.send(Err(e)),
            Ok(slot) => {
                let wait = Duration::from_secs(body.timeout_s());
                self.removals.push(Removal {
                    slot,
                    deadline: Instant::now() + wait,
                    reply,
                });
                self.arm_eject_timer();
            }
        }
    }

    fn arm_eject_timer(&mut self) {
        let now = Instant::now();
        let next = self.removals.iter().map(|r| r.deadline).min();
        let armed = match next {
            // A zero duration disarms a timerfd: at least a millisecond.
            Some(d) => self.eject_timer.reset(
                d.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
                None,
            ),
            None => self.eject_timer.clear(),
        };
        if let Err(e) = armed {
            log::error!("cannot arm the eject timer: {e}");
        }
    }

    /// The guest ejected slots: their devices go, their removals answer.
    fn ejected(&mut self) {
        let slots = self.hotplug.ejected();
        if slots.is_empty() {
            return;
        }
        self.hotplug.refresh(&mut self.vm);
        let (done, waiting) = std::mem::take(&mut self.removals)
            .into_iter()
            .partition(|r| slots.contains(&r.slot));
        self.removals = waiting;
        for r in done {
            r.reply.send(Ok(ApiResponse::Done));
        }
        self.arm_eject_timer();
    }

    /// Removals past their deadline are withdrawn; the devices stay.
    fn eject_timeouts(&mut self) {
        let now = Instant::now();
        let (late, waiting): (Vec<Removal>, Vec<Removal>) = std::mem::take(&mut self.removals)
            .into_iter()
            .partition(|r| r.deadline <= now);
        self.removals = waiting;
        for r in late {
            self.hotplug.cancel_removal(r.slot);
            let bdf = format!("0000:00:{:02x}.0", r.slot);
            log::warn!("the guest did not eject {bdf}: the device stays");
            r.reply.send(Err(ApiError::Internal(format!(
                "the guest did not eject {bdf} in time (is its ACPI PCI hotplug, acpiphp, working?): the device stays"
            ))));
        }
        self.arm_eject_timer();
    }

    fn state(&self) -> api::VmState {
        if self.stopping() {
            api::VmState::Shutdown
        } else if self.paused() {
            api::VmState::Paused
        } else {
            api::VmState::Running
        }
    }

    /// The vCPUs, while the VM has them.
    fn vcpus(&self) -> Result<Arc<Vcpus>, ApiError> {
        self.vm
            .vcpus
            .upgrade()
            .ok_or_else(|| ApiError::InvalidState("the VM is shutting down".into()))
    }

    fn paused(&self) -> bool {
        self.vm.vcpus.upgrade().is_some_and(|v| v.is_paused())
    }

    fn pause(&self) -> Result<ApiResponse, ApiError> {
        self.refuse_if_stopping()?;
        self.vcpus()?.pause(PAUSE_TIMEOUT).map_err(pause_error)?;
        log::info!("VM paused");
        Ok(ApiResponse::Done)
    }

    /// Every VF's report from its PF, read now (one request per PF).
    fn read_pfs(&mut self) -> counters::PfReports {
        let pfs: std::collections::BTreeSet<String> = self
            .vm
            .vfs
            .iter()
            .filter_map(|v| v.pf_vf.as_ref().map(|(pf, _)| pf.clone()))
            .collect();
        let mut reports = counters::PfReports::new();
        for pf in pfs {
            let got = self.netlink().and_then(|nl| {
                use crate::host::vf::VfControl;
                nl.list(&pf).map_err(|e| e.to_string())
            });
            reports.insert(pf, got);
        }
        reports
    }

    fn drain(&mut self) {
        loop {
            let message = {
                let rx = self.requests.lock().unwrap_or_else(|e| e.into_inner());
                match rx.as_ref().map(Receiver::try_recv) {
                    Some(Ok(m)) => m,
                    _ => return,
                }
            };
            match message.request {
                ApiRequest::RemoveDevice(body) => self.remove_device(&body, message.reply),
                request => {
                    let answer = self.answer(request);
                    message.reply.send(answer);
                }
            }
        }
    }
}

/// `vmm.ping`'s answer.
fn ping() -> VmmPing {
    VmmPing {
        build_version: env!("VFVM_VERSION").to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: i64::from(std::process::id()),
        features: [
            "passthru",
            "virtio-blk",
            "power-button",
            "nmi",
            "vf-counters",
            "hotplug",
        ]
        .map(String::from)
        .to_vec(),
    }
}

fn pause_error(e: PauseError) -> ApiError {
    match e {
        PauseError::AlreadyPaused | PauseError::NotPaused => ApiError::InvalidState(e.to_string()),
        PauseError::Timeout(_) => ApiError::Internal(e.to_string()),
    }
}

impl MutEventSubscriber for ApiHandler {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            log::error!("cannot watch the API event: {e:?}");
        }
        if let Err(e) = ops.add(Events::new(&self.shutdown_timer, EventSet::IN)) {
            log::error!("cannot watch the shutdown timer: {e:?}");
        }
        if let Err(e) = ops.add(Events::new(&self.eject_timer, EventSet::IN)) {
            log::error!("cannot watch the eject timer: {e:?}");
        }
        if let Err(e) = ops.add(Events::new(self.hotplug.ejected_event(), EventSet::IN)) {
            log::error!("cannot watch the PCI hotplug controller: {e:?}");
        }
    }

    fn process(&mut self, events: Events, _: &mut EventOps) {
        if events.fd() == self.hotplug.ejected_event().as_raw_fd() {
            self.ejected();
            return;
        }
        if events.fd() == self.eject_timer.as_raw_fd() {
            let _ = self.eject_timer.wait();
            self.eject_timeouts();
            return;
        }
        if events.fd() == self.shutdown_timer.as_raw_fd() {
            let _ = self.shutdown_timer.wait();
            if !self.stopping() {
                log::warn!("the guest did not power off after the power button: stopping it");
                self.vm.exit.request(VmExit::PowerOff);
            }
            return;
        }
        let _ = self.wake.read();
        self.drain();
    }
}
