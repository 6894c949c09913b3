//! Guest power control: the ACPI sleep/reset register and the i8042 reset
//! line.
//!
//! The FADT (hardware-reduced ACPI) points its sleep-control and reset
//! registers at one I/O port. Per ACPI 6.x section 4.8.3.7 a sleep-control
//! write carries SLP_TYP in bits 2..=4 and SLP_EN in bit 5; the DSDT's
//! `\_S5_` package gives SLP_TYP [`SLP_TYP_S5`]. The reset value is
//! [`RESET_VALUE`].

use crate::bus::BusDevice;

/// SLP_TYP of the S5 (soft off) state in our DSDT.
pub const SLP_TYP_S5: u8 = 5;
/// The value the FADT's reset register is written with.
pub const RESET_VALUE: u8 = 1;
const SLP_EN: u8 = 1 << 5;
/// The i8042 command that pulses the CPU reset line.
const I8042_RESET: u8 = 0xfe;

/// What the guest asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    /// Power off (S5).
    PowerOff,
    /// Reset (reboot).
    Reset,
}

/// Receives the guest's power requests; implemented by the VMM.
pub type PowerHandler = Box<dyn Fn(PowerEvent) + Send>;

/// The ACPI sleep-control/reset register (one byte of port I/O).
pub struct AcpiPower {
    handler: PowerHandler,
}

impl AcpiPower {
    /// The register, reporting to `handler`.
    pub fn new(handler: PowerHandler) -> Self {
        AcpiPower { handler }
    }
}

impl BusDevice for AcpiPower {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Sleep status: "wake" is never set; we never sleep.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (0, Some(&v)) = (offset, data.first()) else {
            return;
        };
        if v == RESET_VALUE {
            (self.handler)(PowerEvent::Reset);
        } else if v & SLP_EN != 0 && (v >> 2) & 0x7 == SLP_TYP_S5 {
            (self.handler)(PowerEvent::PowerOff);
        }
    }
}

/// The i8042 command port (0x64): only the reset command is honoured, so
/// Linux's keyboard-controller reboot fallback works. Reads say "no data,
/// input buffer empty".
pub struct I8042Reset {
    handler: PowerHandler,
}

impl I8042Reset {
    /// The command port, reporting to `handler`.
    pub fn new(handler: PowerHandler) -> Self {
        I8042Reset { handler }
    }
}

impl BusDevice for I8042Reset {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if data.first() == Some(&I8042_RESET) {
            (self.handler)(PowerEvent::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (PowerHandler, Arc<Mutex<Vec<PowerEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Box::new(move |e| s.lock().unwrap().push(e)), seen)
    }

    #[test]
    fn s5_and_reset_values_are_decoded() {
        let (h, seen) = recorder();
        let mut dev = AcpiPower::new(h);
        dev.write(0, &[SLP_TYP_S5 << 2 | SLP_EN]);
        dev.write(0, &[RESET_VALUE]);
        dev.write(0, &[SLP_TYP_S5 << 2]); // SLP_EN clear: nothing
        dev.write(0, &[3 << 2 | SLP_EN]); // S3: not supported, nothing
        dev.write(1, &[RESET_VALUE]);
        dev.write(0, &[]);
        assert_eq!(
            *seen.lock().unwrap(),
            [PowerEvent::PowerOff, PowerEvent::Reset]
        );
    }

    #[test]
    fn i8042_reset_command() {
        let (h, seen) = recorder();
        let mut dev = I8042Reset::new(h);
        dev.write(0, &[0xd1]);
        dev.write(0, &[0xfe]);
        assert_eq!(*seen.lock().unwrap(), [PowerEvent::Reset]);
    }
}
