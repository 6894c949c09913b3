//! Reservation alone (issue 13), on this machine, no KVM needed: vfvm's
//! `memory::reserve` of 4 GiB with 1, 2 and N threads against a bare
//! baseline, the same size mapped with `MAP_POPULATE` in one thread; and
//! 4 KiB against 2 MiB and 1 GiB pages where the host has them.
//!
//! `cargo bench -p vmm --bench reserve [-- GIB [RUNS]]` (see
//! resources/BENCH.md). Each figure is the median of RUNS (default 3).

use std::time::{Duration, Instant};

#[allow(dead_code, unused_imports)]
#[path = "../src/memory.rs"]
mod memory;
#[allow(unused_imports)]
#[path = "../src/setup_threads.rs"]
mod setup_threads;
// The path memory.rs names its page sizes by.
use vmm::config;

use config::HugePageSize;
use memory::Reservation;
use vm_memory::GuestAddress;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let gib: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let size = gib << 30;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    println!(
        "reserve {gib} GiB, median of {runs}, {cpus} CPUs, THP {}",
        thp.trim()
    );
    println!(
        "{:<44} {:>9} {:>8} {:>10}  samples (s)",
        "what", "median s", "GiB/s", "vs base"
    );
    let base = row(
        "baseline: mmap MAP_POPULATE, 1 thread",
        size,
        runs,
        None,
        || baseline(size),
    );
    let mut threads = vec![1, 2];
    if cpus > 2 {
        threads.push(cpus);
    }
    let small = |threads, dma_pinned| Reservation {
        pages: None,
        threads,
        dma_pinned,
        progress: false,
    };
    for &n in &threads {
        row(
            &format!("vfvm, 4 KiB pages + THP, mlock, {n} thr"),
            size,
            runs,
            Some(base),
            || reserve(size, &small(n, false)),
        );
    }
    for &n in &threads {
        row(
            &format!("vfvm, 4 KiB pages + THP, no mlock (VF), {n} thr"),
            size,
            runs,
            Some(base),
            || reserve(size, &small(n, true)),
        );
    }
    // 4 KiB pages without THP: the process opts out of THP.
    // SAFETY: prctl with PR_SET_THP_DISABLE changes only this process's flag.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
        for &n in &threads {
            row(
                &format!("vfvm, 4 KiB pages, THP off, mlock, {n} thr"),
                size,
                runs,
                Some(base),
                || reserve(size, &small(n, false)),
            );
        }
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    }
    for page in [HugePageSize::Size2M, HugePageSize::Size1G] {
        let how = |threads| Reservation {
            pages: Some(page),
            ..small(threads, false)
        };
        if let Err(e) = memory::check_limits(size, &how(1)) {
            println!("{:<44} n/a: {e}", format!("vfvm, {} pages", page.flag()));
            continue;
        }
        for &n in &threads {
            row(
                &format!("vfvm, {} pages, {n} thr", memory::Size(page.bytes())),
                size,
                runs,
                Some(base),
                || reserve(size, &how(n)),
            );
        }
    }
}

/// Runs `f` `runs` times and prints its median, rate and ratio to `base`.
fn row(
    what: &str,
    size: u64,
    runs: usize,
    base: Option<f64>,
    mut f: impl FnMut() -> Duration,
) -> f64 {
    let mut samples: Vec<f64> = (0..runs).map(|_| f().as_secs_f64()).collect();
    let shown: Vec<String> = samples.iter().map(|s| format!("{s:.3}")).collect();
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let rate = size as f64 / f64::from(1u32 << 30) / median;
    let vs = base.map_or("-".to_string(), |b| format!("{:.2}x", median / b));
    println!(
        "{what:<44} {median:>9.3} {rate:>8.2} {vs:>10}  {}",
        shown.join(" ")
    );
    median
}

fn reserve(size: u64, how: &Reservation) -> Duration {
    let start = Instant::now();
    let ram = memory::reserve(&[(GuestAddress(0), size)], how, |_| ())
        .unwrap_or_else(|e| panic!("reserve: {e}"))
        .0;
    let t = start.elapsed();
    drop(ram);
    t
}

fn baseline(size: u64) -> Duration {
    let start = Instant::now();
    // SAFETY: a fresh anonymous mapping, unmapped below; nothing else uses it.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED, "mmap");
    let t = start.elapsed();
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(ptr, size as usize) };
    t
}
