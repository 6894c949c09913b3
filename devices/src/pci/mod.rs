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
#[cfg(any(test, feature = "fuzzing"))]
pub mod testing;

use std::io;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

pub use bridge::{HostBridge, IsaBridge};
pub use config::{BarMove, PciConfig, ROM_BAR};
pub use msix::{Msix, MSIX_ENTRY_SIZE};
pub use root::{ConfigIo, ConfigMmio, Error, PciRoot, CONFIG_IO_LEN};

/// The kind of address space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports (trapped on the port-I/O bus).
    Io,
    /// 32-bit memory BAR (placed below 4 GiB).
    Mem32,
    /// 64-bit memory BAR (occupies two BAR registers).
    Mem64,
}

/// A BAR a device needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR register index (0..=5), or [`ROM_BAR`] for the expansion ROM.
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
    /// Host memory mapped straight into the guest (a VFIO BAR's mmap, or
    /// a copy of an expansion ROM).
    Direct {
        /// Offset in the BAR.
        offset: u64,
        /// Length in bytes (page multiple).
        len: u64,
        /// Userspace address of the host mapping.
        host_addr: u64,
        /// The guest may only read it; its writes are dropped.
        readonly: bool,
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
    /// Programs BAR `index` with the address the VMM allocated (and
    /// mapped, or is about to map).
    fn set_bar_address(&mut self, index: usize, addr: u64);
    /// Records where BAR `index` is mapped after the VMM carried out a
    /// [`BarMove`] the device reported (`None`: not mapped).
    fn set_bar_mapped(&mut self, index: usize, at: Option<u64>);
    /// The mapped and notify pieces of BAR `index` (the rest is trapped).
    fn bar_parts(&self, index: usize) -> Vec<BarPart>;
    /// A trapped read at `offset` in BAR `index`.
    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]);
    /// A trapped write at `offset` in BAR `index`.
    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]);
}

/// A shared PCI function.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// A BAR at one place in the guest's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRange {
    /// BAR index ([`ROM_BAR`] for the expansion ROM).
    pub index: usize,
    /// Port I/O or memory.
    pub kind: BarKind,
    /// Guest address (port number for I/O).
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Places BARs in the guest's address space; implemented by the VMM.
///
/// Both calls are all-or-nothing: on an error nothing of the BAR is left
/// half mapped (or half unmapped).
pub trait BarMapper: Send + Sync {
    /// Makes `bar` of `device` (made of `parts`) visible.
    fn map(&self, device: &SharedPciDevice, bar: BarRange, parts: &[BarPart]) -> io::Result<()>;
    /// Undoes [`BarMapper::map`].
    fn unmap(&self, bar: BarRange, parts: &[BarPart]) -> io::Result<()>;
}
