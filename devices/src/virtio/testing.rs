//! Test helpers: a driver-side split queue in guest memory, temporary disk
//! images and fake interrupts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

pub(crate) use crate::interrupt::testing::FakeInterrupts;
use crate::virtio::VirtioInterrupt;

pub const MEM_SIZE: usize = 1 << 20;
pub const DESC_TABLE: u64 = 0x0;
pub const AVAIL_RING: u64 = 0x1000;
pub const USED_RING: u64 = 0x2000;
pub const QUEUE_SIZE: u16 = 16;
const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;

pub fn memory() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap())
}

/// The driver's side of a split queue at fixed addresses (offset by
/// `base`, for a second queue).
pub struct Driver {
    mem: Arc<GuestMemoryMmap>,
    base: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl Driver {
    pub fn new(mem: &Arc<GuestMemoryMmap>) -> Self {
        Self::at(mem, 0)
    }

    /// A driver whose rings are `base` bytes above the default ones.
    pub fn at(mem: &Arc<GuestMemoryMmap>, base: u64) -> Self {
        Driver {
            mem: mem.clone(),
            base,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// A device-side queue over this driver's rings.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(QUEUE_SIZE).unwrap();
        q.try_set_desc_table_address(GuestAddress(self.base + DESC_TABLE))
            .unwrap();
        q.try_set_avail_ring_address(GuestAddress(self.base + AVAIL_RING))
            .unwrap();
        q.try_set_used_ring_address(GuestAddress(self.base + USED_RING))
            .unwrap();
        q.set_ready(true);
        q
    }

    /// Makes a chain of `(addr, len, flags)` available; returns its head.
    pub fn add(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let idx = self.next_desc;
            self.next_desc = (self.next_desc + 1) % QUEUE_SIZE;
            let last = i + 1 == descs.len();
            let flags = if last {
                flags
            } else {
                flags | VIRTQ_DESC_F_NEXT
            };
            let at = GuestAddress(self.base + DESC_TABLE + 16 * u64::from(idx));
            self.mem.write_obj(addr, at).unwrap();
            self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
            self.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
            self.mem
                .write_obj(self.next_desc, at.unchecked_add(14))
                .unwrap();
        }
        let slot = self.base + AVAIL_RING + 4 + 2 * u64::from(self.avail_idx % QUEUE_SIZE);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(self.base + AVAIL_RING + 2))
            .unwrap();
        head
    }

    pub fn used_idx(&self) -> u16 {
        self.mem
            .read_obj(GuestAddress(self.base + USED_RING + 2))
            .unwrap()
    }

    /// Used ring entry `i`: (descriptor head, length written).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let at = GuestAddress(self.base + USED_RING + 4 + 8 * u64::from(i % QUEUE_SIZE));
        let id = self.mem.read_obj(at).unwrap();
        let len = self.mem.read_obj(at.unchecked_add(4)).unwrap();
        (id, len)
    }
}

/// A file under the temporary directory, removed on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(len: u64) -> Self {
        let f = Self::with_bytes(&[]);
        fs::OpenOptions::new()
            .write(true)
            .open(f.path())
            .unwrap()
            .set_len(len)
            .unwrap();
        f
    }

    pub fn with_bytes(data: &[u8]) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vfvm-virtio-{}-{n}.img", std::process::id()));
        fs::write(&path, data).unwrap();
        TempFile(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Counts queue interrupts.
#[derive(Default)]
pub struct CountingInterrupt(pub Mutex<Vec<usize>>);

impl VirtioInterrupt for CountingInterrupt {
    fn signal_queue(&self, queue: usize) {
        self.0.lock().unwrap().push(queue);
    }
}

/// A tiny deterministic generator (no rand crate in the tree).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
