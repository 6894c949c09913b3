//! The ACPI Generic Event Device (GED, `ACPI0013`).
//!
//! Hardware-reduced ACPI has no fixed power button and no GPE blocks: a
//! platform event reaches the guest as an interrupt on the GED, whose `_EVT`
//! method (built in `arch::acpi`) reads which events are pending from this
//! device's status register and notifies the right objects (`\_SB.PWRB` for
//! the power button, the PCI slots for hotplug).
//!
//! The register is one 32-bit word of MMIO: each bit is a [`GedEvent`];
//! reading returns the pending events and clears them (Cloud Hypervisor's
//! GED works the same way). Writes are ignored. [`Ged::notify`] sets bits
//! and raises the interrupt; the VMM keeps an `Arc<Ged>` to call it while
//! the bus holds a [`GedRegister`].

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vm_superio::Trigger;

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;

/// Length of the GED's MMIO register.
pub const GED_REGISTER_LEN: u64 = 4;

/// An event the GED reports; each is one bit of the status register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GedEvent {
    /// The power button was pressed (`Notify(\_SB.PWRB, 0x80)`).
    PowerButton,
    /// PCI slots changed (a device to add or to eject).
    PciSlots,
}

impl GedEvent {
    /// Every event, in bit order.
    pub const ALL: [GedEvent; 2] = [GedEvent::PowerButton, GedEvent::PciSlots];

    /// The event's bit in the status register (what `_EVT` tests).
    pub const fn bit(self) -> u32 {
        match self {
            GedEvent::PowerButton => 1 << 0,
            GedEvent::PciSlots => 1 << 1,
        }
    }
}

/// The GED's state: pending events and its interrupt line.
pub struct Ged {
    pending: AtomicU32,
    irq: IrqLine,
}

impl Ged {
    /// A GED raising `irq` (edge-triggered, active high, as its `_CRS` says).
    pub fn new(irq: IrqLine) -> Arc<Self> {
        Arc::new(Ged {
            pending: AtomicU32::new(0),
            irq,
        })
    }

    /// Marks `event` pending and interrupts the guest. Events of one kind
    /// that arrive before the guest reads the register coalesce.
    pub fn notify(&self, event: GedEvent) -> io::Result<()> {
        self.pending.fetch_or(event.bit(), Ordering::AcqRel);
        self.irq.trigger()
    }

    /// Events set and not yet read by the guest.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Acquire)
    }

    /// What a guest read of the register returns: the pending events, which
    /// are cleared at once.
    fn take(&self) -> u32 {
        self.pending.swap(0, Ordering::AcqRel)
    }
}

/// The GED's MMIO status register as the bus sees it.
pub struct GedRegister(pub Arc<Ged>);

impl BusDevice for GedRegister {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // `_EVT` reads the whole DWORD (its field is DWordAcc); any other
        // access reads zeros and consumes nothing.
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.0.take().to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    fn ged() -> (Arc<Ged>, GedRegister) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ged = Ged::new(IrqLine(irq));
        (ged.clone(), GedRegister(ged))
    }

    fn read(reg: &mut GedRegister, offset: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0xaa; len];
        reg.read(offset, &mut data);
        data
    }

    #[test]
    fn bits_are_distinct() {
        let mut all = 0;
        for e in GedEvent::ALL {
            assert_eq!(e.bit().count_ones(), 1);
            assert_eq!(all & e.bit(), 0, "{e:?}");
            all |= e.bit();
        }
    }

    #[test]
    fn notify_raises_the_line_and_a_read_clears() {
        let (ged, mut reg) = ged();
        assert_eq!(read(&mut reg, 0, 4), [0; 4]);
        ged.notify(GedEvent::PowerButton).unwrap();
        ged.notify(GedEvent::PciSlots).unwrap();
        ged.notify(GedEvent::PowerButton).unwrap();
        assert_eq!(ged.irq.0.read().unwrap(), 3, "one edge per notify");
        assert_eq!(ged.pending(), 0b11);
        assert_eq!(read(&mut reg, 0, 4), [0b11, 0, 0, 0]);
        assert_eq!(read(&mut reg, 0, 4), [0; 4], "read to clear");
        assert_eq!(ged.pending(), 0);
    }

    #[test]
    fn odd_accesses_consume_nothing() {
        let (ged, mut reg) = ged();
        ged.notify(GedEvent::PowerButton).unwrap();
        assert_eq!(read(&mut reg, 0, 1), [0]);
        assert_eq!(read(&mut reg, 2, 2), [0, 0]);
        assert_eq!(read(&mut reg, 0, 8), [0; 8]);
        reg.write(0, &[0xff; 4]);
        assert_eq!(ged.pending(), GedEvent::PowerButton.bit());
    }
}
