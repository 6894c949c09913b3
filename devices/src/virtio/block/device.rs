//! The virtio-blk device: what it offers the driver and how it starts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use log::warn;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::disk::{Disk, OpenFlags, SERIAL_LEN};
use super::handler::{Active, BlockHandler, Shared};
use super::metrics::BlockMetrics;
use super::request::{Limits, SECTOR_SIZE};
use super::Error;
use crate::virtio::{ActivateError, Memory, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};

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

/// How to present a disk image.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    /// The image: a regular file or a block device.
    pub path: PathBuf,
    /// Refuse writes (the `ro` option).
    pub readonly: bool,
    /// Bypass the host page cache with `O_DIRECT` (the `nocache` option).
    pub nocache: bool,
    /// Make every write durable with `O_SYNC` (the `direct` option).
    pub direct: bool,
    /// Logical sector size in bytes (512 to 4096). With `nocache` it must
    /// be at least the host's logical block size.
    pub logical_sector: u32,
    /// Physical sector size in bytes (at least `logical_sector`).
    pub physical_sector: u32,
    /// GET_ID serial number (up to 20 bytes); derived from the file's
    /// device and inode if `None`.
    pub serial: Option<String>,
}

/// A virtio block device.
pub struct Block {
    features: u64,
    config: [u8; CONFIG_LEN],
    queue_events: [EventFd; 1],
    shared: Shared,
    metrics: Arc<BlockMetrics>,
}

impl Block {
    /// Opens and locks the image; returns the device, to put on a
    /// transport, and its request handler, to add to the VMM's event
    /// manager.
    pub fn new(cfg: BlockConfig) -> Result<(Block, BlockHandler), Error> {
        let (logical, physical) = (cfg.logical_sector, cfg.physical_sector);
        let valid = |s: u32, lo: u32, hi: u32| s.is_power_of_two() && (lo..=hi).contains(&s);
        if !valid(logical, 512, 4096) || !valid(physical, logical, 65536) {
            return Err(Error::SectorSize { logical, physical });
        }
        let flags = OpenFlags {
            readonly: cfg.readonly,
            nocache: cfg.nocache,
            direct: cfg.direct,
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
        let queue_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
        let shared: Shared = Arc::new(Mutex::new(None));
        let metrics = Arc::new(BlockMetrics::default());
        let handler = BlockHandler {
            queue_evt: queue_evt.try_clone().map_err(Error::EventFd)?,
            shared: shared.clone(),
            disk,
            limits,
            serial: id,
            metrics: metrics.clone(),
        };
        let block = Block {
            features: features(cfg.readonly),
            config: config_space(&limits, logical, physical),
            queue_events: [queue_evt],
            shared,
            metrics,
        };
        Ok((block, handler))
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<BlockMetrics> {
        self.metrics.clone()
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
    bits.into_iter().fold(0, |f, b| f | 1 << b)
}

/// `struct virtio_blk_config`, little endian.
fn config_space(limits: &Limits, logical: u32, physical: u32) -> [u8; CONFIG_LEN] {
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
    put(0x22, &1u16.to_le_bytes()); // num_queues
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
        &[QUEUE_SIZE]
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
        let mut queue = match <[Queue; 1]>::try_from(queues) {
            Ok([queue]) => queue,
            Err(queues) => {
                return Err(ActivateError::QueueCount {
                    expected: 1,
                    got: queues.len(),
                })
            }
        };
        if !queue.ready() {
            return Err(ActivateError::QueueNotReady(0));
        }
        queue.set_event_idx(features & 1 << VIRTIO_RING_F_EVENT_IDX != 0);
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(Active {
            mem,
            queue,
            interrupt,
        });
        // Pick up anything the driver queued before DRIVER_OK.
        if let Err(e) = self.queue_events[0].write(1) {
            warn!("virtio-blk: cannot kick the queue: {e}");
        }
        Ok(())
    }

    fn reset(&mut self) {
        // Waits for the handler's batch in progress, if any.
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
