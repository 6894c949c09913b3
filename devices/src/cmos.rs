//! The CMOS RTC (ports 0x70/0x71): the host's UTC time in BCD, 24-hour
//! mode, with the update-in-progress bit always clear.
//!
//! Linux reads it at boot and on reboot, and waits on the
//! update-in-progress bit; an absent device reads as all-ones, which hangs
//! that wait. Writes to the clock registers are ignored (the guest cannot
//! set the host's time); the rest of the 128 bytes is plain storage.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

/// The index and data ports.
pub const CMOS_PORT: u64 = 0x70;
/// Ports used.
pub const CMOS_LEN: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;
/// Register A: 32.768 kHz time base, 1024 Hz rate, UIP clear.
const REG_A_VALUE: u8 = 0x26;
/// Register B: 24-hour mode, BCD.
const REG_B_VALUE: u8 = 0x02;
/// Register D: valid RAM and time.
const REG_D_VALUE: u8 = 0x80;

/// The CMOS RTC and its RAM.
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    now: fn() -> u64,
}

impl Cmos {
    /// A CMOS reading the host's clock.
    pub fn new() -> Self {
        Cmos {
            index: 0,
            ram: [0; 128],
            now: || {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            },
        }
    }

    fn read_reg(&self, reg: u8) -> u8 {
        let t = civil_time((self.now)());
        match reg {
            REG_SECONDS => bcd(t.second),
            REG_MINUTES => bcd(t.minute),
            REG_HOURS => bcd(t.hour),
            REG_WEEKDAY => bcd(t.weekday),
            REG_DAY => bcd(t.day),
            REG_MONTH => bcd(t.month),
            REG_YEAR => bcd((t.year % 100) as u8),
            REG_CENTURY => bcd((t.year / 100) as u8),
            REG_A => REG_A_VALUE,
            REG_B => REG_B_VALUE,
            REG_C => 0,
            REG_D => REG_D_VALUE,
            r => self.ram[usize::from(r & 0x7f)],
        }
    }
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = match offset {
                0 => self.index,
                _ => self.read_reg(self.index),
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            // Bit 7 is the NMI mask, not part of the index.
            0 => self.index = v & 0x7f,
            _ if self.index > REG_D && self.index != REG_CENTURY => {
                self.ram[usize::from(self.index)] = v;
            }
            _ => {}
        }
    }
}

fn bcd(v: u8) -> u8 {
    (v / 10) << 4 | (v % 10)
}

struct CivilTime {
    year: u32,
    month: u8,
    day: u8,
    weekday: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// Seconds since the epoch to a UTC calendar date (Howard Hinnant's
/// days-from-civil inverse).
fn civil_time(secs: u64) -> CivilTime {
    let days = secs / 86400;
    let rem = secs % 86400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
    CivilTime {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday; the RTC counts Sunday as 1.
        weekday: ((days + 4) % 7 + 1) as u8,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Cmos {
        Cmos {
            now: match secs {
                0 => || 0,
                _ => || 1_795_000_000, // 2026-11-18 11:06:40 UTC, a Wednesday
            },
            ..Cmos::new()
        }
    }

    fn reg(c: &mut Cmos, r: u8) -> u8 {
        c.write(0, &[r]);
        let mut b = [0u8];
        c.read(1, &mut b);
        b[0]
    }

    #[test]
    fn clock_registers_are_bcd_utc() {
        let mut c = at(1);
        let got: Vec<u8> = [9, 8, 7, 6, 4, 2, 0, 0x32]
            .iter()
            .map(|&r| reg(&mut c, r))
            .collect();
        assert_eq!(got, [0x26, 0x11, 0x18, 4, 0x11, 0x06, 0x40, 0x20]);
        let mut e = at(0);
        assert_eq!(
            (
                reg(&mut e, 9),
                reg(&mut e, 8),
                reg(&mut e, 7),
                reg(&mut e, 6)
            ),
            (0x70, 1, 1, 5)
        );
    }

    #[test]
    fn update_in_progress_is_never_set() {
        let mut c = at(1);
        assert_eq!(reg(&mut c, REG_A) & 0x80, 0);
        assert_eq!(reg(&mut c, REG_D), REG_D_VALUE);
        assert_eq!(
            reg(&mut c, 0x8a) & 0x80,
            0,
            "NMI-mask bit is not part of the index"
        );
    }

    #[test]
    fn ram_is_storage_but_the_clock_is_not_writable() {
        let mut c = at(1);
        c.write(0, &[0x40]);
        c.write(1, &[0x5a]);
        assert_eq!(reg(&mut c, 0x40), 0x5a);
        c.write(0, &[REG_SECONDS]);
        c.write(1, &[0x99]);
        assert_eq!(reg(&mut c, REG_SECONDS), 0x40);
        c.write(5, &[]);
    }
}
