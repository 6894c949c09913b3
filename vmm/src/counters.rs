//! Counters of the exits vfvm handles in userspace: what the passthrough
//! benchmark reads to show a VF's packets cost no userspace exit. Reported
//! like any device's counters ([`devices::metrics::Metrics`]).

use devices::counter_set;
use devices::metrics::Counters;

counter_set! {
    /// The kinds of exit counted, and their keys in reports.
    pub enum ExitKind {
        /// Port reads.
        IoIn => "io_in",
        /// Port writes.
        IoOut => "io_out",
        /// MMIO reads.
        MmioRead => "mmio_read",
        /// MMIO writes.
        MmioWrite => "mmio_write",
        /// Every other exit to userspace.
        Other => "other",
    }
}

/// Exit counters, shared by all vCPUs.
pub type ExitCounters = Counters<ExitKind>;

#[cfg(test)]
mod tests {
    use devices::metrics::Metrics;

    use super::*;

    #[test]
    fn counts_by_kind() {
        let c = ExitCounters::default();
        c.add(ExitKind::IoOut, 1);
        c.add(ExitKind::IoOut, 1);
        c.add(ExitKind::MmioRead, 1);
        assert_eq!(
            c.counters(),
            [
                ("io_in", 0),
                ("io_out", 2),
                ("mmio_read", 1),
                ("mmio_write", 0),
                ("other", 0)
            ]
        );
    }
}
