//! Test doubles for PCI, for the unit tests and (with the `fuzzing`
//! feature) vmm's unit tests and the fuzz targets in fuzz/.

use super::{BarInfo, BarMove, BarPart, PciConfig, PciDevice};

/// A function that is its config space and nothing else: the BARs its
/// [`PciConfig`] declares, all trapped, reading as they are left and
/// dropping writes.
pub struct ConfigFunction(pub PciConfig);

impl PciDevice for ConfigFunction {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.0.read(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove> {
        self.0.write(reg, offset, data)
    }
    fn bars(&self) -> Vec<BarInfo> {
        self.0.bars()
    }
    fn set_bar_address(&mut self, index: usize, addr: u64) {
        self.0.set_bar_address(index, addr)
    }
    fn set_bar_mapped(&mut self, index: usize, at: Option<u64>) {
        self.0.set_mapped(index, at)
    }
    fn bar_parts(&self, _: usize) -> Vec<BarPart> {
        Vec::new()
    }
    fn read_bar(&mut self, _: usize, _: u64, _: &mut [u8]) {}
    fn write_bar(&mut self, _: usize, _: u64, _: &[u8]) {}
}
