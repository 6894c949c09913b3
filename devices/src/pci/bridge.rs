//! Functions with no BARs: the host bridge at 00.0 and the ISA (LPC) bridge.

use super::{BarInfo, BarMove, BarPart, PciConfig, PciDevice};

const VENDOR_INTEL: u16 = 0x8086;

macro_rules! config_only_device {
    ($name:ident, $doc:literal, $device:expr, $class:expr) => {
        #[doc = $doc]
        pub struct $name(PciConfig);

        impl $name {
            /// The function with its fixed identity.
            pub fn new() -> Self {
                $name(PciConfig::new(VENDOR_INTEL, $device, $class, 0))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl PciDevice for $name {
            fn read_config(&mut self, reg: usize) -> u32 {
                self.0.read(reg)
            }
            fn write_config(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove> {
                self.0.write(reg, offset, data)
            }
            fn bars(&self) -> Vec<BarInfo> {
                Vec::new()
            }
            fn set_bar_address(&mut self, _: usize, _: u64) {}
            fn set_bar_mapped(&mut self, _: usize, _: Option<u64>) {}
            fn bar_parts(&self, _: usize) -> Vec<BarPart> {
                Vec::new()
            }
            fn read_bar(&mut self, _: usize, _: u64, data: &mut [u8]) {
                data.fill(0xff);
            }
            fn write_bar(&mut self, _: usize, _: u64, _: &[u8]) {}
        }
    };
}

config_only_device!(
    HostBridge,
    "The host bridge (bhyve's `hostbridge`): an Intel Q35-like 8086:29c0, class 06.00.",
    0x29c0,
    (0x06, 0x00, 0x00)
);
config_only_device!(
    IsaBridge,
    "The LPC/ISA bridge (bhyve's `lpc`): 8086:7000, class 06.01. Legacy devices (COM1) are fixed ISA ports, present with or without it.",
    0x7000,
    (0x06, 0x01, 0x00)
);
