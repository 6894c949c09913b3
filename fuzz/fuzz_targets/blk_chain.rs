//! virtio-blk descriptor chains against guest memory: the input is guest
//! memory (descriptor table, available ring, request headers, buffers) in
//! two regions with a hole between them; the queue takes every chain the
//! ring offers and the block request parser
//! (devices/src/virtio/block/request.rs) validates it. Each chain must be
//! accepted or rejected, never panic, and an accepted request may only
//! touch guest memory and the disk's sectors.
#![no_main]

use devices::virtio::block::request::{Limits, Operation, Request};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const REGION: usize = 0x8000;
/// The second region starts here; between the two is a hole.
const HIGH: u64 = 0x10000;
const QUEUE_SIZE: u16 = 16;
const DESC_TABLE: u64 = 0;
const AVAIL_RING: u64 = 0x100;
const USED_RING: u64 = 0x200;
/// 64 KiB of disk.
const CAPACITY: u64 = 128;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, memory)) = data.split_first() else {
        return;
    };
    let mem = guest_memory(memory);
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.try_set_desc_table_address(GuestAddress(DESC_TABLE))
        .unwrap();
    q.try_set_avail_ring_address(GuestAddress(AVAIL_RING))
        .unwrap();
    q.try_set_used_ring_address(GuestAddress(USED_RING))
        .unwrap();
    q.set_event_idx(flags & 2 != 0);
    q.set_ready(true);
    let limits = Limits {
        capacity: CAPACITY,
        readonly: flags & 1 != 0,
        max_discard_sectors: 64,
        max_discard_seg: 4,
        max_write_zeroes_sectors: 64,
        max_write_zeroes_seg: 4,
    };
    // A broken ring may claim any number of entries: take a queue's worth
    // and a few more, as a bounded device loop would.
    for _ in 0..2 * QUEUE_SIZE {
        let Some(chain) = q.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        match Request::parse(chain, mem, &limits) {
            Ok(req) => check(&req, mem, &limits),
            Err(rejected) => {
                if let Some(status) = rejected.status {
                    assert!(mem.check_range(status, 1), "{rejected:?}");
                }
            }
        }
        if q.add_used(mem, head, 0).is_err() {
            break;
        }
    }
});

/// Guest memory holding `bytes` (the low region, then the high one) and
/// zeros after them. Mapped once and rewritten whole for each input: the
/// same contents as fresh memory, without mapping and faulting in 64 KiB
/// per input.
fn guest_memory(bytes: &[u8]) -> &'static GuestMemoryMmap {
    static MEMORY: OnceLock<GuestMemoryMmap> = OnceLock::new();
    static ZEROS: [u8; REGION] = [0; REGION];
    let mem = MEMORY.get_or_init(|| {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), REGION), (GuestAddress(HIGH), REGION)])
            .unwrap()
    });
    let (low, high) = bytes.split_at(bytes.len().min(REGION));
    let high = &high[..high.len().min(REGION)];
    for (base, part) in [(0, low), (HIGH, high)] {
        mem.write_slice(part, GuestAddress(base)).unwrap();
        mem.write_slice(&ZEROS[part.len()..], GuestAddress(base + part.len() as u64))
            .unwrap();
    }
    mem
}

/// An accepted request stays inside guest memory and the disk.
fn check(req: &Request, mem: &GuestMemoryMmap, limits: &Limits) {
    assert!(mem.check_range(req.status, 1), "{req:?}");
    let disk = limits.capacity * 512;
    let inside = |offset: u64, len: u64| offset.checked_add(len).is_some_and(|end| end <= disk);
    match &req.op {
        Operation::Read { offset, data } | Operation::Write { offset, data } => {
            let len: u64 = data.iter().map(|b| u64::from(b.len)).sum();
            assert!(inside(*offset, len), "{req:?}");
            for b in data {
                assert!(mem.check_range(b.addr, b.len as usize), "{req:?}");
            }
            if matches!(req.op, Operation::Write { .. }) {
                assert!(!limits.readonly, "{req:?}");
            }
        }
        Operation::GetId { data } => {
            for b in data {
                assert!(mem.check_range(b.addr, b.len as usize), "{req:?}");
            }
        }
        Operation::Flush => {}
        Operation::Discard(ranges) | Operation::WriteZeroes(ranges) => {
            assert!(!limits.readonly, "{req:?}");
            for r in ranges {
                assert!(inside(r.offset, r.len), "{req:?}");
            }
        }
    }
}
