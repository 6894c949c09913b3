//! [`VfioPciDevice`]: a host PCI function passed through to the guest.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use log::{error, warn};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioError};
use vmm_sys_util::eventfd::EventFd;

use super::bars::{self, BarError};
use super::caps::{self, CAP_ID_MSI, CAP_ID_MSIX, HIDDEN_EXTENDED};
use super::host::{HostFunction, IrqKind, Mmap, CONFIG_REGION};
use super::msi::{self, Msi};
use super::overlay::ConfigOverlay;
use crate::interrupt::{InterruptManager, MsiVectors};
use crate::pci::{BarInfo, BarMove, BarPart, Msix, PciConfig, PciDevice, MSIX_ENTRY_SIZE};

const CONFIG_MAX: usize = 4096;
const REG_BAR0: usize = 4;
const REG_BAR_END: usize = 10;
const COMMAND: Range<usize> = 0x04..0x06;
const ROM: usize = 0x30;
const INTERRUPT_LINE: usize = 0x3c;
const MSIX_CONTROL_ENABLE: u16 = 1 << 15;

/// Errors of opening a passthrough function; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VFIO group is open in another process.
    #[error("{device}: in use by another VM (its VFIO group is open elsewhere)")]
    InUse { device: String },
    /// VFIO refused the device.
    #[error("{device}: cannot open through VFIO: {source}")]
    Open {
        device: String,
        #[source]
        source: VfioError,
    },
    /// The config region is missing or tiny.
    #[error("{device}: VFIO config region is {len} bytes, expected at least 256")]
    ConfigSpace { device: String, len: u64 },
    /// A BAR cannot be offered.
    #[error("{device}: {source}")]
    Bar {
        device: String,
        #[source]
        source: BarError,
    },
    /// The MSI-X table or PBA is not inside a memory BAR.
    #[error(
        "{device}: MSI-X {what} at BAR{bar}+{offset:#x} lies outside the device's memory BARs"
    )]
    MsixPlacement {
        device: String,
        what: &'static str,
        bar: usize,
        offset: u64,
    },
    /// Only INTx: not supported.
    #[error("{device}: no MSI-X or MSI capability; INTx-only devices are not supported")]
    NoMsi { device: String },
    /// The VMM could not provide interrupt vectors.
    #[error("{device}: cannot get {count} MSI vectors: {source}")]
    Vectors {
        device: String,
        count: usize,
        #[source]
        source: std::io::Error,
    },
    /// A BAR piece cannot be mapped.
    #[error("{device}: cannot mmap BAR{index} at {offset:#x}+{len:#x}: {source}")]
    Mmap {
        device: String,
        index: usize,
        offset: u64,
        len: u64,
        #[source]
        source: std::io::Error,
    },
}

/// Where a trapped MSI-X structure sits: BAR index and byte range.
#[derive(Clone, Debug)]
struct Placement {
    bar: usize,
    range: Range<u64>,
}

impl Placement {
    fn contains(&self, bar: usize, offset: u64) -> bool {
        self.bar == bar && self.range.contains(&offset)
    }
}

struct MsixState {
    cap: usize,
    msix: Msix,
    vectors: Arc<dyn MsiVectors>,
    table: Placement,
    pba: Placement,
    on: bool,
}

struct MsiState {
    body: Range<usize>,
    msi: Msi,
    vectors: Arc<dyn MsiVectors>,
    active: usize,
}

struct Mapping {
    bar: usize,
    offset: u64,
    map: Mmap,
}

/// A host PCI function passed through with VFIO.
///
/// Config space is read from and written to the device except for the
/// bytes vfvm virtualizes: BARs (guest addresses, sizes from the host),
/// expansion ROM (hidden), interrupt line/pin (no INTx), the MSI-X and MSI
/// controls, and the next pointers that unlink hidden capabilities (MSI
/// when MSI-X exists; SR-IOV, ARI, ATS, PRI, PASID, resizable BAR).
/// BARs are mmap'd and mapped straight into the guest, except the pages
/// holding the MSI-X table and PBA, which are trapped and emulated.
pub struct VfioPciDevice<H: HostFunction = VfioDevice> {
    name: String,
    host: H,
    config_len: usize,
    overlay: ConfigOverlay,
    bars: PciConfig,
    host_sizes: [u64; 6],
    mappings: Vec<Mapping>,
    msix: Option<MsixState>,
    msi: Option<MsiState>,
}

impl VfioPciDevice<VfioDevice> {
    /// Opens the function at `sysfs_path` (`/sys/bus/pci/devices/DDDD:BB:SS.F`,
    /// bound to vfio-pci) in `container`, resets it and gets its vectors
    /// from `irq`.
    pub fn new(
        sysfs_path: &Path,
        container: Arc<VfioContainer>,
        irq: &dyn InterruptManager,
    ) -> Result<Self, Error> {
        let device = sysfs_path.file_name().map_or_else(
            || sysfs_path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let host =
            VfioDevice::new(sysfs_path, container, false).map_err(|source| match source {
                VfioError::OpenGroup(ref e, _) if e.raw_os_error() == Some(libc::EBUSY) => {
                    Error::InUse {
                        device: device.clone(),
                    }
                }
                source => Error::Open {
                    device: device.clone(),
                    source,
                },
            })?;
        Self::with_host(device, host, irq)
    }
}

fn le16(image: &[u8], at: usize) -> u16 {
    image
        .get(at..at + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

fn le32(image: &[u8], at: usize) -> u32 {
    image
        .get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<H: HostFunction> VfioPciDevice<H> {
    /// A passthrough device over `host`, named `name` in errors and logs.
    /// Resets the function first so the guest starts from a clean device.
    pub fn with_host(name: String, host: H, irq: &dyn InterruptManager) -> Result<Self, Error> {
        host.reset();
        let config_size = host.region(CONFIG_REGION).size;
        if config_size < 256 {
            return Err(Error::ConfigSpace {
                device: name,
                len: config_size,
            });
        }
        let config_len = (config_size as usize).min(CONFIG_MAX);
        let mut image = vec![0u8; config_len];
        host.read(CONFIG_REGION, 0, &mut image);

        let regs: [u32; 6] = std::array::from_fn(|i| le32(&image, 0x10 + 4 * i));
        let host_sizes: [u64; 6] = std::array::from_fn(|i| host.region(i as u32).size);
        let (bar_list, io) = bars::decode(regs, host_sizes).map_err(|source| Error::Bar {
            device: name.clone(),
            source,
        })?;
        for index in io {
            warn!("{name}: I/O BAR{index} is not supported; the guest sees it unimplemented");
        }
        let class = (image[0x0b], image[0x0a], image[0x09]);
        let mut bars = PciConfig::new(le16(&image, 0), le16(&image, 2), class, image[0x08]);
        for bar in &bar_list {
            bars.add_bar(*bar);
        }

        let mut overlay = ConfigOverlay::new(config_len);
        // No expansion ROM; no INTx (pin 0), the line is guest storage.
        overlay.emulate(ROM, &[0; 4], &[0; 4]);
        overlay.emulate(INTERRUPT_LINE, &[0, 0], &[0xff, 0]);

        let standard = caps::standard(&image);
        let find = |id| standard.iter().find(|c| c.id == id).map(|c| c.offset);
        let (msix_cap, msi_cap) = (find(CAP_ID_MSIX), find(CAP_ID_MSI));
        let has_msix = msix_cap.is_some();
        for (at, v) in caps::unlink_standard(&standard, |id| has_msix && id == CAP_ID_MSI) {
            overlay.emulate(at, &[v], &[0]);
        }
        let extended = caps::extended(&image);
        for (at, header) in
            caps::unlink_extended(&image, &extended, |id| HIDDEN_EXTENDED.contains(&id))
        {
            overlay.emulate(at, &header.to_le_bytes(), &[0; 4]);
        }

        let vectors = |count: usize| {
            irq.msi_vectors(count).map_err(|source| Error::Vectors {
                device: name.clone(),
                count,
                source,
            })
        };
        let (msix, msi) = match (msix_cap, msi_cap) {
            (Some(cap), _) => {
                let control = le16(&image, cap + 2);
                let count = usize::from(control & 0x7ff) + 1;
                let place = |what, at: usize, len: u64| {
                    let reg = le32(&image, at);
                    let (bar, offset) = ((reg & 7) as usize, u64::from(reg & !7));
                    let end = offset + len;
                    if bar_list.iter().any(|b| b.index == bar) && end <= host_sizes[bar] {
                        Ok(Placement {
                            bar,
                            range: offset..end,
                        })
                    } else {
                        Err(Error::MsixPlacement {
                            device: name.clone(),
                            what,
                            bar,
                            offset,
                        })
                    }
                };
                let table = place("table", cap + 4, count as u64 * MSIX_ENTRY_SIZE)?;
                let pba = place("PBA", cap + 8, (count as u64).div_ceil(64) * 8)?;
                let vectors = vectors(count)?;
                let msix = Msix::new(
                    vectors.clone(),
                    (table.bar as u8, table.range.start as u32),
                    (pba.bar as u8, pba.range.start as u32),
                );
                // Enable and function mask are ours; the table size is the device's.
                let value = [control as u8, (control >> 8) as u8 & 0x07];
                overlay.emulate(cap + 2, &value, &[0, 0xc0]);
                let state = MsixState {
                    cap,
                    msix,
                    vectors,
                    table,
                    pba,
                    on: false,
                };
                (Some(state), None)
            }
            (None, Some(cap)) => {
                let control = le16(&image, cap + 2);
                let vectors = vectors(msi::capacity(control))?;
                let msi = Msi::new(control, vectors.clone());
                let (value, writable) = msi.layout();
                overlay.emulate(cap + 2, &value, &writable);
                let body = cap + 2..cap + 2 + value.len();
                let state = MsiState {
                    body,
                    msi,
                    vectors,
                    active: 0,
                };
                (None, Some(state))
            }
            (None, None) => return Err(Error::NoMsi { device: name }),
        };

        let mut mappings = Vec::new();
        for bar in &bar_list {
            let index = bar.index;
            let trapped: Vec<Range<u64>> = msix
                .iter()
                .flat_map(|m| [&m.table, &m.pba])
                .filter(|p| p.bar == index)
                .map(|p| p.range.clone())
                .collect();
            let info = host.region(index as u32);
            for piece in bars::direct_pieces(host_sizes[index], &info.mappable, &trapped) {
                let len = piece.end - piece.start;
                let map = host
                    .mmap(index as u32, piece.start, len)
                    .map_err(|source| Error::Mmap {
                        device: name.clone(),
                        index,
                        offset: piece.start,
                        len,
                        source,
                    })?;
                mappings.push(Mapping {
                    bar: index,
                    offset: piece.start,
                    map,
                });
            }
        }

        Ok(VfioPciDevice {
            name,
            host,
            config_len,
            overlay,
            bars,
            host_sizes,
            mappings,
            msix,
            msi,
        })
    }

    fn update_msix(&mut self) {
        let Some(m) = self.msix.as_mut() else { return };
        let bytes = self.overlay.bytes(m.cap + 2..m.cap + 4);
        let control = u16::from_le_bytes([bytes[0], bytes[1]]);
        let enable = control & MSIX_CONTROL_ENABLE != 0;
        if enable && !m.on {
            // Every vector's eventfd goes to VFIO; whether it reaches the
            // guest is the irqfd's business (Msix connects it per entry).
            let fds: Vec<&EventFd> = (0..m.vectors.len())
                .filter_map(|i| m.vectors.notifier(i))
                .collect();
            match self.host.enable_irq(IrqKind::Msix, &fds) {
                Ok(()) => m.on = true,
                Err(e) => error!("{}: cannot enable MSI-X: {e}", self.name),
            }
        } else if !enable && m.on {
            if let Err(e) = self.host.disable_irq(IrqKind::Msix) {
                error!("{}: cannot disable MSI-X: {e}", self.name);
            }
            m.on = false;
        }
        m.msix.set_control(control);
    }

    fn update_msi(&mut self) {
        let Some(m) = self.msi.as_mut() else { return };
        let body = self.overlay.bytes(m.body.clone());
        let Some(count) = m.msi.update(&body) else {
            return;
        };
        // VFIO cannot change the vector count of an enabled MSI.
        if m.active > 0 {
            if let Err(e) = self.host.disable_irq(IrqKind::Msi) {
                error!("{}: cannot disable MSI: {e}", self.name);
            }
            m.active = 0;
        }
        if count > 0 {
            let fds: Vec<&EventFd> = (0..count).filter_map(|i| m.vectors.notifier(i)).collect();
            match self.host.enable_irq(IrqKind::Msi, &fds) {
                Ok(()) => m.active = count,
                Err(e) => error!("{}: cannot enable MSI: {e}", self.name),
            }
        }
    }

    fn bar_readable(&self, index: usize, offset: u64, len: usize) -> bool {
        self.host_sizes.get(index).is_some_and(|&size| {
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size)
        })
    }
}

impl<H: HostFunction> PciDevice for VfioPciDevice<H> {
    fn read_config(&mut self, reg: usize) -> u32 {
        let start = reg * 4;
        if start >= self.config_len {
            return 0;
        }
        if (REG_BAR0..REG_BAR_END).contains(&reg) {
            return self.bars.read(reg);
        }
        let mut data = [0u8; 4];
        self.host.read(CONFIG_REGION, start as u64, &mut data);
        self.overlay.merge_read(start, &mut data);
        u32::from_le_bytes(data)
    }

    fn write_config(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove> {
        let start = reg * 4 + offset as usize;
        if data.is_empty() || offset as usize + data.len() > 4 || start >= self.config_len {
            return Vec::new();
        }
        if (REG_BAR0..REG_BAR_END).contains(&reg) {
            return self.bars.write(reg, offset, data);
        }
        for run in self.overlay.write(start, data) {
            let at = (start + run.start) as u64;
            self.host.write(CONFIG_REGION, at, &data[run]);
        }
        let touches = |r: Range<usize>| start < r.end && r.start < start + data.len();
        let mut moves = Vec::new();
        if touches(COMMAND) {
            // Mirror the device's memory-decode bit so BAR moves follow it.
            let mut command = [0u8; 2];
            self.host
                .read(CONFIG_REGION, COMMAND.start as u64, &mut command);
            moves = self.bars.write(1, 0, &command);
        }
        if self
            .msix
            .as_ref()
            .is_some_and(|m| touches(m.cap + 2..m.cap + 4))
        {
            self.update_msix();
        }
        if self.msi.as_ref().is_some_and(|m| touches(m.body.clone())) {
            self.update_msi();
        }
        moves
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.bars.bars()
    }

    fn set_bar_address(&mut self, index: usize, addr: u64) {
        self.bars.set_bar_address(index, addr);
    }

    fn bar_parts(&self, index: usize) -> Vec<BarPart> {
        self.mappings
            .iter()
            .filter(|m| m.bar == index)
            .map(|m| BarPart::Direct {
                offset: m.offset,
                len: m.map.size(),
                host_addr: m.map.addr(),
            })
            .collect()
    }

    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if let Some(m) = &self.msix {
            if m.table.contains(index, offset) {
                return m.msix.read_table(offset - m.table.range.start, data);
            }
            if m.pba.contains(index, offset) {
                return m.msix.read_pba(offset - m.pba.range.start, data);
            }
        }
        if self.bar_readable(index, offset, data.len()) {
            self.host.read(index as u32, offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]) {
        if let Some(m) = &mut self.msix {
            if m.table.contains(index, offset) {
                return m.msix.write_table(offset - m.table.range.start, data);
            }
            if m.pba.contains(index, offset) {
                return; // read-only
            }
        }
        if self.bar_readable(index, offset, data.len()) {
            self.host.write(index as u32, offset, data);
        }
    }
}

impl<H: HostFunction> Drop for VfioPciDevice<H> {
    /// Quiesces the function for whoever gets it next: interrupts off, BAR
    /// mappings gone, then a reset (FLR). The VMM must have removed the
    /// BARs' KVM memory slots (or closed the VM) before dropping.
    fn drop(&mut self) {
        if self.msix.as_ref().is_some_and(|m| m.on) {
            if let Err(e) = self.host.disable_irq(IrqKind::Msix) {
                warn!("{}: cannot disable MSI-X: {e}", self.name);
            }
        }
        if self.msi.as_ref().is_some_and(|m| m.active > 0) {
            if let Err(e) = self.host.disable_irq(IrqKind::Msi) {
                warn!("{}: cannot disable MSI: {e}", self.name);
            }
        }
        self.mappings.clear();
        self.host.reset();
    }
}
