//! The functions `-s` asks for: built from their configs and placed at the
//! user's slots. The host side of passthrough (checks, driver binding, VF
//! MAC/VLAN) is prepared before guest memory is reserved, so a bad VF
//! fails before anything starts; its guards restore the host at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use devices::pci::{HostBridge, IsaBridge, SharedPciDevice};
use devices::vfio::VfioPciDevice;
use devices::virtio::block::{Block, BlockConfig, BlockHandler, BlockMetrics};
use devices::virtio::pci::VirtioPciDevice;
use event_manager::MutEventSubscriber;
use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use log::info;
use vfio_ioctls::{VfioContainer, VfioDeviceFd};

use crate::config::{DeviceConfig, PciSlotConfig, VmConfig};
use crate::irq::KvmInterrupts;
use crate::passthru::netlink::Rtnetlink;
use crate::passthru::prepare::{self, GuestPlace, Host, PassthruGuard};
use crate::passthru::sysfs::Sysfs;
use crate::pci::PciBuilder;
use crate::vm::Vm;

const LOCK_DIR: &str = "/run/vfvm";

/// Errors of building `-s` devices.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host side of a passthrough device.
    #[error("-s {slot}:{function},passthru: {source}")]
    Passthru {
        slot: u8,
        function: u8,
        #[source]
        source: prepare::Error,
    },
    /// The netlink socket for VF settings.
    #[error("passthru: {0}")]
    Netlink(#[source] crate::passthru::netlink::Error),
    /// VFIO setup.
    #[error("-s {slot}:{function},passthru: {source}")]
    Vfio {
        slot: u8,
        function: u8,
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
    /// The KVM VFIO pseudo-device.
    #[error("passthru: KVM VFIO device: {0}")]
    KvmVfio(#[source] kvm_ioctls::Error),
    /// A disk.
    #[error("-s {slot}:{function},virtio-blk: {source}")]
    Block {
        slot: u8,
        function: u8,
        #[source]
        source: devices::virtio::block::Error,
    },
    /// The virtio transport.
    #[error("-s {slot}:{function},virtio-blk: {source}")]
    Virtio {
        slot: u8,
        function: u8,
        #[source]
        source: devices::virtio::pci::Error,
    },
    /// Placing a function.
    #[error(transparent)]
    Pci(#[from] crate::pci::Error),
}

/// What the host side of every `passthru` slot holds until the VM ends.
pub struct PassthruHost {
    guards: Vec<(PciSlotConfig, PassthruGuard)>,
}

/// Runs the host-side checks and changes for every `passthru` slot.
pub fn prepare_passthru(cfg: &VmConfig) -> Result<PassthruHost, Error> {
    let wanted: Vec<_> = cfg
        .slots
        .iter()
        .filter(|s| matches!(s.device, DeviceConfig::Passthru(_)))
        .collect();
    if wanted.is_empty() {
        return Ok(PassthruHost { guards: Vec::new() });
    }
    let netlink = Rtnetlink::new().map_err(Error::Netlink)?;
    let host = Host {
        sysfs: Sysfs::host(),
        vf_control: &netlink,
        lock_dir: PathBuf::from(LOCK_DIR),
    };
    let mut guards = Vec::new();
    for s in wanted {
        let DeviceConfig::Passthru(p) = &s.device else {
            continue;
        };
        let place = GuestPlace {
            vm: &cfg.name,
            slot: s.slot,
            function: s.function,
        };
        let guard = prepare::prepare(p, place, &host).map_err(|source| Error::Passthru {
            slot: s.slot,
            function: s.function,
            source,
        })?;
        if let Some(mac) = guard.mac() {
            info!("{}: VF MAC {mac}", p.host);
        }
        guards.push((s.clone(), guard));
    }
    Ok(PassthruHost { guards })
}

/// The `virtio-blk` slots' images, opened and locked by [`open_disks`].
pub struct Disks {
    blocks: HashMap<(u8, u8), (Block, BlockHandler)>,
}

/// Opens and locks every `virtio-blk` image, before guest memory is
/// reserved, so a missing or locked image fails the run before anything
/// starts.
pub fn open_disks(cfg: &VmConfig) -> Result<Disks, Error> {
    let mut blocks = HashMap::new();
    for s in &cfg.slots {
        let DeviceConfig::VirtioBlk(b) = &s.device else {
            continue;
        };
        let (slot, function) = (s.slot, s.function);
        let opened = Block::new(BlockConfig {
            path: b.path.clone(),
            readonly: b.readonly,
            nocache: b.nocache,
            direct: b.direct,
            logical_sector: b.logical_sector,
            physical_sector: b.physical_sector,
            serial: b.serial.clone(),
        })
        .map_err(|source| Error::Block {
            slot,
            function,
            source,
        })?;
        blocks.insert((slot, function), opened);
    }
    Ok(Disks { blocks })
}

/// Devices the VM keeps alive besides those on its buses.
pub struct SlotDevices {
    /// Event-loop work (disk queues).
    pub subscribers: Vec<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
    /// The VFIO container, while any VF is passed through.
    pub vfio: Option<Arc<VfioContainer>>,
    /// Each disk's counters, named `blk@SLOT:FUNCTION`.
    pub disk_metrics: Vec<(String, Arc<BlockMetrics>)>,
}

/// Builds every `-s` function and places it on `pci`.
pub fn add_slot_devices(
    cfg: &VmConfig,
    vm: &Vm,
    passthru: &PassthruHost,
    mut disks: Disks,
    pci: &mut PciBuilder,
) -> Result<SlotDevices, Error> {
    let irq = KvmInterrupts(vm.router.clone());
    let mut out = SlotDevices {
        subscribers: Vec::new(),
        vfio: None,
        disk_metrics: Vec::new(),
    };
    if !cfg.slots.iter().any(|s| s.slot == 0 && s.function == 0) {
        // A PC without a host bridge at 00.0 confuses guests; bhyve users
        // add `-s 0,hostbridge`, we add it when they did not.
        pci.add(0, 0, Arc::new(Mutex::new(HostBridge::new())))?;
    }
    for s in &cfg.slots {
        let (slot, function) = (s.slot, s.function);
        let dev: SharedPciDevice = match &s.device {
            DeviceConfig::HostBridge => Arc::new(Mutex::new(HostBridge::new())),
            DeviceConfig::Lpc => Arc::new(Mutex::new(IsaBridge::new())),
            DeviceConfig::VirtioBlk(_) => {
                let Some((block, handler)) = disks.blocks.remove(&(slot, function)) else {
                    continue;
                };
                out.subscribers.push(Arc::new(Mutex::new(handler)));
                out.disk_metrics
                    .push((format!("blk@{slot}:{function}"), block.metrics()));
                let pci_dev = VirtioPciDevice::new(Box::new(block), vm.memory.clone(), &irq)
                    .map_err(|source| Error::Virtio {
                        slot,
                        function,
                        source,
                    })?;
                Arc::new(Mutex::new(pci_dev))
            }
            DeviceConfig::Passthru(_) => {
                let Some((_, guard)) = passthru.guards.iter().find(|(g, _)| g == s) else {
                    continue;
                };
                let container = match &out.vfio {
                    Some(c) => c.clone(),
                    None => vfio_container(vm)?,
                };
                let dev = VfioPciDevice::new(&guard.sysfs_path(), container.clone(), &irq)
                    .map_err(|source| Error::Vfio {
                        slot,
                        function,
                        source,
                    })?;
                if out.vfio.is_none() {
                    // The first device sets the container's IOMMU type;
                    // only then can guest RAM be mapped for DMA.
                    // SAFETY: guest RAM stays mapped (and locked) for as long
                    // as the container lives: both are dropped when the VM ends.
                    unsafe { container.vfio_map_guest_memory(vm.memory.as_ref()) }.map_err(
                        |source| Error::Container {
                            what: "DMA-map guest memory",
                            source,
                        },
                    )?;
                    out.vfio = Some(container);
                }
                Arc::new(Mutex::new(dev))
            }
        };
        pci.add(slot, function, dev)?;
    }
    Ok(out)
}

fn vfio_container(vm: &Vm) -> Result<Arc<VfioContainer>, Error> {
    let mut kvm_vfio = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
        fd: 0,
        flags: 0,
    };
    let fd = vm.fd.create_device(&mut kvm_vfio).map_err(Error::KvmVfio)?;
    let handle = Arc::new(VfioDeviceFd::new_from_kvm(fd));
    VfioContainer::new(Some(handle))
        .map(Arc::new)
        .map_err(|source| Error::Container {
            what: "open /dev/vfio/vfio",
            source,
        })
}
