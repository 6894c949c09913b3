//! The ACPI PCI hotplug controller of bus 0 (the model QEMU's and Cloud
//! Hypervisor's ACPI hotplug use).
//!
//! Four 32-bit MMIO registers, one bit per slot, that the DSDT's methods
//! (built in `arch::acpi`) read and write:
//!
//! | offset | name   | access | meaning |
//! |--------|--------|--------|---------|
//! | 0x0    | `PCIU` | read, clears | slots to check: a device was plugged in (`Notify(Sxx, 1)`) |
//! | 0x4    | `PCID` | read, clears | slots the VMM asks the guest to eject (`Notify(Sxx, 3)`) |
//! | 0x8    | `B0EJ` | write  | the guest ejected these slots (`_EJ0`): the VMM may take them away |
//! | 0xc    | `PRES` | read   | slots holding a device (each slot's `_STA`) |
//!
//! The VMM changes the state through [`PciHotplug`] and tells the guest
//! through the GED (`GedEvent::PciSlots`); it learns of ejects from
//! [`PciHotplug::ejected_event`], an eventfd on its event loop. A vCPU
//! writing `B0EJ` only records the slots: taking a device away (closing a
//! VF, giving it back to the host) is the event loop's work.

use std::io;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;

/// Length of the controller's registers.
pub const PCIHP_REGISTERS_LEN: u64 = 16;
/// `PCIU`'s offset.
pub const PCIU: u64 = 0x0;
/// `PCID`'s offset.
pub const PCID: u64 = 0x4;
/// `B0EJ`'s offset.
pub const B0EJ: u64 = 0x8;
/// `PRES`'s offset.
pub const PRES: u64 = 0xc;

#[derive(Default)]
struct Slots {
    /// Not yet read by the guest: plugged in.
    up: u32,
    /// Not yet read by the guest: to be ejected.
    down: u32,
    /// Holding a device.
    present: u32,
    /// Ejected by the guest, not yet taken by the VMM.
    ejected: u32,
}

/// The controller's state, shared by the VMM and the bus.
pub struct PciHotplug {
    slots: Mutex<Slots>,
    ejected_event: EventFd,
}

fn bit(slot: u8) -> u32 {
    1u32.checked_shl(u32::from(slot)).unwrap_or(0)
}

impl PciHotplug {
    /// A controller with the slots of `present` (a bit per slot) holding
    /// devices.
    pub fn new(present: u32) -> io::Result<Arc<Self>> {
        Ok(Arc::new(PciHotplug {
            slots: Mutex::new(Slots {
                present,
                ..Slots::default()
            }),
            ejected_event: EventFd::new(libc::EFD_NONBLOCK)?,
        }))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A device is now in `slot`: it is present, and the guest's next scan
    /// checks it.
    pub fn plug(&self, slot: u8) {
        let mut s = self.slots();
        s.present |= bit(slot);
        s.up |= bit(slot);
        s.down &= !bit(slot);
    }

    /// Asks the guest to eject `slot` at its next scan.
    pub fn request_eject(&self, slot: u8) {
        self.slots().down |= bit(slot);
    }

    /// Withdraws an eject request the guest has not read yet; whether it
    /// had (then the guest may still eject the slot).
    pub fn cancel_eject(&self, slot: u8) -> bool {
        let mut s = self.slots();
        let unread = s.down & bit(slot) != 0;
        s.down &= !bit(slot);
        !unread
    }

    /// `slot` no longer holds a device.
    pub fn unplugged(&self, slot: u8) {
        let mut s = self.slots();
        s.present &= !bit(slot);
        s.up &= !bit(slot);
        s.down &= !bit(slot);
        s.ejected &= !bit(slot);
    }

    /// Slots holding a device.
    pub fn present(&self) -> u32 {
        self.slots().present
    }

    /// The slots the guest ejected since the last call (the event is read).
    pub fn take_ejected(&self) -> u32 {
        let _ = self.ejected_event.read();
        std::mem::take(&mut self.slots().ejected)
    }

    /// Signalled when the guest ejects a slot.
    pub fn ejected_event(&self) -> &EventFd {
        &self.ejected_event
    }

    fn read(&self, offset: u64) -> u32 {
        let mut s = self.slots();
        match offset {
            PCIU => std::mem::take(&mut s.up),
            PCID => std::mem::take(&mut s.down),
            PRES => s.present,
            _ => 0,
        }
    }

    fn eject(&self, slots: u32) {
        let taken = {
            let mut s = self.slots();
            // Only a slot holding a device can be ejected, and only once.
            let new = slots & s.present & !s.ejected;
            s.ejected |= new;
            new
        };
        if taken != 0 {
            if let Err(e) = self.ejected_event.write(1) {
                log::error!("PCI hotplug: cannot signal an eject: {e}");
            }
        }
    }
}

/// The controller's registers as the MMIO bus sees them.
pub struct PciHotplugRegisters(pub Arc<PciHotplug>);

impl BusDevice for PciHotplugRegisters {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The DSDT's fields are DWordAcc; any other access reads zeros and
        // consumes nothing.
        if offset.is_multiple_of(4) && data.len() == 4 {
            data.copy_from_slice(&self.0.read(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == B0EJ && data.len() == 4 {
            self.0
                .eject(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reg: &mut PciHotplugRegisters, offset: u64) -> u32 {
        let mut data = [0xaa; 4];
        reg.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn eject(reg: &mut PciHotplugRegisters, slots: u32) {
        reg.write(B0EJ, &slots.to_le_bytes());
    }

    #[test]
    fn plug_sets_up_and_present_until_read() {
        let hp = PciHotplug::new(1 << 5).unwrap();
        let mut reg = PciHotplugRegisters(hp.clone());
        assert_eq!(read(&mut reg, PRES), 1 << 5);
        hp.plug(6);
        assert_eq!(read(&mut reg, PCIU), 1 << 6);
        assert_eq!(read(&mut reg, PCIU), 0, "read to clear");
        assert_eq!(read(&mut reg, PRES), 1 << 5 | 1 << 6, "present stays");
        assert_eq!(read(&mut reg, PCID), 0);
    }

    #[test]
    fn eject_of_a_requested_slot_reaches_the_vmm_once() {
        let hp = PciHotplug::new(1 << 6).unwrap();
        let mut reg = PciHotplugRegisters(hp.clone());
        hp.request_eject(6);
        assert_eq!(read(&mut reg, PCID), 1 << 6);
        assert_eq!(read(&mut reg, PCID), 0);
        eject(&mut reg, 1 << 6 | 1 << 9); // slot 9 is empty: ignored
        eject(&mut reg, 1 << 6); // twice: once
        assert_eq!(hp.ejected_event().read().unwrap(), 1);
        hp.ejected_event().write(1).unwrap();
        assert_eq!(hp.take_ejected(), 1 << 6);
        assert_eq!(hp.take_ejected(), 0);
        hp.unplugged(6);
        assert_eq!(read(&mut reg, PRES), 0);
        // Nothing present: an eject does nothing.
        eject(&mut reg, 1 << 6);
        assert_eq!(hp.take_ejected(), 0);
    }

    #[test]
    fn a_cancelled_request_the_guest_never_read_is_gone() {
        let hp = PciHotplug::new(1 << 6).unwrap();
        let mut reg = PciHotplugRegisters(hp.clone());
        hp.request_eject(6);
        assert!(!hp.cancel_eject(6), "not read yet");
        assert_eq!(read(&mut reg, PCID), 0);
        hp.request_eject(6);
        assert_eq!(read(&mut reg, PCID), 1 << 6);
        assert!(hp.cancel_eject(6), "the guest had read it");
    }

    #[test]
    fn odd_accesses_change_nothing() {
        let hp = PciHotplug::new(1 << 3).unwrap();
        let mut reg = PciHotplugRegisters(hp.clone());
        hp.plug(4);
        let mut byte = [0xaa; 1];
        reg.read(PCIU, &mut byte);
        assert_eq!(byte, [0]);
        let mut wide = [0xaa; 8];
        reg.read(PCIU, &mut wide);
        assert_eq!(wide, [0; 8]);
        reg.read(PCIU + 1, &mut [0; 4]);
        reg.write(B0EJ, &[0xff]);
        reg.write(PCIU, &u32::MAX.to_le_bytes());
        reg.write(B0EJ + 1, &u32::MAX.to_le_bytes());
        assert_eq!(hp.take_ejected(), 0);
        assert_eq!(read(&mut reg, PCIU), 1 << 4, "still pending");
        assert_eq!(read(&mut reg, 0x10), 0);
        assert_eq!(bit(32), 0);
    }
}
