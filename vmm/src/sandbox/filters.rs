//! The allowlists: which system calls each kind of thread makes once the
//! guest runs, and for `ioctl` and `socket`, with which first arguments.
//!
//! A thread inherits the filter of the thread that spawned it, and the
//! kernel runs every filter a thread has: a thread that starts others
//! (the event loop for hotplugged disks, a vCPU when the guest starts a
//! disk, whose queue threads it spawns on DRIVER_OK) therefore allows what
//! those threads do, and the calls that put a new thread in its own
//! sandbox (`capset`, `prctl`, `seccomp`).

use std::collections::BTreeMap;
use std::fmt;

use caps::Capability;
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_ioeventfd, kvm_irq_level, kvm_irq_routing, kvm_irqfd,
    kvm_mp_state, kvm_msi, kvm_regs, kvm_userspace_memory_region, kvm_vcpu_events,
};
use libc::c_ulong;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

use super::{Error, SeccompMode};

/// The kinds of long-lived threads; each has its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread from the event loop on: console input, the API's
    /// requests (info, counters, pause, shutdown, hotplug), the RTC and
    /// halt watch timers, then the VM's teardown (VFs reset and released:
    /// VFIO, sysfs, netlink).
    EventLoop,
    /// A vCPU: KVM_RUN and the device emulation its exits run.
    Vcpu,
    /// The API server (hyper on a current-thread runtime).
    Api,
    /// A virtio-blk queue's I/O thread.
    BlockIo,
    /// COM1's output writer (stdout or the console file).
    ConsoleOut,
    /// The thread that turns SIGTERM/SIGINT/SIGHUP into a VM stop.
    Signals,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 6] = [
        ThreadKind::EventLoop,
        ThreadKind::Vcpu,
        ThreadKind::Api,
        ThreadKind::BlockIo,
        ThreadKind::ConsoleOut,
        ThreadKind::Signals,
    ];

    /// The kind's name, as messages give it.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::EventLoop => "event-loop",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Api => "api",
            ThreadKind::BlockIo => "virtio-blk I/O",
            ThreadKind::ConsoleOut => "console-out",
            ThreadKind::Signals => "signals",
        }
    }

    /// The capabilities the kind keeps: the event loop restores VF
    /// settings over netlink (CAP_NET_ADMIN) and pins guest memory for a
    /// hotplugged VF (CAP_IPC_LOCK); no other thread needs any.
    pub fn capabilities(self) -> &'static [Capability] {
        match self {
            ThreadKind::EventLoop => &[Capability::CAP_NET_ADMIN, Capability::CAP_IPC_LOCK],
            _ => &[],
        }
    }
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const KVMIO: u32 = 0xAE;
const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_io_nr!(KVM_NMI, KVMIO, 0x9a);
ioctl_io_nr!(KVM_CHECK_EXTENSION, KVMIO, 0x03);
ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_mp_state);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
ioctl_iow_nr!(KVM_SET_GSI_ROUTING, KVMIO, 0x6a, kvm_irq_routing);
ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);
ioctl_iow_nr!(
    KVM_SET_USER_MEMORY_REGION,
    KVMIO,
    0x46,
    kvm_userspace_memory_region
);
ioctl_iow_nr!(KVM_SIGNAL_MSI, KVMIO, 0xa5, kvm_msi);
ioctl_iow_nr!(KVM_IRQ_LINE, KVMIO, 0x61, kvm_irq_level);
ioctl_iowr_nr!(KVM_IRQ_LINE_STATUS, KVMIO, 0x67, kvm_irq_level);
ioctl_iowr_nr!(KVM_CREATE_DEVICE, KVMIO, 0xe0, kvm_create_device);
ioctl_iow_nr!(KVM_SET_DEVICE_ATTR, KVMIO, 0xe1, kvm_device_attr);
ioctl_iow_nr!(KVM_HAS_DEVICE_ATTR, KVMIO, 0xe3, kvm_device_attr);
ioctl_io_nr!(VFIO_GET_API_VERSION, VFIO_TYPE, VFIO_BASE);
ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, VFIO_BASE + 1);
ioctl_io_nr!(VFIO_SET_IOMMU, VFIO_TYPE, VFIO_BASE + 2);
ioctl_io_nr!(VFIO_GROUP_GET_STATUS, VFIO_TYPE, VFIO_BASE + 3);
ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, VFIO_TYPE, VFIO_BASE + 4);
ioctl_io_nr!(VFIO_GROUP_UNSET_CONTAINER, VFIO_TYPE, VFIO_BASE + 5);
ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, VFIO_TYPE, VFIO_BASE + 6);
ioctl_io_nr!(VFIO_DEVICE_GET_INFO, VFIO_TYPE, VFIO_BASE + 7);
ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE, VFIO_BASE + 8);
ioctl_io_nr!(VFIO_DEVICE_GET_IRQ_INFO, VFIO_TYPE, VFIO_BASE + 9);
ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE, VFIO_BASE + 10);
ioctl_io_nr!(VFIO_DEVICE_RESET, VFIO_TYPE, VFIO_BASE + 11);
// Also VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on a device.
ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, VFIO_BASE + 12);
ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);

/// Terminal and descriptor ioctls: the console's raw mode (restored at
/// teardown), non-blocking descriptors.
const TCGETS: c_ulong = 0x5401;
const TCSETS: c_ulong = 0x5402;
const TCSETSW: c_ulong = 0x5403;
const TCSETSF: c_ulong = 0x5404;
const TIOCGWINSZ: c_ulong = 0x5413;
const FIONREAD: c_ulong = 0x541B;
const FIONBIO: c_ulong = 0x5421;
const FIOCLEX: c_ulong = 0x5451;
/// A block device's size and sector sizes, for a hotplugged disk.
const BLKSSZGET: c_ulong = 0x1268;
const BLKPBSZGET: c_ulong = 0x127B;
const BLKGETSIZE64: c_ulong = 0x8008_1272;

/// `prctl` options: thread names, capability sets, no_new_privs.
const PRCTL_OPTIONS: [i32; 6] = [
    libc::PR_SET_NAME,
    libc::PR_GET_NAME,
    libc::PR_CAPBSET_READ,
    libc::PR_CAPBSET_DROP,
    libc::PR_CAP_AMBIENT,
    libc::PR_SET_NO_NEW_PRIVS,
];

/// How one call is allowed.
#[derive(Clone, Debug, PartialEq)]
enum Allow {
    /// Whatever its arguments.
    Always,
    /// Only when argument `index` (as 32 bits) is one of `values`.
    ArgIn(u8, Vec<u64>),
}

/// An allowlist being built: system call number → how it is allowed.
#[derive(Default)]
struct List(BTreeMap<i64, Allow>);

impl List {
    fn calls(mut self, nrs: &[libc::c_long]) -> Self {
        for &nr in nrs {
            self.0.insert(nr, Allow::Always);
        }
        self
    }

    /// `nr` when its argument `index` is one of `values` (merged with what
    /// the list already allows of it).
    fn call_with(mut self, nr: libc::c_long, index: u8, values: &[u64]) -> Self {
        match self.0.entry(nr).or_insert(Allow::ArgIn(index, Vec::new())) {
            Allow::Always => {}
            Allow::ArgIn(i, have) => {
                debug_assert_eq!(*i, index);
                have.extend_from_slice(values);
                have.sort_unstable();
                have.dedup();
            }
        }
        self
    }

    fn ioctls(self, requests: &[c_ulong]) -> Self {
        let values: Vec<u64> = requests.iter().map(|&r| u64::from(r as u32)).collect();
        self.call_with(libc::SYS_ioctl, 1, &values)
    }

    fn with(mut self, other: List) -> Self {
        for (nr, allow) in other.0 {
            self = match allow {
                Allow::Always => self.calls(&[nr]),
                Allow::ArgIn(i, values) => self.call_with(nr, i, &values),
            };
        }
        self
    }

    /// Whether `nr` is allowed with `args` (what the BPF program decides).
    #[cfg(test)]
    fn allows(&self, nr: libc::c_long, args: [u64; 6]) -> bool {
        match self.0.get(&nr) {
            None => false,
            Some(Allow::Always) => true,
            Some(Allow::ArgIn(i, values)) => values.contains(&(args[*i as usize] & 0xffff_ffff)),
        }
    }

    fn rules(self) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
        self.0
            .into_iter()
            .map(|(nr, allow)| {
                let rules = match allow {
                    Allow::Always => Vec::new(),
                    Allow::ArgIn(index, values) => values
                        .into_iter()
                        .map(|v| {
                            SeccompCondition::new(
                                index,
                                SeccompCmpArgLen::Dword,
                                SeccompCmpOp::Eq,
                                v,
                            )
                            .and_then(|c| SeccompRule::new(vec![c]))
                        })
                        .collect::<Result<_, _>>()?,
                };
                Ok((nr, rules))
            })
            .collect()
    }
}

/// What every thread does: memory, locks, time, signals, its log lines
/// (and the trap's), ending.
fn common() -> List {
    List::default().calls(&[
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_sched_yield,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getrandom,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ])
}

/// Starting a thread that enters a sandbox of its own.
fn spawning() -> List {
    List::default()
        .calls(&[
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_set_robust_list,
            libc::SYS_rseq,
            libc::SYS_sched_getaffinity,
            libc::SYS_capget,
            libc::SYS_capset,
            libc::SYS_seccomp,
        ])
        .call_with(libc::SYS_prctl, 0, &PRCTL_OPTIONS.map(|o| o as u64))
}

/// Eventfds and the epoll loops around them.
fn events() -> List {
    List::default().calls(&[
        libc::SYS_read,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_eventfd2,
        libc::SYS_fcntl,
    ])
}

/// A disk queue's I/O: the image's reads, writes, flushes and discards,
/// directly or through io_uring.
fn block_io() -> List {
    events()
        // A queue's thread may hold the last reference to its interrupt
        // vectors, whose drop unregisters their irqfds.
        .ioctls(&[KVM_IRQFD()])
        .calls(&[
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_preadv2,
            libc::SYS_pwritev2,
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_fallocate,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ])
}

/// The KVM and VFIO ioctls of a running guest's exits: KVM_RUN, KVM_NMI
/// (vm.nmi), the halt probe's reads, interrupt routing and irqfds as the guest programs
/// MSI/MSI-X, BAR moves (slots, ioeventfds), a VF's interrupts and reset.
fn vcpu_ioctls() -> Vec<c_ulong> {
    vec![
        KVM_RUN(),
        KVM_NMI(),
        KVM_GET_MP_STATE(),
        KVM_GET_REGS(),
        KVM_GET_VCPU_EVENTS(),
        KVM_SET_GSI_ROUTING(),
        KVM_IRQFD(),
        KVM_IOEVENTFD(),
        KVM_SET_USER_MEMORY_REGION(),
        KVM_SIGNAL_MSI(),
        KVM_IRQ_LINE(),
        KVM_IRQ_LINE_STATUS(),
        VFIO_DEVICE_SET_IRQS(),
        VFIO_DEVICE_RESET(),
    ]
}

fn vcpu() -> List {
    List::default()
        .ioctls(&vcpu_ioctls())
        .calls(&[
            // A VF's config space and trapped BAR pieces.
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            // The RTC's alarm and periodic timers.
            libc::SYS_timerfd_settime,
            libc::SYS_timerfd_gettime,
            // A disk the guest starts: its rings and queue threads.
            libc::SYS_io_uring_setup,
        ])
        .with(events())
        .with(spawning())
        .with(block_io())
}

fn event_loop() -> List {
    let mut ioctls = vcpu_ioctls();
    ioctls.extend([
        KVM_CHECK_EXTENSION(),
        KVM_CREATE_DEVICE(),
        KVM_SET_DEVICE_ATTR(),
        KVM_HAS_DEVICE_ATTR(),
        VFIO_GET_API_VERSION(),
        VFIO_CHECK_EXTENSION(),
        VFIO_SET_IOMMU(),
        VFIO_GROUP_GET_STATUS(),
        VFIO_GROUP_SET_CONTAINER(),
        VFIO_GROUP_UNSET_CONTAINER(),
        VFIO_GROUP_GET_DEVICE_FD(),
        VFIO_DEVICE_GET_INFO(),
        VFIO_DEVICE_GET_REGION_INFO(),
        VFIO_DEVICE_GET_IRQ_INFO(),
        VFIO_IOMMU_GET_INFO(),
        VFIO_IOMMU_MAP_DMA(),
        VFIO_IOMMU_UNMAP_DMA(),
        TCGETS,
        TCSETS,
        TCSETSW,
        TCSETSF,
        TIOCGWINSZ,
        FIONREAD,
        FIONBIO,
        FIOCLEX,
        BLKSSZGET,
        BLKPBSZGET,
        BLKGETSIZE64,
    ]);
    List::default()
        .ioctls(&ioctls)
        .calls(&[
            // Timers: the RTC, the halt watch, a shutdown's deadline.
            libc::SYS_timerfd_create,
            libc::SYS_timerfd_settime,
            libc::SYS_timerfd_gettime,
            // Kicking vCPUs (pause, halt probes, stop): musl's
            // pthread_kill is tkill; tgkill only within vfvm, below.
            libc::SYS_tkill,
            // Files: sysfs (VF release, driver binding), the journal and
            // claims under /run/vfvm, the API socket's removal, VFIO
            // groups and disk images of hotplugged devices.
            libc::SYS_readv,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_lseek,
            libc::SYS_open,
            libc::SYS_openat,
            libc::SYS_fstat,
            libc::SYS_stat,
            libc::SYS_lstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            // A disk image's filesystem (tmpfs: writes at once).
            libc::SYS_fstatfs,
            libc::SYS_access,
            libc::SYS_faccessat,
            libc::SYS_faccessat2,
            libc::SYS_readlink,
            libc::SYS_readlinkat,
            libc::SYS_getdents64,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_rename,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_mkdir,
            libc::SYS_mkdirat,
            libc::SYS_fchmod,
            libc::SYS_ftruncate,
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_flock,
            libc::SYS_dup,
            libc::SYS_dup3,
            libc::SYS_getuid,
            libc::SYS_geteuid,
            libc::SYS_getgid,
            libc::SYS_getegid,
            libc::SYS_prlimit64,
            libc::SYS_getrlimit,
            // Guest RAM's mlock handed to a hot-added VF's pins and back.
            libc::SYS_mlock2,
            libc::SYS_munlock,
            libc::SYS_poll,
            libc::SYS_ppoll,
            // Netlink: VF settings and IFLA_VF_STATS.
            libc::SYS_bind,
            libc::SYS_connect,
            libc::SYS_getsockname,
            libc::SYS_setsockopt,
            libc::SYS_getsockopt,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_recvfrom,
            libc::SYS_recvmsg,
            libc::SYS_shutdown,
            // A hotplugged disk's ring.
            libc::SYS_io_uring_setup,
        ])
        // Whether the VM holding a claimed VF still runs (signal 0 only).
        .call_with(libc::SYS_kill, 1, &[0])
        .call_with(
            libc::SYS_socket,
            0,
            &[libc::AF_NETLINK as u64, libc::AF_UNIX as u64],
        )
        .call_with(libc::SYS_tgkill, 0, &[u64::from(std::process::id())])
        // The teardown gives SIGTERM, SIGINT and SIGHUP back their default
        // action (never SIGSYS's handler away).
        .call_with(
            libc::SYS_rt_sigaction,
            0,
            &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP].map(|s| s as u64),
        )
        .with(events())
        .with(spawning())
        .with(block_io())
}

fn api() -> List {
    List::default()
        .calls(&[
            libc::SYS_accept4,
            libc::SYS_recvfrom,
            libc::SYS_recvmsg,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_getsockopt,
            libc::SYS_setsockopt,
            libc::SYS_getsockname,
            libc::SYS_getpeername,
            libc::SYS_shutdown,
        ])
        .ioctls(&[FIONBIO])
        .with(events())
}

fn console_out() -> List {
    // The console file: its size, and its rotation to PATH.1.
    List::default().calls(&[
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_rename,
        libc::SYS_open,
        libc::SYS_openat,
    ])
}

fn signals() -> List {
    List::default().calls(&[libc::SYS_read])
}

/// `kind`'s allowlist, with what every thread does.
fn allowlist(kind: ThreadKind) -> List {
    let own = match kind {
        ThreadKind::EventLoop => event_loop(),
        ThreadKind::Vcpu => vcpu(),
        ThreadKind::Api => api(),
        ThreadKind::BlockIo => block_io(),
        ThreadKind::ConsoleOut => console_out(),
        ThreadKind::Signals => signals(),
    };
    common().with(own)
}

/// `kind`'s filter as a BPF program: allowed calls run, any other traps
/// (`on`) or is logged (`log`).
pub(super) fn program(kind: ThreadKind, mode: SeccompMode) -> Result<BpfProgram, Error> {
    let mismatch = match mode {
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::On | SeccompMode::Off => SeccompAction::Trap,
    };
    let build = || -> Result<BpfProgram, seccompiler::BackendError> {
        let filter = SeccompFilter::new(
            allowlist(kind).rules()?,
            mismatch,
            SeccompAction::Allow,
            std::env::consts::ARCH.try_into()?,
        )?;
        filter.try_into()
    };
    build().map_err(|source| Error::Build { kind, source })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn allows(kind: ThreadKind, nr: libc::c_long, args: [u64; 6]) -> bool {
        allowlist(kind).allows(nr, args)
    }

    fn ioctl(request: c_ulong) -> [u64; 6] {
        [3, u64::from(request as u32), 0, 0, 0, 0]
    }

    #[test]
    fn the_event_loop_may_hotplug_a_disk_and_check_a_claims_holder() {
        let el = ThreadKind::EventLoop;
        assert!(allows(el, libc::SYS_fstatfs, [3, 0, 0, 0, 0, 0]));
        assert!(allows(el, libc::SYS_io_uring_setup, [64, 0, 0, 0, 0, 0]));
        assert!(allows(el, libc::SYS_kill, [4242, 0, 0, 0, 0, 0]));
        let sigkill = libc::SIGKILL as u64;
        assert!(!allows(el, libc::SYS_kill, [4242, sigkill, 0, 0, 0, 0]));
        assert!(!allows(
            ThreadKind::Vcpu,
            libc::SYS_kill,
            [4242, 0, 0, 0, 0, 0]
        ));
    }

    #[test]
    fn every_kind_builds_in_both_modes() {
        for kind in ThreadKind::ALL {
            for mode in [SeccompMode::On, SeccompMode::Log] {
                let p = program(kind, mode).unwrap();
                assert!(!p.is_empty() && p.len() < u16::MAX as usize, "{kind}");
            }
        }
    }

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // From the kernel headers (as Cloud Hypervisor and Firecracker list them).
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_MP_STATE(), 0x8004_ae98);
        assert_eq!(KVM_IRQFD(), 0x4020_ae76);
        assert_eq!(KVM_IOEVENTFD(), 0x4040_ae79);
        assert_eq!(KVM_SET_USER_MEMORY_REGION(), 0x4020_ae46);
        assert_eq!(KVM_SET_GSI_ROUTING(), 0x4008_ae6a);
        assert_eq!(VFIO_DEVICE_SET_IRQS(), 0x3b6e);
        assert_eq!(VFIO_IOMMU_MAP_DMA(), 0x3b71);
    }

    #[test]
    fn vcpus_run_the_guest_but_set_nothing_up() {
        let v = ThreadKind::Vcpu;
        for ok in [KVM_RUN(), KVM_IRQFD(), VFIO_DEVICE_SET_IRQS()] {
            assert!(allows(v, libc::SYS_ioctl, ioctl(ok)), "{ok:#x}");
        }
        // Not the VFIO setup, not the terminal, not a new vCPU or VM.
        for no in [
            VFIO_IOMMU_MAP_DMA(),
            VFIO_GROUP_GET_DEVICE_FD(),
            TCSETS,
            0xae41,
            0xae01,
        ] {
            assert!(!allows(v, libc::SYS_ioctl, ioctl(no)), "{no:#x}");
        }
        for no in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_execve,
            libc::SYS_unlink,
        ] {
            assert!(!allows(v, no, [0; 6]), "{no}");
        }
    }

    #[test]
    fn spawners_allow_what_their_threads_do() {
        let child = allowlist(ThreadKind::BlockIo);
        for parent in [ThreadKind::Vcpu, ThreadKind::EventLoop] {
            let p = allowlist(parent);
            for (nr, allow) in &child.0 {
                let args = match allow {
                    Allow::Always => [0; 6],
                    Allow::ArgIn(i, values) => {
                        let mut a = [0; 6];
                        a[*i as usize] = values[0];
                        a
                    }
                };
                assert!(
                    p.allows(*nr, args),
                    "{parent} cannot spawn a thread that makes {nr}"
                );
            }
            for nr in [libc::SYS_seccomp, libc::SYS_capset, libc::SYS_clone3] {
                assert!(p.allows(nr, [0; 6]), "{parent}: {nr}");
            }
            let nnp = [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0];
            assert!(p.allows(libc::SYS_prctl, nnp), "{parent}");
        }
    }

    #[test]
    fn the_event_loop_opens_only_netlink_and_unix_sockets() {
        let e = ThreadKind::EventLoop;
        let socket = |family: i32| [family as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0];
        assert!(allows(e, libc::SYS_socket, socket(libc::AF_NETLINK)));
        assert!(!allows(e, libc::SYS_socket, socket(libc::AF_INET)));
        assert!(!allows(e, libc::SYS_socket, socket(libc::AF_PACKET)));
        let kill = |pid: u32| [u64::from(pid), 1, libc::SIGRTMIN() as u64, 0, 0, 0];
        assert!(allows(e, libc::SYS_tgkill, kill(std::process::id())));
        assert!(!allows(e, libc::SYS_tgkill, kill(1)));
        let action = |sig: i32| [sig as u64, 0, 0, 8, 0, 0];
        assert!(allows(e, libc::SYS_rt_sigaction, action(libc::SIGTERM)));
        assert!(!allows(e, libc::SYS_rt_sigaction, action(libc::SIGSYS)));
        for no in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_process_vm_writev,
        ] {
            assert!(!allows(e, no, [0; 6]), "{no}");
        }
    }

    #[test]
    fn narrow_threads_stay_narrow() {
        for kind in [
            ThreadKind::Api,
            ThreadKind::BlockIo,
            ThreadKind::ConsoleOut,
            ThreadKind::Signals,
        ] {
            for no in [
                libc::SYS_socket,
                libc::SYS_execve,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_seccomp,
            ] {
                assert!(!allows(kind, no, [0; 6]), "{kind}: {no}");
            }
            assert!(!allows(kind, libc::SYS_ioctl, ioctl(KVM_RUN())), "{kind}");
        }
        assert!(!allows(ThreadKind::BlockIo, libc::SYS_openat, [0; 6]));
        assert!(!allows(ThreadKind::Api, libc::SYS_openat, [0; 6]));
        assert!(!allows(ThreadKind::Signals, libc::SYS_pwrite64, [0; 6]));
    }
}
