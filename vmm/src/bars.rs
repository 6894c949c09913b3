//! Placing PCI BARs in the guest's address space: the VMM's side of
//! [`devices::pci::BarMapper`].
//!
//! Trapped parts become MMIO bus ranges (port-I/O ranges for I/O BARs) that
//! call the device; `Direct` parts (a VF's registers) become KVM memory
//! slots so the guest's driver reaches the hardware with no exit; `Notify`
//! parts become ioeventfds. Mapping and unmapping are all-or-nothing: what
//! was done before a step failed is undone.

use std::io;
use std::sync::{Arc, Mutex, Weak};

use devices::bus::{Bus, BusDevice, SharedDevice};
use devices::pci::{BarKind, BarMapper, BarPart, BarRange, SharedPciDevice};
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use vmm_sys_util::eventfd::EventFd;

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
/// It holds the buses weakly: the buses hold the PCI root (its config
/// windows), which holds this mapper, and a strong reference would make a
/// cycle that keeps every PCI device alive after the VM ends, so a VF's
/// VFIO device would never be released and could not go back to its driver.
pub struct KvmBarMapper {
    vm: Arc<kvm_ioctls::VmFd>,
    pio: Weak<Bus>,
    mmio: Weak<Bus>,
    slots: Arc<Mutex<MemorySlots>>,
}

/// One piece of a mapped BAR, done or to be undone.
enum Piece<'a> {
    /// A trapped range on the BAR's bus: (BAR offset, guest address, length).
    Trap { offset: u64, at: u64, len: u64 },
    /// A KVM memory slot.
    Slot {
        at: u64,
        len: u64,
        host: u64,
        readonly: bool,
    },
    /// An ioeventfd.
    Notify { event: &'a EventFd, at: u64 },
}

impl KvmBarMapper {
    /// A mapper adding to `pio`, `mmio` and the VM's memory slots.
    pub fn new(
        vm: Arc<kvm_ioctls::VmFd>,
        pio: &Arc<Bus>,
        mmio: &Arc<Bus>,
        slots: Arc<Mutex<MemorySlots>>,
    ) -> Self {
        KvmBarMapper {
            vm,
            pio: Arc::downgrade(pio),
            mmio: Arc::downgrade(mmio),
            slots,
        }
    }

    fn bus(&self, kind: BarKind) -> io::Result<Arc<Bus>> {
        let bus = if kind == BarKind::Io {
            &self.pio
        } else {
            &self.mmio
        };
        bus.upgrade()
            .ok_or_else(|| io::Error::other("the VM's buses are gone"))
    }

    /// The pieces of `bar`: its trapped ranges, then its parts. I/O BARs
    /// are trapped whole.
    fn pieces<'a>(bar: &BarRange, parts: &'a [BarPart]) -> Vec<Piece<'a>> {
        let trap = |(offset, len)| Piece::Trap {
            offset,
            at: bar.base + offset,
            len,
        };
        if bar.kind == BarKind::Io {
            return vec![trap((0, bar.size))];
        }
        let mut pieces: Vec<Piece> = trapped_ranges(bar.size, parts)
            .into_iter()
            .map(trap)
            .collect();
        pieces.extend(parts.iter().map(|part| match part {
            BarPart::Direct {
                offset,
                len,
                host_addr,
                readonly,
            } => Piece::Slot {
                at: bar.base + offset,
                len: *len,
                host: *host_addr,
                readonly: *readonly,
            },
            BarPart::Notify { offset, event, .. } => Piece::Notify {
                event,
                at: bar.base + offset,
            },
        }));
        pieces
    }

    /// Adds `piece`; a trap's bus device is `trap`.
    fn add(&self, bus: &Bus, piece: &Piece, trap: Option<SharedDevice>) -> io::Result<()> {
        match (piece, trap) {
            (&Piece::Trap { at, len, .. }, Some(dev)) => {
                bus.insert(dev, at, len).map_err(io::Error::other)
            }
            (Piece::Trap { .. }, None) => Ok(()),
            (
                &Piece::Slot {
                    at,
                    len,
                    host,
                    readonly,
                },
                _,
            ) => {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                if readonly {
                    slots.add_readonly(&self.vm, at, len, host)
                } else {
                    slots.add(&self.vm, at, len, host)
                }
            }
            (&Piece::Notify { event, at }, _) => self
                .vm
                .register_ioevent(event, &IoEventAddress::Mmio(at), NoDatamatch)
                .map_err(io::Error::from),
        }
    }

    /// Removes `piece`; for a trap, returns its bus device.
    fn remove(&self, bus: &Bus, piece: &Piece) -> io::Result<Option<SharedDevice>> {
        match *piece {
            Piece::Trap { at, .. } => bus.remove(at).map(Some).map_err(io::Error::other),
            Piece::Slot { at, .. } => {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                slots.remove(&self.vm, at).map(|()| None)
            }
            Piece::Notify { event, at } => self
                .vm
                .unregister_ioevent(event, &IoEventAddress::Mmio(at), NoDatamatch)
                .map(|()| None)
                .map_err(io::Error::from),
        }
    }
}

impl BarMapper for KvmBarMapper {
    fn map(&self, device: &SharedPciDevice, bar: BarRange, parts: &[BarPart]) -> io::Result<()> {
        let bus = self.bus(bar.kind)?;
        let pieces = Self::pieces(&bar, parts);
        for (done, piece) in pieces.iter().enumerate() {
            let trap = match *piece {
                Piece::Trap { offset, .. } => Some(Arc::new(Mutex::new(BarRegion {
                    device: device.clone(),
                    bar: bar.index,
                    base_offset: offset,
                })) as SharedDevice),
                _ => None,
            };
            if let Err(e) = self.add(&bus, piece, trap) {
                for undo in pieces[..done].iter().rev() {
                    if let Err(u) = self.remove(&bus, undo) {
                        log::error!(
                            "BAR{} at {:#x}: cannot undo a partial map: {u}",
                            bar.index,
                            bar.base
                        );
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn unmap(&self, bar: BarRange, parts: &[BarPart]) -> io::Result<()> {
        let bus = self.bus(bar.kind)?;
        let pieces = Self::pieces(&bar, parts);
        let mut removed = Vec::new();
        for piece in &pieces {
            match self.remove(&bus, piece) {
                Ok(trap) => removed.push((piece, trap)),
                Err(e) => {
                    for (undo, trap) in removed.into_iter().rev() {
                        if let Err(u) = self.add(&bus, undo, trap) {
                            log::error!(
                                "BAR{} at {:#x}: cannot undo a partial unmap: {u}",
                                bar.index,
                                bar.base
                            );
                        }
                    }
                    return Err(e);
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
            readonly: false,
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

    #[test]
    fn a_map_that_fails_half_way_leaves_nothing_behind() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("no /dev/kvm: skipped");
            return;
        };
        let vm = Arc::new(kvm.create_vm().unwrap());
        let (pio, mmio) = (Arc::new(Bus::new()), Arc::new(Bus::new()));
        let slots = Arc::new(Mutex::new(MemorySlots::default()));
        let mapper = KvmBarMapper::new(vm.clone(), &pio, &mmio, slots.clone());
        let ram =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 0x3000)])
                .unwrap();
        let host = vm_memory::GuestMemoryBackend::get_host_address(&ram, vm_memory::GuestAddress(0))
            .unwrap() as u64;
        let part = |offset| BarPart::Direct {
            offset,
            len: 0x1000,
            host_addr: host + offset,
            readonly: false,
        };
        // BAR: a trapped page, then two direct pages; the last collides
        // with a slot already there.
        let parts = [part(0x1000), part(0x2000)];
        let bar = BarRange {
            index: 0,
            kind: BarKind::Mem32,
            base: 0xd000_0000,
            size: 0x3000,
        };
        let blocker = 0xd000_2000;
        slots
            .lock()
            .unwrap()
            .add(&vm, blocker, 0x1000, host)
            .unwrap();
        let device: SharedPciDevice = Arc::new(Mutex::new(devices::pci::HostBridge::new()));
        assert!(mapper.map(&device, bar, &parts).is_err());
        // The trap and the first slot were undone: with the blocker gone
        // the same map succeeds, and so does unmapping it.
        slots.lock().unwrap().remove(&vm, blocker).unwrap();
        mapper.map(&device, bar, &parts).unwrap();
        mapper.unmap(bar, &parts).unwrap();
        assert!(mmio.remove(bar.base).is_err(), "nothing left on the bus");
    }
}
