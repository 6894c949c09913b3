//! Fully reserved guest memory.
//!
//! Every page of guest RAM is allocated, populated and locked before the
//! first vCPU runs: a passed-through VF may DMA into any of it, and the
//! guest must never fault, swap or balloon. Limits are checked first so a
//! VM that cannot be reserved fails with one line naming the limit, the
//! amount needed and the fix, instead of half-starting.

use std::fs;
use std::io;
use std::time::{Duration, Instant};

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

const HUGE_PAGE: u64 = 2 << 20;
const HUGE_PAGES_FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
const CAP_IPC_LOCK: u32 = 14;

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
    /// Not enough free 2 MiB pages.
    #[error("--hugepages: need {needed} free 2 MiB pages for {size} of guest memory, {free} are free; add them with `echo {total} > /proc/sys/vm/nr_hugepages`")]
    HugePages {
        size: Size,
        needed: u64,
        free: u64,
        total: u64,
    },
    /// `-m` is not a multiple of 2 MiB with --hugepages.
    #[error("--hugepages: guest memory {0} is not a multiple of 2 MiB; change -m")]
    HugePageMultiple(Size),
    /// The host has too little memory.
    #[error("cannot reserve {needed} of guest memory: the host has {available} available; lower -m or free memory")]
    NotEnoughMemory { needed: Size, available: Size },
    /// mmap, madvise or mlock failed.
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

/// Reserved guest RAM and how long reserving it took.
pub struct GuestRam {
    /// The guest's RAM regions.
    pub memory: GuestMemoryMmap,
    /// Time spent allocating, populating and locking it.
    pub reserve_time: Duration,
}

/// Why a passthrough VM locks its memory twice.
const DMA_TWICE: &str = " (twice the guest's: pages locked by vfvm are pinned again for VF DMA, and the kernel counts both)";

/// Checks the host's limits for `size` bytes of guest RAM. With
/// `dma_pinned` (a VF is passed through), VFIO pins every page once more,
/// and the kernel counts those pins against RLIMIT_MEMLOCK too.
pub fn check_limits(size: u64, hugepages: bool, dma_pinned: bool) -> Result<(), Error> {
    if hugepages {
        if !size.is_multiple_of(HUGE_PAGE) {
            return Err(Error::HugePageMultiple(Size(size)));
        }
        let needed = size / HUGE_PAGE;
        let free = read_u64(HUGE_PAGES_FREE).unwrap_or(0);
        if free < needed {
            let total = read_u64("/proc/sys/vm/nr_hugepages").unwrap_or(0) + needed - free;
            return Err(Error::HugePages {
                size: Size(size),
                needed,
                free,
                total,
            });
        }
    } else if let Some(available) = mem_available() {
        if available < size {
            return Err(Error::NotEnoughMemory {
                needed: Size(size),
                available: Size(available),
            });
        }
    }
    if !has_cap_ipc_lock() {
        check_memlock(size, dma_pinned, memlock_limit())?;
    }
    Ok(())
}

fn check_memlock(size: u64, dma_pinned: bool, limit: u64) -> Result<(), Error> {
    let (needed, why) = if dma_pinned {
        (size.saturating_mul(2), DMA_TWICE)
    } else {
        (size, "")
    };
    if limit < needed {
        return Err(Error::MemlockLimit {
            needed: Size(needed),
            limit: Size(limit),
            why,
        });
    }
    Ok(())
}

/// Allocates, populates and locks the guest RAM `ranges`.
pub fn reserve(ranges: &[(GuestAddress, u64)], hugepages: bool) -> Result<GuestRam, Error> {
    let start = Instant::now();
    let regions = ranges
        .iter()
        .map(|&(addr, size)| reserve_region(addr, size, hugepages))
        .collect::<Result<Vec<_>, _>>()?;
    let memory = GuestMemoryMmap::from_regions(regions).map_err(|e| Error::Reserve {
        size: Size(ranges.iter().map(|r| r.1).sum()),
        addr: 0,
        what: "regions",
        source: io::Error::other(e.to_string()),
    })?;
    Ok(GuestRam {
        memory,
        reserve_time: start.elapsed(),
    })
}

fn reserve_region(
    addr: GuestAddress,
    size: u64,
    hugepages: bool,
) -> Result<GuestRegionMmap, Error> {
    let fail = |what, source| Error::Reserve {
        size: Size(size),
        addr: addr.0,
        what,
        source,
    };
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    if hugepages {
        flags |= libc::MAP_HUGETLB | libc::MAP_HUGE_2MB | libc::MAP_POPULATE;
    }
    let region = MmapRegion::build(
        None,
        size as usize,
        libc::PROT_READ | libc::PROT_WRITE,
        flags,
    )
    .map_err(|e| fail("mmap", io::Error::other(e.to_string())))?;
    let ptr = region.as_ptr().cast::<libc::c_void>();
    if !hugepages {
        // Transparent huge pages cut TLB misses; the hint failing is harmless.
        // SAFETY: `ptr`/`size` is the mapping just created and owned by `region`.
        unsafe { libc::madvise(ptr, size as usize, libc::MADV_HUGEPAGE) };
    }
    // mlock faults in every page and keeps it resident.
    // SAFETY: `ptr`/`size` is the mapping just created and owned by `region`.
    if unsafe { libc::mlock(ptr, size as usize) } != 0 {
        return Err(fail("mlock", io::Error::last_os_error()));
    }
    GuestRegionMmap::new(region, addr)
        .ok_or_else(|| fail("region", io::Error::other("guest address range overflows")))
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

fn has_cap_ipc_lock() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn memlock_limit() -> u64 {
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
    use vm_memory::{Bytes, GuestMemoryBackend};

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
        assert!(matches!(
            check_limits(3 << 20, true, false),
            Err(Error::HugePageMultiple(_))
        ));
    }

    #[test]
    fn the_error_names_the_limit_and_the_fix() {
        let e = check_memlock(512 << 20, false, 64 << 10).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("RLIMIT_MEMLOCK is 64 KiB") && s.contains("ulimit -l unlimited"));
    }

    #[test]
    fn passthrough_needs_the_limit_twice() {
        assert!(check_memlock(512 << 20, false, 512 << 20).is_ok());
        let e = check_memlock(512 << 20, true, 512 << 20).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("cannot lock 1 GiB") && s.contains("VF DMA"),
            "{s}"
        );
        assert!(check_memlock(512 << 20, true, 1 << 30).is_ok());
        assert!(check_memlock(512 << 20, true, u64::MAX).is_ok());
    }

    #[test]
    fn reserves_small_locked_memory() {
        // 64 KiB fits the default RLIMIT_MEMLOCK of unprivileged users too.
        let ram = reserve(&[(GuestAddress(0), 64 << 10)], false).unwrap();
        ram.memory.write_obj(0xabu8, GuestAddress(0xfff)).unwrap();
        assert_eq!(
            ram.memory.read_obj::<u8>(GuestAddress(0xfff)).unwrap(),
            0xab
        );
        assert_eq!(ram.memory.num_regions(), 1);
    }
}
