//! The host function behind a passthrough device, as a small trait so the
//! device logic can be tested without VFIO, and its implementation over
//! `vfio_ioctls::VfioDevice`.

use std::io;
use std::ops::Range;
use std::os::unix::io::AsRawFd;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_ioctls::{VfioDevice, VfioRegionInfoCap};
use vmm_sys_util::eventfd::EventFd;

/// VFIO region index of the config space.
pub const CONFIG_REGION: u32 = vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;

/// Message-signalled interrupt kinds VFIO can deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// MSI (capability 0x05).
    Msi,
    /// MSI-X (capability 0x11).
    Msix,
}

/// What VFIO says about a region (a BAR or the config space).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Size in bytes (0: the region does not exist).
    pub size: u64,
    /// Parts that may be mmap'd (offsets in the region).
    pub mappable: Vec<Range<u64>>,
}

/// A host mapping of part of a device region; unmapped on drop.
pub struct Mmap {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain device memory owned by this object; the
// pointer is only handed out as an address (to KVM) and unmapped once.
unsafe impl Send for Mmap {}
// SAFETY: as above; `&Mmap` only exposes the address and length.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at `offset`, shared and read/write.
    pub fn new(fd: &impl AsRawFd, offset: u64, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh mapping at an address of the kernel's choosing;
        // it overlaps no Rust object. The result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { addr, len })
    }

    /// The host virtual address of the mapping.
    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        self.len as u64
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` are exactly what mmap returned and nothing
        // else unmaps them.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// The operations a passthrough device needs from its host function.
pub trait HostFunction: Send {
    /// Region `index` (0-5: BARs, [`CONFIG_REGION`]: config space).
    fn region(&self, index: u32) -> RegionInfo;
    /// Reads `data.len()` bytes at `offset` of region `index`.
    fn read(&self, index: u32, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` of region `index`.
    fn write(&self, index: u32, offset: u64, data: &[u8]);
    /// Maps `len` bytes at `offset` of region `index` into our address space.
    fn mmap(&self, index: u32, offset: u64, len: u64) -> io::Result<Mmap>;
    /// Makes the device signal `fds` (vector i: `fds[i]`) for `kind`.
    fn enable_irq(&self, kind: IrqKind, fds: &[&EventFd]) -> io::Result<()>;
    /// Stops signalling for `kind`.
    fn disable_irq(&self, kind: IrqKind) -> io::Result<()>;
    /// Resets the function (FLR or whatever VFIO does for it), if it can be.
    fn reset(&self);
}

fn irq_index(kind: IrqKind) -> u32 {
    match kind {
        IrqKind::Msi => VFIO_PCI_MSI_IRQ_INDEX,
        IrqKind::Msix => VFIO_PCI_MSIX_IRQ_INDEX,
    }
}

impl HostFunction for VfioDevice {
    fn region(&self, index: u32) -> RegionInfo {
        let size = self.get_region_size(index);
        let sparse = self
            .get_region_caps(index)
            .into_iter()
            .find_map(|c| match c {
                VfioRegionInfoCap::SparseMmap(s) => Some(s.areas),
                _ => None,
            });
        let mappable = if self.get_region_flags(index) & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            Vec::new()
        } else if let Some(areas) = sparse {
            areas.iter().map(|a| a.offset..a.offset + a.size).collect()
        } else {
            std::iter::once(0..size).collect()
        };
        RegionInfo { size, mappable }
    }

    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        self.region_read(index, data, offset);
    }

    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        self.region_write(index, data, offset);
    }

    fn mmap(&self, index: u32, offset: u64, len: u64) -> io::Result<Mmap> {
        Mmap::new(self, self.get_region_offset(index) + offset, len)
    }

    fn enable_irq(&self, kind: IrqKind, fds: &[&EventFd]) -> io::Result<()> {
        VfioDevice::enable_irq(self, irq_index(kind), fds.to_vec()).map_err(io::Error::other)
    }

    fn disable_irq(&self, kind: IrqKind) -> io::Result<()> {
        VfioDevice::disable_irq(self, irq_index(kind)).map_err(io::Error::other)
    }

    fn reset(&self) {
        VfioDevice::reset(self);
    }
}
