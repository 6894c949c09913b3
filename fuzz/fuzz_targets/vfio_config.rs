//! VFIO config-space virtualisation (devices/src/vfio/) against the fake
//! host function of the `fuzzing` feature: an 82576 VF (MSI-X, PCIe, ARI
//! and AER in extended space) or QEMU's e1000 (INTx, I/O BAR, ROM). The
//! guest's config and trapped BAR accesses, in any order, width and
//! offset, with the BAR moves they cause carried out, must never panic.
#![no_main]

use devices::interrupt::testing::FakeInterrupts;
use devices::pci::PciDevice;
use devices::vfio::fake::{e1000, host, igb_vf_config, opts};
use devices::vfio::VfioPciDevice;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, ops)) = data.split_first() else {
        return;
    };
    let (fake, _log) = match setup & 3 {
        0 | 1 => host(igb_vf_config(), [0x4000, 0, 0, 0x4000, 0, 0]),
        2 => e1000(true, |_| ()),
        _ => e1000(false, |c| c[0x06] = 0x10),
    };
    let fake = devices::vfio::fake::FakeHost {
        resizable: setup & 4 == 0,
        mappable: [setup & 8 == 0; 6],
        ..fake
    };
    let irq = FakeInterrupts::default();
    let Ok(mut d) = VfioPciDevice::with_host("0000:01:10.0".into(), fake, &irq, opts()) else {
        return;
    };
    // Each access: op, register or offset (2 bytes), then up to 4 data bytes.
    for op in ops.chunks(7) {
        let [kind, lo, hi, rest @ ..] = op else {
            break;
        };
        let at = u16::from_le_bytes([*lo, *hi]);
        let len = [1usize, 2, 4, 8, 3, 0][usize::from(kind >> 4) % 6].min(rest.len());
        let mut buf = [0u8; 8];
        match kind & 3 {
            0 => {
                let _ = d.read_config(usize::from(at) % 1100);
            }
            1 => {
                let moves = d.write_config(
                    usize::from(at) % 1100,
                    u64::from(kind >> 2 & 7),
                    &rest[..len],
                );
                for m in moves {
                    d.set_bar_mapped(m.index, m.new);
                }
            }
            2 => d.read_bar(usize::from(kind >> 2 & 7), u64::from(at), &mut buf[..len]),
            _ => d.write_bar(usize::from(kind >> 2 & 7), u64::from(at), &rest[..len]),
        }
    }
});
