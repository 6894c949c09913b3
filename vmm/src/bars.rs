//! Placing PCI BARs in the guest's address space: the VMM's side of
//! [`devices::pci::BarMapper`].
//!
//! Trapped parts become MMIO bus ranges that call the device; `Direct`
//! parts (a VF's registers) become KVM memory slots so the guest's driver
//! reaches the hardware with no exit; `Notify` parts become ioeventfds.

use std::io;
use std::sync::{Arc, Mutex, Weak};

use devices::bus::{Bus, BusDevice};
use devices::pci::{BarMapper, BarPart, SharedPciDevice};
use kvm_ioctls::{IoEventAddress, NoDatamatch};

use crate::slots::MemorySlots;

/// Forwards trapped accesses to one BAR of a PCI device.
struct BarRegion {
    device: SharedPciDevice,
    bar: usize,
    base_offset: u64,
}

impl BusDevice for BarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut dev = self.device.lock().unwrap_or_else(|e| e.into_inner());
        dev.read_bar(self.bar, self.base_offset + offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut dev = self.device.lock().unwrap_or_else(|e| e.into_inner());
        dev.write_bar(self.bar, self.base_offset + offset, data);
    }
}

/// The trapped stretches of a BAR of `size` bytes: what no Direct part covers.
fn trapped_ranges(size: u64, parts: &[BarPart]) -> Vec<(u64, u64)> {
    let mut direct: Vec<(u64, u64)> = parts
        .iter()
        .filter_map(|p| match p {
            BarPart::Direct { offset, len, .. } => Some((*offset, *len)),
            BarPart::Notify { .. } => None,
        })
        .collect();
    direct.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for (off, len) in direct {
        if off > at {
            out.push((at, off - at));
        }
        at = at.max(off + len);
    }
    if at < size {
        out.push((at, size - at));
    }
    out
}

/// KVM-backed BAR placement.
///
/// It holds the MMIO bus weakly: the bus holds the PCI root (its ECAM
/// window), which holds this mapper, and a strong reference would make a
/// cycle that keeps every PCI device alive after the VM ends, so a VF's
/// VFIO device would never be released and could not go back to its driver.
pub struct KvmBarMapper {
    vm: Arc<kvm_ioctls::VmFd>,
    mmio: Weak<Bus>,
    slots: Arc<Mutex<MemorySlots>>,
}

impl KvmBarMapper {
    /// A mapper adding to `mmio` and the VM's memory slots.
    pub fn new(vm: Arc<kvm_ioctls::VmFd>, mmio: &Arc<Bus>, slots: Arc<Mutex<MemorySlots>>) -> Self {
        KvmBarMapper {
            vm,
            mmio: Arc::downgrade(mmio),
            slots,
        }
    }

    fn mmio(&self) -> io::Result<Arc<Bus>> {
        self.mmio
            .upgrade()
            .ok_or_else(|| io::Error::other("the VM's MMIO bus is gone"))
    }
}

impl BarMapper for KvmBarMapper {
    fn map(
        &self,
        device: &SharedPciDevice,
        bar: usize,
        base: u64,
        size: u64,
        parts: &[BarPart],
    ) -> io::Result<()> {
        let mmio = self.mmio()?;
        for (off, len) in trapped_ranges(size, parts) {
            let region = BarRegion {
                device: device.clone(),
                bar,
                base_offset: off,
            };
            mmio.insert(Arc::new(Mutex::new(region)), base + off, len)
                .map_err(io::Error::other)?;
        }
        for part in parts {
            match part {
                BarPart::Direct {
                    offset,
                    len,
                    host_addr,
                } => {
                    let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.add(&self.vm, base + offset, *len, *host_addr)?;
                }
                BarPart::Notify { offset, event, .. } => {
                    self.vm.register_ioevent(
                        event,
                        &IoEventAddress::Mmio(base + offset),
                        NoDatamatch,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn unmap(&self, base: u64, size: u64, parts: &[BarPart]) -> io::Result<()> {
        let mmio = self.mmio()?;
        for (off, _) in trapped_ranges(size, parts) {
            mmio.remove(base + off).map_err(io::Error::other)?;
        }
        for part in parts {
            match part {
                BarPart::Direct { offset, .. } => {
                    let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.remove(&self.vm, base + offset)?;
                }
                BarPart::Notify { offset, event, .. } => {
                    self.vm.unregister_ioevent(
                        event,
                        &IoEventAddress::Mmio(base + offset),
                        NoDatamatch,
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(offset: u64, len: u64) -> BarPart {
        BarPart::Direct {
            offset,
            len,
            host_addr: 0,
        }
    }

    #[test]
    fn trapped_is_what_direct_parts_leave() {
        assert_eq!(trapped_ranges(0x4000, &[]), [(0, 0x4000)]);
        assert_eq!(
            trapped_ranges(0x4000, &[direct(0, 0x2000), direct(0x3000, 0x1000)]),
            [(0x2000, 0x1000)]
        );
        assert_eq!(
            trapped_ranges(0x4000, &[direct(0x1000, 0x3000)]),
            [(0, 0x1000)]
        );
        assert!(trapped_ranges(0x4000, &[direct(0, 0x4000)]).is_empty());
    }
}
