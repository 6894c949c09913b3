//! The PCI root complex: bus 0, reached through ports 0xCF8/0xCFC and ECAM.

use std::sync::Arc;

use log::{error, warn};

use super::{BarMapper, SharedPciDevice};
use crate::bus::BusDevice;

const SLOTS: usize = 32;
const FUNCTIONS: usize = 8;
/// Length of the port-I/O configuration mechanism (0xCF8..=0xCFF).
pub const CONFIG_IO_LEN: u64 = 8;
const HEADER_MULTI_FUNCTION: u32 = 0x0080_0000;

/// Errors of building bus 0.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Slot or function out of range.
    #[error("PCI address 0:{slot}:{function} is out of range (slot 0-31, function 0-7)")]
    OutOfRange { slot: u8, function: u8 },
    /// Two devices at one address.
    #[error("PCI slot {slot}:{function} is already in use")]
    SlotInUse { slot: u8, function: u8 },
}

/// Bus 0 and its functions.
pub struct PciRoot {
    functions: Vec<Option<SharedPciDevice>>,
    mapper: Arc<dyn BarMapper>,
}

impl PciRoot {
    /// An empty bus whose BAR moves go through `mapper`.
    pub fn new(mapper: Arc<dyn BarMapper>) -> Self {
        PciRoot {
            functions: vec![None; SLOTS * FUNCTIONS],
            mapper,
        }
    }

    /// Puts `device` at `slot`:`function`.
    pub fn add(&mut self, slot: u8, function: u8, device: SharedPciDevice) -> Result<(), Error> {
        let (s, f) = (usize::from(slot), usize::from(function));
        if s >= SLOTS || f >= FUNCTIONS {
            return Err(Error::OutOfRange { slot, function });
        }
        let entry = &mut self.functions[s * FUNCTIONS + f];
        if entry.is_some() {
            return Err(Error::SlotInUse { slot, function });
        }
        *entry = Some(device);
        Ok(())
    }

    fn has_other_functions(&self, devfn: usize) -> bool {
        let slot = devfn / FUNCTIONS * FUNCTIONS;
        self.functions[slot + 1..slot + FUNCTIONS]
            .iter()
            .any(Option::is_some)
    }

    /// Reads config dword `reg` of `devfn` (slot * 8 + function).
    pub fn config_read(&self, devfn: usize, reg: usize) -> u32 {
        let Some(Some(dev)) = self.functions.get(devfn) else {
            return u32::MAX;
        };
        let mut v = dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_config(reg);
        if reg == 3 && devfn.is_multiple_of(FUNCTIONS) && self.has_other_functions(devfn) {
            v |= HEADER_MULTI_FUNCTION;
        }
        v
    }

    /// Writes config space of `devfn` and applies the BAR moves it causes.
    pub fn config_write(&self, devfn: usize, reg: usize, offset: u64, data: &[u8]) {
        let Some(Some(dev)) = self.functions.get(devfn) else {
            return;
        };
        let (moves, parts) = {
            let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
            let moves = d.write_config(reg, offset, data);
            let parts: Vec<_> = moves
                .iter()
                .map(|m| (d.bar_parts(m.index), d.bar_parts(m.index)))
                .collect();
            (moves, parts)
        };
        for (m, (old_parts, new_parts)) in moves.into_iter().zip(parts) {
            let moved = self
                .mapper
                .unmap(m.old, m.size, &old_parts)
                .and_then(|()| self.mapper.map(dev, m.index, m.new, m.size, &new_parts));
            match moved {
                Ok(()) => warn!(
                    "pci {:02x}.{}: guest moved BAR{} from {:#x} to {:#x}",
                    devfn / FUNCTIONS,
                    devfn % FUNCTIONS,
                    m.index,
                    m.old,
                    m.new
                ),
                Err(e) => error!(
                    "pci {:02x}.{}: cannot move BAR{} to {:#x}: {e}",
                    devfn / FUNCTIONS,
                    devfn % FUNCTIONS,
                    m.index,
                    m.new
                ),
            }
        }
    }
}

fn read_sub_dword(value: u32, offset: u64, data: &mut [u8]) {
    let bytes = value.to_le_bytes();
    let off = offset as usize;
    match bytes.get(off..off + data.len()) {
        Some(src) => data.copy_from_slice(src),
        None => data.fill(0xff),
    }
}

/// Configuration mechanism #1: address port 0xCF8, data ports 0xCFC..=0xCFF.
pub struct ConfigIo {
    root: Arc<PciRoot>,
    address: u32,
}

impl ConfigIo {
    /// The port-I/O window on `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        ConfigIo { root, address: 0 }
    }

    /// (devfn, reg) selected by the address port, if enabled and on bus 0.
    fn target(&self) -> Option<(usize, usize)> {
        let enabled = self.address & 0x8000_0000 != 0;
        let bus = (self.address >> 16) & 0xff;
        (enabled && bus == 0).then_some({
            (
                ((self.address >> 8) & 0xff) as usize,
                ((self.address >> 2) & 0x3f) as usize,
            )
        })
    }
}

impl BusDevice for ConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0..=3 => read_sub_dword(self.address, offset, data),
            _ => match self.target() {
                Some((devfn, reg)) => {
                    read_sub_dword(self.root.config_read(devfn, reg), offset - 4, data)
                }
                None => data.fill(0xff),
            },
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            }
            0..=3 => {}
            _ => {
                if let Some((devfn, reg)) = self.target() {
                    if offset - 4 + data.len() as u64 <= 4 {
                        self.root.config_write(devfn, reg, offset - 4, data);
                    }
                }
            }
        }
    }
}

/// Enhanced configuration access (ECAM) for bus 0: 4 KiB per function.
pub struct ConfigMmio {
    root: Arc<PciRoot>,
}

impl ConfigMmio {
    /// Size of bus 0's ECAM window.
    pub const LEN: u64 = (SLOTS * FUNCTIONS) as u64 * 4096;

    /// The ECAM window on `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        ConfigMmio { root }
    }

    fn decode(offset: u64, len: usize) -> Option<(usize, usize, u64)> {
        let in_dword = offset & 3;
        (in_dword + len as u64 <= 4 && offset < Self::LEN).then_some((
            (offset >> 12) as usize,
            ((offset & 0xfff) >> 2) as usize,
            in_dword,
        ))
    }
}

impl BusDevice for ConfigMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match Self::decode(offset, data.len()) {
            Some((devfn, reg, off)) => read_sub_dword(self.root.config_read(devfn, reg), off, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some((devfn, reg, off)) = Self::decode(offset, data.len()) {
            self.root.config_write(devfn, reg, off, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{BarInfo, BarKind, BarMove, BarPart, HostBridge, PciConfig, PciDevice};
    use std::io;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeMapper {
        log: Mutex<Vec<String>>,
    }
    impl BarMapper for FakeMapper {
        fn map(
            &self,
            _: &SharedPciDevice,
            bar: usize,
            base: u64,
            size: u64,
            _: &[BarPart],
        ) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("map {bar} {base:#x} {size:#x}"));
            Ok(())
        }
        fn unmap(&self, base: u64, size: u64, _: &[BarPart]) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("unmap {base:#x} {size:#x}"));
            Ok(())
        }
    }

    struct OneBar(PciConfig);
    impl PciDevice for OneBar {
        fn read_config(&mut self, reg: usize) -> u32 {
            self.0.read(reg)
        }
        fn write_config(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove> {
            self.0.write(reg, offset, data)
        }
        fn bars(&self) -> Vec<BarInfo> {
            self.0.bars()
        }
        fn set_bar_address(&mut self, index: usize, addr: u64) {
            self.0.set_bar_address(index, addr)
        }
        fn bar_parts(&self, _: usize) -> Vec<BarPart> {
            Vec::new()
        }
        fn read_bar(&mut self, _: usize, _: u64, _: &mut [u8]) {}
        fn write_bar(&mut self, _: usize, _: u64, _: &[u8]) {}
    }

    fn root() -> (Arc<PciRoot>, Arc<FakeMapper>) {
        let mapper = Arc::new(FakeMapper::default());
        let mut root = PciRoot::new(mapper.clone());
        root.add(0, 0, Arc::new(Mutex::new(HostBridge::new())))
            .unwrap();
        let mut cfg = PciConfig::new(0x1234, 0x5678, (2, 0, 0), 0);
        cfg.add_bar(BarInfo {
            index: 0,
            size: 0x1000,
            kind: BarKind::Mem32,
            prefetchable: false,
        });
        cfg.set_bar_address(0, 0xc000_0000);
        root.add(4, 0, Arc::new(Mutex::new(OneBar(cfg)))).unwrap();
        root.add(4, 3, Arc::new(Mutex::new(HostBridge::new())))
            .unwrap();
        (Arc::new(root), mapper)
    }

    #[test]
    fn cf8_selects_function_and_register() {
        let (root, _) = root();
        let mut io = ConfigIo::new(root);
        let mut b = [0u8; 4];
        io.write(0, &(0x8000_2000u32).to_le_bytes()); // slot 4, reg 0
        io.read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x5678_1234);
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x5678);
        io.write(0, &(0x8000_2800u32).to_le_bytes()); // slot 5: empty
        io.read(4, &mut b);
        assert_eq!(b, [0xff; 4]);
        io.write(0, &(0x0000_2000u32).to_le_bytes()); // disabled
        io.read(4, &mut b);
        assert_eq!(b, [0xff; 4]);
        io.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x2000);
    }

    #[test]
    fn ecam_reports_multifunction_and_moves_bars() {
        let (root, mapper) = root();
        let mut ecam = ConfigMmio::new(root);
        let mut b = [0u8; 4];
        ecam.read(4 << 15 | 0xc, &mut b);
        assert_ne!(u32::from_le_bytes(b) & HEADER_MULTI_FUNCTION, 0);
        ecam.read(0xc, &mut b);
        assert_eq!(u32::from_le_bytes(b) & HEADER_MULTI_FUNCTION, 0);
        ecam.write(4 << 15 | 0x10, &0xd000_0000u32.to_le_bytes());
        ecam.write(4 << 15 | 0x4, &[2, 0]);
        assert_eq!(
            *mapper.log.lock().unwrap(),
            ["unmap 0xc0000000 0x1000", "map 0 0xd0000000 0x1000"]
        );
        ecam.read(ConfigMmio::LEN, &mut b);
        assert_eq!(b, [0xff; 4]);
        ecam.write(3, &[1, 2]); // crosses a dword: ignored
    }

    #[test]
    fn add_rejects_taken_and_out_of_range_slots() {
        let mut root = PciRoot::new(Arc::new(FakeMapper::default()));
        let dev = Arc::new(Mutex::new(HostBridge::new()));
        root.add(3, 0, dev.clone()).unwrap();
        assert!(matches!(
            root.add(3, 0, dev.clone()),
            Err(Error::SlotInUse {
                slot: 3,
                function: 0
            })
        ));
        assert!(matches!(
            root.add(32, 0, dev.clone()),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(root.add(1, 8, dev), Err(Error::OutOfRange { .. })));
    }
}
