//! A function's configuration space: identity registers, BARs with sizing,
//! the command register and a capability list.
//!
//! The space is 4 KiB (ECAM gives the guest the extended part). Each dword
//! has a write mask; bits outside it keep their value.
//!
//! Each BAR (0-5, and the expansion ROM as index [`ROM_BAR`]) is either
//! mapped at one address or not mapped. It should be mapped exactly while
//! its decode bit is on (I/O or memory in the command register, plus the
//! ROM's enable bit) at the complete address it holds; a write that makes
//! this differ from where it is mapped reports a [`BarMove`]. The usual
//! sizing dance (decode off, write all-ones, read, restore, decode on)
//! therefore unmaps and remaps at the same place. A move is only a
//! proposal: the mapping is recorded with [`PciConfig::set_mapped`] once
//! the VMM has made it real, so a move that fails leaves the BAR where it
//! was.

use super::{BarInfo, BarKind};

const NUM_REGS: usize = 1024;
const REG_COMMAND: usize = 1;
const REG_BAR0: usize = 4;
const REG_ROM: usize = 12;
const COMMAND_IO: u32 = 1;
const COMMAND_MEMORY: u32 = 1 << 1;
const ROM_ENABLE: u32 = 1;
/// The expansion ROM's index among a function's BARs (as in VFIO's regions).
pub const ROM_BAR: usize = 6;
const NUM_BARS: usize = 7;
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
const FIRST_CAP_OFFSET: usize = 0x40;
const STANDARD_CONFIG_END: usize = 0x100;

/// A BAR the guest moved, switched off (`new` is `None`) or on (`old` is
/// `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMove {
    /// BAR index ([`ROM_BAR`] for the expansion ROM).
    pub index: usize,
    /// Its address space.
    pub kind: BarKind,
    /// Where it is mapped now.
    pub old: Option<u64>,
    /// Where it should be mapped.
    pub new: Option<u64>,
    /// Its size.
    pub size: u64,
}

fn bar_reg(index: usize) -> usize {
    if index == ROM_BAR {
        REG_ROM
    } else {
        REG_BAR0 + index
    }
}

/// Configuration space of one PCI function (type 0 header).
pub struct PciConfig {
    regs: Vec<u32>,
    masks: Vec<u32>,
    bars: [Option<BarInfo>; NUM_BARS],
    mapped: [Option<u64>; NUM_BARS],
    next_cap: usize,
    last_cap_next_ptr: usize,
}

impl PciConfig {
    /// A function with the given identity: `class` is (base class,
    /// subclass, programming interface).
    pub fn new(vendor: u16, device: u16, class: (u8, u8, u8), revision: u8) -> Self {
        let mut regs = vec![0u32; NUM_REGS];
        let mut masks = vec![0u32; NUM_REGS];
        regs[0] = u32::from(device) << 16 | u32::from(vendor);
        regs[2] = u32::from(class.0) << 24
            | u32::from(class.1) << 16
            | u32::from(class.2) << 8
            | u32::from(revision);
        // Command: I/O, memory, bus master, SERR, INTx disable. Status bits
        // are read-only: we raise none, so write-one-to-clear has no work.
        masks[REG_COMMAND] = 0x0000_0547;
        // Cache line size and latency timer are plain read/write storage.
        masks[3] = 0x0000_ffff;
        // Interrupt line is storage for the guest; pin stays 0 (no INTx).
        masks[15] = 0x0000_00ff;
        PciConfig {
            regs,
            masks,
            bars: [None; NUM_BARS],
            mapped: [None; NUM_BARS],
            next_cap: FIRST_CAP_OFFSET,
            last_cap_next_ptr: 0x34,
        }
    }

    /// Sets the subsystem vendor and device IDs.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.regs[11] = u32::from(id) << 16 | u32::from(vendor);
    }

    /// Declares a BAR. `size` must be a power of two (at least 4 bytes
    /// for I/O, 2 KiB for the ROM, 16 for memory); the ROM
    /// ([`ROM_BAR`]) is 32-bit memory, read-only for the guest.
    pub fn add_bar(&mut self, bar: BarInfo) {
        debug_assert!(bar.size.is_power_of_two() && bar.index < NUM_BARS);
        let reg = bar_reg(bar.index);
        let mask = !(bar.size - 1);
        let (flags, writable) = if bar.index == ROM_BAR {
            (0, (mask as u32) & !0x7ff | ROM_ENABLE)
        } else {
            match bar.kind {
                // 16-bit I/O decode: x86 has 64 KiB of ports.
                BarKind::Io => (1, (mask as u32) & 0xfffc),
                BarKind::Mem32 | BarKind::Mem64 => {
                    let type64 = if bar.kind == BarKind::Mem64 { 0b100 } else { 0 };
                    let prefetch = if bar.prefetchable { 0b1000 } else { 0 };
                    (type64 | prefetch, (mask as u32) & !0xf)
                }
            }
        };
        self.regs[reg] = flags;
        self.masks[reg] = writable;
        if bar.kind == BarKind::Mem64 {
            self.masks[reg + 1] = (mask >> 32) as u32;
        }
        self.bars[bar.index] = Some(bar);
    }

    /// The BARs declared so far.
    pub fn bars(&self) -> Vec<BarInfo> {
        self.bars.iter().flatten().copied().collect()
    }

    /// Bits of BAR `index`'s low register that are flags, not address.
    fn flag_bits(&self, index: usize) -> u32 {
        match self.bars.get(index).copied().flatten() {
            _ if index == ROM_BAR => 0x7ff,
            Some(BarInfo {
                kind: BarKind::Io, ..
            }) => 0x3,
            _ => 0xf,
        }
    }

    /// The address BAR `index` currently holds.
    pub fn bar_address(&self, index: usize) -> u64 {
        let Some(bar) = self.bars.get(index).copied().flatten() else {
            return 0;
        };
        let reg = bar_reg(index);
        let low = u64::from(self.regs[reg] & !self.flag_bits(index));
        match bar.kind {
            BarKind::Mem64 => low | u64::from(self.regs[reg + 1]) << 32,
            _ => low,
        }
    }

    /// Programs BAR `index` with `addr` and records it as mapped there.
    pub fn set_bar_address(&mut self, index: usize, addr: u64) {
        let Some(bar) = self.bars.get(index).copied().flatten() else {
            return;
        };
        let (reg, flag_bits) = (bar_reg(index), self.flag_bits(index));
        self.regs[reg] = (addr as u32 & !flag_bits) | self.regs[reg] & flag_bits;
        if bar.kind == BarKind::Mem64 {
            self.regs[reg + 1] = (addr >> 32) as u32;
        }
        self.mapped[index] = Some(addr);
    }

    /// Records where BAR `index` is mapped now (`None`: nowhere), once the
    /// VMM has carried out a [`BarMove`] (or failed to and undone it).
    pub fn set_mapped(&mut self, index: usize, at: Option<u64>) {
        if let Some(m) = self.mapped.get_mut(index) {
            *m = at;
        }
    }

    /// Appends a capability: `body` starts with the capability ID byte
    /// followed by the bytes after the next pointer; `writable` gives, per
    /// body byte, the bits the guest may change. Returns its offset.
    pub fn add_capability(&mut self, body: &[u8], writable: &[u8]) -> usize {
        let offset = self.next_cap;
        let len = (body.len() + 1).next_multiple_of(4);
        assert!(offset + len <= STANDARD_CONFIG_END, "capabilities overflow");
        self.set_byte(offset, body[0], 0);
        self.set_byte(offset + 1, 0, 0);
        for (i, (&b, &m)) in body[1..].iter().zip(writable[1..].iter()).enumerate() {
            self.set_byte(offset + 2 + i, b, m);
        }
        self.set_byte(self.last_cap_next_ptr, offset as u8, 0);
        self.last_cap_next_ptr = offset + 1;
        self.regs[1] |= STATUS_CAP_LIST;
        self.next_cap = offset + len;
        offset
    }

    fn set_byte(&mut self, offset: usize, value: u8, mask: u8) {
        let (reg, shift) = (offset / 4, (offset % 4) * 8);
        self.regs[reg] = self.regs[reg] & !(0xff << shift) | u32::from(value) << shift;
        self.masks[reg] = self.masks[reg] & !(0xff << shift) | u32::from(mask) << shift;
    }

    /// Reads dword `reg`; out of range reads as all-ones.
    pub fn read(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(u32::MAX)
    }

    /// Reads the 16-bit word at byte `offset`.
    pub fn read_u16(&self, offset: usize) -> u16 {
        (self.read(offset / 4) >> ((offset % 4) * 8)) as u16
    }

    /// Writes `data` at byte `offset` of dword `reg` through the write mask;
    /// returns the BARs moved by it.
    pub fn write(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove> {
        let offset = offset as usize;
        if reg >= NUM_REGS || offset + data.len() > 4 || data.is_empty() {
            return Vec::new();
        }
        let mut value = [0u8; 4];
        value[offset..offset + data.len()].copy_from_slice(data);
        let mut byte_mask = [0u8; 4];
        byte_mask[offset..offset + data.len()].fill(0xff);
        let write_mask = u32::from_le_bytes(byte_mask) & self.masks[reg];
        let old = self.regs[reg];
        self.regs[reg] = old & !write_mask | u32::from_le_bytes(value) & write_mask;
        if reg == REG_COMMAND || (REG_BAR0..REG_BAR0 + 6).contains(&reg) || reg == REG_ROM {
            self.bar_moves()
        } else {
            Vec::new()
        }
    }

    fn decodes(&self, index: usize, kind: BarKind) -> bool {
        let command = self.regs[REG_COMMAND];
        match kind {
            BarKind::Io => command & COMMAND_IO != 0,
            _ if index == ROM_BAR => {
                command & COMMAND_MEMORY != 0 && self.regs[REG_ROM] & ROM_ENABLE != 0
            }
            _ => command & COMMAND_MEMORY != 0,
        }
    }

    /// Where each BAR should be mapped now, compared with where it is.
    /// While decoding, an address that is incomplete (0, all-ones sizing,
    /// past the address space) keeps the BAR where it is.
    fn bar_moves(&self) -> Vec<BarMove> {
        let mut moves = Vec::new();
        for index in 0..NUM_BARS {
            let Some(bar) = self.bars[index] else {
                continue;
            };
            let old = self.mapped[index];
            let new = if self.decodes(index, bar.kind) {
                let addr = self.bar_address(index);
                let limit = address_limit(bar.kind);
                let sizing = addr == (!(bar.size - 1) & limit & !u64::from(self.flag_bits(index)));
                let fits = addr
                    .checked_add(bar.size - 1)
                    .is_some_and(|last| last <= limit);
                if addr != 0 && !sizing && fits {
                    Some(addr)
                } else {
                    old
                }
            } else {
                None
            };
            if new != old {
                moves.push(BarMove {
                    index,
                    kind: bar.kind,
                    old,
                    new,
                    size: bar.size,
                });
            }
        }
        moves
    }
}

fn address_limit(kind: BarKind) -> u64 {
    match kind {
        BarKind::Io => u64::from(u16::MAX),
        BarKind::Mem32 => u64::from(u32::MAX),
        BarKind::Mem64 => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG_CAP_PTR: usize = 0x34 / 4;

    fn dev() -> PciConfig {
        let mut c = PciConfig::new(0x1af4, 0x1042, (1, 0, 0), 1);
        c.add_bar(BarInfo {
            index: 0,
            size: 0x4000,
            kind: BarKind::Mem64,
            prefetchable: false,
        });
        c.add_bar(BarInfo {
            index: 2,
            size: 0x1000,
            kind: BarKind::Mem32,
            prefetchable: false,
        });
        c.set_bar_address(0, 0x1_0000_0000);
        c.set_bar_address(2, 0xc000_0000);
        c
    }

    fn write32(c: &mut PciConfig, reg: usize, v: u32) -> Vec<BarMove> {
        c.write(reg, 0, &v.to_le_bytes())
    }

    #[test]
    fn identity_is_read_only() {
        let mut c = dev();
        assert_eq!(c.read(0), 0x1042_1af4);
        write32(&mut c, 0, 0);
        write32(&mut c, 2, 0);
        assert_eq!(c.read(0), 0x1042_1af4);
        assert_eq!(c.read(2), 0x0100_0001);
        assert_eq!(c.read(4096), u32::MAX);
    }

    fn mv(index: usize, kind: BarKind, old: Option<u64>, new: Option<u64>, size: u64) -> BarMove {
        BarMove {
            index,
            kind,
            old,
            new,
            size,
        }
    }

    /// Applies `moves` as a VMM whose mapping succeeds would.
    fn commit(c: &mut PciConfig, moves: Vec<BarMove>) -> Vec<BarMove> {
        for m in &moves {
            c.set_mapped(m.index, m.new);
        }
        moves
    }

    /// A dword write whose moves the VMM carries out.
    fn wc(c: &mut PciConfig, reg: usize, v: u32) -> Vec<BarMove> {
        let moves = write32(c, reg, v);
        commit(c, moves)
    }

    #[test]
    fn bar_sizing_reports_size_and_remaps_in_place() {
        let mut c = dev();
        let off = wc(&mut c, 1, 0); // decode off
        assert_eq!(
            off,
            [
                mv(0, BarKind::Mem64, Some(0x1_0000_0000), None, 0x4000),
                mv(2, BarKind::Mem32, Some(0xc000_0000), None, 0x1000)
            ]
        );
        assert!(write32(&mut c, 4, u32::MAX).is_empty());
        assert!(write32(&mut c, 5, u32::MAX).is_empty());
        assert_eq!(c.read(4), 0xffff_c004);
        assert_eq!(c.read(5), u32::MAX);
        assert!(write32(&mut c, 6, u32::MAX).is_empty());
        assert_eq!(c.read(6), 0xffff_f000);
        write32(&mut c, 4, 0);
        write32(&mut c, 5, 1);
        write32(&mut c, 6, 0xc000_0000);
        let on = wc(&mut c, 1, 2); // decode on, same place
        assert_eq!(
            on,
            [
                mv(0, BarKind::Mem64, None, Some(0x1_0000_0000), 0x4000),
                mv(2, BarKind::Mem32, None, Some(0xc000_0000), 0x1000)
            ]
        );
        assert!(write32(&mut c, 1, 2).is_empty());
    }

    #[test]
    fn reprogramming_with_decode_on_moves_the_bar() {
        let mut c = dev();
        wc(&mut c, 1, 2);
        let moves = write32(&mut c, 6, 0xd000_0000);
        assert_eq!(
            moves,
            [mv(
                2,
                BarKind::Mem32,
                Some(0xc000_0000),
                Some(0xd000_0000),
                0x1000
            )]
        );
        assert_eq!(
            write32(&mut c, 1, 2),
            moves,
            "not recorded until the VMM commits it"
        );
        commit(&mut c, moves);
        assert!(write32(&mut c, 1, 2).is_empty());
        // A 64-bit BAR moved one dword at a time while decoding.
        assert!(wc(&mut c, 5, 2).len() == 1);
        assert_eq!(c.bar_address(0), 0x2_0000_0000);
    }

    #[test]
    fn io_bars_follow_io_decode_and_the_rom_its_enable_bit() {
        let mut c = PciConfig::new(0x8086, 0x100e, (2, 0, 0), 3);
        c.add_bar(BarInfo {
            index: 1,
            size: 0x40,
            kind: BarKind::Io,
            prefetchable: false,
        });
        c.add_bar(BarInfo {
            index: ROM_BAR,
            size: 0x4_0000,
            kind: BarKind::Mem32,
            prefetchable: false,
        });
        assert!(write32(&mut c, 5, u32::MAX).is_empty());
        assert_eq!(c.read(5), 0xffc1, "16-bit I/O decode, 64 ports");
        assert!(write32(&mut c, 12, !1).is_empty());
        assert_eq!(c.read(12), 0xfffc_0000, "ROM size, disabled");
        write32(&mut c, 5, 0xc040);
        write32(&mut c, 12, 0xc004_0000);
        let io = wc(&mut c, 1, 1);
        assert_eq!(io, [mv(1, BarKind::Io, None, Some(0xc040), 0x40)]);
        assert!(wc(&mut c, 1, 3).is_empty(), "ROM not enabled");
        let rom = wc(&mut c, 12, 0xc004_0001);
        assert_eq!(
            rom,
            [mv(
                ROM_BAR,
                BarKind::Mem32,
                None,
                Some(0xc004_0000),
                0x4_0000
            )]
        );
        assert_eq!(c.read(12), 0xc004_0001);
        let off = write32(&mut c, 1, 0);
        assert_eq!(off.len(), 2, "both off with decoding: {off:?}");
    }

    #[test]
    fn sub_dword_writes_touch_only_their_bytes() {
        let mut c = dev();
        c.write(15, 0, &[0x0b]);
        c.write(3, 1, &[0x40]);
        assert_eq!(c.read(15) & 0xff, 0x0b);
        assert_eq!(c.read(3), 0x4000);
        c.write(1, 0, &[0x06, 0x00]);
        assert_eq!(c.read(1) & 0xffff, 0x6);
        assert!(c.write(1, 3, &[1, 2]).is_empty()); // crosses the dword: ignored
    }

    #[test]
    fn capabilities_are_linked() {
        let mut c = dev();
        let a = c.add_capability(&[0x11, 1, 2], &[0, 0xff, 0]);
        let b = c.add_capability(&[0x09, 5, 6, 7, 8, 9], &[0; 6]);
        assert_eq!((a, b), (0x40, 0x44));
        assert_eq!(c.read(REG_CAP_PTR) & 0xff, 0x40);
        assert_ne!(c.read(1) & STATUS_CAP_LIST, 0);
        assert_eq!(c.read(0x40 / 4), 0x0201_4411);
        c.write(0x40 / 4, 2, &[0xaa, 0xbb]);
        assert_eq!(c.read(0x40 / 4), 0x02aa_4411);
        assert_eq!(c.read(0x44 / 4), 0x0605_0009);
    }
}
