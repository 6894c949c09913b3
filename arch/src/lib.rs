//! The x86_64 guest platform of vfvm.
//!
//! This crate holds the pure, device-free knowledge of what an x86_64 Linux
//! guest expects to find when its first vCPU starts executing:
//!
//! - [`layout`]: the guest physical address map and the I/O ports in use;
//! - [`e820`]: the memory map handed to the kernel;
//! - [`boot`]: loading a kernel (bzImage or ELF vmlinux), its command line and
//!   initrd, and filling the Linux zero page (`boot_params`);
//! - [`cpuid`]: the per-vCPU CPUID table (APIC IDs and topology);
//! - [`regs`]: register, segment, page-table, FPU, MSR and LAPIC state for the
//!   64-bit Linux boot protocol entry;
//! - [`acpi`]: the ACPI tables (RSDP, XSDT, FADT, DSDT, MADT, MCFG);
//! - [`smbios`]: the SMBIOS 3.0 tables (system UUID, OEM strings, CPUs, memory);
//! - [`reset`]: the stub at the reset vector.
//!
//! Nothing here runs threads or emulates devices; the VMM calls these
//! functions while building a VM. The constants in [`layout`] are the
//! contract with the devices crate (port numbers and values it must match).

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod e820;
pub mod layout;
pub mod regs;
pub mod reset;
pub mod smbios;
