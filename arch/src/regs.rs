//! vCPU state for entering a Linux kernel through the 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"):
//!
//! - long mode with paging on, the kernel, zero page and command line
//!   identity-mapped (we map the first [`BOOT_IDENTITY_MAP_SIZE`] with 2 MiB pages);
//! - a GDT with flat 4 GiB `__BOOT_CS` at selector 0x10 (execute/read) and
//!   `__BOOT_DS` at 0x18 (read/write); CS = `__BOOT_CS`, DS/ES/SS = `__BOOT_DS`;
//! - interrupts disabled (RFLAGS = 2), RSI = address of `boot_params`.
//!
//! The GDT entries, page-table contents, segment conversions and LAPIC
//! register edits are pure functions, unit-tested here; the `setup_*`
//! functions only move their results into KVM and guest memory.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{
    BOOT_GDT_START, BOOT_IDENTITY_MAP_SIZE, BOOT_IDT_START, BOOT_STACK_POINTER, GIB, PDPT_START,
    PD_START, PML4_START,
};

/// Errors of the vCPU register setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM vCPU ioctl failed.
    #[error("vCPU {what} failed: {source}")]
    Kvm {
        /// The operation, e.g. "KVM_SET_SREGS".
        what: &'static str,
        /// The error of the ioctl.
        source: kvm_ioctls::Error,
    },
    /// Writing the GDT, IDT or page tables to guest memory failed.
    #[error("writing the boot {what} to guest memory at {addr:#x} failed: {source}")]
    GuestMemory {
        /// What was being written.
        what: &'static str,
        /// Where.
        addr: u64,
        /// The guest memory error.
        source: vm_memory::GuestMemoryError,
    },
    /// KVM accepted fewer boot MSRs than were given.
    #[error("KVM_SET_MSRS set only {set} of {total} boot MSRs")]
    SetMsrs {
        /// How many were set.
        set: usize,
        /// How many were given.
        total: usize,
    },
    /// The boot MSR list could not be built.
    #[error("building the boot MSR list failed")]
    BuildMsrs,
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

// ---- GDT ----

/// Selector of `__BOOT_CS`, the 64-bit code segment.
pub const BOOT_CS_SELECTOR: u16 = 0x10;
/// Selector of `__BOOT_DS`, the data segment.
pub const BOOT_DS_SELECTOR: u16 = 0x18;
/// Selector of the (16-byte, long mode) TSS descriptor.
pub const BOOT_TSS_SELECTOR: u16 = 0x20;

/// Flags and access byte of a GDT entry as `0xF0AA`: F = G, D/B, L, AVL
/// (bits 55..52 of the descriptor), AA = the access byte (bits 47..40).
/// 64-bit code: G, L; present, DPL 0, code, execute/read, accessed.
const CODE64_FLAGS: u16 = 0xa09b;
/// Data: G, D/B; present, DPL 0, data, read/write, accessed.
const DATA_FLAGS: u16 = 0xc093;
/// TSS: G; present, DPL 0, system, 64-bit busy TSS (type 0xb, required for TR
/// in long mode).
const TSS_FLAGS: u16 = 0x808b;

/// Builds a GDT descriptor from its flags/access (`0xF0AA`, see above),
/// base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let flags = flags as u64;
    let base = base as u64;
    let limit = limit as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The boot GDT: null, unused, `__BOOT_CS` (0x10), `__BOOT_DS` (0x18) and
/// a 16-byte TSS descriptor (0x20, the upper half holding base bits 63..32,
/// here 0).
pub const fn boot_gdt() -> [u64; 6] {
    [
        0,
        0,
        gdt_entry(CODE64_FLAGS, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
        0,
    ]
}

/// Converts a GDT descriptor and its selector into the `kvm_segment` that
/// describes the same segment to KVM (limit scaled by the granularity).
pub fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = bit(55);
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = bit(47);
    kvm_segment {
        base,
        limit,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

// ---- Page tables ----

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PDE_PAGE_SIZE: u64 = 1 << 7;
const PAGE_SIZE: u64 = 0x1000;
const LARGE_PAGE_SIZE: u64 = 2 << 20;
const NUM_PDS: u64 = BOOT_IDENTITY_MAP_SIZE / GIB;

/// The contents of the boot page tables, one page after the other from
/// [`PML4_START`]: PML4, PDPT and one page directory per GiB, identity
/// mapping [`BOOT_IDENTITY_MAP_SIZE`] with 2 MiB pages.
pub fn boot_page_tables() -> Vec<u64> {
    const ENTRIES: usize = 512;
    let mut tables = vec![0u64; (2 + NUM_PDS as usize) * ENTRIES];
    tables[0] = PDPT_START.0 | PTE_PRESENT | PTE_WRITABLE;
    for pd in 0..NUM_PDS {
        tables[ENTRIES + pd as usize] = (PD_START.0 + pd * PAGE_SIZE) | PTE_PRESENT | PTE_WRITABLE;
    }
    for (i, pde) in tables[2 * ENTRIES..].iter_mut().enumerate() {
        *pde = (i as u64 * LARGE_PAGE_SIZE) | PTE_PRESENT | PTE_WRITABLE | PDE_PAGE_SIZE;
    }
    tables
}

fn write_u64s<M: GuestMemoryBackend>(
    mem: &M,
    what: &'static str,
    addr: GuestAddress,
    values: &[u64],
) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    mem.write_slice(&bytes, addr)
        .map_err(|source| Error::GuestMemory {
            what,
            addr: addr.0,
            source,
        })
}

// ---- Control registers ----

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Fills the special registers for 64-bit entry: segments from the boot
/// GDT, GDTR/IDTR, CR3 = [`PML4_START`], paging and long mode on, caches on.
pub fn boot_sregs(sregs: &mut kvm_bindings::kvm_sregs) {
    let gdt = boot_gdt();
    let code = segment_from_gdt(gdt[2], BOOT_CS_SELECTOR);
    let data = segment_from_gdt(gdt[3], BOOT_DS_SELECTOR);
    let tss = segment_from_gdt(gdt[4], BOOT_TSS_SELECTOR);

    sregs.gdt.base = BOOT_GDT_START.0;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START.0;
    sregs.idt.limit = (std::mem::size_of::<u64>() - 1) as u16;

    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_PG | CR0_ET) & !(CR0_CD | CR0_NW);
    sregs.cr3 = PML4_START.0;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// Writes the boot GDT, the empty IDT and the identity-mapping page tables
/// to guest memory, and loads the matching special registers into `vcpu`.
pub fn setup_sregs<M: GuestMemoryBackend>(mem: &M, vcpu: &VcpuFd) -> Result<()> {
    write_u64s(mem, "GDT", BOOT_GDT_START, &boot_gdt())?;
    write_u64s(mem, "IDT", BOOT_IDT_START, &[0])?;
    write_u64s(mem, "page tables", PML4_START, &boot_page_tables())?;
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    boot_sregs(&mut sregs);
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))
}

// ---- General purpose registers ----

/// The general purpose registers for the 64-bit entry at `entry`, with RSI
/// pointing at the zero page and interrupts disabled.
pub fn boot_regs(entry: GuestAddress, zero_page: GuestAddress) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry.0,
        rsp: BOOT_STACK_POINTER.0,
        rbp: BOOT_STACK_POINTER.0,
        rsi: zero_page.0,
        ..Default::default()
    }
}

/// Loads [`boot_regs`] into `vcpu`.
pub fn setup_regs(vcpu: &VcpuFd, entry: GuestAddress, zero_page: GuestAddress) -> Result<()> {
    vcpu.set_regs(&boot_regs(entry, zero_page))
        .map_err(kvm("KVM_SET_REGS"))
}

// ---- FPU ----

/// The x87/SSE state after FNINIT, with all SSE exceptions masked.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Loads [`boot_fpu`] into `vcpu`.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    vcpu.set_fpu(&boot_fpu()).map_err(kvm("KVM_SET_FPU"))
}

// ---- MSRs ----

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WB: u64 = 6;

/// The boot MSR values: syscall MSRs cleared, TSC 0, fast strings on, and
/// MTRRs enabled with write-back as default type (as firmware would leave
/// them; with non-coherent DMA KVM honours guest MTRRs, and MTRRs off
/// would make all of RAM uncached).
pub fn boot_msr_entries() -> Vec<kvm_msr_entry> {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// Loads [`boot_msr_entries`] into `vcpu`; fails unless KVM set them all.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    let entries = boot_msr_entries();
    let msrs = Msrs::from_entries(&entries).map_err(|_| Error::BuildMsrs)?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    if set != entries.len() {
        return Err(Error::SetMsrs {
            set,
            total: entries.len(),
        });
    }
    Ok(())
}

// ---- LAPIC ----

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_DELIVERY_MODE_MASK: u32 = 0x700;

fn lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &lapic.regs[offset..offset + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in lapic.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *dst = src as std::os::raw::c_char;
    }
}

fn set_delivery_mode(lapic: &mut kvm_lapic_state, offset: usize, mode: u32) {
    let reg = lapic_reg(lapic, offset);
    set_lapic_reg(
        lapic,
        offset,
        (reg & !APIC_DELIVERY_MODE_MASK) | (mode << 8),
    );
}

/// Sets LVT LINT0 to ExtINT and LINT1 to NMI, as the MP spec's virtual wire
/// mode expects (and as the MADT's LAPIC NMI entry says), keeping the
/// other bits of both registers.
pub fn boot_lint(lapic: &mut kvm_lapic_state) {
    set_delivery_mode(lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_delivery_mode(lapic, APIC_LVT1, APIC_MODE_NMI);
}

/// Applies [`boot_lint`] to `vcpu`'s in-kernel LAPIC (the VM needs an
/// in-kernel irqchip).
pub fn setup_lint(vcpu: &VcpuFd) -> Result<()> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    boot_lint(&mut lapic);
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn gdt_entries_encode_known_values() {
        // Known-good values from the Linux boot GDT (arch/x86/boot/compressed/head_64.S
        // uses 0x00af9a000000ffff for __KERNEL_CS; ours has the accessed bit set).
        let gdt = boot_gdt();
        assert_eq!(gdt[0], 0);
        assert_eq!(gdt[1], 0);
        assert_eq!(gdt[2], 0x00af_9b00_0000_ffff);
        assert_eq!(gdt[3], 0x00cf_9300_0000_ffff);
        assert_eq!(gdt[4], 0x008f_8b00_0000_ffff);
        assert_eq!(gdt[5], 0);
        assert_eq!(
            gdt_entry(0x4092, 0x1234_5678, 0xabcde),
            0x124a_9234_5678_bcde
        );
    }

    #[test]
    fn code_segment_is_long_mode() {
        let cs = segment_from_gdt(boot_gdt()[2], BOOT_CS_SELECTOR);
        assert_eq!(cs.selector, 0x10);
        assert_eq!(cs.base, 0);
        assert_eq!(cs.limit, 0xffff_ffff);
        assert_eq!(cs.type_, 0xb);
        assert_eq!(
            (cs.present, cs.dpl, cs.s, cs.l, cs.db, cs.g),
            (1, 0, 1, 1, 0, 1)
        );
        assert_eq!(cs.unusable, 0);
    }

    #[test]
    fn data_and_tss_segments() {
        let ds = segment_from_gdt(boot_gdt()[3], BOOT_DS_SELECTOR);
        assert_eq!(ds.selector, 0x18);
        assert_eq!(ds.limit, 0xffff_ffff);
        assert_eq!(ds.type_, 0x3);
        assert_eq!((ds.present, ds.s, ds.l, ds.db, ds.g), (1, 1, 0, 1, 1));

        let tr = segment_from_gdt(boot_gdt()[4], BOOT_TSS_SELECTOR);
        assert_eq!(tr.selector, 0x20);
        assert_eq!(tr.type_, 0xb);
        assert_eq!((tr.present, tr.s, tr.l, tr.db, tr.g), (1, 0, 0, 0, 1));
    }

    #[test]
    fn segment_base_and_byte_limit_round_trip() {
        let seg = segment_from_gdt(gdt_entry(0x0093, 0xfedc_ba98, 0x12345), 0x8);
        assert_eq!(seg.base, 0xfedc_ba98);
        assert_eq!(seg.limit, 0x12345);
        assert_eq!(seg.g, 0);
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn page_tables_identity_map() {
        let t = boot_page_tables();
        assert_eq!(t.len(), 6 * 512);
        assert_eq!(t[0], 0xa003);
        assert!(t[1..512].iter().all(|&e| e == 0));
        assert_eq!(&t[512..516], &[0xb003, 0xc003, 0xd003, 0xe003]);
        assert!(t[516..1024].iter().all(|&e| e == 0));
        // Walk every 2 MiB page: virtual address == physical address.
        for va in (0..BOOT_IDENTITY_MAP_SIZE).step_by(LARGE_PAGE_SIZE as usize) {
            let page = |base: u64, idx: u64| {
                let entry = t[((base - PML4_START.0) / 8 + idx) as usize];
                assert_eq!(entry & 1, 1, "not present for {va:#x}");
                entry
            };
            let pml4e = page(PML4_START.0, (va >> 39) & 0x1ff);
            let pdpte = page(pml4e & !0xfff, (va >> 30) & 0x1ff);
            let pde = page(pdpte & !0xfff, (va >> 21) & 0x1ff);
            assert_eq!(pde & 0x83, 0x83);
            assert_eq!(pde & !0xfff, va);
        }
    }

    #[test]
    fn sregs_for_long_mode() {
        let mut sregs = kvm_bindings::kvm_sregs {
            // The reset value of CR0: CD | NW | ET.
            cr0: 0x6000_0010,
            ..Default::default()
        };
        boot_sregs(&mut sregs);
        assert_eq!(sregs.cr0, 0x8000_0011);
        assert_eq!(sregs.cr3, 0x9000);
        assert_eq!(sregs.cr4 & CR4_PAE, CR4_PAE);
        assert_eq!(sregs.efer & 0x500, 0x500);
        assert_eq!(sregs.gdt.base, 0x500);
        assert_eq!(sregs.gdt.limit, 47);
        assert_eq!(sregs.idt.base, 0x600);
        assert_eq!(sregs.idt.limit, 7);
        assert_eq!(sregs.cs.selector, 0x10);
        for s in [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss] {
            assert_eq!(s.selector, 0x18);
        }
        assert_eq!(sregs.tr.selector, 0x20);
    }

    #[test]
    fn regs_for_entry() {
        let regs = boot_regs(GuestAddress(0x10_0200), GuestAddress(0x7000));
        assert_eq!(regs.rip, 0x10_0200);
        assert_eq!(regs.rsi, 0x7000);
        assert_eq!(regs.rflags, 2);
        assert_eq!(regs.rsp, BOOT_STACK_POINTER.0);
        assert_eq!(regs.rbp, BOOT_STACK_POINTER.0);
    }

    #[test]
    fn fpu_defaults() {
        let fpu = boot_fpu();
        assert_eq!(fpu.fcw, 0x37f);
        assert_eq!(fpu.mxcsr, 0x1f80);
    }

    #[test]
    fn msr_list() {
        let e = boot_msr_entries();
        let get = |i: u32| e.iter().find(|m| m.index == i).map(|m| m.data);
        assert_eq!(get(MSR_IA32_MISC_ENABLE), Some(1));
        assert_eq!(get(MSR_MTRR_DEF_TYPE), Some(0x806));
        assert_eq!(get(MSR_LSTAR), Some(0));
        assert_eq!(e.len(), 11);
        assert!(Msrs::from_entries(&e).is_ok());
    }

    #[test]
    fn lint_modes() {
        let mut lapic = kvm_lapic_state { regs: [0; 1024] };
        // LINT0 masked with fixed delivery; LINT1 with some other bits set.
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0000);
        set_lapic_reg(&mut lapic, APIC_LVT1, 0x0001_0700 | 0x20);
        boot_lint(&mut lapic);
        assert_eq!(lapic_reg(&lapic, APIC_LVT0), 0x0001_0700);
        assert_eq!(lapic_reg(&lapic, APIC_LVT1), 0x0001_0420);
        // Bytes with the top bit set survive the c_char conversion.
        set_lapic_reg(&mut lapic, 0x80, 0xfedc_ba98);
        assert_eq!(lapic_reg(&lapic, 0x80), 0xfedc_ba98);
    }

    #[test]
    fn boot_structures_written_to_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_u64s(&mem, "GDT", BOOT_GDT_START, &boot_gdt()).unwrap();
        write_u64s(&mem, "page tables", PML4_START, &boot_page_tables()).unwrap();
        let cs: u64 = mem.read_obj(GuestAddress(BOOT_GDT_START.0 + 0x10)).unwrap();
        assert_eq!(cs, 0x00af_9b00_0000_ffff);
        let pde: u64 = mem
            .read_obj(GuestAddress(PD_START.0 + 3 * 0x1000 + 8))
            .unwrap();
        assert_eq!(pde, (3 * GIB + LARGE_PAGE_SIZE) | 0x83);
        let err = write_u64s(&mem, "IDT", GuestAddress(0x20_0000), &[0]).unwrap_err();
        assert!(err.to_string().contains("IDT"));
    }
}
