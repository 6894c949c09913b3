//! The functions `-s` asks for, in two steps.
//!
//! [`prepare_slots`] does everything that can fail on the host, in one
//! pass over the slots in command-line order and before guest memory is
//! reserved: disk images are opened and locked, `rom=` files read, and
//! every passthrough device is checked ([`plan::check`], which also claims
//! it, for `pf=` the first free VF); only when all of that succeeded are
//! the passthrough plans applied (journal, driver binding, VF settings). A
//! bad disk or VF therefore fails the run before anything on the host has
//! changed. [`add_slot_devices`] then builds the guest-facing devices from
//! the prepared slots and places them; it looks nothing up again. In
//! between, while guest RAM is reserved, [`open_passthru`] opens the
//! passthrough devices (the kernel resets each as it opens: an FLR and
//! PCIe's 100 ms wait after it, all of them at once).
//!
//! One slot goes through the same two steps, `check_slot` then
//! `CheckedSlot::apply`, and one prepared slot becomes its device through
//! [`add_slot_device`]: a hot-added slot ([`prepare_slot`], then
//! [`add_slot_device`]) runs exactly the code a boot-time one does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::metrics::Metrics;
use devices::pci::{HostBridge, IsaBridge, SharedPciDevice};
use devices::vfio::{Rom, VfioOptions, VfioPciDevice};
use devices::virtio::block::{Block, BlockConfig, MAX_QUEUES};
use devices::virtio::pci::VirtioPciDevice;
use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use kvm_ioctls::VmFd;
use log::{info, warn};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioDeviceFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::api_server::VfView;
use crate::config::{
    self, BlkConfig, DeviceConfig, HostDevice, PassthruConfig, PciSlotConfig, RomConfig, VmConfig,
};
use crate::host::netlink::LazyRtnetlink;
use crate::host::pci::Sysfs;
use crate::iommu;
use crate::irq::{KvmInterrupts, MsiCounts};
use crate::memory::{self, RamLock};
use crate::passthru::plan::{self, Guard, GuestPlace, Host, Plan};
use crate::pci::PciBuilder;
use crate::setup_threads;
use crate::vm::DeviceContext;

const LOCK_DIR: &str = "/run/vfvm";

/// Errors of preparing or building `-s` devices; each names the slot as
/// the user typed it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host side of a passthrough device.
    #[error("{}", slot_error(arg, source))]
    Passthru {
        arg: String,
        #[source]
        source: plan::Error,
    },
    /// VFIO setup.
    #[error("{}", slot_error(arg, source))]
    Vfio {
        arg: String,
        #[source]
        source: devices::vfio::Error,
    },
    /// The VFIO container or its DMA mappings.
    #[error("passthru: {what}: {source}")]
    Container {
        what: &'static str,
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// A `rom=FILE` image.
    #[error("{}", slot_error(arg, reason))]
    Rom { arg: String, reason: String },
    /// Guest RAM that the IOMMU cannot map.
    #[error("passthru: {0}")]
    Iommu(String),
    /// Guest RAM's memlock when the first VF pins it.
    #[error("passthru: {0}")]
    Memory(#[from] memory::Error),
    /// A thread opening a passthrough device did not start or ended
    /// without a result.
    #[error("passthru: a thread opening a device: {0}")]
    OpenThread(String),
    /// The KVM VFIO pseudo-device.
    #[error("passthru: KVM VFIO device: {0}")]
    KvmVfio(#[source] kvm_ioctls::Error),
    /// A disk image.
    #[error("{}", slot_error(arg, source))]
    Block {
        arg: String,
        #[source]
        source: devices::virtio::block::Error,
    },
    /// The virtio transport.
    #[error("{}", slot_error(arg, source))]
    Virtio {
        arg: String,
        #[source]
        source: devices::virtio::pci::Error,
    },
    /// Placing a function.
    #[error(transparent)]
    Pci(#[from] crate::pci::Error),
}

/// `-s ARG: REASON`, one line. A reason that starts by naming what `ARG`
/// already names (`0000:01:10.0: no such PCI device`, `/tmp/d.img: disk
/// image not found`) does not name it twice.
fn slot_error(arg: &str, reason: &dyn std::fmt::Display) -> String {
    let reason = reason.to_string();
    let reason = match reason.split_once(": ") {
        Some((name, rest)) if arg.split(',').any(|part| part == name) => rest,
        _ => &reason,
    };
    format!("-s {arg}: {reason}")
}

/// One `-s` slot with everything on the host done: what
/// [`add_slot_devices`] needs to build its device, and nothing to look up.
pub struct PreparedSlot {
    /// Guest PCI slot.
    pub slot: u8,
    /// Guest PCI function.
    pub function: u8,
    /// The `-s` text that names the slot in errors.
    pub arg: String,
    /// The device's host side.
    pub device: PreparedDevice,
}

/// The host side of one slot's device.
pub enum PreparedDevice {
    /// `hostbridge`.
    HostBridge,
    /// `lpc`.
    Lpc,
    /// `virtio-blk`: the image, opened and locked.
    Disk(Box<Block>),
    /// `passthru`: the host device, bound to vfio-pci; its [`Guard`] is in
    /// [`Prepared::host`].
    Passthru {
        /// The device's sysfs directory.
        sysfs_path: PathBuf,
        /// The guest's expansion ROM (a `rom=` file already read).
        rom: Rom,
        /// The device opened in its container by [`open_passthru`]; a
        /// hot-added one opens as its device is built.
        opened: Option<(Arc<VfioContainer>, VfioDevice)>,
    },
}

/// Every slot prepared, and what must be undone on the host.
pub struct Prepared {
    /// In command-line order, after a host bridge at 00.0 if the user put
    /// nothing there.
    pub slots: Vec<PreparedSlot>,
    /// The passthrough devices' host guards. Kept apart from the slots so
    /// that they outlive every device (drop them after the VFIO devices
    /// are closed: a device vfio-pci still has open cannot be unbound).
    pub host: PassthruHost,
}

/// What the host side of every `passthru` slot holds until the VM ends.
pub struct PassthruHost {
    /// Each guard with the guest slot and function of its device.
    guards: Vec<((u8, u8), Guard)>,
}

impl PassthruHost {
    /// Keeps the guard of the device a hot-added slot got.
    pub fn add(&mut self, place: (u8, u8), guard: Guard) {
        self.guards.push((place, guard));
    }

    /// The guard of the device at `place` (its VFIO device closed: dropping
    /// the guard gives the device back to the host).
    pub fn take(&mut self, place: (u8, u8)) -> Option<Guard> {
        let at = self.guards.iter().position(|(p, _)| *p == place)?;
        Some(self.guards.remove(at).1)
    }

    /// Each passed-through function as the API reports it.
    pub fn views(&self) -> Vec<VfView> {
        let sysfs = Sysfs::host();
        self.guards
            .iter()
            .map(|&((slot, function), ref g)| VfView {
                slot,
                function,
                host: g.device().to_string(),
                pf_vf: g.pf_vf().map(|(pf, i)| (pf.to_string(), i)),
                pf_driver: sysfs.physfn(g.device()).and_then(|pf| sysfs.driver(&pf)),
            })
            .collect()
    }

    /// `cfg` with each `pf=` slot naming the VF it took (for `vm.info`).
    pub fn resolved(&self, cfg: &VmConfig) -> VmConfig {
        let mut cfg = cfg.clone();
        for slot in &mut cfg.slots {
            let place = (slot.slot, slot.function);
            if let DeviceConfig::Passthru(PassthruConfig {
                host: HostDevice::Pool { taken, .. },
                ..
            }) = &mut slot.device
            {
                let guard = self.guards.iter().find(|(at, _)| *at == place);
                *taken = guard.and_then(|(_, g)| g.device().parse().ok());
            }
        }
        cfg
    }
}

/// A slot after its checks: a [`PreparedSlot`], but a passthrough device
/// only planned.
struct CheckedSlot {
    slot: PreparedSlot,
    plan: Option<Plan>,
}

/// How the host is reached: sysfs, the PFs over rtnetlink (opened on
/// first use: a VM with no VF settings opens no socket; the guards keep it
/// to put the VFs' settings back) and the claim locks.
fn host(netlink: &LazyRtnetlink) -> Host<'_> {
    Host {
        sysfs: Sysfs::host(),
        vf_control: netlink,
        lock_dir: PathBuf::from(LOCK_DIR),
    }
}

/// Prepares one slot added to the running VM of `cfg` (its host checks,
/// then its host changes), as [`prepare_slots`] prepares each of its own.
pub fn prepare_slot(
    s: &PciSlotConfig,
    cfg: &VmConfig,
) -> Result<(PreparedSlot, Option<Guard>), Error> {
    let netlink = Arc::new(LazyRtnetlink::default());
    check_slot(s, cfg, &host(&netlink))?.apply(netlink.clone())
}

/// Prepares every `-s` slot of `cfg`; see the module documentation.
pub fn prepare_slots(cfg: &VmConfig) -> Result<Prepared, Error> {
    let netlink = Arc::new(LazyRtnetlink::default());
    let host = host(&netlink);
    let bridge = (!cfg.slots.iter().any(|s| (s.slot, s.function) == (0, 0)))
        // A PC without a host bridge at 00.0 confuses guests; bhyve users
        // add `-s 0,hostbridge`, we add it when they did not.
        .then(|| PciSlotConfig::new(0, 0, DeviceConfig::HostBridge));
    let checked = bridge
        .iter()
        .chain(&cfg.slots)
        .map(|s| check_slot(s, cfg, &host))
        .collect::<Result<Vec<_>, _>>()?;
    // Every check passed: now the host changes.
    let mut prepared = Prepared {
        slots: Vec::with_capacity(checked.len()),
        host: PassthruHost { guards: Vec::new() },
    };
    for checked in checked {
        let (slot, guard) = checked.apply(netlink.clone())?;
        if let Some(guard) = guard {
            prepared
                .host
                .guards
                .push(((slot.slot, slot.function), guard));
        }
        prepared.slots.push(slot);
    }
    Ok(prepared)
}

impl CheckedSlot {
    /// Makes the slot's host changes (a passthrough plan applied); a
    /// hot-added slot can go through [`check_slot`] and this as well.
    fn apply(self, netlink: Arc<LazyRtnetlink>) -> Result<(PreparedSlot, Option<Guard>), Error> {
        let Some(plan) = self.plan else {
            return Ok((self.slot, None));
        };
        let guard = plan.apply(netlink).map_err(|source| Error::Passthru {
            arg: self.slot.arg.clone(),
            source,
        })?;
        if let Some(mac) = guard.mac() {
            info!("{}: VF MAC {mac}", guard.device());
        }
        Ok((self.slot, Some(guard)))
    }
}

/// One slot's checks: its disk opened, its `rom=` file read, its
/// passthrough device planned (and claimed). Nothing on the host changes.
fn check_slot(s: &PciSlotConfig, cfg: &VmConfig, host: &Host) -> Result<CheckedSlot, Error> {
    let arg = s.arg();
    let mut plan = None;
    let device = match &s.device {
        DeviceConfig::HostBridge => PreparedDevice::HostBridge,
        DeviceConfig::Lpc => PreparedDevice::Lpc,
        DeviceConfig::VirtioBlk(b) => {
            let opened = Block::new(block_config(b, cfg.cpus.cpus, memory::usable_cpus()))
                .map_err(|source| Error::Block {
                    arg: arg.clone(),
                    source,
                })?;
            PreparedDevice::Disk(Box::new(opened))
        }
        DeviceConfig::Passthru(p) => {
            let rom = match &p.rom {
                RomConfig::Device => Rom::Device,
                RomConfig::Off => Rom::Off,
                RomConfig::File(path) => {
                    Rom::Image(config::read_rom(path).map_err(|reason| Error::Rom {
                        arg: arg.clone(),
                        reason,
                    })?)
                }
            };
            let place = GuestPlace {
                vm: &cfg.name,
                slot: s.slot,
                function: s.function,
            };
            let checked = plan::check(p, place, host).map_err(|source| Error::Passthru {
                arg: arg.clone(),
                source,
            })?;
            let sysfs_path = checked.sysfs_path();
            plan = Some(checked);
            PreparedDevice::Passthru {
                sysfs_path,
                rom,
                opened: None,
            }
        }
    };
    Ok(CheckedSlot {
        slot: PreparedSlot {
            slot: s.slot,
            function: s.function,
            arg,
            device,
        },
        plan,
    })
}

/// A disk's I/O threads when the user gave no `iothreads=`: one per queue
/// where the host has that many CPUs besides the vCPUs', else one per CPU
/// the vCPUs leave (at least one). Where the I/O threads have to share
/// CPUs with busy vCPUs, a thread per queue only adds thread switches and
/// splits the completions into smaller batches, i.e. more interrupts: on
/// two host CPUs and two vCPUs one thread for both queues did 1.4x the 2-job
/// random reads and 2.7x the 2-job random writes of a thread per queue
/// (resources/BENCH.md, "one I/O thread for all of a disk's queues").
fn default_io_threads(queues: u16, vcpus: u16, host_cpus: usize) -> u16 {
    let spare = host_cpus.saturating_sub(usize::from(vcpus));
    u16::try_from(spare)
        .unwrap_or(u16::MAX)
        .clamp(1, queues.max(1))
}

fn block_config(b: &BlkConfig, vcpus: u16, host_cpus: usize) -> BlockConfig {
    // One queue per vCPU unless the user chose.
    let num_queues = b.num_queues.unwrap_or_else(|| vcpus.clamp(1, MAX_QUEUES));
    BlockConfig {
        path: b.path.clone(),
        readonly: b.readonly,
        // bhyve's words at the CLI, what they do in the device.
        bypass_cache: b.nocache,
        sync_writes: b.direct,
        logical_sector: b.logical_sector,
        physical_sector: b.physical_sector,
        serial: b.serial.clone(),
        num_queues,
        // Never more threads than queues (the parser checks that against
        // an explicit num_queues, this against the default).
        io_threads: b.iothreads.map_or_else(
            || default_io_threads(num_queues, vcpus, host_cpus),
            |n| n.clamp(1, num_queues),
        ),
        io_uring: true,
    }
}

/// Devices the VM keeps alive besides those on its buses, and the bus
/// builder that places hot-added ones.
pub struct SlotDevices {
    /// Bus 0's functions and BAR windows.
    pub pci: PciBuilder,
    /// The VFIO container, once a VF was passed through.
    pub vfio: Option<Arc<VfioContainer>>,
    /// VFIO functions attached now. When the last one goes, its group
    /// leaves the container and the kernel drops the container's DMA
    /// mappings (and pins) with it: the next one maps guest RAM again.
    vfio_attached: usize,
    /// Whether vfvm's mlock holds guest RAM: while no VF pins it.
    ram: RamLock,
    /// Each emulated device's counters, by device id (a disk's is
    /// `blk@SLOT:FUNCTION`).
    pub device_metrics: Vec<(String, Arc<dyn Metrics>)>,
    /// Each emulated device's MSI-X vectors fired, by the same names.
    pub msix_metrics: Vec<(String, Arc<MsiCounts>)>,
    /// Time spent DMA-mapping guest RAM (zero without a VF).
    pub dma_map_time: Duration,
}

/// A disk's counters id.
fn disk_id(slot: u8, function: u8) -> String {
    format!("blk@{slot}:{function}")
}

impl SlotDevices {
    /// No devices yet, on `pci`, guest RAM held as `ram` says.
    pub fn new(pci: PciBuilder, ram: RamLock) -> Self {
        SlotDevices {
            pci,
            vfio: None,
            vfio_attached: 0,
            ram,
            device_metrics: Vec::new(),
            msix_metrics: Vec::new(),
            dma_map_time: Duration::ZERO,
        }
    }

    /// Forgets what [`add_slot_device`] recorded of the device at
    /// `slot`:`function` (it was removed, or could not be placed).
    pub fn forget(&mut self, slot: u8, function: u8, vfio: bool) {
        let id = disk_id(slot, function);
        self.device_metrics.retain(|(d, _)| *d != id);
        self.msix_metrics.retain(|(d, _)| *d != id);
        if vfio {
            self.vfio_attached = self.vfio_attached.saturating_sub(1);
        }
    }

    /// After a removed VF's device was dropped: if it was the last, no VF
    /// pins guest RAM any more, so vfvm locks it again (its DMA mappings
    /// go first, should the kernel have kept any, so it is never charged
    /// twice).
    pub fn vfio_released(&mut self, memory: &GuestMemoryMmap) {
        if self.vfio_attached > 0 {
            return;
        }
        if let Some(container) = &self.vfio {
            let _ = container.vfio_unmap_guest_memory(memory);
        }
        self.ram.relock(memory);
    }
}

/// Builds the device of every prepared slot and places it on `pci`, in
/// order.
pub fn add_slot_devices(
    slots: Vec<PreparedSlot>,
    ctx: &DeviceContext,
    pci: PciBuilder,
    ram: RamLock,
) -> Result<SlotDevices, Error> {
    let mut out = SlotDevices::new(pci, ram);
    for prepared in slots {
        let (slot, function) = (prepared.slot, prepared.function);
        let dev = add_slot_device(&mut out, ctx, prepared)?;
        out.pci.add(slot, function, dev)?;
    }
    Ok(out)
}

/// Builds the device of one prepared slot (a boot-time or a hot-added
/// one), recording its counters in `out`; the caller places it.
pub fn add_slot_device(
    out: &mut SlotDevices,
    ctx: &DeviceContext,
    prepared: PreparedSlot,
) -> Result<SharedPciDevice, Error> {
    let irq = KvmInterrupts::new(ctx.router.clone());
    let PreparedSlot {
        slot,
        function,
        arg,
        device,
    } = prepared;
    Ok(match device {
        PreparedDevice::HostBridge => Arc::new(Mutex::new(HostBridge::new())),
        PreparedDevice::Lpc => Arc::new(Mutex::new(IsaBridge::new())),
        PreparedDevice::Disk(mut block) => {
            block.set_spawner(ctx.spawner.clone());
            let id = disk_id(slot, function);
            let metrics: Arc<dyn Metrics> = block.metrics();
            let pci_dev = VirtioPciDevice::new(block, ctx.memory.clone(), &irq)
                .map_err(|source| Error::Virtio { arg, source })?;
            out.device_metrics.push((id.clone(), metrics));
            for counts in irq.take_counts() {
                out.msix_metrics.push((id.clone(), counts));
            }
            Arc::new(Mutex::new(pci_dev))
        }
        PreparedDevice::Passthru {
            sysfs_path,
            rom,
            opened,
        } => {
            let options = VfioOptions { slot, rom };
            let (container, dev) = match opened {
                Some((container, host)) => {
                    let dev = VfioPciDevice::opened(&sysfs_path, host, &irq, options);
                    (container, dev)
                }
                None => {
                    let container = match &out.vfio {
                        Some(c) => c.clone(),
                        None => vfio_container(&ctx.fd)?,
                    };
                    let dev = VfioPciDevice::new(&sysfs_path, container.clone(), &irq, options);
                    (container, dev)
                }
            };
            let dev = dev.map_err(|source| Error::Vfio { arg, source })?;
            // A VF's interrupts go from the kernel to KVM: nothing to count.
            irq.take_counts();
            if out.vfio_attached == 0 {
                // The first device attached sets the container's IOMMU
                // type; only then can its limits be read and guest RAM be
                // mapped for DMA: one VFIO_IOMMU_MAP_DMA per RAM region,
                // the largest calls type1 takes (it maps them one at a
                // time under one lock, so more calls or threads would not
                // be faster). This pins every page: from here on guest RAM
                // cannot be swapped, and RLIMIT_MEMLOCK is charged for it,
                // so vfvm's own mlock (a VM booted without a VF) goes
                // first, and comes back if the map fails.
                check_iommu(&container, ctx)?;
                if out.vfio.is_some() {
                    // Mapped before, its last device since removed: the
                    // kernel dropped the mappings with the last group;
                    // whatever may be left goes first, so the map below
                    // cannot collide with it.
                    let _ = container.vfio_unmap_guest_memory(ctx.memory.as_ref());
                }
                out.ram.hand_to_vfio(&ctx.memory)?;
                let started = Instant::now();
                // SAFETY: guest RAM stays mapped (and pinned) for as long
                // as the container lives: both are dropped when the VM ends.
                if let Err(source) = unsafe { container.vfio_map_guest_memory(ctx.memory.as_ref()) }
                {
                    // A region that did map is unmapped before the lock.
                    let _ = container.vfio_unmap_guest_memory(ctx.memory.as_ref());
                    out.ram.relock(&ctx.memory);
                    return Err(Error::Container {
                        what: "DMA-map guest memory",
                        source,
                    });
                }
                out.dma_map_time += started.elapsed();
                out.vfio = Some(container);
            }
            out.vfio_attached += 1;
            Arc::new(Mutex::new(dev))
        }
    })
}

/// Refuses guest RAM the container's IOMMU cannot map (see [`iommu`]).
fn check_iommu(container: &VfioContainer, vm: &DeviceContext) -> Result<(), Error> {
    let info = match iommu::read_info(container) {
        Ok(info) => info,
        Err(e) => {
            // Only an ancient kernel lacks the ioctl: the map calls tell.
            warn!("passthru: cannot read the IOMMU's limits: {e}");
            return Ok(());
        }
    };
    let ram: Vec<(u64, u64)> = vm
        .memory
        .iter()
        .map(|r| (r.start_addr().0, r.len()))
        .collect();
    iommu::check_layout(&ram, &info).map_err(Error::Iommu)
}

/// Opens every passthrough device of `slots` in one new VFIO container of
/// the VM `vm`, each in a thread of its own (the kernel resets a function
/// as it opens, sleeping through most of it), while guest RAM is reserved.
/// Nothing is mapped for DMA yet: [`add_slot_device`] does that once RAM is
/// populated.
pub fn open_passthru(slots: &mut [PreparedSlot], vm: &VmFd) -> Result<(), Error> {
    /// One device to open, and where it goes.
    struct ToOpen<'a> {
        arg: &'a str,
        path: &'a std::path::Path,
        opened: &'a mut Option<(Arc<VfioContainer>, VfioDevice)>,
    }
    let todo: Vec<ToOpen> = slots
        .iter_mut()
        .filter_map(|s| match &mut s.device {
            PreparedDevice::Passthru {
                sysfs_path, opened, ..
            } => Some(ToOpen {
                arg: &s.arg,
                path: sysfs_path,
                opened,
            }),
            _ => None,
        })
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let container = vfio_container(vm)?;
    let open = |item: &mut ToOpen| -> Result<(), Error> {
        let host =
            VfioPciDevice::open(item.path, container.clone()).map_err(|source| Error::Vfio {
                arg: item.arg.to_owned(),
                source,
            })?;
        *item.opened = Some((container.clone(), host));
        Ok(())
    };
    std::thread::scope(|s| {
        // Setup threads (`crate::setup_threads`).
        let handles: Vec<_> = todo
            .into_iter()
            .map(|mut item| {
                let open = &open;
                std::thread::Builder::new()
                    .name("vfio-open".into())
                    .spawn_scoped(s, move || open(&mut item))
            })
            .collect();
        setup_threads::join_all(handles, "it panicked", |e| Error::OpenThread(e.to_string()))
    })
}

fn vfio_container(vm: &VmFd) -> Result<Arc<VfioContainer>, Error> {
    let mut kvm_vfio = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
        fd: 0,
        flags: 0,
    };
    let fd = vm.create_device(&mut kvm_vfio).map_err(Error::KvmVfio)?;
    let handle = Arc::new(VfioDeviceFd::new_from_kvm(fd));
    VfioContainer::new(Some(handle))
        .map(Arc::new)
        .map_err(|source| Error::Container {
            what: "open /dev/vfio/vfio",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::{default_io_threads, slot_error};

    #[test]
    fn io_threads_default_to_the_cpus_the_vcpus_leave() {
        // (queues, vCPUs, host CPUs) -> threads
        for (queues, vcpus, host, want) in [
            (2, 2, 2, 1),
            (2, 2, 1, 1),
            (4, 4, 6, 2),
            (4, 4, 8, 4),
            (4, 4, 64, 4),
            (1, 1, 64, 1),
            (2, 64, 2, 1),
        ] {
            assert_eq!(
                default_io_threads(queues, vcpus, host),
                want,
                "{queues} queues, {vcpus} vCPUs, {host} host CPUs"
            );
        }
    }

    #[test]
    fn slot_errors_name_what_the_user_typed_once() {
        let cases = [
            (
                "5:0,passthru,0000:01:1f.0",
                "0000:01:1f.0: no such PCI device",
                "-s 5:0,passthru,0000:01:1f.0: no such PCI device",
            ),
            (
                "4,virtio-blk,/tmp/d.img,ro",
                "/tmp/d.img: disk image not found; check the path",
                "-s 4,virtio-blk,/tmp/d.img,ro: disk image not found; check the path",
            ),
            // A device the user did not type (the VF a pool gave) is named.
            (
                "5:0,passthru,pf=eth0",
                "0000:01:10.2: bound to igbvf, not vfio-pci",
                "-s 5:0,passthru,pf=eth0: 0000:01:10.2: bound to igbvf, not vfio-pci",
            ),
            (
                "5,passthru,1/16/0",
                "0000:01:10.0: in use by another VM",
                "-s 5,passthru,1/16/0: 0000:01:10.0: in use by another VM",
            ),
        ];
        for (arg, reason, want) in cases {
            assert_eq!(slot_error(arg, &reason), want);
        }
    }
}
