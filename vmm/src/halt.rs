//! Noticing a guest that halted for good (Linux `halt -f`: every vCPU in
//! HLT with interrupts disabled), so that vfvm ends with bhyve's status 2
//! instead of waiting forever.
//!
//! With the in-kernel irqchip KVM handles HLT itself: a halted vCPU just
//! sleeps in KVM_RUN. Asking it costs a kick, so the guest is only asked
//! once it looks idle: [`HaltWatch`] samples the CPU time of every vCPU
//! thread each [`TICK`], which costs the guest nothing. When every vCPU
//! has been idle for [`IDLE_TICKS`] ticks, each vCPU is kicked out of
//! KVM_RUN and reads its own state ([`HaltProbes`], [`vcpu_is_halted`]): MP
//! state halted, RFLAGS.IF clear, no NMI or SMI pending (KVM reports a
//! pending INIT as a changed MP state). All halted means halted: nothing
//! but an NMI, SMI or INIT can wake such a CPU, and no vCPU is left to
//! send one. An idle guest (HLT with interrupts enabled) answers "not
//! halted" and is asked again only after it has run and idled again, or
//! every [`RECHECK_TICKS`] ticks of uninterrupted idleness.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use kvm_bindings::{KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_UNINITIALIZED};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::exit::{ExitSignal, VmExit};

/// How often vCPU thread CPU times are sampled.
pub const TICK: Duration = Duration::from_millis(500);
/// Ticks every vCPU must be idle before the vCPUs are asked.
pub const IDLE_TICKS: u32 = 2;
/// While the guest stays idle, ask again this many ticks after an answer.
pub const RECHECK_TICKS: u32 = 4;
/// CPU time a vCPU thread may use in one tick and still count as idle
/// (KVM's halt polling spins a little before a vCPU sleeps).
pub const IDLE_CPU: Duration = Duration::from_millis(5);
/// How long the vCPUs have to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Whether `vcpu` (called on its own thread, outside KVM_RUN) can run
/// again by itself: `Some(true)` if it is in HLT with interrupts disabled
/// and nothing that wakes such a CPU pending, `Some(false)` if it is
/// stopped waiting for INIT/SIPI (only another vCPU can start it), `None`
/// if it is neither.
pub fn vcpu_is_halted(vcpu: &VcpuFd) -> Option<bool> {
    let mp = vcpu.get_mp_state().ok()?.mp_state;
    if mp == KVM_MP_STATE_UNINITIALIZED || mp == KVM_MP_STATE_INIT_RECEIVED {
        return Some(false);
    }
    if mp != KVM_MP_STATE_HALTED {
        return None;
    }
    let rflags = vcpu.get_regs().ok()?.rflags;
    let events = vcpu.get_vcpu_events().ok()?;
    let woken = events.nmi.pending != 0 || events.nmi.injected != 0 || events.smi.pending != 0;
    (rflags & RFLAGS_IF == 0 && !woken).then_some(true)
}

/// One vCPU's side of the question "are you halted?": asked by the VMM,
/// answered by the vCPU thread the next time it leaves KVM_RUN.
#[derive(Default)]
struct HaltProbe {
    /// The vCPU thread's id, for its CPU clock and for kicking it.
    tid: AtomicI32,
    asked: AtomicU64,
    answered: AtomicU64,
    /// The last answer: halted or stopped (see [`vcpu_is_halted`]).
    stopped: AtomicBool,
    /// The last answer: in HLT with interrupts disabled.
    halted: AtomicBool,
}

/// Every vCPU's probe, shared by the vCPU threads and [`HaltWatch`].
pub struct HaltProbes {
    vcpus: Vec<HaltProbe>,
    kick: libc::c_int,
}

impl HaltProbes {
    /// Probes for `n` vCPUs, kicked out of KVM_RUN with signal `kick`.
    pub fn new(n: usize, kick: libc::c_int) -> Arc<Self> {
        Arc::new(HaltProbes {
            vcpus: (0..n).map(|_| HaltProbe::default()).collect(),
            kick,
        })
    }

    /// On vCPU `id`'s thread, before its first KVM_RUN.
    pub fn register(&self, id: usize) {
        if let Some(p) = self.vcpus.get(id) {
            // SAFETY: gettid has no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            p.tid.store(tid, Ordering::Release);
        }
    }

    /// On vCPU `id`'s thread, outside KVM_RUN: answers if asked. Costs two
    /// atomic loads when not asked.
    pub fn answer_if_asked(&self, id: usize, vcpu: &VcpuFd) {
        let Some(p) = self.vcpus.get(id) else { return };
        let asked = p.asked.load(Ordering::Acquire);
        if asked == p.answered.load(Ordering::Acquire) {
            return;
        }
        let state = vcpu_is_halted(vcpu);
        p.stopped.store(state.is_some(), Ordering::Release);
        p.halted.store(state == Some(true), Ordering::Release);
        p.answered.store(asked, Ordering::Release);
    }

    /// The CPU time vCPU thread `tid` has used, from its per-thread CPU
    /// clock (Linux's `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`, what
    /// `pthread_getcpuclockid` returns); `None` for a thread that is gone.
    fn cpu_time(tid: libc::pid_t) -> Option<Duration> {
        // Linux's PID_MAX_LIMIT: beyond, the clock id would name another clock.
        if !(1..=4 << 20).contains(&tid) {
            return None;
        }
        let clock = (!tid << 3) | 6;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec we own; an invalid clock is EINVAL.
        let r = unsafe { libc::clock_gettime(clock, &mut ts) };
        (r == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

/// What [`HaltWatch`] needs of the vCPUs.
pub trait HaltTarget {
    /// The CPU time each vCPU thread has used (`None`: unknown).
    fn cpu_times(&self) -> Vec<Option<Duration>>;
    /// Asks every vCPU whether it is halted and waits at most `timeout`
    /// for the answers: true if every vCPU answered that it is halted or
    /// stopped, and at least one is halted.
    fn all_halted(&self, timeout: Duration) -> bool;
}

impl HaltTarget for HaltProbes {
    fn cpu_times(&self) -> Vec<Option<Duration>> {
        self.vcpus
            .iter()
            .map(|p| Self::cpu_time(p.tid.load(Ordering::Acquire)))
            .collect()
    }

    fn all_halted(&self, timeout: Duration) -> bool {
        // SAFETY: getpid has no arguments and cannot fail.
        let pid = unsafe { libc::getpid() };
        for p in &self.vcpus {
            p.asked.fetch_add(1, Ordering::AcqRel);
            let tid = p.tid.load(Ordering::Acquire);
            if tid > 0 {
                // SAFETY: tgkill only sends a signal, to a thread of this
                // process; the kick signal's handler does nothing.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, self.kick) };
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let answers: Option<Vec<(bool, bool)>> =
                self.vcpus
                    .iter()
                    .map(|p| {
                        (p.answered.load(Ordering::Acquire) == p.asked.load(Ordering::Acquire))
                            .then(|| {
                                (
                                    p.stopped.load(Ordering::Acquire),
                                    p.halted.load(Ordering::Acquire),
                                )
                            })
                    })
                    .collect();
            if let Some(answers) = answers {
                return answers.iter().all(|&(stopped, _)| stopped)
                    && answers.iter().any(|&(_, halted)| halted);
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The decision, tick by tick, without timers or vCPUs.
#[derive(Default)]
struct Watch {
    last: Vec<Option<Duration>>,
    /// Idle ticks in a row; negative after an answer "idle, not halted".
    idle_ticks: i64,
}

impl Watch {
    /// One tick; true if the guest halted.
    fn tick(&mut self, target: &dyn HaltTarget, paused: bool) -> bool {
        if paused {
            self.last.clear();
            self.idle_ticks = 0;
            return false;
        }
        let now = target.cpu_times();
        let idle = !now.is_empty()
            && now.len() == self.last.len()
            && now.iter().zip(&self.last).all(|(n, l)| match (n, l) {
                (Some(n), Some(l)) => n.saturating_sub(*l) <= IDLE_CPU,
                _ => false,
            });
        self.last = now;
        if !idle {
            self.idle_ticks = 0;
            return false;
        }
        self.idle_ticks += 1;
        if self.idle_ticks < i64::from(IDLE_TICKS) {
            return false;
        }
        if target.all_halted(ANSWER_TIMEOUT) {
            return true;
        }
        // Idle, not halted: ask again after RECHECK_TICKS more idle ticks.
        self.idle_ticks = i64::from(IDLE_TICKS) - i64::from(RECHECK_TICKS);
        self.last = target.cpu_times();
        false
    }
}

/// The watch on the event loop: a timerfd every [`TICK`].
pub struct HaltWatch {
    probes: Arc<HaltProbes>,
    paused: Box<dyn Fn() -> bool + Send>,
    exit: Arc<ExitSignal>,
    timer: TimerFd,
    watch: Watch,
}

impl HaltWatch {
    /// Watches the vCPUs behind `probes`; `paused` says when not to (a
    /// paused vCPU answers nothing). A halt requests [`VmExit::Halted`].
    pub fn new(
        probes: Arc<HaltProbes>,
        paused: Box<dyn Fn() -> bool + Send>,
        exit: Arc<ExitSignal>,
    ) -> std::io::Result<Self> {
        let mut timer = TimerFd::new().map_err(std::io::Error::from)?;
        timer
            .reset(TICK, Some(TICK))
            .map_err(std::io::Error::from)?;
        Ok(HaltWatch {
            probes,
            paused,
            exit,
            timer,
            watch: Watch::default(),
        })
    }
}

impl MutEventSubscriber for HaltWatch {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.timer, EventSet::IN)) {
            log::error!("cannot watch for a halted guest: {e:?}");
        }
    }

    fn process(&mut self, _: Events, ops: &mut EventOps) {
        let _ = self.timer.wait();
        if self.watch.tick(self.probes.as_ref(), (self.paused)()) {
            log::info!("guest halted: every vCPU is in HLT with interrupts disabled");
            self.exit.request(VmExit::Halted);
            let _ = ops.remove(Events::new(&self.timer, EventSet::IN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// vCPUs whose CPU times and answers the test sets.
    #[derive(Default)]
    struct Fake {
        times: RefCell<Vec<Option<Duration>>>,
        halted: Cell<bool>,
        asked: Cell<u32>,
    }

    impl Fake {
        fn run(&self, ms: u64) {
            for t in self.times.borrow_mut().iter_mut().flatten() {
                *t += Duration::from_millis(ms);
            }
        }
    }

    impl HaltTarget for Fake {
        fn cpu_times(&self) -> Vec<Option<Duration>> {
            self.times.borrow().clone()
        }
        fn all_halted(&self, _: Duration) -> bool {
            self.asked.set(self.asked.get() + 1);
            self.halted.get()
        }
    }

    fn fake(n: usize) -> Fake {
        let f = Fake::default();
        *f.times.borrow_mut() = vec![Some(Duration::ZERO); n];
        f
    }

    #[test]
    fn a_busy_guest_is_never_asked() {
        let f = fake(2);
        f.halted.set(true);
        let mut w = Watch::default();
        for _ in 0..100 {
            f.run(400);
            assert!(!w.tick(&f, false));
        }
        assert_eq!(f.asked.get(), 0);
    }

    #[test]
    fn an_idle_guest_is_asked_now_and_then_and_not_halted() {
        let f = fake(2);
        let mut w = Watch::default();
        for _ in 0..60 {
            f.run(1);
            assert!(!w.tick(&f, false));
        }
        // First after IDLE_TICKS (+1 for the first sample), then every
        // RECHECK_TICKS: 30 s idle costs 15 kicks per vCPU.
        let asked = f.asked.get();
        assert!(
            (13..=16).contains(&asked),
            "asked {asked} times in 60 ticks"
        );
    }

    #[test]
    fn a_halted_guest_is_found_within_a_few_ticks() {
        let f = fake(4);
        f.halted.set(true);
        let mut w = Watch::default();
        let ticks = (1..20).find(|_| w.tick(&f, false)).expect("found");
        assert_eq!(ticks, IDLE_TICKS + 1);
    }

    #[test]
    fn paused_or_unknown_vcpus_are_not_asked() {
        let f = fake(1);
        f.halted.set(true);
        let mut w = Watch::default();
        for _ in 0..10 {
            assert!(!w.tick(&f, true));
        }
        *f.times.borrow_mut() = vec![Some(Duration::ZERO), None];
        for _ in 0..10 {
            assert!(!w.tick(&f, false));
        }
        assert_eq!(f.asked.get(), 0);
    }

    #[test]
    fn probes_wait_for_every_answer_and_time_out() {
        let p = HaltProbes::new(2, vmm_sys_util::signal::SIGRTMIN());
        // No vCPU thread answers: not halted, after the timeout.
        let t = Instant::now();
        assert!(!p.all_halted(Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(20));
        // This thread's CPU clock reads; a thread that is gone has none.
        p.register(0);
        let times = p.cpu_times();
        assert!(times[0].is_some() && times[1].is_none(), "{times:?}");
        assert_eq!(HaltProbes::cpu_time(i32::MAX), None);
        // SAFETY: gettid has no arguments and cannot fail.
        let gone = std::thread::spawn(|| unsafe { libc::gettid() })
            .join()
            .unwrap();
        assert_eq!(HaltProbes::cpu_time(gone), None);
    }
}
