//! Fully reserved guest memory.
//!
//! Every page of guest RAM is allocated and populated before the first vCPU
//! runs, and held so it is never swapped: a passed-through VF may DMA into
//! any of it, and the guest must never fault, swap or balloon. Limits are
//! checked first so a VM that cannot be reserved fails with one line naming
//! the limit, the amount needed and the fix, instead of half-starting.
//!
//! Who holds the pages decides what RLIMIT_MEMLOCK is charged, once:
//! - no VF, 4 KiB pages: vfvm mlocks guest RAM (`mlock2(MLOCK_ONFAULT)`
//!   over each region, so the kernel charges and checks the limit once,
//!   before any page is touched);
//! - with a VF: vfvm only populates; VFIO then pins every page for DMA
//!   (before any vCPU runs), which keeps them resident and is charged by
//!   the kernel. mlocking them as well would charge them twice;
//! - huge pages without a VF: hugetlb pages are never swapped and the
//!   kernel charges no mlock for them: nothing is charged.
//!
//! VFs come and go while the VM runs ([`RamLock`]): before the first VF's
//! DMA mapping pins guest RAM, the limit is checked for the pins (a refusal
//! names RLIMIT_MEMLOCK and the `prlimit` that raises it) and vfvm's mlock
//! is dropped (munlock leaves the pages populated; the pins then hold
//! them), so a VM booted without a VF is charged once with one too. If the
//! map fails, or the last VF leaves the container (its group's release
//! unpins guest RAM), vfvm mlocks it again: it is never swapped. Hugetlb
//! guest RAM is never locked.
//!
//! Populating is the expensive part (the kernel zeroes every page): several
//! threads each populate their own chunks with `MADV_POPULATE_WRITE`.
//! Guest RAM is `MADV_DONTDUMP`: a core dump of vfvm holds no guest data.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    MmapRegion,
};

use crate::config::HugePageSize;
use crate::setup_threads::join_all;

const CAP_IPC_LOCK: u32 = 14;
/// Threads by default: one per CPU vfvm may run on, at most this many
/// (zeroing pages is bound by memory bandwidth well before that).
const MAX_DEFAULT_THREADS: usize = 16;
/// ... and no more than one per this much guest RAM.
const BYTES_PER_THREAD: u64 = 256 << 20;
/// `VFVM_RESERVE_THREADS` accepts 1 to this.
const MAX_THREADS: usize = 256;
/// Threads take work in chunks of this much (or one huge page if larger).
/// Each chunk is one MADV_POPULATE_WRITE, which holds the process's
/// memory-map lock while it faults the chunk in: small chunks let what
/// runs alongside (the kernel's loading, the passthrough devices opening,
/// any mmap) in between (resources/BENCH.md, issue 13: a device's open
/// took 0.79-1.17 s beside 64 MiB chunks, 0.43-0.51 s beside 8 MiB).
const CHUNK: u64 = 8 << 20;
/// Progress is shown once a reservation takes longer than this.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// The environment variable that sets the number of reservation threads.
pub const THREADS_ENV: &str = "VFVM_RESERVE_THREADS";

/// What guest memory needs of the host for huge pages of one size.
trait HostPages {
    /// The host's pool of these pages.
    fn pool(self) -> &'static str;
    /// The command that makes the pool `total` pages large.
    fn fix(self, total: u64) -> String;
    /// The `mmap` flag for this page size.
    fn mmap_flag(self) -> libc::c_int;
}

impl HostPages for HugePageSize {
    fn pool(self) -> &'static str {
        match self {
            HugePageSize::Size2M => "/sys/kernel/mm/hugepages/hugepages-2048kB",
            HugePageSize::Size1G => "/sys/kernel/mm/hugepages/hugepages-1048576kB",
        }
    }

    fn fix(self, total: u64) -> String {
        match self {
            HugePageSize::Size2M => format!("`echo {total} > /proc/sys/vm/nr_hugepages`"),
            HugePageSize::Size1G => format!(
                "`echo {total} > {}/nr_hugepages` (or boot the host with hugepagesz=1G hugepages={total})",
                self.pool()
            ),
        }
    }

    fn mmap_flag(self) -> libc::c_int {
        match self {
            HugePageSize::Size2M => libc::MAP_HUGE_2MB,
            HugePageSize::Size1G => libc::MAP_HUGE_1GB,
        }
    }
}

/// Why guest memory could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RLIMIT_MEMLOCK is below what must be locked.
    #[error("cannot lock {needed} of guest memory{why}: RLIMIT_MEMLOCK is {limit}; run `ulimit -l unlimited` (or raise memlock in /etc/security/limits.conf) before vfvm, or run it with CAP_IPC_LOCK")]
    MemlockLimit {
        needed: Size,
        limit: Size,
        why: &'static str,
    },
    /// RLIMIT_MEMLOCK of a running VM is below what VFIO pins for a
    /// hot-added VF.
    #[error("cannot pin {needed} of guest memory for the VF's DMA: RLIMIT_MEMLOCK is {limit}; raise it with `prlimit --pid {pid} --memlock={raise}` and add the device again, or run vfvm with CAP_IPC_LOCK")]
    PinLimit {
        needed: Size,
        limit: Size,
        pid: u32,
        raise: u64,
    },
    /// mlock2 or munlock of reserved guest RAM failed.
    #[error("cannot {what} {size} of guest memory: {source}")]
    Lock {
        what: &'static str,
        size: Size,
        #[source]
        source: io::Error,
    },
    /// Not enough free huge pages.
    #[error("{flag}: need {needed} free {page} pages for {size} of guest memory, {free} are free; add them with {fix}")]
    HugePages {
        flag: &'static str,
        page: Size,
        size: Size,
        needed: u64,
        free: u64,
        fix: String,
    },
    /// The host has no pool of this huge page size at all.
    #[error("{flag}: this host has no {page} huge pages ({pool} is missing: the CPU or the kernel lacks them); use --hugepages=2M")]
    NoHugePagePool {
        flag: &'static str,
        page: Size,
        pool: &'static str,
    },
    /// `-m` is not a multiple of the huge page size.
    #[error("{flag}: guest memory {size} is not a multiple of {page}; change -m")]
    HugePageMultiple {
        flag: &'static str,
        size: Size,
        page: Size,
    },
    /// The host has too little memory.
    #[error("cannot reserve {needed} of guest memory: the host has {available} available; lower -m or free memory")]
    NotEnoughMemory { needed: Size, available: Size },
    /// `VFVM_RESERVE_THREADS` is not a thread count.
    #[error("{THREADS_ENV}={0}: not a number of threads; use 1 to {MAX_THREADS} (or unset it for one per CPU)")]
    Threads(String),
    /// mmap, madvise, mlock or a reservation thread failed.
    #[error("cannot reserve {size} of guest memory at {addr:#x}: {what}: {source}")]
    Reserve {
        size: Size,
        addr: u64,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A byte count printed in the largest whole binary unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
        if self.0 == u64::MAX {
            return write!(f, "unlimited");
        }
        for (unit, shift) in UNITS {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{} {unit}", self.0 >> shift);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

/// How guest RAM is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Huge pages, or 4 KiB pages (with transparent huge pages where the
    /// host gives them).
    pub pages: Option<HugePageSize>,
    /// Populating threads.
    pub threads: usize,
    /// VFIO pins every page for a VF's DMA: vfvm populates without mlock.
    pub dma_pinned: bool,
    /// Show progress on stderr if it takes longer than a second.
    pub progress: bool,
}

impl Reservation {
    /// Whether vfvm itself mlocks guest RAM (see the module doc).
    fn mlock(&self) -> bool {
        !self.dma_pinned && self.pages.is_none()
    }

    /// How much RLIMIT_MEMLOCK the VM is charged for `size` bytes of RAM.
    fn memlock_charge(&self, size: u64) -> u64 {
        if self.dma_pinned || self.mlock() {
            size
        } else {
            0
        }
    }

    /// Whether a CPU vfvm may run on is left over beside the populating
    /// threads, for the work done alongside them (decompressing a bzImage;
    /// resources/BENCH.md, issue 13: without one that work only stretches
    /// the reservation).
    pub fn leaves_a_cpu(&self) -> bool {
        usable_cpus() > self.threads
    }

    /// Page size, what holds the pages and the `threads` that populated
    /// them, for the log.
    pub fn describe(&self, threads: usize) -> String {
        let pages = match self.pages {
            None => "4 KiB pages",
            Some(HugePageSize::Size2M) => "2 MiB pages",
            Some(HugePageSize::Size1G) => "1 GiB pages",
        };
        let held = if self.dma_pinned {
            "pinned by VFIO"
        } else if self.mlock() {
            "locked"
        } else {
            "hugetlb"
        };
        let unit = if threads == 1 { "thread" } else { "threads" };
        format!("{pages}, {held}, {threads} {unit}")
    }
}

/// What holds 4 KiB-page guest RAM resident once the VM runs: vfvm's mlock
/// while no VF is attached, VFIO's pins while one is, never both, so
/// RLIMIT_MEMLOCK is charged once however VFs come and go (see the module
/// doc).
#[derive(Debug, PartialEq, Eq)]
pub struct RamLock {
    /// 4 KiB pages (hugetlb pages are never locked).
    lockable: bool,
    /// vfvm's mlock holds guest RAM now.
    locked: bool,
}

/// What RLIMIT_MEMLOCK should be raised to beyond guest RAM (the rule the
/// README states).
const MEMLOCK_SLACK: u64 = 64 << 20;

impl RamLock {
    /// Guest RAM as [`reserve`] left it for `how`.
    pub fn new(how: &Reservation) -> Self {
        RamLock {
            lockable: how.pages.is_none(),
            locked: how.mlock(),
        }
    }

    /// Before VFIO pins all of `memory` for the first VF: checks that
    /// RLIMIT_MEMLOCK takes the pins (unless vfvm has CAP_IPC_LOCK), then
    /// drops vfvm's mlock, whose charge the pins take over. The pages stay
    /// populated. After a failed map, [`RamLock::relock`] locks them again.
    pub fn hand_to_vfio(&mut self, memory: &GuestMemoryMmap) -> Result<(), Error> {
        let size = ram_size(memory);
        if !has_cap_ipc_lock() {
            check_pin_limit(size, memlock_limit(), std::process::id())?;
        }
        if self.locked {
            lock_ram(memory, false)?;
            self.locked = false;
        }
        Ok(())
    }

    /// Once VFIO no longer pins `memory` (its map failed, or the last VF
    /// left the container): vfvm locks it again, so it is never swapped.
    /// A failure is logged: the VM runs on, its RAM no longer locked.
    pub fn relock(&mut self, memory: &GuestMemoryMmap) {
        if !self.lockable || self.locked {
            return;
        }
        match lock_ram(memory, true) {
            Ok(()) => self.locked = true,
            Err(e) => log::warn!("{e}; guest RAM may be swapped until a VF pins it again"),
        }
    }
}

fn ram_size(memory: &GuestMemoryMmap) -> u64 {
    memory.iter().map(|r| r.len()).sum()
}

fn check_pin_limit(needed: u64, limit: u64, pid: u32) -> Result<(), Error> {
    if limit < needed {
        return Err(Error::PinLimit {
            needed: Size(needed),
            limit: Size(limit),
            pid,
            raise: needed + MEMLOCK_SLACK,
        });
    }
    Ok(())
}

/// mlocks (`true`, on fault: the pages are populated already) or munlocks
/// every region of `memory`; all or nothing.
fn lock_ram(memory: &GuestMemoryMmap, lock: bool) -> Result<(), Error> {
    let regions: Vec<&GuestRegionMmap> = memory.iter().collect();
    for (i, r) in regions.iter().enumerate() {
        if let Err(source) = set_locked(r, lock) {
            for done in &regions[..i] {
                let _ = set_locked(done, !lock);
            }
            return Err(Error::Lock {
                what: if lock { "mlock" } else { "munlock" },
                size: Size(ram_size(memory)),
                source,
            });
        }
    }
    Ok(())
}

/// The number of reservation threads for `size` bytes of guest RAM:
/// `VFVM_RESERVE_THREADS` if set, else one per CPU vfvm may run on (at most
/// [`MAX_DEFAULT_THREADS`], and one per 256 MiB).
pub fn reserve_threads(size: u64) -> Result<usize, Error> {
    match std::env::var(THREADS_ENV) {
        Ok(v) => parse_threads(&v),
        Err(std::env::VarError::NotPresent) => Ok(default_threads(size, usable_cpus())),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::Threads(v.to_string_lossy().into())),
    }
}

fn parse_threads(v: &str) -> Result<usize, Error> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(Error::Threads(v.to_string())),
    }
}

fn default_threads(size: u64, cpus: usize) -> usize {
    let by_size = usize::try_from(size / BYTES_PER_THREAD).unwrap_or(usize::MAX);
    cpus.clamp(1, MAX_DEFAULT_THREADS).min(by_size.max(1))
}

/// CPUs this process may run on (its affinity mask).
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Reserved guest RAM and how reserving it went.
pub struct GuestRam {
    /// The guest's RAM regions.
    pub memory: GuestMemoryMmap,
    /// Time spent allocating, populating and locking it.
    pub reserve_time: Duration,
    /// Threads that populated it (at most one per chunk of work).
    pub threads: usize,
}

/// Why a passthrough VM's memory is charged to RLIMIT_MEMLOCK.
const DMA_PINNED: &str = " (VFIO pins all of it for the VF's DMA)";

/// Checks the host's limits for `size` bytes of guest RAM reserved as `how`
/// says, before anything is allocated.
pub fn check_limits(size: u64, how: &Reservation) -> Result<(), Error> {
    if let Some(page) = how.pages {
        check_huge_pages(size, page, Some(page.pool()))?;
    } else if let Some(available) = mem_available() {
        if available < size {
            return Err(Error::NotEnoughMemory {
                needed: Size(size),
                available: Size(available),
            });
        }
    }
    let needed = how.memlock_charge(size);
    if needed > 0 && !has_cap_ipc_lock() {
        let why = if how.dma_pinned { DMA_PINNED } else { "" };
        check_memlock(needed, why, memlock_limit())?;
    }
    Ok(())
}

/// Checks that `size` is a multiple of `page` and that the pool at `pool`
/// (`None`: no pool) has enough free pages.
fn check_huge_pages(
    size: u64,
    page: HugePageSize,
    pool: Option<&'static str>,
) -> Result<(), Error> {
    if !size.is_multiple_of(page.bytes()) {
        return Err(Error::HugePageMultiple {
            flag: page.flag(),
            size: Size(size),
            page: Size(page.bytes()),
        });
    }
    let pool = pool
        .filter(|p| fs::metadata(p).is_ok())
        .ok_or(Error::NoHugePagePool {
            flag: page.flag(),
            page: Size(page.bytes()),
            pool: page.pool(),
        })?;
    let read = |name: &str| read_u64(&format!("{pool}/{name}")).unwrap_or(0);
    // Pages other mappings have reserved but not yet faulted are not free
    // for us.
    let free = read("free_hugepages").saturating_sub(read("resv_hugepages"));
    let needed = size / page.bytes();
    if free < needed {
        let total = read("nr_hugepages") + needed - free;
        return Err(Error::HugePages {
            flag: page.flag(),
            page: Size(page.bytes()),
            size: Size(size),
            needed,
            free,
            fix: page.fix(total),
        });
    }
    Ok(())
}

fn check_memlock(needed: u64, why: &'static str, limit: u64) -> Result<(), Error> {
    if limit < needed {
        return Err(Error::MemlockLimit {
            needed: Size(needed),
            limit: Size(limit),
            why,
        });
    }
    Ok(())
}

/// Allocates and populates the guest RAM `ranges` (and locks them unless
/// VFIO will pin them) with `how.threads` threads, while the calling thread
/// runs `alongside` on the guest memory being populated, so that what
/// would follow the reservation overlaps it (`vfvm run` opens its
/// passthrough devices and loads the kernel there). Its writes fault in
/// the pages they touch, as the threads would: every page is still
/// populated (and locked) when this returns, which is after both are done.
/// Returns what `alongside` did.
pub fn reserve<R>(
    ranges: &[(GuestAddress, u64)],
    how: &Reservation,
    alongside: impl FnOnce(&GuestMemoryMmap) -> R,
) -> Result<(GuestRam, R), Error> {
    let start = Instant::now();
    let mapped = ranges
        .iter()
        .map(|&(addr, size)| map_region(addr, size, how))
        .collect::<Result<Vec<_>, _>>()?;
    let work = chunks(&mapped, how.pages.map_or(4096, HugePageSize::bytes));
    let regions = mapped
        .into_iter()
        .map(|m| {
            let (addr, size) = (m.addr, m.region.size() as u64);
            GuestRegionMmap::new(m.region, m.addr).ok_or_else(|| Error::Reserve {
                size: Size(size),
                addr: addr.0,
                what: "region",
                source: io::Error::other("guest address range overflows"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let memory = GuestMemoryMmap::from_regions(regions).map_err(|e| Error::Reserve {
        size: Size(ranges.iter().map(|r| r.1).sum()),
        addr: 0,
        what: "regions",
        source: io::Error::other(e.to_string()),
    })?;
    // `memory` owns the mappings the chunks point into and outlives the
    // threads, which `populate` joins before it returns.
    let (populated, done) = populate(&work, how, || alongside(&memory));
    let (threads, finished) = populated?;
    Ok((
        GuestRam {
            memory,
            reserve_time: finished.duration_since(start),
            threads,
        },
        done,
    ))
}

/// A guest RAM region mapped but not yet populated.
struct Mapped {
    addr: GuestAddress,
    region: MmapRegion,
}

fn map_region(addr: GuestAddress, size: u64, how: &Reservation) -> Result<Mapped, Error> {
    let fail = |what, source| Error::Reserve {
        size: Size(size),
        addr: addr.0,
        what,
        source,
    };
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    if let Some(page) = how.pages {
        // hugetlb reserves the pages at mmap time: faults cannot fail later.
        flags |= libc::MAP_HUGETLB | page.mmap_flag();
    }
    let region = MmapRegion::build(
        None,
        size as usize,
        libc::PROT_READ | libc::PROT_WRITE,
        flags,
    )
    .map_err(|e| fail("mmap", io::Error::other(e.to_string())))?;
    let ptr = region.as_ptr().cast::<libc::c_void>();
    let len = region.size();
    // SAFETY: `ptr`/`len` is the mapping just created and owned by `region`.
    if unsafe { libc::madvise(ptr, len, libc::MADV_DONTDUMP) } != 0 {
        return Err(fail("madvise(MADV_DONTDUMP)", io::Error::last_os_error()));
    }
    if how.pages.is_none() {
        // Transparent huge pages cut TLB misses; the hint failing is harmless.
        // SAFETY: as above.
        unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) };
    }
    if how.mlock() {
        // Marks the whole region locked: the kernel charges RLIMIT_MEMLOCK
        // once, here, and every page the threads fault in stays resident.
        set_locked(&region, true).map_err(|e| fail("mlock2", e))?;
    }
    Ok(Mapped { addr, region })
}

/// `mlock2(MLOCK_ONFAULT)`s (`lock`) or munlocks the whole of `region`:
/// pages already there stay, and with `lock` the kernel charges
/// RLIMIT_MEMLOCK for all of it at once. Changes no page's contents.
fn set_locked(region: &MmapRegion, lock: bool) -> io::Result<()> {
    let (ptr, len) = (region.as_ptr().cast::<libc::c_void>(), region.size());
    // SAFETY: `ptr`/`len` is exactly `region`'s mapping, which lives as long
    // as the borrow; (un)locking touches no memory.
    let rc = unsafe {
        if lock {
            libc::mlock2(ptr, len, libc::MLOCK_ONFAULT)
        } else {
            libc::munlock(ptr, len)
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A piece of work for one thread: `len` bytes at host address `host`.
#[derive(Clone, Copy)]
struct Chunk {
    host: usize,
    len: usize,
    guest: u64,
}

/// Splits the regions into chunks of at least one page.
fn chunks(mapped: &[Mapped], page: u64) -> Vec<Chunk> {
    let step = CHUNK.max(page) as usize;
    let mut out = Vec::new();
    for m in mapped {
        let base = m.region.as_ptr() as usize;
        let size = m.region.size();
        let mut off = 0;
        while off < size {
            let len = step.min(size - off);
            out.push(Chunk {
                host: base + off,
                len,
                guest: m.addr.0 + off as u64,
            });
            off += len;
        }
    }
    out
}

/// Faults in every page of `work` with `how.threads` threads (no more
/// than there are chunks), each taking the next chunk until none is left,
/// while this thread runs `alongside` (after them on a kernel without
/// MADV_POPULATE_WRITE, whose fallback writes to the pages), then shows
/// progress if asked to.
/// Returns the number of threads and when the last one finished, and what
/// `alongside` returned.
fn populate<R>(
    work: &[Chunk],
    how: &Reservation,
    alongside: impl FnOnce() -> R,
) -> (Result<(usize, Instant), Error>, R) {
    let page = how.pages.map_or(4096, HugePageSize::bytes);
    let total: u64 = work.iter().map(|c| c.len as u64).sum();
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let finished = Mutex::new(Instant::now());
    let threads = how.threads.clamp(1, work.len().max(1));
    let start = Instant::now();
    std::thread::scope(|s| {
        let worker = || -> Result<(), Error> {
            let result = (|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(c) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return Ok(());
                    };
                    if let Err(source) = populate_chunk(c, page) {
                        failed.store(true, Ordering::Relaxed);
                        return Err(Error::Reserve {
                            size: Size(c.len as u64),
                            addr: c.guest,
                            what: "populate",
                            source,
                        });
                    }
                    done.fetch_add(c.len as u64, Ordering::Relaxed);
                }
                Ok(())
            })();
            let mut last = finished.lock().unwrap_or_else(|e| e.into_inner());
            *last = (*last).max(Instant::now());
            result
        };
        // Setup threads (`crate::setup_threads`).
        let handles = (0..threads)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("reserve{i}"))
                    .spawn_scoped(s, worker)
            })
            .collect::<Vec<_>>();
        let mut alongside = Some(alongside);
        let mut beside = None;
        if populate_write_supported() {
            beside = alongside.take().map(|f| f());
        }
        let mut progress = how.progress.then(Progress::default);
        while handles
            .iter()
            .any(|h| h.as_ref().is_ok_and(|h| !h.is_finished()))
        {
            std::thread::sleep(Duration::from_millis(10));
            if let Some(p) = &mut progress {
                p.show(done.load(Ordering::Relaxed), total, start.elapsed());
            }
        }
        if let Some(p) = &mut progress {
            p.finish(total, start.elapsed());
        }
        let result = join_all(handles, "a reservation thread panicked", thread_error);
        let finished = *finished.lock().unwrap_or_else(|e| e.into_inner());
        let beside = match (beside, alongside) {
            (Some(b), _) => b,
            (None, Some(f)) => f(),
            (None, None) => unreachable!("alongside runs once"),
        };
        // A thread that could not start leaves its chunks to the others:
        // only if none ran is the work undone.
        let result = match result {
            Err(Error::Reserve { what: "thread", .. }) if done.load(Ordering::Relaxed) == total => {
                Ok(threads)
            }
            r => r.map(|()| threads),
        };
        (result.map(|n| (n, finished)), beside)
    })
}

fn thread_error(source: io::Error) -> Error {
    Error::Reserve {
        size: Size(0),
        addr: 0,
        what: "thread",
        source,
    }
}

/// Whether this kernel has MADV_POPULATE_WRITE (Linux 5.14): it faults
/// pages in without writing to them, so other writers may run alongside.
fn populate_write_supported() -> bool {
    // SAFETY: advice on an empty range touches no memory; the kernel checks
    // that it knows the advice first.
    unsafe { libc::madvise(std::ptr::null_mut(), 0, libc::MADV_POPULATE_WRITE) == 0 }
}

/// Faults in (and, in a locked region, locks) every page of `c`.
fn populate_chunk(c: &Chunk, page: u64) -> io::Result<()> {
    let ptr = c.host as *mut libc::c_void;
    // SAFETY: the chunk lies inside a mapping owned by the guest memory
    // that the caller keeps alive; populating changes no memory content.
    if unsafe { libc::madvise(ptr, c.len, libc::MADV_POPULATE_WRITE) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    // Kernels before 5.14 have no MADV_POPULATE_WRITE: write to every page.
    for off in (0..c.len).step_by(page as usize) {
        // SAFETY: inside the chunk (see above), which nothing else uses yet
        // (`populate` runs its `alongside` after the threads on such a
        // kernel): writing the zero a fresh anonymous page already holds.
        unsafe { (c.host as *mut u8).add(off).write_volatile(0) };
    }
    Ok(())
}

/// Progress on stderr, once the reservation has taken a second.
#[derive(Default)]
struct Progress {
    shown: bool,
}

impl Progress {
    fn show(&mut self, done: u64, total: u64, elapsed: Duration) {
        if elapsed < PROGRESS_AFTER || !io::stderr().is_terminal() {
            return;
        }
        self.shown = true;
        // A closed or full stderr must not stop the VM from starting.
        let _ = write!(
            io::stderr(),
            "\r\x1b[Kvfvm: {}",
            progress_line(done, total, elapsed)
        );
    }

    fn finish(&mut self, total: u64, elapsed: Duration) {
        if self.shown {
            self.show(total, total, elapsed);
            let _ = writeln!(io::stderr());
        }
    }
}

/// "reserving guest memory: 1.50 of 4.00 GiB (37%), 1.20 GiB/s".
fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let rate = gib(done) / elapsed.as_secs_f64().max(1e-3);
    let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    format!(
        "reserving guest memory: {:.2} of {:.2} GiB ({pct}%), {rate:.2} GiB/s",
        gib(done),
        gib(total)
    )
}

fn read_u64(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn mem_available() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_kib(&meminfo, "MemAvailable:").map(|kib| kib * 1024)
}

fn parse_meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn has_cap_ipc_lock() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub fn memlock_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        lim.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn small(threads: usize, dma_pinned: bool) -> Reservation {
        Reservation {
            pages: None,
            threads,
            dma_pinned,
            progress: false,
        }
    }

    #[test]
    fn sizes_print_in_whole_units() {
        assert_eq!(Size(512 << 20).to_string(), "512 MiB");
        assert_eq!(Size(4 << 30).to_string(), "4 GiB");
        assert_eq!(Size(64 << 10).to_string(), "64 KiB");
        assert_eq!(Size(1536 << 20).to_string(), "1536 MiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
        assert_eq!(Size(u64::MAX).to_string(), "unlimited");
    }

    #[test]
    fn parses_proc_files() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(parse_meminfo_kib(meminfo, "MemAvailable:"), Some(1000));
        assert_eq!(parse_meminfo_kib(meminfo, "Nope:"), None);
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn hugepage_size_must_be_a_multiple() {
        let e = check_huge_pages(3 << 20, HugePageSize::Size2M, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--hugepages: guest memory 3 MiB is not a multiple of 2 MiB; change -m"
        );
        let e = check_huge_pages(3 << 30, HugePageSize::Size1G, None).unwrap_err();
        assert!(matches!(e, Error::NoHugePagePool { .. }), "{e}");
        let e = check_huge_pages(1536 << 20, HugePageSize::Size1G, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--hugepages=1G: guest memory 1536 MiB is not a multiple of 1 GiB; change -m"
        );
    }

    #[test]
    fn a_missing_1g_pool_names_the_way_out() {
        let e = check_huge_pages(2 << 30, HugePageSize::Size1G, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--hugepages=1G: this host has no 1 GiB huge pages \
             (/sys/kernel/mm/hugepages/hugepages-1048576kB is missing: the CPU or the kernel \
             lacks them); use --hugepages=2M"
        );
    }

    #[test]
    fn too_few_huge_pages_name_the_pool_to_grow() {
        let dir = std::env::temp_dir().join(format!("vfvm-hugepool-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("nr_hugepages", "3"),
            ("free_hugepages", "2"),
            ("resv_hugepages", "1"),
        ] {
            fs::write(dir.join(f), v).unwrap();
        }
        let pool: &'static str = Box::leak(dir.display().to_string().into_boxed_str());
        let e = check_huge_pages(4 << 30, HugePageSize::Size1G, Some(pool)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--hugepages=1G: need 4 free 1 GiB pages for 4 GiB of guest memory, 1 are free; \
             add them with `echo 6 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages` \
             (or boot the host with hugepagesz=1G hugepages=6)"
        );
        let e = check_huge_pages(8 << 20, HugePageSize::Size2M, Some(pool)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--hugepages: need 4 free 2 MiB pages for 8 MiB of guest memory, 1 are free; \
             add them with `echo 6 > /proc/sys/vm/nr_hugepages`"
        );
        assert!(check_huge_pages(1 << 30, HugePageSize::Size1G, Some(pool)).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_error_names_the_limit_and_the_fix() {
        let e = check_memlock(512 << 20, "", 64 << 10).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("RLIMIT_MEMLOCK is 64 KiB") && s.contains("ulimit -l unlimited"));
    }

    #[test]
    fn memory_is_charged_once() {
        let size = 512 << 20;
        // vfvm's mlock, or VFIO's pins, never both.
        assert_eq!(small(1, false).memlock_charge(size), size);
        assert_eq!(small(1, true).memlock_charge(size), size);
        let huge = |dma_pinned| Reservation {
            pages: Some(HugePageSize::Size2M),
            dma_pinned,
            ..small(1, false)
        };
        assert_eq!(huge(false).memlock_charge(size), 0);
        assert_eq!(huge(true).memlock_charge(size), size);
        assert!(!small(1, true).mlock() && small(1, false).mlock() && !huge(false).mlock());
        assert_eq!(
            small(2, true).describe(2),
            "4 KiB pages, pinned by VFIO, 2 threads"
        );
        assert_eq!(huge(false).describe(2), "2 MiB pages, hugetlb, 2 threads");
        let e = check_memlock(size, DMA_PINNED, size - 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot lock 512 MiB of guest memory (VFIO pins all of it"),
            "{e}"
        );
        assert!(check_memlock(size, DMA_PINNED, size + (64 << 20)).is_ok());
    }

    #[test]
    fn a_hot_added_vf_over_the_limit_is_one_line_naming_the_fix() {
        let size = 256 << 20;
        let e = check_pin_limit(size, 200 << 20, 42)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot pin 256 MiB of guest memory for the VF's DMA: RLIMIT_MEMLOCK is 200 MiB; \
             raise it with `prlimit --pid 42 --memlock=335544320` and add the device again, \
             or run vfvm with CAP_IPC_LOCK"
        );
        // The pins replace vfvm's mlock: guest RAM itself is enough.
        assert!(check_pin_limit(size, size, 42).is_ok());
    }

    #[test]
    fn guest_ram_is_unlocked_for_vfio_and_locked_again_without_it() {
        let locked = |ram: &GuestRam| {
            let host = ram.memory.iter().next().unwrap().as_ptr() as usize;
            vm_flags(host).split_whitespace().any(|f| f == "lo")
        };
        // 64 KiB fits the default RLIMIT_MEMLOCK of unprivileged users.
        let (ram, ()) = reserve(&[(GuestAddress(0), 64 << 10)], &small(1, false), |_| ()).unwrap();
        ram.memory.write_obj(0x5au8, GuestAddress(0x1000)).unwrap();
        let mut lock = RamLock::new(&small(1, false));
        assert!(locked(&ram));
        lock.hand_to_vfio(&ram.memory).unwrap();
        assert!(!locked(&ram), "VFIO's pins take over the charge");
        assert_eq!(
            lock,
            RamLock {
                lockable: true,
                locked: false
            }
        );
        // Populated still: the contents stay.
        assert_eq!(
            ram.memory.read_obj::<u8>(GuestAddress(0x1000)).unwrap(),
            0x5a
        );
        lock.relock(&ram.memory);
        assert!(locked(&ram), "the map failed or the last VF left");
        lock.relock(&ram.memory);
        assert!(lock.locked);
        // Booted with a VF: never locked until the last VF leaves.
        let (ram, ()) = reserve(&[(GuestAddress(0), 64 << 10)], &small(1, true), |_| ()).unwrap();
        let mut lock = RamLock::new(&small(1, true));
        assert!(!locked(&ram));
        lock.hand_to_vfio(&ram.memory).unwrap();
        assert!(!locked(&ram));
        lock.relock(&ram.memory);
        assert!(locked(&ram));
        // Huge pages are never locked.
        let mut lock = RamLock::new(&Reservation {
            pages: Some(HugePageSize::Size2M),
            ..small(1, false)
        });
        lock.relock(&ram.memory);
        assert_eq!(
            lock,
            RamLock {
                lockable: false,
                locked: false
            }
        );
    }

    #[test]
    fn thread_counts() {
        assert_eq!(parse_threads("2").unwrap(), 2);
        assert_eq!(parse_threads(" 16 ").unwrap(), 16);
        for bad in ["0", "-1", "two", "", "257"] {
            let e = parse_threads(bad).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "VFVM_RESERVE_THREADS={bad}: not a number of threads; use 1 to 256 \
                     (or unset it for one per CPU)"
                )
            );
        }
        // One per CPU, capped, and not more than one per 256 MiB.
        assert_eq!(default_threads(4 << 30, 2), 2);
        assert_eq!(default_threads(64 << 30, 64), MAX_DEFAULT_THREADS);
        assert_eq!(default_threads(512 << 20, 8), 2);
        assert_eq!(default_threads(64 << 10, 8), 1);
        assert_eq!(default_threads(4 << 30, 0), 1);
    }

    #[test]
    fn progress_reads_well() {
        let line = progress_line(3 << 29, 4 << 30, Duration::from_secs(2));
        assert_eq!(
            line,
            "reserving guest memory: 1.50 of 4.00 GiB (37%), 0.75 GiB/s"
        );
        assert!(progress_line(0, 0, Duration::ZERO).contains("(100%)"));
    }

    #[test]
    fn chunks_cover_every_region_exactly() {
        let how = small(1, true);
        let mapped = [
            map_region(GuestAddress(0), 3 * CHUNK + 8192, &how).unwrap(),
            map_region(GuestAddress(1 << 32), 4096, &how).unwrap(),
        ];
        let c = chunks(&mapped, 4096);
        assert_eq!(c.len(), 5);
        assert_eq!(
            c.iter().map(|c| c.len as u64).sum::<u64>(),
            3 * CHUNK + 8192 + 4096
        );
        assert_eq!((c[3].guest, c[3].len), (3 * CHUNK, 8192));
        assert_eq!((c[4].guest, c[4].len), (1 << 32, 4096));
        assert_eq!(
            c[1].host,
            mapped[0].region.as_ptr() as usize + CHUNK as usize
        );
    }

    /// The VmFlags of the mapping that starts at `addr`, from smaps.
    fn vm_flags(addr: usize) -> String {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{addr:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        lines
            .find_map(|l| l.strip_prefix("VmFlags:"))
            .unwrap_or_else(|| panic!("no mapping at {addr:#x}"))
            .to_string()
    }

    #[test]
    fn reserves_with_threads_populated_and_not_dumped() {
        // Pinned by VFIO: no mlock, so any RLIMIT_MEMLOCK will do.
        let size = 4 * CHUNK + 4096;
        let (ram, ()) = reserve(&[(GuestAddress(0), size)], &small(3, true), |_| ()).unwrap();
        assert_eq!(ram.threads, 3);
        ram.memory
            .write_obj(0xabu8, GuestAddress(size - 1))
            .unwrap();
        assert_eq!(
            ram.memory.read_obj::<u8>(GuestAddress(size - 1)).unwrap(),
            0xab
        );
        assert_eq!(ram.memory.num_regions(), 1);
        let region = ram.memory.iter().next().unwrap();
        let host = region.as_ptr() as usize;
        let flags = vm_flags(host);
        assert!(
            flags.split_whitespace().any(|f| f == "dd"),
            "not MADV_DONTDUMP: {flags}"
        );
        assert!(
            !flags.split_whitespace().any(|f| f == "lo"),
            "locked: {flags}"
        );
        // Every page is resident before anyone touches it.
        let pages = (size / 4096) as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: mincore reads the mapping's residency into `vec`, one byte per page.
        let rc =
            unsafe { libc::mincore(host as *mut libc::c_void, size as usize, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        assert!(vec.iter().all(|b| b & 1 == 1), "a page is not resident");
    }

    #[test]
    fn reserves_small_locked_memory() {
        // 64 KiB fits the default RLIMIT_MEMLOCK of unprivileged users too.
        let (ram, ()) = reserve(&[(GuestAddress(0), 64 << 10)], &small(2, false), |_| ()).unwrap();
        // One chunk of work: one thread does it.
        assert_eq!(ram.threads, 1);
        assert_eq!(small(2, false).describe(1), "4 KiB pages, locked, 1 thread");
        ram.memory.write_obj(0xabu8, GuestAddress(0xfff)).unwrap();
        assert_eq!(
            ram.memory.read_obj::<u8>(GuestAddress(0xfff)).unwrap(),
            0xab
        );
        assert_eq!(ram.memory.num_regions(), 1);
        let host = ram.memory.iter().next().unwrap().as_ptr() as usize;
        let flags = vm_flags(host);
        assert!(
            flags.split_whitespace().any(|f| f == "lo"),
            "not locked: {flags}"
        );
    }

    #[test]
    fn what_runs_alongside_keeps_its_writes_and_every_page_is_populated() {
        let size = 4 * CHUNK;
        // Write a pattern across the chunks while the threads populate them.
        let (ram, wrote) = reserve(&[(GuestAddress(0), size)], &small(2, true), |m| {
            (0..size)
                .step_by(CHUNK as usize / 4)
                .map(|a| m.write_obj(0x5au8 ^ (a >> 20) as u8, GuestAddress(a)))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.len())
        })
        .unwrap();
        assert_eq!(wrote.unwrap(), 16);
        for a in (0..size).step_by(CHUNK as usize / 4) {
            let got: u8 = ram.memory.read_obj(GuestAddress(a)).unwrap();
            assert_eq!(got, 0x5a ^ (a >> 20) as u8, "at {a:#x}");
        }
        let host = ram.memory.iter().next().unwrap().as_ptr() as usize;
        let mut vec = vec![0u8; (size / 4096) as usize];
        // SAFETY: mincore reads the mapping's residency into `vec`, one byte per page.
        let rc =
            unsafe { libc::mincore(host as *mut libc::c_void, size as usize, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        assert!(vec.iter().all(|b| b & 1 == 1), "a page is not resident");
    }
}
