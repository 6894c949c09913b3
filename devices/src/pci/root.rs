//! The PCI root complex: bus 0, reached through ports 0xCF8/0xCFC and ECAM.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use log::{debug, error};

use super::{BarMapper, BarMove, BarPart, BarRange, SharedPciDevice};
use crate::bus::BusDevice;

const SLOTS: usize = 32;
const FUNCTIONS: usize = 8;
/// Length of the port-I/O configuration mechanism (0xCF8..=0xCFF).
pub const CONFIG_IO_LEN: u64 = 8;
const HEADER_MULTI_FUNCTION: u32 = 0x0080_0000;
/// The command register's dword.
const REG_COMMAND: usize = 1;

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

/// Bus 0 and its functions. Functions come and go while the guest runs
/// (PCI hotplug); the table's lock is never held while a device is locked.
pub struct PciRoot {
    functions: RwLock<Vec<Option<SharedPciDevice>>>,
    mapper: Arc<dyn BarMapper>,
}

impl PciRoot {
    /// An empty bus whose BAR moves go through `mapper`.
    pub fn new(mapper: Arc<dyn BarMapper>) -> Self {
        PciRoot {
            functions: RwLock::new(vec![None; SLOTS * FUNCTIONS]),
            mapper,
        }
    }

    fn table(&self) -> RwLockReadGuard<'_, Vec<Option<SharedPciDevice>>> {
        self.functions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index(slot: u8, function: u8) -> Result<usize, Error> {
        let (s, f) = (usize::from(slot), usize::from(function));
        if s >= SLOTS || f >= FUNCTIONS {
            return Err(Error::OutOfRange { slot, function });
        }
        Ok(s * FUNCTIONS + f)
    }

    /// Puts `device` at `slot`:`function`.
    pub fn add(&self, slot: u8, function: u8, device: SharedPciDevice) -> Result<(), Error> {
        let index = Self::index(slot, function)?;
        let mut table = self.functions.write().unwrap_or_else(|e| e.into_inner());
        let entry = &mut table[index];
        if entry.is_some() {
            return Err(Error::SlotInUse { slot, function });
        }
        *entry = Some(device);
        Ok(())
    }

    /// Takes the function at `slot`:`function` off the bus (PCI hotplug):
    /// its decoding is turned off first, so its BARs are unmapped by the
    /// same moves a guest's write to its command register makes. `None` if
    /// there is no function there.
    pub fn remove(&self, slot: u8, function: u8) -> Option<SharedPciDevice> {
        let index = Self::index(slot, function).ok()?;
        self.config_write(index, REG_COMMAND, 0, &[0, 0]);
        let mut table = self.functions.write().unwrap_or_else(|e| e.into_inner());
        table[index].take()
    }

    /// The functions of `slot` present (bit `f` for function `f`).
    pub fn functions_of(&self, slot: u8) -> u8 {
        let Ok(first) = Self::index(slot, 0) else {
            return 0;
        };
        let table = self.table();
        (0..FUNCTIONS)
            .filter(|f| table[first + f].is_some())
            .fold(0, |mask, f| mask | 1 << f)
    }

    fn device(&self, devfn: usize) -> Option<SharedPciDevice> {
        self.table().get(devfn).cloned().flatten()
    }

    /// Reads config dword `reg` of `devfn` (slot * 8 + function).
    pub fn config_read(&self, devfn: usize, reg: usize) -> u32 {
        let Some(dev) = self.device(devfn) else {
            return u32::MAX;
        };
        let mut v = dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_config(reg);
        let others = (devfn / FUNCTIONS) as u8;
        if reg == 3 && devfn.is_multiple_of(FUNCTIONS) && self.functions_of(others) > 1 {
            v |= HEADER_MULTI_FUNCTION;
        }
        v
    }

    /// Writes config space of `devfn` and carries out the BAR moves it
    /// causes, with the device locked throughout, so that two vCPUs moving
    /// BARs cannot interleave. A move is recorded in the device only once
    /// the mapper made it; one that fails is undone (the BAR stays mapped
    /// where it was) and the guest's next write retries it.
    pub fn config_write(&self, devfn: usize, reg: usize, offset: u64, data: &[u8]) {
        let Some(dev) = self.device(devfn) else {
            return;
        };
        let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
        for m in d.write_config(reg, offset, data) {
            let parts = d.bar_parts(m.index);
            let (slot, function) = (devfn / FUNCTIONS, devfn % FUNCTIONS);
            let (mapped, result) = self.apply(&dev, &m, &parts);
            d.set_bar_mapped(m.index, mapped);
            match result {
                Ok(()) => debug!(
                    "pci {slot:02x}.{function}: BAR{} {} -> {}",
                    m.index,
                    place(m.old),
                    place(m.new)
                ),
                Err(e) => error!(
                    "pci {slot:02x}.{function}: cannot move BAR{} from {} to {}: {e}",
                    m.index,
                    place(m.old),
                    place(m.new)
                ),
            }
        }
    }

    /// Carries out `m`: where the BAR ends up mapped, and the error if that
    /// is not `m.new`.
    fn apply(
        &self,
        dev: &SharedPciDevice,
        m: &BarMove,
        parts: &[BarPart],
    ) -> (Option<u64>, std::io::Result<()>) {
        let range = |base| BarRange {
            index: m.index,
            kind: m.kind,
            base,
            size: m.size,
        };
        if let Some(old) = m.old {
            if let Err(e) = self.mapper.unmap(range(old), parts) {
                return (m.old, Err(e));
            }
        }
        let Some(new) = m.new else {
            return (None, Ok(()));
        };
        match self.mapper.map(dev, range(new), parts) {
            Ok(()) => (Some(new), Ok(())),
            Err(e) => {
                let back = m
                    .old
                    .filter(|&old| self.mapper.map(dev, range(old), parts).is_ok());
                (back, Err(e))
            }
        }
    }
}

fn place(at: Option<u64>) -> String {
    at.map_or_else(|| "off".to_string(), |a| format!("{a:#x}"))
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
    use crate::pci::testing::ConfigFunction;
    use crate::pci::{BarInfo, BarKind, HostBridge, PciConfig};
    use std::io;
    use std::sync::Mutex;

    /// Logs what it is asked; fails to map at `fail_at`; notes whether the
    /// device was locked during each call.
    #[derive(Default)]
    struct FakeMapper {
        log: Mutex<Vec<String>>,
        fail_at: Mutex<Option<u64>>,
        unlocked_calls: Mutex<usize>,
    }
    impl BarMapper for FakeMapper {
        fn map(&self, dev: &SharedPciDevice, bar: BarRange, _: &[BarPart]) -> io::Result<()> {
            if dev.try_lock().is_ok() {
                *self.unlocked_calls.lock().unwrap() += 1;
            }
            let entry = format!("map {} {:#x} {:#x}", bar.index, bar.base, bar.size);
            self.log.lock().unwrap().push(entry);
            if *self.fail_at.lock().unwrap() == Some(bar.base) {
                return Err(io::Error::other("no slot"));
            }
            Ok(())
        }
        fn unmap(&self, bar: BarRange, _: &[BarPart]) -> io::Result<()> {
            let entry = format!("unmap {:#x} {:#x}", bar.base, bar.size);
            self.log.lock().unwrap().push(entry);
            Ok(())
        }
    }

    fn root() -> (Arc<PciRoot>, Arc<FakeMapper>) {
        let mapper = Arc::new(FakeMapper::default());
        let root = PciRoot::new(mapper.clone());
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
        root.add(4, 0, Arc::new(Mutex::new(ConfigFunction(cfg))))
            .unwrap();
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
        assert_eq!(
            *mapper.unlocked_calls.lock().unwrap(),
            0,
            "moved under the device lock"
        );
        ecam.read(ConfigMmio::LEN, &mut b);
        assert_eq!(b, [0xff; 4]);
        ecam.write(3, &[1, 2]); // crosses a dword: ignored
    }

    #[test]
    fn add_rejects_taken_and_out_of_range_slots() {
        let root = PciRoot::new(Arc::new(FakeMapper::default()));
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

    fn bar0(root: &PciRoot) -> u32 {
        root.config_read(4 * FUNCTIONS, 4)
    }

    #[test]
    fn a_failed_move_leaves_the_bar_where_it_was() {
        let (root, mapper) = root();
        *mapper.fail_at.lock().unwrap() = Some(0xd000_0000);
        let devfn = 4 * FUNCTIONS;
        root.config_write(devfn, 1, 0, &[2, 0]); // decoding: BARs move at once
        root.config_write(devfn, 4, 0, &0xd000_0000u32.to_le_bytes());
        assert_eq!(
            std::mem::take(&mut *mapper.log.lock().unwrap()),
            [
                "unmap 0xc0000000 0x1000",
                "map 0 0xd0000000 0x1000",
                "map 0 0xc0000000 0x1000"
            ],
            "mapped back at the old address"
        );
        assert_eq!(
            bar0(&root),
            0xd000_0000,
            "the register keeps what the guest wrote"
        );
        // The mapping was not recorded at the failed address: the next try
        // moves from the old one, and a success is recorded.
        *mapper.fail_at.lock().unwrap() = None;
        root.config_write(devfn, 4, 0, &0xd800_0000u32.to_le_bytes());
        root.config_write(devfn, 1, 0, &[0, 0]);
        assert_eq!(
            std::mem::take(&mut *mapper.log.lock().unwrap()),
            [
                "unmap 0xc0000000 0x1000",
                "map 0 0xd8000000 0x1000",
                "unmap 0xd8000000 0x1000"
            ]
        );
    }

    #[test]
    fn remove_unmaps_the_bars_and_frees_the_slot() {
        let (root, mapper) = root();
        let devfn = 4 * FUNCTIONS;
        root.config_write(devfn, 1, 0, &[2, 0]);
        assert_eq!(root.functions_of(4), 0b1001);
        assert!(root.remove(4, 0).is_some());
        assert_eq!(
            *mapper.log.lock().unwrap(),
            ["unmap 0xc0000000 0x1000"],
            "unmapped where it was"
        );
        assert_eq!(root.config_read(devfn, 0), u32::MAX, "gone");
        assert_eq!(root.functions_of(4), 0b1000);
        assert!(root.remove(4, 0).is_none());
        assert!(root.remove(40, 0).is_none());
        assert_eq!(root.functions_of(40), 0);
        // The slot takes a new function.
        root.add(4, 0, Arc::new(Mutex::new(HostBridge::new())))
            .unwrap();
        assert_eq!(root.config_read(devfn, 0) & 0xffff, 0x8086);
    }

    #[test]
    fn memory_decode_off_unmaps_and_on_maps_again() {
        let (root, mapper) = root();
        let devfn = 4 * FUNCTIONS;
        root.config_write(devfn, 1, 0, &[2, 0]);
        assert!(mapper.log.lock().unwrap().is_empty(), "already there");
        root.config_write(devfn, 1, 0, &[0, 0]);
        root.config_write(devfn, 4, 0, &u32::MAX.to_le_bytes()); // sizing
        root.config_write(devfn, 4, 0, &0xc000_0000u32.to_le_bytes());
        root.config_write(devfn, 1, 0, &[2, 0]);
        assert_eq!(
            *mapper.log.lock().unwrap(),
            ["unmap 0xc0000000 0x1000", "map 0 0xc0000000 0x1000"]
        );
    }
}
