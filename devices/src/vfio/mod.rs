//! VFIO PCI passthrough: a host function (an SR-IOV VF, a whole PF, any
//! function bound to vfio-pci) presented to the guest as a
//! [`crate::pci::PciDevice`], with its memory and I/O BARs, expansion ROM,
//! INTx, MSI and MSI-X.
//!
//! Modules: [`caps`] walks and hides capabilities, [`bars`] decodes host
//! BARs and splits them into direct-mapped and trapped pieces, `overlay`
//! virtualizes config-space bytes, `msi` emulates the MSI capability
//! (MSI-X reuses [`crate::pci::Msix`]), [`host`] is the small trait over the
//! VFIO device (faked in tests), and `device` ties them together.
//!
//! The VMM's order of operations:
//! 1. create the `VfioContainer` with the KVM VFIO device handle;
//! 2. [`VfioPciDevice::new`] for each function (the first one attaches its
//!    group and sets the container's IOMMU type);
//! 3. only then DMA-map all guest RAM once into the container
//!    (`VfioContainer::vfio_map_guest_memory`): type1 mapping needs the IOMMU
//!    type set by step 2;
//! 4. place the BARs (`bars`, `set_bar_address`, `bar_parts` through the
//!    `BarMapper`) and run the guest;
//! 5. on exit remove the BARs' memory slots, drop the devices (interrupts
//!    off, unmap, reset), then the container.

pub mod bars;
pub mod caps;
mod device;
#[cfg(any(test, feature = "fuzzing"))]
#[allow(clippy::single_range_in_vec_init)]
pub mod fake;
pub mod host;
mod msi;
mod overlay;
#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests;

pub use device::{Error, Rom, VfioOptions, VfioPciDevice, ROM_MAX_SIZE};

/// The little-endian u16 at `at` in a config-space image; 0 past its end.
fn le16(image: &[u8], at: usize) -> u16 {
    image
        .get(at..at + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

/// The little-endian u32 at `at` in a config-space image; 0 past its end.
fn le32(image: &[u8], at: usize) -> u32 {
    image
        .get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
pub use host::{HostFunction, IrqKind, Mmap, RegionInfo};
