//! Address-range dispatch for port I/O and MMIO.
//!
//! A [`Bus`] maps non-overlapping `[base, base + len)` ranges to devices. The
//! range map is behind a `RwLock` that is never held while a device is
//! locked, so a device may change the bus (a PCI BAR move) from inside an
//! access without deadlock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable through a [`Bus`].
pub trait BusDevice: Send {
    /// Reads `data.len()` bytes at `offset` from the start of the range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` from the start of the range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A shared, lockable bus device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors of bus range management.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The new range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange { base: u64, len: u64 },
    /// The new range overlaps one already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps {other_base:#x}+{other_len:#x}")]
    Overlap {
        base: u64,
        len: u64,
        other_base: u64,
        other_len: u64,
    },
    /// No range starts at this address.
    #[error("no bus range at {0:#x}")]
    NotFound(u64),
}

#[derive(Clone)]
struct Range {
    len: u64,
    device: SharedDevice,
}

/// A set of device ranges on one address space (port I/O or MMIO).
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Range>>,
}

impl Bus {
    /// Creates an empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device` at `[base, base + len)`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), Error> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(Error::InvalidRange { base, len });
        }
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        let end = base + len;
        let before = ranges.range(..end).next_back();
        if let Some((&b, r)) = before {
            if b + r.len > base {
                return Err(Error::Overlap {
                    base,
                    len,
                    other_base: b,
                    other_len: r.len,
                });
            }
        }
        ranges.insert(base, Range { len, device });
        Ok(())
    }

    /// Removes the range starting at `base` and returns its device.
    pub fn remove(&self, base: u64) -> Result<SharedDevice, Error> {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        ranges
            .remove(&base)
            .map(|r| r.device)
            .ok_or(Error::NotFound(base))
    }

    fn lookup(&self, addr: u64) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let (&base, range) = ranges.range(..=addr).next_back()?;
        (addr - base < range.len).then(|| (addr - base, range.device.clone()))
    }

    /// Dispatches a read; returns false (and leaves `data` alone) when no
    /// device claims `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.lookup(addr) {
            Some((offset, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.lookup(addr) {
            Some((offset, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo {
        last: Option<(u64, Vec<u8>)>,
    }
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last = Some((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_offset_within_range() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        let mut b = [0u8; 2];
        assert!(bus.read(0x105, &mut b));
        assert_eq!(b, [5, 5]);
        assert!(bus.write(0x10f, &[7]));
        assert_eq!(dev.lock().unwrap().last, Some((0xf, vec![7])));
        assert!(!bus.read(0x110, &mut b));
        assert!(!bus.read(0xff, &mut b));
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        assert!(matches!(
            bus.insert(dev.clone(), 0x10f, 1),
            Err(Error::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0xf0, 0x11),
            Err(Error::Overlap { .. })
        ));
        assert!(bus.insert(dev.clone(), 0xf0, 0x10).is_ok());
        assert!(bus.insert(dev.clone(), 0x110, 0x10).is_ok());
        assert_eq!(
            bus.insert(dev.clone(), 0x200, 0).err(),
            Some(Error::InvalidRange {
                base: 0x200,
                len: 0
            })
        );
        assert!(bus.insert(dev, u64::MAX, 2).is_err());
    }

    #[test]
    fn remove_frees_the_range() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        bus.remove(0x100).unwrap();
        assert!(!bus.write(0x100, &[1]));
        assert!(matches!(bus.remove(0x100), Err(Error::NotFound(0x100))));
        bus.insert(dev, 0x108, 0x10).unwrap();
    }
}
