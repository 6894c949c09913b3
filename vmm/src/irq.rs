//! Interrupt plumbing over KVM: the GSI routing table, MSI vectors and
//! PCI INTx pins.
//!
//! KVM's routing table is replaced as a whole on every change, so one
//! [`GsiRouter`] owns it: the in-kernel irqchip's default routes for GSIs
//! 0..24 plus one MSI route per allocated vector. Each vector's eventfd is
//! a KVM irqfd on its GSI: a passthrough device's interrupt goes from the
//! VFIO kernel driver to the guest without passing through userspace.
//!
//! A PCI function's INTx pin is a resampling irqfd on the IOAPIC pin
//! [`arch::layout::pci_intx_gsi`] gives for its slot (the pin the ACPI
//! `_PRT` names): KVM asserts the level on a signal, lowers it at the
//! guest's EOI and signals the resample eventfd, which VFIO takes to
//! unmask the device. No level interrupt reaches userspace.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use devices::interrupt::{InterruptManager, LevelIrq, MsiMessage, MsiVectors};
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// IOAPIC pins; GSIs below this are the irqchip's, above are MSIs.
const IOAPIC_PINS: u32 = 24;
/// KVM's limit on routing entries.
const MAX_GSI: u32 = 4096;

/// Owner of the VM's GSI routing table.
pub struct GsiRouter {
    vm: Arc<VmFd>,
    state: Mutex<RouterState>,
}

struct RouterState {
    msi: BTreeMap<u32, MsiMessage>,
    next_gsi: u32,
}

impl GsiRouter {
    /// A router with the irqchip's default routes.
    pub fn new(vm: Arc<VmFd>) -> Self {
        GsiRouter {
            vm,
            state: Mutex::new(RouterState {
                msi: BTreeMap::new(),
                next_gsi: IOAPIC_PINS,
            }),
        }
    }

    fn allocate(&self, count: usize) -> io::Result<std::ops::Range<u32>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = s.next_gsi;
        let end = u32::try_from(count)
            .ok()
            .and_then(|c| start.checked_add(c))
            .filter(|&end| end <= MAX_GSI)
            .ok_or_else(|| io::Error::other("out of interrupt routes (GSIs)"))?;
        s.next_gsi = end;
        Ok(start..end)
    }

    fn set_msi(&self, gsi: u32, msg: MsiMessage) -> io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.msi.get(&gsi) == Some(&msg) {
            return Ok(());
        }
        s.msi.insert(gsi, msg);
        let table = routing_table(&s.msi)?;
        self.vm.set_gsi_routing(&table).map_err(io::Error::from)
    }
}

fn irqchip_entry(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

/// The full table: KVM's default irqchip routes (see kvm_setup_default_irq_routing)
/// followed by the MSI routes.
fn routing_table(msi: &BTreeMap<u32, MsiMessage>) -> io::Result<KvmIrqRouting> {
    let mut entries = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < 8 {
            entries.push(irqchip_entry(gsi, KVM_IRQCHIP_PIC_MASTER, gsi));
        } else if gsi < 16 {
            entries.push(irqchip_entry(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8));
        }
        entries.push(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    for (&gsi, m) in msi {
        let mut e = kvm_irq_routing_entry {
            gsi,
            type_: KVM_IRQ_ROUTING_MSI,
            ..Default::default()
        };
        e.u.msi.address_lo = m.address as u32;
        e.u.msi.address_hi = (m.address >> 32) as u32;
        e.u.msi.data = m.data;
        entries.push(e);
    }
    KvmIrqRouting::from_entries(&entries).map_err(|e| io::Error::other(format!("{e:?}")))
}

/// A device's MSI vectors: one GSI and one eventfd each.
pub struct KvmMsiVectors {
    router: Arc<GsiRouter>,
    vectors: Vec<Vector>,
    fired: Arc<MsiCounts>,
}

/// How often each vector of a group was raised from userspace (an emulated
/// device's interrupts; a VF's go from the kernel to KVM unseen).
pub struct MsiCounts(Vec<AtomicU64>);

impl MsiCounts {
    /// Per-vector counts.
    pub fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

struct Vector {
    gsi: u32,
    event: EventFd,
    connected: Mutex<bool>,
}

impl MsiVectors for KvmMsiVectors {
    fn len(&self) -> usize {
        self.vectors.len()
    }

    fn set_route(&self, vector: usize, msg: MsiMessage) -> io::Result<()> {
        let v = self.vector(vector)?;
        self.router.set_msi(v.gsi, msg)
    }

    fn set_enabled(&self, vector: usize, enabled: bool) -> io::Result<()> {
        let v = self.vector(vector)?;
        let mut connected = v.connected.lock().unwrap_or_else(|e| e.into_inner());
        if *connected == enabled {
            return Ok(());
        }
        if enabled {
            self.router.vm.register_irqfd(&v.event, v.gsi)?;
        } else {
            self.router.vm.unregister_irqfd(&v.event, v.gsi)?;
        }
        *connected = enabled;
        Ok(())
    }

    fn notifier(&self, vector: usize) -> Option<&EventFd> {
        self.vectors.get(vector).map(|v| &v.event)
    }

    fn trigger(&self, vector: usize) -> io::Result<()> {
        self.vector(vector)?.event.write(1)?;
        if let Some(c) = self.fired.0.get(vector) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl KvmMsiVectors {
    fn vector(&self, index: usize) -> io::Result<&Vector> {
        self.vectors
            .get(index)
            .ok_or_else(|| io::Error::other(format!("no MSI vector {index}")))
    }
}

impl Drop for KvmMsiVectors {
    fn drop(&mut self) {
        for v in &self.vectors {
            if *v.connected.lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = self.router.vm.unregister_irqfd(&v.event, v.gsi);
            }
        }
    }
}

/// A PCI INTx pin: a resampling irqfd on an IOAPIC pin.
pub struct KvmLevelIrq {
    vm: Arc<VmFd>,
    gsi: u32,
    trigger: EventFd,
    resample: EventFd,
    connected: Mutex<bool>,
}

impl LevelIrq for KvmLevelIrq {
    fn gsi(&self) -> u32 {
        self.gsi
    }

    fn trigger(&self) -> &EventFd {
        &self.trigger
    }

    fn resample(&self) -> &EventFd {
        &self.resample
    }

    fn set_enabled(&self, enabled: bool) -> io::Result<()> {
        let mut connected = self.connected.lock().unwrap_or_else(|e| e.into_inner());
        if *connected == enabled {
            return Ok(());
        }
        if enabled {
            self.vm
                .register_irqfd_with_resample(&self.trigger, &self.resample, self.gsi)?;
        } else {
            self.vm.unregister_irqfd(&self.trigger, self.gsi)?;
        }
        *connected = enabled;
        Ok(())
    }
}

impl Drop for KvmLevelIrq {
    fn drop(&mut self) {
        if *self.connected.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = self.vm.unregister_irqfd(&self.trigger, self.gsi);
        }
    }
}

/// Hands out MSI vectors and INTx pins backed by a [`GsiRouter`], and keeps each
/// group's [`MsiCounts`] for the API.
pub struct KvmInterrupts {
    router: Arc<GsiRouter>,
    counts: Mutex<Vec<Arc<MsiCounts>>>,
}

impl KvmInterrupts {
    /// Vectors on `router`.
    pub fn new(router: Arc<GsiRouter>) -> Self {
        KvmInterrupts {
            router,
            counts: Mutex::default(),
        }
    }

    /// The counts of the groups handed out since the last call, in order.
    pub fn take_counts(&self) -> Vec<Arc<MsiCounts>> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl InterruptManager for KvmInterrupts {
    fn intx(&self, slot: u8, pin: u8) -> io::Result<Box<dyn LevelIrq>> {
        Ok(Box::new(KvmLevelIrq {
            vm: self.router.vm.clone(),
            gsi: arch::layout::pci_intx_gsi(slot, pin),
            trigger: EventFd::new(libc::EFD_NONBLOCK)?,
            resample: EventFd::new(libc::EFD_NONBLOCK)?,
            connected: Mutex::new(false),
        }))
    }

    fn msi_vectors(&self, count: usize) -> io::Result<Arc<dyn MsiVectors>> {
        let gsis = self.router.allocate(count)?;
        let vectors = gsis
            .map(|gsi| {
                Ok(Vector {
                    gsi,
                    event: EventFd::new(libc::EFD_NONBLOCK)?,
                    connected: Mutex::new(false),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let fired = Arc::new(MsiCounts(
            (0..vectors.len()).map(|_| AtomicU64::new(0)).collect(),
        ));
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fired.clone());
        Ok(Arc::new(KvmMsiVectors {
            router: self.router.clone(),
            vectors,
            fired,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_irqchip_defaults_and_adds_msis() {
        let mut msi = BTreeMap::new();
        msi.insert(
            24,
            MsiMessage {
                address: 0x1_fee0_1000,
                data: 0x4041,
            },
        );
        let table = routing_table(&msi).unwrap();
        let entries = table.as_slice();
        // 16 PIC + 24 IOAPIC + 1 MSI.
        assert_eq!(entries.len(), 41);
        let last = entries[40];
        assert_eq!((last.gsi, last.type_), (24, KVM_IRQ_ROUTING_MSI));
        // SAFETY: the entry was built as an MSI route.
        let m = unsafe { last.u.msi };
        assert_eq!(
            (m.address_lo, m.address_hi, m.data),
            (0xfee0_1000, 1, 0x4041)
        );
        let pin4: Vec<_> = entries.iter().filter(|e| e.gsi == 4).collect();
        assert_eq!(
            pin4.len(),
            2,
            "ISA IRQ 4 reaches both the PIC and the IOAPIC"
        );
    }
}
