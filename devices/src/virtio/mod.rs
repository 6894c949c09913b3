//! Virtio devices and their PCI transport.
//!
//! A device ([`VirtioDevice`]) knows its queues, features and configuration
//! layout, and processes requests once activated; the transport
//! ([`pci::VirtioPciDevice`]) owns the guest-visible registers: feature
//! negotiation, the status state machine, queue setup and MSI-X. The split
//! keeps the device free of PCI and the transport free of any device type.
//!
//! Queue notifications are eventfds the device owns: the VMM turns them into
//! KVM ioeventfds ([`crate::pci::BarPart::Notify`]) and the device's I/O
//! threads wait on them, so a vCPU never waits for a request to complete and
//! the VMM's event thread never waits for a disk.

pub mod block;
pub mod pci;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Guest memory as devices hold it. The VMM's memory map never changes
/// after boot (no hotplug), so a shared immutable map is enough.
pub type Memory = Arc<GuestMemoryMmap>;

/// Feature bit: the device complies with virtio 1.0 or later.
pub const VIRTIO_F_VERSION_1: u32 = virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// Raises the guest interrupts of an activated device.
pub trait VirtioInterrupt: Send + Sync {
    /// Tells the guest that queue `queue` has new used buffers.
    fn signal_queue(&self, queue: usize);
}

/// Why a device refused to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivateError {
    /// The driver did not enable a queue the device needs.
    #[error("queue {0} was not enabled by the driver")]
    QueueNotReady(usize),
    /// The driver gave fewer or more queues than the device has.
    #[error("expected {expected} queues, got {got}")]
    QueueCount { expected: usize, got: usize },
    /// A queue's I/O thread could not start.
    #[error("cannot start the I/O thread of queue {0}: {1}")]
    Thread(usize, String),
}

/// A virtio device, as its transport sees it.
pub trait VirtioDevice: Send {
    /// The virtio device ID (2 for a block device).
    fn device_type(&self) -> u32;
    /// The maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The eventfd the guest signals to notify each queue.
    fn queue_events(&self) -> &[EventFd];
    /// The features the device offers.
    fn features(&self) -> u64;
    /// Reads the device-specific configuration at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration at `offset`.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with the driver's `features`, on `queues` (one per
    /// [`VirtioDevice::queue_max_sizes`] entry, validated against `mem`).
    fn activate(
        &mut self,
        mem: Memory,
        features: u64,
        queues: Vec<Queue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError>;
    /// Stops the device: when this returns no request is in flight and the
    /// device no longer touches guest memory. It can be activated again.
    fn reset(&mut self);
}
