//! `-s slot[:function],emulation[,conf]`: guest PCI slots and their devices.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use super::{ConfigError, MacAddr, PciAddress};

/// Emulations accepted by `-s`, for error messages.
const EMULATIONS: &str = "hostbridge, lpc, virtio-blk, passthru";
const BLK_OPTIONS: &str = "ro, nocache, direct, sectorsize=L[/P], serial=S";
const PASSTHRU_OPTIONS: &str = "mac=, vlan=, spoofchk=on|off, trust=on|off, managed";

/// Number of slots (devices) on a PCI bus.
const PCI_SLOTS: u8 = 32;
/// Number of functions in a PCI slot.
const PCI_FUNCTIONS: u8 = 8;
/// Longest virtio-blk serial (`VIRTIO_BLK_ID_BYTES`).
const BLK_SERIAL_MAX: usize = 20;

/// One `-s` option: a device at `slot:function` on guest PCI bus 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciSlotConfig {
    /// Guest PCI slot (device number), 0..=31.
    pub slot: u8,
    /// Guest PCI function, 0..=7; a slot that uses functions above 0 needs function 0 too.
    pub function: u8,
    /// What is at that address.
    pub device: DeviceConfig,
}

/// The device (bhyve "emulation") in a PCI slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum DeviceConfig {
    /// `hostbridge` (bhyve's `amd_hostbridge` is accepted as the same thing).
    #[serde(rename = "hostbridge")]
    HostBridge,
    /// `lpc`: the PCI-ISA bridge behind which `-l com1` lives.
    #[serde(rename = "lpc")]
    Lpc,
    /// `virtio-blk,PATH[,ro][,nocache][,direct][,sectorsize=L[/P]][,serial=S]`.
    #[serde(rename = "virtio-blk")]
    VirtioBlk(BlkConfig),
    /// `passthru,ADDR[,mac=M][,vlan=N][,spoofchk=on|off][,trust=on|off][,managed]`.
    #[serde(rename = "passthru")]
    Passthru(PassthruConfig),
}

impl DeviceConfig {
    /// The `-s` emulation name.
    pub fn emulation(&self) -> &'static str {
        match self {
            DeviceConfig::HostBridge => "hostbridge",
            DeviceConfig::Lpc => "lpc",
            DeviceConfig::VirtioBlk(_) => "virtio-blk",
            DeviceConfig::Passthru(_) => "passthru",
        }
    }
}

/// A virtio block device backed by a file or block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlkConfig {
    /// Disk image: a regular file or a block device.
    pub path: PathBuf,
    /// `ro`: the guest cannot write (VIRTIO_BLK_F_RO; opened read-only).
    pub readonly: bool,
    /// `nocache`: open with `O_DIRECT` (bypass the host page cache).
    pub nocache: bool,
    /// `direct`: open with `O_SYNC` (bhyve's name: writes are synchronous).
    pub direct: bool,
    /// Logical sector size in bytes: a power of two, 512..=4096 (default 512).
    pub logical_sector: u32,
    /// Physical sector size in bytes: a power of two, 512..=4096, >= logical.
    pub physical_sector: u32,
    /// `serial=` (or bhyve's `ser=`): the disk serial, at most 20 printable ASCII bytes.
    pub serial: Option<String>,
}

impl BlkConfig {
    /// A read-write disk with 512-byte sectors and no options.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        BlkConfig {
            path: path.into(),
            readonly: false,
            nocache: false,
            direct: false,
            logical_sector: 512,
            physical_sector: 512,
            serial: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("empty disk image path".to_string());
        }
        let (l, p) = (self.logical_sector, self.physical_sector);
        for (name, size) in [("logical", l), ("physical", p)] {
            if !size.is_power_of_two() || !(512..=4096).contains(&size) {
                return Err(format!(
                    "sectorsize: {name} size {size} must be 512, 1024, 2048 or 4096"
                ));
            }
        }
        if p < l {
            return Err(format!(
                "sectorsize={l}/{p}: the physical size must be at least the logical one (e.g. sectorsize=512/4096)"
            ));
        }
        if let Some(serial) = &self.serial {
            if serial.is_empty() || serial.len() > BLK_SERIAL_MAX {
                return Err(format!(
                    "serial={serial}: must be 1 to {BLK_SERIAL_MAX} characters"
                ));
            }
            if !serial.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "serial={serial}: only printable ASCII without spaces is allowed"
                ));
            }
        }
        Ok(())
    }
}

/// A host PCI function (normally an SR-IOV VF) given to the guest via VFIO.
///
/// The VF settings are applied on the PF before the VM starts; `None` means
/// "leave the host's setting alone".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassthruConfig {
    /// The host device.
    pub host: PciAddress,
    /// `mac=`: the VF's MAC address (unicast, non-zero).
    pub mac: Option<MacAddr>,
    /// `vlan=`: the VF's port VLAN, 0..=4095; `Some(0)` clears it (untagged).
    pub vlan: Option<u16>,
    /// `spoofchk=on|off`: the PF's MAC anti-spoof check for the VF.
    pub spoofchk: Option<bool>,
    /// `trust=on|off`: VF trust (lets the guest use promiscuous mode, change its MAC...).
    pub trust: Option<bool>,
    /// `managed`: vfvm binds the device to vfio-pci itself (and gives it back afterwards).
    pub managed: bool,
}

impl PassthruConfig {
    /// The host device with no VF settings and not managed.
    pub fn new(host: PciAddress) -> Self {
        PassthruConfig {
            host,
            mac: None,
            vlan: None,
            spoofchk: None,
            trust: None,
            managed: false,
        }
    }

    fn check(&self) -> Result<(), String> {
        let host = self.host;
        if host.device > 31 || host.function > 7 {
            return Err(format!(
                "host device {host} is not a PCI address (device 0..1f, function 0..7)"
            ));
        }
        if let Some(mac) = self.mac {
            if mac.is_zero() {
                return Err(format!(
                    "mac={mac}: the all-zero address is not usable (give a real one, or leave mac= out)"
                ));
            }
            if mac.is_multicast() {
                return Err(format!(
                    "mac={mac}: multicast address, a VF needs a unicast one (the first octet must be even)"
                ));
            }
        }
        if let Some(vlan) = self.vlan {
            if vlan > 4095 {
                return Err(format!(
                    "vlan={vlan}: out of range (use 0..4095, 0 = untagged)"
                ));
            }
        }
        Ok(())
    }
}

impl PciSlotConfig {
    /// Checks this slot on its own (ranges, device options), giving the reason.
    fn check(&self) -> Result<(), String> {
        if self.slot >= PCI_SLOTS {
            return Err(format!("slot {} is out of range (use 0..31)", self.slot));
        }
        if self.function >= PCI_FUNCTIONS {
            return Err(format!(
                "function {} is out of range (use 0..7)",
                self.function
            ));
        }
        match &self.device {
            DeviceConfig::HostBridge | DeviceConfig::Lpc => Ok(()),
            DeviceConfig::VirtioBlk(blk) => blk.check(),
            DeviceConfig::Passthru(pt) => pt.check(),
        }
    }
}

/// Parses a `-s` value. Checks the slot on its own; conflicts between slots
/// are checked by [`super::VmConfig::validate`].
impl FromStr for PciSlotConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let slot = parse_slot(s)
            .and_then(|slot| slot.check().map(|()| slot))
            .map_err(|reason| ConfigError::Slot {
                value: s.to_string(),
                reason,
            })?;
        Ok(slot)
    }
}

fn parse_slot(s: &str) -> Result<PciSlotConfig, String> {
    if s.is_empty() {
        return Err(format!(
            "empty (use -s SLOT[:FUNCTION],EMULATION[,CONF]; emulations: {EMULATIONS})"
        ));
    }
    let (address, rest) = s.split_once(',').unwrap_or((s, ""));
    let (slot, function) = parse_guest_address(address)?;
    let mut options = rest.split(',');
    let emulation = options.next().unwrap_or_default();
    let options: Vec<&str> = options.collect();
    let device = match emulation {
        "hostbridge" | "amd_hostbridge" | "lpc" => {
            if let Some(option) = options.first() {
                return Err(format!("{emulation} takes no options (remove ',{option}')"));
            }
            if emulation == "lpc" {
                DeviceConfig::Lpc
            } else {
                DeviceConfig::HostBridge
            }
        }
        "virtio-blk" => DeviceConfig::VirtioBlk(parse_blk(address, &options)?),
        "passthru" => DeviceConfig::Passthru(parse_passthru(address, &options)?),
        "" => {
            return Err(format!(
                "missing emulation (use -s {address},EMULATION; known: {EMULATIONS})"
            ))
        }
        other => return Err(format!("unknown emulation '{other}' (known: {EMULATIONS})")),
    };
    Ok(PciSlotConfig {
        slot,
        function,
        device,
    })
}

/// `slot`, `slot:function` or `bus:slot:function`, decimal as in bhyve.
fn parse_guest_address(s: &str) -> Result<(u8, u8), String> {
    const USE: &str = "use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...";
    let digits = |name: &str, v: &str| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{name} '{v}' is not a number ({USE})"));
        }
        Ok(())
    };
    let number = |name: &str, v: &str, max: u8| -> Result<u8, String> {
        digits(name, v)?;
        match v.parse::<u8>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("{name} {v} is out of range (use 0..{max})")),
        }
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (slot, function) = match parts[..] {
        [slot] => (slot, "0"),
        [slot, function] => (slot, function),
        [bus, slot, function] => {
            digits("bus", bus)?;
            if bus.bytes().any(|b| b != b'0') {
                return Err(format!(
                    "bus {bus} is not supported, only bus 0 (use -s {slot}:{function},...)"
                ));
            }
            (slot, function)
        }
        _ => return Err(format!("too many ':' in '{s}' ({USE})")),
    };
    Ok((
        number("slot", slot, PCI_SLOTS - 1)?,
        number("function", function, PCI_FUNCTIONS - 1)?,
    ))
}

/// Splits `key=value` / `flag`, rejecting repeated keys.
fn split_option<'a>(
    option: &'a str,
    seen: &mut Vec<&'a str>,
) -> Result<(&'a str, Option<&'a str>), String> {
    let (key, value) = match option.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (option, None),
    };
    if key.is_empty() {
        return Err(format!("empty option '{option}' (remove the extra ',')"));
    }
    if seen.contains(&key) {
        return Err(format!("option '{key}' given twice"));
    }
    seen.push(key);
    Ok((key, value))
}

fn flag(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None => Ok(true),
        Some(v) => Err(format!(
            "'{key}' takes no value (write '{key}', not '{key}={v}')"
        )),
    }
}

fn needs_value<'a>(key: &str, value: Option<&'a str>, example: &str) -> Result<&'a str, String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("'{key}' needs a value (e.g. {example})"))
}

fn parse_blk(address: &str, options: &[&str]) -> Result<BlkConfig, String> {
    let Some((&path, options)) = options.split_first().filter(|(p, _)| !p.is_empty()) else {
        return Err(format!(
            "missing disk image path (use -s {address},virtio-blk,PATH)"
        ));
    };
    let mut blk = BlkConfig::new(path);
    let mut seen = Vec::new();
    for option in options {
        let (key, value) = split_option(option, &mut seen)?;
        match key {
            "ro" => blk.readonly = flag(key, value)?,
            "nocache" => blk.nocache = flag(key, value)?,
            "direct" => blk.direct = flag(key, value)?,
            "sectorsize" => {
                let value = needs_value(key, value, "sectorsize=4096 or sectorsize=512/4096")?;
                let (logical, physical) = value.split_once('/').unwrap_or((value, value));
                let size = |v: &str| {
                    v.parse::<u32>().map_err(|_| {
                        format!(
                            "sectorsize={value}: '{v}' is not a number (e.g. sectorsize=512/4096)"
                        )
                    })
                };
                blk.logical_sector = size(logical)?;
                blk.physical_sector = size(physical)?;
            }
            "serial" | "ser" => {
                if seen.contains(&"serial") && seen.contains(&"ser") {
                    return Err("option 'serial' given twice (ser= is the same)".to_string());
                }
                blk.serial = Some(needs_value(key, value, "serial=DISK0001")?.to_string());
            }
            _ => {
                return Err(format!(
                    "unknown virtio-blk option '{key}' (known: {BLK_OPTIONS})"
                ))
            }
        }
    }
    Ok(blk)
}

fn parse_on_off(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(v) => Err(format!("{key}={v}: use {key}=on or {key}=off")),
        None => Err(format!("'{key}' needs a value: {key}=on or {key}=off")),
    }
}

fn parse_passthru(address: &str, options: &[&str]) -> Result<PassthruConfig, String> {
    let Some((&host, options)) = options.split_first().filter(|(h, _)| !h.is_empty()) else {
        return Err(format!(
            "missing host address (use -s {address},passthru,B/S/F or -s {address},passthru,DDDD:BB:SS.F)"
        ));
    };
    let host: PciAddress = host.parse().map_err(|e: ConfigError| e.to_string())?;
    let mut pt = PassthruConfig::new(host);
    let mut seen = Vec::new();
    for option in options {
        let (key, value) = split_option(option, &mut seen)?;
        match key {
            "mac" => {
                let value = needs_value(key, value, "mac=aa:88:44:00:02:01")?;
                pt.mac = Some(
                    value
                        .parse()
                        .map_err(|e: ConfigError| format!("mac={value}: {e}"))?,
                );
            }
            "vlan" => {
                let value = needs_value(key, value, "vlan=100")?;
                let vlan = value
                    .parse::<u16>()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .filter(|&v| v <= 4095)
                    .ok_or_else(|| format!("vlan={value}: use a number 0..4095 (0 = untagged)"))?;
                pt.vlan = Some(vlan);
            }
            "spoofchk" => pt.spoofchk = Some(parse_on_off(key, value)?),
            "trust" => pt.trust = Some(parse_on_off(key, value)?),
            "managed" => pt.managed = flag(key, value)?,
            _ => {
                return Err(format!(
                    "unknown passthru option '{key}' (known: {PASSTHRU_OPTIONS})"
                ))
            }
        }
    }
    Ok(pt)
}

impl fmt::Display for PciSlotConfig {
    /// `-s` syntax, e.g. `5:0,passthru,0000:01:10.0,mac=aa:88:44:00:02:01`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{},{}", self.slot, self.function, self.device)
    }
}

impl fmt::Display for DeviceConfig {
    /// `-s` syntax without the slot, e.g. `virtio-blk,disk.img,ro`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.emulation())?;
        match self {
            DeviceConfig::HostBridge | DeviceConfig::Lpc => Ok(()),
            DeviceConfig::VirtioBlk(blk) => {
                write!(f, ",{}", blk.path.display())?;
                for (set, name) in [
                    (blk.readonly, "ro"),
                    (blk.nocache, "nocache"),
                    (blk.direct, "direct"),
                ] {
                    if set {
                        write!(f, ",{name}")?;
                    }
                }
                if (blk.logical_sector, blk.physical_sector) != (512, 512) {
                    write!(
                        f,
                        ",sectorsize={}/{}",
                        blk.logical_sector, blk.physical_sector
                    )?;
                }
                if let Some(serial) = &blk.serial {
                    write!(f, ",serial={serial}")?;
                }
                Ok(())
            }
            DeviceConfig::Passthru(pt) => {
                write!(f, ",{}", pt.host)?;
                if let Some(mac) = pt.mac {
                    write!(f, ",mac={mac}")?;
                }
                if let Some(vlan) = pt.vlan {
                    write!(f, ",vlan={vlan}")?;
                }
                let on_off = |b: bool| if b { "on" } else { "off" };
                if let Some(spoofchk) = pt.spoofchk {
                    write!(f, ",spoofchk={}", on_off(spoofchk))?;
                }
                if let Some(trust) = pt.trust {
                    write!(f, ",trust={}", on_off(trust))?;
                }
                if pt.managed {
                    f.write_str(",managed")?;
                }
                Ok(())
            }
        }
    }
}

/// Checks a set of slots: each on its own, then against each other. Each
/// slot comes with the text that names it in errors (its `-s` argument).
pub(super) fn check_slots(slots: &[(&str, &PciSlotConfig)]) -> Result<(), ConfigError> {
    for (arg, slot) in slots {
        slot.check().map_err(|reason| ConfigError::Slot {
            value: arg.to_string(),
            reason,
        })?;
    }
    let mut used: HashMap<(u8, u8), &str> = HashMap::new();
    let mut hosts: HashMap<PciAddress, &str> = HashMap::new();
    let mut singletons: HashMap<&str, &str> = HashMap::new();
    for &(arg, slot) in slots {
        if let Some(first) = used.insert((slot.slot, slot.function), arg) {
            return Err(ConfigError::SlotInUse {
                slot: slot.slot,
                function: slot.function,
                first: first.to_string(),
                second: arg.to_string(),
            });
        }
        match &slot.device {
            DeviceConfig::HostBridge | DeviceConfig::Lpc => {
                let emulation = slot.device.emulation();
                if let Some(first) = singletons.insert(emulation, arg) {
                    return Err(ConfigError::DuplicateDevice {
                        emulation,
                        first: first.to_string(),
                        second: arg.to_string(),
                    });
                }
            }
            DeviceConfig::Passthru(pt) => {
                if let Some(first) = hosts.insert(pt.host, arg) {
                    return Err(ConfigError::DuplicatePassthru {
                        host: pt.host,
                        first: first.to_string(),
                        second: arg.to_string(),
                    });
                }
            }
            DeviceConfig::VirtioBlk(_) => {}
        }
    }
    for &(arg, slot) in slots {
        if slot.function != 0 && !used.contains_key(&(slot.slot, 0)) {
            return Err(ConfigError::NoFunctionZero {
                slot: slot.slot,
                function: slot.function,
                value: arg.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn slot(slot: u8, function: u8, device: DeviceConfig) -> PciSlotConfig {
        PciSlotConfig {
            slot,
            function,
            device,
        }
    }

    fn blk(path: &str, f: impl FnOnce(&mut BlkConfig)) -> DeviceConfig {
        let mut b = BlkConfig::new(path);
        f(&mut b);
        DeviceConfig::VirtioBlk(b)
    }

    fn pt(host: &str, f: impl FnOnce(&mut PassthruConfig)) -> DeviceConfig {
        let mut p = PassthruConfig::new(pci(host));
        f(&mut p);
        DeviceConfig::Passthru(p)
    }

    #[test]
    fn parses_slots() {
        let cases: Vec<(&str, PciSlotConfig, &str)> = vec![
            ("0,hostbridge", slot(0, 0, DeviceConfig::HostBridge), "0:0,hostbridge"),
            ("0:0,hostbridge", slot(0, 0, DeviceConfig::HostBridge), "0:0,hostbridge"),
            ("0:0:0,hostbridge", slot(0, 0, DeviceConfig::HostBridge), "0:0,hostbridge"),
            ("0,amd_hostbridge", slot(0, 0, DeviceConfig::HostBridge), "0:0,hostbridge"),
            ("31,lpc", slot(31, 0, DeviceConfig::Lpc), "31:0,lpc"),
            ("1:7,lpc", slot(1, 7, DeviceConfig::Lpc), "1:7,lpc"),
            ("4,virtio-blk,disk.img", slot(4, 0, blk("disk.img", |_| {})), "4:0,virtio-blk,disk.img"),
            (
                "4:1,virtio-blk,/dev/zvol/tank/vm0,ro,nocache,direct",
                slot(4, 1, blk("/dev/zvol/tank/vm0", |b| {
                    b.readonly = true;
                    b.nocache = true;
                    b.direct = true;
                })),
                "4:1,virtio-blk,/dev/zvol/tank/vm0,ro,nocache,direct",
            ),
            (
                "4,virtio-blk,d.img,direct,ro",
                slot(4, 0, blk("d.img", |b| {
                    b.readonly = true;
                    b.direct = true;
                })),
                "4:0,virtio-blk,d.img,ro,direct",
            ),
            (
                "4,virtio-blk,d.img,sectorsize=4096",
                slot(4, 0, blk("d.img", |b| {
                    b.logical_sector = 4096;
                    b.physical_sector = 4096;
                })),
                "4:0,virtio-blk,d.img,sectorsize=4096/4096",
            ),
            (
                "4,virtio-blk,d.img,sectorsize=512/4096",
                slot(4, 0, blk("d.img", |b| b.physical_sector = 4096)),
                "4:0,virtio-blk,d.img,sectorsize=512/4096",
            ),
            (
                "4,virtio-blk,d.img,sectorsize=512/512",
                slot(4, 0, blk("d.img", |_| {})),
                "4:0,virtio-blk,d.img",
            ),
            (
                "4,virtio-blk,d.img,serial=DISK-0001",
                slot(4, 0, blk("d.img", |b| b.serial = Some("DISK-0001".into()))),
                "4:0,virtio-blk,d.img,serial=DISK-0001",
            ),
            (
                "4,virtio-blk,d.img,ser=12345678901234567890",
                slot(4, 0, blk("d.img", |b| b.serial = Some("12345678901234567890".into()))),
                "4:0,virtio-blk,d.img,serial=12345678901234567890",
            ),
            // The path is the first option, whatever it looks like.
            ("4,virtio-blk,ro", slot(4, 0, blk("ro", |_| {})), "4:0,virtio-blk,ro"),
            ("5,passthru,1/16/0", slot(5, 0, pt("0000:01:10.0", |_| {})), "5:0,passthru,0000:01:10.0"),
            ("5:0,passthru,0000:3b:02.1", slot(5, 0, pt("0000:3b:02.1", |_| {})), "5:0,passthru,0000:3b:02.1"),
            ("5:0,passthru,3b:02.1", slot(5, 0, pt("0000:3b:02.1", |_| {})), "5:0,passthru,0000:3b:02.1"),
            (
                "5:0,passthru,1/16/0,mac=aa:88:44:00:02:01",
                slot(5, 0, pt("0000:01:10.0", |p| p.mac = Some("aa:88:44:00:02:01".parse().unwrap()))),
                "5:0,passthru,0000:01:10.0,mac=aa:88:44:00:02:01",
            ),
            (
                "6,passthru,1/16/1,managed,trust=off,spoofchk=on,vlan=100,mac=AA:88:44:00:02:02",
                slot(6, 0, pt("0000:01:10.1", |p| {
                    p.mac = Some("aa:88:44:00:02:02".parse().unwrap());
                    p.vlan = Some(100);
                    p.spoofchk = Some(true);
                    p.trust = Some(false);
                    p.managed = true;
                })),
                "6:0,passthru,0000:01:10.1,mac=aa:88:44:00:02:02,vlan=100,spoofchk=on,trust=off,managed",
            ),
            (
                "6,passthru,1/16/1,vlan=0,spoofchk=off,trust=on",
                slot(6, 0, pt("0000:01:10.1", |p| {
                    p.vlan = Some(0);
                    p.spoofchk = Some(false);
                    p.trust = Some(true);
                })),
                "6:0,passthru,0000:01:10.1,vlan=0,spoofchk=off,trust=on",
            ),
            (
                "6,passthru,1/16/1,vlan=4095",
                slot(6, 0, pt("0000:01:10.1", |p| p.vlan = Some(4095))),
                "6:0,passthru,0000:01:10.1,vlan=4095",
            ),
        ];
        for (input, want, shown) in cases {
            let got: PciSlotConfig = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
            assert_eq!(got.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<PciSlotConfig>().unwrap(), got, "{shown}");
        }
    }

    #[test]
    fn rejects_bad_slots() {
        let cases: &[(&str, &str)] = &[
            // Slot address.
            ("", "empty (use -s SLOT[:FUNCTION],EMULATION[,CONF]; emulations: hostbridge, lpc, virtio-blk, passthru)"),
            (",hostbridge", "slot '' is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("x,hostbridge", "slot 'x' is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("-1,hostbridge", "slot '-1' is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("0x1,hostbridge", "slot '0x1' is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("4:,lpc", "function '' is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("32,hostbridge", "slot 32 is out of range (use 0..31)"),
            ("999999999,hostbridge", "slot 999999999 is out of range (use 0..31)"),
            ("00:00:08,lpc", "function 08 is out of range (use 0..7)"),
            ("x:4:0,lpc", "bus 'x' is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("256:4:0,lpc", "bus 256 is not supported, only bus 0 (use -s 4:0,...)"),
            ("4:8,lpc", "function 8 is out of range (use 0..7)"),
            ("1:4:0,lpc", "bus 1 is not supported, only bus 0 (use -s 4:0,...)"),
            ("0:0:0:0,lpc", "too many ':' in '0:0:0:0' (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            // Emulation.
            ("4", "missing emulation (use -s 4,EMULATION; known: hostbridge, lpc, virtio-blk, passthru)"),
            ("4,", "missing emulation (use -s 4,EMULATION; known: hostbridge, lpc, virtio-blk, passthru)"),
            ("4,virtio-net,tap0", "unknown emulation 'virtio-net' (known: hostbridge, lpc, virtio-blk, passthru)"),
            ("4,ahci-hd,disk.img", "unknown emulation 'ahci-hd' (known: hostbridge, lpc, virtio-blk, passthru)"),
            ("0,hostbridge,vendor=1", "hostbridge takes no options (remove ',vendor=1')"),
            ("31,lpc,", "lpc takes no options (remove ',')"),
            // virtio-blk.
            ("4:0,virtio-blk", "missing disk image path (use -s 4:0,virtio-blk,PATH)"),
            ("4:0,virtio-blk,", "missing disk image path (use -s 4:0,virtio-blk,PATH)"),
            ("4,virtio-blk,,ro", "missing disk image path (use -s 4,virtio-blk,PATH)"),
            ("4,virtio-blk,d.img,rw", "unknown virtio-blk option 'rw' (known: ro, nocache, direct, sectorsize=L[/P], serial=S)"),
            ("4,virtio-blk,d.img,bootindex=1", "unknown virtio-blk option 'bootindex' (known: ro, nocache, direct, sectorsize=L[/P], serial=S)"),
            ("4,virtio-blk,d.img,ro,ro", "option 'ro' given twice"),
            ("4,virtio-blk,d.img,ro,", "empty option '' (remove the extra ',')"),
            ("4,virtio-blk,d.img,ro=1", "'ro' takes no value (write 'ro', not 'ro=1')"),
            ("4,virtio-blk,d.img,nocache=", "'nocache' takes no value (write 'nocache', not 'nocache=')"),
            ("4,virtio-blk,d.img,direct=yes", "'direct' takes no value (write 'direct', not 'direct=yes')"),
            ("4,virtio-blk,d.img,sectorsize", "'sectorsize' needs a value (e.g. sectorsize=4096 or sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=", "'sectorsize' needs a value (e.g. sectorsize=4096 or sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=4k", "sectorsize=4k: '4k' is not a number (e.g. sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=512/", "sectorsize=512/: '' is not a number (e.g. sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=1000", "sectorsize: logical size 1000 must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=256", "sectorsize: logical size 256 must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=8192", "sectorsize: logical size 8192 must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=512/8192", "sectorsize: physical size 8192 must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=512/0", "sectorsize: physical size 0 must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=4096/512", "sectorsize=4096/512: the physical size must be at least the logical one (e.g. sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,serial=", "'serial' needs a value (e.g. serial=DISK0001)"),
            ("4,virtio-blk,d.img,ser", "'ser' needs a value (e.g. serial=DISK0001)"),
            ("4,virtio-blk,d.img,serial=123456789012345678901", "serial=123456789012345678901: must be 1 to 20 characters"),
            ("4,virtio-blk,d.img,serial=a b", "serial=a b: only printable ASCII without spaces is allowed"),
            ("4,virtio-blk,d.img,serial=dé", "serial=dé: only printable ASCII without spaces is allowed"),
            ("4,virtio-blk,d.img,serial=a,ser=b", "option 'serial' given twice (ser= is the same)"),
            ("4,virtio-blk,d.img,serial=a,serial=b", "option 'serial' given twice"),
            // passthru.
            ("5,passthru", "missing host address (use -s 5,passthru,B/S/F or -s 5,passthru,DDDD:BB:SS.F)"),
            ("5:0,passthru,", "missing host address (use -s 5:0,passthru,B/S/F or -s 5:0,passthru,DDDD:BB:SS.F)"),
            ("5,passthru,,mac=aa:88:44:00:02:01", "missing host address (use -s 5,passthru,B/S/F or -s 5,passthru,DDDD:BB:SS.F)"),
            ("5,passthru,eth0", "PCI address \"eth0\": not a PCI address (use bhyve's B/S/F like 1/16/0, or DDDD:BB:SS.F like 0000:01:10.0)"),
            ("5,passthru,1/32/0", "PCI address \"1/32/0\": slot 32 is out of range (at most 31)"),
            ("5,passthru,1/16/0,mac", "'mac' needs a value (e.g. mac=aa:88:44:00:02:01)"),
            ("5,passthru,1/16/0,mac=aa:88:44", "mac=aa:88:44: MAC address \"aa:88:44\": expected six 2-digit hex octets separated by ':' (like aa:88:44:00:02:01)"),
            ("5,passthru,1/16/0,mac=01:00:5e:00:00:01", "mac=01:00:5e:00:00:01: multicast address, a VF needs a unicast one (the first octet must be even)"),
            ("5,passthru,1/16/0,mac=ff:ff:ff:ff:ff:ff", "mac=ff:ff:ff:ff:ff:ff: multicast address, a VF needs a unicast one (the first octet must be even)"),
            ("5,passthru,1/16/0,mac=00:00:00:00:00:00", "mac=00:00:00:00:00:00: the all-zero address is not usable (give a real one, or leave mac= out)"),
            ("5,passthru,1/16/0,vlan=4096", "vlan=4096: use a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=-1", "vlan=-1: use a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=+5", "vlan=+5: use a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=ten", "vlan=ten: use a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=", "'vlan' needs a value (e.g. vlan=100)"),
            ("5,passthru,1/16/0,spoofchk", "'spoofchk' needs a value: spoofchk=on or spoofchk=off"),
            ("5,passthru,1/16/0,spoofchk=yes", "spoofchk=yes: use spoofchk=on or spoofchk=off"),
            ("5,passthru,1/16/0,trust=1", "trust=1: use trust=on or trust=off"),
            ("5,passthru,1/16/0,managed=on", "'managed' takes no value (write 'managed', not 'managed=on')"),
            ("5,passthru,1/16/0,vlan=1,vlan=2", "option 'vlan' given twice"),
            ("5,passthru,1/16/0,rom=x.rom", "unknown passthru option 'rom' (known: mac=, vlan=, spoofchk=on|off, trust=on|off, managed)"),
        ];
        for &(input, reason) in cases {
            let err = input.parse::<PciSlotConfig>().expect_err(input);
            assert_eq!(
                err,
                ConfigError::Slot {
                    value: input.to_string(),
                    reason: reason.to_string()
                },
                "{input:?}"
            );
            assert_eq!(err.to_string(), format!("-s {input}: {reason}"));
        }
    }

    #[test]
    fn checks_built_slots() {
        // What the parser cannot produce but an API client can.
        let cases: Vec<(PciSlotConfig, &str)> = vec![
            (
                slot(32, 0, DeviceConfig::Lpc),
                "slot 32 is out of range (use 0..31)",
            ),
            (
                slot(0, 8, DeviceConfig::Lpc),
                "function 8 is out of range (use 0..7)",
            ),
            (slot(4, 0, blk("", |_| {})), "empty disk image path"),
            (
                slot(5, 0, pt("1/16/0", |p| p.vlan = Some(4096))),
                "vlan=4096: out of range (use 0..4095, 0 = untagged)",
            ),
        ];
        for (s, reason) in cases {
            let shown = s.to_string();
            assert_eq!(
                check_slots(&[(&shown, &s)]),
                Err(ConfigError::Slot {
                    value: shown.clone(),
                    reason: reason.to_string()
                }),
                "{shown}"
            );
        }
    }

    fn check(args: &[&str]) -> Result<(), String> {
        let slots: Vec<PciSlotConfig> = args.iter().map(|a| a.parse().unwrap()).collect();
        let pairs: Vec<(&str, &PciSlotConfig)> = args.iter().copied().zip(&slots).collect();
        check_slots(&pairs).map_err(|e| e.to_string())
    }

    #[test]
    fn checks_slot_sets() {
        let ok: &[&[&str]] = &[
            &[],
            &[
                "0,hostbridge",
                "31,lpc",
                "4,virtio-blk,a.img",
                "5,passthru,1/16/0",
            ],
            &[
                "4:0,virtio-blk,a.img",
                "4:1,virtio-blk,b.img",
                "4:7,virtio-blk,c.img",
            ],
            &["5:1,passthru,1/16/1", "5:0,passthru,1/16/0"], // order does not matter
            &["5,passthru,1/16/0", "6,passthru,1/16/1"],
            &["4,virtio-blk,a.img", "5,virtio-blk,a.img"], // same image twice is the user's business
        ];
        for args in ok {
            assert_eq!(check(args), Ok(()), "{args:?}");
        }
        let bad: &[(&[&str], &str)] = &[
            (
                &["0,hostbridge", "0:0,lpc"],
                "-s 0:0,lpc: slot 0:0 is already used by -s 0,hostbridge (pick a free slot)",
            ),
            (
                &["4,virtio-blk,a.img", "5,passthru,1/16/0", "4:0,passthru,1/16/1"],
                "-s 4:0,passthru,1/16/1: slot 4:0 is already used by -s 4,virtio-blk,a.img (pick a free slot)",
            ),
            (
                &["31,lpc", "30,lpc"],
                "-s 30,lpc: only one lpc is allowed (already -s 31,lpc)",
            ),
            (
                &["0,hostbridge", "1,amd_hostbridge"],
                "-s 1,amd_hostbridge: only one hostbridge is allowed (already -s 0,hostbridge)",
            ),
            (
                &["5,passthru,1/16/0", "6,passthru,0000:01:10.0"],
                "-s 6,passthru,0000:01:10.0: host device 0000:01:10.0 is already passed through by -s 5,passthru,1/16/0 (each host device can be used once)",
            ),
            (
                &["4:1,virtio-blk,a.img"],
                "-s 4:1,virtio-blk,a.img: slot 4 has function 1 but no function 0 (PCI needs function 0: add -s 4:0,...)",
            ),
            (
                &["4:0,virtio-blk,a.img", "5:3,virtio-blk,b.img"],
                "-s 5:3,virtio-blk,b.img: slot 5 has function 3 but no function 0 (PCI needs function 0: add -s 5:0,...)",
            ),
        ];
        for (args, want) in bad {
            assert_eq!(check(args), Err(want.to_string()), "{args:?}");
        }
    }

    #[test]
    fn serializes_with_bhyve_names() {
        let s: PciSlotConfig = "5,passthru,1/16/0,mac=aa:88:44:00:02:01,vlan=7"
            .parse()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"slot":5,"function":0,"device":{"type":"passthru","host":"0000:01:10.0","mac":"aa:88:44:00:02:01","vlan":7,"spoofchk":null,"trust":null,"managed":false}}"#
        );
        let s: PciSlotConfig = "0,hostbridge".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"slot":0,"function":0,"device":{"type":"hostbridge"}}"#
        );
        let s: PciSlotConfig = "4,virtio-blk,d.img,ro".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"slot":4,"function":0,"device":{"type":"virtio-blk","path":"d.img","readonly":true,"nocache":false,"direct":false,"logical_sector":512,"physical_sector":512,"serial":null}}"#
        );
    }
}
