//! The CMOS RTC (MC146818, ports 0x70/0x71, IRQ 8) as Linux's `rtc_cmos`
//! drives it.
//!
//! - Time is the host's clock plus an offset the guest sets by writing the
//!   clock registers (the host's clock never changes). Register B picks
//!   BCD or binary and 12- or 24-hour; with its SET bit the clock holds
//!   still while the guest writes a new time, which takes effect when SET
//!   is cleared (Linux's `mc146818_set_time`).
//! - Register A's update-in-progress bit is set for the last 244 µs of
//!   every second, as on the chip, so readers that wait for it see it move.
//! - Register C holds the periodic (PF), alarm (AF) and update-ended (UF)
//!   flags and IRQF; reading it clears them. IRQ 8 is raised (an edge on
//!   an [`IrqLine`]) when IRQF goes from 0 to 1, that is when a flag is
//!   set whose enable bit (PIE, AIE, UIE in register B) is set.
//! - Interrupts come from a timerfd ([`Cmos::timer_fd`]) that the VMM's
//!   event loop watches and hands back with [`Cmos::timer_expired`]. It is
//!   armed only while an enabled interrupt can next become pending: an idle
//!   guest costs no wakeups.
//!
//! The rest of the 128 bytes is plain RAM (the alarm registers 1, 3, 5 too).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use log::warn;
use vm_superio::Trigger;
use vmm_sys_util::timerfd::TimerFd;

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;

/// The index and data ports (`arch::layout::RTC_PORT`).
pub const CMOS_PORT: u64 = 0x70;
/// Ports used.
pub const CMOS_LEN: u64 = 2;
/// The RTC's ISA IRQ, GSI 8 on the IOAPIC (`arch::layout::RTC_IRQ`).
pub const RTC_IRQ: u32 = 8;

const REG_SECONDS: u8 = 0x00;
const REG_ALARM_SECONDS: u8 = 0x01;
const REG_MINUTES: u8 = 0x02;
const REG_ALARM_MINUTES: u8 = 0x03;
const REG_HOURS: u8 = 0x04;
const REG_ALARM_HOURS: u8 = 0x05;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Register A: update in progress.
const A_UIP: u8 = 0x80;
/// Register A at power-on: 32.768 kHz time base, 1024 Hz periodic rate.
const A_DEFAULT: u8 = 0x26;
/// Register A: the rate-select bits.
const A_RATE: u8 = 0x0f;
/// Register B: hold the clock to set it.
const B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable.
const B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable.
const B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
const B_UIE: u8 = 0x10;
/// Register B: binary (not BCD) data mode.
const B_DM_BINARY: u8 = 0x04;
/// Register B: 24-hour mode.
const B_24H: u8 = 0x02;
/// Register B at power-on: 24-hour mode, BCD.
const B_DEFAULT: u8 = B_24H;
/// Register C: an enabled flag is set.
const C_IRQF: u8 = 0x80;
/// Register C: periodic, alarm and update-ended flags.
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
/// Register D: valid RAM and time.
const D_VRT: u8 = 0x80;
/// An alarm register value that matches any time.
const ALARM_DONT_CARE: u8 = 0xc0;
/// In 12-hour mode, the PM bit of the hours register.
const HOURS_PM: u8 = 0x80;

const NANOS: u128 = 1_000_000_000;
/// How long before each second's update UIP is set (8 periods of 32 kHz).
const UIP_NANOS: u128 = NANOS * 8 / 32768;
/// Seconds of one day: the alarm pattern repeats at most this often.
const DAY: u64 = 86_400;

/// The time source: nanoseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> u128 + Send>;

/// The host's clock.
pub fn host_clock() -> Clock {
    Box::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    })
}

/// The CMOS RTC and its RAM.
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    clock: Clock,
    /// Guest time minus host time, in nanoseconds.
    offset: i128,
    /// While SET is held: the clock registers as the guest wrote them.
    held: Option<[u8; 10]>,
    /// Register C's PF, AF and UF flags.
    flags: u8,
    /// Whether IRQF is set (cleared by reading register C).
    irqf: bool,
    /// Guest time up to which flags have been brought up to date.
    seen: u128,
    irq: IrqLine,
    timer: TimerFd,
}

impl Cmos {
    /// An RTC at the host's time, raising `irq`.
    pub fn new(irq: IrqLine) -> std::io::Result<Self> {
        Self::with_clock(irq, host_clock())
    }

    /// An RTC reading `clock`.
    pub fn with_clock(irq: IrqLine, clock: Clock) -> std::io::Result<Self> {
        let timer = TimerFd::new().map_err(std::io::Error::from)?;
        // Non-blocking: a vCPU may re-arm it between the event loop's
        // wakeup and its read.
        // SAFETY: F_SETFL on a descriptor we own; no memory is passed.
        if unsafe { libc::fcntl(timer.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ram = [0; 128];
        ram[usize::from(REG_A)] = A_DEFAULT;
        ram[usize::from(REG_B)] = B_DEFAULT;
        let now = clock();
        Ok(Cmos {
            index: 0,
            ram,
            clock,
            offset: 0,
            held: None,
            flags: 0,
            irqf: false,
            seen: now,
            irq,
            timer,
        })
    }

    /// The timerfd the event loop watches; on readiness call
    /// [`Cmos::timer_expired`].
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// Brings the flags up to date, raising IRQ 8 if one became pending.
    pub fn timer_expired(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local buffer; the descriptor
        // is non-blocking, so a timer re-armed since the wakeup reads EAGAIN.
        unsafe { libc::read(self.timer.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        self.update();
    }

    fn reg_b(&self) -> u8 {
        self.ram[usize::from(REG_B)]
    }

    /// Guest time in nanoseconds since the epoch.
    fn now(&self) -> u128 {
        let t = i128::try_from((self.clock)()).unwrap_or(i128::MAX);
        u128::try_from(t.saturating_add(self.offset)).unwrap_or(0)
    }

    /// The clock registers (0..=9 and the century, at index 0 here being
    /// register 0 and so on; the century is returned separately) for
    /// `secs`, in the current data and hour modes.
    fn encode(&self, secs: u64) -> ([u8; 10], u8) {
        let t = civil_time(secs);
        let b = self.reg_b();
        let enc = |v: u8| if b & B_DM_BINARY != 0 { v } else { bcd(v) };
        let hours = if b & B_24H != 0 {
            enc(t.hour)
        } else {
            let h12 = match t.hour % 12 {
                0 => 12,
                h => h,
            };
            enc(h12) | if t.hour >= 12 { HOURS_PM } else { 0 }
        };
        let mut r = [0u8; 10];
        r[usize::from(REG_SECONDS)] = enc(t.second);
        r[usize::from(REG_MINUTES)] = enc(t.minute);
        r[usize::from(REG_HOURS)] = hours;
        r[usize::from(REG_WEEKDAY)] = enc(t.weekday);
        r[usize::from(REG_DAY)] = enc(t.day);
        r[usize::from(REG_MONTH)] = enc(t.month);
        r[usize::from(REG_YEAR)] = enc((t.year % 100) as u8);
        for alarm in [REG_ALARM_SECONDS, REG_ALARM_MINUTES, REG_ALARM_HOURS] {
            r[usize::from(alarm)] = self.ram[usize::from(alarm)];
        }
        (r, enc((t.year / 100).min(99) as u8))
    }

    /// The time the clock registers `r` and `century` say, if valid.
    fn decode(&self, r: &[u8; 10], century: u8) -> Option<u64> {
        let b = self.reg_b();
        let dec = |v: u8| {
            if b & B_DM_BINARY != 0 {
                Some(v)
            } else {
                from_bcd(v)
            }
        };
        let raw_hours = r[usize::from(REG_HOURS)];
        let hour = if b & B_24H != 0 {
            dec(raw_hours)?
        } else {
            let h = dec(raw_hours & !HOURS_PM)?;
            if !(1..=12).contains(&h) {
                return None;
            }
            h % 12 + if raw_hours & HOURS_PM != 0 { 12 } else { 0 }
        };
        let year = u32::from(dec(century)?) * 100 + u32::from(dec(r[usize::from(REG_YEAR)])?);
        days_from_civil(
            year,
            dec(r[usize::from(REG_MONTH)])?,
            dec(r[usize::from(REG_DAY)])?,
        )?
        .checked_mul(DAY)?
        .checked_add(seconds_of_day(
            hour,
            dec(r[usize::from(REG_MINUTES)])?,
            dec(r[usize::from(REG_SECONDS)])?,
        )?)
    }

    /// Sets the guest's clock to `secs`, starting a fresh second now.
    fn set_time(&mut self, secs: u64) {
        let host = i128::try_from((self.clock)()).unwrap_or(i128::MAX);
        self.offset = i128::from(secs) * NANOS as i128 - host;
        self.seen = self.now();
    }

    /// Sets the flags for what happened between `self.seen` and now, and
    /// raises the interrupt if an enabled one became pending; then re-arms
    /// the timer for the next.
    fn update(&mut self) {
        let now = self.now();
        let held = self.reg_b() & B_SET != 0;
        if now > self.seen && !held {
            let first = (self.seen / NANOS) as u64 + 1;
            let last = (now / NANOS) as u64;
            if last >= first {
                self.flags |= C_UF;
                // The alarm pattern repeats daily: a day of seconds covers
                // every match in a longer gap.
                let from = first.max(last.saturating_sub(DAY - 1));
                if (from..=last).any(|s| self.alarm_matches(s)) {
                    self.flags |= C_AF;
                }
            }
            if let Some(period) = self.period() {
                if now / period > self.seen / period {
                    self.flags |= C_PF;
                }
            }
        }
        self.seen = self.seen.max(now);
        let pending = self.flags & self.reg_b() & (C_PF | C_AF | C_UF) != 0;
        if pending && !self.irqf {
            self.irqf = true;
            if let Err(e) = self.irq.trigger() {
                warn!("rtc: cannot raise IRQ {RTC_IRQ}: {e}");
            }
        }
        self.arm_timer(now);
    }

    /// Whether the alarm registers match second `secs`.
    fn alarm_matches(&self, secs: u64) -> bool {
        let (r, _) = self.encode(secs);
        [
            (REG_ALARM_SECONDS, REG_SECONDS),
            (REG_ALARM_MINUTES, REG_MINUTES),
            (REG_ALARM_HOURS, REG_HOURS),
        ]
        .iter()
        .all(|&(alarm, time)| {
            let a = self.ram[usize::from(alarm)];
            a & ALARM_DONT_CARE == ALARM_DONT_CARE || a == r[usize::from(time)]
        })
    }

    /// The periodic interrupt's period in nanoseconds, if the rate selects one.
    fn period(&self) -> Option<u128> {
        // Rates 1 and 2 are 256 and 128 Hz, the same as rates 8 and 9.
        let rate = match self.ram[usize::from(REG_A)] & A_RATE {
            0 => return None,
            r @ 1..=2 => r + 7,
            r => r,
        };
        Some((NANOS << (rate - 1)) / 32768)
    }

    /// Arms the timer for the next instant an enabled interrupt can become
    /// pending, or disarms it if none can (IRQF already set, nothing
    /// enabled, or the clock held).
    fn arm_timer(&mut self, now: u128) {
        let b = self.reg_b();
        let mut next: Option<u128> = None;
        if !self.irqf && b & B_SET == 0 {
            if b & (B_UIE | B_AIE) != 0 {
                next = Some((now / NANOS + 1) * NANOS);
            }
            if let (true, Some(period)) = (b & B_PIE != 0, self.period()) {
                let tick = (now / period + 1) * period;
                next = Some(next.map_or(tick, |n| n.min(tick)));
            }
        }
        let result = match next {
            // At least 1 ns: a zero duration would disarm the timer.
            Some(at) => {
                let wait = Duration::from_nanos(u64::try_from(at - now).unwrap_or(u64::MAX));
                self.timer.reset(wait.max(Duration::from_nanos(1)), None)
            }
            None => self.timer.clear(),
        };
        if let Err(e) = result {
            warn!("rtc: cannot arm the timer: {e}");
        }
    }

    fn read_reg(&mut self, reg: u8) -> u8 {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                if let Some(r) = &self.held {
                    return match reg {
                        REG_CENTURY => self.ram[usize::from(REG_CENTURY)],
                        _ => r[usize::from(reg)],
                    };
                }
                let (r, century) = self.encode((self.now() / NANOS) as u64);
                match reg {
                    REG_CENTURY => century,
                    _ => r[usize::from(reg)],
                }
            }
            REG_A => {
                let b = self.reg_b();
                let uip = b & B_SET == 0 && self.now() % NANOS >= NANOS - UIP_NANOS;
                self.ram[usize::from(REG_A)] | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                self.update();
                let v = self.flags | if self.irqf { C_IRQF } else { 0 };
                self.flags = 0;
                self.irqf = false;
                self.arm_timer(self.now());
                v
            }
            REG_D => D_VRT,
            r => self.ram[usize::from(r & 0x7f)],
        }
    }

    fn write_reg(&mut self, reg: u8, v: u8) {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => self.write_clock(reg, v),
            REG_A => {
                self.update();
                self.ram[usize::from(REG_A)] = v & !A_UIP;
                self.update();
            }
            REG_B => self.write_b(v),
            REG_C | REG_D => {}
            r => self.ram[usize::from(r & 0x7f)] = v,
        }
    }

    fn write_b(&mut self, v: u8) {
        self.update();
        let old = self.reg_b();
        // Setting SET also clears UIE, as on the chip.
        let v = if v & B_SET != 0 { v & !B_UIE } else { v };
        if old & B_SET == 0 && v & B_SET != 0 {
            let (r, century) = self.encode((self.now() / NANOS) as u64);
            self.ram[usize::from(REG_CENTURY)] = century;
            self.held = Some(r);
        }
        self.ram[usize::from(REG_B)] = v;
        if old & B_SET != 0 && v & B_SET == 0 {
            if let Some(r) = self.held.take() {
                match self.decode(&r, self.ram[usize::from(REG_CENTURY)]) {
                    Some(secs) => self.set_time(secs),
                    None => {
                        warn!("rtc: guest set an invalid time {r:02x?}; the clock keeps its time")
                    }
                }
            }
        }
        self.update();
    }

    fn write_clock(&mut self, reg: u8, v: u8) {
        if let Some(r) = &mut self.held {
            match reg {
                REG_CENTURY => self.ram[usize::from(REG_CENTURY)] = v,
                _ => r[usize::from(reg)] = v,
            }
            return;
        }
        // A write while the clock runs sets that field at once, keeping
        // the phase of the current second.
        self.update();
        let now = self.now();
        let (mut r, mut century) = self.encode((now / NANOS) as u64);
        match reg {
            REG_CENTURY => century = v,
            _ => r[usize::from(reg)] = v,
        }
        match self.decode(&r, century) {
            Some(secs) => {
                let host = i128::try_from((self.clock)()).unwrap_or(i128::MAX);
                let phase = (now % NANOS) as i128;
                self.offset = i128::from(secs) * NANOS as i128 + phase - host;
                self.seen = self.now();
            }
            None => warn!(
                "rtc: guest wrote {v:#04x} to clock register {reg:#04x}, not a valid time; ignored"
            ),
        }
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
            _ => self.write_reg(self.index, v),
        }
    }
}

/// The RTC's timer on the VMM's event loop.
pub struct CmosTimer(pub Arc<Mutex<Cmos>>);

impl CmosTimer {
    fn cmos(&self) -> std::sync::MutexGuard<'_, Cmos> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MutEventSubscriber for CmosTimer {
    fn init(&mut self, ops: &mut EventOps) {
        let fd = self.cmos().timer_fd();
        if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
            log::error!("rtc: cannot watch the timer: {e:?}");
        }
    }

    fn process(&mut self, _: Events, _: &mut EventOps) {
        self.cmos().timer_expired();
    }
}

fn bcd(v: u8) -> u8 {
    (v / 10) << 4 | (v % 10)
}

fn from_bcd(v: u8) -> Option<u8> {
    let (hi, lo) = (v >> 4, v & 0x0f);
    (hi < 10 && lo < 10).then_some(hi * 10 + lo)
}

fn seconds_of_day(hour: u8, minute: u8, second: u8) -> Option<u64> {
    (hour < 24 && minute < 60 && second < 60)
        .then(|| u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second))
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
/// civil-from-days).
fn civil_time(secs: u64) -> CivilTime {
    let days = secs / DAY;
    let rem = secs % DAY;
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

/// Days since the epoch of a valid UTC date from 1970 on (Howard
/// Hinnant's days-from-civil).
fn days_from_civil(year: u32, month: u8, day: u8) -> Option<u64> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EventFd;

    /// 2026-11-18 11:06:40 UTC, a Wednesday.
    const T: u64 = 1_795_000_000;

    struct Rig {
        cmos: Cmos,
        irq: EventFd,
        now: Arc<AtomicU64>,
    }

    impl Rig {
        /// An RTC whose clock is `secs` plus what `advance` adds.
        fn at(secs: u64) -> Rig {
            let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
            let now = Arc::new(AtomicU64::new(secs * 1_000_000_000));
            let clock = {
                let now = now.clone();
                Box::new(move || u128::from(now.load(Ordering::Relaxed)))
            };
            let cmos = Cmos::with_clock(IrqLine(irq.try_clone().unwrap()), clock).unwrap();
            Rig { cmos, irq, now }
        }

        fn advance_ms(&self, ms: u64) {
            self.now.fetch_add(ms * 1_000_000, Ordering::Relaxed);
        }

        fn reg(&mut self, r: u8) -> u8 {
            self.cmos.write(0, &[r]);
            let mut b = [0u8];
            self.cmos.read(1, &mut b);
            b[0]
        }

        fn set(&mut self, r: u8, v: u8) {
            self.cmos.write(0, &[r]);
            self.cmos.write(1, &[v]);
        }

        fn irqs(&self) -> u64 {
            self.irq.read().unwrap_or(0)
        }

        fn time(&mut self) -> Vec<u8> {
            [9, 8, 7, 6, 4, 2, 0, 0x32]
                .iter()
                .map(|&r| self.reg(r))
                .collect()
        }
    }

    #[test]
    fn clock_registers_are_bcd_utc_by_default() {
        let mut c = Rig::at(T);
        assert_eq!(c.time(), [0x26, 0x11, 0x18, 4, 0x11, 0x06, 0x40, 0x20]);
        let mut e = Rig::at(0);
        assert_eq!(e.time(), [0x70, 1, 1, 5, 0, 0, 0, 0x19]);
        assert_eq!(c.reg(REG_B), B_24H);
        assert_eq!(c.reg(REG_D), D_VRT);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut c = Rig::at(T + 2 * 3600); // 13:06:40
        c.set(REG_B, B_DM_BINARY | B_24H);
        assert_eq!(c.time(), [26, 11, 18, 4, 13, 6, 40, 20]);
        c.set(REG_B, 0);
        assert_eq!(c.reg(REG_HOURS), HOURS_PM | 0x01);
        let mut m = Rig::at(T - 11 * 3600); // 00:06:40
        m.set(REG_B, 0);
        assert_eq!(m.reg(REG_HOURS), 0x12, "midnight is 12 AM");
    }

    #[test]
    fn update_in_progress_in_the_last_244us_of_each_second() {
        let mut c = Rig::at(T);
        assert_eq!(c.reg(REG_A), A_DEFAULT);
        c.now.fetch_add(999_800_000, Ordering::Relaxed);
        assert_eq!(c.reg(REG_A), A_DEFAULT | A_UIP);
        assert_eq!(
            c.reg(0x8a),
            A_DEFAULT | A_UIP,
            "NMI-mask bit is not part of the index"
        );
        c.now.fetch_add(300_000, Ordering::Relaxed);
        assert_eq!(c.reg(REG_A), A_DEFAULT);
        c.set(REG_A, 0xff);
        assert_eq!(c.reg(REG_A) & !A_UIP, 0x7f, "UIP is read-only");
    }

    #[test]
    fn set_holds_the_clock_and_the_new_time_starts_when_released() {
        let mut c = Rig::at(T);
        c.set(REG_B, B_24H | B_SET);
        // 2030-01-02 03:04:05, as Linux's mc146818_set_time writes it.
        for (r, v) in [
            (0, 0x05),
            (2, 0x04),
            (4, 0x03),
            (7, 0x02),
            (8, 0x01),
            (9, 0x30),
        ] {
            c.set(r, v);
        }
        c.advance_ms(5000);
        assert_eq!(c.reg(REG_SECONDS), 0x05, "held");
        assert_eq!(c.reg(REG_A) & A_UIP, 0, "no updates while held");
        c.set(REG_B, B_24H);
        assert_eq!(c.time(), [0x30, 0x01, 0x02, 4, 0x03, 0x04, 0x05, 0x20]);
        c.advance_ms(1500);
        assert_eq!(c.reg(REG_SECONDS), 0x06, "runs from the new time");
        // The host's clock is not changed: only the guest's offset.
        assert_eq!(
            c.now.load(Ordering::Relaxed),
            T * 1_000_000_000 + 6_500_000_000
        );
    }

    #[test]
    fn invalid_times_are_ignored() {
        let mut c = Rig::at(T);
        c.set(REG_SECONDS, 0x99);
        c.set(REG_MONTH, 0x13);
        c.set(REG_B, B_24H | B_SET);
        c.set(REG_DAY, 0x31);
        c.set(REG_MONTH, 0x02);
        c.set(REG_B, B_24H);
        assert_eq!(c.time(), [0x26, 0x11, 0x18, 4, 0x11, 0x06, 0x40, 0x20]);
        // A valid single-field write while running takes effect.
        c.set(REG_MINUTES, 0x30);
        assert_eq!(c.reg(REG_MINUTES), 0x30);
        assert_eq!(c.reg(REG_SECONDS), 0x40);
    }

    #[test]
    fn update_ended_interrupt_each_second_and_flags_clear_on_read() {
        let mut c = Rig::at(T);
        assert_eq!(c.reg(REG_C), 0);
        c.set(REG_B, B_24H | B_UIE);
        assert_eq!(c.irqs(), 0);
        assert!(
            c.cmos.timer.is_armed().unwrap(),
            "armed for the next second"
        );
        c.advance_ms(1000);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 1);
        assert!(
            !c.cmos.timer.is_armed().unwrap(),
            "no wakeups while IRQF is set"
        );
        c.advance_ms(1000);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 0, "one edge until register C is read");
        // PF follows the default 1024 Hz rate whether or not PIE is set.
        assert_eq!(c.reg(REG_C), C_IRQF | C_PF | C_UF);
        assert_eq!(c.reg(REG_C), 0, "read clears");
        assert!(c.cmos.timer.is_armed().unwrap());
    }

    #[test]
    fn alarm_fires_at_its_time_only() {
        let mut c = Rig::at(T); // 11:06:40
        c.set(REG_ALARM_HOURS, 0x11);
        c.set(REG_ALARM_MINUTES, 0x06);
        c.set(REG_ALARM_SECONDS, 0x43);
        c.set(REG_B, B_24H | B_AIE);
        c.reg(REG_C);
        for _ in 0..2 {
            c.advance_ms(1000);
            c.cmos.timer_expired();
        }
        assert_eq!(c.irqs(), 0, "UF alone does not interrupt with only AIE");
        c.advance_ms(1000);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 1);
        assert_eq!(c.reg(REG_C), C_IRQF | C_PF | C_AF | C_UF);
        // Don't-care hours and minutes: every minute at :43.
        c.set(REG_ALARM_HOURS, 0xff);
        c.set(REG_ALARM_MINUTES, 0xc0);
        c.advance_ms(59_000);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 0);
        c.advance_ms(1000);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 1);
        // A missed alarm is still flagged after a long gap.
        c.reg(REG_C);
        c.advance_ms(3 * DAY * 1000);
        assert_eq!(c.reg(REG_C) & C_AF, C_AF);
    }

    #[test]
    fn periodic_interrupt_at_the_selected_rate() {
        let mut c = Rig::at(T);
        c.set(REG_A, 0x20 | 0x0f); // 2 Hz
        c.set(REG_B, B_24H | B_PIE);
        c.reg(REG_C);
        c.advance_ms(400);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 0);
        c.advance_ms(200);
        c.cmos.timer_expired();
        assert_eq!(c.irqs(), 1);
        assert_eq!(c.reg(REG_C), C_IRQF | C_PF);
        // Rate 0 stops it; the flag is not set any more.
        c.set(REG_A, 0x20);
        c.advance_ms(2000);
        assert_eq!(c.reg(REG_C) & C_PF, 0);
        assert_eq!(c.cmos.period(), None);
        c.set(REG_A, 0x26);
        assert_eq!(c.cmos.period(), Some(976_562), "1024 Hz");
        c.set(REG_A, 0x21);
        assert_eq!(c.cmos.period(), Some(3_906_250), "rate 1 is 256 Hz");
    }

    #[test]
    fn enabling_with_a_flag_already_set_interrupts_at_once() {
        let mut c = Rig::at(T);
        c.advance_ms(1000);
        c.set(REG_B, B_24H | B_UIE);
        assert_eq!(c.irqs(), 1);
        assert_eq!(c.reg(REG_C), C_IRQF | C_PF | C_UF);
    }

    #[test]
    fn nothing_enabled_means_no_timer() {
        let mut c = Rig::at(T);
        c.advance_ms(5000);
        c.reg(REG_C);
        assert!(!c.cmos.timer.is_armed().unwrap());
        c.set(REG_B, B_24H | B_UIE | B_SET);
        assert_eq!(c.reg(REG_B) & B_UIE, 0, "SET clears UIE");
        assert!(!c.cmos.timer.is_armed().unwrap());
    }

    #[test]
    fn ram_is_storage() {
        let mut c = Rig::at(T);
        c.set(0x40, 0x5a);
        assert_eq!(c.reg(0x40), 0x5a);
        c.set(REG_D, 0);
        assert_eq!(c.reg(REG_D), D_VRT);
        c.cmos.write(5, &[]);
        let mut empty = [];
        c.cmos.read(1, &mut empty);
    }

    #[test]
    fn civil_conversions_round_trip() {
        for secs in [0, 951_782_400, T, 4_102_444_800, 4_107_542_399] {
            let t = civil_time(secs);
            let back = days_from_civil(t.year, t.month, t.day).unwrap() * DAY
                + seconds_of_day(t.hour, t.minute, t.second).unwrap();
            assert_eq!(back, secs);
        }
        assert_eq!(days_from_civil(2000, 2, 29), Some(11_016));
        assert_eq!(days_from_civil(2100, 2, 29), None);
        assert_eq!(days_from_civil(1969, 12, 31), None);
        assert_eq!(from_bcd(0x9a), None);
    }
}
