//! `vfvm run`: from a checked [`VmConfig`] to a guest and back.
//!
//! Order matters for the promises we make: every check that can fail on
//! bad input runs before anything on the host changes; memory is reserved
//! (and locked) before any device can DMA; vCPUs start last. On the way out
//! vCPUs stop first, then devices are dropped (VFs reset and released),
//! then what the host side changed is restored.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arch::layout;
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::Kvm;
use log::info;

use crate::api_server::{ApiSocket, VmView};
use crate::config::{ConsoleConfig, DeviceConfig, VmConfig};
use crate::console::{ConsoleInput, TerminalGuard};
use crate::exit::{ExitSignal, VmExit};
use crate::memory::{self, Size};
use crate::pci::PciBuilder;
use crate::slot_devices::{add_slot_devices, open_disks, prepare_passthru};
use crate::vcpu::{self, PauseState, VcpuContext, VcpuThread};
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
}

/// Runs the VM described by `cfg` until it ends.
pub fn run(cfg: &VmConfig) -> Result<VmExit, Error> {
    // Whoever built `cfg` (the command line, later the API), it is
    // checked here once more: run() takes no config on trust.
    cfg.validate()?;
    cfg.check_files()?;
    let kvm = Kvm::new().map_err(Error::Kvm)?;
    let max = kvm.get_max_vcpus();
    let ncpus = usize::from(cfg.cpus.cpus);
    if ncpus > max {
        return Err(Error::TooManyVcpus { asked: ncpus, max });
    }
    let passthrough = cfg
        .slots
        .iter()
        .any(|s| matches!(s.device, DeviceConfig::Passthru(_)));
    memory::check_limits(cfg.memory.size, cfg.memory.hugepages, passthrough)?;
    // Before the host changes: a socket in use fails the run at once.
    let api = cfg
        .api_socket
        .as_deref()
        .map(ApiSocket::start)
        .transpose()?;
    // Declared before the VM so it is dropped after it: the VFs go back to
    // the host only once vfvm has released them.
    let passthru = prepare_passthru(cfg)?;
    // Before memory is reserved: a locked image fails the run at once.
    let disks = open_disks(cfg)?;

    let ram = memory::reserve(&layout::ram_ranges(cfg.memory.size), cfg.memory.hugepages)?;
    info!(
        "reserved {} of guest memory ({}, locked) in {:.3} s",
        Size(cfg.memory.size),
        if cfg.memory.hugepages {
            "2 MiB pages"
        } else {
            "4 KiB pages"
        },
        ram.reserve_time.as_secs_f64()
    );
    let vm = Vm::new(&kvm, ram.memory)?;
    vm.add_power()?;
    let (serial, input_ready) = vm.add_com1(console_output(cfg)?)?;

    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::Kvm)?;
    let phys_bits = phys_bits(&supported);
    let mmio64 = layout::mmio64_window(cfg.memory.size, phys_bits);
    let mut pci = PciBuilder::new(
        vm.bar_mapper(),
        (layout::MMIO32_START.0, layout::MMIO32_SIZE),
        (mmio64.0 .0, mmio64.1),
    )?;
    let slot_devices = add_slot_devices(cfg, &vm, &passthru, disks, &mut pci)?;
    vm.add_pci_root(pci.build()?)?;

    let topo = topology(cfg);
    let rsdp = arch::acpi::create_acpi_tables(
        vm.memory.as_ref(),
        &arch::acpi::AcpiConfig {
            num_cpus: u32::from(cfg.cpus.cpus),
            topology: topo,
            ecam: (layout::ECAM_START, layout::ECAM_SIZE),
            mmio32: (layout::MMIO32_START, layout::MMIO32_SIZE),
            mmio64,
            pm_port: layout::PM_PORT,
        },
    )?;
    arch::reset::write_reset_stub(vm.memory.as_ref())?;
    let boot = arch::boot::load_kernel(
        vm.memory.as_ref(),
        &arch::boot::KernelConfig {
            kernel: &cfg.boot.kernel,
            initrd: cfg.boot.initrd.as_deref(),
            cmdline: &cfg.boot.cmdline,
            mem_size: cfg.memory.size,
            rsdp,
        },
    )?;

    vcpu::install_kick_handler().map_err(|source| Error::Vcpu { index: 0, source })?;
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Arc::new(PauseState::default());
    let ctx = VcpuContext {
        pause: pause.clone(),
        pio: vm.pio.clone(),
        mmio: vm.mmio.clone(),
        exit: vm.exit.clone(),
        stop: stop.clone(),
        counters: vm.counters.clone(),
    };
    let mut vcpu_fds = Vec::with_capacity(ncpus);
    for index in 0..ncpus {
        let vcpu = vm
            .fd
            .create_vcpu(u64::from(topo.apic_id(index as u32)))
            .map_err(|e| Error::Vcpu {
                index,
                source: e.into(),
            })?;
        let cpuid = arch::cpuid::vcpu_cpuid(&supported, index as u32, &topo)?;
        vcpu.set_cpuid2(&cpuid).map_err(|e| Error::Vcpu {
            index,
            source: e.into(),
        })?;
        arch::regs::setup_msrs(&vcpu)?;
        arch::regs::setup_fpu(&vcpu)?;
        arch::regs::setup_lint(&vcpu)?;
        if index == 0 {
            arch::regs::setup_regs(&vcpu, boot.entry, boot.zero_page)?;
            arch::regs::setup_sregs(vm.memory.as_ref(), &vcpu)?;
        }
        vcpu_fds.push(vcpu);
    }

    let _terminal = TerminalGuard::new();
    let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new()
        .map_err(Error::EventLoop)?;
    events.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(serial, input_ready))));
    events.add_subscriber(Arc::new(Mutex::new(ExitWake(vm.exit.clone()))));
    for s in &slot_devices.subscribers {
        events.add_subscriber(s.clone());
    }
    let terminate = termination::install(vm.exit.clone());

    let threads = Arc::new(Mutex::new(Vec::with_capacity(ncpus)));
    for (index, vcpu) in vcpu_fds.into_iter().enumerate() {
        let t = VcpuThread::spawn(index, vcpu, ctx.clone())
            .map_err(|source| Error::Vcpu { index, source })?;
        threads.lock().unwrap_or_else(|e| e.into_inner()).push(t);
    }
    if let Some(api) = &api {
        let handler = api
            .handler(VmView {
                config: cfg.clone(),
                memory_reserve_time: ram.reserve_time,
                counters: vm.counters.clone(),
                disks: slot_devices.disk_metrics.clone(),
                exit: vm.exit.clone(),
                pause: pause.clone(),
                vcpus: threads.clone(),
            })
            .map_err(|source| Error::Api(api::Error::Thread(source)))?;
        events.add_subscriber(Arc::new(Mutex::new(handler)));
    }

    let reason = loop {
        if let Some(reason) = vm.exit.reason() {
            break reason;
        }
        if let Err(e) = events.run() {
            log::error!("event loop: {e:?}");
            vm.exit.request(VmExit::Error);
        }
    };
    // No more API requests: pending ones get 503, the socket goes.
    drop(api);
    stop.store(true, Ordering::Release);
    pause.resume();
    for t in std::mem::take(&mut *threads.lock().unwrap_or_else(|e| e.into_inner())) {
        t.stop();
    }
    let exits = vm.counters.snapshot();
    info!(
        "exits handled in userspace: io_in={} io_out={} mmio_read={} mmio_write={} other={}",
        exits.io_in, exits.io_out, exits.mmio_read, exits.mmio_write, exits.other
    );
    drop(terminate);
    let _ = io::stdout().flush();
    Ok(reason)
}

/// Where COM1's output goes.
fn console_output(cfg: &VmConfig) -> Result<Box<dyn Write + Send>, Error> {
    Ok(match &cfg.console {
        Some(ConsoleConfig::Stdio) => Box::new(io::stdout()),
        Some(ConsoleConfig::File(path)) => {
            Box::new(File::create(path).map_err(|source| Error::Console {
                path: path.display().to_string(),
                source,
            })?)
        }
        None => Box::new(io::sink()),
    })
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

/// While the VM runs, SIGTERM, SIGINT and SIGHUP stop it in order (devices
/// released, the terminal restored) instead of killing vfvm. Once it has
/// stopped they kill vfvm again, so a teardown that hangs can be ended.
mod termination {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;

    use vmm_sys_util::signal::register_signal_handler;

    use crate::exit::{ExitSignal, VmExit};

    static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
    const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

    extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let fd = WAKE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let one = 1u64;
            // SAFETY: write(2) is async-signal-safe; the buffer is a local u64.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
    }

    /// Keeps the handlers' eventfd alive; the loop sees the stop reason.
    pub struct Installed {
        _event: vmm_sys_util::eventfd::EventFd,
        _watcher: std::thread::JoinHandle<()>,
    }

    /// Installs the handlers.
    pub fn install(exit: Arc<ExitSignal>) -> Option<Installed> {
        let event = vmm_sys_util::eventfd::EventFd::new(0).ok()?;
        let watch = event.try_clone().ok()?;
        WAKE_FD.store(event.as_raw_fd(), Ordering::Relaxed);
        for sig in SIGNALS {
            if let Err(e) = register_signal_handler(sig, on_signal) {
                log::warn!("cannot handle signal {sig}: {e}");
            }
        }
        let watcher = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if watch.read().is_ok() {
                    log::warn!("stopped by a signal");
                    exit.request(VmExit::Error);
                }
            })
            .ok()?;
        Some(Installed {
            _event: event,
            _watcher: watcher,
        })
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
