//! Fakes for the VFIO device logic and tests of [`VfioPciDevice`] over them.

use std::io;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::tempfile::TempFile;

use super::host::{HostFunction, IrqKind, Mmap, RegionInfo};
use super::{Error, VfioPciDevice};
use crate::interrupt::testing::{FakeInterrupts, FakeVectors};
use crate::interrupt::MsiVectors;
use crate::pci::{BarMove, BarPart, PciDevice};

/// A host function with byte arrays for regions and a log of VFIO calls.
struct FakeHost {
    regions: Mutex<Vec<Vec<u8>>>,
    mappable: [bool; 6],
    log: Arc<Mutex<Vec<String>>>,
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
        let file = TempFile::new().map_err(io::Error::other)?.into_file();
        file.set_len(offset + len)?;
        Mmap::new(&file, offset, len)
    }
    fn enable_irq(&self, kind: IrqKind, fds: &[&EventFd]) -> io::Result<()> {
        self.log(format!("enable {kind:?} {}", fds.len()));
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

const MSIX_CAP: usize = 0x70;
const PCIE_CAP: usize = 0xa0;

/// An 82576 VF: 8086:10ca, BAR0 and BAR3 16 KiB 64-bit prefetchable,
/// MSI-X (3 vectors, table at BAR3+0, PBA at BAR3+0x2000), PCIe, and in
/// extended space ARI@0x100 -> AER@0x150.
fn igb_vf_config() -> Vec<u8> {
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

fn host(config: Vec<u8>, bar_sizes: [usize; 6]) -> (FakeHost, Arc<Mutex<Vec<String>>>) {
    let mut regions: Vec<Vec<u8>> = bar_sizes.iter().map(|&s| vec![0u8; s]).collect();
    regions.push(Vec::new()); // ROM
    regions.push(config);
    let log = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeHost {
        regions: Mutex::new(regions),
        mappable: [true; 6],
        log: log.clone(),
    };
    (fake, log)
}

fn take(log: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut log.lock().unwrap())
}

fn igb_vf() -> (
    VfioPciDevice<FakeHost>,
    Arc<Mutex<Vec<String>>>,
    Arc<FakeVectors>,
) {
    let (fake, log) = host(igb_vf_config(), [0x4000, 0, 0, 0x4000, 0, 0]);
    let irq = FakeInterrupts::default();
    let dev = VfioPciDevice::with_host("0000:01:10.0".to_string(), fake, &irq).unwrap();
    let vectors = irq.last.lock().unwrap().clone().unwrap();
    assert_eq!(take(&log), ["reset"]);
    (dev, log, vectors)
}

fn write32(d: &mut VfioPciDevice<FakeHost>, reg: usize, v: u32) -> Vec<BarMove> {
    d.write_config(reg, 0, &v.to_le_bytes())
}

fn pieces(parts: &[BarPart]) -> Vec<(u64, u64)> {
    parts
        .iter()
        .map(|p| match p {
            BarPart::Direct { offset, len, .. } => (*offset, *len),
            BarPart::Notify { offset, .. } => (*offset, 0),
        })
        .collect()
}

#[test]
fn bars_follow_the_host_and_msix_pages_stay_trapped() {
    let (d, _, vectors) = igb_vf();
    assert_eq!(vectors.len(), 3);
    let bars: Vec<(usize, u64)> = d.bars().iter().map(|b| (b.index, b.size)).collect();
    assert_eq!(bars, [(0, 0x4000), (3, 0x4000)]);
    assert_eq!(pieces(&d.bar_parts(0)), [(0, 0x4000)]);
    assert_eq!(
        pieces(&d.bar_parts(3)),
        [(0x1000, 0x1000), (0x3000, 0x1000)]
    );
    assert!(d.bar_parts(1).is_empty());
}

#[test]
fn bar_registers_are_emulated_with_host_sizes() {
    let (mut d, log, _) = igb_vf();
    d.set_bar_address(0, 0xe000_0000);
    assert_eq!(d.read_config(4), 0xe000_000c);
    write32(&mut d, 4, u32::MAX);
    write32(&mut d, 5, u32::MAX);
    assert_eq!(
        (d.read_config(4), d.read_config(5)),
        (0xffff_c00c, u32::MAX)
    );
    assert!(take(&log).is_empty(), "BAR writes never reach the device");
}

#[test]
fn command_passes_through_and_memory_decode_moves_bars() {
    let (mut d, log, _) = igb_vf();
    d.set_bar_address(3, 0xe000_4000);
    write32(&mut d, 7, 0xe001_0000);
    write32(&mut d, 8, 0);
    let moves = d.write_config(1, 0, &[0x06, 0x00]);
    assert_eq!(take(&log), ["write 7 0x4 [6, 0]"]);
    assert_eq!(
        moves,
        [BarMove {
            index: 3,
            old: 0xe000_4000,
            new: 0xe001_0000,
            size: 0x4000
        }]
    );
    assert_eq!(d.read_config(1) & 0xffff, 0x0006);
}

#[test]
fn header_hides_rom_and_intx() {
    let (fake, _) = host(igb_vf_config(), [0x4000, 0, 0, 0x4000, 0, 0]);
    {
        let mut regions = fake.regions.lock().unwrap();
        regions[7][0x30..0x34].copy_from_slice(&[0x01, 0x00, 0x0f, 0xfe]);
        regions[7][0x3c..0x3e].copy_from_slice(&[0x0a, 0x01]);
    }
    let mut d = VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default()).unwrap();
    assert_eq!(d.read_config(0x30 / 4), 0, "no expansion ROM");
    assert_eq!(d.read_config(0x3c / 4) & 0xffff, 0, "pin 0, line ours");
    d.write_config(0x3c / 4, 0, &[0x0b]);
    assert_eq!(d.read_config(0x3c / 4) & 0xffff, 0x000b);
    assert_eq!(d.read_config(0), 0x10ca_8086, "identity passes through");
}

#[test]
fn extended_list_skips_ari() {
    let (mut d, _, _) = igb_vf();
    assert_eq!(d.read_config(0x100 / 4), 0x150 << 20);
    assert_eq!(d.read_config(0x150 / 4), 0x0001_0001);
}

#[test]
fn msix_enable_hands_all_vectors_to_vfio() {
    let (mut d, log, vectors) = igb_vf();
    // Program entry 1 through the trapped table page, then unmask it.
    d.write_bar(3, 16, &0xfee0_0000u32.to_le_bytes());
    d.write_bar(3, 24, &0x31u32.to_le_bytes());
    d.write_bar(3, 28, &0u32.to_le_bytes());
    let mut b = [0u8; 4];
    d.read_bar(3, 24, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x31);
    d.write_config(MSIX_CAP / 4, 3, &[0x80]);
    assert_eq!(
        take(&log),
        ["enable Msix 3"],
        "control not written to the device"
    );
    assert_eq!(
        vectors.take_log(),
        ["route 1 0xfee00000 0x31", "enable 1 true"]
    );
    assert_eq!(d.read_config(MSIX_CAP / 4) >> 16, 0x8002);
    d.write_config(MSIX_CAP / 4, 3, &[0xc0]); // function mask: VFIO stays on
    assert!(take(&log).is_empty());
    assert_eq!(vectors.take_log(), ["enable 1 false"]);
    d.write_config(MSIX_CAP / 4, 3, &[0x00]);
    assert_eq!(take(&log), ["disable Msix"]);
    d.write_config(MSIX_CAP / 4, 3, &[0x80]);
    drop(d);
    assert_eq!(take(&log), ["enable Msix 3", "disable Msix", "reset"]);
}

#[test]
fn trapped_bar_accesses_reach_the_device_or_msix() {
    let (mut d, log, _) = igb_vf();
    d.write_bar(3, 0x1800, &[1, 2, 3, 4]); // rest of a trapped page: device
    assert_eq!(take(&log), ["write 3 0x1800 [1, 2, 3, 4]"]);
    d.write_bar(3, 0x2000, &[1; 8]); // PBA: read-only
    let mut b = [0xaa; 8];
    d.read_bar(3, 0x2000, &mut b);
    assert_eq!(b, [0; 8]);
    d.read_bar(3, 0x4000, &mut b);
    assert_eq!(b, [0xff; 8], "past the BAR");
    assert!(take(&log).is_empty());
}

#[test]
fn msi_is_hidden_behind_msix() {
    let mut c = igb_vf_config();
    c[MSIX_CAP + 1] = 0x50;
    c[0x50..0x52].copy_from_slice(&[0x05, PCIE_CAP as u8]);
    let (fake, _) = host(c, [0x4000, 0, 0, 0x4000, 0, 0]);
    let mut d = VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default()).unwrap();
    assert_eq!(d.read_config(MSIX_CAP / 4) >> 8 & 0xff, PCIE_CAP as u32);
}

#[test]
fn msi_only_device_gets_emulated_msi() {
    let mut c = igb_vf_config();
    // Replace MSI-X by a 64-bit MSI capability with one vector.
    c[MSIX_CAP..MSIX_CAP + 12].copy_from_slice(&[0x05, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let (fake, log) = host(c, [0x4000, 0, 0, 0, 0, 0]);
    let irq = FakeInterrupts::default();
    let mut d = VfioPciDevice::with_host("x".into(), fake, &irq).unwrap();
    let vectors = irq.last.lock().unwrap().clone().unwrap();
    take(&log);
    write32(&mut d, MSIX_CAP / 4 + 1, 0xfee0_1000);
    d.write_config(MSIX_CAP / 4 + 3, 0, &[0x45, 0]);
    d.write_config(MSIX_CAP / 4, 2, &[0x81, 0x00]);
    assert_eq!(take(&log), ["enable Msi 1"]);
    assert_eq!(
        vectors.take_log(),
        ["route 0 0xfee01000 0x45", "enable 0 true"]
    );
    assert_eq!(d.read_config(MSIX_CAP / 4 + 1), 0xfee0_1000);
    assert_eq!(pieces(&d.bar_parts(0)), [(0, 0x4000)]);
}

#[test]
fn errors_name_the_device() {
    let mut c = igb_vf_config();
    c[0x06] = 0; // no capabilities at all
    let (fake, _) = host(c, [0x4000, 0, 0, 0x4000, 0, 0]);
    let Err(e) = VfioPciDevice::with_host("0000:01:10.0".into(), fake, &FakeInterrupts::default())
    else {
        panic!("a device without MSI must be refused");
    };
    assert!(matches!(e, Error::NoMsi { .. }));
    assert!(e.to_string().starts_with("0000:01:10.0: no MSI-X or MSI"));

    let mut c = igb_vf_config();
    c[MSIX_CAP + 4] = 0x02; // table in BAR2, which does not exist
    let (fake, _) = host(c, [0x4000, 0, 0, 0x4000, 0, 0]);
    let Err(e) = VfioPciDevice::with_host("0000:01:10.0".into(), fake, &FakeInterrupts::default())
    else {
        panic!("a misplaced table must be refused");
    };
    assert_eq!(
        e.to_string(),
        "0000:01:10.0: MSI-X table at BAR2+0x0 lies outside the device's memory BARs"
    );
}

#[test]
fn config_region_reads_are_bounded() {
    let (mut d, _, _) = igb_vf();
    assert_eq!(d.read_config(1024), 0);
    assert!(d.write_config(1024, 0, &[1]).is_empty());
    assert!(
        d.write_config(1, 3, &[1, 2]).is_empty(),
        "crosses the dword"
    );
}

#[test]
fn random_guest_accesses_never_panic() {
    // Whatever the guest does to config space and the trapped BAR pieces,
    // in any order and width, vfvm keeps running.
    let (mut d, _, _) = igb_vf();
    let mut state: u64 = 0x0f10;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    for _ in 0..20_000 {
        let len = [1usize, 2, 4, 8, 3, 0][(next() % 6) as usize];
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut buf = vec![0u8; len];
        let bar = (next() % 7) as usize;
        let off = next() % 0x5000;
        match next() % 4 {
            0 => d.read_bar(bar, off, &mut buf),
            1 => d.write_bar(bar, off, &data),
            _ => {
                let reg = (next() % 1100) as usize;
                let _ = d.read_config(reg);
                let _ = d.write_config(reg, next() % 6, &data[..len.min(4)]);
            }
        }
    }
}
