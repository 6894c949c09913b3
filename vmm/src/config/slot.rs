//! `-s slot[:function],emulation[,conf]`: guest PCI slots and their devices.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use devices::virtio::block::{check_sector_sizes, SectorSizeError, MAX_QUEUES};

use super::{ConfigError, PciAddress, PfDevice, SlotConflict, VfSettings};

/// Emulations accepted by `-s`, for error messages.
const EMULATIONS: &str = "hostbridge, lpc, virtio-blk, passthru";
const BLK_OPTIONS: &str =
    "ro, nocache, direct, sectorsize=L[/P], serial=S, num_queues=N, iothreads=N";
const PASSTHRU_OPTIONS: &str = "mac=, vlan=, spoofchk=on|off, trust=on|off, managed, rom=off|FILE";
const PASSTHRU_HOSTS: &str =
    "B/S/F, DDDD:BB:SS.F, or pf=PF for any free VF of PF (an interface like eth0 or a PCI address)";

/// Number of slots (devices) on a PCI bus.
const PCI_SLOTS: u8 = 32;
/// Number of functions in a PCI slot.
const PCI_FUNCTIONS: u8 = 8;
/// Longest virtio-blk serial (`VIRTIO_BLK_ID_BYTES`).
const BLK_SERIAL_MAX: usize = 20;
/// Highest VLAN id (`vlan=`).
const VLAN_MAX: u16 = 4095;
/// What a bad `vlan=` is told.
const VLAN_USE: &str = "vlan must be a number 0..4095 (0 = untagged)";

/// One `-s` option: a device at `slot:function` on guest PCI bus 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PciSlotConfig {
    /// Guest PCI slot (device number), 0..=31.
    pub slot: u8,
    /// Guest PCI function, 0..=7; a slot that uses functions above 0 needs function 0 too.
    pub function: u8,
    /// What is at that address.
    pub device: DeviceConfig,
    /// The `-s` text the user typed, if it was parsed from one: it names
    /// the slot in every error. Not part of what the slot is (not compared,
    /// not serialized).
    #[serde(skip)]
    pub text: Option<String>,
    /// The id the API names the device by, if one was given when it was
    /// hot-added (default: [`PciSlotConfig::id`]'s `SLOT:FUNCTION`). Not
    /// part of what the slot is (not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl PartialEq for PciSlotConfig {
    fn eq(&self, other: &Self) -> bool {
        (self.slot, self.function, &self.device) == (other.slot, other.function, &other.device)
    }
}

impl Eq for PciSlotConfig {}

/// The device (bhyve "emulation") in a PCI slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `passthru,ADDR[,mac=M][,vlan=N][,spoofchk=on|off][,trust=on|off][,managed][,rom=off|FILE]`.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `num_queues=N`: request queues, each with its own interrupt vector
    /// and notify address (default: one per vCPU, at most `MAX_QUEUES`).
    pub num_queues: Option<u16>,
    /// `iothreads=N`: I/O threads serving the queues, queue `i` on thread
    /// `i % N` (default: one per queue where the host has a CPU for each
    /// besides the vCPUs, else one per CPU they leave, at least one; more
    /// than the queues is as many as the queues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iothreads: Option<u16>,
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
            num_queues: None,
            iothreads: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("empty disk image path".to_string());
        }
        check_sector_sizes(self.logical_sector, self.physical_sector).map_err(|e| match e {
            SectorSizeError::Size { which, .. } => {
                format!("sectorsize: the {which} size must be 512, 1024, 2048 or 4096")
            }
            SectorSizeError::PhysicalBelowLogical { .. } => {
                "sectorsize: the physical size must be at least the logical one (e.g. sectorsize=512/4096)"
                    .to_string()
            }
        })?;
        if let Some(n) = self.num_queues {
            if !(1..=MAX_QUEUES).contains(&n) {
                return Err(format!("num_queues must be 1 to {MAX_QUEUES}"));
            }
        }
        if let Some(n) = self.iothreads {
            let max = self.num_queues.unwrap_or(MAX_QUEUES);
            if !(1..=max).contains(&n) {
                return Err(format!(
                    "iothreads must be 1 to {max} (at most one per queue)"
                ));
            }
        }
        if let Some(serial) = &self.serial {
            if serial.is_empty() || serial.len() > BLK_SERIAL_MAX {
                return Err(format!("serial must be 1 to {BLK_SERIAL_MAX} characters"));
            }
            if !serial.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("serial must be printable ASCII without spaces".to_string());
            }
        }
        Ok(())
    }
}

/// `rom=`: the expansion ROM the guest sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RomConfig {
    /// The device's own ROM (the default; none if it has none).
    #[default]
    Device,
    /// `rom=off`: no ROM.
    Off,
    /// `rom=FILE`: this image instead.
    File(PathBuf),
}

impl RomConfig {
    fn is_device(&self) -> bool {
        *self == RomConfig::Device
    }
}

/// A host PCI function (an SR-IOV VF, a whole PF, any function) given to
/// the guest via VFIO.
///
/// The VF settings are applied on the PF before the VM starts; `None` means
/// "leave the host's setting alone".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassthruConfig {
    /// The host device, or the PF whose free VF it is (`host`, `pool`).
    #[serde(flatten)]
    pub host: HostDevice,
    /// `mac=`, `vlan=`, `spoofchk=`, `trust=` (a given `mac=` is unicast
    /// and non-zero).
    #[serde(flatten)]
    pub vf: VfSettings,
    /// `managed`: vfvm binds the device to vfio-pci itself (and gives it back afterwards).
    pub managed: bool,
    /// `rom=`: the expansion ROM.
    #[serde(default, skip_serializing_if = "RomConfig::is_device")]
    pub rom: RomConfig,
}

/// Which host device a `passthru` slot gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHost", into = "RawHost")]
pub enum HostDevice {
    /// `B/S/F` or `DDDD:BB:SS.F`: this device.
    Device(PciAddress),
    /// `pf=PF`: any free passthrough VF of PF, taken when the VM starts
    /// (`taken` then names it).
    Pool {
        pf: PfDevice,
        taken: Option<PciAddress>,
    },
}

impl HostDevice {
    /// The device: the given one, or the one taken from the pool.
    pub fn device(&self) -> Option<PciAddress> {
        match self {
            HostDevice::Device(a) => Some(*a),
            HostDevice::Pool { taken, .. } => *taken,
        }
    }
}

impl fmt::Display for HostDevice {
    /// `-s` syntax: the address, or `pf=PF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostDevice::Device(a) => write!(f, "{a}"),
            HostDevice::Pool { pf, .. } => write!(f, "pf={pf}"),
        }
    }
}

/// How [`HostDevice`] looks in JSON: `host` (null for a pool's VF not
/// taken yet) and, for a pool, `pool`.
#[derive(Serialize, Deserialize)]
struct RawHost {
    host: Option<PciAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
}

impl From<HostDevice> for RawHost {
    fn from(h: HostDevice) -> Self {
        match h {
            HostDevice::Device(a) => RawHost {
                host: Some(a),
                pool: None,
            },
            HostDevice::Pool { pf, taken } => RawHost {
                host: taken,
                pool: Some(pf.to_string()),
            },
        }
    }
}

impl TryFrom<RawHost> for HostDevice {
    type Error = String;

    fn try_from(r: RawHost) -> Result<Self, String> {
        match (r.host, r.pool) {
            (taken, Some(pf)) => Ok(HostDevice::Pool {
                pf: PfDevice::parse(&pf).ok_or_else(|| format!("pool {pf:?}: {PASSTHRU_HOSTS}"))?,
                taken,
            }),
            (Some(a), None) => Ok(HostDevice::Device(a)),
            (None, None) => Err(format!("passthru needs host: {PASSTHRU_HOSTS}")),
        }
    }
}

impl PassthruConfig {
    /// The host device with no VF settings and not managed.
    pub fn new(host: PciAddress) -> Self {
        PassthruConfig::with_host(HostDevice::Device(host))
    }

    /// `host` with no VF settings and not managed.
    pub fn with_host(host: HostDevice) -> Self {
        PassthruConfig {
            host,
            vf: VfSettings::default(),
            managed: false,
            rom: RomConfig::Device,
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(host) = self.host.device() {
            if host.device > 31 || host.function > 7 {
                return Err("host is not a PCI address (device 0..1f, function 0..7)".to_string());
            }
        }
        if let Some(mac) = self.vf.mac {
            if mac.is_zero() {
                return Err(
                    "mac is all zeros, which no interface can have (give a real one, or leave mac= out)"
                        .to_string(),
                );
            }
            if mac.is_multicast() {
                return Err(
                    "mac is a multicast address, a VF needs a unicast one (the first octet must be even)"
                        .to_string(),
                );
            }
        }
        if self.vf.vlan.is_some_and(|vlan| vlan > VLAN_MAX) {
            return Err(VLAN_USE.to_string());
        }
        Ok(())
    }
}

impl PciSlotConfig {
    /// A slot built in code, not parsed from `-s` text.
    pub fn new(slot: u8, function: u8, device: DeviceConfig) -> Self {
        PciSlotConfig {
            slot,
            function,
            device,
            text: None,
            id: None,
        }
    }

    /// The device's id: the one it was given, else `SLOT:FUNCTION` (`5:0`).
    pub fn id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.slot, self.function))
    }

    /// How errors name this slot: the user's `-s` text, else its `-s` form.
    pub fn arg(&self) -> String {
        self.text.clone().unwrap_or_else(|| self.to_string())
    }

    /// Checks this slot on its own (ranges, device options), giving the reason.
    fn check(&self) -> Result<(), String> {
        if self.slot >= PCI_SLOTS {
            return Err(out_of_range("slot", PCI_SLOTS - 1));
        }
        if self.function >= PCI_FUNCTIONS {
            return Err(out_of_range("function", PCI_FUNCTIONS - 1));
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
        Ok(PciSlotConfig {
            text: Some(s.to_string()),
            ..slot
        })
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
            if !options.is_empty() {
                return Err(format!(
                    "{emulation} takes no options (remove what follows '{emulation}')"
                ));
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
        _ => return Err(format!("unknown emulation (known: {EMULATIONS})")),
    };
    Ok(PciSlotConfig::new(slot, function, device))
}

/// `slot`, `slot:function` or `bus:slot:function`, decimal as in bhyve.
fn parse_guest_address(s: &str) -> Result<(u8, u8), String> {
    const USE: &str = "use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...";
    let digits = |name: &str, v: &str| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{name} is not a number ({USE})"));
        }
        Ok(())
    };
    let number = |name: &str, v: &str, max: u8| -> Result<u8, String> {
        digits(name, v)?;
        match v.parse::<u8>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(out_of_range(name, max)),
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
                    "bus must be 0, the only one (use -s {slot}:{function},...)"
                ));
            }
            (slot, function)
        }
        _ => return Err(format!("too many ':' in the slot ({USE})")),
    };
    Ok((
        number("slot", slot, PCI_SLOTS - 1)?,
        number("function", function, PCI_FUNCTIONS - 1)?,
    ))
}

/// What an out-of-range slot, function (`name`) is told.
fn out_of_range(name: &str, max: u8) -> String {
    format!("{name} is out of range (use 0..{max})")
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
        return Err("empty option (remove the extra ',')".to_string());
    }
    if seen.contains(&key) {
        return Err(format!("option '{key}' given twice"));
    }
    seen.push(key);
    Ok((key, value))
}

/// A flag option: `key` or `key=on` sets it, `key=off` clears it (the
/// second form is how a VM file's `key = true|false` reads).
fn flag(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => Err(format!(
            "'{key}' takes no value but on or off (write '{key}', or '{key}=on|off')"
        )),
    }
}

/// The first option of an emulation that has one without a key (the disk's
/// PATH, the host device's ADDR), and the key that names it instead:
/// `virtio-blk,path=disk.img` is `virtio-blk,disk.img`. VM files write
/// every option with its key.
pub const POSITIONAL_KEYS: &[(&str, &str)] = &[("virtio-blk", "path"), ("passthru", "host")];

/// Splits off the first option of `emulation`: `key=VALUE` or bare `VALUE`.
fn positional<'a>(emulation: &str, options: &[&'a str]) -> Option<(&'a str, Vec<&'a str>)> {
    let (&first, rest) = options.split_first()?;
    let key = POSITIONAL_KEYS.iter().find(|(e, _)| *e == emulation)?.1;
    let value = first
        .strip_prefix(key)
        .and_then(|v| v.strip_prefix('='))
        .unwrap_or(first);
    (!value.is_empty()).then(|| (value, rest.to_vec()))
}

/// The guest `slot:function` of a `-s` value, if its address part parses.
pub fn guest_address_of(s: &str) -> Option<(u8, u8)> {
    parse_guest_address(s.split(',').next().unwrap_or_default()).ok()
}

fn needs_value<'a>(key: &str, value: Option<&'a str>, example: &str) -> Result<&'a str, String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("'{key}' needs a value (e.g. {example})"))
}

fn parse_blk(address: &str, options: &[&str]) -> Result<BlkConfig, String> {
    let Some((path, options)) = positional("virtio-blk", options) else {
        return Err(format!(
            "missing disk image path (use -s {address},virtio-blk,PATH)"
        ));
    };
    let mut blk = BlkConfig::new(path);
    let mut seen = Vec::new();
    for option in &options {
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
                        "sectorsize is not a number (e.g. sectorsize=4096 or sectorsize=512/4096)"
                            .to_string()
                    })
                };
                blk.logical_sector = size(logical)?;
                blk.physical_sector = size(physical)?;
            }
            "num_queues" => {
                let value = needs_value(key, value, "num_queues=2")?;
                blk.num_queues =
                    Some(value.parse().map_err(|_| {
                        "num_queues is not a number (e.g. num_queues=2)".to_string()
                    })?);
            }
            "iothreads" => {
                let value = needs_value(key, value, "iothreads=1")?;
                blk.iothreads = Some(
                    value
                        .parse()
                        .map_err(|_| "iothreads is not a number (e.g. iothreads=1)".to_string())?,
                );
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
        Some(_) => Err(format!("{key} must be on or off ({key}=on or {key}=off)")),
        None => Err(format!("'{key}' needs a value: {key}=on or {key}=off")),
    }
}

fn parse_passthru(address: &str, options: &[&str]) -> Result<PassthruConfig, String> {
    let Some((host, options)) = positional("passthru", options) else {
        return Err(format!(
            "missing host address (use -s {address},passthru,B/S/F or -s {address},passthru,DDDD:BB:SS.F)"
        ));
    };
    let mut pt = match host.strip_prefix("pf=") {
        Some(pf) => PassthruConfig::with_host(HostDevice::Pool {
            pf: PfDevice::parse(pf).ok_or_else(|| {
                "pf must be a network interface (eth0) or a PCI address (0000:01:00.0)".to_string()
            })?,
            taken: None,
        }),
        None => PassthruConfig::new(host.parse().map_err(|e| match e {
            ConfigError::PciAddress { reason, .. } => format!("host address: {reason}"),
            other => other.to_string(),
        })?),
    };
    let mut seen = Vec::new();
    for option in &options {
        let (key, value) = split_option(option, &mut seen)?;
        match key {
            "mac" => {
                let value = needs_value(key, value, "mac=aa:88:44:00:02:01")?;
                pt.vf.mac = Some(value.parse().map_err(|_| {
                    "mac must be six 2-digit hex octets separated by ':' (like aa:88:44:00:02:01)"
                        .to_string()
                })?);
            }
            "vlan" => {
                let value = needs_value(key, value, "vlan=100")?;
                let vlan = value
                    .parse::<u16>()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .filter(|&v| v <= VLAN_MAX)
                    .ok_or_else(|| VLAN_USE.to_string())?;
                pt.vf.vlan = Some(vlan);
            }
            "spoofchk" => pt.vf.spoofchk = Some(parse_on_off(key, value)?),
            "trust" => pt.vf.trust = Some(parse_on_off(key, value)?),
            "managed" => pt.managed = flag(key, value)?,
            "rom" => {
                pt.rom = match needs_value(key, value, "rom=off or rom=/path/to/rom.bin")? {
                    "off" => RomConfig::Off,
                    path => RomConfig::File(PathBuf::from(path)),
                }
            }
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
                if let Some(n) = blk.num_queues {
                    write!(f, ",num_queues={n}")?;
                }
                if let Some(n) = blk.iothreads {
                    write!(f, ",iothreads={n}")?;
                }
                Ok(())
            }
            DeviceConfig::Passthru(pt) => {
                write!(f, ",{}", pt.host)?;
                if let Some(mac) = pt.vf.mac {
                    write!(f, ",mac={mac}")?;
                }
                if let Some(vlan) = pt.vf.vlan {
                    write!(f, ",vlan={vlan}")?;
                }
                let on_off = |b: bool| if b { "on" } else { "off" };
                if let Some(spoofchk) = pt.vf.spoofchk {
                    write!(f, ",spoofchk={}", on_off(spoofchk))?;
                }
                if let Some(trust) = pt.vf.trust {
                    write!(f, ",trust={}", on_off(trust))?;
                }
                if pt.managed {
                    f.write_str(",managed")?;
                }
                match &pt.rom {
                    RomConfig::Device => {}
                    RomConfig::Off => f.write_str(",rom=off")?,
                    RomConfig::File(path) => write!(f, ",rom={}", path.display())?,
                }
                Ok(())
            }
        }
    }
}

/// Checks a set of slots: each on its own, then against each other. Errors
/// name slots by [`PciSlotConfig::arg`].
pub(super) fn check_slots(slots: &[PciSlotConfig]) -> Result<(), ConfigError> {
    let args: Vec<String> = slots.iter().map(PciSlotConfig::arg).collect();
    let slots: Vec<(&str, &PciSlotConfig)> = args.iter().map(String::as_str).zip(slots).collect();
    for (arg, slot) in &slots {
        slot.check().map_err(|reason| ConfigError::Slot {
            value: arg.to_string(),
            reason,
        })?;
    }
    let mut used: HashMap<(u8, u8), &str> = HashMap::new();
    let mut hosts: HashMap<PciAddress, &str> = HashMap::new();
    let mut singletons: HashMap<&str, &str> = HashMap::new();
    let refuse = |arg: &str, conflict: SlotConflict| {
        Err(ConfigError::SlotConflict {
            value: arg.to_string(),
            conflict,
        })
    };
    for &(arg, slot) in &slots {
        if let Some(first) = used.insert((slot.slot, slot.function), arg) {
            return refuse(
                arg,
                SlotConflict::InUse {
                    slot: slot.slot,
                    function: slot.function,
                    first: format!("-s {first}"),
                },
            );
        }
        match &slot.device {
            DeviceConfig::HostBridge | DeviceConfig::Lpc => {
                let emulation = slot.device.emulation();
                if let Some(first) = singletons.insert(emulation, arg) {
                    return refuse(
                        arg,
                        SlotConflict::SecondOne {
                            emulation,
                            first: format!("-s {first}"),
                        },
                    );
                }
            }
            DeviceConfig::Passthru(PassthruConfig {
                host: HostDevice::Device(host),
                ..
            }) => {
                if let Some(first) = hosts.insert(*host, arg) {
                    return refuse(
                        arg,
                        SlotConflict::HostTwice {
                            host: *host,
                            first: format!("-s {first}"),
                        },
                    );
                }
            }
            DeviceConfig::VirtioBlk(_) | DeviceConfig::Passthru(_) => {}
        }
    }
    for &(arg, slot) in &slots {
        if slot.function != 0 && !used.contains_key(&(slot.slot, 0)) {
            return refuse(
                arg,
                SlotConflict::NoFunctionZero {
                    slot: slot.slot,
                    function: slot.function,
                },
            );
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
        PciSlotConfig::new(slot, function, device)
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
                "4,virtio-blk,d.img,iothreads=1,num_queues=2",
                slot(4, 0, blk("d.img", |b| {
                    b.num_queues = Some(2);
                    b.iothreads = Some(1);
                })),
                "4:0,virtio-blk,d.img,num_queues=2,iothreads=1",
            ),
            (
                "4,virtio-blk,d.img,iothreads=4",
                slot(4, 0, blk("d.img", |b| b.iothreads = Some(4))),
                "4:0,virtio-blk,d.img,iothreads=4",
            ),
            (
                "4,virtio-blk,d.img,num_queues=4,ro",
                slot(4, 0, blk("d.img", |b| {
                    b.readonly = true;
                    b.num_queues = Some(4);
                })),
                "4:0,virtio-blk,d.img,ro,num_queues=4",
            ),
            (
                "4,virtio-blk,d.img,ser=12345678901234567890",
                slot(4, 0, blk("d.img", |b| b.serial = Some("12345678901234567890".into()))),
                "4:0,virtio-blk,d.img,serial=12345678901234567890",
            ),
            // The path is the first option, whatever it looks like.
            ("4,virtio-blk,ro", slot(4, 0, blk("ro", |_| {})), "4:0,virtio-blk,ro"),
            // Named first options and flags with on/off, as VM files write them.
            (
                "4,virtio-blk,path=d.img,ro=on,nocache=off,direct=on",
                slot(4, 0, blk("d.img", |b| {
                    b.readonly = true;
                    b.direct = true;
                })),
                "4:0,virtio-blk,d.img,ro,direct",
            ),
            (
                "5,passthru,host=1/16/0,managed=on",
                slot(5, 0, pt("0000:01:10.0", |p| p.managed = true)),
                "5:0,passthru,0000:01:10.0,managed",
            ),
            ("5,passthru,host=1/16/0,managed=off", slot(5, 0, pt("0000:01:10.0", |_| {})), "5:0,passthru,0000:01:10.0"),
            ("5,passthru,1/16/0", slot(5, 0, pt("0000:01:10.0", |_| {})), "5:0,passthru,0000:01:10.0"),
            ("5:0,passthru,0000:3b:02.1", slot(5, 0, pt("0000:3b:02.1", |_| {})), "5:0,passthru,0000:3b:02.1"),
            ("5:0,passthru,3b:02.1", slot(5, 0, pt("0000:3b:02.1", |_| {})), "5:0,passthru,0000:3b:02.1"),
            (
                "5:0,passthru,1/16/0,mac=aa:88:44:00:02:01",
                slot(5, 0, pt("0000:01:10.0", |p| p.vf.mac = Some("aa:88:44:00:02:01".parse().unwrap()))),
                "5:0,passthru,0000:01:10.0,mac=aa:88:44:00:02:01",
            ),
            (
                "6,passthru,1/16/1,managed,trust=off,spoofchk=on,vlan=100,mac=AA:88:44:00:02:02",
                slot(6, 0, pt("0000:01:10.1", |p| {
                    p.vf.mac = Some("aa:88:44:00:02:02".parse().unwrap());
                    p.vf.vlan = Some(100);
                    p.vf.spoofchk = Some(true);
                    p.vf.trust = Some(false);
                    p.managed = true;
                })),
                "6:0,passthru,0000:01:10.1,mac=aa:88:44:00:02:02,vlan=100,spoofchk=on,trust=off,managed",
            ),
            (
                "6,passthru,1/16/1,vlan=0,spoofchk=off,trust=on",
                slot(6, 0, pt("0000:01:10.1", |p| {
                    p.vf.vlan = Some(0);
                    p.vf.spoofchk = Some(false);
                    p.vf.trust = Some(true);
                })),
                "6:0,passthru,0000:01:10.1,vlan=0,spoofchk=off,trust=on",
            ),
            (
                "6,passthru,1/16/1,vlan=4095",
                slot(6, 0, pt("0000:01:10.1", |p| p.vf.vlan = Some(4095))),
                "6:0,passthru,0000:01:10.1,vlan=4095",
            ),
            (
                "6:0,passthru,0000:00:06.0,rom=off",
                slot(6, 0, pt("0000:00:06.0", |p| p.rom = RomConfig::Off)),
                "6:0,passthru,0000:00:06.0,rom=off",
            ),
            (
                "5:1,passthru,0000:00:06.0,rom=/srv/e1000.rom",
                slot(5, 1, pt("0000:00:06.0", |p| {
                    p.rom = RomConfig::File("/srv/e1000.rom".into())
                })),
                "5:1,passthru,0000:00:06.0,rom=/srv/e1000.rom",
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
            (",hostbridge", "slot is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("x,hostbridge", "slot is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("-1,hostbridge", "slot is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("0x1,hostbridge", "slot is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("4:,lpc", "function is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("32,hostbridge", "slot is out of range (use 0..31)"),
            ("999999999,hostbridge", "slot is out of range (use 0..31)"),
            ("00:00:08,lpc", "function is out of range (use 0..7)"),
            ("x:4:0,lpc", "bus is not a number (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            ("256:4:0,lpc", "bus must be 0, the only one (use -s 4:0,...)"),
            ("4:8,lpc", "function is out of range (use 0..7)"),
            ("1:4:0,lpc", "bus must be 0, the only one (use -s 4:0,...)"),
            ("0:0:0:0,lpc", "too many ':' in the slot (use SLOT or SLOT:FUNCTION, e.g. -s 5,passthru,... or -s 5:1,...)"),
            // Emulation.
            ("4", "missing emulation (use -s 4,EMULATION; known: hostbridge, lpc, virtio-blk, passthru)"),
            ("4,", "missing emulation (use -s 4,EMULATION; known: hostbridge, lpc, virtio-blk, passthru)"),
            ("4,virtio-net,tap0", "unknown emulation (known: hostbridge, lpc, virtio-blk, passthru)"),
            ("4,ahci-hd,disk.img", "unknown emulation (known: hostbridge, lpc, virtio-blk, passthru)"),
            ("0,hostbridge,vendor=1", "hostbridge takes no options (remove what follows 'hostbridge')"),
            ("31,lpc,", "lpc takes no options (remove what follows 'lpc')"),
            // virtio-blk.
            ("4:0,virtio-blk", "missing disk image path (use -s 4:0,virtio-blk,PATH)"),
            ("4:0,virtio-blk,", "missing disk image path (use -s 4:0,virtio-blk,PATH)"),
            ("4,virtio-blk,,ro", "missing disk image path (use -s 4,virtio-blk,PATH)"),
            ("4,virtio-blk,d.img,rw", "unknown virtio-blk option 'rw' (known: ro, nocache, direct, sectorsize=L[/P], serial=S, num_queues=N, iothreads=N)"),
            ("4,virtio-blk,d.img,bootindex=1", "unknown virtio-blk option 'bootindex' (known: ro, nocache, direct, sectorsize=L[/P], serial=S, num_queues=N, iothreads=N)"),
            ("4,virtio-blk,d.img,ro,ro", "option 'ro' given twice"),
            ("4,virtio-blk,d.img,ro,", "empty option (remove the extra ',')"),
            ("4,virtio-blk,d.img,ro=1", "'ro' takes no value but on or off (write 'ro', or 'ro=on|off')"),
            ("4,virtio-blk,d.img,nocache=", "'nocache' takes no value but on or off (write 'nocache', or 'nocache=on|off')"),
            ("4,virtio-blk,d.img,direct=yes", "'direct' takes no value but on or off (write 'direct', or 'direct=on|off')"),
            ("4,virtio-blk,d.img,sectorsize", "'sectorsize' needs a value (e.g. sectorsize=4096 or sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=", "'sectorsize' needs a value (e.g. sectorsize=4096 or sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=4k", "sectorsize is not a number (e.g. sectorsize=4096 or sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=512/", "sectorsize is not a number (e.g. sectorsize=4096 or sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,sectorsize=1000", "sectorsize: the logical size must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=256", "sectorsize: the logical size must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=8192", "sectorsize: the logical size must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=512/8192", "sectorsize: the physical size must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=512/0", "sectorsize: the physical size must be 512, 1024, 2048 or 4096"),
            ("4,virtio-blk,d.img,sectorsize=4096/512", "sectorsize: the physical size must be at least the logical one (e.g. sectorsize=512/4096)"),
            ("4,virtio-blk,d.img,serial=", "'serial' needs a value (e.g. serial=DISK0001)"),
            ("4,virtio-blk,d.img,ser", "'ser' needs a value (e.g. serial=DISK0001)"),
            ("4,virtio-blk,d.img,serial=123456789012345678901", "serial must be 1 to 20 characters"),
            ("4,virtio-blk,d.img,serial=a b", "serial must be printable ASCII without spaces"),
            ("4,virtio-blk,d.img,serial=dé", "serial must be printable ASCII without spaces"),
            ("4,virtio-blk,d.img,serial=a,ser=b", "option 'serial' given twice (ser= is the same)"),
            ("4,virtio-blk,d.img,serial=a,serial=b", "option 'serial' given twice"),
            ("4,virtio-blk,d.img,num_queues", "'num_queues' needs a value (e.g. num_queues=2)"),
            ("4,virtio-blk,d.img,num_queues=two", "num_queues is not a number (e.g. num_queues=2)"),
            ("4,virtio-blk,d.img,num_queues=0", "num_queues must be 1 to 64"),
            ("4,virtio-blk,d.img,num_queues=65", "num_queues must be 1 to 64"),
            ("4,virtio-blk,d.img,iothreads", "'iothreads' needs a value (e.g. iothreads=1)"),
            ("4,virtio-blk,d.img,iothreads=one", "iothreads is not a number (e.g. iothreads=1)"),
            ("4,virtio-blk,d.img,iothreads=0", "iothreads must be 1 to 64 (at most one per queue)"),
            ("4,virtio-blk,d.img,num_queues=2,iothreads=3", "iothreads must be 1 to 2 (at most one per queue)"),
            // passthru.
            ("5,passthru", "missing host address (use -s 5,passthru,B/S/F or -s 5,passthru,DDDD:BB:SS.F)"),
            ("5:0,passthru,", "missing host address (use -s 5:0,passthru,B/S/F or -s 5:0,passthru,DDDD:BB:SS.F)"),
            ("5,passthru,,mac=aa:88:44:00:02:01", "missing host address (use -s 5,passthru,B/S/F or -s 5,passthru,DDDD:BB:SS.F)"),
            ("5,passthru,eth0", "host address: not a PCI address (use bhyve's B/S/F like 1/16/0, or DDDD:BB:SS.F like 0000:01:10.0)"),
            ("5,passthru,1/32/0", "host address: slot 32 is out of range (at most 31)"),
            ("5,passthru,1/16/0,mac", "'mac' needs a value (e.g. mac=aa:88:44:00:02:01)"),
            ("5,passthru,1/16/0,mac=aa:88:44", "mac must be six 2-digit hex octets separated by ':' (like aa:88:44:00:02:01)"),
            ("5,passthru,1/16/0,mac=01:00:5e:00:00:01", "mac is a multicast address, a VF needs a unicast one (the first octet must be even)"),
            ("5,passthru,1/16/0,mac=ff:ff:ff:ff:ff:ff", "mac is a multicast address, a VF needs a unicast one (the first octet must be even)"),
            ("5,passthru,1/16/0,mac=00:00:00:00:00:00", "mac is all zeros, which no interface can have (give a real one, or leave mac= out)"),
            ("5,passthru,1/16/0,vlan=4096", "vlan must be a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=-1", "vlan must be a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=+5", "vlan must be a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=ten", "vlan must be a number 0..4095 (0 = untagged)"),
            ("5,passthru,1/16/0,vlan=", "'vlan' needs a value (e.g. vlan=100)"),
            ("5,passthru,1/16/0,spoofchk", "'spoofchk' needs a value: spoofchk=on or spoofchk=off"),
            ("5,passthru,1/16/0,spoofchk=yes", "spoofchk must be on or off (spoofchk=on or spoofchk=off)"),
            ("5,passthru,1/16/0,trust=1", "trust must be on or off (trust=on or trust=off)"),
            ("5,passthru,1/16/0,managed=yes", "'managed' takes no value but on or off (write 'managed', or 'managed=on|off')"),
            ("5,passthru,1/16/0,vlan=1,vlan=2", "option 'vlan' given twice"),
            ("5,passthru,1/16/0,rom=", "'rom' needs a value (e.g. rom=off or rom=/path/to/rom.bin)"),
            ("5,passthru,1/16/0,romfile=x", "unknown passthru option 'romfile' (known: mac=, vlan=, spoofchk=on|off, trust=on|off, managed, rom=off|FILE)"),
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
                "slot is out of range (use 0..31)",
            ),
            (
                slot(0, 8, DeviceConfig::Lpc),
                "function is out of range (use 0..7)",
            ),
            (slot(4, 0, blk("", |_| {})), "empty disk image path"),
            (
                slot(5, 0, pt("1/16/0", |p| p.vf.vlan = Some(4096))),
                "vlan must be a number 0..4095 (0 = untagged)",
            ),
        ];
        for (s, reason) in cases {
            let shown = s.to_string();
            assert_eq!(
                check_slots(std::slice::from_ref(&s)),
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
        check_slots(&slots).map_err(|e| e.to_string())
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
    fn pools_name_a_pf() {
        let s: PciSlotConfig = "5:0,passthru,pf=eth0,mac=aa:88:44:00:02:01,managed"
            .parse()
            .unwrap();
        let DeviceConfig::Passthru(p) = &s.device else {
            panic!("{s:?}");
        };
        assert_eq!(
            p.host,
            HostDevice::Pool {
                pf: PfDevice::Netdev("eth0".into()),
                taken: None
            }
        );
        assert_eq!(p.host.device(), None);
        assert!(p.managed);
        assert_eq!(
            s.to_string(),
            "5:0,passthru,pf=eth0,mac=aa:88:44:00:02:01,managed"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (&json["device"]["host"], &json["device"]["pool"]),
            (&serde_json::Value::Null, &serde_json::json!("eth0"))
        );
        assert_eq!(serde_json::from_value::<PciSlotConfig>(json).unwrap(), s);
        let s: PciSlotConfig = "6,passthru,pf=0000:01:00.0".parse().unwrap();
        assert_eq!(s.to_string(), "6:0,passthru,pf=0000:01:00.0");
        for (bad, why) in [
            (
                "5,passthru,pf=",
                "pf must be a network interface (eth0) or a PCI address (0000:01:00.0)",
            ),
            (
                "5,passthru,pf=a/b",
                "pf must be a network interface (eth0) or a PCI address (0000:01:00.0)",
            ),
        ] {
            assert_eq!(
                bad.parse::<PciSlotConfig>().unwrap_err().to_string(),
                format!("-s {bad}: {why}")
            );
        }
        // Two VMs' worth of one pool in one VM is fine: each takes a VF.
        assert_eq!(check(&["5,passthru,pf=eth0", "6,passthru,pf=eth0"]), Ok(()));
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
            r#"{"slot":4,"function":0,"device":{"type":"virtio-blk","path":"d.img","readonly":true,"nocache":false,"direct":false,"logical_sector":512,"physical_sector":512,"serial":null,"num_queues":null}}"#
        );
    }
}
