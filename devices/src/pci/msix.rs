//! MSI-X: the capability, the vector table and the pending-bit array.
//!
//! Shared by every device that offers MSI-X (virtio-pci, VFIO). The table
//! lives in a BAR the device traps; each entry the guest programs becomes a
//! route of the device's [`MsiVectors`], and a vector is connected to the
//! guest only while MSI-X is enabled, the function is not masked and the
//! entry is not masked.

use std::sync::Arc;

use log::warn;

use crate::interrupt::{sync_vector, MsiMessage, MsiVectors};

/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
const CAP_ID_MSIX: u8 = 0x11;
const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

#[derive(Clone, Copy, Default)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    control: u32,
}

impl Entry {
    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.addr_hi) << 32 | u64::from(self.addr_lo),
            data: self.data,
        }
    }
}

/// The MSI-X state of one function.
pub struct Msix {
    entries: Vec<Entry>,
    control: u16,
    table: (u8, u32),
    pba: (u8, u32),
    vectors: Arc<dyn MsiVectors>,
    connected: Vec<bool>,
}

impl Msix {
    /// MSI-X with one table entry per vector of `vectors`; the table is at
    /// `table.1` in BAR `table.0`, the PBA at `pba.1` in BAR `pba.0`.
    pub fn new(vectors: Arc<dyn MsiVectors>, table: (u8, u32), pba: (u8, u32)) -> Self {
        let n = vectors.len();
        Msix {
            entries: vec![
                Entry {
                    control: ENTRY_MASKED,
                    ..Entry::default()
                };
                n
            ],
            control: 0,
            table,
            pba,
            vectors,
            connected: vec![false; n],
        }
    }

    /// Capability bytes and write masks for [`super::PciConfig::add_capability`]:
    /// only the enable and function-mask bits are writable.
    pub fn capability(&self) -> ([u8; 11], [u8; 11]) {
        let size = (self.entries.len() as u16).saturating_sub(1);
        let t = self.table.1 | u32::from(self.table.0);
        let p = self.pba.1 | u32::from(self.pba.0);
        let mut body = [0u8; 11];
        body[0] = CAP_ID_MSIX;
        // body[1..3]: message control (after the next pointer).
        body[1..3].copy_from_slice(&size.to_le_bytes());
        body[3..7].copy_from_slice(&t.to_le_bytes());
        body[7..11].copy_from_slice(&p.to_le_bytes());
        let mut mask = [0u8; 11];
        mask[2] = 0xc0;
        (body, mask)
    }

    /// Takes the message-control word after a config write to it.
    pub fn set_control(&mut self, control: u16) {
        self.control = control & (CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        self.sync_all();
    }

    /// Whether the guest enabled MSI-X.
    pub fn enabled(&self) -> bool {
        self.control & CONTROL_ENABLE != 0
    }

    /// Size in bytes of the vector table.
    pub fn table_len(&self) -> u64 {
        self.entries.len() as u64 * MSIX_ENTRY_SIZE
    }

    /// Size in bytes of the pending-bit array.
    pub fn pba_len(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(64) * 8
    }

    /// A read at `offset` in the vector table (4- or 8-byte accesses).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            if let Some(v) = self.table_dword(offset + 4 * i as u64) {
                chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
            }
        }
    }

    fn table_dword(&self, offset: u64) -> Option<u32> {
        let e = self.entries.get((offset / MSIX_ENTRY_SIZE) as usize)?;
        Some(match offset % MSIX_ENTRY_SIZE {
            0 => e.addr_lo,
            4 => e.addr_hi,
            8 => e.data,
            12 => e.control,
            _ => return None,
        })
    }

    /// A write at `offset` in the vector table (4- or 8-byte accesses).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !offset.is_multiple_of(4) || !data.len().is_multiple_of(4) {
            warn!("msix: ignoring unaligned table write at {offset:#x}");
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let off = offset + 4 * i as u64;
            let v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let index = (off / MSIX_ENTRY_SIZE) as usize;
            let Some(e) = self.entries.get_mut(index) else {
                continue;
            };
            match off % MSIX_ENTRY_SIZE {
                0 => e.addr_lo = v,
                4 => e.addr_hi = v,
                8 => e.data = v,
                _ => e.control = v & ENTRY_MASKED,
            }
            self.sync(index);
        }
    }

    /// A read in the pending-bit array. Pending interrupts wait in the
    /// vectors' eventfds, so the array reads as zero.
    pub fn read_pba(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    /// Raises `vector` from userspace. While the vector is masked the
    /// signal stays pending and is delivered on unmask.
    pub fn trigger(&self, vector: usize) {
        if let Err(e) = self.vectors.trigger(vector) {
            warn!("msix: cannot raise vector {vector}: {e}");
        }
    }

    fn sync_all(&mut self) {
        for i in 0..self.entries.len() {
            self.sync(i);
        }
    }

    /// Whether the guest lets vector `index` fire: MSI-X enabled, the
    /// function and the entry unmasked.
    pub fn is_live(&self, index: usize) -> bool {
        self.entries.get(index).is_some_and(|e| {
            self.enabled()
                && self.control & CONTROL_FUNCTION_MASK == 0
                && e.control & ENTRY_MASKED == 0
        })
    }

    fn sync(&mut self, index: usize) {
        let live = self.is_live(index).then(|| self.entries[index].message());
        sync_vector(
            &*self.vectors,
            index,
            live,
            &mut self.connected[index],
            "msix",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::testing::FakeVectors;

    fn w(m: &mut Msix, off: u64, v: u32) {
        m.write_table(off, &v.to_le_bytes());
    }

    #[test]
    fn vector_goes_live_only_when_enabled_and_unmasked() {
        let fake = FakeVectors::new(2);
        let mut m = Msix::new(fake.clone(), (1, 0), (1, 0x800));
        w(&mut m, 16, 0xfee0_0000);
        w(&mut m, 24, 0x41);
        w(&mut m, 28, 0); // unmask entry 1, MSI-X still disabled
        assert!(fake.take_log().is_empty());
        m.set_control(CONTROL_ENABLE);
        assert_eq!(
            fake.take_log(),
            ["route 1 0xfee00000 0x41", "enable 1 true"]
        );
        m.set_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        assert_eq!(fake.take_log(), ["enable 1 false"]);
        m.set_control(0);
        assert!(fake.take_log().is_empty());
    }

    #[test]
    fn table_reads_back_and_ignores_out_of_range() {
        let fake = FakeVectors::new(1);
        let mut m = Msix::new(fake, (1, 0), (1, 0x800));
        w(&mut m, 0, 0xfee0_1000);
        w(&mut m, 4, 0);
        w(&mut m, 8, 0x31);
        w(&mut m, 64, 0x1234); // past the table
        let mut b = [0u8; 8];
        m.read_table(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0xfee0_1000);
        let mut b = [0u8; 4];
        m.read_table(12, &mut b);
        assert_eq!(u32::from_le_bytes(b), 1, "entries start masked");
        m.read_table(64, &mut b);
        assert_eq!(b, [0; 4]);
        m.write_table(2, &[1, 2]); // unaligned: ignored, no panic
    }

    #[test]
    fn capability_encodes_size_and_locations() {
        let fake = FakeVectors::new(3);
        let m = Msix::new(fake, (2, 0x2000), (2, 0x3000));
        let (body, mask) = m.capability();
        assert_eq!(body, [0x11, 2, 0, 0x02, 0x20, 0, 0, 0x02, 0x30, 0, 0]);
        assert_eq!(mask[2], 0xc0);
        assert_eq!((m.table_len(), m.pba_len()), (48, 8));
    }
}
