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

/// Brings `vector` in line with what the guest programmed: routed to the
/// message of a `live` vector and connected (re-routed on every change:
/// Linux rewrites an unmasked vector's message when it moves an IRQ), and
/// disconnected once it is no longer live. `connected` says whether it is;
/// a failure leaves it as it was and is logged under `what` (`msix`, `msi`).
pub fn sync_vector(
    vectors: &dyn MsiVectors,
    vector: usize,
    live: Option<MsiMessage>,
    connected: &mut bool,
    what: &str,
) {
    let result = match live {
        Some(msg) => vectors
            .set_route(vector, msg)
            .and_then(|()| vectors.set_enabled(vector, true)),
        None if *connected => vectors.set_enabled(vector, false),
        None => Ok(()),
    };
    match result {
        Ok(()) => *connected = live.is_some(),
        Err(e) => log::warn!("{what}: vector {vector}: {e}"),
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

/// A PCI function's level-triggered INTx pin, wired by the VMM to the
/// guest interrupt the platform routes the pin to (ACPI `_PRT`).
///
/// While connected, a signal on [`LevelIrq::trigger`] asserts the guest's
/// pin in the kernel; when the guest ends the interrupt (EOI) the kernel
/// lowers the pin and signals [`LevelIrq::resample`]. VFIO masks a
/// device's INTx on each interrupt and unmasks it on the resample signal,
/// so level interrupts never pass through vfvm's userspace.
pub trait LevelIrq: Send + Sync {
    /// The guest interrupt (GSI) the pin raises: the interrupt line value.
    fn gsi(&self) -> u32;
    /// The eventfd that asserts the pin.
    fn trigger(&self) -> &EventFd;
    /// The eventfd signalled at the guest's EOI.
    fn resample(&self) -> &EventFd;
    /// Connects (`true`) or disconnects the trigger from the guest.
    fn set_enabled(&self, enabled: bool) -> io::Result<()>;
}

/// Hands out interrupts; implemented by the VMM over KVM.
pub trait InterruptManager: Send + Sync {
    /// A group of `count` vectors for one device, each initially routed
    /// nowhere and disconnected.
    fn msi_vectors(&self, count: usize) -> io::Result<std::sync::Arc<dyn MsiVectors>>;
    /// INTx pin `pin` (1 = INTA# .. 4 = INTD#) of a function in guest slot
    /// `slot`, disconnected.
    fn intx(&self, slot: u8, pin: u8) -> io::Result<Box<dyn LevelIrq>>;
}

/// Test doubles for devices' interrupt use.
#[cfg(any(test, feature = "fuzzing"))]
pub mod testing {
    use std::io;
    use std::sync::{Arc, Mutex};

    use vmm_sys_util::eventfd::EventFd;

    use super::{InterruptManager, LevelIrq, MsiMessage, MsiVectors};

    /// MSI vectors that record what a device asked of them.
    pub struct FakeVectors {
        pub events: Vec<EventFd>,
        pub log: Mutex<Vec<String>>,
    }

    impl FakeVectors {
        pub fn new(n: usize) -> Arc<Self> {
            Arc::new(FakeVectors {
                events: (0..n)
                    .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
                    .collect(),
                log: Mutex::new(Vec::new()),
            })
        }

        pub fn take_log(&self) -> Vec<String> {
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

    /// An INTx pin that logs into its manager's `intx_log`.
    pub struct FakeLevel {
        gsi: u32,
        trigger: EventFd,
        resample: EventFd,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl LevelIrq for FakeLevel {
        fn gsi(&self) -> u32 {
            self.gsi
        }
        fn trigger(&self) -> &EventFd {
            &self.trigger
        }
        fn resample(&self) -> &EventFd {
            &self.resample
        }
        fn set_enabled(&self, on: bool) -> io::Result<()> {
            let entry = format!("intx {} {on}", self.gsi);
            self.log.lock().unwrap().push(entry);
            Ok(())
        }
    }

    /// Hands out [`FakeVectors`] groups (and keeps the last for
    /// inspection) and [`FakeLevel`] pins at GSI 16 + slot + pin - 1.
    #[derive(Default)]
    pub struct FakeInterrupts {
        pub last: Mutex<Option<Arc<FakeVectors>>>,
        pub intx_log: Arc<Mutex<Vec<String>>>,
    }

    impl InterruptManager for FakeInterrupts {
        fn msi_vectors(&self, count: usize) -> io::Result<Arc<dyn MsiVectors>> {
            let v = FakeVectors::new(count);
            *self.last.lock().unwrap() = Some(v.clone());
            Ok(v)
        }
        fn intx(&self, slot: u8, pin: u8) -> io::Result<Box<dyn LevelIrq>> {
            Ok(Box::new(FakeLevel {
                gsi: 16 + u32::from(slot) + u32::from(pin) - 1,
                trigger: EventFd::new(libc::EFD_NONBLOCK)?,
                resample: EventFd::new(libc::EFD_NONBLOCK)?,
                log: self.intx_log.clone(),
            }))
        }
    }
}
