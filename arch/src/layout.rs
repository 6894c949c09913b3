//! The guest physical address map and the I/O ports of the platform.
//!
//! # Guest physical memory
//!
//! | Range (guest physical)              | Use                                              |
//! |-------------------------------------|--------------------------------------------------|
//! | `0x0000_0500..0x0000_0530`          | boot GDT ([`BOOT_GDT_START`])                    |
//! | `0x0000_0600..0x0000_0608`          | boot IDT, empty ([`BOOT_IDT_START`])             |
//! | `0x0000_7000..0x0000_8000`          | zero page / `boot_params` ([`ZERO_PAGE_START`])  |
//! | `0x0000_8000..0x0000_8ff0`          | boot stack, grows down from [`BOOT_STACK_POINTER`] |
//! | `0x0000_9000..0x0000_a000`          | PML4 ([`PML4_START`])                            |
//! | `0x0000_a000..0x0000_b000`          | PDPT ([`PDPT_START`])                            |
//! | `0x0000_b000..0x0000_f000`          | 4 page directories, 2 MiB pages ([`PD_START`])   |
//! | `0x0002_0000..0x0002_1000`          | kernel command line ([`CMDLINE_START`], [`CMDLINE_MAX_SIZE`]) |
//! | `0x0000_0000..0x0009_fc00`          | RAM (E820 usable)                                |
//! | `0x0009_fc00..0x000e_0000`          | EBDA / legacy video / option ROMs (reserved)     |
//! | `0x000e_0000..0x000f_0000`          | ACPI tables, RSDP first ([`ACPI_START`]) (reserved) |
//! | `0x000f_0000..0x000f_fff0`          | SMBIOS 3.0 entry point, then its structure table ([`SMBIOS_START`]) (reserved) |
//! | `0x000f_fff0..0x0010_0000`          | reset stub at the reset vector ([`RESET_VECTOR`]) (reserved) |
//! | `0x0010_0000..min(RAM, 3 GiB)`      | RAM; kernel loaded at [`HIMEM_START`], initrd at the top |
//! | `0xc000_0000..0xe000_0000`          | PCI 32-bit MMIO window ([`MMIO32_START`])        |
//! | `0xe000_0000..0xe010_0000`          | PCI ECAM, bus 0 only ([`ECAM_START`]) (reserved) |
//! | `0xfeb0_0000..0xfeb0_1000`          | ACPI Generic Event Device's status register ([`GED_START`]) |
//! | `0xfeb0_1000..0xfeb0_2000`          | ACPI PCI hotplug controller's registers ([`PCIHP_START`]) |
//! | `0xfec0_0000..0xfec0_1000`          | IOAPIC ([`IOAPIC_START`])                        |
//! | `0xfee0_0000..0xfee0_1000`          | LAPIC ([`LAPIC_START`])                          |
//! | `0xfffb_c000..0xfffc_0000`          | KVM identity-map page + TSS ([`KVM_IDENTITY_MAP_START`], [`KVM_TSS_START`]) |
//! | `0x1_0000_0000..`                   | RAM above 3 GiB continues at 4 GiB               |
//! | [`mmio64_window`]                   | PCI 64-bit MMIO window, 1 GiB aligned above RAM  |
//!
//! RAM starts at 0; the 32-bit MMIO hole is `[3 GiB, 4 GiB)` ([`MMIO_HOLE_START`]),
//! see [`ram_ranges`].
//!
//! # I/O ports
//!
//! | Port(s)          | Use                                                          |
//! |------------------|--------------------------------------------------------------|
//! | `0x70..0x72`     | CMOS RTC, IRQ 8 ([`RTC_PORT`], [`RTC_IRQ`])                  |
//! | `0x3f8..0x400`   | COM1 16550 UART, IRQ 4 ([`COM1_PORT`], [`COM1_IRQ`])         |
//! | `0xcf8..0xd00`   | PCI configuration mechanism #1 ([`PCI_CONFIG_PORT`])         |
//! | `0x600`          | ACPI power management: reset and S5 ([`PM_PORT`])            |
//! | `0x64`           | i8042 command port, `0xfe` resets ([`I8042_COMMAND_PORT`])   |
//! | `0xc000..0x10000`| PCI I/O window: I/O BARs ([`PCI_IO_START`])                  |
//!
//! # Interrupts (IOAPIC pins)
//!
//! | GSI | Use |
//! |-----|-----|
//! | 2   | PIT (ISA IRQ 0, MADT override) |
//! | 4   | COM1 ([`COM1_IRQ`]) |
//! | 8   | CMOS RTC ([`RTC_IRQ`]) |
//! | 9   | ACPI Generic Event Device: power button, PCI slot events ([`GED_IRQ`]) |

use vm_memory::GuestAddress;

/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// 1 GiB.
pub const GIB: u64 = 1 << 30;

// ---- Low memory: boot structures ----

/// Guest address of the boot GDT (see [`crate::regs`]).
pub const BOOT_GDT_START: GuestAddress = GuestAddress(0x500);
/// Guest address of the (empty) boot IDT.
pub const BOOT_IDT_START: GuestAddress = GuestAddress(0x600);
/// Guest address of the zero page (`struct boot_params`).
pub const ZERO_PAGE_START: GuestAddress = GuestAddress(0x7000);
/// Initial stack pointer of the boot vCPU (the stack grows down below it).
pub const BOOT_STACK_POINTER: GuestAddress = GuestAddress(0x8ff0);
/// Guest address of the boot PML4 page.
pub const PML4_START: GuestAddress = GuestAddress(0x9000);
/// Guest address of the boot PDPT page.
pub const PDPT_START: GuestAddress = GuestAddress(0xa000);
/// Guest address of the first of the boot page directories.
pub const PD_START: GuestAddress = GuestAddress(0xb000);
/// Size of the identity mapping built by the boot page tables (4 GiB,
/// 2 MiB pages: one page directory per GiB).
pub const BOOT_IDENTITY_MAP_SIZE: u64 = 4 * GIB;
/// Guest address of the kernel command line.
pub const CMDLINE_START: GuestAddress = GuestAddress(0x20000);
/// Maximum size of the kernel command line, including the terminating NUL.
pub const CMDLINE_MAX_SIZE: usize = 0x1000;

// ---- Legacy BIOS area ----

/// Start of the Extended BIOS Data Area; E820 RAM below 1 MiB ends here.
pub const EBDA_START: GuestAddress = GuestAddress(0x9fc00);
/// Start of the ACPI table area (the RSDP is written here, where the kernel
/// would also scan for it).
pub const ACPI_START: GuestAddress = GuestAddress(0xe0000);
/// End (exclusive) of the ACPI table area.
pub const ACPI_END: GuestAddress = GuestAddress(0xf0000);
/// The SMBIOS entry point, followed by the structure table. Linux finds it
/// without firmware by scanning `0xF0000..0x100000` on 16-byte boundaries.
pub const SMBIOS_START: GuestAddress = GuestAddress(0xf0000);
/// End (exclusive) of the SMBIOS area: the reset vector follows.
pub const SMBIOS_END: GuestAddress = RESET_VECTOR;
/// The x86 reset vector (F000:FFF0), where [`crate::reset`] puts its stub.
pub const RESET_VECTOR: GuestAddress = GuestAddress(0xffff0);
/// End (exclusive) of the legacy BIOS area; E820 reserves up to here.
pub const BIOS_END: GuestAddress = GuestAddress(0x10_0000);
/// Start of high memory: where the kernel is loaded.
pub const HIMEM_START: GuestAddress = GuestAddress(0x10_0000);

// ---- The 32-bit MMIO hole [3 GiB, 4 GiB) ----

/// Start of the 32-bit MMIO hole; RAM beyond this size continues at 4 GiB.
pub const MMIO_HOLE_START: GuestAddress = GuestAddress(3 * GIB);
/// End (exclusive) of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: GuestAddress = GuestAddress(4 * GIB);
/// Start of the PCI 32-bit MMIO window (BARs below 4 GiB).
pub const MMIO32_START: GuestAddress = GuestAddress(0xc000_0000);
/// Size of the PCI 32-bit MMIO window.
pub const MMIO32_SIZE: u64 = 0x2000_0000;
/// Start of the PCI Express ECAM (MMCONFIG) area, segment 0.
pub const ECAM_START: GuestAddress = GuestAddress(0xe000_0000);
/// Size of the ECAM area: bus 0 only (32 devices x 8 functions x 4 KiB).
pub const ECAM_SIZE: u64 = MIB;
/// Last PCI bus number decoded by the ECAM area.
pub const ECAM_LAST_BUS: u8 = 0;
/// The ACPI Generic Event Device's MMIO status register (one 32-bit word;
/// the page is reserved for it).
pub const GED_START: GuestAddress = GuestAddress(0xfeb0_0000);
/// Size of the GED's MMIO page.
pub const GED_SIZE: u64 = 0x1000;
/// The ACPI PCI hotplug controller's registers (slots up, slots down,
/// eject, present; the page is reserved for them).
pub const PCIHP_START: GuestAddress = GuestAddress(0xfeb0_1000);
/// Size of the hotplug controller's MMIO page.
pub const PCIHP_SIZE: u64 = 0x1000;
/// IOAPIC MMIO base.
pub const IOAPIC_START: GuestAddress = GuestAddress(0xfec0_0000);
/// LAPIC MMIO base.
pub const LAPIC_START: GuestAddress = GuestAddress(0xfee0_0000);
/// Address for `KVM_SET_IDENTITY_MAP_ADDR` (one page, Intel only).
pub const KVM_IDENTITY_MAP_START: GuestAddress = GuestAddress(0xfffb_c000);
/// Address for `KVM_SET_TSS_ADDR` (three pages, Intel only).
pub const KVM_TSS_START: GuestAddress = GuestAddress(0xfffb_d000);

// ---- The 64-bit MMIO window ----

/// Alignment of the start of the 64-bit MMIO window.
pub const MMIO64_ALIGN: u64 = GIB;

// ---- I/O ports ----

/// CMOS RTC index port (the data port follows).
pub const RTC_PORT: u16 = 0x70;
/// CMOS RTC ports.
pub const RTC_PORT_SIZE: u16 = 2;
/// CMOS RTC legacy IRQ (GSI).
pub const RTC_IRQ: u32 = 8;
/// COM1 base port.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1 legacy IRQ (GSI).
pub const COM1_IRQ: u32 = 4;
/// PCI configuration mechanism #1: address port 0xcf8, data ports 0xcfc..0xd00.
pub const PCI_CONFIG_PORT: u16 = 0xcf8;
/// Size of the PCI configuration mechanism #1 port range.
pub const PCI_CONFIG_PORT_SIZE: u16 = 8;
/// The ACPI power-management port (one byte): FADT reset register, sleep
/// control register and sleep status register all point here.
pub const PM_PORT: u16 = 0x600;
/// Value written to [`PM_PORT`] to reset the machine (FADT `RESET_VALUE`).
pub const PM_RESET_VALUE: u8 = 1;
/// SLP_TYP of the S5 (soft off) state, as returned by the DSDT `\_S5_` object.
pub const PM_S5_SLP_TYP: u8 = 5;
/// SLP_EN bit of the hardware-reduced sleep control register.
pub const PM_SLP_EN: u8 = 1 << 5;
/// Value written to [`PM_PORT`] to power off: `SLP_TYP(5) << 2 | SLP_EN`.
/// This is what Linux writes in `acpi_hw_extended_sleep()` for S5.
pub const PM_S5_VALUE: u8 = (PM_S5_SLP_TYP << 2) | PM_SLP_EN;
/// GSI of the ACPI Generic Event Device (edge-triggered, active high): the
/// pin of the SCI on PCs, free on a hardware-reduced platform.
pub const GED_IRQ: u32 = 9;
/// First GSI (IOAPIC pin) of PCI INTx: pins 16..24, level-triggered,
/// active low, as ACPI `_PRT` tells the guest.
pub const PCI_INTX_GSI_BASE: u32 = 16;
/// Number of IOAPIC pins PCI INTx is spread over.
pub const PCI_INTX_GSIS: u32 = 8;

/// The GSI that INTx pin `pin` (1 = INTA# .. 4 = INTD#) of a function in
/// slot `slot` of bus 0 raises: the usual swizzle, over eight pins so that
/// neighbouring slots rarely share one.
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u32 {
    let pin = u32::from(pin.clamp(1, 4)) - 1;
    PCI_INTX_GSI_BASE + (u32::from(slot) + pin) % PCI_INTX_GSIS
}

/// Start of the PCI I/O window, where I/O BARs are placed (above every
/// fixed port of the platform, as on a PC).
pub const PCI_IO_START: u16 = 0xc000;
/// Size of the PCI I/O window: up to the last port.
pub const PCI_IO_SIZE: u16 = 0x4000;
/// i8042 command port.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// i8042 command that pulses the CPU reset line.
pub const I8042_RESET_COMMAND: u8 = 0xfe;

// The layout invariants, checked at compile time.
const _: () = {
    // The windows sit inside the hole, in order, without overlap.
    assert!(MMIO32_START.0 == MMIO_HOLE_START.0);
    assert!(MMIO32_START.0 + MMIO32_SIZE == ECAM_START.0);
    assert!(ECAM_SIZE == (ECAM_LAST_BUS as u64 + 1) << 20);
    assert!(ECAM_START.0 + ECAM_SIZE <= GED_START.0);
    assert!(GED_START.0 + GED_SIZE <= PCIHP_START.0);
    assert!(PCIHP_START.0 + PCIHP_SIZE <= IOAPIC_START.0);
    assert!(GED_IRQ != COM1_IRQ && GED_IRQ != RTC_IRQ && GED_IRQ < 24);
    assert!(IOAPIC_START.0 < LAPIC_START.0);
    assert!(LAPIC_START.0 + 0x1000 <= KVM_IDENTITY_MAP_START.0);
    assert!(KVM_IDENTITY_MAP_START.0 + 0x1000 == KVM_TSS_START.0);
    assert!(KVM_TSS_START.0 + 3 * 0x1000 <= MMIO_HOLE_END.0);
    // The low boot structures do not overlap (the GDT has 6 entries).
    assert!(BOOT_GDT_START.0 + 6 * 8 <= BOOT_IDT_START.0);
    assert!(BOOT_IDT_START.0 + 8 <= ZERO_PAGE_START.0);
    assert!(ZERO_PAGE_START.0 + 0x1000 <= BOOT_STACK_POINTER.0);
    assert!(BOOT_STACK_POINTER.0 < PML4_START.0);
    assert!(PML4_START.0 + 0x1000 == PDPT_START.0);
    assert!(PDPT_START.0 + 0x1000 == PD_START.0);
    assert!(PD_START.0 + (BOOT_IDENTITY_MAP_SIZE / GIB) * 0x1000 <= CMDLINE_START.0);
    assert!(CMDLINE_START.0 + CMDLINE_MAX_SIZE as u64 <= EBDA_START.0);
    assert!(EBDA_START.0 <= ACPI_START.0 && ACPI_END.0 == SMBIOS_START.0);
    assert!(SMBIOS_START.0.is_multiple_of(16) && SMBIOS_END.0 == RESET_VECTOR.0);
    assert!(RESET_VECTOR.0 + 16 == BIOS_END.0 && BIOS_END.0 == HIMEM_START.0);
    // The PCI I/O window is above the fixed ports and ends at the last one.
    assert!(PCI_IO_START as u32 + PCI_IO_SIZE as u32 == 0x1_0000);
    assert!(PCI_IO_START > PM_PORT && PCI_IO_START > PCI_CONFIG_PORT + PCI_CONFIG_PORT_SIZE);
    // The PM port values the guest may write are distinguishable.
    assert!(PM_S5_VALUE == 0x34 && PM_S5_VALUE != PM_RESET_VALUE);
};

/// The guest RAM regions for `mem_size` bytes of RAM: from 0 up to the
/// 32-bit MMIO hole, and the remainder from 4 GiB.
pub fn ram_ranges(mem_size: u64) -> Vec<(GuestAddress, u64)> {
    let hole = MMIO_HOLE_START.0;
    if mem_size <= hole {
        vec![(GuestAddress(0), mem_size)]
    } else {
        vec![(GuestAddress(0), hole), (MMIO_HOLE_END, mem_size - hole)]
    }
}

/// End (exclusive) of the guest physical address range occupied by RAM,
/// never below 4 GiB.
fn ram_end(mem_size: u64) -> u64 {
    ram_ranges(mem_size)
        .iter()
        .map(|(start, len)| start.0 + len)
        .max()
        .unwrap_or(0)
        .max(MMIO_HOLE_END.0)
}

/// The PCI 64-bit MMIO window: it starts at the end of RAM (at least 4 GiB)
/// aligned up to 1 GiB and extends up to the guest physical address limit
/// `1 << phys_bits` (the size is 0 if RAM leaves no room).
pub fn mmio64_window(mem_size: u64, phys_bits: u8) -> (GuestAddress, u64) {
    let start = ram_end(mem_size).next_multiple_of(MMIO64_ALIGN);
    let limit = 1u64.checked_shl(phys_bits.into()).unwrap_or(u64::MAX);
    (GuestAddress(start), limit.saturating_sub(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_below_hole() {
        assert_eq!(ram_ranges(512 * MIB), vec![(GuestAddress(0), 512 * MIB)]);
    }

    #[test]
    fn ram_exactly_up_to_hole() {
        assert_eq!(ram_ranges(3 * GIB), vec![(GuestAddress(0), 3 * GIB)]);
    }

    #[test]
    fn ram_above_hole_continues_at_4g() {
        assert_eq!(
            ram_ranges(8 * GIB),
            vec![(GuestAddress(0), 3 * GIB), (GuestAddress(4 * GIB), 5 * GIB)]
        );
    }

    #[test]
    fn mmio64_small_ram() {
        let (start, size) = mmio64_window(2 * GIB, 40);
        assert_eq!(start, GuestAddress(4 * GIB));
        assert_eq!(size, (1 << 40) - 4 * GIB);
    }

    #[test]
    fn mmio64_aligned_above_ram() {
        // 3 GiB + 1.5 GiB of RAM ends at 5.5 GiB; the window starts at 6 GiB.
        let (start, size) = mmio64_window(4 * GIB + 512 * MIB, 46);
        assert_eq!(start, GuestAddress(6 * GIB));
        assert_eq!(start.0 + size, 1 << 46);
        assert!(size >= 64 * GIB);
    }

    #[test]
    fn intx_swizzle_stays_on_the_pci_pins() {
        assert_eq!(pci_intx_gsi(0, 1), 16);
        assert_eq!(pci_intx_gsi(5, 1), 21);
        assert_eq!(pci_intx_gsi(5, 4), 16);
        assert_eq!(pci_intx_gsi(31, 2), 16);
        for slot in 0..32 {
            for pin in 1..=4 {
                let gsi = pci_intx_gsi(slot, pin);
                assert!((PCI_INTX_GSI_BASE..PCI_INTX_GSI_BASE + PCI_INTX_GSIS).contains(&gsi));
            }
        }
    }

    #[test]
    fn mmio64_no_room() {
        let (_, size) = mmio64_window(64 * GIB, 36);
        assert_eq!(size, 0);
    }
}
