//! PCI hotplug of a running VM: `vm.add-device`, `vm.add-disk` and
//! `vm.remove-device` on the event loop.
//!
//! An add turns its body into `-s` text ([`body`]), parses it with the
//! `-s` parser, checks the VM with it added ([`VmConfig::validate`]), and
//! then goes the way of a boot-time slot: `slot_devices::prepare_slot`
//! (every host check, then the host changes: journal, driver, VF
//! settings), `slot_devices::add_slot_device` (the device; the first VF
//! attached maps guest RAM for DMA, again after the last one left) and
//! [`crate::pci::PciBuilder::hot_add`] (BARs in the same windows). Only
//! then does the guest hear of it: the slot is marked up in the ACPI
//! hotplug controller and the GED interrupts. Any failure undoes what was
//! done, in reverse, before the answer.
//!
//! A removal asks the guest to eject the slot; only once it has (`_EJ0`
//! writes the controller's eject register, which wakes the event loop) is
//! the device taken off the bus and dropped (a VF is reset and closed, a
//! disk's I/O threads stop and its image closes), and then its host guard
//! (VF settings as they were, the driver back if `managed`, the claim
//! released). A removal the guest does not acknowledge is withdrawn by the
//! caller ([`Hotplug::cancel_removal`]); the device stays.

pub mod body;

use std::sync::{Arc, Mutex, MutexGuard};

use api::{ApiError, PciDeviceInfo};
use devices::acpi::ged::{Ged, GedEvent};
use devices::acpi::pcihp::PciHotplug;
use log::{info, warn};
use vmm_sys_util::eventfd::EventFd;

use crate::api_server::VmView;
use crate::config::{ConfigError, DeviceConfig, PciSlotConfig, SlotConflict, VmConfig};
use crate::slot_devices::{self, PassthruHost, SlotDevices};
use crate::vm::DeviceContext;

/// Guest slots that may hold a hot-plugged device: 1..=31.
const SLOTS: std::ops::RangeInclusive<u8> = 1..=31;

/// The slots of `cfg` that are hot-pluggable (a bit per slot): every slot
/// but 0 and those holding a bridge.
pub fn hotpluggable_slots(cfg: &VmConfig) -> u32 {
    let bridges = cfg
        .slots
        .iter()
        .filter(|s| matches!(s.device, DeviceConfig::HostBridge | DeviceConfig::Lpc))
        .fold(0u32, |m, s| m | 1 << s.slot);
    SLOTS.fold(0u32, |m, s| m | 1 << s) & !bridges
}

/// The slots of `cfg` holding a device (a bit per slot).
pub fn occupied_slots(cfg: &VmConfig) -> u32 {
    cfg.slots.iter().fold(0u32, |m, s| m | 1 << s.slot)
}

/// The slot a hot-added device goes to: `asked`, or the lowest free one.
/// `in_use(slot)` names what holds an occupied slot.
fn choose_slot(
    asked: Option<u8>,
    hotpluggable: u32,
    occupied: u32,
    in_use: impl Fn(u8) -> String,
) -> Result<u8, String> {
    let free = |s: u8| hotpluggable & !occupied & (1 << s) != 0;
    match asked {
        None => SLOTS
            .clone()
            .find(|&s| free(s))
            .ok_or_else(|| "every hot-pluggable slot is in use: remove a device first".to_string()),
        Some(s) if !SLOTS.contains(&s) => Err(format!(
            "slot {s} is out of range: hot-pluggable slots are {}..{}",
            SLOTS.start(),
            SLOTS.end()
        )),
        Some(s) if occupied & (1 << s) != 0 => Err(format!(
            "slot {s} is in use ({}): remove it first, or choose a free slot",
            in_use(s)
        )),
        Some(s) if !free(s) => Err(format!("slot {s} is not hot-pluggable")),
        Some(s) => Ok(s),
    }
}

/// `cfg` with the hot-added slot `s`, checked as a boot-time
/// configuration is. An id or a host device the VM has already is Cloud
/// Hypervisor's conflict (409); anything else invalid is a bad request.
fn with_slot(cfg: &VmConfig, s: &PciSlotConfig) -> Result<VmConfig, ApiError> {
    if let Some(id) = &s.id {
        if cfg.slots.iter().any(|o| o.id() == *id) {
            return Err(ApiError::Conflict(format!(
                "id {id} is in use: choose another"
            )));
        }
    }
    let mut candidate = cfg.clone();
    candidate.slots.push(s.clone());
    candidate.validate().map_err(|e| match e {
        ConfigError::SlotConflict {
            conflict: SlotConflict::HostTwice { .. },
            ..
        } => ApiError::Conflict(e.to_string()),
        e => ApiError::BadRequest(e.to_string()),
    })?;
    Ok(candidate)
}

/// Refuses an id that is empty or names another slot: `SLOT:FUNCTION` is
/// each slot's own default id.
fn check_id(id: &str, slot: u8, function: u8) -> Result<(), String> {
    if id.is_empty() || id.chars().any(|c| c.is_control()) {
        return Err(format!(
            "id {id:?}: give a non-empty name without control characters"
        ));
    }
    let numbers = id.split_once(':').filter(|(a, b)| {
        [a, b]
            .iter()
            .all(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
    });
    if numbers.is_some() && id != format!("{slot}:{function}") {
        return Err(format!(
            "id {id}: ids of the form SLOT:FUNCTION name their own slot (leave the id out, or choose a name)"
        ));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The VM's hot-pluggable slots and what adding and removing needs.
pub struct Hotplug {
    /// The VM's slot devices and bus (shared with `RunningVm`, which drops
    /// them in the teardown order).
    pub devices: Arc<Mutex<SlotDevices>>,
    /// The passthrough devices' host guards (shared the same way).
    pub host: Arc<Mutex<PassthruHost>>,
    /// What building a device needs of the VM.
    pub ctx: DeviceContext,
    /// The ACPI hotplug controller.
    pub controller: Arc<PciHotplug>,
    /// The GED that tells the guest.
    pub ged: Arc<Ged>,
    /// The running configuration: the boot-time slots and those added since.
    pub config: VmConfig,
    /// Slots that may hold a hot-plugged device (a bit per slot).
    pub hotpluggable: u32,
    /// Slots whose eject was asked for and not yet done.
    removing: u32,
}

impl Hotplug {
    /// The hotplug state of a VM started from `config`.
    pub fn new(
        devices: Arc<Mutex<SlotDevices>>,
        host: Arc<Mutex<PassthruHost>>,
        ctx: DeviceContext,
        controller: Arc<PciHotplug>,
        ged: Arc<Ged>,
        config: VmConfig,
    ) -> Self {
        Hotplug {
            hotpluggable: hotpluggable_slots(&config),
            devices,
            host,
            ctx,
            controller,
            ged,
            config,
            removing: 0,
        }
    }

    /// Signalled when the guest ejects a slot.
    pub fn ejected_event(&self) -> &EventFd {
        self.controller.ejected_event()
    }

    fn describe(&self, slot: u8) -> String {
        let ids: Vec<String> = self
            .config
            .slots
            .iter()
            .filter(|s| s.slot == slot)
            .map(|s| format!("device {} ({})", s.id(), s.device.emulation()))
            .collect();
        if ids.is_empty() {
            "a device being removed".into()
        } else {
            ids.join(", ")
        }
    }

    /// Hot-adds the device of a `vm.add-device` body.
    pub fn add_device(&mut self, b: &api::DeviceConfig) -> Result<PciDeviceInfo, ApiError> {
        self.add(
            b.pci_common.pci_device_id,
            b.pci_common.id.clone(),
            |slot| body::device_text(b, slot),
        )
    }

    /// Hot-adds the disk of a `vm.add-disk` body.
    pub fn add_disk(&mut self, b: &api::DiskConfig) -> Result<PciDeviceInfo, ApiError> {
        self.add(
            b.pci_common.pci_device_id,
            b.pci_common.id.clone(),
            |slot| body::disk_text(b, slot),
        )
    }

    fn add(
        &mut self,
        asked: Option<u8>,
        id: Option<String>,
        text: impl FnOnce(u8) -> Result<String, String>,
    ) -> Result<PciDeviceInfo, ApiError> {
        let occupied = occupied_slots(&self.config) | self.removing;
        let slot = choose_slot(asked, self.hotpluggable, occupied, |s| self.describe(s))
            .map_err(ApiError::BadRequest)?;
        let text = text(slot).map_err(ApiError::BadRequest)?;
        let mut s: PciSlotConfig = text
            .parse()
            .map_err(|e: crate::config::ConfigError| ApiError::BadRequest(e.to_string()))?;
        if s.function != 0 {
            return Err(ApiError::BadRequest(format!(
                "-s {text}: a hot-added device goes at function 0 of an empty slot"
            )));
        }
        if let Some(id) = &id {
            check_id(id, s.slot, s.function).map_err(ApiError::BadRequest)?;
        }
        s.id = id;
        let candidate = with_slot(&self.config, &s)?;
        // The host side, as for a boot-time slot: checks, then changes.
        let (prepared, guard) = slot_devices::prepare_slot(&s, &candidate)
            .map_err(|e| ApiError::NotFound(e.to_string()))?;
        let vfio = guard.is_some();
        let mut devices = lock(&self.devices);
        let device = match slot_devices::add_slot_device(&mut devices, &self.ctx, prepared) {
            Ok(d) => d,
            Err(e) => {
                drop(guard);
                return Err(ApiError::NotFound(e.to_string()));
            }
        };
        if let Err(e) = devices.pci.hot_add(s.slot, s.function, device) {
            devices.forget(s.slot, s.function, vfio);
            if vfio {
                devices.vfio_released(&self.ctx.memory);
            }
            drop(devices);
            drop(guard);
            return Err(ApiError::NotFound(e.to_string()));
        }
        drop(devices);
        if let Some(guard) = guard {
            lock(&self.host).add((s.slot, s.function), guard);
        }
        let answer = PciDeviceInfo {
            id: s.id(),
            bdf: format!("0000:00:{:02x}.{}", s.slot, s.function),
        };
        info!(
            "hot-added -s {} as {} at {}",
            s.arg(),
            answer.id,
            answer.bdf
        );
        self.config.slots.push(s);
        self.controller.plug(slot);
        if let Err(e) = self.ged.notify(GedEvent::PciSlots) {
            warn!("cannot raise the GED interrupt for slot {slot}: {e}");
        }
        Ok(answer)
    }

    /// Asks the guest to eject the device `id`; returns its slot. The
    /// device goes once the guest has ejected it ([`Hotplug::ejected`]).
    pub fn request_removal(&mut self, id: &str) -> Result<u8, ApiError> {
        let s = self
            .config
            .slots
            .iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| {
                let ids: Vec<String> = self.config.slots.iter().map(PciSlotConfig::id).collect();
                ApiError::NotFound(format!(
                    "no device has id {id:?} (the VM's: {})",
                    ids.join(", ")
                ))
            })?;
        let slot = s.slot;
        if self.hotpluggable & (1 << slot) == 0 {
            return Err(ApiError::BadRequest(format!(
                "{id} is the {}: it cannot be removed",
                s.device.emulation()
            )));
        }
        if self.config.slots.iter().filter(|o| o.slot == slot).count() > 1 {
            return Err(ApiError::BadRequest(format!(
                "{id} shares slot {slot} with other functions: ACPI ejects whole slots, and vfvm removes single-function slots only"
            )));
        }
        if self.removing & (1 << slot) != 0 {
            return Err(ApiError::BadRequest(format!(
                "{id} is being removed already"
            )));
        }
        self.removing |= 1 << slot;
        self.controller.request_eject(slot);
        self.ged
            .notify(GedEvent::PciSlots)
            .map_err(|e| ApiError::Internal(format!("cannot raise the GED interrupt: {e}")))?;
        info!("asked the guest to eject {id} (slot {slot})");
        Ok(slot)
    }

    /// Withdraws the removal of `slot` the guest did not acknowledge: the
    /// device stays. (A guest that had read the request and ejects later
    /// still has the device taken away then: it let go of it.)
    pub fn cancel_removal(&mut self, slot: u8) {
        self.removing &= !(1 << slot);
        if self.controller.cancel_eject(slot) {
            warn!("slot {slot}: the guest saw the eject request but has not ejected; the device stays");
        }
    }

    /// Takes away every device the guest ejected; returns their slots.
    pub fn ejected(&mut self) -> Vec<u8> {
        let mask = self.controller.take_ejected();
        let slots: Vec<u8> = SLOTS.clone().filter(|s| mask & (1 << s) != 0).collect();
        for &slot in &slots {
            self.remove(slot);
        }
        slots
    }

    /// Takes the device of an ejected `slot` off the bus and releases it.
    fn remove(&mut self, slot: u8) {
        self.removing &= !(1 << slot);
        let Some(at) = self.config.slots.iter().position(|s| s.slot == slot) else {
            self.controller.unplugged(slot);
            return;
        };
        if self.hotpluggable & (1 << slot) == 0 {
            return;
        }
        let s = self.config.slots.remove(at);
        let vfio = matches!(s.device, DeviceConfig::Passthru(_));
        let device = {
            let mut devices = lock(&self.devices);
            let device = devices.pci.remove(s.slot, s.function);
            devices.forget(s.slot, s.function, vfio);
            device
        };
        if let Some(d) = &device {
            if Arc::strong_count(d) > 1 {
                warn!("{}: still referenced after its removal", s.id());
            }
        }
        // A VF is reset and closed, a disk's threads stop, its image closes.
        drop(device);
        if vfio {
            lock(&self.devices).vfio_released(&self.ctx.memory);
        }
        // Then the host gets the device back.
        drop(lock(&self.host).take((s.slot, s.function)));
        self.controller.unplugged(slot);
        info!("removed {} from slot {slot} (-s {})", s.id(), s.arg());
    }

    /// Brings `view` up to date with the slots as they are now.
    pub fn refresh(&self, view: &mut VmView) {
        let host = lock(&self.host);
        view.config = host.resolved(&self.config);
        view.vfs = host.views();
        drop(host);
        let devices = lock(&self.devices);
        view.devices = devices.device_metrics.clone();
        view.msix = devices.msix_metrics.clone();
        view.start.dma_map_secs = devices.dma_map_time.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: u8) -> String {
        "device 5:0 (passthru)".into()
    }

    #[test]
    fn the_lowest_free_slot_unless_one_is_asked() {
        let hotpluggable = (1u32..32).fold(0, |m, s| m | 1 << s) & !(1 << 31);
        let occupied = 1 | 1 << 1 | 1 << 2 | 1 << 5;
        assert_eq!(choose_slot(None, hotpluggable, occupied, none), Ok(3));
        assert_eq!(choose_slot(Some(6), hotpluggable, occupied, none), Ok(6));
        assert_eq!(
            choose_slot(Some(5), hotpluggable, occupied, none).unwrap_err(),
            "slot 5 is in use (device 5:0 (passthru)): remove it first, or choose a free slot"
        );
        assert_eq!(
            choose_slot(Some(32), hotpluggable, occupied, none).unwrap_err(),
            "slot 32 is out of range: hot-pluggable slots are 1..31"
        );
        assert_eq!(
            choose_slot(Some(0), hotpluggable, occupied, none).unwrap_err(),
            "slot 0 is out of range: hot-pluggable slots are 1..31"
        );
        // Slot 31 holds the LPC bridge in this VM.
        assert_eq!(
            choose_slot(Some(31), hotpluggable, 0, none).unwrap_err(),
            "slot 31 is not hot-pluggable"
        );
        assert!(choose_slot(None, hotpluggable, u32::MAX, none)
            .unwrap_err()
            .starts_with("every hot-pluggable slot is in use"));
    }

    #[test]
    fn bridges_are_not_hot_pluggable() {
        let mut cfg = crate::cli::run_config(
            &[
                "-s",
                "0,hostbridge",
                "-s",
                "31,lpc",
                "-s",
                "4,virtio-blk,/d.img",
                "--kernel",
                "/k",
                "g",
            ]
            .map(String::from),
        )
        .unwrap();
        let hp = hotpluggable_slots(&cfg);
        assert_eq!(hp & 1, 0);
        assert_eq!(hp & 1 << 31, 0);
        assert_ne!(hp & 1 << 4, 0, "a disk at boot is hot-removable");
        assert_eq!(occupied_slots(&cfg), 1 | 1 << 4 | 1 << 31);
        cfg.slots.clear();
        assert_eq!(hotpluggable_slots(&cfg).count_ones(), 31);
    }

    #[test]
    fn an_id_or_host_device_the_vm_has_is_a_conflict() {
        let cfg = crate::cli::run_config(
            &[
                "-s",
                "0,hostbridge",
                "-s",
                "5,passthru,0000:01:10.0",
                "--kernel",
                "/k",
                "g",
            ]
            .map(String::from),
        )
        .unwrap();
        let slot = |text: &str, id: &str| {
            let mut s: PciSlotConfig = text.parse().unwrap();
            s.id = Some(id.into());
            s
        };
        // What ch-remote add-device path=...,id=ID asks, and its answers.
        let e = with_slot(&cfg, &slot("6,passthru,0000:01:10.0", "x")).unwrap_err();
        assert_eq!(e.status(), 409, "{e}");
        assert!(
            e.to_string()
                .contains("0000:01:10.0 is already passed through"),
            "{e}"
        );
        let e = with_slot(&cfg, &slot("6,passthru,0000:01:10.2", "5:0")).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (409, "id 5:0 is in use: choose another")
        );
        let e = with_slot(&cfg, &slot("6,hostbridge", "y")).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        let ok = with_slot(&cfg, &slot("6,passthru,0000:01:10.2", "x")).unwrap();
        assert_eq!(ok.slots.last().map(PciSlotConfig::id).as_deref(), Some("x"));
    }

    #[test]
    fn ids_of_the_slot_form_name_their_own_slot() {
        assert_eq!(check_id("6:0", 6, 0), Ok(()));
        assert_eq!(check_id("nic1", 6, 0), Ok(()));
        assert_eq!(check_id("a:b", 6, 0), Ok(()));
        assert!(check_id("7:0", 6, 0)
            .unwrap_err()
            .starts_with("id 7:0: ids of the form"));
        assert!(check_id("", 6, 0).is_err());
        assert!(check_id("x\n", 6, 0).is_err());
    }
}
