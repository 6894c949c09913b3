//! [`VfioPciDevice`]: a host PCI function passed through to the guest.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use log::{error, warn};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioError};
use vmm_sys_util::eventfd::EventFd;

use super::bars::{self, BarError};
use super::caps::{self, CAP_ID_MSI, CAP_ID_MSIX, HIDDEN_EXTENDED};
use super::host::{HostFunction, IrqKind, Mmap, CONFIG_REGION, ROM_REGION};
use super::msi::{self, Msi};
use super::overlay::ConfigOverlay;
use super::{le16, le32};
use crate::interrupt::{InterruptManager, LevelIrq, MsiVectors};
use crate::pci::{
    BarInfo, BarKind, BarMove, BarPart, Msix, PciConfig, PciDevice, MSIX_ENTRY_SIZE, ROM_BAR,
};

const CONFIG_MAX: usize = 4096;
const REG_BAR0: usize = 4;
const REG_BAR_END: usize = 10;
const REG_ROM: usize = 12;
const COMMAND: Range<usize> = 0x04..0x06;
const HEADER_TYPE: usize = 0x0e;
const HEADER_MULTI_FUNCTION: u8 = 0x80;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// The smallest expansion ROM BAR (its address bits start at bit 11).
const ROM_MIN_SIZE: u64 = 2048;
/// The largest ROM vfvm offers (the PCI Firmware spec's limit).
pub const ROM_MAX_SIZE: u64 = 16 << 20;

/// Where the guest's expansion ROM comes from (`rom=` of `-s passthru`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Rom {
    /// The device's own ROM, read from VFIO's ROM region, if it has one.
    #[default]
    Device,
    /// No ROM (`rom=off`).
    Off,
    /// This image instead (`rom=FILE`).
    Image(Vec<u8>),
}

/// How a passthrough function is presented.
#[derive(Clone, Debug, Default)]
pub struct VfioOptions {
    /// Guest slot, which decides the guest interrupt of its INTx pin.
    pub slot: u8,
    /// Its expansion ROM.
    pub rom: Rom,
}

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
    /// The VMM could not provide the INTx pin.
    #[error("{device}: cannot wire its INTx pin: {source}")]
    Intx {
        device: String,
        #[source]
        source: std::io::Error,
    },
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
    /// VFIO's MSI-X is on with this many vectors allocated (0: off).
    allocated: u32,
    /// The vectors whose eventfds VFIO has: those the guest has unmasked
    /// since MSI-X was turned on.
    given: Vec<bool>,
    resizable: bool,
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

struct IntxState {
    line: Box<dyn LevelIrq>,
    /// VFIO signals the line and the line is connected to the guest.
    on: bool,
}

/// A host PCI function passed through with VFIO.
///
/// Config space is read from and written to the device except for the
/// bytes vfvm virtualizes: BARs and the expansion ROM BAR (guest
/// addresses, sizes from the host), the interrupt line (the guest interrupt
/// the INTx pin raises), the multi-function bit (the guest slot's, not the
/// host's), the MSI-X and MSI controls, and the next pointers that unlink
/// hidden capabilities (MSI when MSI-X exists; SR-IOV, ARI, ATS, PRI,
/// PASID, resizable BAR). Memory BARs are mmap'd and mapped straight into
/// the guest, except the pages holding the MSI-X table and PBA, which are
/// trapped and emulated; I/O BARs are trapped and forwarded to VFIO; the
/// ROM is read once and mapped from a read-only copy.
///
/// Interrupts: INTx is on (a resampling irqfd, VFIO unmasking on the
/// guest's EOI) whenever neither MSI nor MSI-X is; VFIO allows one kind
/// at a time.
pub struct VfioPciDevice<H: HostFunction = VfioDevice> {
    name: String,
    host: H,
    config_len: usize,
    overlay: ConfigOverlay,
    bars: PciConfig,
    host_sizes: [u64; 6],
    mappings: Vec<Mapping>,
    rom: Option<Vec<u8>>,
    /// The ROM for a read-only slot, when it is at least a page.
    rom_map: Option<Mmap>,
    intx: Option<IntxState>,
    msix: Option<MsixState>,
    msi: Option<MsiState>,
}

impl VfioPciDevice<VfioDevice> {
    /// Opens the function at `sysfs_path` (`/sys/bus/pci/devices/DDDD:BB:SS.F`,
    /// bound to vfio-pci) in `container` and gets its vectors and INTx pin
    /// from `irq`. Opening it resets it: see [`Self::with_host`].
    pub fn new(
        sysfs_path: &Path,
        container: Arc<VfioContainer>,
        irq: &dyn InterruptManager,
        options: VfioOptions,
    ) -> Result<Self, Error> {
        let host = Self::open(sysfs_path, container)?;
        Self::opened(sysfs_path, host, irq, options)
    }

    /// Opens the function at `sysfs_path` in `container`, for
    /// [`Self::opened`] later: the kernel's reset of the function (an FLR
    /// and PCIe's 100 ms after it) then need not wait for the VM.
    pub fn open(sysfs_path: &Path, container: Arc<VfioContainer>) -> Result<VfioDevice, Error> {
        VfioDevice::new(sysfs_path, container, false).map_err(|source| {
            let device = device_name(sysfs_path);
            match source {
                VfioError::OpenGroup(ref e, _) if e.raw_os_error() == Some(libc::EBUSY) => {
                    Error::InUse { device }
                }
                source => Error::Open { device, source },
            }
        })
    }

    /// The device over `host`, the function [`Self::open`] opened at
    /// `sysfs_path`, with its vectors and INTx pin from `irq`.
    pub fn opened(
        sysfs_path: &Path,
        host: VfioDevice,
        irq: &dyn InterruptManager,
        options: VfioOptions,
    ) -> Result<Self, Error> {
        Self::with_host(device_name(sysfs_path), host, irq, options)
    }
}

/// The PCI address at the end of a sysfs path, for errors and logs.
fn device_name(sysfs_path: &Path) -> String {
    sysfs_path.file_name().map_or_else(
        || sysfs_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The guest's ROM image: `rom`'s, or the device's own from VFIO's ROM
/// region (none if it has none, or one larger than [`ROM_MAX_SIZE`]).
fn rom_image(name: &str, host: &impl HostFunction, rom: Rom) -> Option<Vec<u8>> {
    match rom {
        Rom::Off => None,
        Rom::Image(image) => Some(image),
        Rom::Device => {
            let size = host.region(ROM_REGION).size;
            if size > ROM_MAX_SIZE {
                warn!("{name}: its {size:#x}-byte ROM is too large to offer; the guest sees none");
                return None;
            }
            let mut image = vec![0u8; size as usize];
            (size > 0).then(|| {
                host.read(ROM_REGION, 0, &mut image);
                image
            })
        }
    }
}

impl<H: HostFunction> VfioPciDevice<H> {
    /// A passthrough device over `host`, named `name` in errors and logs.
    /// The guest starts from a clean function without a reset here: vfio-pci
    /// resets it when its device file is first opened (`vfio_pci_core_enable`
    /// tries a function reset, and a device without one fails our reset
    /// too), so another would only add an FLR, with the 100 ms wait PCIe
    /// requires after it, to every start (resources/BENCH.md, issue 13).
    pub fn with_host(
        name: String,
        host: H,
        irq: &dyn InterruptManager,
        options: VfioOptions,
    ) -> Result<Self, Error> {
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
        let bar_list = bars::decode(regs, host_sizes).map_err(|source| Error::Bar {
            device: name.clone(),
            source,
        })?;
        let class = (image[0x0b], image[0x0a], image[0x09]);
        let mut bars = PciConfig::new(le16(&image, 0), le16(&image, 2), class, image[0x08]);
        for bar in &bar_list {
            bars.add_bar(*bar);
        }
        let rom = rom_image(&name, &host, options.rom);
        let mut rom_map = None;
        if let Some(image) = &rom {
            let size = (image.len() as u64).next_power_of_two().max(ROM_MIN_SIZE);
            bars.add_bar(BarInfo {
                index: ROM_BAR,
                size,
                kind: BarKind::Mem32,
                prefetchable: false,
            });
            // Mapped read-only, the guest reads it without exits (a 256 KiB
            // ROM read through sysfs is 64K reads); a sub-page ROM stays
            // trapped.
            if size >= bars::PAGE_SIZE {
                rom_map = Mmap::copy_of(image, size)
                    .inspect_err(|e| warn!("{name}: ROM reads are trapped: cannot copy it: {e}"))
                    .ok();
            }
        }

        let mut overlay = ConfigOverlay::new(config_len);
        // The guest slot decides whether there are other functions.
        overlay.emulate(
            HEADER_TYPE,
            &[image[HEADER_TYPE] & !HEADER_MULTI_FUNCTION],
            &[0],
        );
        let pin = image[INTERRUPT_PIN];
        let intx = if (1..=4).contains(&pin) && host.irq_count(IrqKind::Intx) > 0 {
            let line = irq.intx(options.slot, pin).map_err(|source| Error::Intx {
                device: name.clone(),
                source,
            })?;
            Some(IntxState { line, on: false })
        } else {
            None
        };
        // The line is the guest interrupt the pin raises, as firmware would
        // program it (0xff: none); the guest may overwrite it.
        let (line, pin) = match &intx {
            Some(i) => (u8::try_from(i.line.gsi()).unwrap_or(0xff), pin),
            None => (0xff, 0),
        };
        overlay.emulate(INTERRUPT_LINE, &[line, pin], &[0xff, 0]);

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
                    let memory = |b: &BarInfo| b.index == bar && b.kind != BarKind::Io;
                    if bar_list.iter().any(memory) && end <= host_sizes[bar] {
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
                    allocated: 0,
                    given: vec![false; count],
                    resizable: host.msix_resizable(),
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
            (None, None) => (None, None),
        };

        let mut mappings = Vec::new();
        for bar in bar_list.iter().filter(|b| b.kind != BarKind::Io) {
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

        let mut device = VfioPciDevice {
            name,
            host,
            config_len,
            overlay,
            bars,
            host_sizes,
            mappings,
            rom,
            rom_map,
            intx,
            msix,
            msi,
        };
        device.intx_on();
        Ok(device)
    }

    /// Wires INTx: the line connected to the guest, VFIO signalling it and
    /// unmasking the device on the line's resample signal.
    fn intx_on(&mut self) {
        let Some(i) = self.intx.as_mut() else { return };
        if i.on {
            return;
        }
        let result = i
            .line
            .set_enabled(true)
            .and_then(|()| {
                let trigger = i.line.trigger();
                self.host.set_irqs(IrqKind::Intx, 0, &[Some(trigger)])
            })
            .and_then(|()| self.host.set_intx_unmask(i.line.resample()));
        match result {
            Ok(()) => i.on = true,
            Err(e) => error!("{}: cannot enable INTx: {e}", self.name),
        }
    }

    /// Unwires INTx, as VFIO requires before MSI or MSI-X.
    fn intx_off(&mut self) {
        let Some(i) = self.intx.as_mut() else { return };
        if !i.on {
            return;
        }
        if let Err(e) = self.host.disable_irq(IrqKind::Intx) {
            error!("{}: cannot disable INTx: {e}", self.name);
        }
        if let Err(e) = i.line.set_enabled(false) {
            error!("{}: cannot disconnect INTx: {e}", self.name);
        }
        i.on = false;
    }

    fn update_msix(&mut self) {
        let Some(m) = self.msix.as_mut() else { return };
        let bytes = self.overlay.bytes(m.cap + 2..m.cap + 4);
        let control = u16::from_le_bytes([bytes[0], bytes[1]]);
        m.msix.set_control(control);
        if control & MSIX_CONTROL_ENABLE == 0 && m.allocated > 0 {
            if let Err(e) = self.host.disable_irq(IrqKind::Msix) {
                error!("{}: cannot disable MSI-X: {e}", self.name);
            }
            m.allocated = 0;
            m.given.fill(false);
            self.intx_on();
        }
        self.sync_msix_vectors();
    }

    /// Hands VFIO the eventfds of the vectors the guest has unmasked, and
    /// only those: a VF with a large table would otherwise take that many
    /// host vectors. Whether a signal reaches the guest stays the irqfd's
    /// business (Msix connects it per entry), so a vector once given
    /// stays with VFIO until MSI-X is turned off.
    fn sync_msix_vectors(&mut self) {
        if self
            .msix
            .as_ref()
            .is_some_and(|m| m.msix.enabled() && m.allocated == 0)
        {
            self.intx_off();
        }
        let Some(m) = self.msix.as_mut() else { return };
        if !m.msix.enabled() {
            return;
        }
        let wanted: Vec<usize> = (0..m.given.len())
            .filter(|&i| m.msix.is_live(i) && !m.given[i])
            .collect();
        if m.allocated > 0 && wanted.is_empty() {
            return;
        }
        let fd = |i: usize| m.vectors.notifier(i);
        let result = match wanted.last() {
            // Beyond what a fixed-size MSI-X has (or its first vectors):
            // VFIO must turn it off and on again with more vectors.
            Some(&last) if (last as u32) >= m.allocated && (m.allocated == 0 || !m.resizable) => {
                if m.allocated > 0 {
                    if let Err(e) = self.host.disable_irq(IrqKind::Msix) {
                        error!("{}: cannot resize MSI-X: {e}", self.name);
                    }
                }
                let fds: Vec<Option<&EventFd>> = (0..=last)
                    .map(|i| (m.given[i] || wanted.contains(&i)).then(|| fd(i)).flatten())
                    .collect();
                self.host
                    .set_irqs(IrqKind::Msix, 0, &fds)
                    .map(|()| m.allocated = last as u32 + 1)
            }
            Some(_) => wanted.iter().try_for_each(|&i| {
                self.host
                    .set_irqs(IrqKind::Msix, i as u32, &[fd(i)])
                    .map(|()| m.allocated = m.allocated.max(i as u32 + 1))
            }),
            // The guest enabled MSI-X with every vector masked: the device
            // goes into MSI-X mode with one vector and no eventfd, as the
            // guest sees it (PF/VF mailboxes may depend on the mode).
            None => self
                .host
                .set_irqs(IrqKind::Msix, 0, &[None])
                .map(|()| m.allocated = 1),
        };
        match result {
            Ok(()) => {
                for i in wanted {
                    m.given[i] = true;
                }
            }
            Err(e) => error!("{}: cannot enable MSI-X vectors: {e}", self.name),
        }
    }

    fn update_msi(&mut self) {
        let Some(m) = self.msi.as_mut() else { return };
        let body = self.overlay.bytes(m.body.clone());
        let Some(count) = m.msi.update(&body) else {
            return;
        };
        if count > 0 {
            self.intx_off();
        }
        let Some(m) = self.msi.as_mut() else { return };
        // VFIO cannot change the vector count of an enabled MSI.
        if m.active > 0 {
            if let Err(e) = self.host.disable_irq(IrqKind::Msi) {
                error!("{}: cannot disable MSI: {e}", self.name);
            }
            m.active = 0;
        }
        if count > 0 {
            let fds: Vec<Option<&EventFd>> = (0..count).map(|i| m.vectors.notifier(i)).collect();
            match self.host.set_irqs(IrqKind::Msi, 0, &fds) {
                Ok(()) => m.active = count,
                Err(e) => error!("{}: cannot enable MSI: {e}", self.name),
            }
        } else {
            self.intx_on();
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
        if (REG_BAR0..REG_BAR_END).contains(&reg) || reg == REG_ROM {
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
        if (REG_BAR0..REG_BAR_END).contains(&reg) || reg == REG_ROM {
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

    fn set_bar_mapped(&mut self, index: usize, at: Option<u64>) {
        self.bars.set_mapped(index, at);
    }

    fn bar_parts(&self, index: usize) -> Vec<BarPart> {
        let direct = |offset, map: &Mmap, readonly| BarPart::Direct {
            offset,
            len: map.size(),
            host_addr: map.addr(),
            readonly,
        };
        if index == ROM_BAR {
            return self.rom_map.iter().map(|m| direct(0, m, true)).collect();
        }
        self.mappings
            .iter()
            .filter(|m| m.bar == index)
            .map(|m| direct(m.offset, &m.map, false))
            .collect()
    }

    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if index == ROM_BAR {
            // A sub-page ROM (larger ones are mapped read-only). Past the
            // image (the BAR is a power of two) reads as all-ones.
            data.fill(0xff);
            if let Some(rom) = &self.rom {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(rom.len());
                let end = start.saturating_add(data.len()).min(rom.len());
                data[..end - start].copy_from_slice(&rom[start..end]);
            }
            return;
        }
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
                m.msix.write_table(offset - m.table.range.start, data);
                return self.sync_msix_vectors();
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
        self.intx_off();
        if self.msix.as_ref().is_some_and(|m| m.allocated > 0) {
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
