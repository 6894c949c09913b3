//! Byte-granular virtualization of a passthrough function's config space.
//!
//! Each byte is either passed through to the device or emulated: an
//! emulated byte has a value held here and a mask of the bits the guest may
//! change. A guest read takes the device's bytes and replaces the emulated
//! ones; a guest write updates emulated bytes through their masks and is
//! forwarded, in runs of consecutive bytes, for the passthrough ones.

use std::ops::Range;

/// Virtualized bytes over a config space of up to 4 KiB.
pub struct ConfigOverlay {
    value: Vec<u8>,
    writable: Vec<u8>,
    emulated: Vec<bool>,
}

impl ConfigOverlay {
    /// Everything passed through, over a space of `len` bytes.
    pub fn new(len: usize) -> Self {
        ConfigOverlay {
            value: vec![0; len],
            writable: vec![0; len],
            emulated: vec![false; len],
        }
    }

    /// Emulates the bytes at `offset` with initial `value` and the guest-
    /// writable bit masks `writable` (same length). Out-of-space bytes are
    /// ignored.
    pub fn emulate(&mut self, offset: usize, value: &[u8], writable: &[u8]) {
        for (i, (&v, &w)) in value.iter().zip(writable).enumerate() {
            let at = offset + i;
            if at < self.value.len() {
                self.value[at] = v;
                self.writable[at] = w;
                self.emulated[at] = true;
            }
        }
    }

    /// Replaces the emulated bytes of `data`, read from the device at
    /// `offset`, with their emulated values.
    pub fn merge_read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            if self.emulated.get(offset + i) == Some(&true) {
                *b = self.value[offset + i];
            }
        }
    }

    /// Applies a guest write of `data` at `offset`: emulated bytes change
    /// through their masks; the returned ranges (indices into `data`) are the
    /// runs of passthrough bytes to forward to the device.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Vec<Range<usize>> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i;
            match self.emulated.get(at) {
                Some(true) => {
                    let w = self.writable[at];
                    self.value[at] = self.value[at] & !w | b & w;
                }
                Some(false) => match runs.last_mut() {
                    Some(run) if run.end == i => run.end = i + 1,
                    _ => runs.push(i..i + 1),
                },
                None => {}
            }
        }
        runs
    }

    /// The emulated bytes at `range` (zero where not emulated).
    pub fn bytes(&self, range: Range<usize>) -> Vec<u8> {
        range
            .map(|at| match self.emulated.get(at) {
                Some(true) => self.value[at],
                _ => 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_merge_emulated_bytes_over_the_device() {
        let mut o = ConfigOverlay::new(256);
        o.emulate(0x3c, &[0x0a, 0x00], &[0xff, 0x00]);
        let mut dword = [0x11, 0x01, 0x22, 0x33];
        o.merge_read(0x3c, &mut dword);
        assert_eq!(dword, [0x0a, 0x00, 0x22, 0x33]);
        let mut tail = [0xee; 2];
        o.merge_read(0xff, &mut tail); // crosses the end: no panic
        assert_eq!(tail, [0xee; 2]);
    }

    #[test]
    fn writes_split_into_emulated_and_passthrough_runs() {
        let mut o = ConfigOverlay::new(256);
        // MSI-X message control at 0x72: only enable and function mask.
        o.emulate(0x72, &[0x02, 0x00], &[0x00, 0xc0]);
        let runs = o.write(0x70, &[0x11, 0x22, 0xff, 0xff]);
        assert_eq!(runs, vec![0..2; 1]);
        assert_eq!(o.bytes(0x72..0x74), [0x02, 0xc0]);
        o.emulate(0x41, &[0], &[0]);
        let runs = o.write(0x40, &[1, 2, 3, 4]);
        assert_eq!(runs, [0..1, 2..4]);
        assert_eq!(o.bytes(0x40..0x42), [0, 0]);
        assert!(o.write(0x100, &[1]).is_empty(), "outside the space");
    }
}
