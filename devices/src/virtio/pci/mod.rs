//! The virtio 1.x ("modern") PCI transport (virtio 1.2, 4.1).
//!
//! One 64-bit memory BAR holds every structure, each in its own 4 KiB page:
//!
//! | offset   | structure                                             |
//! |----------|-------------------------------------------------------|
//! | `0x0000` | common configuration (trapped)                        |
//! | `0x1000` | ISR status (trapped; always 0, the device uses MSI-X) |
//! | `0x2000` | device-specific configuration (trapped)               |
//! | `0x3000` | queue notifications: queue `i` at `i * 4` (ioeventfd) |
//! | `0x4000` | MSI-X table (trapped)                                 |
//! | `0x5000` | MSI-X pending-bit array (trapped)                     |
//!
//! Each queue has its own notify address so each gets its own ioeventfd
//! ([`BarPart::Notify`]); a notification never leaves the kernel. Interrupts
//! are MSI-X only: one vector for configuration changes and one per queue.

mod common;

use std::io;
use std::sync::Arc;

use log::{error, warn};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use self::common::{Action, CommonConfig, COMMON_CFG_LEN, NO_VECTOR};
use super::{Memory, VirtioDevice, VirtioInterrupt};
use crate::interrupt::{InterruptManager, MsiVectors};
use crate::pci::{BarInfo, BarKind, BarMove, BarPart, Msix, PciConfig, PciDevice};

const VENDOR_ID: u16 = 0x1af4;
const DEVICE_ID_BASE: u16 = 0x1040;
const SUBSYSTEM_ID: u16 = 0x1100;
const REVISION: u8 = 1;

const BAR_INDEX: usize = 0;
const BAR_SIZE: u64 = 0x8000;
const COMMON_OFFSET: u64 = 0x0000;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_CFG_OFFSET: u64 = 0x2000;
const NOTIFY_OFFSET: u64 = 0x3000;
const MSIX_TABLE_OFFSET: u64 = 0x4000;
const MSIX_PBA_OFFSET: u64 = 0x5000;
const REGION_LEN: u64 = 0x1000;
const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Queues that fit the notify page.
const MAX_QUEUES: usize = (REGION_LEN / NOTIFY_OFF_MULTIPLIER as u64) as usize;

const CAP_ID_VENDOR: u8 = 0x09;
const CAP_COMMON_CFG: u8 = 1;
const CAP_NOTIFY_CFG: u8 = 2;
const CAP_ISR_CFG: u8 = 3;
const CAP_DEVICE_CFG: u8 = 4;
const MSIX_CONTROL_OFFSET: usize = 2;

/// Errors of building a virtio-pci function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VMM could not provide MSI vectors.
    #[error("cannot allocate {count} MSI-X vectors for the virtio device: {source}")]
    Vectors { count: usize, source: io::Error },
    /// The device has no queues or more than the notify area holds.
    #[error("a virtio-pci device needs 1 to {MAX_QUEUES} queues, this one has {0}")]
    QueueCount(usize),
    /// A queue's maximum size is not a power of two up to 32768.
    #[error("queue {index} has invalid maximum size {size}")]
    QueueSize { index: usize, size: u16 },
}

/// Raises queue interrupts through the MSI-X vectors the driver chose.
struct MsixInterrupt {
    vectors: Arc<dyn MsiVectors>,
    queue_vectors: Vec<u16>,
}

impl VirtioInterrupt for MsixInterrupt {
    fn signal_queue(&self, queue: usize) {
        match self.queue_vectors.get(queue) {
            Some(&v) if v != NO_VECTOR => {
                if let Err(e) = self.vectors.trigger(usize::from(v)) {
                    warn!("virtio-pci: cannot raise vector {v} of queue {queue}: {e}");
                }
            }
            _ => {}
        }
    }
}

/// A virtio device on PCI.
pub struct VirtioPciDevice {
    config: PciConfig,
    msix: Msix,
    msix_cap: usize,
    vectors: Arc<dyn MsiVectors>,
    common: CommonConfig,
    device: Box<dyn VirtioDevice>,
    mem: Memory,
    active: bool,
}

impl VirtioPciDevice {
    /// Puts `device` on PCI; it will reach guest memory through `mem` and
    /// raise interrupts through vectors from `interrupts`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: Memory,
        interrupts: &dyn InterruptManager,
    ) -> Result<Self, Error> {
        let max_sizes = device.queue_max_sizes();
        if max_sizes.is_empty() || max_sizes.len() > MAX_QUEUES {
            return Err(Error::QueueCount(max_sizes.len()));
        }
        if let Some((index, &size)) = max_sizes
            .iter()
            .enumerate()
            .find(|(_, &s)| !s.is_power_of_two() || s > 32768)
        {
            return Err(Error::QueueSize { index, size });
        }
        let count = max_sizes.len() + 1;
        let vectors = interrupts
            .msi_vectors(count)
            .map_err(|source| Error::Vectors { count, source })?;

        let device_type = device.device_type();
        let mut config = PciConfig::new(
            VENDOR_ID,
            DEVICE_ID_BASE + device_type as u16,
            pci_class(device_type),
            REVISION,
        );
        config.set_subsystem(VENDOR_ID, SUBSYSTEM_ID);
        config.add_bar(BarInfo {
            index: BAR_INDEX,
            size: BAR_SIZE,
            kind: BarKind::Mem64,
            prefetchable: false,
        });
        let msix = Msix::new(
            vectors.clone(),
            (BAR_INDEX as u8, MSIX_TABLE_OFFSET as u32),
            (BAR_INDEX as u8, MSIX_PBA_OFFSET as u32),
        );
        let (body, mask) = msix.capability();
        let msix_cap = config.add_capability(&body, &mask);
        let notify_len = max_sizes.len() as u32 * NOTIFY_OFF_MULTIPLIER;
        for (cfg_type, offset, len) in [
            (CAP_COMMON_CFG, COMMON_OFFSET, COMMON_CFG_LEN as u32),
            (CAP_ISR_CFG, ISR_OFFSET, 1),
            (CAP_DEVICE_CFG, DEVICE_CFG_OFFSET, REGION_LEN as u32),
        ] {
            let body = virtio_cap(cfg_type, offset as u32, len, &[]);
            config.add_capability(&body, &vec![0; body.len()]);
        }
        let body = virtio_cap(
            CAP_NOTIFY_CFG,
            NOTIFY_OFFSET as u32,
            notify_len,
            &NOTIFY_OFF_MULTIPLIER.to_le_bytes(),
        );
        config.add_capability(&body, &vec![0; body.len()]);

        let common = CommonConfig::new(device.features(), max_sizes, count as u16);
        Ok(VirtioPciDevice {
            config,
            msix,
            msix_cap,
            vectors,
            common,
            device,
            mem,
            active: false,
        })
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Reset => {
                if self.active {
                    self.device.reset();
                    self.active = false;
                }
            }
            Action::Activate => match self.activate() {
                Ok(()) => self.active = true,
                Err(e) => {
                    error!("virtio-pci: cannot start device: {e}");
                    self.common.set_needs_reset();
                    let v = self.common.config_vector();
                    if v != NO_VECTOR {
                        self.msix.trigger(usize::from(v));
                    }
                }
            },
        }
    }

    fn activate(&mut self) -> Result<(), String> {
        let mut queues = Vec::new();
        for (i, c) in self.common.queues().iter().enumerate() {
            let mut q = Queue::new(c.max_size).map_err(|e| format!("queue {i}: {e}"))?;
            if c.enabled {
                q.try_set_size(c.size)
                    .and_then(|()| q.try_set_desc_table_address(GuestAddress(c.desc)))
                    .and_then(|()| q.try_set_avail_ring_address(GuestAddress(c.avail)))
                    .and_then(|()| q.try_set_used_ring_address(GuestAddress(c.used)))
                    .map_err(|e| format!("queue {i}: {e}"))?;
                q.set_ready(true);
                if !q.is_valid(&*self.mem) {
                    return Err(format!("queue {i} lies outside guest memory"));
                }
            }
            queues.push(q);
        }
        let interrupt = Arc::new(MsixInterrupt {
            vectors: self.vectors.clone(),
            queue_vectors: self.common.queues().iter().map(|q| q.vector).collect(),
        });
        self.device
            .activate(
                self.mem.clone(),
                self.common.driver_features(),
                queues,
                interrupt,
            )
            .map_err(|e| e.to_string())
    }

    fn notify(&self, offset: u64) {
        let queue = (offset / u64::from(NOTIFY_OFF_MULTIPLIER)) as usize;
        if let Some(evt) = self.device.queue_events().get(queue) {
            if let Err(e) = evt.write(1) {
                warn!("virtio-pci: cannot notify queue {queue}: {e}");
            }
        }
    }
}

/// A `struct virtio_pci_cap` for [`PciConfig::add_capability`], followed by
/// `extra` (the notify capability's multiplier).
fn virtio_cap(cfg_type: u8, offset: u32, len: u32, extra: &[u8]) -> Vec<u8> {
    // ID, length, type, BAR, id, 2 bytes padding, offset, length.
    let cap_len = 16 + extra.len() as u8;
    let mut body = vec![CAP_ID_VENDOR, cap_len, cfg_type, BAR_INDEX as u8, 0, 0, 0];
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(extra);
    body
}

/// The PCI class of a virtio device type.
fn pci_class(device_type: u32) -> (u8, u8, u8) {
    match device_type {
        // Mass storage, SCSI, as QEMU presents virtio-blk.
        virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK => (0x01, 0x00, 0x00),
        _ => (0xff, 0x00, 0x00),
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.config.read(reg)
    }

    fn write_config(&mut self, reg: usize, offset: u64, data: &[u8]) -> Vec<BarMove> {
        let moves = self.config.write(reg, offset, data);
        let control = self.msix_cap + MSIX_CONTROL_OFFSET;
        let start = reg * 4 + offset as usize;
        if start < control + 2 && control < start + data.len() {
            self.msix.set_control(self.config.read_u16(control));
        }
        moves
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.config.bars()
    }

    fn set_bar_address(&mut self, index: usize, addr: u64) {
        self.config.set_bar_address(index, addr);
    }

    fn set_bar_mapped(&mut self, index: usize, at: Option<u64>) {
        self.config.set_mapped(index, at);
    }

    fn bar_parts(&self, index: usize) -> Vec<BarPart> {
        if index != BAR_INDEX {
            return Vec::new();
        }
        let mut parts = Vec::new();
        for (i, evt) in self.device.queue_events().iter().enumerate() {
            // Without the ioeventfd the write is trapped and signals the
            // same eventfd from `write_bar`: slower, still correct.
            match evt.try_clone() {
                Ok(event) => parts.push(BarPart::Notify {
                    offset: NOTIFY_OFFSET + i as u64 * u64::from(NOTIFY_OFF_MULTIPLIER),
                    len: 2,
                    event,
                }),
                Err(e) => warn!("virtio-pci: no ioeventfd for queue {i}: {e}"),
            }
        }
        parts
    }

    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if index != BAR_INDEX {
            return;
        }
        let (region, off) = (offset / REGION_LEN * REGION_LEN, offset % REGION_LEN);
        match region {
            COMMON_OFFSET => self.common.read(off, data),
            DEVICE_CFG_OFFSET => self.device.read_config(off, data),
            MSIX_TABLE_OFFSET => self.msix.read_table(off, data),
            MSIX_PBA_OFFSET => self.msix.read_pba(off, data),
            // ISR: interrupts are MSI-X only, so no bit is ever set.
            // Notify: write-only.
            _ => {}
        }
    }

    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]) {
        if index != BAR_INDEX {
            return;
        }
        let (region, off) = (offset / REGION_LEN * REGION_LEN, offset % REGION_LEN);
        match region {
            COMMON_OFFSET => {
                if let Some(action) = self.common.write(off, data) {
                    self.apply(action);
                }
            }
            DEVICE_CFG_OFFSET => self.device.write_config(off, data),
            NOTIFY_OFFSET => self.notify(off),
            MSIX_TABLE_OFFSET => self.msix.write_table(off, data),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_blk::VIRTIO_BLK_T_FLUSH;
    use virtio_bindings::virtio_config::{
        VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
        VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    };
    use vm_memory::Bytes;

    use super::*;
    use crate::virtio::block::{Block, BlockConfig};
    use crate::virtio::testing::{
        memory, Driver, FakeInterrupts, Lcg, TempFile, AVAIL_RING, DESC_TABLE, QUEUE_SIZE,
        USED_RING, VIRTQ_DESC_F_WRITE,
    };
    use crate::virtio::VIRTIO_F_VERSION_1;

    const STATUS: u64 = 0x14;
    const INIT: u8 = (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER) as u8;
    const FEATURES_OK: u8 = VIRTIO_CONFIG_S_FEATURES_OK as u8;
    const DRIVER_OK: u8 = VIRTIO_CONFIG_S_DRIVER_OK as u8;

    struct Fixture {
        dev: VirtioPciDevice,
        irqs: FakeInterrupts,
        mem: Memory,
        _file: TempFile,
    }

    fn fixture() -> Fixture {
        let file = TempFile::new(1 << 16);
        let block = Block::new(BlockConfig {
            path: file.path().to_owned(),
            readonly: false,
            bypass_cache: false,
            sync_writes: false,
            logical_sector: 512,
            physical_sector: 512,
            serial: None,
            num_queues: 1,
            io_threads: 1,
            io_uring: true,
        })
        .unwrap();
        let irqs = FakeInterrupts::default();
        let mem = memory();
        let dev = VirtioPciDevice::new(Box::new(block), mem.clone(), &irqs).unwrap();
        Fixture {
            dev,
            irqs,
            mem,
            _file: file,
        }
    }

    impl Fixture {
        fn w(&mut self, off: u64, data: &[u8]) {
            self.dev.write_bar(0, COMMON_OFFSET + off, data);
        }
        fn r(&mut self, off: u64, len: usize) -> u64 {
            let mut b = [0u8; 8];
            self.dev.read_bar(0, COMMON_OFFSET + off, &mut b[..len]);
            u64::from_le_bytes(b)
        }
        fn status(&mut self) -> u8 {
            self.r(STATUS, 1) as u8
        }
        fn features(&mut self) -> u64 {
            self.w(0x00, &0u32.to_le_bytes());
            let lo = self.r(0x04, 4);
            self.w(0x00, &1u32.to_le_bytes());
            lo | self.r(0x04, 4) << 32
        }
        /// The Linux driver's probe sequence, with queue 0 at the test
        /// rings and vector 1.
        fn init(&mut self, enable_queue: bool) {
            self.w(STATUS, &[0]);
            self.w(STATUS, &[INIT]);
            let f = self.features();
            for (sel, half) in [(0u32, f as u32), (1, (f >> 32) as u32)] {
                self.w(0x08, &sel.to_le_bytes());
                self.w(0x0c, &half.to_le_bytes());
            }
            self.w(STATUS, &[INIT | FEATURES_OK]);
            assert_eq!(self.status(), INIT | FEATURES_OK);
            self.w(0x16, &0u16.to_le_bytes());
            self.w(0x18, &QUEUE_SIZE.to_le_bytes());
            self.w(0x1a, &1u16.to_le_bytes());
            for (off, addr) in [(0x20, DESC_TABLE), (0x28, AVAIL_RING), (0x30, USED_RING)] {
                self.w(off, &(addr as u32).to_le_bytes());
                self.w(off + 4, &((addr >> 32) as u32).to_le_bytes());
            }
            if enable_queue {
                self.w(0x1c, &1u16.to_le_bytes());
            }
            self.w(STATUS, &[INIT | FEATURES_OK | DRIVER_OK]);
        }
        fn enable_msix(&mut self) {
            let reg = (self.dev.msix_cap + MSIX_CONTROL_OFFSET) / 4;
            let shift = (self.dev.msix_cap + MSIX_CONTROL_OFFSET) % 4;
            self.dev
                .write_config(reg, shift as u64, &0x8000u16.to_le_bytes());
        }
        fn flush_request(&mut self, driver: &mut Driver) {
            self.mem
                .write_obj(VIRTIO_BLK_T_FLUSH, GuestAddress(0x10000))
                .unwrap();
            driver.add(&[(0x10000, 16, 0), (0x11000, 1, VIRTQ_DESC_F_WRITE)]);
        }
    }

    /// Walks the capability list: (offset, ID, config type for vendor caps).
    fn capabilities(dev: &mut VirtioPciDevice) -> Vec<(usize, u8, u8)> {
        let byte = |dev: &mut VirtioPciDevice, off: usize| {
            (dev.read_config(off / 4) >> (off % 4 * 8)) as u8
        };
        let mut caps = Vec::new();
        let mut off = usize::from(byte(dev, 0x34));
        while off != 0 {
            caps.push((off, byte(dev, off), byte(dev, off + 3)));
            off = usize::from(byte(dev, off + 1));
        }
        caps
    }

    #[test]
    fn identity_and_capabilities() {
        let mut f = fixture();
        assert_eq!(f.dev.read_config(0), 0x1042_1af4);
        assert_eq!(f.dev.read_config(2), 0x0100_0001);
        assert_eq!(f.dev.read_config(11), 0x1100_1af4);
        assert_eq!(
            f.dev.bars(),
            [BarInfo {
                index: 0,
                size: BAR_SIZE,
                kind: BarKind::Mem64,
                prefetchable: false
            }]
        );
        let caps = capabilities(&mut f.dev);
        let ids: Vec<_> = caps
            .iter()
            .map(|c| (c.1, if c.1 == 9 { c.2 } else { 0 }))
            .collect();
        assert_eq!(ids, [(0x11, 0), (9, 1), (9, 3), (9, 4), (9, 2)]);
        let notify = caps[4].0;
        assert_eq!(f.dev.read_config(notify / 4 + 2), NOTIFY_OFFSET as u32);
        assert_eq!(f.dev.read_config(notify / 4 + 4), NOTIFY_OFF_MULTIPLIER);
        let parts = f.dev.bar_parts(0);
        assert!(matches!(
            parts.as_slice(),
            [BarPart::Notify {
                offset: NOTIFY_OFFSET,
                len: 2,
                ..
            }]
        ));
        assert!(f.dev.bar_parts(2).is_empty());
    }

    #[test]
    fn probe_activates_and_requests_complete() {
        let mut f = fixture();
        f.enable_msix();
        // Unmask MSI-X entry 1 (the queue's vector).
        f.dev
            .write_bar(0, MSIX_TABLE_OFFSET + 16 + 12, &0u32.to_le_bytes());
        let vectors = f.irqs.last.lock().unwrap().clone().unwrap();
        assert!(vectors
            .log
            .lock()
            .unwrap()
            .contains(&"enable 1 true".to_string()));
        assert_ne!(f.features() & 1 << VIRTIO_F_VERSION_1, 0);
        // The guest's notify write, trapped (no ioeventfd in this test),
        // signals the queue's eventfd.
        f.dev.write_bar(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
        assert_eq!(f.dev.device.queue_events()[0].read().unwrap(), 1);
        let mut driver = Driver::new(&f.mem);
        f.init(true);
        assert_eq!(f.status(), INIT | FEATURES_OK | DRIVER_OK);
        f.flush_request(&mut driver);
        f.dev.write_bar(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
        // The queue's I/O thread completes it.
        wait_until(|| driver.used_idx() == 1);
        assert_eq!(f.mem.read_obj::<u8>(GuestAddress(0x11000)).unwrap(), 0);
        wait_until(|| vectors.events[1].read().is_ok_and(|n| n == 1));

        // Reset stops the device (its I/O threads are joined); the same
        // memory can be probed again.
        f.w(STATUS, &[0]);
        assert_eq!(f.status(), 0);
        f.flush_request(&mut driver);
        f.dev.write_bar(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(driver.used_idx(), 1, "no processing after reset");
        f.mem.write_slice(&[0; 0x3000], GuestAddress(0)).unwrap();
        let mut driver = Driver::new(&f.mem);
        f.init(true);
        f.flush_request(&mut driver);
        f.dev.write_bar(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
        wait_until(|| driver.used_idx() == 1);
    }

    /// Polls `done` for up to 10 s.
    fn wait_until(done: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed().as_secs() < 10, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn failed_activation_needs_reset() {
        let mut f = fixture();
        f.w(0x10, &0u16.to_le_bytes()); // config vector 0
        f.init(false);
        let needs_reset = VIRTIO_CONFIG_S_NEEDS_RESET as u8;
        assert_eq!(f.status(), INIT | FEATURES_OK | DRIVER_OK | needs_reset);
        let vectors = f.irqs.last.lock().unwrap().clone().unwrap();
        // init() reset the config vector; nothing could be raised.
        assert!(vectors.events[0].read().is_err());
        f.w(STATUS, &[0]);
        assert_eq!(f.status(), 0);
    }

    #[test]
    fn device_config_and_isr() {
        let mut f = fixture();
        let mut b = [0u8; 8];
        f.dev.read_bar(0, DEVICE_CFG_OFFSET, &mut b);
        assert_eq!(u64::from_le_bytes(b), (1 << 16) / 512, "capacity");
        let mut b = [0u8; 4];
        f.dev.read_bar(0, DEVICE_CFG_OFFSET + 0x14, &mut b);
        assert_eq!(u32::from_le_bytes(b), 512, "blk_size");
        f.dev.read_bar(0, DEVICE_CFG_OFFSET + 0xffc, &mut b);
        assert_eq!(b, [0; 4]);
        let mut isr = [0xffu8];
        f.dev.read_bar(0, ISR_OFFSET, &mut isr);
        assert_eq!(isr, [0]);
        // Accesses outside any structure, or to other BARs, are harmless.
        f.dev.write_bar(0, 0x7ff0, &[1, 2, 3, 4]);
        f.dev.write_bar(3, 0, &[1]);
    }

    #[test]
    fn random_guest_accesses_never_panic() {
        // Whatever a guest does to the BAR and config space, in whatever
        // order and width, vfvm must keep running.
        let mut f = fixture();
        let mut rng = Lcg(0x5eed);
        for i in 0..20_000u32 {
            let len = [1usize, 2, 4, 8, 3, 0][(rng.next() % 6) as usize];
            let mut data = [0u8; 8];
            for b in &mut data {
                *b = rng.next() as u8;
            }
            // Bias towards the common config so that the device gets
            // activated, reset and reprogrammed along the way.
            let off = match rng.next() % 4 {
                0 => COMMON_OFFSET + rng.next() % 0x40,
                _ => rng.next() % (BAR_SIZE + 0x100),
            };
            match rng.next() % 5 {
                0 => f.dev.read_bar(0, off, &mut data[..len]),
                1 => {
                    let reg = (rng.next() % 1100) as usize;
                    let _ = f.dev.read_config(reg);
                    let _ = f.dev.write_config(reg, rng.next() % 6, &data[..len.min(4)]);
                }
                _ => f.dev.write_bar(0, off, &data[..len]),
            }
            if i % 1000 == 0 {
                // Let the handler look at whatever queues the guest set up.
                let _ = f.dev.bar_parts(0);
            }
        }
    }
}
