//! How a VM ends, and bhyve's exit statuses for it.

use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Why the VM stopped; the process exits with bhyve(8)'s status for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest rebooted (status 0).
    Reset,
    /// The guest powered off (status 1).
    PowerOff,
    /// The guest halted (status 2).
    Halted,
    /// The guest triple-faulted (status 3).
    TripleFault,
    /// vfvm hit an error while the VM ran (status 4).
    Error,
}

impl VmExit {
    /// bhyve's exit status.
    pub fn status(self) -> u8 {
        match self {
            VmExit::Reset => 0,
            VmExit::PowerOff => 1,
            VmExit::Halted => 2,
            VmExit::TripleFault => 3,
            VmExit::Error => 4,
        }
    }
}

/// The first reason to stop, shared by vCPUs, devices and the API, and an
/// eventfd that wakes the event loop when it is set.
pub struct ExitSignal {
    reason: Mutex<Option<VmExit>>,
    event: EventFd,
}

impl ExitSignal {
    /// An unset signal.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSignal {
            reason: Mutex::new(None),
            event: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` unless one was recorded already, and wakes the loop.
    pub fn request(&self, reason: VmExit) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        let _ = self.event.write(1);
    }

    /// The recorded reason.
    pub fn reason(&self) -> Option<VmExit> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The eventfd the event loop watches.
    pub fn event(&self) -> &EventFd {
        &self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let s = ExitSignal::new().unwrap();
        assert_eq!(s.reason(), None);
        s.request(VmExit::PowerOff);
        s.request(VmExit::Error);
        assert_eq!(s.reason(), Some(VmExit::PowerOff));
        assert_eq!(s.event().read().unwrap(), 2);
    }

    #[test]
    fn statuses_are_bhyves() {
        let all = [
            VmExit::Reset,
            VmExit::PowerOff,
            VmExit::Halted,
            VmExit::TripleFault,
            VmExit::Error,
        ];
        assert_eq!(all.map(VmExit::status), [0, 1, 2, 3, 4]);
    }
}
