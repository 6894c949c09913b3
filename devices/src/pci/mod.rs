//! PCI: the device trait, config space, MSI-X, the root complex and the
//! simple bridge functions.
//!
//! A PCI function implements [`PciDevice`]. It describes its BARs
//! declaratively ([`BarInfo`], [`BarPart`]); the VMM's [`BarMapper`] makes
//! them real (an MMIO trap, a KVM memory slot, an ioeventfd), both when the
//! VM is built and when the guest moves a BAR.

mod bridge;
mod config;
mod msix;
mod root;

use std::io;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

pub use bridge::{HostBridge, IsaBridge};
pub use config::{BarMove, PciConfig};
pub use msix::{Msix, MSIX_ENTRY_SIZE};
pub use root::{ConfigIo, ConfigMmio, Error, PciRoot, CONFIG_IO_LEN};

/// The kind of address space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR (placed below 4 GiB).
    Mem32,
    /// 64-bit memory BAR (occupies two BAR registers).
    Mem64,
}

/// A BAR a device needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR register index (0..=5).
    pub index: usize,
    /// Size in bytes: a power of two, at least 4 KiB for memory BARs we emulate.
    pub size: u64,
    /// 32- or 64-bit.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
}

/// How one piece of a BAR is presented to the guest. Offsets are relative to
/// the BAR's base; pieces do not overlap; parts of the BAR not covered by any
/// piece are trapped.
#[derive(Debug)]
pub enum BarPart {
    /// Host memory mapped straight into the guest (a VFIO BAR's mmap).
    Direct {
        /// Offset in the BAR.
        offset: u64,
        /// Length in bytes (page multiple).
        len: u64,
        /// Userspace address of the host mapping.
        host_addr: u64,
    },
    /// A guest write of `len` bytes at `offset` signals `event` in the
    /// kernel, without an exit to userspace (a virtio queue notification).
    Notify {
        /// Offset in the BAR.
        offset: u64,
        /// Access size matched (2 for virtio notifications).
        len: u32,
        /// The eventfd signalled.
        event: EventFd,
    },
}

/// A PCI function as the root complex sees it.
pub trait PciDevice: Send {
    /// Reads config-space dword `reg` (0..1024).
    fn read_config(&mut self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` of dword `reg`;
    /// returns the BARs the write moved.
    fn write_config(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove>;
    /// The BARs to allocate.
    fn bars(&self) -> Vec<BarInfo>;
    /// Programs BAR `index` with the address the VMM allocated.
    fn set_bar_address(&mut self, index: usize, addr: u64);
    /// The mapped and notify pieces of BAR `index` (the rest is trapped).
    fn bar_parts(&self, index: usize) -> Vec<BarPart>;
    /// A trapped read at `offset` in BAR `index`.
    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]);
    /// A trapped write at `offset` in BAR `index`.
    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]);
}

/// A shared PCI function.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Places BARs in the guest's address space; implemented by the VMM.
pub trait BarMapper: Send + Sync {
    /// Makes BAR `bar` of `device` (of `size` bytes, made of `parts`)
    /// visible at guest address `base`.
    fn map(
        &self,
        device: &SharedPciDevice,
        bar: usize,
        base: u64,
        size: u64,
        parts: &[BarPart],
    ) -> io::Result<()>;
    /// Undoes [`BarMapper::map`] for the BAR at `base`.
    fn unmap(&self, base: u64, size: u64, parts: &[BarPart]) -> io::Result<()>;
}
