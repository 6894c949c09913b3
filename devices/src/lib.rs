//! Guest-visible devices of vfvm and the small traits they stand on.
//!
//! Layering: this crate never touches KVM. Devices reach the guest through
//! three traits the VMM implements:
//! - [`bus::BusDevice`]: port-I/O and MMIO accesses dispatched by a [`bus::Bus`];
//! - [`interrupt::MsiVectors`]: MSI/MSI-X vectors (KVM irqfds with MSI routes);
//! - [`pci::BarMapper`]: placing a PCI BAR in the guest's address space
//!   (trapped, mapped straight from host memory, or an ioeventfd).

pub mod bus;
pub mod cmos;
pub mod interrupt;
pub mod pci;
pub mod power;
pub mod serial;
pub mod vfio;
pub mod virtio;
