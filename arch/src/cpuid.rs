//! Per-vCPU CPUID: KVM's supported CPUID with each vCPU's APIC ID, the
//! topology and the hypervisor bit filled in.
//!
//! APIC IDs are packed as Intel and AMD describe: the low
//! `ceil(log2(threads))` bits are the thread within the core, the next
//! `ceil(log2(cores))` bits the core within the socket and the rest the
//! socket. The VMM must create each vCPU with `KVM_CREATE_VCPU(apic_id)`
//! ([`Topology::apic_id`]) so the in-kernel LAPIC ID matches CPUID and the
//! MADT.
//!
//! Leaves rewritten: 1 (APIC ID, addressable IDs, HTT, hypervisor bit),
//! 4 (Intel cache sharing and cores per package), 0xB and 0x1F (extended
//! topology, regenerated), and on AMD 0x8000_0008 (ECX: NC and
//! ApicIdSize), 0x8000_001D (cache sharing) and 0x8000_001E (extended APIC
//! ID, core and node IDs). Leaf 0x8000_0026 (AMD extended topology,
//! which Linux prefers over 0xB) is dropped because it would describe the
//! host. Everything else, including KVM's 0x4000_0000 signature leaves
//! (kvmclock: the guest reads the TSC frequency there instead of
//! calibrating it), is kept as KVM reported it. [`add_tsc_deadline`] sets
//! the one bit KVM emulates but never reports.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// Errors of the CPUID construction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A topology dimension is zero or the total does not fit APIC IDs.
    #[error("invalid vCPU topology {threads} threads x {cores} cores x {sockets} sockets")]
    InvalidTopology {
        /// Threads per core.
        threads: u8,
        /// Cores per socket.
        cores: u8,
        /// Sockets.
        sockets: u8,
    },
    /// The vCPU index is outside the topology.
    #[error("vCPU index {index} is outside the topology of {num_cpus} vCPUs")]
    IndexOutOfRange {
        /// The index asked for.
        index: u32,
        /// The topology's vCPU count.
        num_cpus: u32,
    },
    /// The resulting CPUID has more entries than KVM accepts.
    #[error("the vCPU CPUID has {0} entries, more than KVM accepts")]
    TooManyEntries(usize),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// The vCPU topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Threads per core.
    pub threads: u8,
    /// Cores per socket.
    pub cores: u8,
    /// Sockets.
    pub sockets: u8,
}

/// Number of bits needed to number `n` items (`ceil(log2(n))`).
fn bits_for(n: u8) -> u32 {
    u32::from(n).next_power_of_two().trailing_zeros()
}

impl Topology {
    /// Checks that no dimension is zero and that every APIC ID fits the
    /// 8-bit xAPIC ID (255 is the broadcast ID).
    pub fn validate(&self) -> Result<()> {
        let err = Error::InvalidTopology {
            threads: self.threads,
            cores: self.cores,
            sockets: self.sockets,
        };
        if self.threads == 0 || self.cores == 0 || self.sockets == 0 {
            return Err(err);
        }
        let max_apic_id = self.apic_id(self.num_cpus() - 1);
        if max_apic_id >= 0xff {
            return Err(err);
        }
        Ok(())
    }

    /// Total number of vCPUs.
    pub fn num_cpus(&self) -> u32 {
        u32::from(self.threads) * u32::from(self.cores) * u32::from(self.sockets)
    }

    fn thread_bits(&self) -> u32 {
        bits_for(self.threads)
    }

    fn package_bits(&self) -> u32 {
        bits_for(self.threads) + bits_for(self.cores)
    }

    fn threads_per_package(&self) -> u32 {
        u32::from(self.threads) * u32::from(self.cores)
    }

    /// (socket, core in socket, thread in core) of vCPU `index`.
    fn position(&self, index: u32) -> (u32, u32, u32) {
        let threads = u32::from(self.threads);
        let cores = u32::from(self.cores);
        (
            index / (threads * cores),
            (index / threads) % cores,
            index % threads,
        )
    }

    /// The (x2)APIC ID of vCPU `index` (0-based, threads of a core first,
    /// then cores of a socket, then sockets).
    pub fn apic_id(&self, index: u32) -> u32 {
        let (socket, core, thread) = self.position(index);
        (socket << self.package_bits()) | (core << self.thread_bits()) | thread
    }
}

const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_EXT_TOPOLOGY: u32 = 0x8000_0026;

const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const LEAF1_EDX_HTT: u32 = 1 << 28;
const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;

fn is_amd(entries: &[kvm_cpuid_entry2]) -> bool {
    entries
        .iter()
        .find(|e| e.function == 0 && e.index == 0)
        .is_some_and(|e| {
            let vendor = [e.ebx, e.edx, e.ecx];
            let bytes: Vec<u8> = vendor.iter().flat_map(|r| r.to_le_bytes()).collect();
            bytes == *b"AuthenticAMD" || bytes == *b"HygonGenuine"
        })
}

fn max_basic_leaf(entries: &[kvm_cpuid_entry2]) -> u32 {
    entries
        .iter()
        .find(|e| e.function == 0)
        .map_or(0, |e| e.eax)
}

/// Cache level (EAX[7:5]) of a leaf 4 / 0x8000_001D entry, or `None` for
/// the null entry that ends the list (cache type EAX[4:0] == 0).
fn cache_level(eax: u32) -> Option<u32> {
    (eax & 0x1f != 0).then_some((eax >> 5) & 0x7)
}

/// The extended topology subleaves (same layout for 0xB and 0x1F): SMT,
/// core, then the invalid level that ends the list.
fn ext_topology_entries(function: u32, topo: &Topology, apic_id: u32) -> [kvm_cpuid_entry2; 3] {
    let entry = |index: u32, eax: u32, ebx: u32, level_type: u32| kvm_cpuid_entry2 {
        function,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax,
        ebx,
        ecx: (level_type << 8) | index,
        edx: apic_id,
        ..Default::default()
    };
    [
        entry(
            0,
            topo.thread_bits(),
            u32::from(topo.threads),
            TOPOLOGY_LEVEL_SMT,
        ),
        entry(
            1,
            topo.package_bits(),
            topo.threads_per_package(),
            TOPOLOGY_LEVEL_CORE,
        ),
        entry(2, 0, 0, 0),
    ]
}

/// Sets the TSC-deadline timer bit (leaf 1, ECX bit 24) in KVM's supported
/// CPUID. KVM's in-kernel LAPIC emulates the timer, but KVM_GET_SUPPORTED_CPUID
/// always leaves the bit clear because it depends on the irqchip; the VMM
/// sets it when `KVM_CAP_TSC_DEADLINE_TIMER` is there, as QEMU, Cloud
/// Hypervisor and Firecracker do. Without it Linux calibrates its LAPIC
/// timer at boot, busy-waiting 100 ms of guest time on the boot CPU.
pub fn add_tsc_deadline(supported: &mut CpuId) {
    for e in supported.as_mut_slice() {
        if e.function == 1 {
            e.ecx |= LEAF1_ECX_TSC_DEADLINE;
        }
    }
}

/// Builds the CPUID of vCPU `index` of `topo` from KVM's supported CPUID
/// (`Kvm::get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)`).
pub fn vcpu_cpuid(supported: &CpuId, index: u32, topo: &Topology) -> Result<CpuId> {
    topo.validate()?;
    if index >= topo.num_cpus() {
        return Err(Error::IndexOutOfRange {
            index,
            num_cpus: topo.num_cpus(),
        });
    }
    let apic_id = topo.apic_id(index);
    let (socket, core, _) = topo.position(index);
    let package_bits = topo.package_bits();
    // Addressable IDs (powers of two) rather than counts, so that Linux's
    // `apic_id >> get_count_order(sharing)` agrees with the APIC ID packing.
    let package_ids = 1u32 << package_bits;
    let core_ids = 1u32 << bits_for(topo.cores);
    let thread_ids = 1u32 << topo.thread_bits();

    let supported = supported.as_slice();
    let amd = is_amd(supported);
    let max_basic = max_basic_leaf(supported);

    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .iter()
        .filter(|e| {
            !matches!(
                e.function,
                LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY | LEAF_AMD_EXT_TOPOLOGY
            )
        })
        .copied()
        .collect();

    for e in entries.iter_mut() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0xffff) | ((apic_id & 0xff) << 24) | (package_ids.min(0xff) << 16);
                if topo.threads_per_package() > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                } else {
                    e.edx &= !LEAF1_EDX_HTT;
                }
                e.ecx |= LEAF1_ECX_HYPERVISOR;
            }
            4 => {
                if let Some(level) = cache_level(e.eax) {
                    let sharing = if level >= 3 { package_ids } else { thread_ids };
                    e.eax = (e.eax & 0x3fff) | ((core_ids - 1) << 26) | ((sharing - 1) << 14);
                }
            }
            0x8000_0008 if amd => {
                e.ecx = (e.ecx & !0xf0ff) | (package_bits << 12) | (topo.threads_per_package() - 1);
            }
            0x8000_001d if amd => {
                if let Some(level) = cache_level(e.eax) {
                    let sharing = if level >= 3 { package_ids } else { thread_ids };
                    e.eax = (e.eax & !(0xfff << 14)) | ((sharing - 1) << 14);
                }
            }
            0x8000_001e if amd => {
                e.eax = apic_id;
                e.ebx = (e.ebx & !0xffff) | ((u32::from(topo.threads) - 1) << 8) | (core & 0xff);
                // One node per socket: NodesPerProcessor - 1 = 0, NodeId = socket.
                e.ecx = (e.ecx & !0x7ff) | (socket & 0xff);
            }
            _ => {}
        }
    }

    if max_basic >= LEAF_EXT_TOPOLOGY {
        entries.extend(ext_topology_entries(LEAF_EXT_TOPOLOGY, topo, apic_id));
    }
    if max_basic >= LEAF_V2_EXT_TOPOLOGY {
        entries.extend(ext_topology_entries(LEAF_V2_EXT_TOPOLOGY, topo, apic_id));
    }

    CpuId::from_entries(&entries).map_err(|_| Error::TooManyEntries(entries.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        }
    }

    fn vendor(v: &[u8; 12]) -> [u32; 3] {
        let r = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
        [r(0), r(4), r(8)]
    }

    /// A CPUID shaped like KVM's on an AMD EPYC host with 64 cores / 128
    /// threads: host topology in every topology leaf.
    fn amd_host(max_basic: u32) -> CpuId {
        let [b, d, c] = vendor(b"AuthenticAMD");
        let kvm = vendor(b"KVMKVMKVM\0\0\0");
        CpuId::from_entries(&[
            e(0, 0, [max_basic, b, c, d]),
            e(1, 0, [0x00a0_0f11, 0x1280_0800, 0x7ef8_3203, 0x178b_fbff]),
            e(4, 0, [0, 0, 0, 0]),
            e(0xb, 0, [1, 2, 0x100, 0x7f]),
            e(0xb, 1, [7, 128, 0x201, 0x7f]),
            e(0x4000_0000, 0, [0x4000_0001, kvm[0], kvm[1], kvm[2]]),
            e(0x8000_0000, 0, [0x8000_0026, b, c, d]),
            e(0x8000_0008, 0, [0x3030, 0, 0x0001_707f, 0]),
            // L1d: level 1, type 1, shared by 2; L3: level 3, type 3, shared by 16.
            e(0x8000_001d, 0, [0x0000_4121, 0x01c0_003f, 0x3f, 0]),
            e(0x8000_001d, 3, [0x0003_c163, 0x03c0_003f, 0x7fff, 1]),
            e(0x8000_001e, 0, [0x7f, 0x13f, 0x0, 0]),
            e(0x8000_0026, 0, [1, 2, 0x100, 0x7f]),
        ])
        .unwrap()
    }

    fn find(c: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap_or_else(|| panic!("no leaf {function:#x}.{index}"))
    }

    const TOPO: Topology = Topology {
        threads: 2,
        cores: 3,
        sockets: 2,
    };

    #[test]
    fn tsc_deadline_bit_is_added_and_kept_per_vcpu() {
        let mut host = amd_host(0xd);
        assert_eq!(find(&host, 1, 0).ecx & LEAF1_ECX_TSC_DEADLINE, 0);
        add_tsc_deadline(&mut host);
        let c = vcpu_cpuid(&host, 1, &TOPO).unwrap();
        let ecx = find(&c, 1, 0).ecx;
        assert_ne!(ecx & LEAF1_ECX_TSC_DEADLINE, 0);
        // The other bits of KVM's leaf 1 ECX stay as they were.
        assert_eq!(
            ecx & !LEAF1_ECX_TSC_DEADLINE,
            0x7ef8_3203 | LEAF1_ECX_HYPERVISOR
        );
    }

    #[test]
    fn apic_ids_are_packed() {
        // thread: 1 bit, core: 2 bits.
        let ids: Vec<u32> = (0..TOPO.num_cpus()).map(|i| TOPO.apic_id(i)).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
        let flat = Topology {
            threads: 1,
            cores: 4,
            sockets: 1,
        };
        assert_eq!(flat.apic_id(3), 3);
    }

    #[test]
    fn topology_validation() {
        let bad = Topology {
            threads: 0,
            cores: 1,
            sockets: 1,
        };
        assert!(bad.validate().is_err());
        let too_big = Topology {
            threads: 2,
            cores: 64,
            sockets: 2,
        };
        assert!(too_big.validate().is_err());
        assert!(TOPO.validate().is_ok());
        assert_eq!(
            vcpu_cpuid(&amd_host(0x10), 12, &TOPO).unwrap_err(),
            Error::IndexOutOfRange {
                index: 12,
                num_cpus: 12
            }
        );
    }

    #[test]
    fn leaf1() {
        let c = vcpu_cpuid(&amd_host(0x10), 7, &TOPO).unwrap();
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, 9);
        assert_eq!((l1.ebx >> 16) & 0xff, 8);
        assert_eq!(l1.ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_ne!(l1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & LEAF1_EDX_HTT, 0);

        let single = Topology {
            threads: 1,
            cores: 1,
            sockets: 1,
        };
        let c = vcpu_cpuid(&amd_host(0x10), 0, &single).unwrap();
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 16, 1);
        assert_eq!(l1.edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn extended_topology_leaf() {
        let c = vcpu_cpuid(&amd_host(0x10), 7, &TOPO).unwrap();
        let smt = find(&c, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (1, 2, 0x100, 9));
        let core = find(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (3, 6, 0x201, 9));
        let end = find(&c, 0xb, 2);
        assert_eq!((end.eax, end.ebx, end.ecx, end.edx), (0, 0, 2, 9));
        assert_eq!(smt.flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        assert_eq!(c.as_slice().iter().filter(|e| e.function == 0xb).count(), 3);
        // Max basic leaf 0x10: no 0x1F.
        assert!(c.as_slice().iter().all(|e| e.function != 0x1f));
        // Host AMD extended topology dropped.
        assert!(c.as_slice().iter().all(|e| e.function != 0x8000_0026));
    }

    #[test]
    fn v2_topology_leaf_when_advertised() {
        let c = vcpu_cpuid(&amd_host(0x1f), 7, &TOPO).unwrap();
        assert_eq!(find(&c, 0x1f, 1).ebx, 6);
        assert_eq!(find(&c, 0x1f, 0).edx, 9);
    }

    #[test]
    fn no_topology_leaf_when_not_advertised() {
        let c = vcpu_cpuid(&amd_host(0xa), 0, &TOPO).unwrap();
        assert!(c.as_slice().iter().all(|e| e.function != 0xb));
    }

    #[test]
    fn amd_leaves() {
        let c = vcpu_cpuid(&amd_host(0x10), 7, &TOPO).unwrap();
        let l8 = find(&c, 0x8000_0008, 0);
        assert_eq!(l8.ecx, 0x0001_3005, "PerfTscSize kept, ApicIdSize 3, NC 5");
        assert_eq!(find(&c, 0x8000_001d, 0).eax, 0x0000_4121, "L1 shared by 2");
        assert_eq!(
            find(&c, 0x8000_001d, 3).eax,
            0x0001_c163,
            "L3 shared by 8 IDs"
        );
        let l1e = find(&c, 0x8000_001e, 0);
        assert_eq!(l1e.eax, 9);
        assert_eq!(l1e.ebx, 0x100, "1 thread sibling, core 0");
        assert_eq!(l1e.ecx, 1, "node = socket 1");
        // Null leaf 4 (AMD) untouched; KVM signature kept.
        assert_eq!(find(&c, 4, 0).eax, 0);
        assert_eq!(find(&c, 0x4000_0000, 0).ebx, vendor(b"KVMKVMKVM\0\0\0")[0]);
    }

    #[test]
    fn intel_cache_leaf() {
        let [b, d, c] = vendor(b"GenuineIntel");
        let host = CpuId::from_entries(&[
            e(0, 0, [0xd, b, c, d]),
            e(1, 0, [0, 0, 0, 0]),
            // L1d (level 1 type 1) and L3 (level 3 type 3) with host sharing.
            e(4, 0, [0x1c00_4121, 0, 0, 0]),
            e(4, 3, [0x1c03_c163, 0, 0, 0]),
            e(4, 4, [0, 0, 0, 0]),
            e(0x8000_0008, 0, [0x3030, 0, 0, 0]),
        ])
        .unwrap();
        let c = vcpu_cpuid(&host, 1, &TOPO).unwrap();
        assert_eq!(find(&c, 4, 0).eax, (3 << 26) | (1 << 14) | 0x121);
        assert_eq!(find(&c, 4, 3).eax, (3 << 26) | (7 << 14) | 0x163);
        assert_eq!(find(&c, 4, 4).eax, 0);
        assert_eq!(find(&c, 0x8000_0008, 0).ecx, 0, "AMD-only field untouched");
        assert_eq!(find(&c, 0xb, 1).edx, 1);
    }
}
