//! SMBIOS 3.0 tables: what `dmidecode`, `/sys/class/dmi/id` and
//! `/sys/firmware/dmi` show the guest.
//!
//! Without firmware, Linux finds the tables by scanning `0xF0000..0x100000`
//! for the 64-bit entry point (`_SM3_`) on a 16-byte boundary, so the entry
//! point sits at [`SMBIOS_START`] and the structure table right after it,
//! below the reset stub ([`SMBIOS_END`]). E820 reserves the area.
//!
//! Structures, in order (handles count up from 0):
//!
//! | type | what | from |
//! |---|---|---|
//! | 0 | BIOS: vendor "vfvm", version | [`SmbiosConfig::version`] |
//! | 1 | System: "vfvm", product "vfvm", version, serial, UUID, family | [`SmbiosConfig::uuid`], [`SmbiosConfig::serial`] |
//! | 3 | Chassis: type "Other" | |
//! | 4 | Processor, one per socket: cores and threads | [`SmbiosConfig::topology`] |
//! | 11 | OEM strings (only if there are any) | [`SmbiosConfig::oem_strings`] |
//! | 16 | Physical memory array | [`SmbiosConfig::mem_size`] |
//! | 17 | Memory device: all of guest RAM | |
//! | 19 | Memory array mapped address, one per RAM range | [`crate::layout::ram_ranges`] |
//! | 32 | System boot: no errors | |
//! | 127 | End of table | |
//!
//! Each structure is its formatted area (the `length` byte counts it) and a
//! string set: NUL-terminated strings, numbered from 1, ending in an extra
//! NUL (two NULs when there are none). A string field of 0 means none.

use vm_memory::{Bytes, GuestMemoryBackend};

use crate::cpuid::Topology;
use crate::layout::{ram_ranges, SMBIOS_END, SMBIOS_START};

/// Errors of building the tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string has a NUL byte or is empty (SMBIOS cannot represent either).
    #[error("SMBIOS string {0:?} is empty or contains a NUL byte")]
    BadString(String),
    /// More strings in one structure than its one-byte string numbers allow.
    #[error("{count} SMBIOS strings in one structure (at most 255)")]
    TooManyStrings {
        /// How many were given.
        count: usize,
    },
    /// The tables do not fit below the reset vector.
    #[error(
        "SMBIOS tables are {size} bytes, {max} fit between {:#x} and {:#x} (shorten the --oem-string values)",
        SMBIOS_START.0,
        SMBIOS_END.0
    )]
    TooBig {
        /// Entry point and structures.
        size: usize,
        /// Room there is.
        max: usize,
    },
    /// Writing the tables to guest memory failed.
    #[error("cannot write the SMBIOS tables at {start:#x}: {0}", start = SMBIOS_START.0)]
    GuestMemory(#[source] vm_memory::GuestMemoryError),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What the tables describe.
#[derive(Clone, Copy, Debug)]
pub struct SmbiosConfig<'a> {
    /// vfvm's version: the BIOS version and the system version.
    pub version: &'a str,
    /// The system UUID in RFC 4122 byte order (as printed, big-endian).
    pub uuid: [u8; 16],
    /// The system serial number.
    pub serial: &'a str,
    /// vCPU topology; every socket is fully populated.
    pub topology: Topology,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Type 11 strings, in order.
    pub oem_strings: &'a [String],
}

const VENDOR: &str = "vfvm";
const PRODUCT: &str = "vfvm";
const FAMILY: &str = "Virtual Machine";
/// Major, minor, docrev of the SMBIOS version implemented.
const SMBIOS_VERSION: [u8; 3] = [3, 0, 0];
/// Length of the SMBIOS 3.0 (64-bit) entry point.
const ENTRY_POINT_LEN: usize = 0x18;
/// Entry point revision 1: the SMBIOS 3.0 format.
const ENTRY_POINT_REVISION: u8 = 1;

const TYPE_BIOS: u8 = 0;
const TYPE_SYSTEM: u8 = 1;
const TYPE_CHASSIS: u8 = 3;
const TYPE_PROCESSOR: u8 = 4;
const TYPE_OEM_STRINGS: u8 = 11;
const TYPE_MEMORY_ARRAY: u8 = 16;
const TYPE_MEMORY_DEVICE: u8 = 17;
const TYPE_MEMORY_ARRAY_MAPPED: u8 = 19;
const TYPE_SYSTEM_BOOT: u8 = 32;
const TYPE_END: u8 = 127;

/// A handle meaning "no structure" (error information: not provided).
const HANDLE_NOT_PROVIDED: u16 = 0xfffe;
/// A handle meaning "no structure" (caches: none described).
const HANDLE_NONE: u16 = 0xffff;
/// Byte or word value "unknown/not supported" in several fields.
const UNKNOWN_U8: u8 = 0xff;

/// One structure: formatted area and strings.
struct Structure {
    area: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    /// A structure of `kind` with `handle`; `len` is its formatted length.
    fn new(kind: u8, len: u8, handle: u16) -> Self {
        let mut area = vec![0; usize::from(len)];
        area[0] = kind;
        area[1] = len;
        area[2..4].copy_from_slice(&handle.to_le_bytes());
        Structure {
            area,
            strings: Vec::new(),
        }
    }

    fn u8(&mut self, off: usize, v: u8) -> &mut Self {
        self.area[off] = v;
        self
    }

    fn u16(&mut self, off: usize, v: u16) -> &mut Self {
        self.area[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.area[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.area[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(&mut self, off: usize, v: &[u8]) -> &mut Self {
        self.area[off..off + v.len()].copy_from_slice(v);
        self
    }

    /// Adds `s` to the string set and stores its number at `off`.
    fn string(&mut self, off: usize, s: &str) -> &mut Self {
        self.strings.push(s.to_string());
        // Numbers past 255 are refused by `encode`.
        self.area[off] = u8::try_from(self.strings.len()).unwrap_or(0);
        self
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.strings.len() > 255 {
            return Err(Error::TooManyStrings {
                count: self.strings.len(),
            });
        }
        out.extend_from_slice(&self.area);
        for s in &self.strings {
            if s.is_empty() || s.contains('\0') {
                return Err(Error::BadString(s.clone()));
            }
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        if self.strings.is_empty() {
            out.push(0);
        }
        out.push(0);
        Ok(())
    }
}

/// The SMBIOS UUID encoding of an RFC 4122 UUID: since SMBIOS 2.6 the
/// first three fields are little-endian.
fn smbios_uuid(rfc: [u8; 16]) -> [u8; 16] {
    let mut u = rfc;
    u[0..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    u
}

fn bios(handle: u16, cfg: &SmbiosConfig) -> Structure {
    let mut s = Structure::new(TYPE_BIOS, 0x18, handle);
    s.string(0x04, VENDOR)
        .string(0x05, cfg.version)
        // BIOS characteristics not supported; extension byte 2: virtual machine.
        .u64(0x0a, 1 << 3)
        .u8(0x13, 1 << 4)
        // System BIOS and embedded controller releases: not supported.
        .bytes(0x14, &[UNKNOWN_U8; 4]);
    s
}

fn system(handle: u16, cfg: &SmbiosConfig) -> Structure {
    let mut s = Structure::new(TYPE_SYSTEM, 0x1b, handle);
    s.string(0x04, VENDOR)
        .string(0x05, PRODUCT)
        .string(0x06, cfg.version)
        .string(0x07, cfg.serial)
        .bytes(0x08, &smbios_uuid(cfg.uuid))
        // Wake-up type: power switch.
        .u8(0x18, 0x06)
        .string(0x1a, FAMILY);
    s
}

fn chassis(handle: u16) -> Structure {
    let mut s = Structure::new(TYPE_CHASSIS, 0x15, handle);
    // Type other; boot-up, power supply and thermal state safe; security
    // status unknown.
    s.string(0x04, VENDOR)
        .u8(0x05, 0x01)
        .bytes(0x09, &[0x03, 0x03, 0x03, 0x02]);
    s
}

fn processor(handle: u16, socket: u32, topo: &Topology) -> Structure {
    let cores = u16::from(topo.cores);
    let threads = cores * u16::from(topo.threads);
    let clamp = |v: u16| u8::try_from(v).unwrap_or(UNKNOWN_U8);
    // 64-bit capable, multi-core, hardware threads.
    let mut characteristics = 1 << 2;
    if cores > 1 {
        characteristics |= 1 << 3;
    }
    if topo.threads > 1 {
        characteristics |= 1 << 4;
    }
    let mut s = Structure::new(TYPE_PROCESSOR, 0x30, handle);
    s.string(0x04, &format!("CPU {socket}"))
        // Central processor, family "other".
        .u8(0x05, 0x03)
        .u8(0x06, 0x01)
        .string(0x07, VENDOR)
        // Status: socket populated, CPU enabled; upgrade "other".
        .u8(0x18, 0x41)
        .u8(0x19, 0x01)
        .u16(0x1a, HANDLE_NONE)
        .u16(0x1c, HANDLE_NONE)
        .u16(0x1e, HANDLE_NONE)
        .u8(0x23, clamp(cores))
        .u8(0x24, clamp(cores))
        .u8(0x25, clamp(threads))
        .u16(0x26, characteristics)
        .u16(0x28, 0x01)
        .u16(0x2a, cores)
        .u16(0x2c, cores)
        .u16(0x2e, threads);
    s
}

fn oem_strings(handle: u16, strings: &[String]) -> Structure {
    let mut s = Structure::new(TYPE_OEM_STRINGS, 0x05, handle);
    s.area[4] = u8::try_from(strings.len()).unwrap_or(0);
    s.strings = strings.to_vec();
    s
}

fn memory_array(handle: u16, mem_size: u64) -> Structure {
    let kib = mem_size / 1024;
    let mut s = Structure::new(TYPE_MEMORY_ARRAY, 0x17, handle);
    // Location other, use system memory, error correction none.
    s.u8(0x04, 0x01).u8(0x05, 0x03).u8(0x06, 0x03);
    match u32::try_from(kib).ok().filter(|&k| k < 0x8000_0000) {
        Some(k) => s.u32(0x07, k),
        None => s.u32(0x07, 0x8000_0000).u64(0x0f, mem_size),
    };
    s.u16(0x0b, HANDLE_NOT_PROVIDED).u16(0x0d, 1);
    s
}

fn memory_device(handle: u16, array: u16, mem_size: u64) -> Structure {
    let mib = mem_size >> 20;
    let mut s = Structure::new(TYPE_MEMORY_DEVICE, 0x28, handle);
    s.u16(0x04, array)
        .u16(0x06, HANDLE_NOT_PROVIDED)
        // Widths unknown.
        .u16(0x08, 0xffff)
        .u16(0x0a, 0xffff);
    match u16::try_from(mib).ok().filter(|&m| m < 0x7fff) {
        Some(m) => s.u16(0x0c, m),
        None => s
            .u16(0x0c, 0x7fff)
            .u32(0x1c, u32::try_from(mib).unwrap_or(u32::MAX >> 1)),
    };
    // Form factor other, type RAM, type detail unknown.
    s.u8(0x0e, 0x01)
        .string(0x10, "RAM")
        .u8(0x12, 0x07)
        .u16(0x13, 1 << 2)
        .string(0x17, VENDOR);
    s
}

fn mapped_address(handle: u16, array: u16, start: u64, len: u64) -> Structure {
    let end = start + len - 1;
    let mut s = Structure::new(TYPE_MEMORY_ARRAY_MAPPED, 0x1f, handle);
    match (u32::try_from(start / 1024), u32::try_from(end / 1024)) {
        (Ok(a), Ok(b)) if b != u32::MAX => s.u32(0x04, a).u32(0x08, b),
        _ => s
            .u32(0x04, u32::MAX)
            .u32(0x08, u32::MAX)
            .u64(0x0f, start)
            .u64(0x17, end),
    };
    s.u16(0x0c, array).u8(0x0e, 1);
    s
}

/// The structure table.
fn structures(cfg: &SmbiosConfig) -> Result<Vec<u8>> {
    let mut list = Vec::new();
    let mut next = 0u16;
    let mut handle = || {
        next += 1;
        next - 1
    };
    list.push(bios(handle(), cfg));
    list.push(system(handle(), cfg));
    list.push(chassis(handle()));
    for socket in 0..u32::from(cfg.topology.sockets) {
        list.push(processor(handle(), socket, &cfg.topology));
    }
    if !cfg.oem_strings.is_empty() {
        list.push(oem_strings(handle(), cfg.oem_strings));
    }
    let array = handle();
    list.push(memory_array(array, cfg.mem_size));
    list.push(memory_device(handle(), array, cfg.mem_size));
    for (start, len) in ram_ranges(cfg.mem_size) {
        if len > 0 {
            list.push(mapped_address(handle(), array, start.0, len));
        }
    }
    list.push(Structure::new(TYPE_SYSTEM_BOOT, 0x0b, handle()));
    list.push(Structure::new(TYPE_END, 0x04, handle()));

    let mut table = Vec::new();
    for s in &list {
        s.encode(&mut table)?;
    }
    Ok(table)
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_sub(*b))
}

/// The 64-bit entry point for a table of `table_len` bytes at `table_addr`.
fn entry_point(table_addr: u64, table_len: u32) -> [u8; ENTRY_POINT_LEN] {
    let mut ep = [0u8; ENTRY_POINT_LEN];
    ep[0..5].copy_from_slice(b"_SM3_");
    ep[6] = ENTRY_POINT_LEN as u8;
    ep[7..10].copy_from_slice(&SMBIOS_VERSION);
    ep[10] = ENTRY_POINT_REVISION;
    ep[12..16].copy_from_slice(&table_len.to_le_bytes());
    ep[16..24].copy_from_slice(&table_addr.to_le_bytes());
    ep[5] = checksum(&ep);
    ep
}

/// The entry point and the table after it, as written at [`SMBIOS_START`].
fn build(cfg: &SmbiosConfig) -> Result<Vec<u8>> {
    let table = structures(cfg)?;
    let max = (SMBIOS_END.0 - SMBIOS_START.0) as usize;
    let size = ENTRY_POINT_LEN + table.len();
    if size > max {
        return Err(Error::TooBig { size, max });
    }
    let table_addr = SMBIOS_START.0 + ENTRY_POINT_LEN as u64;
    let mut out = entry_point(table_addr, table.len() as u32).to_vec();
    out.extend_from_slice(&table);
    Ok(out)
}

/// Checks that `cfg`'s strings make valid tables that fit, without
/// guest memory: for checking user input early.
pub fn check(cfg: &SmbiosConfig) -> Result<()> {
    build(cfg).map(|_| ())
}

/// Writes the entry point and tables to `mem` at [`SMBIOS_START`].
pub fn create_smbios_tables<M: GuestMemoryBackend>(mem: &M, cfg: &SmbiosConfig) -> Result<()> {
    mem.write_slice(&build(cfg)?, SMBIOS_START)
        .map_err(Error::GuestMemory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{GIB, MIB, RESET_VECTOR};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    const UUID: [u8; 16] = [
        0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30,
        0xc8,
    ];

    fn cfg<'a>(topology: Topology, mem_size: u64, oem: &'a [String]) -> SmbiosConfig<'a> {
        SmbiosConfig {
            version: "1.2.3",
            uuid: UUID,
            serial: "guest0",
            topology,
            mem_size,
            oem_strings: oem,
        }
    }

    fn topo(sockets: u8, cores: u8, threads: u8) -> Topology {
        Topology {
            threads,
            cores,
            sockets,
        }
    }

    /// A parsed structure: type, formatted area, strings.
    #[derive(Debug)]
    struct Parsed {
        kind: u8,
        area: Vec<u8>,
        strings: Vec<String>,
    }

    impl Parsed {
        fn str_at(&self, off: usize) -> &str {
            let n = usize::from(self.area[off]);
            assert!(n >= 1, "string field {off:#x} is 0");
            &self.strings[n - 1]
        }
        fn u16_at(&self, off: usize) -> u16 {
            u16::from_le_bytes([self.area[off], self.area[off + 1]])
        }
        fn u32_at(&self, off: usize) -> u32 {
            u32::from_le_bytes(self.area[off..off + 4].try_into().unwrap())
        }
        fn u64_at(&self, off: usize) -> u64 {
            u64::from_le_bytes(self.area[off..off + 8].try_into().unwrap())
        }
    }

    /// Walks the table as Linux's dmi_decode_table does, checking each
    /// structure's framing.
    fn parse(table: &[u8]) -> Vec<Parsed> {
        let mut out: Vec<Parsed> = Vec::new();
        let mut i = 0;
        loop {
            let len = usize::from(table[i + 1]);
            assert!(len >= 4, "structure at {i} has length {len}");
            let area = table[i..i + len].to_vec();
            let handle = u16::from_le_bytes([area[2], area[3]]);
            assert_eq!(usize::from(handle), out.len(), "handles count up");
            let mut j = i + len;
            let mut strings = Vec::new();
            if table[j] == 0 {
                assert_eq!(table[j + 1], 0, "an empty string set is two NULs");
                j += 2;
            } else {
                while table[j] != 0 {
                    let end = j + table[j..].iter().position(|&b| b == 0).unwrap();
                    strings.push(String::from_utf8(table[j..end].to_vec()).unwrap());
                    j = end + 1;
                }
                j += 1;
            }
            // Every string field refers to an existing string.
            let kind = area[0];
            out.push(Parsed {
                kind,
                area,
                strings,
            });
            i = j;
            if kind == TYPE_END {
                break;
            }
        }
        assert_eq!(i, table.len(), "nothing after the end-of-table structure");
        out
    }

    /// Builds, checks the entry point and returns the structures.
    fn tables(cfg: &SmbiosConfig) -> Vec<Parsed> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        create_smbios_tables(&mem, cfg).unwrap();
        let mut ep = [0u8; ENTRY_POINT_LEN];
        mem.read_slice(&mut ep, SMBIOS_START).unwrap();
        assert_eq!(&ep[0..5], b"_SM3_");
        assert_eq!(
            ep.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "checksum"
        );
        assert_eq!(usize::from(ep[6]), ENTRY_POINT_LEN);
        assert_eq!(&ep[7..11], &[3, 0, 0, 1], "version 3.0.0, revision 1");
        let len = u32::from_le_bytes(ep[12..16].try_into().unwrap()) as usize;
        let addr = u64::from_le_bytes(ep[16..24].try_into().unwrap());
        assert_eq!(addr, SMBIOS_START.0 + ENTRY_POINT_LEN as u64);
        assert!(addr + len as u64 <= RESET_VECTOR.0, "below the reset stub");
        let mut table = vec![0; len];
        mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
        parse(&table)
    }

    fn of_kind(t: &[Parsed], kind: u8) -> Vec<&Parsed> {
        t.iter().filter(|s| s.kind == kind).collect()
    }

    #[test]
    fn structures_in_order_with_spec_lengths() {
        let t = tables(&cfg(topo(1, 1, 1), 512 * MIB, &[]));
        let kinds: Vec<(u8, usize)> = t.iter().map(|s| (s.kind, s.area.len())).collect();
        assert_eq!(
            kinds,
            [
                (0, 0x18),
                (1, 0x1b),
                (3, 0x15),
                (4, 0x30),
                (16, 0x17),
                (17, 0x28),
                (19, 0x1f),
                (32, 0x0b),
                (127, 4)
            ]
        );
    }

    #[test]
    fn system_names_vfvm_and_encodes_the_uuid_as_linux_reads_it() {
        let t = tables(&cfg(topo(1, 1, 1), 512 * MIB, &[]));
        let bios = &of_kind(&t, 0)[0];
        assert_eq!(bios.str_at(0x04), "vfvm");
        assert_eq!(bios.str_at(0x05), "1.2.3");
        let sys = &of_kind(&t, 1)[0];
        assert_eq!(sys.str_at(0x04), "vfvm");
        assert_eq!(sys.str_at(0x05), "vfvm");
        assert_eq!(sys.str_at(0x06), "1.2.3");
        assert_eq!(sys.str_at(0x07), "guest0");
        assert_eq!(sys.str_at(0x1a), "Virtual Machine");
        // Linux prints SMBIOS >= 2.6 UUIDs with %pUl: the first three
        // fields little-endian.
        assert_eq!(
            &sys.area[0x08..0x18],
            &[
                0x10, 0xb8, 0xa7, 0x6b, 0xad, 0x9d, 0xd1, 0x11, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
                0x30, 0xc8
            ]
        );
    }

    #[test]
    fn one_processor_per_socket() {
        let t = tables(&cfg(topo(2, 4, 2), GIB, &[]));
        let cpus = of_kind(&t, 4);
        assert_eq!(cpus.len(), 2);
        for (i, p) in cpus.iter().enumerate() {
            assert_eq!(p.str_at(0x04), format!("CPU {i}"));
            assert_eq!(&p.area[0x23..0x26], &[4, 4, 8], "cores, enabled, threads");
            assert_eq!((p.u16_at(0x2a), p.u16_at(0x2c), p.u16_at(0x2e)), (4, 4, 8));
            assert_eq!(p.u16_at(0x26), 0b11100, "64-bit, multi-core, threads");
            assert_eq!(p.area[0x18], 0x41);
        }
        let single = tables(&cfg(topo(1, 1, 1), GIB, &[]));
        assert_eq!(of_kind(&single, 4)[0].u16_at(0x26), 0b100);
    }

    #[test]
    fn oem_strings_in_order() {
        let oem = vec![
            "io.systemd.credential:hello=world".to_string(),
            "second".to_string(),
        ];
        let t = tables(&cfg(topo(1, 1, 1), GIB, &oem));
        let o = &of_kind(&t, 11)[0];
        assert_eq!(o.area[4], 2, "count");
        assert_eq!(o.strings, oem);
    }

    #[test]
    fn memory_below_and_above_the_hole() {
        let t = tables(&cfg(topo(1, 1, 1), 512 * MIB, &[]));
        assert_eq!(of_kind(&t, 16)[0].u32_at(0x07), 512 * 1024);
        assert_eq!(of_kind(&t, 16)[0].u16_at(0x0d), 1);
        let dev = &of_kind(&t, 17)[0];
        assert_eq!(dev.u16_at(0x0c), 512);
        assert_eq!(
            dev.u16_at(0x04),
            of_kind(&t, 16)[0].u16_at(2),
            "array handle"
        );
        let maps = of_kind(&t, 19);
        assert_eq!(maps.len(), 1);
        assert_eq!(
            (maps[0].u32_at(0x04), maps[0].u32_at(0x08)),
            (0, 512 * 1024 - 1)
        );

        let t = tables(&cfg(topo(1, 1, 1), 6 * GIB, &[]));
        let maps = of_kind(&t, 19);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[1].u32_at(0x04), (4 * GIB / 1024) as u32);
        assert_eq!(maps[1].u32_at(0x08), (7 * GIB / 1024 - 1) as u32);

        // 64 GiB: the device size needs the extended field.
        let t = tables(&cfg(topo(1, 1, 1), 64 * GIB, &[]));
        let dev = &of_kind(&t, 17)[0];
        assert_eq!((dev.u16_at(0x0c), dev.u32_at(0x1c)), (0x7fff, 64 * 1024));
        // 4 TiB: addresses and capacity in the extended fields.
        let t = tables(&cfg(topo(1, 1, 1), 4096 * GIB, &[]));
        let arr = &of_kind(&t, 16)[0];
        assert_eq!(
            (arr.u32_at(0x07), arr.u64_at(0x0f)),
            (0x8000_0000, 4096 * GIB)
        );
        let high = &of_kind(&t, 19)[1];
        assert_eq!(high.u32_at(0x04), u32::MAX);
        assert_eq!(high.u64_at(0x0f), 4 * GIB);
        assert_eq!(high.u64_at(0x17), 4097 * GIB - 1);
    }

    #[test]
    fn bad_strings_and_overflow_are_errors() {
        let nul = vec!["a\0b".to_string()];
        assert!(matches!(
            check(&cfg(topo(1, 1, 1), GIB, &nul)),
            Err(Error::BadString(_))
        ));
        let empty = vec![String::new()];
        assert!(matches!(
            check(&cfg(topo(1, 1, 1), GIB, &empty)),
            Err(Error::BadString(_))
        ));
        let many = vec!["x".to_string(); 256];
        assert!(matches!(
            check(&cfg(topo(1, 1, 1), GIB, &many)),
            Err(Error::TooManyStrings { count: 256 })
        ));
        let big = vec!["x".repeat(70_000)];
        let err = check(&cfg(topo(1, 1, 1), GIB, &big)).unwrap_err();
        assert!(matches!(err, Error::TooBig { .. }), "{err}");
        assert!(err.to_string().contains("--oem-string"), "{err}");
        // 255 strings and the most sockets fit.
        let max = vec!["y".repeat(100); 255];
        check(&cfg(topo(255, 1, 1), GIB, &max)).unwrap();
    }
}
