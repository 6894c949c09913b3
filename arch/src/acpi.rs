//! ACPI tables for a hardware-reduced ACPI platform with one PCI Express
//! host bridge.
//!
//! Tables, all in `[ACPI_START, ACPI_END)` (the legacy BIOS area, where
//! Linux would also scan for the RSDP; SMBIOS follows it):
//!
//! - RSDP (revision 2) at [`ACPI_START`] -> XSDT -> FADT, MADT, MCFG;
//! - FADT (revision 6.5, 276 bytes): `HW_REDUCED_ACPI | RESET_REG_SUP`,
//!   reset register, sleep control and sleep status registers all the one
//!   byte I/O port `pm_port` (see [`crate::layout::PM_PORT`]), `X_DSDT`.
//!   No FACS: hardware-reduced platforms need none;
//! - DSDT: `\_SB.PCI0` (PNP0A08/PNP0A03, segment 0, bus 0, CF8 ports,
//!   the I/O window and 32- and 64-bit MMIO windows, `_PRT` routing each
//!   slot's INTx pins to IOAPIC pins by [`pci_intx_gsi`]), `\_SB.MBRD`
//!   (PNP0C02 reserving the ECAM, which Linux wants before trusting MCFG),
//!   `\_SB.COM1` (PNP0501), `\_SB.RTC0` (PNP0B00, see [`rtc_device`]),
//!   `\_SB.GED0` (ACPI0013, see [`GedConfig`]), `\_SB.PWRB` (PNP0C0C),
//!   with PCI hotplug (see [`PciHotplugConfig`]) `\_SB.PHPR` and a device
//!   per hot-pluggable slot under `\_SB.PCI0`, and `\_S5_` with SLP_TYP
//!   [`PM_S5_SLP_TYP`];
//! - MADT: LAPIC address, PCAT_COMPAT, one enabled Processor Local APIC per
//!   vCPU (APIC IDs from [`Topology::apic_id`]), the IOAPIC, IRQ0 -> GSI2
//!   override and LINT1 as NMI on all processors;
//! - MCFG: the ECAM of segment 0, buses 0..=[`ECAM_LAST_BUS`].

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, EISAName, FieldAccessType, FieldEntry,
    FieldLockRule, FieldUpdateRule, Interrupt, OpRegionSpace, Path, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace as GasSpace, GAS};
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::cpuid::Topology;
use crate::layout::{
    pci_intx_gsi, ACPI_END, ACPI_START, COM1_IRQ, COM1_PORT, ECAM_LAST_BUS, IOAPIC_START,
    LAPIC_START, PCI_CONFIG_PORT, PCI_CONFIG_PORT_SIZE, PM_RESET_VALUE, PM_S5_SLP_TYP, RTC_IRQ,
    RTC_PORT, RTC_PORT_SIZE,
};

/// Errors of the ACPI table construction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tables do not fit the ACPI area.
    #[error("ACPI tables end at {end:#x}, beyond the ACPI area end {:#x}", ACPI_END.0)]
    TooBig {
        /// Where they would end.
        end: u64,
    },
    /// The configuration is inconsistent.
    #[error("invalid ACPI configuration: {0}")]
    InvalidConfig(&'static str),
    /// Writing a table to guest memory failed.
    #[error("cannot write ACPI table {table} at {addr:#x}: {source}")]
    GuestMemory {
        /// The table signature.
        table: &'static str,
        /// Where.
        addr: u64,
        /// The guest memory error.
        source: vm_memory::GuestMemoryError,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What `\_SB.GED0._EVT` does when a status bit is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GedAction {
    /// `Notify(\_SB.PWRB, 0x80)`: the power button was pressed.
    PowerButton,
    /// `\_SB.PHPR.PSCN()`: PCI slots changed; each slot to check or to
    /// eject is notified (needs [`AcpiConfig::pci_hotplug`]).
    PciSlots,
}

/// ACPI PCI hotplug on bus 0, as QEMU and Cloud Hypervisor do it.
///
/// `\_SB.PHPR` holds the controller's registers (`PCIU` slots up, `PCID`
/// slots down, `B0EJ` eject, `PRES` present; see `devices::acpi::pcihp`)
/// and the methods the slots call: `PCEJ(slot)` ejects, `PSTA(slot)` is a
/// slot's `_STA`, and `PSCN()` (the GED's action) runs `\_SB.PCI0.PCNT`,
/// which notifies each slot of `PCIU` with 1 (device check) and each of
/// `PCID` with 3 (eject request). Each slot is `\_SB.PCI0.Snnn` with
/// `_ADR`, `_SUN` (the slot number), `_STA` and `_EJ0`: what Linux's
/// acpiphp looks for.
#[derive(Clone, Debug)]
pub struct PciHotplugConfig {
    /// Guest address of the controller's four 32-bit registers.
    pub register: GuestAddress,
    /// The hot-pluggable slots (1..=31).
    pub slots: Vec<u8>,
}

/// The ACPI Generic Event Device: where its status register is, its
/// interrupt, and which status bit means what. `_EVT` reads the register
/// once (the read clears it) and runs the action of every bit set.
#[derive(Clone, Debug)]
pub struct GedConfig {
    /// Guest address of the 32-bit status register.
    pub register: GuestAddress,
    /// Its GSI (edge-triggered, active high).
    pub irq: u32,
    /// (status bit mask, action), one entry per event.
    pub events: Vec<(u32, GedAction)>,
}

/// What the ACPI tables describe.
#[derive(Clone, Debug)]
pub struct AcpiConfig {
    /// Number of vCPUs (the first `num_cpus` of `topology`).
    pub num_cpus: u32,
    /// vCPU topology, for the APIC IDs.
    pub topology: Topology,
    /// ECAM base and size (1 MiB per bus).
    pub ecam: (GuestAddress, u64),
    /// PCI I/O port window (base, size), for I/O BARs.
    pub io: (u16, u16),
    /// PCI 32-bit MMIO window.
    pub mmio32: (GuestAddress, u64),
    /// PCI 64-bit MMIO window (omitted from `_CRS` if its size is 0).
    pub mmio64: (GuestAddress, u64),
    /// The ACPI power-management port (reset, sleep control and status).
    pub pm_port: u16,
    /// The Generic Event Device.
    pub ged: GedConfig,
    /// PCI hotplug, if the VM has it.
    pub pci_hotplug: Option<PciHotplugConfig>,
}

const OEM_ID: [u8; 6] = *b"VFVM  ";
const OEM_REVISION: u32 = 1;
/// ISA IRQ 0 (PIT) is wired to IOAPIC pin 2.
const PIT_GSI: u32 = 2;
/// IOAPIC ID: 0, the reset value of the KVM in-kernel IOAPIC's ID register.
const IOAPIC_ID: u8 = 0;
/// IAPC_BOOT_ARCH: no VGA, OSPM must not enable PCIe ASPM. The 8042 flag
/// stays clear: only its reset command is emulated, so Linux must not
/// probe a keyboard controller.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 4);
/// MADT flags: PCAT_COMPAT (dual 8259s present; Linux masks them).
const MADT_PCAT_COMPAT: u32 = 1;
/// MADT revision of ACPI 6.3+.
const MADT_REVISION: u8 = 5;
/// DSDT revision 2 or higher: 64-bit AML integers.
const DSDT_REVISION: u8 = 6;
const SDT_HEADER_LEN: usize = 36;

fn aml_bytes(aml: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    bytes
}

fn oem_table_id(sig: &[u8; 4]) -> [u8; 8] {
    let mut id = *b"VFVM    ";
    id[4..].copy_from_slice(sig);
    id
}

/// The DSDT.
fn dsdt(cfg: &AcpiConfig) -> Result<Vec<u8>> {
    let (m32, m32_size) = cfg.mmio32;
    let m32_end = m32
        .0
        .checked_add(m32_size)
        .filter(|&end| m32_size > 0 && end <= 1 << 32)
        .ok_or(Error::InvalidConfig(
            "32-bit MMIO window empty or above 4 GiB",
        ))?;
    let (ecam, ecam_size) = cfg.ecam;
    let ecam_end = ecam
        .0
        .checked_add(ecam_size)
        .filter(|&end| ecam_size > 0 && end <= 1 << 32)
        .ok_or(Error::InvalidConfig("ECAM empty or above 4 GiB"))?;

    let bus = AddressSpace::new_bus_number(0u16, u16::from(ECAM_LAST_BUS));
    let cf8 = IO::new(
        PCI_CONFIG_PORT,
        PCI_CONFIG_PORT,
        1,
        PCI_CONFIG_PORT_SIZE as u8,
    );
    let mem32 = AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        m32.0 as u32,
        (m32_end - 1) as u32,
        None,
    );
    let io = pci_io_window(cfg.io)?;
    let (m64, m64_size) = cfg.mmio64;
    let mem64 = (m64_size > 0).then(|| {
        AddressSpace::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            m64.0,
            m64.0 + (m64_size - 1),
            None,
        )
    });
    let mut pci_res: Vec<&dyn Aml> = vec![&bus, &cf8, &io, &mem32];
    if let Some(mem64) = &mem64 {
        pci_res.push(mem64);
    }
    let pci_crs = aml::ResourceTemplate::new(pci_res);
    let mut body = Vec::new();
    let hid = aml::Name::new(Path::new("_HID"), &EISAName::new("PNP0A08"));
    let cid = aml::Name::new(Path::new("_CID"), &EISAName::new("PNP0A03"));
    let adr = aml::Name::new(Path::new("_ADR"), &aml::ZERO);
    let seg = aml::Name::new(Path::new("_SEG"), &aml::ZERO);
    let uid = aml::Name::new(Path::new("_UID"), &aml::ZERO);
    let bbn = aml::Name::new(Path::new("_BBN"), &aml::ZERO);
    let crs = aml::Name::new(Path::new("_CRS"), &pci_crs);
    let prt = aml::Name::new(Path::new("_PRT"), &pci_interrupt_routing());
    let slots = cfg.pci_hotplug.as_ref().map(pci_slots);
    let mut pci0: Vec<&dyn Aml> = vec![&hid, &cid, &adr, &seg, &uid, &bbn, &crs, &prt];
    if let Some(slots) = &slots {
        pci0.push(slots);
    }
    aml::Device::new(Path::new("_SB_.PCI0"), pci0).to_aml_bytes(&mut body);
    if let Some(hp) = &cfg.pci_hotplug {
        body.extend(pci_hotplug_controller(hp.register));
    }

    let ecam_res = aml::Memory32Fixed::new(false, ecam.0 as u32, (ecam_end - ecam.0) as u32);
    let mbrd_crs = aml::ResourceTemplate::new(vec![&ecam_res]);
    aml::Device::new(
        Path::new("_SB_.MBRD"),
        vec![
            &aml::Name::new(Path::new("_HID"), &EISAName::new("PNP0C02")),
            &aml::Name::new(Path::new("_UID"), &aml::ZERO),
            &aml::Name::new(Path::new("_CRS"), &mbrd_crs),
        ],
    )
    .to_aml_bytes(&mut body);

    isa_device(&mut body, "_SB_.COM1", "PNP0501", (COM1_PORT, 8), COM1_IRQ);
    rtc_device(&mut body);
    body.extend(ged(&cfg.ged));
    aml::Device::new(
        Path::new("_SB_.PWRB"),
        vec![
            &aml::Name::new(Path::new("_HID"), &EISAName::new("PNP0C0C")),
            &aml::Name::new(Path::new("_UID"), &aml::ZERO),
        ],
    )
    .to_aml_bytes(&mut body);

    aml::Name::new(Path::new("_S5_"), &aml::Package::new(vec![&PM_S5_SLP_TYP]))
        .to_aml_bytes(&mut body);

    let mut dsdt = Sdt::new(
        *b"DSDT",
        SDT_HEADER_LEN as u32,
        DSDT_REVISION,
        OEM_ID,
        oem_table_id(b"DSDT"),
        OEM_REVISION,
    );
    dsdt.append_slice(&body);
    Ok(dsdt.as_slice().to_vec())
}

/// Value of `Notify` for a button press (ACPI 6.5 table 5.193: "button
/// pressed" for PNP0C0C).
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// `\_SB.GED0`: `_HID` ACPI0013, its interrupt in `_CRS`, the status
/// register as field `GDAT`, and `_EVT`:
/// `Local0 = GDAT; If ((Local0 & bit) == bit) { action } ...`.
fn ged(cfg: &GedConfig) -> Vec<u8> {
    let irq = Interrupt::new(true, true, false, false, cfg.irq);
    let crs = aml::ResourceTemplate::new(vec![&irq]);
    let region = aml::OpRegion::new(
        Path::new("GDST"),
        OpRegionSpace::SystemMemory,
        &cfg.register.0,
        &4u32,
    );
    let field = aml::Field::new(
        Path::new("GDST"),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![FieldEntry::Named(*b"GDAT", 32)],
    );
    let gdat = Path::new("GDAT");
    let read = aml::Store::new(&aml::Local(0), &gdat);
    let pwrb = Path::new("\\_SB_.PWRB");
    let power_button = aml::Notify::new(&pwrb, &NOTIFY_BUTTON_PRESSED);
    let pci_scan = aml::MethodCall::new(Path::new("\\_SB_.PHPR.PSCN"), vec![]);
    let masks: Vec<aml::And> = cfg
        .events
        .iter()
        .map(|(bit, _)| aml::And::new(&aml::Local(1), &aml::Local(0), bit))
        .collect();
    let tests: Vec<aml::Equal> = cfg
        .events
        .iter()
        .map(|(bit, _)| aml::Equal::new(&aml::Local(1), bit))
        .collect();
    let ifs: Vec<aml::If> = cfg
        .events
        .iter()
        .zip(&tests)
        .map(|((_, action), test)| {
            let run: &dyn Aml = match action {
                GedAction::PowerButton => &power_button,
                GedAction::PciSlots => &pci_scan,
            };
            aml::If::new(test, vec![run])
        })
        .collect();
    let mut evt_body: Vec<&dyn Aml> = vec![&read];
    for (mask, test) in masks.iter().zip(&ifs) {
        evt_body.push(mask);
        evt_body.push(test);
    }
    let evt = aml::Method::new(Path::new("_EVT"), 1, true, evt_body);
    aml_bytes(&aml::Device::new(
        Path::new("_SB_.GED0"),
        vec![
            &aml::Name::new(Path::new("_HID"), &"ACPI0013"),
            &aml::Name::new(Path::new("_UID"), &aml::ZERO),
            &aml::Name::new(Path::new("_CRS"), &crs),
            &region,
            &field,
            &evt,
        ],
    ))
}

/// Length of the hotplug controller's registers.
const PCIHP_LEN: u32 = 16;
/// `Notify` values of ACPI 6.5 table 5.191: device check, eject request.
const NOTIFY_DEVICE_CHECK: u8 = 1;
const NOTIFY_EJECT_REQUEST: u8 = 3;

/// `\_SB.PHPR`, the hotplug controller (see [`PciHotplugConfig`]).
fn pci_hotplug_controller(register: GuestAddress) -> Vec<u8> {
    let region = aml::OpRegion::new(
        Path::new("PCST"),
        OpRegionSpace::SystemMemory,
        &register.0,
        &PCIHP_LEN,
    );
    let field = aml::Field::new(
        Path::new("PCST"),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![
            FieldEntry::Named(*b"PCIU", 32),
            FieldEntry::Named(*b"PCID", 32),
            FieldEntry::Named(*b"B0EJ", 32),
            FieldEntry::Named(*b"PRES", 32),
        ],
    );
    let lock = || aml::Acquire::new(Path::new("BLCK"), 0xffff);
    let unlock = || aml::Release::new(Path::new("BLCK"));
    // Local0 = 1 << slot.
    let slot_bit = aml::ShiftLeft::new(&aml::Local(0), &aml::ONE, &aml::Arg(0));
    // PCEJ(slot): B0EJ = 1 << slot.
    let (lock_ej, unlock_ej) = (lock(), unlock());
    let (b0ej, pres) = (Path::new("B0EJ"), Path::new("PRES"));
    let store_ej = aml::Store::new(&b0ej, &aml::Local(0));
    let pcej = aml::Method::new(
        Path::new("PCEJ"),
        1,
        true,
        vec![&slot_bit, &lock_ej, &store_ej, &unlock_ej],
    );
    // PSTA(slot): 0xf if PRES has the slot, else 0.
    let (lock_sta, unlock_sta) = (lock(), unlock());
    let present = aml::And::new(&aml::Local(1), &pres, &aml::Local(0));
    let is_present = aml::Equal::new(&aml::Local(1), &aml::Local(0));
    let all = 0xfu8;
    let ret_present = aml::Return::new(&all);
    let if_present = aml::If::new(&is_present, vec![&ret_present]);
    let ret_absent = aml::Return::new(&aml::ZERO);
    let psta = aml::Method::new(
        Path::new("PSTA"),
        1,
        true,
        vec![
            &slot_bit,
            &lock_sta,
            &present,
            &unlock_sta,
            &if_present,
            &ret_absent,
        ],
    );
    // PSCN(): the GED's action.
    let (lock_scn, unlock_scn) = (lock(), unlock());
    let pcnt = aml::MethodCall::new(Path::new("\\_SB_.PCI0.PCNT"), vec![]);
    let pscn = aml::Method::new(
        Path::new("PSCN"),
        0,
        true,
        vec![&lock_scn, &pcnt, &unlock_scn],
    );
    let mem = aml::Memory32Fixed::new(true, register.0 as u32, PCIHP_LEN);
    let crs = aml::ResourceTemplate::new(vec![&mem]);
    aml_bytes(&aml::Device::new(
        Path::new("_SB_.PHPR"),
        vec![
            &aml::Name::new(Path::new("_HID"), &EISAName::new("PNP0A06")),
            &aml::Name::new(Path::new("_UID"), &"PCI Hotplug Controller"),
            &aml::Name::new(Path::new("_STA"), &0x0bu8),
            &aml::Name::new(Path::new("_CRS"), &crs),
            &aml::Mutex::new(Path::new("BLCK"), 0),
            &region,
            &field,
            &pcej,
            &psta,
            &pscn,
        ],
    ))
}

/// The slot devices and `PCNT`/`DVNT` under `\_SB.PCI0`, as AML bytes.
struct PciSlots(Vec<u8>);

impl Aml for PciSlots {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

/// A slot's device name: `S` and its number in three digits.
fn slot_name(slot: u8) -> String {
    format!("S{slot:03}")
}

fn pci_slots(hp: &PciHotplugConfig) -> PciSlots {
    let mut bytes = Vec::new();
    for &slot in &hp.slots {
        let number = u32::from(slot);
        let adr = number << 16;
        let sta_call = aml::MethodCall::new(Path::new("\\_SB_.PHPR.PSTA"), vec![&number]);
        let sta_ret = aml::Return::new(&sta_call);
        let ej_call = aml::MethodCall::new(Path::new("\\_SB_.PHPR.PCEJ"), vec![&number]);
        aml::Device::new(
            Path::new(&slot_name(slot)),
            vec![
                &aml::Name::new(Path::new("_ADR"), &adr),
                &aml::Name::new(Path::new("_SUN"), &number),
                &aml::Method::new(Path::new("_STA"), 0, false, vec![&sta_ret]),
                &aml::Method::new(Path::new("_EJ0"), 1, false, vec![&ej_call]),
            ],
        )
        .to_aml_bytes(&mut bytes);
    }
    // DVNT(slots, value): Notify(Snnn, value) for each slot in the mask.
    let names: Vec<(u32, Path)> = hp
        .slots
        .iter()
        .map(|&s| (1u32 << s, Path::new(&slot_name(s))))
        .collect();
    let masks: Vec<aml::And> = names
        .iter()
        .map(|(mask, _)| aml::And::new(&aml::Local(0), &aml::Arg(0), mask))
        .collect();
    let tests: Vec<aml::Equal> = names
        .iter()
        .map(|(mask, _)| aml::Equal::new(&aml::Local(0), mask))
        .collect();
    let notifies: Vec<aml::Notify> = names
        .iter()
        .map(|(_, path)| aml::Notify::new(path, &aml::Arg(1)))
        .collect();
    let ifs: Vec<aml::If> = tests
        .iter()
        .zip(&notifies)
        .map(|(test, notify)| aml::If::new(test, vec![notify]))
        .collect();
    let mut dvnt: Vec<&dyn Aml> = Vec::new();
    for (mask, test) in masks.iter().zip(&ifs) {
        dvnt.push(mask);
        dvnt.push(test);
    }
    aml::Method::new(Path::new("DVNT"), 2, true, dvnt).to_aml_bytes(&mut bytes);
    let (pciu, pcid) = (Path::new("\\_SB_.PHPR.PCIU"), Path::new("\\_SB_.PHPR.PCID"));
    let up = aml::MethodCall::new(Path::new("DVNT"), vec![&pciu, &NOTIFY_DEVICE_CHECK]);
    let down = aml::MethodCall::new(Path::new("DVNT"), vec![&pcid, &NOTIFY_EJECT_REQUEST]);
    aml::Method::new(Path::new("PCNT"), 0, true, vec![&up, &down]).to_aml_bytes(&mut bytes);
    PciSlots(bytes)
}

/// `\_SB.RTC0`: the CMOS RTC (PNP0B00) with its ports and IRQ 8, an
/// edge-triggered, active-high GSI on the IOAPIC. Without it Linux's
/// `rtc_cmos` falls back to a platform device whose legacy IRQ a
/// hardware-reduced platform (no 8259) cannot give it, and fails.
fn rtc_device(body: &mut Vec<u8>) {
    isa_device(
        body,
        "_SB_.RTC0",
        "PNP0B00",
        (RTC_PORT, RTC_PORT_SIZE),
        RTC_IRQ,
    );
}

/// A legacy ISA device at `path` with `_HID` `hid`: its fixed I/O ports
/// `(base, count)` and one edge-triggered, active-high, exclusive GSI.
fn isa_device(body: &mut Vec<u8>, path: &str, hid: &str, ports: (u16, u16), irq: u32) {
    let io = IO::new(ports.0, ports.0, 1, ports.1 as u8);
    let irq = Interrupt::new(true, true, false, false, irq);
    let crs = aml::ResourceTemplate::new(vec![&io, &irq]);
    aml::Device::new(
        Path::new(path),
        vec![
            &aml::Name::new(Path::new("_HID"), &EISAName::new(hid)),
            &aml::Name::new(Path::new("_UID"), &aml::ZERO),
            &aml::Name::new(Path::new("_CRS"), &crs),
        ],
    )
    .to_aml_bytes(body);
}

/// The `WordIO` of the host bridge's I/O window, where I/O BARs go.
fn pci_io_window((base, size): (u16, u16)) -> Result<AddressSpace<u16>> {
    let last = base
        .checked_add(size.wrapping_sub(1))
        .filter(|_| size > 0)
        .ok_or(Error::InvalidConfig(
            "PCI I/O window empty or past port 0xffff",
        ))?;
    Ok(AddressSpace::new_io(base, last, None))
}

/// `_PRT` of bus 0: for each slot and INTx pin, a package
/// `{ address (slot << 16 | 0xffff), pin (0 = INTA#), 0, GSI }` (a GSI
/// source: the pins are the IOAPIC's, level-triggered and active low).
fn pci_interrupt_routing() -> aml::PackageBuilder {
    let mut table = aml::PackageBuilder::new();
    for slot in 0..32u8 {
        for pin in 0..4u8 {
            let address = u32::from(slot) << 16 | 0xffff;
            let gsi = pci_intx_gsi(slot, pin + 1);
            table.add_element(&aml::Package::new(vec![&address, &pin, &aml::ZERO, &gsi]));
        }
    }
    table
}

/// A one-byte I/O port register for a FADT GAS.
fn io_byte_register(port: u16) -> GAS {
    GAS::new(
        GasSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        port.into(),
    )
}

/// The FADT pointing at the DSDT at `dsdt_addr`.
fn fadt(cfg: &AcpiConfig, dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, oem_table_id(b"FACP"), OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .dsdt_64(dsdt_addr);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.reset_reg = io_byte_register(cfg.pm_port);
    fadt.reset_value = PM_RESET_VALUE;
    fadt.sleep_control_reg = io_byte_register(cfg.pm_port);
    fadt.sleep_status_reg = io_byte_register(cfg.pm_port);
    aml_bytes(&fadt.finalize())
}

/// The MADT.
fn madt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut madt = Sdt::new(
        *b"APIC",
        (SDT_HEADER_LEN + 8) as u32,
        MADT_REVISION,
        OEM_ID,
        oem_table_id(b"APIC"),
        OEM_REVISION,
    );
    madt.write_u32(SDT_HEADER_LEN, LAPIC_START.0 as u32);
    madt.write_u32(SDT_HEADER_LEN + 4, MADT_PCAT_COMPAT);

    for cpu in 0..cfg.num_cpus {
        // Type 0, Processor Local APIC: UID, APIC ID, flags = Enabled.
        let apic_id = cfg.topology.apic_id(cpu) as u8;
        let mut lapic = vec![0, 8, cpu as u8, apic_id];
        lapic.extend_from_slice(&1u32.to_le_bytes());
        madt.append_slice(&lapic);
    }
    // Type 1, I/O APIC: ID, reserved, address, GSI base.
    let mut ioapic = vec![1, 12, IOAPIC_ID, 0];
    ioapic.extend_from_slice(&(IOAPIC_START.0 as u32).to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes());
    madt.append_slice(&ioapic);
    // Type 2, Interrupt Source Override: bus ISA, IRQ 0 -> GSI 2, flags
    // conforming (edge, active high for ISA).
    let mut iso = vec![2, 10, 0, 0];
    iso.extend_from_slice(&PIT_GSI.to_le_bytes());
    iso.extend_from_slice(&0u16.to_le_bytes());
    madt.append_slice(&iso);
    // Type 4, Local APIC NMI: all processors (0xff), flags conforming, LINT1.
    madt.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    madt.as_slice().to_vec()
}

/// The MCFG.
fn mcfg(cfg: &AcpiConfig) -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, oem_table_id(b"MCFG"), OEM_REVISION);
    mcfg.add_ecam(cfg.ecam.0 .0, 0, 0, ECAM_LAST_BUS);
    aml_bytes(&mcfg)
}

/// Places tables one after the other, 16-byte aligned, from [`ACPI_START`].
struct Placer {
    tables: Vec<(&'static str, GuestAddress, Vec<u8>)>,
    next: u64,
}

impl Placer {
    fn place(&mut self, name: &'static str, bytes: Vec<u8>) -> Result<GuestAddress> {
        let addr = GuestAddress(self.next);
        let end = self.next + bytes.len() as u64;
        if end > ACPI_END.0 {
            return Err(Error::TooBig { end });
        }
        self.next = end.next_multiple_of(16);
        self.tables.push((name, addr, bytes));
        Ok(addr)
    }
}

fn validate(cfg: &AcpiConfig) -> Result<()> {
    cfg.topology
        .validate()
        .map_err(|_| Error::InvalidConfig("invalid topology"))?;
    if cfg.num_cpus == 0 || cfg.num_cpus > cfg.topology.num_cpus() {
        return Err(Error::InvalidConfig(
            "vCPU count is 0 or exceeds the topology",
        ));
    }
    if cfg.ecam.1 != (u64::from(ECAM_LAST_BUS) + 1) << 20 {
        return Err(Error::InvalidConfig(
            "ECAM size does not match the bus range",
        ));
    }
    if let Some(hp) = &cfg.pci_hotplug {
        if hp.slots.iter().any(|&s| !(1..32).contains(&s)) {
            return Err(Error::InvalidConfig("hot-pluggable slots are 1..=31"));
        }
        let pci_slots = cfg
            .ged
            .events
            .iter()
            .any(|(_, a)| *a == GedAction::PciSlots);
        if !pci_slots {
            return Err(Error::InvalidConfig(
                "PCI hotplug needs a GED event for PCI slots",
            ));
        }
    }
    Ok(())
}

/// Builds all tables and their addresses, without touching guest memory.
fn build_tables(cfg: &AcpiConfig) -> Result<Vec<(&'static str, GuestAddress, Vec<u8>)>> {
    validate(cfg)?;
    let mut placer = Placer {
        tables: Vec::new(),
        next: ACPI_START.0,
    };
    // The RSDP goes first, at the 16-byte aligned ACPI_START; its bytes are
    // filled in once the XSDT address is known.
    let rsdp_len = Rsdp::len();
    let rsdp_addr = placer.place("RSDP", vec![0; rsdp_len])?;
    let dsdt_addr = placer.place("DSDT", dsdt(cfg)?)?;
    let fadt_addr = placer.place("FACP", fadt(cfg, dsdt_addr.0))?;
    let madt_addr = placer.place("APIC", madt(cfg))?;
    let mcfg_addr = placer.place("MCFG", mcfg(cfg))?;

    let mut xsdt = XSDT::new(OEM_ID, oem_table_id(b"XSDT"), OEM_REVISION);
    for addr in [fadt_addr, madt_addr, mcfg_addr] {
        xsdt.add_entry(addr.0);
    }
    let xsdt_addr = placer.place("XSDT", aml_bytes(&xsdt))?;

    let rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr.0));
    placer.tables[0] = ("RSDP", rsdp_addr, rsdp);
    Ok(placer.tables)
}

/// Writes the ACPI tables for `cfg` to `mem` and returns the RSDP address
/// (for `boot_params.acpi_rsdp_addr`).
pub fn create_acpi_tables<M: GuestMemoryBackend>(
    mem: &M,
    cfg: &AcpiConfig,
) -> Result<GuestAddress> {
    let tables = build_tables(cfg)?;
    for (table, addr, bytes) in &tables {
        mem.write_slice(bytes, *addr)
            .map_err(|source| Error::GuestMemory {
                table,
                addr: addr.0,
                source,
            })?;
    }
    Ok(tables[0].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{
        mmio64_window, ECAM_SIZE, ECAM_START, GED_IRQ, GED_START, GIB, MMIO32_SIZE, MMIO32_START,
        PCIHP_START, PCI_IO_SIZE, PCI_IO_START, PM_PORT,
    };
    use vm_memory::GuestMemoryMmap;

    fn config(num_cpus: u32, topology: Topology) -> AcpiConfig {
        AcpiConfig {
            num_cpus,
            topology,
            ecam: (ECAM_START, ECAM_SIZE),
            io: (PCI_IO_START, PCI_IO_SIZE),
            mmio32: (MMIO32_START, MMIO32_SIZE),
            mmio64: mmio64_window(8 * GIB, 46),
            pm_port: PM_PORT,
            ged: GedConfig {
                register: GED_START,
                irq: GED_IRQ,
                events: vec![(1, GedAction::PowerButton)],
            },
            pci_hotplug: None,
        }
    }

    fn flat(cpus: u8) -> Topology {
        Topology {
            threads: 1,
            cores: cpus,
            sockets: 1,
        }
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    /// Reads the table at `addr` using its length field and checks its
    /// signature and checksum.
    fn table(mem: &GuestMemoryMmap, addr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let header = read(mem, addr, SDT_HEADER_LEN);
        assert_eq!(&header[0..4], sig);
        let bytes = read(mem, addr, u32_at(&header, 4) as usize);
        assert_eq!(sum(&bytes), 0, "{} checksum", String::from_utf8_lossy(sig));
        assert!(addr + bytes.len() as u64 <= ACPI_END.0);
        bytes
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// Creates the tables and returns (FADT, DSDT, MADT, MCFG) from
    /// following RSDP -> XSDT -> FADT -> DSDT.
    fn walk(cfg: &AcpiConfig) -> [Vec<u8>; 4] {
        let mem = mem();
        let rsdp_addr = create_acpi_tables(&mem, cfg).unwrap();
        assert_eq!(rsdp_addr, ACPI_START);
        let rsdp = read(&mem, rsdp_addr.0, 36);
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[0..20]), 0, "RSDP checksum");
        assert_eq!(sum(&rsdp), 0, "RSDP extended checksum");
        assert_eq!(rsdp[15], 2, "revision");
        assert_eq!(u32_at(&rsdp, 20), 36, "length");

        let xsdt = table(&mem, u64_at(&rsdp, 24), b"XSDT");
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(entries.len(), 3);
        let fadt = table(&mem, entries[0], b"FACP");
        let madt = table(&mem, entries[1], b"APIC");
        let mcfg = table(&mem, entries[2], b"MCFG");
        let dsdt = table(&mem, u64_at(&fadt, 140), b"DSDT");
        [fadt, dsdt, madt, mcfg]
    }

    #[test]
    fn fadt_fields_at_spec_offsets() {
        let [fadt, ..] = walk(&config(2, flat(2)));
        assert_eq!(fadt.len(), 276);
        assert_eq!(fadt[8], 6, "major revision");
        assert_eq!(fadt[131], 5, "minor revision");
        assert_eq!(u32_at(&fadt, 36), 0, "no FACS");
        assert_eq!(u32_at(&fadt, 40), 0, "32-bit DSDT unused");
        assert_eq!(u64_at(&fadt, 132), 0, "no X_FACS");
        let flags = u32_at(&fadt, 112);
        assert_eq!(
            flags,
            (1 << 20) | (1 << 10),
            "HW_REDUCED_ACPI | RESET_REG_SUP"
        );
        assert_eq!(u16::from_le_bytes([fadt[109], fadt[110]]), 0x14);
        let port_gas = [1u8, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0];
        assert_eq!(&fadt[116..128], &port_gas, "RESET_REG");
        assert_eq!(fadt[128], 1, "RESET_VALUE");
        assert_eq!(&fadt[244..256], &port_gas, "SLEEP_CONTROL_REG");
        assert_eq!(&fadt[256..268], &port_gas, "SLEEP_STATUS_REG");
        // Hardware-reduced: no PM1/GPE/timer blocks.
        assert!(fadt[56..88].iter().all(|&b| b == 0));
        assert!(fadt[148..244].iter().all(|&b| b == 0));
    }

    #[test]
    fn madt_entries() {
        let topo = Topology {
            threads: 2,
            cores: 3,
            sockets: 2,
        };
        let [_, _, madt, _] = walk(&config(8, topo));
        assert_eq!(madt[8], MADT_REVISION);
        assert_eq!(u32_at(&madt, 36), 0xfee0_0000);
        assert_eq!(u32_at(&madt, 40), 1, "PCAT_COMPAT");
        let mut off = 44;
        let mut lapics = Vec::new();
        let mut others = Vec::new();
        while off < madt.len() {
            let (kind, len) = (madt[off], madt[off + 1] as usize);
            let entry = &madt[off..off + len];
            if kind == 0 {
                assert_eq!(len, 8);
                assert_eq!(u32_at(entry, 4), 1, "enabled");
                lapics.push((entry[2], entry[3]));
            } else {
                others.push(entry.to_vec());
            }
            off += len;
        }
        assert_eq!(off, madt.len());
        assert_eq!(
            lapics,
            vec![
                (0, 0),
                (1, 1),
                (2, 2),
                (3, 3),
                (4, 4),
                (5, 5),
                (6, 8),
                (7, 9)
            ]
        );
        assert_eq!(
            others,
            vec![
                vec![1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0],
                vec![2, 10, 0, 0, 2, 0, 0, 0, 0, 0],
                vec![4, 6, 0xff, 0, 0, 1],
            ]
        );
    }

    #[test]
    fn mcfg_entry() {
        let [_, _, _, mcfg] = walk(&config(1, flat(1)));
        assert_eq!(mcfg.len(), 36 + 8 + 16);
        assert_eq!(u64_at(&mcfg, 44), 0xe000_0000);
        assert_eq!(&mcfg[52..56], &[0, 0, 0, 0], "segment 0, buses 0..0");
    }

    /// `OperationRegion(NAME, SystemMemory, address, len)` as AML (a
    /// DWord address, a byte length).
    fn memory_region(name: &[u8; 4], address: u32, len: u8) -> Vec<u8> {
        let mut aml = vec![0x5b, 0x80];
        aml.extend_from_slice(name);
        aml.extend_from_slice(&[0, 0x0c]);
        aml.extend_from_slice(&address.to_le_bytes());
        aml.extend_from_slice(&[0x0a, len]);
        aml
    }

    /// Whether `needle` occurs in `haystack`.
    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn dsdt_contents() {
        let cfg = config(1, flat(1));
        let [_, dsdt, ..] = walk(&cfg);
        assert_eq!(dsdt[8], DSDT_REVISION);
        let aml = &dsdt[36..];
        for name in [
            &b"PCI0"[..],
            b"_SEG",
            b"_BBN",
            b"_CID",
            b"MBRD",
            b"COM1",
            b"RTC0",
        ] {
            assert!(contains(aml, name), "{}", String::from_utf8_lossy(name));
        }
        // EISA IDs: PNP0A08, PNP0A03, PNP0C02, PNP0501, PNP0B00.
        for id in [
            0x080a_d041u32,
            0x030a_d041,
            0x020c_d041,
            0x0105_d041,
            0x000b_d041,
        ] {
            assert!(contains(aml, &id.to_le_bytes()), "{id:#x}");
        }
        // Name(_S5_, Package(1) { 5 }).
        assert!(contains(
            aml,
            &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x04, 0x01, 0x0a, 0x05]
        ));
        // IO(Decode16, 0xcf8, 0xcf8, 1, 8) and IO(Decode16, 0x3f8, 0x3f8, 1, 8).
        assert!(contains(aml, &[0x47, 1, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8]));
        assert!(contains(aml, &[0x47, 1, 0xf8, 0x03, 0xf8, 0x03, 1, 8]));
        // Extended IRQ 4, consumer, edge, active high, exclusive.
        assert!(contains(aml, &[0x89, 6, 0, 0x03, 1, 4, 0, 0, 0]));
        // The RTC: IO(Decode16, 0x70, 0x70, 1, 2) and extended IRQ 8.
        assert!(contains(aml, &[0x47, 1, 0x70, 0, 0x70, 0, 1, 2]));
        assert!(contains(aml, &[0x89, 6, 0, 0x03, 1, 8, 0, 0, 0]));
        // DWordMemory min/max of the 32-bit window, QWordMemory of the 64-bit one.
        let mut dword = 0xc000_0000u32.to_le_bytes().to_vec();
        dword.extend_from_slice(&0xdfff_ffffu32.to_le_bytes());
        assert!(contains(aml, &dword));
        let (m64, m64_size) = cfg.mmio64;
        let mut qword = m64.0.to_le_bytes().to_vec();
        qword.extend_from_slice(&(m64.0 + m64_size - 1).to_le_bytes());
        assert!(contains(aml, &qword));
        // Memory32Fixed for the ECAM in MBRD.
        let mut ecam = vec![0x86, 9, 0, 0];
        ecam.extend_from_slice(&0xe000_0000u32.to_le_bytes());
        ecam.extend_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(contains(aml, &ecam));
    }

    #[test]
    fn ged_and_power_button() {
        let mut cfg = config(1, flat(1));
        cfg.ged.events.push((4, GedAction::PowerButton));
        let [_, dsdt, ..] = walk(&cfg);
        let aml = &dsdt[36..];
        for name in [&b"GED0"[..], b"_EVT", b"GDST", b"GDAT", b"PWRB"] {
            assert!(contains(aml, name), "{}", String::from_utf8_lossy(name));
        }
        // Name(_HID, "ACPI0013") and EISAID("PNP0C0C").
        assert!(contains(aml, b"\x08_HID\x0dACPI0013\x00"));
        assert!(contains(aml, &0x0c0c_d041u32.to_le_bytes()));
        // Extended IRQ 9, consumer, edge, active high, exclusive.
        assert!(contains(aml, &[0x89, 6, 0, 0x03, 1, 9, 0, 0, 0]));
        assert!(contains(aml, &memory_region(b"GDST", 0xfeb0_0000, 4)));
        // _EVT: one argument, serialized.
        assert!(contains(aml, b"_EVT\x09"));
        // Local0 = GDAT; per event: And(Local0, bit, Local1),
        // If (LEqual(Local1, bit)) { Notify(\_SB.PWRB, 0x80) }.
        assert!(contains(aml, b"\x70GDAT\x60"));
        let notify = b"\x86\\\x2e_SB_PWRB\x0a\x80";
        for bit in [1u8, 4] {
            let bit_aml: &[u8] = if bit == 1 { &[0x01] } else { &[0x0a, 4] };
            let mut and = vec![0x7b, 0x60];
            and.extend_from_slice(bit_aml);
            and.push(0x61);
            assert!(contains(aml, &and), "And(Local0, {bit}, Local1)");
            let mut test = vec![0x93, 0x61];
            test.extend_from_slice(bit_aml);
            test.extend_from_slice(notify);
            assert!(contains(aml, &test), "If (Local1 == {bit}) Notify");
        }
    }

    #[test]
    fn pci_hotplug_slots_and_controller() {
        let mut cfg = config(1, flat(1));
        assert!(
            !contains(&walk(&cfg)[1], b"PHPR"),
            "no hotplug: no controller"
        );
        cfg.ged.events.push((2, GedAction::PciSlots));
        cfg.pci_hotplug = Some(PciHotplugConfig {
            register: PCIHP_START,
            slots: vec![5, 6, 31],
        });
        let [_, dsdt, ..] = walk(&cfg);
        let aml = &dsdt[36..];
        for name in [
            &b"PHPR"[..],
            b"PCST",
            b"PCIU",
            b"PCID",
            b"B0EJ",
            b"PRES",
            b"BLCK",
            b"PCEJ",
            b"PSTA",
            b"PSCN",
            b"PCNT",
            b"DVNT",
            b"S005",
            b"S006",
            b"S031",
            b"_EJ0",
            b"_SUN",
        ] {
            assert!(contains(aml, name), "{}", String::from_utf8_lossy(name));
        }
        assert!(!contains(aml, b"S007"), "only the slots asked for");
        assert!(contains(aml, &memory_region(b"PCST", 0xfeb0_1000, 16)));
        // Slot 6: Name(_ADR, 0x60000), Name(_SUN, 6).
        assert!(contains(aml, b"\x08_ADR\x0c\x00\x00\x06\x00"));
        assert!(contains(aml, b"\x08_SUN\x0a\x06"));
        // _EJ0 calls \_SB.PHPR.PCEJ(6): one argument, not serialized.
        assert!(contains(aml, b"_EJ0\x01\\/\x03_SB_PHPRPCEJ\x0a\x06"));
        // _STA returns \_SB.PHPR.PSTA(6).
        assert!(contains(aml, b"_STA\x00\xa4\\/\x03_SB_PHPRPSTA\x0a\x06"));
        // DVNT: And(Arg0, 1 << 6, Local0), If (Local0 == 1 << 6) Notify(S006, Arg1).
        assert!(contains(aml, b"\x7b\x68\x0a\x40\x60"));
        assert!(contains(aml, b"\xa0\x0b\x93\x60\x0a\x40\x86S006\x69"));
        // PCNT: DVNT(PCIU, 1), DVNT(PCID, 3).
        assert!(contains(aml, b"DVNT\\/\x03_SB_PHPRPCIU\x01"));
        assert!(contains(aml, b"DVNT\\/\x03_SB_PHPRPCID\x0a\x03"));
        // The GED's _EVT calls \_SB.PHPR.PSCN for bit 2.
        assert!(contains(aml, b"\\/\x03_SB_PHPRPSCN"));
    }

    #[test]
    fn pci_hotplug_needs_its_ged_event_and_real_slots() {
        let mut cfg = config(1, flat(1));
        cfg.pci_hotplug = Some(PciHotplugConfig {
            register: PCIHP_START,
            slots: vec![6],
        });
        assert!(matches!(build_tables(&cfg), Err(Error::InvalidConfig(_))));
        cfg.ged.events.push((2, GedAction::PciSlots));
        assert!(build_tables(&cfg).is_ok());
        cfg.pci_hotplug.as_mut().unwrap().slots = vec![0];
        assert!(matches!(build_tables(&cfg), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn dsdt_has_the_io_window_and_intx_routing() {
        let [_, dsdt, ..] = walk(&config(1, flat(1)));
        let aml = &dsdt[36..];
        // WordIO 0xc000..0xffff: granularity 0, min, max, translation 0, length.
        assert!(contains(
            aml,
            &[0, 0, 0x00, 0xc0, 0xff, 0xff, 0, 0, 0x00, 0x40]
        ));
        assert!(contains(aml, b"_PRT"));
        // Slot 5 INTA#: Package(4) { 0x5ffff, Zero, Zero, 21 }.
        assert!(contains(
            aml,
            &[0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x05, 0x00, 0x00, 0x00, 0x0a, 21]
        ));
        let mut cfg = config(1, flat(1));
        cfg.io = (0xc000, 0);
        assert!(matches!(build_tables(&cfg), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn no_mmio64_window() {
        let mut cfg = config(1, flat(1));
        cfg.mmio64 = (GuestAddress(64 * GIB), 0);
        let [_, dsdt, ..] = walk(&cfg);
        assert!(!contains(&dsdt, &[0x8a, 0x2b, 0]), "no QWordMemory");
    }

    #[test]
    fn max_cpus_fit() {
        let cfg = config(254, flat(254));
        let tables = build_tables(&cfg).unwrap();
        let (_, addr, bytes) = tables.last().unwrap();
        assert!(addr.0 + bytes.len() as u64 <= ACPI_END.0);
        walk(&cfg);
    }

    #[test]
    fn invalid_configs() {
        assert!(matches!(
            build_tables(&config(0, flat(1))),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            build_tables(&config(3, flat(2))),
            Err(Error::InvalidConfig(_))
        ));
        let mut cfg = config(1, flat(1));
        cfg.mmio32 = (GuestAddress(0xf000_0000), 0x2000_0000);
        assert!(matches!(build_tables(&cfg), Err(Error::InvalidConfig(_))));
        let mut cfg = config(1, flat(1));
        cfg.ecam.1 = 2 * ECAM_SIZE;
        assert!(matches!(build_tables(&cfg), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn too_big_is_an_error() {
        let mut placer = Placer {
            tables: Vec::new(),
            next: ACPI_START.0,
        };
        placer.place("A", vec![0; 0x8000]).unwrap();
        let err = placer.place("B", vec![0; 0x8001]).unwrap_err();
        assert!(matches!(err, Error::TooBig { end: 0xf_0001 }));
    }
}
