//! `vfvm run`: from a checked [`VmConfig`] to a guest and back.
//!
//! Order matters for the promises we make: every check that can fail on
//! bad input runs before anything on the host changes; memory is reserved
//! (and locked) before any device can DMA; vCPUs start last. The way out is
//! [`RunningVm`]'s field order: the API socket closes, vCPUs stop, the
//! event loop and its devices go, then the VM (its KVM memory slots, then
//! its devices: VFs reset and released, then guest RAM), then what the
//! host side changed is restored, and last the signal handlers go.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::StartTimes;
use arch::acpi::GedAction;
use arch::layout;
use devices::acpi::ged::GedEvent;
use devices::metrics::Metrics;
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{Kvm, VcpuFd};
use log::info;

use crate::api_server::{ApiSocket, VmView};
use crate::config::{ConsoleConfig, DeviceConfig, VmConfig};
use crate::console::{ConsoleInput, TerminalGuard};
use crate::console_output::{self, ConsoleFile, QueuedOutput};
use crate::exit::{ExitSignal, VmExit};
use crate::halt::{HaltProbes, HaltWatch};
use crate::hotplug::{self, Hotplug};
use crate::memory;
use crate::pci::{PciBuilder, Windows};
use crate::sandbox::{Sandbox, ThreadKind};
use crate::slot_devices::{
    add_slot_devices, prepare_slots, PassthruHost, PreparedSlot, SlotDevices,
};
use crate::vcpu::{self, VcpuContext, Vcpus};
use crate::vm::{self, Vm};

/// Why `vfvm run` could not start or keep the VM running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is wrong or a file it names is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0} (is KVM enabled and loaded, and may this user open it?)")]
    Kvm(#[source] kvm_ioctls::Error),
    /// More vCPUs than KVM allows.
    #[error("-c {asked}: KVM on this host allows at most {max} vCPUs")]
    TooManyVcpus { asked: usize, max: usize },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] memory::Error),
    /// The VM or its platform devices.
    #[error(transparent)]
    Vm(#[from] vm::Error),
    /// PCI assembly.
    #[error(transparent)]
    Pci(#[from] crate::pci::Error),
    /// A `-s` device.
    #[error(transparent)]
    SlotDevice(#[from] crate::slot_devices::Error),
    /// The kernel, initrd or command line.
    #[error(transparent)]
    Boot(#[from] arch::boot::Error),
    /// ACPI tables.
    #[error(transparent)]
    Acpi(#[from] arch::acpi::Error),
    /// The reset stub.
    #[error(transparent)]
    Reset(#[from] arch::reset::Error),
    /// SMBIOS tables.
    #[error(transparent)]
    Smbios(#[from] arch::smbios::Error),
    /// CPUID.
    #[error(transparent)]
    Cpuid(#[from] arch::cpuid::Error),
    /// vCPU registers.
    #[error(transparent)]
    Regs(#[from] arch::regs::Error),
    /// The console file.
    #[error("-l com1,{path}: {source}")]
    Console {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A vCPU could not be created or started.
    #[error("vCPU {index}: {source}")]
    Vcpu {
        index: usize,
        #[source]
        source: io::Error,
    },
    /// The API socket.
    #[error(transparent)]
    Api(#[from] api::Error),
    /// The event loop failed.
    #[error("event loop: {0:?}")]
    EventLoop(event_manager::Error),
    /// A thread could not enter its sandbox.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::Error),
    /// SIGTERM, SIGINT or SIGHUP came before the guest started.
    #[error("stopped by signal {0} before the guest started (what vfvm changed on the host is put back)")]
    Stopped(i32),
}

/// Runs the VM described by `cfg` until it ends.
pub fn run(cfg: &VmConfig) -> Result<VmExit, Error> {
    let started = Instant::now();
    // First, before anything on the host changes: from here on SIGTERM,
    // SIGINT and SIGHUP stop vfvm through its normal teardown, which puts
    // the host back.
    let signals = termination::install();
    // What a vfvm killed before its teardown left changed goes back now.
    crate::host::journal::repair_at_start();
    // Whoever built `cfg` (the command line, later the API), it is
    // checked here once more: run() takes no config on trust.
    cfg.validate()?;
    cfg.check_files()?;
    // Every filter is built now, before any thread needs one.
    let sandbox = Sandbox::new(cfg.seccomp)?;
    Ok(RunningVm::start(cfg, signals, started, &sandbox)?.wait())
}

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// A VM whose vCPUs run. Its fields are dropped in the order written,
/// which is the teardown order (see the module documentation).
pub struct RunningVm {
    /// Dropped first: pending API requests get 503, the socket goes.
    _api: Option<ApiSocket>,
    /// The only strong reference: dropping it stops and joins the vCPUs.
    _vcpus: Arc<Vcpus>,
    /// Console input, the RTC, the halt watch, the API handler.
    events: EventManager<Subscriber>,
    /// Restores the terminal.
    _terminal: TerminalGuard,
    /// The VFIO container (its DMA mappings), the devices' counters and
    /// the bus builder (shared with the API's hotplug, dropped above).
    _devices: Arc<Mutex<SlotDevices>>,
    /// KVM memory slots, then devices, then guest RAM (see [`Vm`]).
    vm: Vm,
    /// The host changes of passthrough, undone once the VFs are released.
    _host: Arc<Mutex<PassthruHost>>,
    /// Last: SIGTERM, SIGINT and SIGHUP stop the VM in order until the
    /// host is put back.
    _signals: termination::Installed,
}

impl RunningVm {
    /// Builds the VM of a validated `cfg` and starts its vCPUs; `signals`
    /// were installed at `started`, before anything on the host changed.
    /// Every thread, this one last, enters its `sandbox`.
    fn start(
        cfg: &VmConfig,
        mut signals: termination::Installed,
        started: Instant,
        sandbox: &Arc<Sandbox>,
    ) -> Result<RunningVm, Error> {
        let mut times = StartTimes::default();
        let kvm = Kvm::new().map_err(Error::Kvm)?;
        let max = kvm.get_max_vcpus();
        let ncpus = usize::from(cfg.cpus.cpus);
        if ncpus > max {
            return Err(Error::TooManyVcpus { asked: ncpus, max });
        }
        let reservation = reservation(cfg)?;
        memory::check_limits(cfg.memory.size, &reservation)?;
        // Before the host changes: a socket in use fails the run at once.
        let api = cfg
            .api_socket
            .as_deref()
            .map(|path| {
                let access = api::Access {
                    group: cfg.api_group,
                };
                ApiSocket::start(path, access, &sandbox.spawner(ThreadKind::Api))
            })
            .transpose()?;
        // Before memory is reserved: a missing disk or a bad VF fails the
        // run at once. `host` outlives the VM: the VFs go back to the host
        // only once vfvm has released them.
        let prepared = prepare_slots(cfg)?;
        let host = prepared.host;
        let mut slots = prepared.slots;
        let present = slots.iter().fold(0u32, |m, s| m | 1 << s.slot);
        signals.check()?;

        // The kernel is loaded and the passthrough devices open (the
        // kernel resets each) while the threads populate guest RAM.
        let vm_fd = Vm::create(&kvm)?;
        let (ram, (kernel, opened)) =
            memory::reserve(&layout::ram_ranges(cfg.memory.size), &reservation, |mem| {
                let opened = crate::slot_devices::open_passthru(&mut slots, &vm_fd);
                (load_kernel(cfg, mem, &reservation, &mut times), opened)
            })?;
        let boot = kernel?;
        opened?;
        signals.check()?;
        times.reserved(
            ram.reserve_time,
            format!(
                "{}, the kernel loaded alongside",
                reservation.describe(ram.threads)
            ),
        );
        let vm = Vm::new(vm_fd, ram.memory)?;
        vm.add_power()?;
        let ged = vm.add_ged()?;
        let rtc = vm.add_rtc()?;
        let (serial, input_ready) = vm.add_com1(console_output(cfg, vm.exit.clone(), sandbox)?)?;
        let mut supported = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::Kvm)?;
        if kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
            arch::cpuid::add_tsc_deadline(&mut supported);
        }
        let mmio64 = layout::mmio64_window(cfg.memory.size, phys_bits(&supported));
        let ram_lock = memory::RamLock::new(&reservation);
        let devices = add_pci(slots, &vm, mmio64, sandbox, ram_lock)?;
        let pci_hotplug = vm.add_pci_hotplug(present)?;
        times.dma_map_secs = devices.dma_map_time.as_secs_f64();
        let vcpu_fds = load_guest(cfg, &vm, &supported, mmio64, &boot)?;

        let terminal = TerminalGuard::new();
        let mut events = EventManager::<Subscriber>::new().map_err(Error::EventLoop)?;
        events.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(serial, input_ready))));
        events.add_subscriber(Arc::new(Mutex::new(ExitWake(vm.exit.clone()))));
        events.add_subscriber(Arc::new(Mutex::new(rtc)));
        signals.check()?;
        signals.attach(vm.exit.clone(), sandbox);
        vcpu::install_kick_handler().map_err(|source| Error::Vcpu { index: 0, source })?;
        let halt = HaltProbes::new(ncpus, vcpu::kick_signal());
        let ctx = VcpuContext {
            pio: vm.pio.clone(),
            mmio: vm.mmio.clone(),
            exit: vm.exit.clone(),
            counters: vm.counters.clone(),
            halt: halt.clone(),
        };
        let vcpus = Arc::new(
            Vcpus::start(vcpu_fds, &ctx, sandbox)
                .map_err(|(index, source)| Error::Vcpu { index, source })?,
        );
        times.first_vcpu_entry_secs = started.elapsed().as_secs_f64();
        info!("{}", times.log_line());
        let weak = Arc::downgrade(&vcpus);
        let paused = Box::new(move || weak.upgrade().is_some_and(|v| v.is_paused()));
        let halt_watch = HaltWatch::new(halt, paused, vm.exit.clone())
            .map_err(|source| Error::Vcpu { index: 0, source })?;
        events.add_subscriber(Arc::new(Mutex::new(halt_watch)));
        let (devices, host) = (Arc::new(Mutex::new(devices)), Arc::new(Mutex::new(host)));
        if let Some(api) = &api {
            let hotplug = Hotplug::new(
                devices.clone(),
                host.clone(),
                vm.device_context(sandbox.spawner(ThreadKind::BlockIo)),
                pci_hotplug,
                ged.clone(),
                cfg.clone(),
            );
            let mut view = VmView {
                config: cfg.clone(),
                start: times.clone(),
                counters: vm.counters.clone(),
                devices: Vec::new(),
                msix: Vec::new(),
                vfs: Vec::new(),
                exit: vm.exit.clone(),
                vcpus: Arc::downgrade(&vcpus),
                ged: ged.clone(),
            };
            hotplug.refresh(&mut view);
            let handler = api
                .handler(view, hotplug)
                .map_err(|source| Error::Api(api::Error::Thread(source)))?;
            events.add_subscriber(Arc::new(Mutex::new(handler)));
        }
        // Built: from here on this thread runs the event loop, then the
        // teardown, in its sandbox.
        sandbox.enter(ThreadKind::EventLoop)?;
        log::debug!("threads sandboxed (--seccomp={})", sandbox.mode());
        Ok(RunningVm {
            _api: api,
            _vcpus: vcpus,
            events,
            _terminal: terminal,
            _devices: devices,
            vm,
            _host: host,
            _signals: signals,
        })
    }

    /// Runs the event loop until the VM ends, then tears the VM down.
    fn wait(mut self) -> VmExit {
        let reason = loop {
            if let Some(reason) = self.vm.exit.reason() {
                break reason;
            }
            if let Err(e) = self.events.run() {
                log::error!("event loop: {e:?}");
                self.vm.exit.request(VmExit::Error);
            }
        };
        let counters = self.vm.counters.clone();
        drop(self);
        let exits: Vec<String> = counters
            .counters()
            .iter()
            .map(|(key, n)| format!("{key}={n}"))
            .collect();
        info!("exits handled in userspace: {}", exits.join(" "));
        let _ = io::stdout().flush();
        reason
    }
}

/// How guest memory is reserved for `cfg`.
fn reservation(cfg: &VmConfig) -> Result<memory::Reservation, Error> {
    let passthrough = cfg
        .slots
        .iter()
        .any(|s| matches!(s.device, DeviceConfig::Passthru(_)));
    Ok(memory::Reservation {
        pages: cfg.memory.hugepages,
        threads: memory::reserve_threads(cfg.memory.size)?,
        dma_pinned: passthrough,
        progress: true,
    })
}

/// Builds the prepared `-s` devices and the PCI root over them.
fn add_pci(
    slots: Vec<PreparedSlot>,
    vm: &Vm,
    mmio64: (vm_memory::GuestAddress, u64),
    sandbox: &Arc<Sandbox>,
    ram: memory::RamLock,
) -> Result<SlotDevices, Error> {
    let pci = PciBuilder::new(
        vm.bar_mapper(),
        Windows {
            io: (
                u64::from(layout::PCI_IO_START),
                u64::from(layout::PCI_IO_SIZE),
            ),
            mmio32: (layout::MMIO32_START.0, layout::MMIO32_SIZE),
            mmio64: (mmio64.0 .0, mmio64.1),
        },
    )?;
    let ctx = vm.device_context(sandbox.spawner(ThreadKind::BlockIo));
    let mut devices = add_slot_devices(slots, &ctx, pci, ram)?;
    vm.add_pci_root(devices.pci.build()?)?;
    Ok(devices)
}

/// Writes the ACPI and SMBIOS tables and the reset stub into guest memory
/// and creates the vCPUs, vCPU 0 at the entry point of the `boot` kernel
/// (loaded with the reservation).
fn load_guest(
    cfg: &VmConfig,
    vm: &Vm,
    supported: &kvm_bindings::CpuId,
    mmio64: (vm_memory::GuestAddress, u64),
    boot: &arch::boot::BootInfo,
) -> Result<Vec<VcpuFd>, Error> {
    let topo = topology(cfg);
    let rsdp = arch::acpi::create_acpi_tables(
        vm.memory.as_ref(),
        &arch::acpi::AcpiConfig {
            num_cpus: u32::from(cfg.cpus.cpus),
            topology: topo,
            ecam: (layout::ECAM_START, layout::ECAM_SIZE),
            io: (layout::PCI_IO_START, layout::PCI_IO_SIZE),
            mmio32: (layout::MMIO32_START, layout::MMIO32_SIZE),
            mmio64,
            pm_port: layout::PM_PORT,
            ged: arch::acpi::GedConfig {
                register: layout::GED_START,
                irq: layout::GED_IRQ,
                events: vec![
                    (GedEvent::PowerButton.bit(), GedAction::PowerButton),
                    (GedEvent::PciSlots.bit(), GedAction::PciSlots),
                ],
            },
            pci_hotplug: Some(arch::acpi::PciHotplugConfig {
                register: layout::PCIHP_START,
                slots: (0..32u8)
                    .filter(|s| hotplug::hotpluggable_slots(cfg) & (1 << s) != 0)
                    .collect(),
            }),
        },
    )?;
    crate::smbios::write_tables(cfg, vm.memory.as_ref(), topo)?;
    arch::reset::write_reset_stub(vm.memory.as_ref())?;
    debug_assert_eq!(rsdp, layout::ACPI_START, "where load_kernel said it is");
    let vcpu_err = |index| {
        move |e: kvm_ioctls::Error| Error::Vcpu {
            index,
            source: e.into(),
        }
    };
    (0..usize::from(cfg.cpus.cpus))
        .map(|index| {
            let vcpu = vm
                .fd
                .create_vcpu(u64::from(topo.apic_id(index as u32)))
                .map_err(vcpu_err(index))?;
            let cpuid = arch::cpuid::vcpu_cpuid(supported, index as u32, &topo)?;
            vcpu.set_cpuid2(&cpuid).map_err(vcpu_err(index))?;
            arch::regs::setup_msrs(&vcpu)?;
            arch::regs::setup_fpu(&vcpu)?;
            arch::regs::setup_lint(&vcpu)?;
            if index == 0 {
                arch::regs::setup_regs(&vcpu, boot.entry, boot.zero_page)?;
                arch::regs::setup_sregs(vm.memory.as_ref(), &vcpu)?;
            }
            Ok(vcpu)
        })
        .collect()
}

/// Reads the kernel and loads it, the initrd and the zero page, which
/// points at the RSDP that the ACPI tables put at [`layout::ACPI_START`]
/// later. A bzImage's payload is decompressed into `mem` by vfvm if a CPU
/// is left beside the `reservation`'s threads (the decoder then hides
/// behind them), else by the guest, once RAM is reserved.
fn load_kernel(
    cfg: &VmConfig,
    mem: &vm_memory::GuestMemoryMmap,
    reservation: &memory::Reservation,
    times: &mut StartTimes,
) -> Result<arch::boot::BootInfo, Error> {
    let loading = Instant::now();
    let decompressor = if reservation.leaves_a_cpu() {
        arch::boot::Decompressor::Host
    } else {
        arch::boot::Decompressor::Guest
    };
    let image = arch::boot::read_kernel(&cfg.boot.kernel, decompressor)?;
    times.kernel = kernel_load(image.how(), reservation.threads);
    let boot = arch::boot::load_kernel(
        mem,
        &arch::boot::KernelConfig {
            initrd: cfg.boot.initrd.as_deref(),
            cmdline: &cfg.boot.cmdline,
            mem_size: cfg.memory.size,
            rsdp: layout::ACPI_START,
        },
        image,
    )?;
    times.load_kernel_secs = loading.elapsed().as_secs_f64();
    Ok(boot)
}

/// How the kernel was loaded beside `threads` reservation threads, for
/// the start's log line.
fn kernel_load(how: arch::boot::KernelLoad, threads: usize) -> String {
    match how {
        arch::boot::KernelLoad::Vmlinux => "vmlinux".into(),
        arch::boot::KernelLoad::Decompressed(format) => format!(
            "bzImage, its {format} payload decompressed by vfvm into guest memory \
             on a CPU the reservation left"
        ),
        arch::boot::KernelLoad::BzImage(Some(format)) => format!(
            "bzImage, its {format} payload decompressed by the guest: \
             the {threads} reservation threads take every CPU vfvm may use"
        ),
        arch::boot::KernelLoad::BzImage(None) => "bzImage, the guest decompresses it".into(),
    }
}

/// Where COM1's output goes: through a queue and a thread of its own
/// (see [`crate::console_output`]), so a vCPU never blocks in a write.
fn console_output(
    cfg: &VmConfig,
    exit: Arc<ExitSignal>,
    sandbox: &Arc<Sandbox>,
) -> Result<Box<dyn Write + Send>, Error> {
    let out: Box<dyn Write + Send> = match &cfg.console {
        // A descriptor of its own: a write blocked on a stalled stdout then
        // holds no lock that the rest of vfvm (a flush of stdout) waits for.
        Some(ConsoleConfig::Stdio) => Box::new(std::fs::File::from(
            io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| Error::Console {
                    path: "stdio".into(),
                    source,
                })?,
        )),
        Some(ConsoleConfig::File(path)) => Box::new(
            ConsoleFile::open(path, console_output::FILE_MAX).map_err(|source| Error::Console {
                path: path.display().to_string(),
                source: if source.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::other(
                        "is a symbolic link, which vfvm does not follow (give the file itself)",
                    )
                } else {
                    source
                },
            })?,
        ),
        None => return Ok(Box::new(io::sink())),
    };
    let queued = QueuedOutput::new(out, exit, sandbox).map_err(|source| Error::Console {
        path: "stdio".into(),
        source,
    })?;
    Ok(Box::new(queued))
}

fn topology(cfg: &VmConfig) -> arch::cpuid::Topology {
    let clamp = |v: u16| u8::try_from(v).unwrap_or(u8::MAX);
    arch::cpuid::Topology {
        threads: clamp(cfg.cpus.threads),
        cores: clamp(cfg.cpus.cores),
        sockets: clamp(cfg.cpus.sockets),
    }
}

/// Physical address bits the guest can use, from CPUID 0x8000_0008.
fn phys_bits(supported: &kvm_bindings::CpuId) -> u8 {
    supported
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map(|e| (e.eax & 0xff) as u8)
        .filter(|&b| b >= 36)
        .unwrap_or(36)
}

/// Wakes the event loop when the VM must stop.
struct ExitWake(Arc<ExitSignal>);

impl MutEventSubscriber for ExitWake {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.0.event(), EventSet::IN)) {
            log::error!("cannot watch the exit event: {e:?}");
        }
    }

    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.0.event().read();
    }
}

/// From the start of `vfvm run`, SIGTERM, SIGINT and SIGHUP stop vfvm in
/// order (devices released, the host and the terminal restored) instead of
/// killing it: before the guest starts, [`Installed::check`] ends the run
/// at the next step; once it runs, the signal stops the VM. After the
/// handlers are dropped they kill vfvm again, so a teardown that hangs can
/// be ended (the journal repairs the host at the next start).
mod termination {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;

    use vmm_sys_util::eventfd::EventFd;
    use vmm_sys_util::signal::register_signal_handler;

    use super::Error;
    use crate::exit::{ExitSignal, VmExit};
    use crate::sandbox::{Sandbox, ThreadKind};

    static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
    /// The first signal received (0: none).
    static RECEIVED: AtomicI32 = AtomicI32::new(0);
    const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

    extern "C" fn on_signal(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let _ = RECEIVED.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
        let fd = WAKE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let one = 1u64;
            // SAFETY: write(2) is async-signal-safe; the buffer is a local u64.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
    }

    /// The installed handlers; dropping them restores the default action.
    pub struct Installed {
        event: Option<EventFd>,
    }

    /// Installs the handlers (a failure is logged: the run goes on).
    pub fn install() -> Installed {
        let event = EventFd::new(0)
            .inspect_err(|e| log::warn!("no signal eventfd: {e}"))
            .ok();
        if let Some(e) = &event {
            WAKE_FD.store(e.as_raw_fd(), Ordering::Relaxed);
        }
        for sig in SIGNALS {
            if let Err(e) = register_signal_handler(sig, on_signal) {
                log::warn!("cannot handle signal {sig}: {e}");
            }
        }
        Installed { event }
    }

    impl Installed {
        /// `Err` once a signal came: the run stops before the next step.
        pub fn check(&self) -> Result<(), Error> {
            match RECEIVED.load(Ordering::Relaxed) {
                0 => Ok(()),
                sig => Err(Error::Stopped(sig)),
            }
        }

        /// From now on a signal stops the running VM.
        pub fn attach(&mut self, exit: Arc<ExitSignal>, sandbox: &Arc<Sandbox>) {
            let Some(watch) = self.event.as_ref().and_then(|e| e.try_clone().ok()) else {
                return;
            };
            let spawned = sandbox.spawn(ThreadKind::Signals, "signals".into(), move || {
                if watch.read().is_ok() {
                    log::warn!("stopped by a signal");
                    exit.request(VmExit::Error);
                }
            });
            if let Err(e) = spawned {
                log::warn!("no signal watcher: {e}");
            }
        }
    }

    impl Drop for Installed {
        fn drop(&mut self) {
            WAKE_FD.store(-1, Ordering::Relaxed);
            for sig in SIGNALS {
                // SAFETY: restores the default disposition; no handler of
                // ours runs afterwards.
                unsafe { libc::signal(sig, libc::SIG_DFL) };
            }
        }
    }
}
