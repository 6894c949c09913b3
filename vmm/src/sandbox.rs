//! The sandbox every long-lived thread of `vfvm run` enters: a seccomp
//! filter of its kind (`--seccomp=on|log|off`) and only the capabilities
//! its kind needs later, with no_new_privs.
//!
//! Each thread enters it itself, once, before it does its work: threads
//! spawned through [`Sandbox::spawn`] (vCPUs, the console writer, the
//! signal watcher) or through the hooks the `api` and `devices` crates take
//! ([`Sandbox::spawner`]: the API thread, the disk queue threads), and the
//! main thread just before it starts the event loop ([`ThreadKind::EventLoop`],
//! which then also runs the VM's teardown). Threads that end before the
//! guest runs (the memory reservation workers, the threads opening passthrough
//! devices) run unfiltered.
//!
//! With `on` a forbidden call traps: the thread prints one line naming its
//! kind and the call, and vfvm ends at once ([`trap`]); what it changed on
//! the host is put back by the journal at the next start (or `vfvm
//! recover`). A lone thread killed would leave the rest waiting for it
//! forever (a vCPU never joined, a lock never released), so the process
//! ends, as with SECCOMP_RET_KILL_PROCESS, only with the line first. With
//! `log` the kernel logs the call (SECCOMP_RET_LOG, in the audit log or
//! dmesg) and lets it run.

mod filters;
mod privileges;
mod syscall_names;
mod trap;

use std::io;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use seccompiler::BpfProgram;

pub use filters::ThreadKind;

use crate::config::SeccompMode;

/// Why a thread could not enter its sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filter could not be built (a bug in the allowlists).
    #[error("the {kind} thread's seccomp filter: {source}")]
    Build {
        kind: ThreadKind,
        #[source]
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter.
    #[error("cannot install the {kind} thread's seccomp filter: {source} (is seccomp enabled in this kernel? --seccomp=off runs without filters)")]
    Apply {
        kind: ThreadKind,
        #[source]
        source: seccompiler::Error,
    },
    /// Capabilities could not be dropped, or no_new_privs set.
    #[error("cannot drop the {kind} thread's capabilities: {reason}")]
    Caps { kind: ThreadKind, reason: String },
    /// The SIGSYS handler could not be installed.
    #[error("cannot handle SIGSYS for --seccomp=on: {0}")]
    Trap(#[source] io::Error),
}

/// A spawner the `api` and `devices` crates use for their threads.
pub type Spawner =
    Arc<dyn Fn(String, Box<dyn FnOnce() + Send>) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// Every kind's filter, built once before any thread needs one.
pub struct Sandbox {
    mode: SeccompMode,
    programs: Vec<(ThreadKind, BpfProgram)>,
}

impl Sandbox {
    /// Builds the filters for `mode` (none for `off`) and, for `on`,
    /// installs the SIGSYS handler that names a forbidden call.
    pub fn new(mode: SeccompMode) -> Result<Arc<Sandbox>, Error> {
        let programs = match mode {
            SeccompMode::Off => Vec::new(),
            SeccompMode::On | SeccompMode::Log => ThreadKind::ALL
                .iter()
                .map(|&kind| Ok((kind, filters::program(kind, mode)?)))
                .collect::<Result<_, Error>>()?,
        };
        if mode == SeccompMode::On {
            trap::install().map_err(Error::Trap)?;
        }
        Ok(Arc::new(Sandbox { mode, programs }))
    }

    /// The mode the filters were built for.
    pub fn mode(&self) -> SeccompMode {
        self.mode
    }

    /// Puts the calling thread in `kind`'s sandbox: capabilities `kind`
    /// does not need dropped, no_new_privs, then its filter. For good: a
    /// thread never leaves it.
    pub fn enter(&self, kind: ThreadKind) -> Result<(), Error> {
        privileges::restrict(kind.capabilities()).map_err(|reason| Error::Caps { kind, reason })?;
        let Some((_, program)) = self.programs.iter().find(|(k, _)| *k == kind) else {
            return Ok(());
        };
        trap::name_thread(kind);
        seccompiler::apply_filter(program).map_err(|source| Error::Apply { kind, source })
    }

    /// Starts `f` on a thread named `name` that first enters `kind`'s
    /// sandbox; returns once it has (an error if it could not, and then
    /// `f` never runs).
    pub fn spawn(
        self: &Arc<Self>,
        kind: ThreadKind,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<JoinHandle<()>> {
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let sandbox = self.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            let result = sandbox.enter(kind);
            let ok = result.is_ok();
            let _ = entered_tx.send(result);
            if ok {
                f();
            }
        })?;
        match entered.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(io::Error::other(e.to_string()))
            }
            Err(_) => Err(io::Error::other(format!(
                "the {kind} thread ended at its start"
            ))),
        }
    }

    /// [`Sandbox::spawn`] for `kind`, as the `api` and `devices` crates take it.
    pub fn spawner(self: &Arc<Self>, kind: ThreadKind) -> Spawner {
        let sandbox = self.clone();
        Arc::new(move |name, f| sandbox.spawn(kind, name, f))
    }
}

#[cfg(test)]
mod tests;
