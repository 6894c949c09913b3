//! Reads, writes and flushes in flight through io_uring, many at a time.
//!
//! A queue's I/O thread pushes one submission per request and enters the
//! kernel once per batch; the ring's fd becomes readable when completions
//! wait. Each request in flight keeps its iovec array here, at a stable
//! heap address, until its completion is reaped. At most [`Uring::capacity`]
//! requests are in flight: the completion ring (twice the submission ring)
//! can never overflow.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types, IoUring};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::disk::Disk;
use super::request::{Buf, Operation, Request};
use super::worker::slices;

/// A request the ring carries.
pub(super) struct InFlight {
    /// The chain's head descriptor.
    pub head: u16,
    /// The request (a read, a write or a flush).
    pub req: Request,
    /// What the kernel reads or writes; never touched while in flight.
    iovecs: Iovecs,
}

impl InFlight {
    /// Bytes the request moves.
    pub fn len(&self) -> u64 {
        self.iovecs.0.iter().map(|v| v.iov_len as u64).sum()
    }
}

/// The iovecs of a request in flight.
struct Iovecs(Vec<libc::iovec>);

// SAFETY: the pointers are into guest memory, which every thread of the VMM
// may access (it is shared with the guest anyway); the ring, and with it
// the iovecs, moves to its queue's I/O thread before anything is in flight.
unsafe impl Send for Iovecs {}

/// The io_uring of one queue.
pub(super) struct Uring {
    ring: IoUring,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
}

impl Uring {
    /// A ring for `entries` requests in flight; fails where the kernel has
    /// no io_uring (or forbids it).
    pub fn new(entries: u16) -> io::Result<Self> {
        let entries = u32::from(entries.max(1));
        // The completion ring is twice the submission ring by default.
        let ring = IoUring::new(entries)?;
        let capacity = ring.params().sq_entries().min(entries) as usize;
        Ok(Uring {
            ring,
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity).rev().collect(),
        })
    }

    /// The fd to wait on: readable when completions are ready.
    pub fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Whether another request can go in flight.
    pub fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Queues `req` (not submitted until [`Uring::submit`]); gives it back
    /// when it is not for the ring: not a read, write or flush, a write or
    /// flush of an image in memory ([`Disk::in_memory`]), buffers that need
    /// bouncing for `O_DIRECT`, more buffers than one call takes, or no
    /// room.
    pub fn push(
        &mut self,
        mem: &GuestMemoryMmap,
        disk: &Disk,
        head: u16,
        req: Request,
    ) -> Result<(), Request> {
        let fd = types::Fd(disk.raw_fd());
        let (iovecs, offset) = match &req.op {
            Operation::Write { .. } | Operation::Flush if disk.in_memory() => return Err(req),
            Operation::Read { offset, data } | Operation::Write { offset, data } => {
                match iovecs(mem, disk, data) {
                    Some(v) => (v, *offset),
                    None => return Err(req),
                }
            }
            Operation::Flush => (Vec::new(), 0),
            _ => return Err(req),
        };
        let Some(slot) = self.free.pop() else {
            return Err(req);
        };
        let count = iovecs.len() as u32;
        let entry = match &req.op {
            Operation::Read { .. } => opcode::Readv::new(fd, iovecs.as_ptr(), count)
                .offset(offset)
                .build(),
            Operation::Write { .. } => opcode::Writev::new(fd, iovecs.as_ptr(), count)
                .offset(offset)
                .build(),
            _ => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(slot as u64);
        // SAFETY: the iovecs describe guest memory (mmap'd regions that stay
        // mapped while the I/O thread holds the `Memory`, and it waits for
        // every request in flight before it lets go of it) and live in
        // `slots[slot]` at a stable heap address until the completion is
        // reaped; the file stays open for as long as the disk lives, which
        // outlives its I/O threads.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            self.free.push(slot);
            return Err(req);
        }
        self.slots[slot] = Some(InFlight {
            head,
            req,
            iovecs: Iovecs(iovecs),
        });
        Ok(())
    }

    /// Hands what was pushed to the kernel; returns how many requests that
    /// was (without a system call when there were none).
    pub fn submit(&mut self) -> io::Result<usize> {
        if self.ring.submission().is_empty() {
            return Ok(0);
        }
        loop {
            match self.ring.submit() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Submits, and waits until at least one completion is ready.
    pub fn wait(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map(drop),
            }
        }
    }

    /// Moves the completed requests, with their results (bytes moved or
    /// the error), to `out`.
    pub fn reap(&mut self, out: &mut Vec<(InFlight, io::Result<u64>)>) {
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (slot, res) in done {
            let Some(req) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot as usize);
            let result = match u64::try_from(res) {
                Ok(n) => Ok(n),
                Err(_) => Err(io::Error::from_raw_os_error(-res)),
            };
            out.push((req, result));
        }
    }
}

/// The iovecs of `data`, or `None` when the ring cannot take them as they
/// are.
fn iovecs(mem: &GuestMemoryMmap, disk: &Disk, data: &[Buf]) -> Option<Vec<libc::iovec>> {
    let bufs = slices(mem, data).ok()?;
    if disk.needs_bounce(&bufs) || bufs.len() > libc::UIO_MAXIOV as usize {
        return None;
    }
    Some(
        bufs.iter()
            .map(|b| libc::iovec {
                // Guest RAM is plain mmap'd memory: the guard of a slice
                // pins nothing, the pointer stays valid while it is mapped.
                iov_base: b.ptr_guard_mut().as_ptr().cast(),
                iov_len: b.len(),
            })
            .collect(),
    )
}

/// `data` without its first `n` bytes (what a short transfer left).
pub(super) fn skip(data: &[Buf], mut n: u64) -> Vec<Buf> {
    let mut out = Vec::with_capacity(data.len());
    for b in data {
        let len = u64::from(b.len);
        if n >= len {
            n -= len;
            continue;
        }
        // Cannot overflow: the request's buffers were range-checked.
        out.push(Buf {
            addr: GuestAddress(b.addr.0 + n),
            len: (len - n) as u32,
        });
        n = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_drops_whole_and_partial_buffers() {
        let b = |a, l| Buf {
            addr: GuestAddress(a),
            len: l,
        };
        let data = [b(0x100, 4), b(0x200, 8)];
        assert_eq!(skip(&data, 0), data);
        assert_eq!(skip(&data, 4), [b(0x200, 8)]);
        assert_eq!(skip(&data, 6), [b(0x202, 6)]);
        assert_eq!(skip(&data, 12), []);
    }
}
