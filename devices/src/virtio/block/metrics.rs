//! Counters of a block device, per queue, shared with whoever reports them
//! (the API, through [`crate::metrics::Metrics`]). Each queue's I/O thread
//! updates only its own.

use std::sync::Arc;

use crate::counter_set;
use crate::metrics::{CounterSet, Counters, Metrics};

counter_set! {
    /// A block device's counters, and their keys in reports.
    pub enum Counter {
        /// Requests taken from the available ring, whatever their outcome.
        Requests => "requests",
        /// Bytes read from the disk into the guest.
        ReadBytes => "read_bytes",
        /// Bytes written from the guest to the disk.
        WriteBytes => "write_bytes",
        /// Flush requests.
        Flushes => "flushes",
        /// Discard requests.
        Discards => "discards",
        /// Write-zeroes requests.
        WriteZeroes => "write_zeroes",
        /// Requests completed with an I/O error (malformed, out of range,
        /// read-only or a host I/O failure).
        Errors => "errors",
        /// Requests of a type or with flags the device does not support.
        Unsupported => "unsupported",
        /// Interrupts raised (completions the driver asked to hear of; with
        /// EVENT_IDX, fewer than the requests).
        Interrupts => "interrupts",
        /// Notifications from the driver (its writes to the queue's notify
        /// address, each an exit to the host kernel's ioeventfd).
        Notifications => "notifications",
        /// Times the queue's I/O thread woke up for this queue (its
        /// eventfd or its ring; a thread serving several queues counts a
        /// wakeup on each queue it woke up for).
        Wakeups => "wakeups",
        /// Requests put in flight through io_uring.
        RingRequests => "ring_requests",
        /// io_uring submissions (system calls) that put them there;
        /// requests per submission is the batch the kernel sees.
        Submissions => "submissions",
    }
}

/// Live counters of one queue, updated by its I/O thread.
pub type QueueMetrics = Counters<Counter>;

/// A device's counters: one set per queue. As [`Metrics`], their sums.
#[derive(Debug)]
pub struct BlockMetrics {
    queues: Vec<Arc<QueueMetrics>>,
}

impl BlockMetrics {
    /// Counters for `queues` queues, all zero.
    pub(super) fn new(queues: usize) -> Self {
        BlockMetrics {
            queues: (0..queues).map(|_| Arc::default()).collect(),
        }
    }

    /// Queue `index`'s counters.
    pub(super) fn queue(&self, index: usize) -> Option<&QueueMetrics> {
        self.queues.get(index).map(Arc::as_ref)
    }

    /// Each queue's counters, to report them apart.
    pub fn queues(&self) -> &[Arc<QueueMetrics>] {
        &self.queues
    }

    /// `counter` summed over the queues.
    pub fn total(&self, counter: Counter) -> u64 {
        self.queues.iter().map(|q| q.get(counter)).sum()
    }
}

impl Metrics for BlockMetrics {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut sums: Vec<(&'static str, u64)> = Counter::KEYS.iter().map(|k| (*k, 0)).collect();
        for q in &self.queues {
            for ((_, sum), (_, n)) in sums.iter_mut().zip(q.counters()) {
                *sum += n;
            }
        }
        sums
    }

    fn parts(&self) -> Vec<(String, &dyn Metrics)> {
        let queues = self.queues.iter().enumerate();
        queues
            .map(|(i, q)| (format!("q{i}"), q.as_ref() as &dyn Metrics))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_the_queues() {
        let m = BlockMetrics::new(2);
        m.queue(0).unwrap().add(Counter::Requests, 2);
        m.queue(1).unwrap().add(Counter::Requests, 3);
        m.queue(1).unwrap().add(Counter::Interrupts, 1);
        assert_eq!(m.total(Counter::Requests), 5);
        let c = m.counters();
        assert_eq!(c[0], ("requests", 5));
        assert_eq!(c[8], ("interrupts", 1));
        assert_eq!(m.queues()[0].get(Counter::Requests), 2);
        assert!(m.queue(2).is_none());
        let parts = m.parts();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[1].0.as_str(), parts[1].1.counters()[0]),
            ("q1", ("requests", 3))
        );
    }
}
