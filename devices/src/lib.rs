//! Guest-visible devices of vfvm and the small traits they stand on.
//!
//! Layering: this crate never touches KVM. Devices reach the guest through
//! three traits the VMM implements:
//! - [`bus::BusDevice`]: port-I/O and MMIO accesses dispatched by a [`bus::Bus`];
//! - [`interrupt::MsiVectors`]: MSI/MSI-X vectors (KVM irqfds with MSI routes);
//! - [`pci::BarMapper`]: placing a PCI BAR in the guest's address space
//!   (trapped, mapped straight from host memory, or an ioeventfd).
//!
//! Every device reports its counters through [`metrics::Metrics`].

pub mod acpi;
pub mod bus;
pub mod cmos;
pub mod interrupt;
pub mod metrics;
pub mod pci;
pub mod power;
pub mod serial;
pub mod vfio;
pub mod virtio;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starts a named thread running the closure: how devices start their
/// threads, so the VMM can put each in its sandbox first.
pub type Spawner =
    Arc<dyn Fn(String, Box<dyn FnOnce() + Send>) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// A [`Spawner`] of plain threads (unit tests, tools).
pub fn plain_spawner() -> Spawner {
    Arc::new(|name, f| std::thread::Builder::new().name(name).spawn(f))
}
