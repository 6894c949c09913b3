//! vCPU threads: the KVM_RUN loop and its exits.
//!
//! A vCPU handles port and MMIO exits through the buses and stops when the
//! VM's [`ExitSignal`] is set; the VMM kicks it out of KVM_RUN with
//! [`KICK_SIGNAL`] so a vCPU idling in the guest notices promptly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use devices::bus::Bus;
use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use log::{error, warn};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::counters::{ExitCounters, ExitKind};
use crate::exit::{ExitSignal, VmExit};

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
    /// Set once the VM is stopping.
    pub stop: Arc<AtomicBool>,
    /// Userspace exit counters.
    pub counters: Arc<ExitCounters>,
}

/// A running vCPU thread.
pub struct VcpuThread {
    handle: JoinHandle<()>,
}

impl VcpuThread {
    /// Starts `vcpu` on a thread of its own.
    pub fn spawn(id: usize, vcpu: VcpuFd, ctx: VcpuContext) -> std::io::Result<Self> {
        let handle = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || run(id, vcpu, &ctx))?;
        Ok(VcpuThread { handle })
    }

    /// Kicks the thread until it leaves its loop, then joins it.
    pub fn stop(self) {
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

fn run(id: usize, mut vcpu: VcpuFd, ctx: &VcpuContext) {
    while !ctx.stop.load(Ordering::Acquire) {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
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
            ctx.counters.add(ExitKind::IoIn);
            if !ctx.pio.read(u64::from(port), data) {
                data.fill(0xff);
            }
        }
        VcpuExit::IoOut(port, data) => {
            ctx.counters.add(ExitKind::IoOut);
            if !ctx.pio.write(u64::from(port), data) {
                log::debug!("vcpu{id}: unclaimed port write {port:#x} {data:x?}");
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            ctx.counters.add(ExitKind::MmioRead);
            if !ctx.mmio.read(addr, data) {
                data.fill(0xff);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            ctx.counters.add(ExitKind::MmioWrite);
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
            ctx.counters.add(ExitKind::Other);
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
            ctx.counters.add(ExitKind::Other);
            warn!("vcpu{id}: unexpected exit {other:?}");
        }
    }
    None
}
