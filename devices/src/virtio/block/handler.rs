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
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
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
                // More entries arrived, or the driver published an index we
                // cannot take (more than the queue holds): the latter would
                // spin this thread forever, so a broken ring is left alone
                // until the driver resets the device.
                Ok(true) => match queue.iter(&*mem) {
                    Ok(_) => continue,
                    Err(e) => {
                        warn!("virtio-blk: ignoring a broken available ring: {e}");
                        break;
                    }
                },
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use virtio_bindings::virtio_blk::{
        VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_RO, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_GET_ID,
        VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    };
    use vm_memory::GuestAddress;

    use super::*;
    use crate::virtio::block::{Block, BlockConfig, Error};
    use crate::virtio::testing::{
        memory, CountingInterrupt, Driver, TempFile, AVAIL_RING, QUEUE_SIZE,
        VIRTQ_DESC_F_WRITE as W,
    };
    use crate::virtio::VirtioDevice;

    const HDR: u64 = 0x10000;
    const DATA: u64 = 0x20000;
    const STATUS: u64 = 0x30000;

    struct Setup {
        mem: Memory,
        driver: Driver,
        block: Block,
        handler: BlockHandler,
        irq: Arc<CountingInterrupt>,
    }

    fn config(path: &Path) -> BlockConfig {
        BlockConfig {
            path: path.to_owned(),
            readonly: false,
            nocache: false,
            direct: false,
            logical_sector: 512,
            physical_sector: 4096,
            serial: None,
        }
    }

    fn setup(cfg: BlockConfig) -> Setup {
        let mem = memory();
        let driver = Driver::new(&mem);
        let (mut block, handler) = Block::new(cfg).unwrap();
        let irq = Arc::new(CountingInterrupt::default());
        block
            .activate(
                mem.clone(),
                block.features(),
                vec![driver.queue()],
                irq.clone(),
            )
            .unwrap();
        Setup {
            mem,
            driver,
            block,
            handler,
            irq,
        }
    }

    impl Setup {
        /// Submits a request with header at HDR, status at STATUS and the
        /// given data descriptors; runs the handler; returns (status, used len).
        fn run(&mut self, kind: u32, sector: u64, data: &[(u64, u32, u16)]) -> (u8, u32) {
            self.mem.write_obj(kind, GuestAddress(HDR)).unwrap();
            self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
            self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
            let mut descs = vec![(HDR, 16, 0)];
            descs.extend_from_slice(data);
            descs.push((STATUS, 1, W));
            let head = self.driver.add(&descs);
            let before = self.driver.used_idx();
            self.handler.process_queue();
            assert_eq!(
                self.driver.used_idx(),
                before.wrapping_add(1),
                "chain not returned"
            );
            let (id, len) = self.driver.used(before);
            assert_eq!(id, u32::from(head));
            (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
        }
    }

    #[test]
    fn a_broken_avail_index_does_not_spin_the_event_thread() {
        let file = TempFile::with_bytes(&[0; 4096]);
        let mut s = setup(config(file.path()));
        // More entries published than the queue holds.
        s.mem
            .write_obj(QUEUE_SIZE + 1, GuestAddress(AVAIL_RING + 2))
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            s.handler.process_queue();
            let _ = done.send(());
        });
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_secs(5))
                .is_ok(),
            "process_queue spun on a broken ring"
        );
    }

    #[test]
    fn write_then_read_touches_only_the_range() {
        let file = TempFile::with_bytes(&[0x5a; 8192]);
        let mut s = setup(config(file.path()));
        s.mem
            .write_slice(&[0xab; 1024], GuestAddress(DATA))
            .unwrap();
        assert_eq!(s.run(VIRTIO_BLK_T_OUT, 2, &[(DATA, 1024, 0)]), (0, 1));
        let bytes = std::fs::read(file.path()).unwrap();
        assert!(bytes[..1024].iter().all(|&b| b == 0x5a));
        assert!(bytes[1024..2048].iter().all(|&b| b == 0xab));
        assert!(bytes[2048..].iter().all(|&b| b == 0x5a));

        // Read it back across two buffers.
        s.mem.write_slice(&[0; 2048], GuestAddress(DATA)).unwrap();
        let data = [(DATA, 512, W), (DATA + 0x1000, 1024, W)];
        assert_eq!(s.run(VIRTIO_BLK_T_IN, 1, &data), (0, 1537));
        let mut got = [0u8; 1024];
        s.mem
            .read_slice(&mut got[..512], GuestAddress(DATA))
            .unwrap();
        assert!(got[..512].iter().all(|&b| b == 0x5a));
        s.mem
            .read_slice(&mut got, GuestAddress(DATA + 0x1000))
            .unwrap();
        assert!(got.iter().all(|&b| b == 0xab));

        let m = s.block.metrics().snapshot();
        assert_eq!(
            (m.requests, m.write_bytes, m.read_bytes, m.errors),
            (2, 1024, 1536, 0)
        );
        // EVENT_IDX is on and the driver's used_event stays 0: only the
        // first completion interrupts.
        assert_eq!(*s.irq.0.lock().unwrap(), [0]);
    }

    #[test]
    fn errors_still_complete_the_chain() {
        let file = TempFile::with_bytes(&[0x5a; 4096]);
        let mut s = setup(config(file.path()));
        // Past the end.
        assert_eq!(s.run(VIRTIO_BLK_T_OUT, 8, &[(DATA, 512, 0)]), (1, 1));
        // Unknown type.
        assert_eq!(s.run(42, 0, &[]), (2, 1));
        // No status byte at all: returned with nothing written.
        s.driver.add(&[(HDR, 16, 0)]);
        s.handler.process_queue();
        assert_eq!(s.driver.used(2).1, 0);
        assert_eq!(s.driver.used_idx(), 3);
        let m = s.block.metrics().snapshot();
        assert_eq!((m.requests, m.errors, m.unsupported), (3, 2, 1));
        assert!(std::fs::read(file.path())
            .unwrap()
            .iter()
            .all(|&b| b == 0x5a));
    }

    #[test]
    fn read_only_refuses_writes() {
        let file = TempFile::with_bytes(&[0x5a; 4096]);
        let mut cfg = config(file.path());
        cfg.readonly = true;
        let mut s = setup(cfg);
        assert_ne!(s.block.features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(s.block.features() & 1 << VIRTIO_BLK_F_DISCARD, 0);
        s.mem.write_slice(&[0; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(s.run(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]), (1, 1));
        assert!(std::fs::read(file.path())
            .unwrap()
            .iter()
            .all(|&b| b == 0x5a));
        assert_eq!(s.run(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, W)]), (0, 513));
    }

    #[test]
    fn discard_deallocates() {
        let file = TempFile::with_bytes(&[0x5a; 1 << 20]);
        let mut s = setup(config(file.path()));
        let blocks = || std::fs::metadata(file.path()).unwrap().blocks();
        let before = blocks();
        // Discard the middle 512 KiB.
        s.mem.write_obj(256u64, GuestAddress(DATA)).unwrap();
        s.mem.write_obj(1024u32, GuestAddress(DATA + 8)).unwrap();
        s.mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
        assert_eq!(s.run(VIRTIO_BLK_T_DISCARD, 0, &[(DATA, 16, 0)]), (0, 1));
        let bytes = std::fs::read(file.path()).unwrap();
        assert_eq!(bytes.len(), 1 << 20, "size kept");
        if blocks() < before {
            assert!(bytes[128 << 10..640 << 10].iter().all(|&b| b == 0));
        } else {
            eprintln!("temp filesystem cannot punch holes; discard was a no-op");
        }
        assert!(bytes[..128 << 10].iter().all(|&b| b == 0x5a));
        assert!(bytes[640 << 10..].iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn get_id_returns_the_serial() {
        let file = TempFile::new(4096);
        let mut cfg = config(file.path());
        cfg.serial = Some("vfvm-disk0".into());
        let mut s = setup(cfg);
        s.mem.write_slice(&[0xff; 32], GuestAddress(DATA)).unwrap();
        assert_eq!(s.run(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 32, W)]), (0, 21));
        let mut id = [0u8; 32];
        s.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id[..10], b"vfvm-disk0");
        assert_eq!(id[10..20], [0; 10]);
        assert_eq!(id[20..], [0xff; 12], "nothing past the 20 ID bytes");
    }

    #[test]
    fn reset_stops_processing() {
        let file = TempFile::new(4096);
        let mut s = setup(config(file.path()));
        s.block.reset();
        s.driver.add(&[(HDR, 16, 0), (STATUS, 1, W)]);
        s.handler.process_queue();
        assert_eq!(s.driver.used_idx(), 0);
    }

    #[test]
    fn misaligned_buffers_bounce_with_o_direct() {
        let file = TempFile::with_bytes(&[0x5a; 8192]);
        let mut cfg = config(file.path());
        cfg.nocache = true;
        let (mut block, handler) = match Block::new(cfg) {
            Ok(b) => b,
            Err(Error::DirectUnsupported(_)) => {
                eprintln!("temp filesystem has no O_DIRECT; skipping");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mem = memory();
        let driver = Driver::new(&mem);
        let irq = Arc::new(CountingInterrupt::default());
        block
            .activate(mem.clone(), 0, vec![driver.queue()], irq.clone())
            .unwrap();
        let mut s = Setup {
            mem,
            driver,
            block,
            handler,
            irq,
        };
        s.mem
            .write_slice(&[0xcd; 1024], GuestAddress(DATA + 3))
            .unwrap();
        let data = [(DATA + 3, 100, 0), (DATA + 103, 924, 0)];
        assert_eq!(s.run(VIRTIO_BLK_T_OUT, 4, &data), (0, 1));
        let bytes = std::fs::read(file.path()).unwrap();
        assert!(bytes[2048..3072].iter().all(|&b| b == 0xcd));
        assert!(bytes[..2048]
            .iter()
            .chain(&bytes[3072..])
            .all(|&b| b == 0x5a));
        assert_eq!(s.run(VIRTIO_BLK_T_IN, 3, &[(DATA + 1, 1024, W)]), (0, 1025));
        let mut got = [0u8; 1024];
        s.mem.read_slice(&mut got, GuestAddress(DATA + 1)).unwrap();
        assert!(got[..512].iter().all(|&b| b == 0x5a));
        assert!(got[512..].iter().all(|&b| b == 0xcd));
    }

    #[test]
    fn setup_errors_explain() {
        let file = TempFile::new(4096);
        let (_held, _h) = Block::new(config(file.path())).unwrap();
        let e = Block::new(config(file.path())).err().unwrap();
        assert!(matches!(e, Error::Locked(_)));
        let mut cfg = config(file.path());
        cfg.logical_sector = 1000;
        assert!(matches!(
            Block::new(cfg).err().unwrap(),
            Error::SectorSize { .. }
        ));
        let mut cfg = config(Path::new("/nonexistent/disk.img"));
        cfg.serial = Some("x".repeat(21));
        assert!(matches!(Block::new(cfg).err().unwrap(), Error::NotFound(_)));
    }
}
