//! Tests of [`VfioPciDevice`] over the fake host function (`fake`).

use std::sync::{Arc, Mutex};

use super::fake::{e1000, host, igb_vf_config, opts, FakeHost, MSIX_CAP, PCIE_CAP};
use super::{Rom, VfioOptions, VfioPciDevice};
use crate::interrupt::testing::{FakeInterrupts, FakeVectors};
use crate::interrupt::MsiVectors;
use crate::pci::{BarKind, BarMove, BarPart, PciDevice, ROM_BAR};

fn take(log: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut log.lock().unwrap())
}

fn igb_vf() -> (
    VfioPciDevice<FakeHost>,
    Arc<Mutex<Vec<String>>>,
    Arc<FakeVectors>,
) {
    let (fake, log) = host(igb_vf_config(), [0x4000, 0, 0, 0x4000, 0, 0]);
    let irq = FakeInterrupts::default();
    let dev = VfioPciDevice::with_host("0000:01:10.0".to_string(), fake, &irq, opts()).unwrap();
    let vectors = irq.last.lock().unwrap().clone().unwrap();
    // No reset of its own: opening the device file reset the function.
    assert!(take(&log).is_empty());
    (dev, log, vectors)
}

fn write32(d: &mut VfioPciDevice<FakeHost>, reg: usize, v: u32) -> Vec<BarMove> {
    d.write_config(reg, 0, &v.to_le_bytes())
}

fn pieces(parts: &[BarPart]) -> Vec<(u64, u64)> {
    parts
        .iter()
        .map(|p| match p {
            BarPart::Direct { offset, len, .. } => (*offset, *len),
            BarPart::Notify { offset, .. } => (*offset, 0),
        })
        .collect()
}

#[test]
fn bars_follow_the_host_and_msix_pages_stay_trapped() {
    let (d, _, vectors) = igb_vf();
    assert_eq!(vectors.len(), 3);
    let bars: Vec<(usize, u64)> = d.bars().iter().map(|b| (b.index, b.size)).collect();
    assert_eq!(bars, [(0, 0x4000), (3, 0x4000)]);
    assert_eq!(pieces(&d.bar_parts(0)), [(0, 0x4000)]);
    assert_eq!(
        pieces(&d.bar_parts(3)),
        [(0x1000, 0x1000), (0x3000, 0x1000)]
    );
    assert!(d.bar_parts(1).is_empty());
}

#[test]
fn bar_registers_are_emulated_with_host_sizes() {
    let (mut d, log, _) = igb_vf();
    d.set_bar_address(0, 0xe000_0000);
    assert_eq!(d.read_config(4), 0xe000_000c);
    write32(&mut d, 4, u32::MAX);
    write32(&mut d, 5, u32::MAX);
    assert_eq!(
        (d.read_config(4), d.read_config(5)),
        (0xffff_c00c, u32::MAX)
    );
    assert!(take(&log).is_empty(), "BAR writes never reach the device");
}

#[test]
fn command_passes_through_and_memory_decode_moves_bars() {
    let (mut d, log, _) = igb_vf();
    d.set_bar_address(3, 0xe000_4000);
    write32(&mut d, 7, 0xe001_0000);
    write32(&mut d, 8, 0);
    let moves = d.write_config(1, 0, &[0x06, 0x00]);
    assert_eq!(take(&log), ["write 7 0x4 [6, 0]"]);
    assert_eq!(
        moves,
        [BarMove {
            index: 3,
            kind: BarKind::Mem64,
            old: Some(0xe000_4000),
            new: Some(0xe001_0000),
            size: 0x4000
        }]
    );
    assert_eq!(d.read_config(1) & 0xffff, 0x0006);
}

#[test]
fn memory_decode_off_unmaps_the_bars_and_on_maps_them_again() {
    let (mut d, _, _) = igb_vf();
    d.set_bar_address(0, 0xe000_0000);
    d.set_bar_address(3, 0xe000_4000);
    assert!(d.write_config(1, 0, &[0x06, 0x00]).is_empty(), "in place");
    let off = d.write_config(1, 0, &[0x04, 0x00]);
    let places = |moves: &[BarMove]| -> Vec<(usize, Option<u64>, Option<u64>)> {
        moves.iter().map(|m| (m.index, m.old, m.new)).collect()
    };
    assert_eq!(
        places(&off),
        [(0, Some(0xe000_0000), None), (3, Some(0xe000_4000), None)],
        "the direct-mapped slots must go"
    );
    for m in &off {
        d.set_bar_mapped(m.index, m.new);
    }
    let on = d.write_config(1, 0, &[0x06, 0x00]);
    assert_eq!(
        places(&on),
        [(0, None, Some(0xe000_0000)), (3, None, Some(0xe000_4000))]
    );
}

#[test]
fn header_hides_rom_and_intx() {
    let (fake, _) = host(igb_vf_config(), [0x4000, 0, 0, 0x4000, 0, 0]);
    {
        let mut regions = fake.regions.lock().unwrap();
        regions[7][0x30..0x34].copy_from_slice(&[0x01, 0x00, 0x0f, 0xfe]);
        regions[7][0x3c..0x3e].copy_from_slice(&[0x0a, 0x01]);
    }
    let mut d =
        VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), opts()).unwrap();
    assert_eq!(d.read_config(0x30 / 4), 0, "no expansion ROM region");
    d.write_config(0x30 / 4, 0, &u32::MAX.to_le_bytes());
    assert_eq!(d.read_config(0x30 / 4), 0, "no ROM BAR to size");
    assert_eq!(
        d.read_config(0x3c / 4) & 0xffff,
        0x00ff,
        "no INTx from VFIO: pin 0, line none"
    );
    d.write_config(0x3c / 4, 0, &[0x0b]);
    assert_eq!(d.read_config(0x3c / 4) & 0xffff, 0x000b);
    assert_eq!(d.read_config(0), 0x10ca_8086, "identity passes through");
}

#[test]
fn extended_list_skips_ari() {
    let (mut d, _, _) = igb_vf();
    assert_eq!(d.read_config(0x100 / 4), 0x150 << 20);
    assert_eq!(d.read_config(0x150 / 4), 0x0001_0001);
}

/// Programs MSI-X table entry `i` (address, data) and unmasks it.
fn unmask_entry(d: &mut VfioPciDevice<FakeHost>, i: u64, data: u32) {
    d.write_bar(3, 16 * i, &0xfee0_0000u32.to_le_bytes());
    d.write_bar(3, 16 * i + 8, &data.to_le_bytes());
    d.write_bar(3, 16 * i + 12, &0u32.to_le_bytes());
}

#[test]
fn msix_vectors_go_to_vfio_as_the_guest_unmasks_them() {
    let (mut d, log, vectors) = igb_vf();
    unmask_entry(&mut d, 1, 0x31);
    assert!(take(&log).is_empty(), "MSI-X is off");
    let mut b = [0u8; 4];
    d.read_bar(3, 24, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x31);
    d.write_config(MSIX_CAP / 4, 3, &[0x80]);
    assert_eq!(
        take(&log),
        ["set Msix 0 [-x]"],
        "only vector 1, and the control is not written to the device"
    );
    assert_eq!(
        vectors.take_log(),
        ["route 1 0xfee00000 0x31", "enable 1 true"]
    );
    assert_eq!(d.read_config(MSIX_CAP / 4) >> 16, 0x8002);
    unmask_entry(&mut d, 2, 0x32);
    assert_eq!(take(&log), ["set Msix 2 [x]"], "added while on");
    d.write_config(MSIX_CAP / 4, 3, &[0xc0]); // function mask: VFIO stays on
    assert!(take(&log).is_empty());
    assert_eq!(
        vectors.take_log()[2..],
        ["enable 1 false", "enable 2 false"]
    );
    d.write_config(MSIX_CAP / 4, 3, &[0x00]);
    assert_eq!(take(&log), ["disable Msix"]);
    d.write_config(MSIX_CAP / 4, 3, &[0x80]);
    drop(d);
    assert_eq!(take(&log), ["set Msix 0 [-xx]", "disable Msix", "reset"]);
}

#[test]
fn msix_with_every_vector_masked_and_a_fixed_size_table() {
    let (fake, log) = host(igb_vf_config(), [0x4000, 0, 0, 0x4000, 0, 0]);
    let fake = FakeHost {
        resizable: false,
        ..fake
    };
    let mut d =
        VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), opts()).unwrap();
    take(&log);
    d.write_config(MSIX_CAP / 4, 3, &[0x80]);
    assert_eq!(take(&log), ["set Msix 0 [-]"], "MSI-X mode, no vector");
    unmask_entry(&mut d, 0, 0x30);
    assert_eq!(take(&log), ["set Msix 0 [x]"]);
    unmask_entry(&mut d, 2, 0x32);
    assert_eq!(
        take(&log),
        ["disable Msix", "set Msix 0 [x-x]"],
        "VFIO cannot grow it while on"
    );
}

#[test]
fn trapped_bar_accesses_reach_the_device_or_msix() {
    let (mut d, log, _) = igb_vf();
    d.write_bar(3, 0x1800, &[1, 2, 3, 4]); // rest of a trapped page: device
    assert_eq!(take(&log), ["write 3 0x1800 [1, 2, 3, 4]"]);
    d.write_bar(3, 0x2000, &[1; 8]); // PBA: read-only
    let mut b = [0xaa; 8];
    d.read_bar(3, 0x2000, &mut b);
    assert_eq!(b, [0; 8]);
    d.read_bar(3, 0x4000, &mut b);
    assert_eq!(b, [0xff; 8], "past the BAR");
    assert!(take(&log).is_empty());
}

#[test]
fn msi_is_hidden_behind_msix() {
    let mut c = igb_vf_config();
    c[MSIX_CAP + 1] = 0x50;
    c[0x50..0x52].copy_from_slice(&[0x05, PCIE_CAP as u8]);
    let (fake, _) = host(c, [0x4000, 0, 0, 0x4000, 0, 0]);
    let mut d =
        VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), opts()).unwrap();
    assert_eq!(d.read_config(MSIX_CAP / 4) >> 8 & 0xff, PCIE_CAP as u32);
}

#[test]
fn msi_only_device_gets_emulated_msi() {
    let mut c = igb_vf_config();
    // Replace MSI-X by a 64-bit MSI capability with one vector.
    c[MSIX_CAP..MSIX_CAP + 12].copy_from_slice(&[0x05, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let (fake, log) = host(c, [0x4000, 0, 0, 0, 0, 0]);
    let irq = FakeInterrupts::default();
    let mut d = VfioPciDevice::with_host("x".into(), fake, &irq, opts()).unwrap();
    let vectors = irq.last.lock().unwrap().clone().unwrap();
    take(&log);
    write32(&mut d, MSIX_CAP / 4 + 1, 0xfee0_1000);
    d.write_config(MSIX_CAP / 4 + 3, 0, &[0x45, 0]);
    d.write_config(MSIX_CAP / 4, 2, &[0x81, 0x00]);
    assert_eq!(take(&log), ["set Msi 0 [x]"]);
    assert_eq!(
        vectors.take_log(),
        ["route 0 0xfee01000 0x45", "enable 0 true"]
    );
    assert_eq!(d.read_config(MSIX_CAP / 4 + 1), 0xfee0_1000);
    assert_eq!(pieces(&d.bar_parts(0)), [(0, 0x4000)]);
}

#[test]
fn errors_name_the_device() {
    let mut c = igb_vf_config();
    c[MSIX_CAP + 4] = 0x02; // table in BAR2, which does not exist
    let (fake, _) = host(c, [0x4000, 0, 0, 0x4000, 0, 0]);
    let Err(e) = VfioPciDevice::with_host(
        "0000:01:10.0".into(),
        fake,
        &FakeInterrupts::default(),
        opts(),
    ) else {
        panic!("a misplaced table must be refused");
    };
    assert_eq!(
        e.to_string(),
        "0000:01:10.0: MSI-X table at BAR2+0x0 lies outside the device's memory BARs"
    );
}

#[test]
fn config_region_reads_are_bounded() {
    let (mut d, _, _) = igb_vf();
    assert_eq!(d.read_config(1024), 0);
    assert!(d.write_config(1024, 0, &[1]).is_empty());
    assert!(
        d.write_config(1, 3, &[1, 2]).is_empty(),
        "crosses the dword"
    );
}

#[test]
fn random_guest_accesses_never_panic() {
    // Whatever the guest does to config space and the trapped BAR pieces
    // (the ROM and I/O BARs too), in any order and width, vfvm keeps
    // running.
    let (d, _, _) = igb_vf();
    random_accesses(d);
    let (fake, _) = e1000(true, |_| ());
    random_accesses(
        VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), opts()).unwrap(),
    );
}

fn random_accesses(mut d: VfioPciDevice<FakeHost>) {
    let mut state: u64 = 0x0f10;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    for _ in 0..20_000 {
        let len = [1usize, 2, 4, 8, 3, 0][(next() % 6) as usize];
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut buf = vec![0u8; len];
        let bar = (next() % 7) as usize;
        let off = next() % 0x5000;
        match next() % 4 {
            0 => d.read_bar(bar, off, &mut buf),
            1 => d.write_bar(bar, off, &data),
            _ => {
                let reg = (next() % 1100) as usize;
                let _ = d.read_config(reg);
                let _ = d.write_config(reg, next() % 6, &data[..len.min(4)]);
            }
        }
    }
}

#[test]
fn an_intx_nic_gets_its_pin_io_bar_and_rom() {
    let (fake, log) = e1000(true, |_| ());
    let irq = FakeInterrupts::default();
    let mut d = VfioPciDevice::with_host("0000:00:06.0".into(), fake, &irq, opts()).unwrap();
    assert_eq!(take(&log), ["set Intx 0 [x]", "intx unmask fd"]);
    assert_eq!(*irq.intx_log.lock().unwrap(), ["intx 21 true"]);
    assert_eq!(d.read_config(0x3c / 4) & 0xffff, 0x0115, "INTA#, line 21");
    assert_eq!(
        d.read_config(3) >> 16 & 0x80,
        0,
        "the slot decides multi-function"
    );
    let bars: Vec<_> = d.bars().iter().map(|b| (b.index, b.size, b.kind)).collect();
    assert_eq!(
        bars,
        [
            (0, 0x20000, BarKind::Mem32),
            (1, 0x40, BarKind::Io),
            (6, 0x800, BarKind::Mem32)
        ]
    );
    assert!(d.bar_parts(1).is_empty(), "I/O is trapped");
    d.write_bar(1, 4, &[1, 2, 3, 4]);
    let mut b = [0u8; 4];
    d.read_bar(1, 4, &mut b);
    assert_eq!(b, [1, 2, 3, 4]);
    assert_eq!(
        take(&log),
        ["write 1 0x4 [1, 2, 3, 4]"],
        "to VFIO's I/O region"
    );
    // The ROM: sized like a ROM BAR, read from the image, never written.
    d.write_config(12, 0, &(!1u32).to_le_bytes());
    assert_eq!(d.read_config(12), 0xffff_f800);
    d.read_bar(ROM_BAR, 0, &mut b);
    assert_eq!(b, [0x55, 0xaa, 14, 21]);
    d.write_bar(ROM_BAR, 0, &[0; 4]);
    d.read_bar(ROM_BAR, 0, &mut b);
    assert_eq!(b, [0x55, 0xaa, 14, 21], "read-only");
    d.read_bar(ROM_BAR, 0x7fe, &mut b);
    assert_eq!(b[2..], [0xff, 0xff], "past the image");
    assert!(take(&log).is_empty(), "ROM accesses never reach the device");
    drop(d);
    assert_eq!(take(&log), ["disable Intx", "reset"]);
    assert_eq!(irq.intx_log.lock().unwrap()[1], "intx 21 false");
}

#[test]
fn rom_off_and_rom_from_a_file() {
    let rom_bar = |rom: Rom| {
        let (fake, _) = e1000(true, |_| ());
        let options = VfioOptions { slot: 5, rom };
        let mut d = VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), options)
            .unwrap();
        d.write_config(12, 0, &(!1u32).to_le_bytes());
        let mut b = [0u8; 2];
        d.read_bar(ROM_BAR, 0x800, &mut b);
        (d.read_config(12), b)
    };
    assert_eq!(rom_bar(Rom::Off), (0, [0xff; 2]), "rom=off: no ROM BAR");
    let image: Vec<u8> = (0..3000).map(|i| i as u8).collect();
    assert_eq!(
        rom_bar(Rom::Image(image.clone())),
        (0xffff_f000, [0x00, 0x01]),
        "rom=FILE: a 4 KiB BAR with the file's bytes"
    );
    // A ROM of a page or more is mapped read-only: no exits for reads.
    let (fake, _) = e1000(true, |_| ());
    let options = VfioOptions {
        slot: 5,
        rom: Rom::Image(image.clone()),
    };
    let d =
        VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), options).unwrap();
    let parts = d.bar_parts(ROM_BAR);
    let [BarPart::Direct {
        offset: 0,
        len: 0x1000,
        host_addr,
        readonly: true,
    }] = parts[..]
    else {
        panic!("one read-only page: {parts:?}");
    };
    // SAFETY: the device keeps this 4 KiB read-only mapping alive while
    // `d` lives, and nothing writes it.
    let mapped = unsafe { std::slice::from_raw_parts(host_addr as *const u8, 0x1000) };
    assert_eq!(&mapped[..3000], &image[..]);
    assert!(mapped[3000..].iter().all(|&b| b == 0xff), "padded");
}

#[test]
fn intx_is_off_while_msi_or_msix_is_on() {
    // An MSI-capable function with INTA#.
    let (fake, log) = e1000(true, |c| {
        c[0x06] = 0x10;
        c[0x34] = 0x50;
        c[0x50..0x54].copy_from_slice(&[0x05, 0x00, 0x80, 0x00]);
    });
    let irq = FakeInterrupts::default();
    let mut d = VfioPciDevice::with_host("x".into(), fake, &irq, opts()).unwrap();
    take(&log);
    irq.intx_log.lock().unwrap().clear();
    d.write_config(0x50 / 4, 2, &[0x81, 0x00]);
    assert_eq!(take(&log), ["disable Intx", "set Msi 0 [x]"]);
    d.write_config(0x50 / 4, 2, &[0x80, 0x00]);
    assert_eq!(
        take(&log),
        ["disable Msi", "set Intx 0 [x]", "intx unmask fd"]
    );
    assert_eq!(
        *irq.intx_log.lock().unwrap(),
        ["intx 21 false", "intx 21 true"]
    );

    // An igb VF-like function with MSI-X and a pin.
    let mut c = igb_vf_config();
    c[0x3d] = 1;
    let (fake, log) = host(c, [0x4000, 0, 0, 0x4000, 0, 0]);
    let fake = FakeHost { intx: true, ..fake };
    let mut d =
        VfioPciDevice::with_host("x".into(), fake, &FakeInterrupts::default(), opts()).unwrap();
    take(&log);
    d.write_config(MSIX_CAP / 4, 3, &[0x80]);
    assert_eq!(take(&log), ["disable Intx", "set Msix 0 [-]"]);
    d.write_config(MSIX_CAP / 4, 3, &[0x00]);
    assert_eq!(
        take(&log),
        ["disable Msix", "set Intx 0 [x]", "intx unmask fd"]
    );
}
