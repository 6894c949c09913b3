//! Walking and hiding PCI capabilities in a function's config-space image.
//!
//! Hiding is done by unlinking: the guest follows the next pointers we
//! present, which skip the hidden capabilities. The hidden bytes stay where
//! they are (a guest that pokes at a fixed offset reads the device's values),
//! exactly like QEMU does. The first extended capability sits at the fixed
//! offset 0x100 and cannot be unlinked; if it is hidden its header is shown
//! as ID 0, version 0, with the next pointer to the first visible one.

use super::le32;

/// Standard capability: power management.
pub const CAP_ID_PM: u16 = 0x01;
/// Standard capability: MSI.
pub const CAP_ID_MSI: u16 = 0x05;
/// Standard capability: MSI-X.
pub const CAP_ID_MSIX: u16 = 0x11;

/// Extended capabilities the guest must not see:
/// - SR-IOV (0x10): a VF has none, but a PF's would let the guest create VFs
///   whose BARs we do not emulate;
/// - ARI (0x0e): the function number it implies does not hold in the guest;
/// - ATS (0x0f), PRI (0x13), PASID (0x1b): need a virtual IOMMU we lack;
/// - Resizable BAR (0x15) and VF Resizable BAR (0x24): BAR sizes are fixed
///   by us from the host sizes; a resize would desynchronise them.
pub const HIDDEN_EXTENDED: &[u16] = &[0x0e, 0x0f, 0x10, 0x13, 0x15, 0x1b, 0x24];

const STATUS: usize = 0x06;
const STATUS_CAP_LIST: u8 = 1 << 4;
/// Where the standard capability list starts.
pub const CAP_POINTER: usize = 0x34;
const STANDARD_END: usize = 0x100;
const EXTENDED_START: usize = 0x100;
/// Upper bound on list length: a looping list is cut there.
const MAX_CAPS: usize = 64;

/// One capability found in the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (8 bits for standard, 16 for extended).
    pub id: u16,
    /// Byte offset of its header in config space.
    pub offset: usize,
}

fn byte(cfg: &[u8], offset: usize) -> u8 {
    cfg.get(offset).copied().unwrap_or(0)
}

/// The standard capability list of `cfg`, in list order. Malformed pointers
/// (inside the header, past 0x100) end the list; a loop is cut.
pub fn standard(cfg: &[u8]) -> Vec<Capability> {
    let mut caps = Vec::new();
    if byte(cfg, STATUS) & STATUS_CAP_LIST == 0 {
        return caps;
    }
    let mut ptr = usize::from(byte(cfg, CAP_POINTER) & !3);
    while (0x40..STANDARD_END).contains(&ptr) && caps.len() < MAX_CAPS {
        if caps.iter().any(|c: &Capability| c.offset == ptr) {
            break;
        }
        caps.push(Capability {
            id: u16::from(byte(cfg, ptr)),
            offset: ptr,
        });
        ptr = usize::from(byte(cfg, ptr + 1) & !3);
    }
    caps
}

/// The extended capability list of `cfg` (empty for a 256-byte space).
pub fn extended(cfg: &[u8]) -> Vec<Capability> {
    let mut caps = Vec::new();
    let mut ptr = EXTENDED_START;
    while ptr >= EXTENDED_START && ptr + 4 <= cfg.len() && caps.len() < MAX_CAPS {
        let header = le32(cfg, ptr);
        if header == 0 || header == u32::MAX || caps.iter().any(|c: &Capability| c.offset == ptr) {
            break;
        }
        caps.push(Capability {
            id: header as u16,
            offset: ptr,
        });
        ptr = (header >> 20) as usize & !3;
    }
    caps
}

/// Bytes to present instead of the device's so that the standard list skips
/// the capabilities for which `hide` is true: (offset, value) pairs for the
/// capability pointer and every visible next pointer.
pub fn unlink_standard(caps: &[Capability], hide: impl Fn(u16) -> bool) -> Vec<(usize, u8)> {
    let mut patches = Vec::new();
    let mut link = CAP_POINTER;
    for cap in caps.iter().filter(|c| !hide(c.id)) {
        patches.push((link, cap.offset as u8));
        link = cap.offset + 1;
    }
    patches.push((link, 0));
    patches
}

/// Header dwords to present so that the extended list skips the hidden
/// capabilities: (offset, header) pairs. `cfg` supplies the original headers.
pub fn unlink_extended(
    cfg: &[u8],
    caps: &[Capability],
    hide: impl Fn(u16) -> bool,
) -> Vec<(usize, u32)> {
    let visible: Vec<&Capability> = caps.iter().filter(|c| !hide(c.id)).collect();
    let mut patches = Vec::new();
    if caps.first().is_some_and(|c| hide(c.id)) {
        let next = visible.first().map_or(0, |c| c.offset as u32);
        patches.push((EXTENDED_START, next << 20));
    }
    for (i, cap) in visible.iter().enumerate() {
        let next = visible.get(i + 1).map_or(0, |c| c.offset as u32);
        patches.push((cap.offset, le32(cfg, cap.offset) & 0x000f_ffff | next << 20));
    }
    patches
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB image with standard caps PM@0x40 -> MSI@0x50 -> MSI-X@0x70 and
    /// extended caps SR-IOV@0x100 -> AER@0x140 -> ARI@0x180 -> DSN@0x1a0.
    fn image() -> Vec<u8> {
        let mut c = vec![0u8; 4096];
        c[STATUS] = STATUS_CAP_LIST;
        c[CAP_POINTER] = 0x40;
        c[0x40..0x42].copy_from_slice(&[0x01, 0x50]);
        c[0x50..0x52].copy_from_slice(&[0x05, 0x70]);
        c[0x70..0x72].copy_from_slice(&[0x11, 0x00]);
        let ext = |c: &mut Vec<u8>, at: usize, id: u32, next: u32| {
            c[at..at + 4].copy_from_slice(&(id | 1 << 16 | next << 20).to_le_bytes());
        };
        ext(&mut c, 0x100, 0x10, 0x140);
        ext(&mut c, 0x140, 0x01, 0x180);
        ext(&mut c, 0x180, 0x0e, 0x1a0);
        ext(&mut c, 0x1a0, 0x03, 0);
        c
    }

    fn cap(id: u16, offset: usize) -> Capability {
        Capability { id, offset }
    }

    #[test]
    fn walks_both_lists() {
        let c = image();
        assert_eq!(standard(&c), [cap(1, 0x40), cap(5, 0x50), cap(0x11, 0x70)]);
        assert_eq!(
            extended(&c),
            [
                cap(0x10, 0x100),
                cap(1, 0x140),
                cap(0x0e, 0x180),
                cap(3, 0x1a0)
            ]
        );
        assert!(extended(&c[..256]).is_empty(), "conventional PCI");
    }

    #[test]
    fn malformed_lists_end_cleanly() {
        let mut c = image();
        c[0x71] = 0x50; // MSI-X points back to MSI: a loop
        assert_eq!(standard(&c).len(), 3);
        c[STATUS] = 0;
        assert!(standard(&c).is_empty(), "no capability list bit");
        let mut c = image();
        // DSN points back to the head: a loop.
        c[0x1a0..0x1a4].copy_from_slice(&(0x03u32 | 1 << 16 | 0x100 << 20).to_le_bytes());
        assert_eq!(extended(&c).len(), 4);
        let mut c = image();
        c[0x100..0x104].fill(0xff);
        assert!(extended(&c).is_empty(), "all-ones: no extended space");
    }

    #[test]
    fn unlinks_a_middle_standard_capability() {
        let c = image();
        let patches = unlink_standard(&standard(&c), |id| id == CAP_ID_MSI);
        assert_eq!(patches, [(0x34, 0x40), (0x41, 0x70), (0x71, 0)]);
        let patches = unlink_standard(&standard(&c), |id| id == CAP_ID_PM);
        assert_eq!(patches[0], (0x34, 0x50));
        let patches = unlink_standard(&standard(&c), |_| true);
        assert_eq!(patches, [(0x34, 0)]);
    }

    #[test]
    fn hides_the_head_and_a_middle_extended_capability() {
        let mut c = image();
        let caps = extended(&c);
        let patches = unlink_extended(&c, &caps, |id| HIDDEN_EXTENDED.contains(&id));
        assert_eq!(
            patches,
            [
                (0x100, 0x140 << 20),
                (0x140, 0x01 | 1 << 16 | 0x1a0 << 20),
                (0x1a0, 0x03 | 1 << 16),
            ]
        );
        // Applying the patches and walking again sees a null head, AER, DSN.
        for (at, v) in patches {
            c[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        let ids: Vec<u16> = extended(&c).iter().map(|c| c.id).collect();
        assert_eq!(ids, [0, 0x01, 0x03]);
    }

    #[test]
    fn hiding_everything_extended_leaves_a_null_header() {
        let c = image();
        let patches = unlink_extended(&c, &extended(&c), |_| true);
        assert_eq!(patches, [(0x100, 0)]);
    }
}
