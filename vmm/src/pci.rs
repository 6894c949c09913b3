//! Assembling bus 0: functions at the slots the user chose, BARs placed in
//! the I/O, 32- and 64-bit windows by their type, and each BAR mapped. The
//! builder lives as long as the VM: a hot-added function is placed in the
//! same windows by the same code ([`PciBuilder::hot_add`]), and a removed
//! one gives its BAR space back ([`PciBuilder::remove`]).

use std::sync::Arc;

use devices::pci::{BarKind, BarMapper, BarRange, PciRoot, SharedPciDevice};
use vm_allocator::{AddressAllocator, AllocPolicy, RangeInclusive};

/// Errors of placing PCI functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The slot is taken or out of range.
    #[error("-s {slot}:{function}: {source}")]
    Slot {
        slot: u8,
        function: u8,
        #[source]
        source: devices::pci::Error,
    },
    /// A window is full.
    #[error(
        "-s {slot}:{function}: no room for BAR{bar} ({size:#x} bytes) in the {window} PCI window"
    )]
    NoRoom {
        slot: u8,
        function: u8,
        bar: usize,
        size: u64,
        window: &'static str,
    },
    /// The VMM could not map a BAR.
    #[error("-s {slot}:{function}: cannot map BAR{bar} at {addr:#x}: {source}")]
    Map {
        slot: u8,
        function: u8,
        bar: usize,
        addr: u64,
        #[source]
        source: std::io::Error,
    },
    /// A window's bounds are invalid.
    #[error("invalid PCI window: {0:?}")]
    Window(vm_allocator::Error),
}

struct Placed {
    slot: u8,
    function: u8,
    device: SharedPciDevice,
    bars: Vec<BarRange>,
}

/// The guest windows BARs are placed in, each (base, size).
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    /// I/O ports.
    pub io: (u64, u64),
    /// Memory below 4 GiB.
    pub mmio32: (u64, u64),
    /// Memory above RAM.
    pub mmio64: (u64, u64),
}

/// Collects functions, then builds bus 0; then adds and removes them.
pub struct PciBuilder {
    root: Arc<PciRoot>,
    mapper: Arc<dyn BarMapper>,
    io: AddressAllocator,
    mmio32: AddressAllocator,
    mmio64: AddressAllocator,
    placed: Vec<Placed>,
}

impl PciBuilder {
    /// A bus whose BARs go in `windows`.
    pub fn new(mapper: Arc<dyn BarMapper>, windows: Windows) -> Result<Self, Error> {
        let alloc = |(base, size)| AddressAllocator::new(base, size).map_err(Error::Window);
        Ok(PciBuilder {
            root: Arc::new(PciRoot::new(mapper.clone())),
            mapper,
            io: alloc(windows.io)?,
            mmio32: alloc(windows.mmio32)?,
            mmio64: alloc(windows.mmio64)?,
            placed: Vec::new(),
        })
    }

    /// Puts `device` at `slot`:`function` and places its BARs.
    pub fn add(&mut self, slot: u8, function: u8, device: SharedPciDevice) -> Result<(), Error> {
        self.root
            .add(slot, function, device.clone())
            .map_err(|source| Error::Slot {
                slot,
                function,
                source,
            })?;
        let bars = match self.place(slot, function, &device) {
            Ok(bars) => bars,
            Err(e) => {
                self.root.remove(slot, function);
                return Err(e);
            }
        };
        self.placed.push(Placed {
            slot,
            function,
            device,
            bars,
        });
        Ok(())
    }

    /// Allocates and programs `device`'s BARs; on failure none stays
    /// allocated.
    fn place(
        &mut self,
        slot: u8,
        function: u8,
        device: &SharedPciDevice,
    ) -> Result<Vec<BarRange>, Error> {
        let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
        let mut bars = Vec::new();
        for bar in dev.bars() {
            let (alloc, window, align) = match bar.kind {
                BarKind::Io => (&mut self.io, "I/O", bar.size),
                BarKind::Mem32 => (&mut self.mmio32, "32-bit", bar.size.max(4096)),
                BarKind::Mem64 => (&mut self.mmio64, "64-bit", bar.size.max(4096)),
            };
            let Ok(range) = alloc.allocate(bar.size, align, AllocPolicy::FirstMatch) else {
                drop(dev);
                self.free(&bars);
                return Err(Error::NoRoom {
                    slot,
                    function,
                    bar: bar.index,
                    size: bar.size,
                    window,
                });
            };
            dev.set_bar_address(bar.index, range.start());
            bars.push(BarRange {
                index: bar.index,
                kind: bar.kind,
                base: range.start(),
                size: bar.size,
            });
        }
        Ok(bars)
    }

    /// Gives `bars`' space back to their windows.
    fn free(&mut self, bars: &[BarRange]) {
        for bar in bars {
            let alloc = match bar.kind {
                BarKind::Io => &mut self.io,
                BarKind::Mem32 => &mut self.mmio32,
                BarKind::Mem64 => &mut self.mmio64,
            };
            let freed = RangeInclusive::new(bar.base, bar.base + (bar.size - 1))
                .and_then(|range| alloc.free(&range));
            if let Err(e) = freed {
                log::error!("cannot free BAR{} at {:#x}: {e}", bar.index, bar.base);
            }
        }
    }

    /// Maps every BAR of the functions added so far; returns the bus.
    pub fn build(&mut self) -> Result<Arc<PciRoot>, Error> {
        for p in &self.placed {
            map_bars(&*self.mapper, p)?;
        }
        Ok(self.root.clone())
    }

    /// Puts `device` at `slot`:`function` of the running bus: placed as
    /// [`PciBuilder::add`] places a boot-time function, then mapped. On
    /// failure the bus is as it was.
    pub fn hot_add(
        &mut self,
        slot: u8,
        function: u8,
        device: SharedPciDevice,
    ) -> Result<(), Error> {
        self.add(slot, function, device)?;
        let placed = self.placed.last().expect("just added");
        if let Err(e) = map_bars(&*self.mapper, placed) {
            self.remove(slot, function);
            return Err(e);
        }
        Ok(())
    }

    /// Takes the function at `slot`:`function` off the bus, its BARs
    /// unmapped and their space free again.
    pub fn remove(&mut self, slot: u8, function: u8) -> Option<SharedPciDevice> {
        let device = self.root.remove(slot, function)?;
        if let Some(at) = self
            .placed
            .iter()
            .position(|p| (p.slot, p.function) == (slot, function))
        {
            let placed = self.placed.remove(at);
            self.free(&placed.bars);
        }
        Some(device)
    }
}

/// Maps each BAR of `p` where it was placed.
fn map_bars(mapper: &dyn BarMapper, p: &Placed) -> Result<(), Error> {
    for &bar in &p.bars {
        let parts = p
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bar_parts(bar.index);
        mapper
            .map(&p.device, bar, &parts)
            .map_err(|source| Error::Map {
                slot: p.slot,
                function: p.function,
                bar: bar.index,
                addr: bar.base,
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use devices::pci::testing::ConfigFunction;
    use devices::pci::{BarInfo, BarPart, PciConfig};

    use super::*;

    /// Records what is mapped.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl BarMapper for Log {
        fn map(&self, _: &SharedPciDevice, bar: BarRange, _: &[BarPart]) -> io::Result<()> {
            self.0.lock().unwrap().push(format!("map {:#x}", bar.base));
            Ok(())
        }
        fn unmap(&self, bar: BarRange, _: &[BarPart]) -> io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("unmap {:#x}", bar.base));
            Ok(())
        }
    }

    fn dev(size: u64) -> SharedPciDevice {
        let mut cfg = PciConfig::new(0x8086, 0x10ca, (2, 0, 0), 1);
        cfg.add_bar(BarInfo {
            index: 0,
            size,
            kind: BarKind::Mem32,
            prefetchable: false,
        });
        Arc::new(Mutex::new(ConfigFunction(cfg)))
    }

    fn builder(log: Arc<Log>) -> PciBuilder {
        let windows = Windows {
            io: (0x1000, 0x1000),
            mmio32: (0xc000_0000, 0x10_0000),
            mmio64: (1 << 36, 1 << 30),
        };
        PciBuilder::new(log, windows).unwrap()
    }

    #[test]
    fn hot_added_functions_share_the_windows_and_give_space_back() {
        let log = Arc::new(Log::default());
        let mut pci = builder(log.clone());
        pci.add(5, 0, dev(0x8_0000)).unwrap();
        let root = pci.build().unwrap();
        assert_eq!(*log.0.lock().unwrap(), ["map 0xc0000000"]);
        // The next one goes after the boot-time BAR, mapped at once.
        pci.hot_add(6, 0, dev(0x4_0000)).unwrap();
        assert_eq!(log.0.lock().unwrap()[1], "map 0xc0080000");
        // The window is full now: refused, and the slot stays free.
        let e = pci.hot_add(7, 0, dev(0x8_0000)).unwrap_err();
        assert!(matches!(e, Error::NoRoom { slot: 7, .. }), "{e}");
        assert_eq!(root.functions_of(7), 0);
        // A slot in use is refused.
        assert!(matches!(
            pci.hot_add(6, 0, dev(0x1000)),
            Err(Error::Slot { slot: 6, .. })
        ));
        // Removed: unmapped, and its space is free for the next one.
        assert!(pci.remove(6, 0).is_some());
        assert_eq!(log.0.lock().unwrap()[2], "unmap 0xc0080000");
        assert!(pci.remove(6, 0).is_none());
        pci.hot_add(7, 0, dev(0x4_0000)).unwrap();
        assert_eq!(log.0.lock().unwrap()[3], "map 0xc0080000");
        assert_eq!(root.functions_of(7), 1);
    }
}
