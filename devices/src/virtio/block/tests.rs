//! The block device end to end: requests through activated queues and their
//! I/O threads, with io_uring and without (every test runs both ways), and
//! the request loop driven directly for what needs determinism (budget,
//! broken and random rings).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use vm_memory::{Bytes, GuestAddress};

use super::disk::{Disk, OpenFlags};
use super::metrics::Counter::{
    Errors, Flushes, Interrupts, ReadBytes, Requests, RingRequests, Unsupported, WriteBytes,
};
use super::uring::Uring;
use super::worker::QueueWorker;
use super::{Block, BlockConfig, Error};
use crate::virtio::testing::{
    memory, CountingInterrupt, Driver, Lcg, TempFile, AVAIL_RING, DESC_TABLE, QUEUE_SIZE,
    USED_RING, VIRTQ_DESC_F_WRITE as W,
};
use crate::virtio::{Memory, VirtioDevice};

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x30000;
/// Where a second queue's rings go.
const SECOND: u64 = 0x80000;

/// Both ways of carrying out requests.
const ENGINES: [bool; 2] = [true, false];

struct Setup {
    mem: Memory,
    driver: Driver,
    block: Block,
    irq: Arc<CountingInterrupt>,
}

fn config(path: &Path, io_uring: bool) -> BlockConfig {
    BlockConfig {
        path: path.to_owned(),
        readonly: false,
        bypass_cache: false,
        sync_writes: false,
        logical_sector: 512,
        physical_sector: 4096,
        serial: None,
        num_queues: 1,
        io_threads: 1,
        io_uring,
    }
}

fn setup(cfg: BlockConfig) -> Setup {
    let block = Block::new(cfg).unwrap();
    start(block)
}

fn start(mut block: Block) -> Setup {
    let mem = memory();
    let driver = Driver::new(&mem);
    let irq = Arc::new(CountingInterrupt::default());
    let features = block.features();
    block
        .activate(mem.clone(), features, vec![driver.queue()], irq.clone())
        .unwrap();
    Setup {
        mem,
        driver,
        block,
        irq,
    }
}

/// Polls `done` until it holds; fails the test after 10 s.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Setup {
    /// Submits a request with header at HDR, status at STATUS and the
    /// given data descriptors; notifies the queue and waits for the chain;
    /// returns (status, used len).
    fn run(&mut self, kind: u32, sector: u64, data: &[(u64, u32, u16)]) -> (u8, u32) {
        self.mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let mut descs = vec![(HDR, 16, 0)];
        descs.extend_from_slice(data);
        descs.push((STATUS, 1, W));
        let before = self.driver.used_idx();
        let head = self.driver.add(&descs);
        self.block.queue_events()[0].write(1).unwrap();
        let driver = &self.driver;
        wait_until("the chain", || driver.used_idx() == before.wrapping_add(1));
        let (id, len) = self.driver.used(before);
        assert_eq!(id, u32::from(head));
        (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
    }
}

#[test]
fn io_uring_is_there_to_test() {
    // The io_uring half of the tests means something only if the kernel
    // running them has it.
    if let Err(e) = Uring::new(16) {
        eprintln!("no io_uring here ({e}): its tests ran the fallback");
    }
}

#[test]
fn write_then_read_touches_only_the_range() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0x5a; 8192]);
        let mut s = setup(config(file.path(), io_uring));
        s.mem
            .write_slice(&[0xab; 1024], GuestAddress(DATA))
            .unwrap();
        assert_eq!(s.run(VIRTIO_BLK_T_OUT, 2, &[(DATA, 1024, 0)]), (0, 1));
        assert_eq!(s.run(VIRTIO_BLK_T_FLUSH, 0, &[]), (0, 1));
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

        let m = s.block.metrics();
        assert_eq!(
            [Requests, WriteBytes, ReadBytes, Flushes, Errors].map(|c| m.total(c)),
            [3, 1024, 1536, 1, 0]
        );
        // EVENT_IDX is on and the driver's used_event stays 0: only the
        // first completion interrupts.
        assert_eq!(*s.irq.0.lock().unwrap(), [0]);
        assert_eq!(m.total(Interrupts), 1);
    }
}

#[test]
fn errors_still_complete_the_chain() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0x5a; 4096]);
        let mut s = setup(config(file.path(), io_uring));
        // Past the end.
        assert_eq!(s.run(VIRTIO_BLK_T_OUT, 8, &[(DATA, 512, 0)]), (1, 1));
        // Unknown type.
        assert_eq!(s.run(42, 0, &[]), (2, 1));
        // No status byte at all: returned with nothing written.
        s.driver.add(&[(HDR, 16, 0)]);
        s.block.queue_events()[0].write(1).unwrap();
        let driver = &s.driver;
        wait_until("the chain", || driver.used_idx() == 3);
        assert_eq!(s.driver.used(2).1, 0);
        let m = s.block.metrics();
        assert_eq!(
            [Requests, Errors, Unsupported].map(|c| m.total(c)),
            [3, 2, 1]
        );
        assert!(std::fs::read(file.path())
            .unwrap()
            .iter()
            .all(|&b| b == 0x5a));
    }
}

#[test]
fn read_only_refuses_writes() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0x5a; 4096]);
        let mut cfg = config(file.path(), io_uring);
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
}

#[test]
fn discard_deallocates() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0x5a; 1 << 20]);
        let mut s = setup(config(file.path(), io_uring));
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
}

#[test]
fn get_id_returns_the_serial() {
    for io_uring in ENGINES {
        let file = TempFile::new(4096);
        let mut cfg = config(file.path(), io_uring);
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
}

#[test]
fn reset_stops_processing() {
    for io_uring in ENGINES {
        let file = TempFile::new(4096);
        let mut s = setup(config(file.path(), io_uring));
        s.block.reset();
        // The I/O threads are gone (reset joined them): nothing can take it.
        s.driver.add(&[(HDR, 16, 0), (STATUS, 1, W)]);
        s.block.queue_events()[0].write(1).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s.driver.used_idx(), 0);
    }
}

#[test]
fn misaligned_buffers_bounce_with_o_direct() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0x5a; 8192]);
        let mut cfg = config(file.path(), io_uring);
        cfg.bypass_cache = true;
        let block = match Block::new(cfg) {
            Ok(b) => b,
            Err(Error::DirectUnsupported(_)) => {
                eprintln!("temp filesystem has no O_DIRECT; skipping");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mut s = start(block);
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
        // Aligned buffers go straight to the file (through the ring).
        assert_eq!(s.run(VIRTIO_BLK_T_IN, 4, &[(DATA, 1024, W)]), (0, 1025));
        s.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert!(got.iter().all(|&b| b == 0xcd));
    }
}

#[test]
fn setup_errors_explain() {
    let file = TempFile::new(4096);
    let _held = Block::new(config(file.path(), true)).unwrap();
    let e = Block::new(config(file.path(), true)).err().unwrap();
    assert!(matches!(e, Error::Locked(_)));
    let mut cfg = config(file.path(), true);
    cfg.logical_sector = 1000;
    assert!(matches!(
        Block::new(cfg).err().unwrap(),
        Error::SectorSize { .. }
    ));
    let mut cfg = config(file.path(), true);
    cfg.num_queues = 0;
    let e = Block::new(cfg).err().unwrap();
    assert_eq!(e.to_string(), "num_queues=0: a disk has 1 to 64 queues");
    for threads in [0, 3] {
        let mut cfg = config(file.path(), true);
        cfg.num_queues = 2;
        cfg.io_threads = threads;
        let e = Block::new(cfg).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!("iothreads={threads}: a disk with 2 queue(s) has 1 to 2 I/O threads")
        );
    }
    let mut cfg = config(Path::new("/nonexistent/disk.img"), true);
    cfg.serial = Some("x".repeat(21));
    assert!(matches!(Block::new(cfg).err().unwrap(), Error::NotFound(_)));
}

#[test]
fn two_queues_are_served_by_their_own_threads_or_one() {
    for (io_uring, io_threads) in [(true, 2), (false, 2), (true, 1), (false, 1)] {
        let file = TempFile::with_bytes(&[0; 8192]);
        let mut cfg = config(file.path(), io_uring);
        cfg.num_queues = 2;
        cfg.io_threads = io_threads;
        let mut block = Block::new(cfg).unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let spawned = names.clone();
        block.set_spawner(Arc::new(move |name, f| {
            spawned.lock().unwrap().push(name.clone());
            std::thread::Builder::new().name(name).spawn(f)
        }));
        assert_eq!(block.queue_max_sizes().len(), 2);
        assert_eq!(block.queue_events().len(), 2);
        assert_ne!(block.features() & 1 << VIRTIO_BLK_F_MQ, 0);
        let mut n = [0u8; 2];
        block.read_config(0x22, &mut n);
        assert_eq!(u16::from_le_bytes(n), 2, "num_queues in the config space");

        let mem = memory();
        let mut drivers = [Driver::new(&mem), Driver::at(&mem, SECOND)];
        let irq = Arc::new(CountingInterrupt::default());
        let queues = drivers.iter().map(Driver::queue).collect();
        block
            .activate(mem.clone(), block.features(), queues, irq.clone())
            .unwrap();
        let threads: &[&str] = match io_threads {
            1 => &["virtio-blk-q0"],
            _ => &["virtio-blk-q0", "virtio-blk-q1"],
        };
        assert_eq!(*names.lock().unwrap(), threads, "iothreads={io_threads}");
        // Each queue writes its own sector, with its own header and status.
        for (q, d) in drivers.iter_mut().enumerate() {
            let at = |a: u64| a + q as u64 * 0x100;
            mem.write_obj(VIRTIO_BLK_T_OUT, GuestAddress(at(HDR)))
                .unwrap();
            mem.write_obj(q as u64, GuestAddress(at(HDR) + 8)).unwrap();
            mem.write_slice(&[q as u8 + 1; 512], GuestAddress(DATA + q as u64 * 512))
                .unwrap();
            d.add(&[
                (at(HDR), 16, 0),
                (DATA + q as u64 * 512, 512, 0),
                (at(STATUS), 1, W),
            ]);
            block.queue_events()[q].write(1).unwrap();
        }
        for d in &drivers {
            wait_until("both queues", || d.used_idx() == 1);
        }
        let bytes = std::fs::read(file.path()).unwrap();
        assert!(bytes[..512].iter().all(|&b| b == 1));
        assert!(bytes[512..1024].iter().all(|&b| b == 2));
        let mut irqs = irq.0.lock().unwrap().clone();
        irqs.sort();
        assert_eq!(irqs, [0, 1], "one interrupt on each queue's vector");
        let per_queue: Vec<_> = block
            .metrics()
            .queues()
            .iter()
            .map(|m| (m.get(Requests), m.get(WriteBytes)))
            .collect();
        assert_eq!(per_queue, [(1, 512), (1, 512)]);
        block.reset();
    }
}

#[test]
fn the_driver_may_use_fewer_queues() {
    let file = TempFile::new(4096);
    let mut cfg = config(file.path(), true);
    cfg.num_queues = 4;
    let mut block = Block::new(cfg).unwrap();
    let mem = memory();
    let driver = Driver::new(&mem);
    let unused = || <virtio_queue::Queue as virtio_queue::QueueT>::new(QUEUE_SIZE).unwrap();
    let queues = vec![driver.queue(), unused(), unused(), unused()];
    let irq = Arc::new(CountingInterrupt::default());
    block
        .activate(mem.clone(), block.features(), queues, irq.clone())
        .unwrap();
    // But not none.
    block.reset();
    let queues = (0..4).map(|_| unused()).collect();
    assert!(block
        .activate(mem.clone(), block.features(), queues, irq)
        .is_err());
}

/// A queue's request loop, driven by the test instead of its thread.
fn worker(file: &TempFile, io_uring: bool) -> (QueueWorker, Driver, Memory) {
    worker_on(file.path(), io_uring)
}

fn worker_on(path: &Path, io_uring: bool) -> (QueueWorker, Driver, Memory) {
    let block = Block::new(config(path, io_uring)).unwrap();
    let mem = memory();
    let driver = Driver::new(&mem);
    let irq = Arc::new(CountingInterrupt::default());
    let w = block
        .queue_worker(0, mem.clone(), driver.queue(), irq)
        .unwrap();
    assert_eq!(w.uring.is_some(), io_uring && Uring::new(16).is_ok());
    // The worker keeps what it needs; the device may go.
    drop(block);
    (w, driver, mem)
}

#[test]
fn a_broken_avail_index_does_not_spin_the_io_thread() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0; 4096]);
        let (mut w, _driver, mem) = worker(&file, io_uring);
        // More entries published than the queue holds.
        mem.write_obj(QUEUE_SIZE + 1, GuestAddress(AVAIL_RING + 2))
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            w.serve();
            w.drain();
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(5)).is_ok(),
            "serve spun on a broken ring"
        );
    }
}

#[test]
fn a_wakeup_takes_at_most_the_budget_and_rearms() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0; 4096]);
        let (mut w, mut driver, mem) = worker(&file, io_uring);
        w.budget = 4;
        mem.write_obj(VIRTIO_BLK_T_FLUSH, GuestAddress(HDR))
            .unwrap();
        for _ in 0..7 {
            driver.add(&[(HDR, 16, 0), (STATUS, 1, W)]);
        }
        w.serve();
        w.drain();
        assert_eq!(driver.used_idx(), 4, "one budget's worth");
        assert_eq!(w.queue_evt.read().unwrap(), 1, "re-armed for the rest");
        w.serve();
        w.drain();
        assert_eq!(driver.used_idx(), 7);
        assert!(w.queue_evt.read().is_err(), "nothing left: not re-armed");
    }
}

#[test]
fn random_descriptor_rings_never_panic() {
    // A driven queue fed garbage rings: every chain shape, address and
    // length the guest can write. The loop must complete or drop each chain
    // and never write outside guest memory or panic.
    for io_uring in ENGINES {
        let file = TempFile::new(1 << 16);
        let (mut w, _driver, mem) = worker(&file, io_uring);
        let mut rng = Lcg(0xb10c);
        for _ in 0..2_000 {
            for i in 0..u64::from(QUEUE_SIZE) {
                let desc = DESC_TABLE + 16 * i;
                let addr = match rng.next() % 3 {
                    0 => rng.next() << 20 | rng.next(),
                    _ => 0x10000 + rng.next() % 0x8000,
                };
                let len = rng.next() as u32 % 0x3000;
                let _ = mem.write_obj(addr, GuestAddress(desc));
                let _ = mem.write_obj(len, GuestAddress(desc + 8));
                let _ = mem.write_obj(rng.next() as u16 & 0x7, GuestAddress(desc + 12));
                let _ = mem.write_obj(rng.next() as u16, GuestAddress(desc + 14));
                let ring = GuestAddress(AVAIL_RING + 4 + 2 * i);
                let _ = mem.write_obj(rng.next() as u16, ring);
            }
            let _ = mem.write_obj(rng.next() as u16, GuestAddress(AVAIL_RING + 2));
            w.serve();
            w.drain();
        }
    }
}

/// The used ring's flags: VRING_USED_F_NO_NOTIFY (1) while the device asks
/// the driver not to notify (no EVENT_IDX here).
fn used_flags(mem: &Memory) -> u16 {
    mem.read_obj(GuestAddress(USED_RING)).unwrap()
}

#[test]
fn no_notifications_are_asked_for_while_requests_are_in_flight() {
    for io_uring in ENGINES {
        let file = TempFile::with_bytes(&[0; 4096]);
        let (mut w, mut driver, mem) = worker(&file, io_uring);
        if io_uring && w.uring.is_none() {
            continue;
        }
        mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
        mem.write_obj(0u64, GuestAddress(HDR + 8)).unwrap();
        driver.add(&[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)]);
        w.serve();
        // In flight (a completion will come): the driver need not notify.
        // Carried out at once: nothing will wake the thread but the driver.
        assert_eq!(used_flags(&mem), u16::from(io_uring), "io_uring {io_uring}");
        w.drain();
        assert_eq!(driver.used_idx(), 1);
        // Nothing in flight any more: the next look asks for notifications.
        w.serve();
        assert_eq!(used_flags(&mem), 0);
    }
}

#[test]
fn tmpfs_images_write_at_once() {
    let file = TempFile::with_bytes(&[0; 4096]);
    let tmp_is_tmpfs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(file.path())
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"tmpfs"));
    let disk = |path: &Path| Disk::open(path, OpenFlags::default(), 512).unwrap();
    assert_eq!(disk(file.path()).in_memory(), tmp_is_tmpfs);
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let path = shm.join(format!("vfvm-blk-test-{}.img", std::process::id()));
    std::fs::write(&path, [0u8; 4096]).unwrap();
    let in_memory = disk(&path).in_memory();
    // A write is carried out at once, a read goes through the ring.
    let (mut w, mut driver, mem) = worker_on(&path, true);
    let mut ring_requests = Vec::new();
    for kind in [VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_IN] {
        mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        mem.write_obj(0u64, GuestAddress(HDR + 8)).unwrap();
        let flags = if kind == VIRTIO_BLK_T_IN { W } else { 0 };
        driver.add(&[(HDR, 16, 0), (DATA, 512, flags), (STATUS, 1, W)]);
        w.serve();
        w.drain();
        ring_requests.push(w.ctx.metrics.total(RingRequests));
    }
    let uring = w.uring.is_some();
    drop(w);
    std::fs::remove_file(&path).unwrap();
    assert!(in_memory, "{} is tmpfs", path.display());
    assert_eq!(driver.used_idx(), 2);
    if uring {
        assert_eq!(ring_requests, [0, 1], "write at once, read on the ring");
    }
}
