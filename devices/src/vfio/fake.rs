//! A fake host function for [`VfioPciDevice`]: regions as byte arrays
//! and a log of the VFIO calls, with an 82576 VF and QEMU's e1000 as
//! examples. Used by the unit tests and, with the `fuzzing` feature, by
//! the fuzz target `vfio_config` (fuzz/).

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex, OnceLock};

use vmm_sys_util::eventfd::EventFd;

use super::host::{HostFunction, IrqKind, Mmap, RegionInfo};
use super::{Rom, VfioOptions};

/// A host function with byte arrays for regions and a log of VFIO calls.
pub struct FakeHost {
    pub regions: Mutex<Vec<Vec<u8>>>,
    pub mappable: [bool; 6],
    pub intx: bool,
    pub resizable: bool,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl FakeHost {
    fn log(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

impl HostFunction for FakeHost {
    fn region(&self, index: u32) -> RegionInfo {
        let size = self.regions.lock().unwrap()[index as usize].len() as u64;
        let mappable = match self.mappable.get(index as usize) {
            Some(true) => vec![0..size],
            _ => Vec::new(),
        };
        RegionInfo { size, mappable }
    }
    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        let regions = self.regions.lock().unwrap();
        let at = offset as usize;
        data.copy_from_slice(&regions[index as usize][at..at + data.len()]);
    }
    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        let at = offset as usize;
        self.regions.lock().unwrap()[index as usize][at..at + data.len()].copy_from_slice(data);
        self.log(format!("write {index} {offset:#x} {data:x?}"));
    }
    fn mmap(&self, _index: u32, offset: u64, len: u64) -> io::Result<Mmap> {
        if offset.checked_add(len).is_none_or(|end| end > BAR_FILE_LEN) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        Mmap::new(bar_file()?, offset, len)
    }
    fn irq_count(&self, kind: IrqKind) -> u32 {
        match kind {
            IrqKind::Intx => u32::from(self.intx),
            _ => 1,
        }
    }
    fn msix_resizable(&self) -> bool {
        self.resizable
    }
    /// Logged as `set KIND START [x-x]`: x for an eventfd, - for none.
    fn set_irqs(&self, kind: IrqKind, start: u32, fds: &[Option<&EventFd>]) -> io::Result<()> {
        let fds: String = fds
            .iter()
            .map(|f| if f.is_some() { 'x' } else { '-' })
            .collect();
        self.log(format!("set {kind:?} {start} [{fds}]"));
        Ok(())
    }
    fn set_intx_unmask(&self, _: &EventFd) -> io::Result<()> {
        self.log("intx unmask fd".to_string());
        Ok(())
    }
    fn disable_irq(&self, kind: IrqKind) -> io::Result<()> {
        self.log(format!("disable {kind:?}"));
        Ok(())
    }
    fn reset(&self) {
        self.log("reset".to_string());
    }
}

/// The size of [`bar_file`]: more than any fake region.
const BAR_FILE_LEN: u64 = 16 << 20;

/// The in-memory file behind every fake BAR mapping. A device only hands
/// the address of its mappings on (the guest would use them), so they may
/// share one; and one file for all means no file system work or new
/// descriptor per mapping, which matters to the fuzz target building a
/// device per input.
fn bar_file() -> io::Result<&'static File> {
    static FILE: OnceLock<File> = OnceLock::new();
    if let Some(file) = FILE.get() {
        return Ok(file);
    }
    // SAFETY: memfd_create(2) reads the NUL-terminated name and returns a
    // new descriptor or -1, which is checked.
    let fd = unsafe { libc::memfd_create(c"vfvm-fake-bars".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(BAR_FILE_LEN)?;
    Ok(FILE.get_or_init(|| file))
}

pub const MSIX_CAP: usize = 0x70;
pub const PCIE_CAP: usize = 0xa0;

/// An 82576 VF: 8086:10ca, BAR0 and BAR3 16 KiB 64-bit prefetchable,
/// MSI-X (3 vectors, table at BAR3+0, PBA at BAR3+0x2000), PCIe, and in
/// extended space ARI@0x100 -> AER@0x150.
pub fn igb_vf_config() -> Vec<u8> {
    let mut c = vec![0u8; 4096];
    c[0..4].copy_from_slice(&0x10ca_8086u32.to_le_bytes());
    c[0x06] = 0x10; // capability list
    c[0x08..0x0c].copy_from_slice(&[0x01, 0x00, 0x00, 0x02]);
    c[0x10] = 0x0c;
    c[0x1c] = 0x0c;
    c[0x34] = MSIX_CAP as u8;
    c[MSIX_CAP..MSIX_CAP + 12].copy_from_slice(&[
        0x11,
        PCIE_CAP as u8,
        0x02,
        0x00, // 3 vectors
        0x03,
        0x00,
        0x00,
        0x00, // table: BIR 3, offset 0
        0x03,
        0x20,
        0x00,
        0x00, // PBA: BIR 3, offset 0x2000
    ]);
    c[PCIE_CAP..PCIE_CAP + 2].copy_from_slice(&[0x10, 0x00]);
    c[0x100..0x104].copy_from_slice(&(0x0eu32 | 1 << 16 | 0x150 << 20).to_le_bytes());
    c[0x150..0x154].copy_from_slice(&(0x01u32 | 1 << 16).to_le_bytes());
    c
}

pub fn host(config: Vec<u8>, bar_sizes: [usize; 6]) -> (FakeHost, Arc<Mutex<Vec<String>>>) {
    let mut regions: Vec<Vec<u8>> = bar_sizes.iter().map(|&s| vec![0u8; s]).collect();
    regions.push(Vec::new()); // ROM
    regions.push(config);
    let log = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeHost {
        regions: Mutex::new(regions),
        mappable: [true; 6],
        intx: false,
        resizable: true,
        log: log.clone(),
    };
    (fake, log)
}

/// Options of a function at guest slot 5 with its own ROM.
pub fn opts() -> VfioOptions {
    VfioOptions {
        slot: 5,
        rom: Rom::Device,
    }
}

/// QEMU's e1000 (82540EM, 8086:100e) as a host function: BAR0 128 KiB of
/// 32-bit memory, BAR1 64 I/O ports, INTA#, no capabilities, a 2 KiB ROM,
/// and (to see it hidden) the multi-function bit set.
pub fn e1000(intx: bool, config: impl FnOnce(&mut Vec<u8>)) -> (FakeHost, Arc<Mutex<Vec<String>>>) {
    let mut c = vec![0u8; 256];
    c[0..4].copy_from_slice(&0x100e_8086u32.to_le_bytes());
    c[0x08..0x0c].copy_from_slice(&[0x03, 0x00, 0x00, 0x02]);
    c[0x0e] = 0x80;
    c[0x14] = 0x01;
    c[0x3d] = 1;
    config(&mut c);
    let (fake, log) = host(c, [0x20000, 0x40, 0, 0, 0, 0]);
    {
        let mut regions = fake.regions.lock().unwrap();
        regions[6] = (0..0x800).map(|i| (i * 7) as u8).collect();
        regions[6][..2].copy_from_slice(&[0x55, 0xaa]);
    }
    (FakeHost { intx, ..fake }, log)
}
