//! The host function behind a passthrough device, as a small trait so the
//! device logic can be tested without VFIO, and its implementation over
//! `vfio_ioctls::VfioDevice`.

use std::io;
use std::ops::Range;
use std::os::unix::io::AsRawFd;

use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_IRQ_INFO_NORESIZE, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_TYPE,
};
use vfio_ioctls::{VfioDevice, VfioRegionInfoCap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::ioctl::ioctl_with_ptr;
use vmm_sys_util::ioctl_io_nr;

ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE as u32, VFIO_BASE + 10);

/// VFIO region index of the config space.
pub const CONFIG_REGION: u32 = vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
/// VFIO region index of the expansion ROM (read-only).
pub const ROM_REGION: u32 = vfio_bindings::bindings::vfio::VFIO_PCI_ROM_REGION_INDEX;

/// The interrupt kinds VFIO can deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// The legacy level-triggered pin (INTA#..INTD#).
    Intx,
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

/// A host mapping of part of a device region (or of a copy of a ROM);
/// unmapped on drop.
pub struct Mmap {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping (device memory or our ROM copy) is owned by this
// object; the pointer is only handed out as an address (to KVM) and
// unmapped once.
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

    /// A private read-only copy of `image` in `len` bytes (page multiple),
    /// padded with all-ones: an expansion ROM for a read-only slot.
    pub fn copy_of(image: &[u8], len: u64) -> io::Result<Self> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l >= image.len() && l > 0)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing; it overlaps no Rust object. The result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = Mmap { addr, len };
        // SAFETY: the mapping is `len` bytes, writable, and ours alone;
        // `image` is at most `len` bytes and cannot overlap it.
        unsafe {
            let dst = addr.cast::<u8>();
            std::ptr::copy_nonoverlapping(image.as_ptr(), dst, image.len());
            std::ptr::write_bytes(dst.add(image.len()), 0xff, len - image.len());
        }
        // SAFETY: changes the protection of our own mapping only.
        if unsafe { libc::mprotect(addr, len, libc::PROT_READ) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(map)
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
    /// How many interrupts of `kind` VFIO offers (INTx: 1 if the function
    /// has a pin, else 0).
    fn irq_count(&self, kind: IrqKind) -> u32;
    /// Whether MSI-X vectors can be added while MSI-X is on (VFIO's
    /// NORESIZE flag is clear; Linux 6.5 and later for most devices).
    fn msix_resizable(&self) -> bool;
    /// Makes vector `start + i` of `kind` signal `fds[i]` (`None`: no
    /// eventfd, the vector stays unused). Turns `kind` on, with
    /// `start + fds.len()` vectors, if it is off.
    fn set_irqs(&self, kind: IrqKind, start: u32, fds: &[Option<&EventFd>]) -> io::Result<()>;
    /// Turns `kind` off.
    fn disable_irq(&self, kind: IrqKind) -> io::Result<()>;
    /// INTx: VFIO masks the pin on each interrupt and unmasks it when `fd`
    /// is signalled.
    fn set_intx_unmask(&self, fd: &EventFd) -> io::Result<()>;
    /// Resets the function (FLR or whatever VFIO does for it), if it can be.
    fn reset(&self);
}

fn irq_index(kind: IrqKind) -> u32 {
    match kind {
        IrqKind::Intx => VFIO_PCI_INTX_IRQ_INDEX,
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

    fn irq_count(&self, kind: IrqKind) -> u32 {
        self.get_irq_info(irq_index(kind)).map_or(0, |i| i.count)
    }

    fn msix_resizable(&self) -> bool {
        self.get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .is_some_and(|i| i.flags & VFIO_IRQ_INFO_NORESIZE == 0)
    }

    fn set_irqs(&self, kind: IrqKind, start: u32, fds: &[Option<&EventFd>]) -> io::Result<()> {
        let data = fds.iter().map(|fd| fd.map_or(-1, |f| f.as_raw_fd()));
        set_irqs(
            self,
            VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index(kind),
            start,
            data,
        )
    }

    fn disable_irq(&self, kind: IrqKind) -> io::Result<()> {
        VfioDevice::disable_irq(self, irq_index(kind)).map_err(io::Error::other)
    }

    fn set_intx_unmask(&self, fd: &EventFd) -> io::Result<()> {
        let data = std::iter::once(fd.as_raw_fd());
        set_irqs(
            self,
            VFIO_IRQ_SET_ACTION_UNMASK,
            VFIO_PCI_INTX_IRQ_INDEX,
            0,
            data,
        )
    }

    fn reset(&self) {
        VfioDevice::reset(self);
    }
}

/// VFIO_DEVICE_SET_IRQS with eventfds (-1: none) for vectors `start..`.
/// vfio-ioctls only sets whole ranges from vector 0 with real eventfds.
fn set_irqs(
    device: &VfioDevice,
    action: u32,
    index: u32,
    start: u32,
    fds: impl ExactSizeIterator<Item = i32>,
) -> io::Result<()> {
    // struct vfio_irq_set: argsz, flags, index, start, count, then the data.
    const HEADER: usize = 5;
    let count = fds.len();
    let argsz = u32::try_from((HEADER + count) * 4)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut set: Vec<u32> = vec![
        argsz,
        VFIO_IRQ_SET_DATA_EVENTFD | action,
        index,
        start,
        count as u32,
    ];
    set.extend(fds.map(|fd| fd as u32));
    // SAFETY: `set` is a complete vfio_irq_set of `argsz` bytes (u32
    // fields, then `count` 32-bit eventfds) that outlives the call; the
    // kernel only reads it.
    let rc = unsafe { ioctl_with_ptr(device, VFIO_DEVICE_SET_IRQS(), set.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
