//! The I/O threads: the request loop, off the VMM's event thread.
//!
//! Each enabled queue of an activated disk is served by one of the disk's
//! I/O threads (its own by default, `iothreads=` shares them), which waits
//! (epoll) on its queues' eventfds (signalled in the kernel by the guest's
//! notify write: an ioeventfd), their rings of requests in flight
//! ([`Uring`], one per queue, when the kernel has io_uring) and a stop
//! eventfd. A slow or stalled disk therefore delays only its own queues,
//! never the console, the API or another disk, and a vCPU never waits for
//! a request. Every wakeup of a thread serving several queues ends with a
//! look at each of them, so their completions go out together.
//!
//! A wakeup takes at most [`BUDGET`] chains, then re-arms the queue's
//! eventfd and lets the thread see its other events (a stop, completions)
//! before taking more: a guest that keeps the queue full cannot keep the
//! thread from stopping. Reads, writes and flushes go in flight through the
//! ring (but not the writes and flushes of a tmpfs image, see
//! [`Disk::in_memory`]), everything else (and all requests without
//! io_uring) is carried out at once with the same code, so both ways have
//! the same semantics. Completions are batched: one interrupt decision
//! (`EVENT_IDX`) per round. While requests are in flight the driver is
//! asked not to notify: each completion wakes the thread, which then looks
//! at the available ring itself, so a busy queue costs the guest no exit
//! per request.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use log::{error, warn};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::disk::{Disk, SERIAL_LEN};
use super::metrics::{BlockMetrics, Counter};
use super::request::{Buf, Limits, Operation, Request};
use super::uring::{skip, InFlight, Uring};
use crate::virtio::{Memory, VirtioInterrupt};

/// Chains taken from the available ring per wakeup.
pub const BUDGET: usize = 128;

/// The stop eventfd's epoll token; queues have [`queue_token`].
const TOKEN_STOP: u64 = u64::MAX;

/// What every queue of a disk works with.
pub(super) struct DiskContext {
    pub disk: Disk,
    pub limits: Limits,
    pub serial: [u8; SERIAL_LEN],
    /// Counters, one set per queue.
    pub metrics: Arc<BlockMetrics>,
}

/// One queue's request processing.
pub(super) struct QueueWorker {
    pub index: usize,
    pub mem: Memory,
    pub queue: Queue,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    pub queue_evt: EventFd,
    pub ctx: Arc<DiskContext>,
    pub uring: Option<Uring>,
    /// Chains taken per wakeup ([`BUDGET`]).
    pub budget: usize,
    /// Used entries added since the last interrupt decision.
    pending_irq: bool,
    /// Whether the driver's notifications are enabled; while requests are
    /// in flight they are not, and each completion looks at the available
    /// ring instead.
    listening: bool,
}

impl QueueWorker {
    pub fn new(
        index: usize,
        mem: Memory,
        queue: Queue,
        interrupt: Arc<dyn VirtioInterrupt>,
        queue_evt: EventFd,
        ctx: Arc<DiskContext>,
        uring: Option<Uring>,
    ) -> Self {
        QueueWorker {
            index,
            mem,
            queue,
            interrupt,
            queue_evt,
            ctx,
            uring,
            budget: BUDGET,
            pending_irq: false,
            listening: true,
        }
    }

    fn count(&self, counter: Counter, n: u64) {
        if let Some(m) = self.ctx.metrics.queue(self.index) {
            m.add(counter, n);
        }
    }

    /// What the thread does when the queue's eventfd fires: counts the
    /// notifications and takes the available chains.
    fn notified(&mut self) {
        // Nonblocking; an empty counter is a spurious wakeup (or our own
        // re-arm), its value the notifications.
        if let Ok(n) = self.queue_evt.read() {
            self.count(Counter::Notifications, n);
        }
        self.serve();
    }

    /// The end of a wakeup: the completions the ring reported, and those
    /// that were ready when the submission returned (a fast device
    /// completes them in the call), without another trip through epoll.
    /// Then the requests the driver added meanwhile, unless it notifies,
    /// and one interrupt decision.
    fn settle(&mut self) {
        if self.reap() > 0 && !self.listening {
            self.serve();
        }
        self.notify();
    }

    /// Takes up to [`BUDGET`] chains from the available ring.
    pub fn serve(&mut self) {
        let mem = self.mem.clone();
        let mut budget = self.budget;
        loop {
            if let Err(e) = self.queue.disable_notification(&*mem) {
                warn!("virtio-blk: {e}");
            }
            while budget > 0 && self.has_room() {
                let Some(chain) = self.queue.pop_descriptor_chain(&*mem) else {
                    break;
                };
                budget -= 1;
                self.start(&mem, chain);
            }
            self.submit();
            if budget == 0 {
                // More may wait: come back after the other events.
                if let Err(e) = self.queue_evt.write(1) {
                    warn!("virtio-blk: cannot re-arm queue {}: {e}", self.index);
                }
                return;
            }
            if self.in_flight() > 0 {
                // A completion will wake the thread, and it looks again
                // then: the driver need not notify (an exit each time)
                // while requests are in flight. This covers a full ring
                // too: completions free room.
                self.listening = false;
                return;
            }
            self.listening = true;
            match self.queue.enable_notification(&*mem) {
                // More entries arrived, or the driver published an index we
                // cannot take (more than the queue holds): the latter would
                // spin this thread forever, so a broken ring is left alone
                // until the driver resets the device.
                Ok(true) => match self.queue.iter(&*mem) {
                    Ok(_) => continue,
                    Err(e) => {
                        warn!("virtio-blk: ignoring a broken available ring: {e}");
                        return;
                    }
                },
                Ok(false) => return,
                Err(e) => {
                    warn!("virtio-blk: {e}");
                    return;
                }
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.uring.as_ref().map_or(0, Uring::in_flight)
    }

    fn has_room(&self) -> bool {
        self.uring.as_ref().is_none_or(Uring::has_room)
    }

    fn submit(&mut self) {
        let Some(u) = &mut self.uring else {
            return;
        };
        match u.submit() {
            Ok(0) => {}
            Ok(n) => {
                self.count(Counter::RingRequests, n as u64);
                self.count(Counter::Submissions, 1);
            }
            Err(e) => error!("virtio-blk: io_uring submission failed: {e}"),
        }
    }

    /// Parses a chain and either puts it in flight or carries it out.
    fn start(&mut self, mem: &GuestMemoryMmap, chain: DescriptorChain<&GuestMemoryMmap>) {
        self.count(Counter::Requests, 1);
        let head = chain.head_index();
        let req = match Request::parse(chain, mem, &self.ctx.limits) {
            Ok(req) => req,
            Err(rejected) => {
                warn!("virtio-blk: bad request: {}", rejected.error);
                match rejected.status {
                    Some(addr) => self.finish(mem, head, addr, rejected.error.status(), 0),
                    None => {
                        self.count(Counter::Errors, 1);
                        self.used(mem, head, 0);
                    }
                }
                return;
            }
        };
        let req = match &mut self.uring {
            Some(u) => match u.push(mem, &self.ctx.disk, head, req) {
                Ok(()) => return,
                Err(req) => req,
            },
            None => req,
        };
        let result = execute(&self.ctx, mem, &req.op);
        self.complete(mem, head, &req, result);
    }

    /// Reaps the ring's completions; returns how many there were.
    fn reap(&mut self) -> usize {
        let Some(u) = &mut self.uring else {
            return 0;
        };
        let mut done = Vec::new();
        u.reap(&mut done);
        let mem = self.mem.clone();
        let n = done.len();
        for (flight, result) in done {
            let result = result.and_then(|n| finish_short(&self.ctx.disk, &mem, &flight, n));
            self.complete(&mem, flight.head, &flight.req, result);
        }
        n
    }

    /// Waits for every request in flight.
    pub fn drain(&mut self) {
        while self.uring.as_ref().is_some_and(|u| u.in_flight() > 0) {
            if let Some(Err(e)) = self.uring.as_mut().map(Uring::wait) {
                // The kernel may still write guest memory: keep it mapped
                // for good rather than risk that.
                error!("virtio-blk: cannot wait for requests in flight: {e}");
                std::mem::forget(self.mem.clone());
                return;
            }
            self.reap();
        }
        self.notify();
    }

    /// Counts and reports a request's outcome.
    fn complete(
        &mut self,
        mem: &GuestMemoryMmap,
        head: u16,
        req: &Request,
        result: io::Result<u32>,
    ) {
        let (status, written) = match result {
            Ok(written) => {
                self.count_done(&req.op);
                (VIRTIO_BLK_S_OK as u8, written)
            }
            Err(e) => {
                warn!("virtio-blk: {}: {e}", self.ctx.disk.path().display());
                (VIRTIO_BLK_S_IOERR as u8, 0)
            }
        };
        self.finish(mem, head, req.status, status, written);
    }

    fn count_done(&self, op: &Operation) {
        match op {
            Operation::Read { data, .. } => self.count(Counter::ReadBytes, total(data)),
            Operation::Write { data, .. } => self.count(Counter::WriteBytes, total(data)),
            Operation::Flush => self.count(Counter::Flushes, 1),
            Operation::Discard(_) => self.count(Counter::Discards, 1),
            Operation::WriteZeroes(_) => self.count(Counter::WriteZeroes, 1),
            Operation::GetId { .. } => {}
        }
    }

    /// Writes the status byte and returns the chain.
    fn finish(
        &mut self,
        mem: &GuestMemoryMmap,
        head: u16,
        addr: GuestAddress,
        status: u8,
        written: u32,
    ) {
        match u32::from(status) {
            VIRTIO_BLK_S_OK => {}
            VIRTIO_BLK_S_UNSUPP => self.count(Counter::Unsupported, 1),
            _ => self.count(Counter::Errors, 1),
        }
        let len = match mem.write_obj(status, addr) {
            Ok(()) => written.saturating_add(1),
            Err(e) => {
                warn!("virtio-blk: cannot write status: {e}");
                written
            }
        };
        self.used(mem, head, len);
    }

    fn used(&mut self, mem: &GuestMemoryMmap, head: u16, len: u32) {
        if let Err(e) = self.queue.add_used(mem, head, len) {
            warn!("virtio-blk: cannot return descriptor {head}: {e}");
        }
        self.pending_irq = true;
    }

    /// Interrupts the guest for the completions since the last call, if
    /// it asked to be (with EVENT_IDX it may not want to).
    pub fn notify(&mut self) {
        if !std::mem::take(&mut self.pending_irq) {
            return;
        }
        if self.queue.needs_notification(&*self.mem).unwrap_or(true) {
            self.count(Counter::Interrupts, 1);
            self.interrupt.signal_queue(self.index);
        }
    }
}

/// An I/O thread's loop over its queues (one or more of a disk's), until
/// `stop` is signalled; every request in flight on them has completed when
/// it returns.
pub(super) fn serve_queues(mut workers: Vec<QueueWorker>, stop: &EventFd) {
    if let Err(e) = wait_loop(&mut workers, stop) {
        let queues: Vec<String> = workers.iter().map(|w| w.index.to_string()).collect();
        error!(
            "virtio-blk: queue(s) {} stopped serving requests: {e}",
            queues.join(",")
        );
    }
    for w in &mut workers {
        w.drain();
    }
}

/// The epoll token of position `k`'s queue eventfd; its ring's is the next.
fn queue_token(k: usize) -> u64 {
    2 * k as u64
}

fn wait_loop(workers: &mut [QueueWorker], stop: &EventFd) -> io::Result<()> {
    let epoll = Epoll::new()?;
    let watch = |fd, token| {
        epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(EventSet::IN, token),
        )
    };
    watch(stop.as_raw_fd(), TOKEN_STOP)?;
    for (k, w) in workers.iter().enumerate() {
        watch(w.queue_evt.as_raw_fd(), queue_token(k))?;
        if let Some(u) = &w.uring {
            watch(u.fd(), queue_token(k) + 1)?;
        }
    }
    let mut events = vec![EpollEvent::default(); 2 * workers.len() + 1];
    let mut woken = vec![false; workers.len()];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        woken.fill(false);
        for ev in &events[..n] {
            let token = ev.data();
            if token == TOKEN_STOP {
                return Ok(());
            }
            let k = (token / 2) as usize;
            let Some(w) = workers.get_mut(k) else {
                continue;
            };
            if !std::mem::replace(&mut woken[k], true) {
                w.count(Counter::Wakeups, 1);
            }
            if token == queue_token(k) {
                w.notified();
            }
        }
        // Every queue of the thread, woken or not: one queue's wakeup also
        // picks up what the others completed or were given meanwhile.
        for w in workers.iter_mut() {
            w.settle();
        }
    }
}

/// Finishes what a short read or write left (the kernel may move fewer
/// bytes than asked); returns the bytes written to the guest.
fn finish_short(
    disk: &Disk,
    mem: &GuestMemoryMmap,
    flight: &InFlight,
    done: u64,
) -> io::Result<u32> {
    let rest = |data: &[Buf]| slices(mem, &skip(data, done));
    match &flight.req.op {
        Operation::Read { offset, data } => {
            if done < flight.len() {
                disk.read_at(&rest(data)?, offset + done)?;
            }
            Ok(u32::try_from(total(data)).unwrap_or(u32::MAX))
        }
        Operation::Write { offset, data } => {
            if done < flight.len() {
                disk.write_at(&rest(data)?, offset + done)?;
            }
            Ok(0)
        }
        _ => Ok(0),
    }
}

/// Runs `op` at once; returns the number of data bytes written to the guest.
fn execute(ctx: &DiskContext, mem: &GuestMemoryMmap, op: &Operation) -> io::Result<u32> {
    let disk = &ctx.disk;
    match op {
        Operation::Read { offset, data } => {
            disk.read_at(&slices(mem, data)?, *offset)?;
            Ok(u32::try_from(total(data)).unwrap_or(u32::MAX))
        }
        Operation::Write { offset, data } => {
            disk.write_at(&slices(mem, data)?, *offset)?;
            Ok(0)
        }
        Operation::Flush => disk.flush().map(|()| 0),
        Operation::GetId { data } => {
            let mut written = 0;
            for b in data {
                let src = ctx
                    .serial
                    .get(written..written + b.len as usize)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                mem.write_slice(src, b.addr).map_err(io::Error::other)?;
                written += b.len as usize;
            }
            Ok(written as u32)
        }
        Operation::Discard(ranges) => {
            for r in ranges {
                disk.discard(r.offset, r.len)?;
            }
            Ok(0)
        }
        Operation::WriteZeroes(ranges) => {
            for r in ranges {
                disk.write_zeroes(r.offset, r.len, r.unmap)?;
            }
            Ok(0)
        }
    }
}

fn total(bufs: &[Buf]) -> u64 {
    bufs.iter().map(|b| u64::from(b.len)).sum()
}

/// The host mappings of guest buffers.
pub(super) fn slices<'m>(
    mem: &'m GuestMemoryMmap,
    bufs: &[Buf],
) -> io::Result<Vec<VolatileSlice<'m>>> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs {
        for s in mem.get_slices(b.addr, b.len as usize) {
            out.push(s.map_err(io::Error::other)?);
        }
    }
    Ok(out)
}
