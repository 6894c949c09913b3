//! Assembling bus 0: functions at the slots the user chose, BARs placed in
//! the 32- and 64-bit windows by their type, and each BAR mapped.

use std::sync::Arc;

use devices::pci::{BarKind, BarMapper, PciRoot, SharedPciDevice};
use vm_allocator::{AddressAllocator, AllocPolicy};

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
    /// (BAR index, guest address, size).
    bars: Vec<(usize, u64, u64)>,
}

/// Collects functions, then builds bus 0.
pub struct PciBuilder {
    root: PciRoot,
    mapper: Arc<dyn BarMapper>,
    mmio32: AddressAllocator,
    mmio64: AddressAllocator,
    placed: Vec<Placed>,
}

impl PciBuilder {
    /// A bus whose BARs go in `mmio32` and `mmio64` ((base, size) each).
    pub fn new(
        mapper: Arc<dyn BarMapper>,
        mmio32: (u64, u64),
        mmio64: (u64, u64),
    ) -> Result<Self, Error> {
        Ok(PciBuilder {
            root: PciRoot::new(mapper.clone()),
            mapper,
            mmio32: AddressAllocator::new(mmio32.0, mmio32.1).map_err(Error::Window)?,
            mmio64: AddressAllocator::new(mmio64.0, mmio64.1).map_err(Error::Window)?,
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
        let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
        let mut bars = Vec::new();
        for bar in dev.bars() {
            let (alloc, window) = match bar.kind {
                BarKind::Mem32 => (&mut self.mmio32, "32-bit"),
                BarKind::Mem64 => (&mut self.mmio64, "64-bit"),
            };
            let range = alloc
                .allocate(bar.size, bar.size.max(4096), AllocPolicy::FirstMatch)
                .map_err(|_| Error::NoRoom {
                    slot,
                    function,
                    bar: bar.index,
                    size: bar.size,
                    window,
                })?;
            dev.set_bar_address(bar.index, range.start());
            bars.push((bar.index, range.start(), bar.size));
        }
        drop(dev);
        self.placed.push(Placed {
            slot,
            function,
            device,
            bars,
        });
        Ok(())
    }

    /// Maps every BAR and returns the bus.
    pub fn build(self) -> Result<PciRoot, Error> {
        for p in &self.placed {
            for &(index, addr, size) in &p.bars {
                let parts = p
                    .device
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .bar_parts(index);
                self.mapper
                    .map(&p.device, index, addr, size, &parts)
                    .map_err(|source| Error::Map {
                        slot: p.slot,
                        function: p.function,
                        bar: index,
                        addr,
                        source,
                    })?;
            }
        }
        Ok(self.root)
    }
}
