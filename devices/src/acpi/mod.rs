//! ACPI devices of the hardware-reduced platform.

pub mod ged;
pub mod pcihp;
