//! PCI config space through PciRoot (devices/src/pci/): the guest's config
//! accesses by port I/O (0xCF8/0xCFC) and ECAM, in any order, width and
//! offset, on a host bridge, an ISA bridge and a function with I/O, 32-bit,
//! 64-bit prefetchable and ROM BARs. The BAR moves they cause go to a
//! mapper that refuses overlapping BARs and, when the input says so, fails.
//! Nothing may panic, and the mapper must only be asked to unmap what it
//! mapped: what the devices believe is mapped stays what is.
#![no_main]

use std::io;
use std::sync::{Arc, Mutex};

use devices::bus::BusDevice;
use devices::pci::testing::ConfigFunction;
use devices::pci::{
    BarInfo, BarKind, BarMapper, BarPart, BarRange, ConfigIo, ConfigMmio, HostBridge, IsaBridge,
    PciConfig, PciRoot, SharedPciDevice, ROM_BAR,
};
use libfuzzer_sys::fuzz_target;

/// What is mapped, and whether the next map fails.
#[derive(Default)]
struct Mapper {
    mapped: Mutex<Vec<BarRange>>,
    fail_next: Mutex<bool>,
}

fn io_space(kind: BarKind) -> bool {
    kind == BarKind::Io
}

impl BarMapper for Mapper {
    fn map(&self, _: &SharedPciDevice, bar: BarRange, _: &[BarPart]) -> io::Result<()> {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err(io::Error::other("injected"));
        }
        let mut mapped = self.mapped.lock().unwrap();
        let end = bar
            .base
            .checked_add(bar.size)
            .ok_or(io::Error::other("wraps"))?;
        let overlaps = mapped.iter().any(|m| {
            io_space(m.kind) == io_space(bar.kind) && m.base < end && bar.base < m.base + m.size
        });
        if overlaps {
            return Err(io::Error::other("overlaps"));
        }
        mapped.push(bar);
        Ok(())
    }

    fn unmap(&self, bar: BarRange, _: &[BarPart]) -> io::Result<()> {
        let mut mapped = self.mapped.lock().unwrap();
        let at = mapped.iter().position(|m| *m == bar);
        let at = at.unwrap_or_else(|| panic!("unmap of {bar:x?}, mapped: {mapped:x?}"));
        mapped.remove(at);
        Ok(())
    }
}

/// The BARs of each function: index, size, kind, prefetchable, and
/// where function 0 has it (function n is n * 2 MiB, or 256 ports, higher).
const BARS: [(usize, u64, BarKind, bool, u64); 4] = [
    (0, 0x1000, BarKind::Mem32, false, 0xc000_0000),
    (1, 0x40, BarKind::Io, false, 0xc000),
    (2, 0x4000, BarKind::Mem64, true, 0x1_0000_0000),
    (ROM_BAR, 0x800, BarKind::Mem32, false, 0xc010_0000),
];

fn base(kind: BarKind, at: u64, n: u64) -> u64 {
    at + n * if kind == BarKind::Io {
        0x100
    } else {
        0x20_0000
    }
}

/// Function `n`: one BAR of each kind, all trapped, programmed where the
/// VMM placed them.
fn function(n: u64) -> ConfigFunction {
    let mut cfg = PciConfig::new(0x1af4, 0x1042, (1, 0, 0), 1);
    for (index, size, kind, prefetchable, at) in BARS {
        cfg.add_bar(BarInfo {
            index,
            size,
            kind,
            prefetchable,
        });
        cfg.set_bar_address(index, base(kind, at, n));
    }
    cfg.add_capability(
        &[0x09, 0, 8, 1, 2, 3, 4, 5],
        &[0, 0, 0, 0xff, 0xff, 0, 0, 0],
    );
    ConfigFunction(cfg)
}

fuzz_target!(|data: &[u8]| {
    let mapper = Arc::new(Mapper::default());
    let root = PciRoot::new(mapper.clone());
    root.add(0, 0, Arc::new(Mutex::new(HostBridge::new())))
        .unwrap();
    for (f, n) in [(0u8, 0u64), (2, 1)] {
        let dev: SharedPciDevice = Arc::new(Mutex::new(function(n)));
        // Mapped as the VMM maps them when it builds the VM.
        for (index, size, kind, _, at) in BARS {
            let range = BarRange {
                index,
                kind,
                base: base(kind, at, n),
                size,
            };
            mapper.map(&dev, range, &[]).unwrap();
        }
        root.add(3, f, dev).unwrap();
    }
    root.add(31, 0, Arc::new(Mutex::new(IsaBridge::new())))
        .unwrap();
    let root = Arc::new(root);
    let mut io = ConfigIo::new(root.clone());
    let mut ecam = ConfigMmio::new(root.clone());
    // Each access: op, a 32-bit offset or address, then up to 8 data bytes.
    for op in data.chunks(9) {
        let [kind, a, b, c, d, rest @ ..] = op else {
            break;
        };
        let word = u32::from_le_bytes([*a, *b, *c, *d]);
        let len = [1usize, 2, 4, 8, 3, 0][usize::from(kind >> 3) % 6].min(rest.len());
        let mut buf = [0u8; 8];
        match kind & 7 {
            // Selects a function and register (enabled, bus 0 mostly).
            0 => io.write(0, &(word | 0x8000_0000).to_le_bytes()),
            1 => io.write(0, &word.to_le_bytes()),
            2 => io.write(u64::from(word % 8), &rest[..len]),
            3 => io.read(u64::from(word % 8), &mut buf[..len]),
            4 => ecam.write(u64::from(word) % (ConfigMmio::LEN + 8), &rest[..len]),
            5 => ecam.read(u64::from(word) % (ConfigMmio::LEN + 8), &mut buf[..len]),
            // A config register write of the command or a BAR, directly.
            6 => {
                let devfn = [0, 24, 26, 248][usize::from(*a) % 4];
                let reg = [1, 4, 5, 6, 7, 12][usize::from(*b) % 6];
                root.config_write(devfn, reg, u64::from(*c % 4), &rest[..len.min(4)]);
            }
            _ => *mapper.fail_next.lock().unwrap() = true,
        }
    }
});
