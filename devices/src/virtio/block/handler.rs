//! The request loop, run on the VMM's event thread.
//!
//! [`BlockHandler`] waits on the queue's eventfd (signalled in the kernel by
//! the guest's notify write) and drains the queue: parse, execute, write the
//! status, add to the used ring, interrupt the guest if it asked to be.
//! vCPUs never wait on disk I/O. The activated state is shared with the
//! device behind a mutex, so a reset from a vCPU waits for the batch in
//! progress and then finds the device idle.

use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use log::{error, warn};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};
use vmm_sys_util::eventfd::EventFd;

use super::disk::{Disk, SERIAL_LEN};
use super::metrics::{BlockMetrics, Counter};
use super::request::{Buf, Limits, Operation, Request};
use crate::virtio::{Memory, VirtioInterrupt};

/// What an activated device works with.
pub(super) struct Active {
    pub(super) mem: Memory,
    pub(super) queue: Queue,
    pub(super) interrupt: Arc<dyn VirtioInterrupt>,
}

/// State shared by the device (activate, reset) and its handler.
pub(super) type Shared = Arc<Mutex<Option<Active>>>;

/// Processes a block device's requests; add it to the VMM's event manager.
pub struct BlockHandler {
    pub(super) queue_evt: EventFd,
    pub(super) shared: Shared,
    pub(super) disk: Disk,
    pub(super) limits: Limits,
    pub(super) serial: [u8; SERIAL_LEN],
    pub(super) metrics: Arc<BlockMetrics>,
}

impl BlockHandler {
    /// Drains the queue, if the device is active.
    pub fn process_queue(&mut self) {
        let shared = self.shared.clone();
        let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
        let Some(active) = guard.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let queue = &mut active.queue;
        let mut used = false;
        loop {
            if let Err(e) = queue.disable_notification(&*mem) {
                warn!("virtio-blk: {e}");
            }
            while let Some(chain) = queue.pop_descriptor_chain(&*mem) {
                let head = chain.head_index();
                let len = self.complete(&mem, chain);
                if let Err(e) = queue.add_used(&*mem, head, len) {
                    warn!("virtio-blk: cannot return descriptor {head}: {e}");
                }
                used = true;
            }
            match queue.enable_notification(&*mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    warn!("virtio-blk: {e}");
                    break;
                }
            }
        }
        // With EVENT_IDX the driver may not want this interrupt.
        if used && queue.needs_notification(&*mem).unwrap_or(true) {
            active.interrupt.signal_queue(0);
        }
    }

    /// Carries out one chain and writes its status; returns the number of
    /// bytes written to guest memory.
    fn complete(&self, mem: &GuestMemoryMmap, chain: DescriptorChain<&GuestMemoryMmap>) -> u32 {
        self.metrics.add(Counter::Requests, 1);
        let (status, addr, written) = match Request::parse(chain, mem, &self.limits) {
            Ok(req) => match self.execute(mem, &req.op) {
                Ok(written) => (VIRTIO_BLK_S_OK as u8, req.status, written),
                Err(e) => {
                    warn!("virtio-blk: {}: {e}", self.disk.path().display());
                    (VIRTIO_BLK_S_IOERR as u8, req.status, 0)
                }
            },
            Err(rejected) => {
                warn!("virtio-blk: bad request: {}", rejected.error);
                let Some(addr) = rejected.status else {
                    self.metrics.add(Counter::Errors, 1);
                    return 0;
                };
                (rejected.error.status(), addr, 0)
            }
        };
        match u32::from(status) {
            VIRTIO_BLK_S_OK => {}
            VIRTIO_BLK_S_UNSUPP => self.metrics.add(Counter::Unsupported, 1),
            _ => self.metrics.add(Counter::Errors, 1),
        }
        if let Err(e) = mem.write_obj(status, addr) {
            warn!("virtio-blk: cannot write status: {e}");
            return written;
        }
        written.saturating_add(1)
    }

    /// Runs `op`; returns the number of data bytes written to the guest.
    fn execute(&self, mem: &GuestMemoryMmap, op: &Operation) -> std::io::Result<u32> {
        match op {
            Operation::Read { offset, data } => {
                let bufs = slices(mem, data)?;
                self.disk.read_at(&bufs, *offset)?;
                let len = bufs.iter().map(|b| b.len() as u64).sum();
                self.metrics.add(Counter::ReadBytes, len);
                Ok(u32::try_from(len).unwrap_or(u32::MAX))
            }
            Operation::Write { offset, data } => {
                let bufs = slices(mem, data)?;
                self.disk.write_at(&bufs, *offset)?;
                let len = bufs.iter().map(|b| b.len() as u64).sum();
                self.metrics.add(Counter::WriteBytes, len);
                Ok(0)
            }
            Operation::Flush => {
                self.metrics.add(Counter::Flushes, 1);
                self.disk.flush().map(|()| 0)
            }
            Operation::GetId { data } => {
                let mut written = 0;
                for b in data {
                    let src = &self.serial[written..written + b.len as usize];
                    mem.write_slice(src, b.addr)
                        .map_err(std::io::Error::other)?;
                    written += b.len as usize;
                }
                Ok(written as u32)
            }
            Operation::Discard(ranges) => {
                self.metrics.add(Counter::Discards, 1);
                for r in ranges {
                    self.disk.discard(r.offset, r.len)?;
                }
                Ok(0)
            }
            Operation::WriteZeroes(ranges) => {
                self.metrics.add(Counter::WriteZeroes, 1);
                for r in ranges {
                    self.disk.write_zeroes(r.offset, r.len, r.unmap)?;
                }
                Ok(0)
            }
        }
    }
}

/// The host mappings of guest buffers.
fn slices<'m>(mem: &'m GuestMemoryMmap, bufs: &[Buf]) -> std::io::Result<Vec<VolatileSlice<'m>>> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs {
        for s in mem.get_slices(b.addr, b.len as usize) {
            out.push(s.map_err(std::io::Error::other)?);
        }
    }
    Ok(out)
}

impl MutEventSubscriber for BlockHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.event_set() != EventSet::IN {
            error!(
                "virtio-blk: unexpected event {:?} on the queue eventfd",
                events.event_set()
            );
            return;
        }
        // Nonblocking; an empty counter just means a spurious wakeup.
        let _ = self.queue_evt.read();
        self.process_queue();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.queue_evt, EventSet::IN)) {
            error!("virtio-blk: cannot watch the queue eventfd: {e}");
        }
    }
}
