//! Interrupt delivery as devices see it.
//!
//! Devices never talk to KVM. A device that raises message-signalled
//! interrupts gets an [`MsiVectors`] from the VMM: each vector has an eventfd
//! which, when the vector is enabled, is a KVM irqfd routed to the MSI message
//! the guest programmed. VFIO hands those eventfds straight to the kernel, so
//! a passthrough device's interrupts never reach vfvm's userspace.

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// An MSI message as programmed by the guest (MSI capability or MSI-X entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (the LAPIC window, 0xFEExxxxx, on x86).
    pub address: u64,
    /// Message data (vector and delivery mode).
    pub data: u32,
}

/// A group of MSI vectors owned by one device.
pub trait MsiVectors: Send + Sync {
    /// The number of vectors in the group.
    fn len(&self) -> usize;
    /// Whether the group has no vectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Routes `vector` to `msg`. Takes effect for the next interrupt.
    fn set_route(&self, vector: usize, msg: MsiMessage) -> io::Result<()>;
    /// Connects (`true`) or disconnects (`false`) the vector's eventfd from
    /// the guest. A signal that arrives while disconnected stays pending in
    /// the eventfd and is delivered when the vector is connected again.
    fn set_enabled(&self, vector: usize, enabled: bool) -> io::Result<()>;
    /// The eventfd that raises `vector`.
    fn notifier(&self, vector: usize) -> Option<&EventFd>;
    /// Raises `vector` from userspace.
    fn trigger(&self, vector: usize) -> io::Result<()> {
        self.notifier(vector)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
            .write(1)
    }
}

/// An edge-triggered legacy interrupt line: an eventfd the VMM registers as
/// an irqfd on an IOAPIC pin.
pub struct IrqLine(pub EventFd);

impl vm_superio::Trigger for IrqLine {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Hands out MSI vector groups; implemented by the VMM over KVM.
pub trait InterruptManager: Send + Sync {
    /// A group of `count` vectors for one device, each initially routed
    /// nowhere and disconnected.
    fn msi_vectors(&self, count: usize) -> io::Result<std::sync::Arc<dyn MsiVectors>>;
}

/// Test doubles for devices' interrupt use.
#[cfg(test)]
pub(crate) mod testing {
    use std::io;
    use std::sync::{Arc, Mutex};

    use vmm_sys_util::eventfd::EventFd;

    use super::{InterruptManager, MsiMessage, MsiVectors};

    /// MSI vectors that record what a device asked of them.
    pub(crate) struct FakeVectors {
        pub(crate) events: Vec<EventFd>,
        pub(crate) log: Mutex<Vec<String>>,
    }

    impl FakeVectors {
        pub(crate) fn new(n: usize) -> Arc<Self> {
            Arc::new(FakeVectors {
                events: (0..n)
                    .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
                    .collect(),
                log: Mutex::new(Vec::new()),
            })
        }

        pub(crate) fn take_log(&self) -> Vec<String> {
            std::mem::take(&mut self.log.lock().unwrap())
        }
    }

    impl MsiVectors for FakeVectors {
        fn len(&self) -> usize {
            self.events.len()
        }
        fn set_route(&self, v: usize, m: MsiMessage) -> io::Result<()> {
            let entry = format!("route {v} {:#x} {:#x}", m.address, m.data);
            self.log.lock().unwrap().push(entry);
            Ok(())
        }
        fn set_enabled(&self, v: usize, on: bool) -> io::Result<()> {
            self.log.lock().unwrap().push(format!("enable {v} {on}"));
            Ok(())
        }
        fn notifier(&self, v: usize) -> Option<&EventFd> {
            self.events.get(v)
        }
    }

    /// Hands out [`FakeVectors`] groups and keeps the last for inspection.
    #[derive(Default)]
    pub(crate) struct FakeInterrupts {
        pub(crate) last: Mutex<Option<Arc<FakeVectors>>>,
    }

    impl InterruptManager for FakeInterrupts {
        fn msi_vectors(&self, count: usize) -> io::Result<Arc<dyn MsiVectors>> {
            let v = FakeVectors::new(count);
            *self.last.lock().unwrap() = Some(v.clone());
            Ok(v)
        }
    }
}
