//! The host function's BARs as the guest sees them, and how each BAR is split
//! into pieces mapped straight from the device and pieces trapped by vfvm.

use std::ops::Range;

use crate::pci::{BarInfo, BarKind};

/// Host page size assumed for mmap alignment (x86_64).
pub const PAGE_SIZE: u64 = 4096;

const BAR_IO: u32 = 1;
const BAR_TYPE_MASK: u32 = 0b110;
const BAR_TYPE_64: u32 = 0b100;
const BAR_PREFETCH: u32 = 0b1000;

/// Why a host BAR cannot be offered to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarError {
    /// VFIO reported a size that no BAR can have.
    #[error("BAR{index} has size {size:#x}, not a power of two")]
    BadSize { index: usize, size: u64 },
    /// The BAR register says 64-bit but it is the last register.
    #[error("BAR{index} is 64-bit but has no upper register")]
    Truncated64 { index: usize },
    /// A reserved memory type (1 or 3).
    #[error("BAR{index} has reserved memory type {kind}")]
    ReservedType { index: usize, kind: u32 },
}

/// Decodes the host's memory BARs from the BAR registers of its config space
/// and the region sizes VFIO reports (0: not implemented).
///
/// The guest-visible size of a memory BAR is the host size rounded up to a
/// page so that the direct-mapped parts line up; the device decodes only
/// its own part, and the trapped rest reads as all-ones. I/O BARs keep
/// their size (at least 4 ports) and are trapped whole.
pub fn decode(regs: [u32; 6], sizes: [u64; 6]) -> Result<Vec<BarInfo>, BarError> {
    let mut bars = Vec::new();
    let mut index = 0;
    while index < 6 {
        let (reg, size) = (regs[index], sizes[index]);
        let is64 = reg & BAR_IO == 0 && reg & BAR_TYPE_MASK == BAR_TYPE_64;
        let next = index + if is64 { 2 } else { 1 };
        if size != 0 && !size.is_power_of_two() {
            return Err(BarError::BadSize { index, size });
        }
        if size != 0 && reg & BAR_IO != 0 {
            bars.push(BarInfo {
                index,
                size: size.max(4),
                kind: BarKind::Io,
                prefetchable: false,
            });
        } else if size != 0 {
            let kind = match reg & BAR_TYPE_MASK {
                0 => BarKind::Mem32,
                BAR_TYPE_64 if index < 5 => BarKind::Mem64,
                BAR_TYPE_64 => return Err(BarError::Truncated64 { index }),
                t => {
                    return Err(BarError::ReservedType {
                        index,
                        kind: t >> 1,
                    })
                }
            };
            bars.push(BarInfo {
                index,
                size: size.max(PAGE_SIZE),
                kind,
                prefetchable: reg & BAR_PREFETCH != 0,
            });
        }
        index = next;
    }
    Ok(bars)
}

fn align_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// The page-aligned pieces of a BAR that can be mapped into the guest:
/// the `mappable` areas (VFIO's mmap-able parts of the region, clipped to
/// the host size) minus the pages that hold any `trapped` range (the MSI-X
/// table and PBA, which must reach our emulation). Sorted by offset.
pub fn direct_pieces(
    host_size: u64,
    mappable: &[Range<u64>],
    trapped: &[Range<u64>],
) -> Vec<Range<u64>> {
    let mut holes: Vec<Range<u64>> = trapped
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| align_down(r.start)..align_up(r.end))
        .collect();
    holes.sort_by_key(|r| r.start);
    let mut pieces = Vec::new();
    for area in mappable {
        let mut start = align_up(area.start);
        let end = align_down(area.end.min(host_size));
        for hole in &holes {
            if hole.end <= start || hole.start >= end {
                continue;
            }
            if hole.start > start {
                pieces.push(start..hole.start);
            }
            start = start.max(hole.end);
        }
        if start < end {
            pieces.push(start..end);
        }
    }
    pieces.sort_by_key(|r| r.start);
    pieces
}

#[cfg(test)]
// Lists of one range are what these functions take.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn bar(index: usize, size: u64, kind: BarKind, prefetchable: bool) -> BarInfo {
        BarInfo {
            index,
            size,
            kind,
            prefetchable,
        }
    }

    #[test]
    fn decodes_an_igb_vf() {
        // 82576 VF: BAR0 16 KiB 64-bit prefetchable, BAR3 16 KiB 64-bit
        // prefetchable (MSI-X).
        let regs = [0xc, 0, 0, 0xc, 0, 0];
        let sizes = [0x4000, 0, 0, 0x4000, 0, 0];
        let bars = decode(regs, sizes).unwrap();
        assert_eq!(
            bars,
            [
                bar(0, 0x4000, BarKind::Mem64, true),
                bar(3, 0x4000, BarKind::Mem64, true)
            ]
        );
    }

    #[test]
    fn decodes_32_bit_io_and_small_bars() {
        let regs = [0x0, 0x1, 0x8, 0, 0, 0];
        let sizes = [0x100, 0x20, 0x10_0000, 0, 0, 0];
        let bars = decode(regs, sizes).unwrap();
        assert_eq!(
            bars,
            [
                bar(0, PAGE_SIZE, BarKind::Mem32, false),
                bar(1, 0x20, BarKind::Io, false),
                bar(2, 0x10_0000, BarKind::Mem32, true)
            ]
        );
    }

    #[test]
    fn rejects_bad_bars() {
        let e = decode([0; 6], [0x3000, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            e,
            BarError::BadSize {
                index: 0,
                size: 0x3000
            }
        );
        let e = decode([0, 0, 0, 0, 0, 0x4], [0, 0, 0, 0, 0, 0x1000]).unwrap_err();
        assert_eq!(e, BarError::Truncated64 { index: 5 });
        let e = decode([0x2, 0, 0, 0, 0, 0], [0x1000, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e, BarError::ReservedType { index: 0, kind: 1 });
    }

    #[test]
    fn msix_table_and_pba_pages_are_cut_out() {
        // 64 KiB BAR, table at 0x2000 (3 vectors), PBA at 0x3000.
        let pieces = direct_pieces(0x10000, &[0..0x10000], &[0x2000..0x2030, 0x3000..0x3008]);
        assert_eq!(pieces, [0..0x2000, 0x4000..0x10000]);
        // Table straddling a page boundary takes both pages.
        let pieces = direct_pieces(0x10000, &[0..0x10000], &[0x1ff0..0x2010]);
        assert_eq!(pieces, [0..0x1000, 0x3000..0x10000]);
        // Table and PBA in the first page of a 16 KiB BAR (igb VF BAR3).
        let pieces = direct_pieces(0x4000, &[0..0x4000], &[0..0x30, 0x2000..0x2008]);
        assert_eq!(pieces, [0x1000..0x2000, 0x3000..0x4000]);
    }

    #[test]
    fn sparse_areas_and_small_bars() {
        // VFIO's sparse areas already exclude the table; unaligned edges shrink.
        let pieces = direct_pieces(0x8000, &[0..0x1800, 0x2800..0x8000], &[0x1800..0x2800]);
        assert_eq!(pieces, [0..0x1000, 0x3000..0x8000]);
        assert!(
            direct_pieces(0x100, &[0..0x100], &[]).is_empty(),
            "sub-page BAR"
        );
        assert!(direct_pieces(0x4000, &[], &[]).is_empty(), "not mmap-able");
        assert_eq!(direct_pieces(0x4000, &[0..0x4000], &[]), [0..0x4000]);
    }
}
