//! The E820 memory map handed to the kernel in the zero page.

use crate::layout::{
    BIOS_END, EBDA_START, ECAM_SIZE, ECAM_START, HIMEM_START, MMIO_HOLE_END, MMIO_HOLE_START,
};

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One entry of the E820 map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

impl E820Entry {
    fn new(addr: u64, end: u64, kind: u32) -> Self {
        E820Entry {
            addr,
            size: end - addr,
            kind,
        }
    }
}

/// The E820 map of a guest with `mem_size` bytes of RAM (laid out as in
/// [`crate::layout::ram_ranges`]), sorted by address:
///
/// - RAM `[0, EBDA)`;
/// - reserved `[EBDA, 1 MiB)` (EBDA, legacy BIOS area: the ACPI tables,
///   the SMBIOS tables and the reset stub);
/// - RAM `[1 MiB, min(mem_size, 3 GiB))`;
/// - reserved ECAM;
/// - RAM `[4 GiB, 4 GiB + mem_size - 3 GiB)` if RAM extends past the hole.
///
/// Guests smaller than 1 MiB cannot boot Linux; for them only the entries
/// that lie inside RAM are returned.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = Vec::new();
    map.push(E820Entry::new(0, EBDA_START.0.min(mem_size), E820_RAM));
    map.push(E820Entry::new(EBDA_START.0, BIOS_END.0, E820_RESERVED));
    let low_end = mem_size.min(MMIO_HOLE_START.0);
    if low_end > HIMEM_START.0 {
        map.push(E820Entry::new(HIMEM_START.0, low_end, E820_RAM));
    }
    map.push(E820Entry::new(
        ECAM_START.0,
        ECAM_START.0 + ECAM_SIZE,
        E820_RESERVED,
    ));
    if mem_size > MMIO_HOLE_START.0 {
        let high = mem_size - MMIO_HOLE_START.0;
        map.push(E820Entry::new(
            MMIO_HOLE_END.0,
            MMIO_HOLE_END.0 + high,
            E820_RAM,
        ));
    }
    map.retain(|e| e.size > 0);
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ram_ranges, GIB, MIB};

    fn ram_total(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum()
    }

    fn assert_sorted_disjoint(map: &[E820Entry]) {
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{map:?}");
        }
    }

    /// Every E820 RAM byte must be backed by guest RAM.
    fn assert_ram_backed(map: &[E820Entry], mem_size: u64) {
        let ranges = ram_ranges(mem_size);
        for e in map.iter().filter(|e| e.kind == E820_RAM) {
            assert!(
                ranges
                    .iter()
                    .any(|(s, l)| e.addr >= s.0 && e.addr + e.size <= s.0 + l),
                "{e:?} not in {ranges:?}"
            );
        }
    }

    #[test]
    fn below_hole() {
        let size = 512 * MIB;
        let map = e820_map(size);
        assert_eq!(
            map,
            vec![
                E820Entry::new(0, 0x9fc00, E820_RAM),
                E820Entry::new(0x9fc00, 0x10_0000, E820_RESERVED),
                E820Entry::new(0x10_0000, size, E820_RAM),
                E820Entry::new(0xe000_0000, 0xe010_0000, E820_RESERVED),
            ]
        );
        assert_sorted_disjoint(&map);
        assert_ram_backed(&map, size);
    }

    #[test]
    fn at_hole() {
        let size = 3 * GIB;
        let map = e820_map(size);
        assert_eq!(map.len(), 4);
        assert_eq!(map[2], E820Entry::new(0x10_0000, 3 * GIB, E820_RAM));
        assert_eq!(ram_total(&map), size - (0x10_0000 - 0x9fc00));
        assert_sorted_disjoint(&map);
        assert_ram_backed(&map, size);
    }

    #[test]
    fn above_hole() {
        let size = 6 * GIB;
        let map = e820_map(size);
        assert_eq!(map.len(), 5);
        assert_eq!(map[2], E820Entry::new(0x10_0000, 3 * GIB, E820_RAM));
        assert_eq!(map[4], E820Entry::new(4 * GIB, 7 * GIB, E820_RAM));
        assert_eq!(ram_total(&map), size - (0x10_0000 - 0x9fc00));
        assert_sorted_disjoint(&map);
        assert_ram_backed(&map, size);
    }

    #[test]
    fn tiny() {
        let map = e820_map(0x8000);
        assert_eq!(map[0], E820Entry::new(0, 0x8000, E820_RAM));
        assert!(map.iter().all(|e| e.kind == E820_RESERVED || e.addr == 0));
    }
}
