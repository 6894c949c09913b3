//! vCPU threads: the KVM_RUN loop and its exits, and [`Vcpus`], their one
//! owner.
//!
//! A vCPU handles port and MMIO exits through the buses and stops when the
//! VM's [`ExitSignal`] is set; the VMM kicks it out of KVM_RUN with
//! [`kick_signal`] so a vCPU idling in the guest notices promptly.
//! [`Vcpus`] starts the threads, pauses and resumes them (the API's
//! vm.pause / vm.resume), has each inject an NMI (vm.nmi) and stops them
//! when dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::bus::Bus;
use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use log::{error, warn};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::counters::{ExitCounters, ExitKind};
use crate::exit::{ExitSignal, VmExit};
use crate::halt::HaltProbes;
use crate::sandbox::{Sandbox, ThreadKind};

/// The signal that interrupts KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

/// Installs the (empty) handler of [`kick_signal`], so it interrupts
/// KVM_RUN with EINTR instead of killing the process.
pub fn install_kick_handler() -> std::io::Result<()> {
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    register_signal_handler(kick_signal(), noop).map_err(std::io::Error::from)
}

/// What a vCPU thread shares with the rest of the VM.
#[derive(Clone)]
pub struct VcpuContext {
    /// Port I/O.
    pub pio: Arc<Bus>,
    /// MMIO.
    pub mmio: Arc<Bus>,
    /// How the VM ends.
    pub exit: Arc<ExitSignal>,
    /// Userspace exit counters.
    pub counters: Arc<ExitCounters>,
    /// Answers "are you halted?" (see [`crate::halt`]).
    pub halt: Arc<HaltProbes>,
}

/// Why [`Vcpus::pause`] or [`Vcpus::resume`] did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    /// Pause while paused.
    #[error("the VM is already paused")]
    AlreadyPaused,
    /// Resume while running.
    #[error("the VM is not paused")]
    NotPaused,
    /// A vCPU did not leave KVM_RUN in time; the pause was lifted.
    #[error("the vCPUs did not stop within {} s; the VM runs on", .0.as_secs())]
    Timeout(Duration),
}

/// Why [`Vcpus::nmi`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmiError {
    /// A vCPU did not leave KVM_RUN to take it in time (it takes it at
    /// its next exit).
    #[error("vCPU {vcpu} did not take the NMI within {} ms", .timeout.as_millis())]
    Timeout { vcpu: usize, timeout: Duration },
}

/// The VM's vCPU threads: the one owner of starting, pausing, resuming and
/// stopping them. Dropping it stops and joins every thread.
pub struct Vcpus {
    threads: Vec<VcpuThread>,
    control: Arc<Control>,
}

/// What the VMM tells every vCPU thread.
#[derive(Default)]
struct Control {
    pause: PauseState,
    nmi: NmiRequests,
    /// Set once the VM is stopping.
    stop: AtomicBool,
}

impl Vcpus {
    /// Starts one thread per vCPU (`vcpus[i]` is vCPU i). If a thread cannot
    /// be started, those already running are stopped and the index of the
    /// one that failed is returned with the error. Each enters its sandbox.
    pub fn start(
        vcpus: Vec<VcpuFd>,
        ctx: &VcpuContext,
        sandbox: &Arc<Sandbox>,
    ) -> Result<Vcpus, (usize, std::io::Error)> {
        let mut started = Vcpus {
            threads: Vec::with_capacity(vcpus.len()),
            control: Arc::new(Control {
                nmi: NmiRequests::new(vcpus.len()),
                ..Control::default()
            }),
        };
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let thread =
                VcpuThread::spawn(index, vcpu, ctx.clone(), started.control.clone(), sandbox)
                    .map_err(|e| (index, e))?;
            started.threads.push(thread);
        }
        Ok(started)
    }

    /// Whether the vCPUs are paused.
    pub fn is_paused(&self) -> bool {
        self.control.pause.is_paused()
    }

    /// Parks every vCPU outside KVM_RUN, waiting at most `timeout` for them.
    pub fn pause(&self, timeout: Duration) -> Result<(), PauseError> {
        let pause = &self.control.pause;
        if pause.is_paused() {
            return Err(PauseError::AlreadyPaused);
        }
        pause.pause();
        let kick = || self.threads.iter().for_each(VcpuThread::kick);
        if pause.wait_parked(self.threads.len(), timeout, kick) {
            Ok(())
        } else {
            pause.resume();
            Err(PauseError::Timeout(timeout))
        }
    }

    /// Runs paused vCPUs again.
    pub fn resume(&self) -> Result<(), PauseError> {
        if !self.control.pause.is_paused() {
            return Err(PauseError::NotPaused);
        }
        self.control.pause.resume();
        Ok(())
    }

    /// Has every vCPU inject an NMI (KVM_NMI, which a vCPU's own thread
    /// issues outside KVM_RUN), waiting at most `timeout` for them to take
    /// it. Paused vCPUs take it as they resume.
    pub fn nmi(&self, timeout: Duration) -> Result<(), NmiError> {
        let nmi = &self.control.nmi;
        let asked = nmi.ask();
        if self.is_paused() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let pending = nmi.pending(asked);
            let Some(&first) = pending.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(NmiError::Timeout {
                    vcpu: first,
                    timeout,
                });
            }
            for &id in &pending {
                if let Some(t) = self.threads.get(id) {
                    t.kick();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops every vCPU thread (paused or not) and waits for it to end.
    pub fn stop(&mut self) {
        self.control.stop.store(true, Ordering::Release);
        self.control.pause.resume();
        for t in self.threads.drain(..) {
            t.stop();
        }
    }
}

impl Drop for Vcpus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pause and resume of all vCPUs, for [`Vcpus`].
///
/// The VMM sets `paused` and kicks the threads out of KVM_RUN; each parks
/// on the condvar before its next KVM_RUN and counts itself as parked.
/// Resume clears the flag and wakes them. The VMM never waits for a vCPU
/// longer than the timeout given to [`PauseState::wait_parked`].
#[derive(Default)]
struct PauseState {
    state: Mutex<PauseInner>,
    /// vCPUs wait here while paused.
    resume: Condvar,
    /// The VMM waits here for vCPUs to park.
    parked: Condvar,
}

#[derive(Default)]
struct PauseInner {
    paused: bool,
    parked: usize,
}

impl PauseState {
    fn lock(&self) -> std::sync::MutexGuard<'_, PauseInner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a pause is requested.
    fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Requests a pause; vCPUs park once they leave KVM_RUN.
    fn pause(&self) {
        self.lock().paused = true;
    }

    /// Lifts the pause and wakes parked vCPUs.
    fn resume(&self) {
        self.lock().paused = false;
        self.resume.notify_all();
    }

    /// Waits until `n` vCPUs are parked, calling `kick` every millisecond
    /// for the stragglers still in KVM_RUN; false after `timeout`.
    fn wait_parked(&self, n: usize, timeout: Duration, mut kick: impl FnMut()) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while st.parked < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            drop(st);
            kick();
            st = self.lock();
            if st.parked >= n {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(1));
            st = self
                .parked
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Parks the calling vCPU while paused; returns early once `stop` is set.
    fn park(&self, stop: &AtomicBool) {
        let mut st = self.lock();
        if !st.paused {
            return;
        }
        st.parked += 1;
        self.parked.notify_all();
        while st.paused && !stop.load(Ordering::Acquire) {
            st = self
                .resume
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.parked -= 1;
    }
}

/// NMIs asked of the vCPUs: how many were asked, and per vCPU up to
/// which it has taken them. NMIs asked before a vCPU takes them are one
/// NMI, as the hardware merges them.
#[derive(Default)]
struct NmiRequests {
    asked: AtomicU64,
    taken: Box<[AtomicU64]>,
}

impl NmiRequests {
    fn new(vcpus: usize) -> Self {
        NmiRequests {
            asked: AtomicU64::new(0),
            taken: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Asks every vCPU for one more NMI; returns the request's number.
    fn ask(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// For vCPU `id` before KVM_RUN: whether it must inject an NMI now
    /// (it then counts as having taken every one asked so far).
    fn take(&self, id: usize) -> bool {
        let asked = self.asked.load(Ordering::Acquire);
        match self.taken.get(id) {
            Some(taken) if taken.load(Ordering::Acquire) != asked => {
                taken.store(asked, Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// The vCPUs that have not taken request `n` yet.
    fn pending(&self, n: u64) -> Vec<usize> {
        (0..self.taken.len())
            .filter(|&id| self.taken[id].load(Ordering::Acquire) < n)
            .collect()
    }
}

/// A running vCPU thread.
struct VcpuThread {
    handle: JoinHandle<()>,
}

impl VcpuThread {
    /// Starts `vcpu` on a thread of its own, in its sandbox.
    fn spawn(
        id: usize,
        vcpu: VcpuFd,
        ctx: VcpuContext,
        control: Arc<Control>,
        sandbox: &Arc<Sandbox>,
    ) -> std::io::Result<Self> {
        let handle = sandbox.spawn(ThreadKind::Vcpu, format!("vcpu{id}"), move || {
            run(id, vcpu, &ctx, &control)
        })?;
        Ok(VcpuThread { handle })
    }

    /// Interrupts KVM_RUN on this thread (it is a no-op elsewhere).
    fn kick(&self) {
        use std::os::unix::thread::JoinHandleExt;
        // SAFETY: the thread has not been joined (that takes `self`), so
        // its pthread_t is valid; the signal's handler does nothing.
        unsafe { libc::pthread_kill(self.handle.as_pthread_t() as _, kick_signal()) };
    }

    /// Kicks the thread until it leaves its loop, then joins it.
    fn stop(self) {
        use std::os::unix::thread::JoinHandleExt;
        let pthread = self.handle.as_pthread_t();
        while !self.handle.is_finished() {
            // SAFETY: the thread has not been joined, so `pthread` is valid.
            unsafe { libc::pthread_kill(pthread as _, kick_signal()) };
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.handle.join().is_err() {
            error!("a vCPU thread panicked");
        }
    }
}

fn run(id: usize, mut vcpu: VcpuFd, ctx: &VcpuContext, control: &Control) {
    ctx.halt.register(id);
    let stop = &control.stop;
    while !stop.load(Ordering::Acquire) {
        control.pause.park(stop);
        if stop.load(Ordering::Acquire) {
            break;
        }
        if control.nmi.take(id) {
            if let Err(e) = vcpu.nmi() {
                warn!("vcpu{id}: KVM_NMI failed: {e}");
            }
        }
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                ctx.halt.answer_if_asked(id, &vcpu);
                continue;
            }
            Err(e) => {
                error!("vcpu{id}: KVM_RUN failed: {e}");
                ctx.exit.request(VmExit::Error);
                return;
            }
        };
        if let Some(reason) = handle_exit(id, exit, ctx) {
            ctx.exit.request(reason);
            return;
        }
    }
}

/// Handles one exit; returns why the VM must stop, if it must.
fn handle_exit(id: usize, exit: VcpuExit, ctx: &VcpuContext) -> Option<VmExit> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            ctx.counters.add(ExitKind::IoIn, 1);
            if !ctx.pio.read(u64::from(port), data) {
                data.fill(0xff);
            }
        }
        VcpuExit::IoOut(port, data) => {
            ctx.counters.add(ExitKind::IoOut, 1);
            if !ctx.pio.write(u64::from(port), data) {
                log::debug!("vcpu{id}: unclaimed port write {port:#x} {data:x?}");
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            ctx.counters.add(ExitKind::MmioRead, 1);
            if !ctx.mmio.read(addr, data) {
                data.fill(0xff);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            ctx.counters.add(ExitKind::MmioWrite, 1);
            if !ctx.mmio.write(addr, data) {
                log::debug!("vcpu{id}: unclaimed MMIO write {addr:#x} {data:x?}");
            }
        }
        VcpuExit::Hlt => return Some(VmExit::Halted),
        VcpuExit::Shutdown => {
            warn!("vcpu{id}: triple fault");
            return Some(VmExit::TripleFault);
        }
        VcpuExit::SystemEvent(kind, _) => {
            ctx.counters.add(ExitKind::Other, 1);
            return match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => Some(VmExit::PowerOff),
                KVM_SYSTEM_EVENT_RESET => Some(VmExit::Reset),
                other => {
                    warn!("vcpu{id}: unhandled system event {other}");
                    None
                }
            };
        }
        VcpuExit::FailEntry(reason, cpu) => {
            error!("vcpu{id}: VM entry failed (hardware reason {reason:#x}, cpu {cpu})");
            return Some(VmExit::Error);
        }
        VcpuExit::InternalError => {
            error!("vcpu{id}: KVM internal error");
            return Some(VmExit::Error);
        }
        other => {
            ctx.counters.add(ExitKind::Other, 1);
            warn!("vcpu{id}: unexpected exit {other:?}");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vcpu_takes_an_asked_nmi_once() {
        let nmi = NmiRequests::new(2);
        assert!(!nmi.take(0), "nothing asked");
        let first = nmi.ask();
        assert_eq!(nmi.pending(first), [0, 1]);
        assert!(nmi.take(0));
        assert!(!nmi.take(0), "taken once");
        assert_eq!(nmi.pending(first), [1]);
        // Two asked before vCPU 1 runs again: one NMI, as in hardware.
        let second = nmi.ask();
        assert_eq!(nmi.pending(second), [0, 1]);
        assert!(nmi.take(1));
        assert!(!nmi.take(1));
        assert_eq!(nmi.pending(second), [0]);
        assert!(nmi.take(0));
        assert!(nmi.pending(second).is_empty());
        assert!(!nmi.take(2), "no such vCPU");
    }

    #[test]
    fn pause_parks_and_resume_wakes() {
        let pause = Arc::new(PauseState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let t = {
            let (pause, stop, ticks) = (pause.clone(), stop.clone(), ticks.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    pause.park(&stop);
                    ticks.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        pause.pause();
        let mut kicks = 0;
        assert!(pause.wait_parked(1, Duration::from_secs(5), || kicks += 1));
        assert!(kicks >= 1);
        let n = ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(ticks.load(Ordering::Relaxed), n, "parked thread ran");
        assert!(!pause.wait_parked(2, Duration::from_millis(10), || {}));

        pause.resume();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ticks.load(Ordering::Relaxed) == n {
            assert!(Instant::now() < deadline, "resume did not wake the thread");
            std::thread::sleep(Duration::from_millis(1));
        }

        // Stopping while paused ends the park.
        pause.pause();
        assert!(pause.wait_parked(1, Duration::from_secs(5), || {}));
        stop.store(true, Ordering::Release);
        t.join().unwrap();
    }
}
