//! Counters of a block device, shared with whoever reports them (the API).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated by the request handler.
#[derive(Debug, Default)]
pub struct BlockMetrics {
    requests: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    flushes: AtomicU64,
    discards: AtomicU64,
    write_zeroes: AtomicU64,
    errors: AtomicU64,
    unsupported: AtomicU64,
}

/// A consistent-enough copy of [`BlockMetrics`] for reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockMetricsSnapshot {
    /// Requests completed, whatever their status.
    pub requests: u64,
    /// Bytes read from the disk into the guest.
    pub read_bytes: u64,
    /// Bytes written from the guest to the disk.
    pub write_bytes: u64,
    /// Flush requests.
    pub flushes: u64,
    /// Discard requests.
    pub discards: u64,
    /// Write-zeroes requests.
    pub write_zeroes: u64,
    /// Requests completed with an I/O error (malformed, out of range,
    /// read-only or a host I/O failure).
    pub errors: u64,
    /// Requests of a type or with flags the device does not support.
    pub unsupported: u64,
}

/// A counter of [`BlockMetrics`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Counter {
    Requests,
    ReadBytes,
    WriteBytes,
    Flushes,
    Discards,
    WriteZeroes,
    Errors,
    Unsupported,
}

impl BlockMetrics {
    pub(super) fn add(&self, counter: Counter, n: u64) {
        let c = match counter {
            Counter::Requests => &self.requests,
            Counter::ReadBytes => &self.read_bytes,
            Counter::WriteBytes => &self.write_bytes,
            Counter::Flushes => &self.flushes,
            Counter::Discards => &self.discards,
            Counter::WriteZeroes => &self.write_zeroes,
            Counter::Errors => &self.errors,
            Counter::Unsupported => &self.unsupported,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> BlockMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BlockMetricsSnapshot {
            requests: get(&self.requests),
            read_bytes: get(&self.read_bytes),
            write_bytes: get(&self.write_bytes),
            flushes: get(&self.flushes),
            discards: get(&self.discards),
            write_zeroes: get(&self.write_zeroes),
            errors: get(&self.errors),
            unsupported: get(&self.unsupported),
        }
    }
}
