//! Counters of the exits vfvm handles in userspace: what the passthrough
//! benchmark reads to show a VF's packets cost no userspace exit.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Exit counters, shared by all vCPUs.
#[derive(Default)]
pub struct ExitCounters {
    io_in: AtomicU64,
    io_out: AtomicU64,
    mmio_read: AtomicU64,
    mmio_write: AtomicU64,
    other: AtomicU64,
}

/// A snapshot of [`ExitCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExitCounts {
    /// Port reads.
    pub io_in: u64,
    /// Port writes.
    pub io_out: u64,
    /// MMIO reads.
    pub mmio_read: u64,
    /// MMIO writes.
    pub mmio_write: u64,
    /// Every other exit to userspace.
    pub other: u64,
}

/// The kinds of exit counted.
#[derive(Clone, Copy)]
pub enum ExitKind {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Other,
}

impl ExitCounters {
    /// Counts one exit.
    pub fn add(&self, kind: ExitKind) {
        let c = match kind {
            ExitKind::IoIn => &self.io_in,
            ExitKind::IoOut => &self.io_out,
            ExitKind::MmioRead => &self.mmio_read,
            ExitKind::MmioWrite => &self.mmio_write,
            ExitKind::Other => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> ExitCounts {
        ExitCounts {
            io_in: self.io_in.load(Ordering::Relaxed),
            io_out: self.io_out.load(Ordering::Relaxed),
            mmio_read: self.mmio_read.load(Ordering::Relaxed),
            mmio_write: self.mmio_write.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let c = ExitCounters::default();
        c.add(ExitKind::IoOut);
        c.add(ExitKind::IoOut);
        c.add(ExitKind::MmioRead);
        let s = c.snapshot();
        assert_eq!((s.io_out, s.mmio_read, s.io_in), (2, 1, 0));
    }
}
