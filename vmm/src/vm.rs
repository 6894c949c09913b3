//! A KVM VM with its platform: in-kernel irqchip and PIT, guest RAM slots,
//! the port-I/O and MMIO buses, COM1, the CMOS RTC, ACPI power, the ACPI
//! Generic Event Device, the ACPI PCI hotplug controller, the i8042 reset
//! line and the PCI configuration windows.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arch::layout;
use devices::acpi::ged::{Ged, GedRegister, GED_REGISTER_LEN};
use devices::acpi::pcihp::{PciHotplug, PciHotplugRegisters, PCIHP_REGISTERS_LEN};
use devices::bus::Bus;
use devices::cmos::{Cmos, CmosTimer, CMOS_LEN, CMOS_PORT, RTC_IRQ};
use devices::interrupt::IrqLine;
use devices::pci::{ConfigIo, ConfigMmio, PciRoot, CONFIG_IO_LEN};
use devices::power::{AcpiPower, I8042Reset, PowerEvent};
use devices::serial::{InputReady, Serial, COM1_IRQ, COM1_PORT, UART_LEN};
use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::bars::KvmBarMapper;
use crate::counters::ExitCounters;
use crate::exit::{ExitSignal, VmExit};
use crate::irq::GsiRouter;
use crate::slots::MemorySlots;

/// Errors of creating the VM and its platform devices.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM ioctl failed.
    #[error("KVM: {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A device could not be placed on a bus.
    #[error("{what}: {source}")]
    Bus {
        what: &'static str,
        #[source]
        source: devices::bus::Error,
    },
    /// An eventfd, irqfd or slot could not be set up.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn bus_err(what: &'static str) -> impl FnOnce(devices::bus::Error) -> Error {
    move |source| Error::Bus { what, source }
}

/// What building a PCI device needs of the VM (at boot or hot-added).
#[derive(Clone)]
pub struct DeviceContext {
    /// The KVM VM (its VFIO pseudo-device).
    pub fd: Arc<VmFd>,
    /// Guest RAM.
    pub memory: Arc<GuestMemoryMmap>,
    /// GSI routes and MSI vectors.
    pub router: Arc<GsiRouter>,
    /// Starts a disk's queue threads (in their sandbox).
    pub spawner: devices::Spawner,
}

/// The VM and what every part of it shares.
///
/// Dropped (after the vCPUs have stopped), it first removes every KVM
/// memory slot, then drops its fields in order: the buses with the devices
/// on them (a VF is reset and released when its VFIO device closes, its
/// BARs unmapped), and guest RAM last, so that no device can still reach it.
pub struct Vm {
    /// The KVM VM.
    pub fd: Arc<VmFd>,
    /// Port I/O bus.
    pub pio: Arc<Bus>,
    /// MMIO bus.
    pub mmio: Arc<Bus>,
    /// GSI routes and MSI vectors.
    pub router: Arc<GsiRouter>,
    /// KVM memory slots.
    pub slots: Arc<Mutex<MemorySlots>>,
    /// How the VM ends.
    pub exit: Arc<ExitSignal>,
    /// Userspace exit counters.
    pub counters: Arc<ExitCounters>,
    /// Guest RAM.
    pub memory: Arc<GuestMemoryMmap>,
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_all(&self.fd);
    }
}

impl Vm {
    /// Creates the KVM VM with its irqchip and PIT, before its RAM exists
    /// (passthrough devices open while RAM is reserved: they need it for
    /// their VFIO container).
    pub fn create(kvm: &Kvm) -> Result<Arc<VmFd>, Error> {
        let fd = Arc::new(kvm.create_vm().map_err(kvm_err("create VM"))?);
        fd.set_tss_address(layout::KVM_TSS_START.0 as usize)
            .map_err(kvm_err("set TSS address"))?;
        fd.set_identity_map_address(layout::KVM_IDENTITY_MAP_START.0)
            .map_err(kvm_err("set identity map address"))?;
        fd.create_irq_chip().map_err(kvm_err("create irqchip"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("create PIT"))?;
        Ok(fd)
    }

    /// The VM `fd` (from [`Vm::create`]) with `memory` as RAM.
    pub fn new(fd: Arc<VmFd>, memory: GuestMemoryMmap) -> Result<Self, Error> {
        let slots = Arc::new(Mutex::new(MemorySlots::default()));
        for region in memory.iter() {
            let host = region.as_ptr() as u64;
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            s.add(&fd, region.start_addr().0, region.len(), host)
                .map_err(io_err("register guest RAM"))?;
        }
        Ok(Vm {
            router: Arc::new(GsiRouter::new(fd.clone())),
            fd,
            memory: Arc::new(memory),
            pio: Arc::new(Bus::new()),
            mmio: Arc::new(Bus::new()),
            slots,
            exit: Arc::new(ExitSignal::new().map_err(io_err("exit eventfd"))?),
            counters: Arc::new(ExitCounters::default()),
        })
    }

    /// What a PCI device needs of this VM; `spawner` starts the disks'
    /// queue threads.
    pub fn device_context(&self, spawner: devices::Spawner) -> DeviceContext {
        DeviceContext {
            fd: self.fd.clone(),
            memory: self.memory.clone(),
            router: self.router.clone(),
            spawner,
        }
    }

    /// The BAR mapper for this VM's PCI devices.
    pub fn bar_mapper(&self) -> Arc<KvmBarMapper> {
        Arc::new(KvmBarMapper::new(
            self.fd.clone(),
            &self.pio,
            &self.mmio,
            self.slots.clone(),
        ))
    }

    /// Adds COM1 writing to `out`; returns it and the eventfd it signals
    /// when the guest has room for more input.
    pub fn add_com1(
        &self,
        out: Box<dyn Write + Send>,
    ) -> Result<(Arc<Mutex<Serial>>, EventFd), Error> {
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("COM1 eventfd"))?;
        self.fd
            .register_irqfd(&irq, COM1_IRQ)
            .map_err(kvm_err("COM1 irqfd"))?;
        let ready = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("COM1 eventfd"))?;
        let ready_clone = ready.try_clone().map_err(io_err("COM1 eventfd"))?;
        let serial = Arc::new(Mutex::new(Serial::new(
            IrqLine(irq),
            InputReady(ready_clone),
            out,
        )));
        self.pio
            .insert(serial.clone(), COM1_PORT, UART_LEN)
            .map_err(bus_err("COM1"))?;
        Ok((serial, ready))
    }

    /// Adds the CMOS RTC on IRQ 8; its timer goes on the event loop.
    pub fn add_rtc(&self) -> Result<CmosTimer, Error> {
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("RTC eventfd"))?;
        self.fd
            .register_irqfd(&irq, RTC_IRQ)
            .map_err(kvm_err("RTC irqfd"))?;
        let cmos = Arc::new(Mutex::new(
            Cmos::new(IrqLine(irq)).map_err(io_err("RTC timer"))?,
        ));
        self.pio
            .insert(cmos.clone(), CMOS_PORT, CMOS_LEN)
            .map_err(bus_err("CMOS RTC"))?;
        Ok(CmosTimer(cmos))
    }

    /// Adds the ACPI power register and the i8042 reset line.
    pub fn add_power(&self) -> Result<(), Error> {
        let handler = |exit: Arc<ExitSignal>| {
            Box::new(move |e: PowerEvent| {
                log::info!("guest requested {e:?}");
                exit.request(match e {
                    PowerEvent::PowerOff => VmExit::PowerOff,
                    PowerEvent::Reset => VmExit::Reset,
                })
            })
        };
        let acpi = AcpiPower::new(handler(self.exit.clone()));
        self.pio
            .insert(Arc::new(Mutex::new(acpi)), u64::from(layout::PM_PORT), 1)
            .map_err(bus_err("ACPI power register"))?;
        let i8042 = I8042Reset::new(handler(self.exit.clone()));
        self.pio
            .insert(
                Arc::new(Mutex::new(i8042)),
                u64::from(layout::I8042_COMMAND_PORT),
                1,
            )
            .map_err(bus_err("i8042"))
    }

    /// Adds the ACPI Generic Event Device: its status register on the MMIO
    /// bus and its interrupt line on [`layout::GED_IRQ`]. The VMM keeps the
    /// returned handle to raise events (power button, PCI slots).
    pub fn add_ged(&self) -> Result<Arc<Ged>, Error> {
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("GED eventfd"))?;
        self.fd
            .register_irqfd(&irq, layout::GED_IRQ)
            .map_err(kvm_err("GED irqfd"))?;
        let ged = Ged::new(IrqLine(irq));
        self.mmio
            .insert(
                Arc::new(Mutex::new(GedRegister(ged.clone()))),
                layout::GED_START.0,
                GED_REGISTER_LEN,
            )
            .map_err(bus_err("ACPI GED"))?;
        Ok(ged)
    }

    /// Adds the ACPI PCI hotplug controller's registers at
    /// [`layout::PCIHP_START`], with the slots of `present` (a bit per slot)
    /// holding devices.
    pub fn add_pci_hotplug(&self, present: u32) -> Result<Arc<PciHotplug>, Error> {
        let hotplug = PciHotplug::new(present).map_err(io_err("PCI hotplug eventfd"))?;
        self.mmio
            .insert(
                Arc::new(Mutex::new(PciHotplugRegisters(hotplug.clone()))),
                layout::PCIHP_START.0,
                PCIHP_REGISTERS_LEN,
            )
            .map_err(bus_err("PCI hotplug controller"))?;
        Ok(hotplug)
    }

    /// Puts bus 0's configuration windows (0xCF8 and ECAM) on the buses.
    pub fn add_pci_root(&self, root: Arc<PciRoot>) -> Result<(), Error> {
        self.pio
            .insert(
                Arc::new(Mutex::new(ConfigIo::new(root.clone()))),
                u64::from(layout::PCI_CONFIG_PORT),
                CONFIG_IO_LEN,
            )
            .map_err(bus_err("PCI config ports"))?;
        self.mmio
            .insert(
                Arc::new(Mutex::new(ConfigMmio::new(root))),
                layout::ECAM_START.0,
                ConfigMmio::LEN.min(layout::ECAM_SIZE),
            )
            .map_err(bus_err("PCI ECAM"))
    }
}
