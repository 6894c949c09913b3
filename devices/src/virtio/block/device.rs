//! The virtio-blk device: what it offers the driver and how it starts.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::disk::{Disk, OpenFlags, SERIAL_LEN};
use super::metrics::{BlockMetrics, Counter};
use super::request::{Limits, SECTOR_SIZE};
use super::uring::Uring;
use super::worker::{serve_queues, DiskContext, QueueWorker};
use super::Error;
use crate::metrics::Metrics;
use crate::virtio::{ActivateError, Memory, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::Spawner;

const QUEUE_SIZE: u16 = 256;
/// Data segments per request: the queue minus the header and status.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
const SIZE_MAX: u32 = 1 << 20;
/// 2 GiB per discard segment: punching a hole is cheap whatever its size.
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// 32 MiB per write-zeroes segment: without ZERO_RANGE support the zeros
/// are written, and the event thread should not stall for long.
const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 16;
const MAX_SEGMENTS: u32 = 32;
const CONFIG_LEN: usize = 0x3c;
/// Most queues (and I/O threads) per disk.
pub const MAX_QUEUES: u16 = 64;

/// How to present a disk image.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    /// The image: a regular file or a block device.
    pub path: PathBuf,
    /// Refuse writes (the `ro` option).
    pub readonly: bool,
    /// Bypass the host page cache with `O_DIRECT` (bhyve's `nocache`).
    pub bypass_cache: bool,
    /// Make every write durable with `O_SYNC` (bhyve's `direct`).
    pub sync_writes: bool,
    /// Logical sector size in bytes (512 to 4096). With `bypass_cache` it must
    /// be at least the host's logical block size.
    pub logical_sector: u32,
    /// Physical sector size in bytes (at least `logical_sector`).
    pub physical_sector: u32,
    /// GET_ID serial number (up to 20 bytes); derived from the file's
    /// device and inode if `None`.
    pub serial: Option<String>,
    /// Request queues (1 to [`MAX_QUEUES`]).
    pub num_queues: u16,
    /// I/O threads serving them (1 to `num_queues`): queue `i` is served
    /// by thread `i % io_threads`, so `num_queues` gives each queue its
    /// own thread and 1 serves all of them from one.
    pub io_threads: u16,
    /// Put reads, writes and flushes in flight with io_uring where the
    /// kernel has it; `false` carries out every request at once.
    pub io_uring: bool,
}

/// A running I/O thread (of one queue or several).
struct Worker {
    stop: EventFd,
    /// Disconnected when the thread ends.
    done: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

/// How long a VM's teardown waits for a disk's requests in flight.
const TEARDOWN_WAIT: Duration = Duration::from_secs(5);

/// A virtio block device.
pub struct Block {
    features: u64,
    config: [u8; CONFIG_LEN],
    queue_sizes: Vec<u16>,
    queue_events: Vec<EventFd>,
    ctx: Arc<DiskContext>,
    io_uring: bool,
    io_threads: usize,
    workers: Vec<Worker>,
    spawner: Spawner,
}

/// Sector sizes a block device cannot present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SectorSizeError {
    /// A size that is not 512, 1024, 2048 or 4096.
    #[error("{which} sector size {size} is not 512, 1024, 2048 or 4096")]
    Size { which: &'static str, size: u32 },
    /// A physical sector smaller than the logical one.
    #[error("physical sector size {physical} is smaller than the logical {logical}")]
    PhysicalBelowLogical { logical: u32, physical: u32 },
}

/// The one rule for the sector sizes a disk presents: each a power of two
/// from 512 to 4096, the physical at least the logical.
pub fn check_sector_sizes(logical: u32, physical: u32) -> Result<(), SectorSizeError> {
    for (which, size) in [("logical", logical), ("physical", physical)] {
        if !size.is_power_of_two() || !(512..=4096).contains(&size) {
            return Err(SectorSizeError::Size { which, size });
        }
    }
    if physical < logical {
        return Err(SectorSizeError::PhysicalBelowLogical { logical, physical });
    }
    Ok(())
}

impl Block {
    /// Opens and locks the image; returns the device, to put on a
    /// transport. Its queues are served by their own threads once the
    /// driver starts it.
    pub fn new(cfg: BlockConfig) -> Result<Block, Error> {
        if !(1..=MAX_QUEUES).contains(&cfg.num_queues) {
            return Err(Error::QueueCount(cfg.num_queues));
        }
        if !(1..=cfg.num_queues).contains(&cfg.io_threads) {
            return Err(Error::ThreadCount {
                threads: cfg.io_threads,
                queues: cfg.num_queues,
            });
        }
        let (logical, physical) = (cfg.logical_sector, cfg.physical_sector);
        check_sector_sizes(logical, physical).map_err(Error::SectorSize)?;
        let flags = OpenFlags {
            readonly: cfg.readonly,
            bypass_cache: cfg.bypass_cache,
            sync_writes: cfg.sync_writes,
        };
        let disk = Disk::open(&cfg.path, flags, logical as usize)?;
        if disk.size() < u64::from(logical) {
            return Err(Error::TooSmall {
                path: cfg.path,
                size: disk.size(),
                sector: logical,
            });
        }
        let serial = match cfg.serial {
            Some(s) => s,
            None => disk.derived_serial().map_err(|source| Error::Serial {
                path: cfg.path.clone(),
                source,
            })?,
        };
        if serial.len() > SERIAL_LEN {
            return Err(Error::SerialTooLong(serial));
        }
        let mut id = [0u8; SERIAL_LEN];
        id[..serial.len()].copy_from_slice(serial.as_bytes());

        let limits = Limits {
            // Only whole logical sectors are visible.
            capacity: disk.size() / u64::from(logical) * u64::from(logical) / SECTOR_SIZE,
            readonly: cfg.readonly,
            max_discard_sectors: MAX_DISCARD_SECTORS,
            max_discard_seg: MAX_SEGMENTS,
            max_write_zeroes_sectors: MAX_WRITE_ZEROES_SECTORS,
            max_write_zeroes_seg: MAX_SEGMENTS,
        };
        let queue_events = (0..cfg.num_queues)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd))
            .collect::<Result<Vec<_>, _>>()?;
        let queues = usize::from(cfg.num_queues);
        Ok(Block {
            features: features(cfg.readonly),
            config: config_space(&limits, logical, physical, cfg.num_queues),
            queue_sizes: vec![QUEUE_SIZE; queues],
            queue_events,
            ctx: Arc::new(DiskContext {
                disk,
                limits,
                serial: id,
                metrics: Arc::new(BlockMetrics::new(queues)),
            }),
            io_uring: cfg.io_uring,
            io_threads: usize::from(cfg.io_threads),
            workers: Vec::new(),
            spawner: crate::plain_spawner(),
        })
    }

    /// Starts the queues' I/O threads with `spawner` (plain threads by default).
    pub fn set_spawner(&mut self, spawner: Spawner) {
        self.spawner = spawner;
    }

    /// Stops the I/O threads, once every request in flight has completed.
    fn stop_workers(&mut self) {
        self.signal_stop();
        for w in self.workers.drain(..) {
            if w.thread.join().is_err() {
                error!("virtio-blk: an I/O thread panicked");
            }
        }
    }

    fn signal_stop(&self) {
        for w in &self.workers {
            if let Err(e) = w.stop.write(1) {
                error!("virtio-blk: cannot stop an I/O thread: {e}");
            }
        }
    }

    /// The request processing of queue `index`, with a ring for requests
    /// in flight if io_uring is wanted and the kernel has it.
    pub(super) fn queue_worker(
        &self,
        index: usize,
        mem: Memory,
        queue: Queue,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> std::io::Result<QueueWorker> {
        let queue_evt = self.queue_events[index].try_clone()?;
        let uring = match self.io_uring.then(|| Uring::new(queue.size())) {
            Some(Ok(ring)) => Some(ring),
            Some(Err(e)) => {
                info!("virtio-blk: no io_uring ({e}); queue {index} carries out one request at a time");
                None
            }
            None => None,
        };
        Ok(QueueWorker::new(
            index,
            mem,
            queue,
            interrupt,
            queue_evt,
            self.ctx.clone(),
            uring,
        ))
    }

    /// Starts an I/O thread serving `queues` (not empty), named for the
    /// first of them.
    fn spawn_worker(&mut self, queues: Vec<QueueWorker>) -> std::io::Result<()> {
        let first = queues.first().map_or(0, |w| w.index);
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_thread = stop.try_clone()?;
        let (finished, done) = mpsc::channel::<()>();
        let thread = (self.spawner)(
            format!("virtio-blk-q{first}"),
            Box::new(move || {
                serve_queues(queues, &stop_thread);
                drop(finished);
            }),
        )?;
        self.workers.push(Worker { stop, done, thread });
        Ok(())
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<BlockMetrics> {
        self.ctx.metrics.clone()
    }
}

fn features(readonly: bool) -> u64 {
    let mut bits = vec![
        VIRTIO_F_VERSION_1,
        VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_FLUSH,
    ];
    if readonly {
        bits.push(VIRTIO_BLK_F_RO);
    } else {
        bits.extend([VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]);
    }
    bits.push(VIRTIO_BLK_F_MQ);
    bits.into_iter().fold(0, |f, b| f | 1 << b)
}

/// `struct virtio_blk_config`, little endian.
fn config_space(limits: &Limits, logical: u32, physical: u32, queues: u16) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let mut put = |offset: usize, bytes: &[u8]| {
        c[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    let per_physical = physical / logical;
    put(0x00, &limits.capacity.to_le_bytes());
    put(0x08, &SIZE_MAX.to_le_bytes());
    put(0x0c, &SEG_MAX.to_le_bytes());
    put(0x14, &logical.to_le_bytes());
    // Topology: physical block exponent, alignment offset, minimum and
    // optimal I/O size in logical blocks.
    put(0x18, &[per_physical.trailing_zeros() as u8, 0]);
    put(0x1a, &(per_physical as u16).to_le_bytes());
    put(0x22, &queues.to_le_bytes());
    put(0x24, &limits.max_discard_sectors.to_le_bytes());
    put(0x28, &limits.max_discard_seg.to_le_bytes());
    put(0x2c, &(logical / SECTOR_SIZE as u32).to_le_bytes());
    put(0x30, &limits.max_write_zeroes_sectors.to_le_bytes());
    put(0x34, &limits.max_write_zeroes_seg.to_le_bytes());
    put(0x38, &[1]); // write_zeroes_may_unmap
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if let Some(src) = self.config.get(start..start.saturating_add(data.len())) {
            data.copy_from_slice(src);
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // Nothing is writable without CONFIG_WCE, which is not offered.
        warn!("virtio-blk: ignoring config write at {offset:#x}");
    }

    fn activate(
        &mut self,
        mem: Memory,
        features: u64,
        queues: Vec<Queue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        if queues.len() != self.queue_events.len() {
            return Err(ActivateError::QueueCount {
                expected: self.queue_events.len(),
                got: queues.len(),
            });
        }
        // The driver may use fewer queues than offered (Linux uses at most
        // one per CPU); the first is always needed.
        if !queues.first().is_some_and(|q| q.ready()) {
            return Err(ActivateError::QueueNotReady(0));
        }
        self.stop_workers();
        let event_idx = features & 1 << VIRTIO_RING_F_EVENT_IDX != 0;
        let mut threads: Vec<Vec<QueueWorker>> = (0..self.io_threads).map(|_| Vec::new()).collect();
        for (index, mut queue) in queues.into_iter().enumerate() {
            if !queue.ready() {
                continue;
            }
            queue.set_event_idx(event_idx);
            let worker = self
                .queue_worker(index, mem.clone(), queue, interrupt.clone())
                .map_err(|e| ActivateError::Thread(index, e.to_string()))?;
            threads[index % self.io_threads].push(worker);
        }
        for queues in threads.into_iter().filter(|q| !q.is_empty()) {
            let indices: Vec<usize> = queues.iter().map(|w| w.index).collect();
            if let Err(e) = self.spawn_worker(queues) {
                self.stop_workers();
                return Err(ActivateError::Thread(indices[0], e.to_string()));
            }
            // Pick up anything the driver queued before DRIVER_OK.
            for index in indices {
                if let Err(e) = self.queue_events[index].write(1) {
                    warn!("virtio-blk: cannot kick queue {index}: {e}");
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        // Waits for the requests in flight.
        self.stop_workers();
    }
}

impl Drop for Block {
    /// The VM is going away: waits a while for the requests in flight, then
    /// leaves the threads of a disk that does not answer behind. Each keeps
    /// guest memory and the image open until its requests complete (or
    /// vfvm exits), so nothing it writes can land elsewhere.
    fn drop(&mut self) {
        self.signal_stop();
        let deadline = Instant::now() + TEARDOWN_WAIT;
        for w in self.workers.drain(..) {
            let left = deadline.saturating_duration_since(Instant::now());
            match w.done.recv_timeout(left) {
                Err(mpsc::RecvTimeoutError::Timeout) => warn!(
                    "virtio-blk: {}: requests still in flight after {}s; not waiting for them",
                    self.ctx.disk.path().display(),
                    TEARDOWN_WAIT.as_secs()
                ),
                _ => {
                    if w.thread.join().is_err() {
                        error!("virtio-blk: an I/O thread panicked");
                    }
                }
            }
        }
        // What the disk's requests cost, for benchmarks and debugging.
        let m = &self.ctx.metrics;
        if m.total(Counter::Requests) > 0 {
            let counters: Vec<String> = m
                .counters()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            info!(
                "virtio-blk {}: {}",
                self.ctx.disk.path().display(),
                counters.join(" ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_sector_sizes() {
        assert_eq!(check_sector_sizes(512, 4096), Ok(()));
        assert_eq!(check_sector_sizes(4096, 4096), Ok(()));
        assert_eq!(
            check_sector_sizes(512, 8192),
            Err(SectorSizeError::Size {
                which: "physical",
                size: 8192
            })
        );
        assert_eq!(
            check_sector_sizes(1000, 4096),
            Err(SectorSizeError::Size {
                which: "logical",
                size: 1000
            })
        );
        assert_eq!(
            check_sector_sizes(4096, 512),
            Err(SectorSizeError::PhysicalBelowLogical {
                logical: 4096,
                physical: 512
            })
        );
    }
}
