//! ACPI tables for a hardware-reduced ACPI platform with one PCI Express
//! host bridge.
//!
//! Tables, all in `[ACPI_START, ACPI_END)` (the legacy BIOS area, where
//! Linux would also scan for the RSDP):
//!
//! - RSDP (revision 2) at [`ACPI_START`] -> XSDT -> FADT, MADT, MCFG;
//! - FADT (revision 6.5, 276 bytes): `HW_REDUCED_ACPI | RESET_REG_SUP`,
//!   reset register, sleep control and sleep status registers all the one
//!   byte I/O port `pm_port` (see [`crate::layout::PM_PORT`]), `X_DSDT`.
//!   No FACS: hardware-reduced platforms need none;
//! - DSDT: `\_SB.PCI0` (PNP0A08/PNP0A03, segment 0, bus 0, CF8 ports,
//!   32- and 64-bit MMIO windows), `\_SB.MBRD` (PNP0C02 reserving the
//!   ECAM, which Linux wants before trusting MCFG), `\_SB.COM1` (PNP0501)
//!   and `\_S5_` with SLP_TYP [`PM_S5_SLP_TYP`];
//! - MADT: LAPIC address, PCAT_COMPAT, one enabled Processor Local APIC per
//!   vCPU (APIC IDs from [`Topology::apic_id`]), the IOAPIC, IRQ0 -> GSI2
//!   override and LINT1 as NMI on all processors;
//! - MCFG: the ECAM of segment 0, buses 0..=[`ECAM_LAST_BUS`].

use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable, EISAName, Interrupt, Path, IO};
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
    ACPI_END, ACPI_START, COM1_IRQ, COM1_PORT, ECAM_LAST_BUS, IOAPIC_START, LAPIC_START,
    PCI_CONFIG_PORT, PCI_CONFIG_PORT_SIZE, PM_RESET_VALUE, PM_S5_SLP_TYP,
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

/// What the ACPI tables describe.
#[derive(Clone, Copy, Debug)]
pub struct AcpiConfig {
    /// Number of vCPUs (the first `num_cpus` of `topology`).
    pub num_cpus: u32,
    /// vCPU topology, for the APIC IDs.
    pub topology: Topology,
    /// ECAM base and size (1 MiB per bus).
    pub ecam: (GuestAddress, u64),
    /// PCI 32-bit MMIO window.
    pub mmio32: (GuestAddress, u64),
    /// PCI 64-bit MMIO window (omitted from `_CRS` if its size is 0).
    pub mmio64: (GuestAddress, u64),
    /// The ACPI power-management port (reset, sleep control and status).
    pub pm_port: u16,
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
    let mut pci_res: Vec<&dyn Aml> = vec![&bus, &cf8, &mem32];
    if let Some(mem64) = &mem64 {
        pci_res.push(mem64);
    }
    let pci_crs = aml::ResourceTemplate::new(pci_res);
    let mut body = Vec::new();
    aml::Device::new(
        Path::new("_SB_.PCI0"),
        vec![
            &aml::Name::new(Path::new("_HID"), &EISAName::new("PNP0A08")),
            &aml::Name::new(Path::new("_CID"), &EISAName::new("PNP0A03")),
            &aml::Name::new(Path::new("_ADR"), &aml::ZERO),
            &aml::Name::new(Path::new("_SEG"), &aml::ZERO),
            &aml::Name::new(Path::new("_UID"), &aml::ZERO),
            &aml::Name::new(Path::new("_BBN"), &aml::ZERO),
            &aml::Name::new(Path::new("_CRS"), &pci_crs),
        ],
    )
    .to_aml_bytes(&mut body);

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

    let com1_io = IO::new(COM1_PORT, COM1_PORT, 1, 8);
    let com1_irq = Interrupt::new(true, true, false, false, COM1_IRQ);
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    aml::Device::new(
        Path::new("_SB_.COM1"),
        vec![
            &aml::Name::new(Path::new("_HID"), &EISAName::new("PNP0501")),
            &aml::Name::new(Path::new("_UID"), &aml::ZERO),
            &aml::Name::new(Path::new("_CRS"), &com1_crs),
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
        mmio64_window, ECAM_SIZE, ECAM_START, GIB, MMIO32_SIZE, MMIO32_START, PM_PORT,
    };
    use vm_memory::GuestMemoryMmap;

    fn config(num_cpus: u32, topology: Topology) -> AcpiConfig {
        AcpiConfig {
            num_cpus,
            topology,
            ecam: (ECAM_START, ECAM_SIZE),
            mmio32: (MMIO32_START, MMIO32_SIZE),
            mmio64: mmio64_window(8 * GIB, 46),
            pm_port: PM_PORT,
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
        for name in [&b"PCI0"[..], b"_SEG", b"_BBN", b"_CID", b"MBRD", b"COM1"] {
            assert!(contains(aml, name), "{}", String::from_utf8_lossy(name));
        }
        // EISA IDs: PNP0A08, PNP0A03, PNP0C02, PNP0501.
        for id in [0x080a_d041u32, 0x030a_d041, 0x020c_d041, 0x0105_d041] {
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
        placer.place("A", vec![0; 0x1_0000]).unwrap();
        let err = placer.place("B", vec![0; 0x1_0001]).unwrap_err();
        assert!(matches!(err, Error::TooBig { end: 0x10_0001 }));
    }
}
