//! MSI capability emulation for functions without MSI-X.
//!
//! The whole capability after the next pointer is emulated: the guest's
//! address, data and mask bits never reach the device (VFIO programs the
//! device with host vectors). Each guest vector becomes a route of the
//! function's [`MsiVectors`], connected while MSI is enabled and the vector
//! is unmasked; VFIO signals the vectors' eventfds.

use std::sync::Arc;

use super::{le16, le32};
use crate::interrupt::{sync_vector, MsiMessage, MsiVectors};

const CONTROL_ENABLE: u16 = 1;
const CONTROL_64BIT: u16 = 1 << 7;
const CONTROL_PER_VECTOR_MASK: u16 = 1 << 8;

/// How many vectors a function with message control `control` can use.
pub fn capacity(control: u16) -> usize {
    1 << ((control >> 1) & 7).min(5)
}

/// The MSI state of one function.
pub struct Msi {
    control: u16,
    vectors: Arc<dyn MsiVectors>,
    connected: Vec<bool>,
    active: usize,
}

impl Msi {
    /// MSI for a device whose capability has message control `control`;
    /// `vectors` should hold [`capacity`] vectors.
    pub fn new(control: u16, vectors: Arc<dyn MsiVectors>) -> Self {
        let n = vectors.len();
        Msi {
            control,
            vectors,
            connected: vec![false; n],
            active: 0,
        }
    }

    fn is64(&self) -> bool {
        self.control & CONTROL_64BIT != 0
    }

    fn masking(&self) -> bool {
        self.control & CONTROL_PER_VECTOR_MASK != 0
    }

    /// The emulated bytes from message control (capability offset 2) to the
    /// end of the capability: initial values and guest-writable masks.
    pub fn layout(&self) -> (Vec<u8>, Vec<u8>) {
        // Message control: enable and multiple message enable are writable.
        let ro = self.control & !(CONTROL_ENABLE | 0x70);
        let mut value = ro.to_le_bytes().to_vec();
        let mut mask = vec![0x71, 0x00];
        let mut field = |len: usize, writable: &[u8]| {
            value.extend(std::iter::repeat_n(0, len));
            mask.extend(writable.iter().copied().cycle().take(len));
        };
        field(4, &[0xfc, 0xff, 0xff, 0xff]); // address, dword aligned
        if self.is64() {
            field(4, &[0xff]);
        }
        field(2, &[0xff]); // data
        if self.masking() {
            field(2, &[0x00]); // reserved (extended message data)
            field(4, &[0xff]); // mask bits
            field(4, &[0x00]); // pending bits: pending stays in the eventfds
        }
        (value, mask)
    }

    /// Takes the emulated bytes (as laid out by [`Msi::layout`]) after a
    /// guest write; reroutes and (dis)connects vectors. Returns the number
    /// of vectors VFIO must now signal if it changed (0: disable MSI).
    pub fn update(&mut self, body: &[u8]) -> Option<usize> {
        let le16 = |at| le16(body, at);
        let le32 = |at| le32(body, at);
        let control = le16(0);
        let (address, data_at) = if self.is64() {
            (u64::from(le32(6)) << 32 | u64::from(le32(2)), 10)
        } else {
            (u64::from(le32(2)), 6)
        };
        let data = u32::from(le16(data_at));
        let mask = if self.masking() { le32(data_at + 4) } else { 0 };
        let count = (1usize << ((control >> 4) & 7).min(5)).min(self.connected.len());
        let active = if control & CONTROL_ENABLE != 0 {
            count
        } else {
            0
        };
        for i in 0..self.connected.len() {
            let live = i < active && mask & (1 << i) == 0;
            let msg = MsiMessage {
                address,
                data: data & !(count as u32 - 1) | i as u32,
            };
            let live = live.then_some(msg);
            sync_vector(&*self.vectors, i, live, &mut self.connected[i], "msi");
        }
        (active != self.active).then(|| {
            self.active = active;
            active
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::testing::FakeVectors;

    #[test]
    fn layout_follows_the_capability_format() {
        let fake = FakeVectors::new(1);
        let (v, m) = Msi::new(0x0000, fake.clone()).layout();
        assert_eq!((v.len(), m[..2].to_vec()), (8, vec![0x71, 0]));
        let (v, m) = Msi::new(0x0186, fake).layout(); // 64-bit, masking, 8 vectors
        assert_eq!(v.len(), 22);
        assert_eq!(&v[..2], &[0x86, 0x01]);
        assert_eq!(&m[10..12], &[0xff, 0xff], "data");
        assert_eq!(&m[14..18], &[0xff; 4], "mask bits");
        assert_eq!(&m[18..22], &[0; 4], "pending bits are read-only");
        assert_eq!(capacity(0x0186), 8);
    }

    #[test]
    fn enabling_routes_each_vector_and_reports_the_count() {
        let fake = FakeVectors::new(4);
        let mut msi = Msi::new(0x0184, fake.clone()); // 64-bit, masking, 4 vectors
        let (mut body, _) = msi.layout();
        body[2..6].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        body[10..12].copy_from_slice(&0x40u16.to_le_bytes());
        body[14..18].copy_from_slice(&0b10u32.to_le_bytes()); // vector 1 masked
        body[0] |= 1 | 1 << 4; // enable, 2 vectors
        assert_eq!(msi.update(&body), Some(2));
        assert_eq!(
            fake.take_log(),
            ["route 0 0xfee00000 0x40", "enable 0 true"]
        );
        body[14] = 0; // unmask vector 1
        assert_eq!(msi.update(&body), None);
        assert_eq!(
            fake.take_log()[2..],
            ["route 1 0xfee00000 0x41", "enable 1 true"]
        );
        body[0] &= !1;
        assert_eq!(msi.update(&body), Some(0));
        assert_eq!(fake.take_log(), ["enable 0 false", "enable 1 false"]);
    }
}
