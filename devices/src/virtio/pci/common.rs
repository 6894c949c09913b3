//! The virtio-pci common configuration structure: feature negotiation, the
//! device status state machine and queue setup (virtio 1.2, 4.1.4.3).
//!
//! This is pure register state. Writes that need the device (activation on
//! DRIVER_OK, reset on status 0) are returned as an [`Action`] for the
//! transport to carry out.

use log::warn;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET,
};

use crate::virtio::VIRTIO_F_VERSION_1;

/// A queue's or the configuration's MSI-X vector when it has none.
pub const NO_VECTOR: u16 = 0xffff;

const DRIVER_OK: u8 = VIRTIO_CONFIG_S_DRIVER_OK as u8;
const FEATURES_OK: u8 = VIRTIO_CONFIG_S_FEATURES_OK as u8;
const FAILED: u8 = VIRTIO_CONFIG_S_FAILED as u8;
const NEEDS_RESET: u8 = VIRTIO_CONFIG_S_NEEDS_RESET as u8;

// Register offsets in `struct virtio_pci_common_cfg`.
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const CONFIG_MSIX_VECTOR: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
/// Size of the structure.
pub const COMMON_CFG_LEN: u64 = 0x38;

/// What the transport must do after a register write.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// The driver wrote 0 to the status: stop the device.
    Reset,
    /// The driver set DRIVER_OK: start the device.
    Activate,
}

/// The driver's setup of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The device's maximum size.
    pub max_size: u16,
    /// The size the driver chose.
    pub size: u16,
    /// MSI-X vector for used-buffer notifications.
    pub vector: u16,
    /// Whether the driver enabled the queue.
    pub enabled: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring ("driver area") address.
    pub avail: u64,
    /// Used ring ("device area") address.
    pub used: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        QueueConfig {
            max_size,
            size: max_size,
            vector: NO_VECTOR,
            enabled: false,
            desc: 0,
            avail: 0,
            used: 0,
        }
    }
}

/// The common configuration registers of one function.
pub struct CommonConfig {
    device_features: u64,
    driver_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    status: u8,
    config_vector: u16,
    queue_select: u16,
    queues: Vec<QueueConfig>,
    msix_vectors: u16,
}

impl CommonConfig {
    /// Registers for a device offering `device_features`, with queues of
    /// `max_sizes` and `msix_vectors` MSI-X table entries.
    pub fn new(device_features: u64, max_sizes: &[u16], msix_vectors: u16) -> Self {
        CommonConfig {
            device_features,
            driver_features: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            status: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            queues: max_sizes.iter().map(|&m| QueueConfig::new(m)).collect(),
            msix_vectors,
        }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// The configuration-change MSI-X vector.
    pub fn config_vector(&self) -> u16 {
        self.config_vector
    }

    /// The driver's queue setup.
    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    /// Sets DEVICE_NEEDS_RESET: the device hit an error it cannot recover
    /// from without a reset (virtio 1.2, 2.1.1).
    pub fn set_needs_reset(&mut self) {
        self.status |= NEEDS_RESET;
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The selected queue, if the driver may still change its setup.
    fn selected_queue_mut(&mut self) -> Option<&mut QueueConfig> {
        let live = self.status & DRIVER_OK != 0;
        self.queues
            .get_mut(usize::from(self.queue_select))
            .filter(|q| !q.enabled && !live)
    }

    /// A read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let value = match data.len() {
            8 => self
                .read_dword(offset)
                .zip(self.read_dword(offset + 4))
                .filter(|_| matches!(offset, QUEUE_DESC | QUEUE_DRIVER | QUEUE_DEVICE))
                .map(|(lo, hi)| u64::from(hi) << 32 | u64::from(lo)),
            4 => self.read_dword(offset).map(u64::from),
            2 => self.read_word(offset).map(u64::from),
            1 => self.read_byte(offset).map(u64::from),
            _ => None,
        };
        let value = value.unwrap_or_else(|| {
            warn!(
                "virtio-pci: bad {}-byte common config read at {offset:#x}",
                data.len()
            );
            0
        });
        data.copy_from_slice(&value.to_le_bytes()[..data.len()]);
    }

    fn read_dword(&self, offset: u64) -> Option<u32> {
        let q = self.selected_queue();
        let half = |addr: fn(&QueueConfig) -> u64, high: bool| {
            q.map_or(0, |q| if high { addr(q) >> 32 } else { addr(q) } as u32)
        };
        Some(match offset {
            DEVICE_FEATURE_SELECT => self.device_feature_select,
            DEVICE_FEATURE => feature_window(self.device_features, self.device_feature_select),
            DRIVER_FEATURE_SELECT => self.driver_feature_select,
            DRIVER_FEATURE => feature_window(self.driver_features, self.driver_feature_select),
            QUEUE_DESC => half(|q| q.desc, false),
            0x24 => half(|q| q.desc, true),
            QUEUE_DRIVER => half(|q| q.avail, false),
            0x2c => half(|q| q.avail, true),
            QUEUE_DEVICE => half(|q| q.used, false),
            0x34 => half(|q| q.used, true),
            _ => return None,
        })
    }

    fn read_word(&self, offset: u64) -> Option<u16> {
        let q = self.selected_queue();
        Some(match offset {
            CONFIG_MSIX_VECTOR => self.config_vector,
            NUM_QUEUES => self.queues.len() as u16,
            QUEUE_SELECT => self.queue_select,
            // Size 0 tells the driver the queue does not exist.
            QUEUE_SIZE => q.map_or(0, |q| q.size),
            QUEUE_MSIX_VECTOR => q.map_or(NO_VECTOR, |q| q.vector),
            QUEUE_ENABLE => q.map_or(0, |q| u16::from(q.enabled)),
            // One notify address per queue: queue i at i * multiplier.
            QUEUE_NOTIFY_OFF => q.map_or(0, |_| self.queue_select),
            _ => return None,
        })
    }

    fn read_byte(&self, offset: u64) -> Option<u8> {
        match offset {
            DEVICE_STATUS => Some(self.status),
            // The device configuration never changes behind the driver's back.
            CONFIG_GENERATION => Some(0),
            _ => None,
        }
    }

    /// A write of `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<Action> {
        let mut bytes = [0u8; 8];
        bytes.get_mut(..data.len())?.copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        match (data.len(), offset) {
            (8, QUEUE_DESC | QUEUE_DRIVER | QUEUE_DEVICE) => {
                self.write_dword(offset, value as u32);
                self.write_dword(offset + 4, (value >> 32) as u32);
            }
            (4, _) => self.write_dword(offset, value as u32),
            (2, _) => self.write_word(offset, value as u16),
            (1, DEVICE_STATUS) => return self.write_status(value as u8),
            _ => warn!(
                "virtio-pci: bad {}-byte common config write at {offset:#x}",
                data.len()
            ),
        }
        None
    }

    fn write_dword(&mut self, offset: u64, value: u32) {
        match offset {
            DEVICE_FEATURE_SELECT => self.device_feature_select = value,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = value,
            DRIVER_FEATURE => {
                // Features are fixed once FEATURES_OK is set.
                if self.status & FEATURES_OK != 0 {
                    return;
                }
                let shift = match self.driver_feature_select {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features =
                    self.driver_features & !(0xffff_ffff << shift) | u64::from(value) << shift;
            }
            QUEUE_DESC..=0x37 => {
                let Some(q) = self.selected_queue_mut() else {
                    return;
                };
                let field = match offset & !7 {
                    QUEUE_DESC => &mut q.desc,
                    QUEUE_DRIVER => &mut q.avail,
                    _ => &mut q.used,
                };
                *field = if offset & 4 == 0 {
                    *field & !0xffff_ffff | u64::from(value)
                } else {
                    *field & 0xffff_ffff | u64::from(value) << 32
                };
            }
            _ => warn!("virtio-pci: ignoring write to common config {offset:#x}"),
        }
    }

    fn write_word(&mut self, offset: u64, value: u16) {
        // A vector past the MSI-X table cannot be used; reading back
        // NO_VECTOR tells the driver so.
        let vector = if value < self.msix_vectors {
            value
        } else {
            NO_VECTOR
        };
        match offset {
            CONFIG_MSIX_VECTOR => self.config_vector = vector,
            QUEUE_SELECT => self.queue_select = value,
            QUEUE_SIZE => {
                if let Some(q) = self.selected_queue_mut() {
                    q.size = value;
                }
            }
            QUEUE_MSIX_VECTOR => {
                if let Some(q) = self.selected_queue_mut() {
                    q.vector = vector;
                }
            }
            // Writing 0 is not allowed (a queue is disabled by a reset).
            QUEUE_ENABLE if value == 1 => {
                if let Some(q) = self.selected_queue_mut() {
                    q.enabled = true;
                }
            }
            _ => warn!("virtio-pci: ignoring write to common config {offset:#x}"),
        }
    }

    fn write_status(&mut self, status: u8) -> Option<Action> {
        if status == 0 {
            *self = CommonConfig::new(
                self.device_features,
                &self.queues.iter().map(|q| q.max_size).collect::<Vec<_>>(),
                self.msix_vectors,
            );
            return Some(Action::Reset);
        }
        let old = self.status;
        if status & old != old {
            warn!("virtio-pci: driver cleared status bits {old:#x} -> {status:#x} without a reset");
            return None;
        }
        let added = status & !old;
        let mut status = status;
        if added & FEATURES_OK != 0 && !self.features_acceptable() {
            // The driver reads the status back and sees its choice refused.
            warn!(
                "virtio-pci: refusing features {:#x} (offered {:#x}, VERSION_1 required)",
                self.driver_features, self.device_features
            );
            status &= !FEATURES_OK;
        }
        if added & DRIVER_OK != 0 && status & FEATURES_OK == 0 {
            warn!("virtio-pci: DRIVER_OK without FEATURES_OK");
            status &= !DRIVER_OK;
        }
        self.status = status;
        let start = added & DRIVER_OK != 0 && status & (DRIVER_OK | FAILED) == DRIVER_OK;
        start.then_some(Action::Activate)
    }

    fn features_acceptable(&self) -> bool {
        self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0
            && self.driver_features & !self.device_features == 0
    }
}

fn feature_window(features: u64, select: u32) -> u32 {
    match select {
        0 => features as u32,
        1 => (features >> 32) as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};

    const ACK: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    const DRIVER: u8 = VIRTIO_CONFIG_S_DRIVER as u8;
    const FEATURES: u64 = 1 << VIRTIO_F_VERSION_1 | 1 << 9 | 1 << 6;

    fn cfg() -> CommonConfig {
        CommonConfig::new(FEATURES, &[256, 128], 3)
    }

    fn r32(c: &CommonConfig, off: u64) -> u32 {
        let mut b = [0; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn r16(c: &CommonConfig, off: u64) -> u16 {
        let mut b = [0; 2];
        c.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    fn r8(c: &CommonConfig, off: u64) -> u8 {
        let mut b = [0; 1];
        c.read(off, &mut b);
        b[0]
    }

    fn w32(c: &mut CommonConfig, off: u64, v: u32) -> Option<Action> {
        c.write(off, &v.to_le_bytes())
    }

    fn w16(c: &mut CommonConfig, off: u64, v: u16) -> Option<Action> {
        c.write(off, &v.to_le_bytes())
    }

    fn status(c: &mut CommonConfig, v: u8) -> Option<Action> {
        c.write(DEVICE_STATUS, &[v])
    }

    fn ack_features(c: &mut CommonConfig, f: u64) {
        w32(c, DRIVER_FEATURE_SELECT, 0);
        w32(c, DRIVER_FEATURE, f as u32);
        w32(c, DRIVER_FEATURE_SELECT, 1);
        w32(c, DRIVER_FEATURE, (f >> 32) as u32);
    }

    #[test]
    fn device_features_are_read_in_windows() {
        let mut c = cfg();
        assert_eq!(r32(&c, DEVICE_FEATURE), (1 << 9) | (1 << 6));
        w32(&mut c, DEVICE_FEATURE_SELECT, 1);
        assert_eq!(r32(&c, DEVICE_FEATURE), 1);
        w32(&mut c, DEVICE_FEATURE_SELECT, 2);
        assert_eq!(r32(&c, DEVICE_FEATURE), 0);
        assert_eq!(r16(&c, NUM_QUEUES), 2);
    }

    #[test]
    fn features_ok_requires_version_1() {
        let mut c = cfg();
        status(&mut c, ACK | DRIVER);
        ack_features(&mut c, 1 << 9);
        status(&mut c, ACK | DRIVER | FEATURES_OK);
        assert_eq!(r8(&c, DEVICE_STATUS), ACK | DRIVER, "FEATURES_OK refused");
        ack_features(&mut c, FEATURES);
        status(&mut c, ACK | DRIVER | FEATURES_OK);
        assert_eq!(r8(&c, DEVICE_STATUS), ACK | DRIVER | FEATURES_OK);
        assert_eq!(c.driver_features(), FEATURES);
        // Frozen after FEATURES_OK.
        ack_features(&mut c, 1 << VIRTIO_F_VERSION_1);
        assert_eq!(c.driver_features(), FEATURES);
    }

    #[test]
    fn features_ok_refuses_features_not_offered() {
        let mut c = cfg();
        ack_features(&mut c, FEATURES | 1 << 13);
        status(&mut c, ACK | DRIVER | FEATURES_OK);
        assert_eq!(r8(&c, DEVICE_STATUS), ACK | DRIVER);
    }

    #[test]
    fn driver_ok_activates_once_and_only_after_features_ok() {
        let mut c = cfg();
        assert_eq!(status(&mut c, ACK | DRIVER | DRIVER_OK), None);
        assert_eq!(r8(&c, DEVICE_STATUS), ACK | DRIVER);
        ack_features(&mut c, FEATURES);
        status(&mut c, ACK | DRIVER | FEATURES_OK);
        let all = ACK | DRIVER | FEATURES_OK | DRIVER_OK;
        assert_eq!(status(&mut c, all), Some(Action::Activate));
        assert_eq!(status(&mut c, all), None);
        // Clearing bits needs a reset.
        assert_eq!(status(&mut c, ACK), None);
        assert_eq!(r8(&c, DEVICE_STATUS), all);
    }

    #[test]
    fn queue_setup_and_freeze() {
        let mut c = cfg();
        w16(&mut c, QUEUE_SELECT, 1);
        assert_eq!(r16(&c, QUEUE_SIZE), 128);
        assert_eq!(r16(&c, QUEUE_NOTIFY_OFF), 1);
        w16(&mut c, QUEUE_SIZE, 64);
        w16(&mut c, QUEUE_MSIX_VECTOR, 2);
        c.write(QUEUE_DESC, &0x1_2345_6000u64.to_le_bytes());
        w32(&mut c, QUEUE_DRIVER, 0x7000);
        w32(&mut c, QUEUE_DRIVER + 4, 1);
        w32(&mut c, QUEUE_DEVICE, 0x8000);
        w16(&mut c, QUEUE_ENABLE, 1);
        let q = c.queues()[1];
        assert_eq!(
            q,
            QueueConfig {
                max_size: 128,
                size: 64,
                vector: 2,
                enabled: true,
                desc: 0x1_2345_6000,
                avail: 0x1_0000_7000,
                used: 0x8000,
            }
        );
        let mut b = [0; 8];
        c.read(QUEUE_DESC, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0x1_2345_6000);
        // An enabled queue's setup is frozen.
        w16(&mut c, QUEUE_SIZE, 32);
        assert_eq!(r16(&c, QUEUE_SIZE), 64);
        // A vector past the table reads back as NO_VECTOR.
        w16(&mut c, QUEUE_SELECT, 0);
        w16(&mut c, QUEUE_MSIX_VECTOR, 3);
        assert_eq!(r16(&c, QUEUE_MSIX_VECTOR), NO_VECTOR);
        w16(&mut c, CONFIG_MSIX_VECTOR, 0);
        assert_eq!(c.config_vector(), 0);
        // A queue that does not exist has size 0 and ignores writes.
        w16(&mut c, QUEUE_SELECT, 2);
        w16(&mut c, QUEUE_SIZE, 16);
        assert_eq!(r16(&c, QUEUE_SIZE), 0);
    }

    #[test]
    fn reset_restores_defaults() {
        let mut c = cfg();
        ack_features(&mut c, FEATURES);
        w16(&mut c, QUEUE_SIZE, 16);
        w16(&mut c, QUEUE_ENABLE, 1);
        w16(&mut c, CONFIG_MSIX_VECTOR, 1);
        status(&mut c, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        c.set_needs_reset();
        assert_ne!(r8(&c, DEVICE_STATUS) & NEEDS_RESET, 0);
        assert_eq!(status(&mut c, 0), Some(Action::Reset));
        assert_eq!(r8(&c, DEVICE_STATUS), 0);
        assert_eq!(c.driver_features(), 0);
        assert_eq!(c.config_vector(), NO_VECTOR);
        assert_eq!(c.queues()[0], QueueConfig::new(256));
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let mut c = cfg();
        let mut b = [0xff; 3];
        c.read(0, &mut b);
        assert_eq!(b, [0; 3]);
        c.write(0x100, &[1; 16]);
        c.write(QUEUE_SIZE, &[1; 8]);
        assert_eq!(r16(&c, QUEUE_SIZE), 256);
    }
}
