//! What travels between a client, the API thread and the VMM: requests,
//! answers and errors, shaped as Cloud Hypervisor's OpenAPI document has
//! them where the two overlap (`vmm/src/api/openapi/cloud-hypervisor.yaml`
//! in its repository). vfvm's own fields are extra fields, never renamed
//! ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `vm.shutdown`'s default grace period, in seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 30;
/// How long `vm.remove-device` waits for the guest's eject by default.
pub const DEFAULT_EJECT_TIMEOUT_S: u64 = 15;
/// The longest eject wait a client may ask for (the server waits a little
/// longer for the answer).
pub const MAX_EJECT_TIMEOUT_S: u64 = 20;

/// What a client can ask of the VMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiRequest {
    /// `vmm.ping`: the VMM's version and process.
    Ping,
    /// `vm.info`: configuration, state, memory, vCPUs and devices.
    Info,
    /// `vm.counters`: exit, disk, VF and interrupt counters.
    Counters,
    /// `vm.pause`: stop every vCPU; the VM keeps its state.
    Pause,
    /// `vm.resume`: let paused vCPUs run again.
    Resume,
    /// `vm.power-button`: press the guest's ACPI power button.
    PowerButton,
    /// `vm.nmi`: a non-maskable interrupt on every vCPU (a guest set up
    /// for it dumps its state or a crash kernel takes over).
    Nmi,
    /// `vm.shutdown`: the power button, then a forced stop after the grace
    /// period if the guest is still running; `vfvm run` exits 1.
    Shutdown(VmShutdown),
    /// `vm.reboot`: reset the VM; `vfvm run` exits 0 (bhyve's "rebooted").
    Reboot,
    /// `vmm.shutdown`: stop the VM now and exit (status 1).
    VmmShutdown,
    /// `vm.add-device`: hot-add a passthrough device.
    AddDevice(DeviceConfig),
    /// `vm.add-disk`: hot-add a virtio-blk disk.
    AddDisk(DiskConfig),
    /// `vm.remove-device`: ask the guest to eject a device, and take it
    /// away once it has.
    RemoveDevice(VmRemoveDevice),
}

/// Where a hot-added device goes on the guest's PCI bus: the fields
/// Cloud Hypervisor's `DeviceConfig` and `DiskConfig` share (its
/// `PciDeviceCommonConfig`, flattened into both as here), and vfvm's
/// `function`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDeviceCommon {
    /// The device's id (default: its guest slot, `6:0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Behind a virtual IOMMU: vfvm has none, so only `false` works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu: Option<bool>,
    /// PCI segment: vfvm has segment 0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// Guest slot (default: the lowest free one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
    /// vfvm: guest function (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<u8>,
}

/// The body of `PUT vm.add-device`: Cloud Hypervisor's `DeviceConfig`
/// (every field it sends is accepted) and vfvm's own fields, which are
/// `-s passthru` options by the same names. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// The host device's sysfs directory, `/sys/bus/pci/devices/DDDD:BB:SS.F/`
    /// (or, with `pf`, none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `id`, `iommu`, `pci_segment`, `pci_device_id`, `function`.
    #[serde(flatten)]
    pub pci_common: PciDeviceCommon,
    /// Cloud Hypervisor's GPUDirect clique: accepted, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_nv_gpudirect_clique: Option<u8>,
    /// Cloud Hypervisor's BARs not to mmap: accepted; must be empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x_exclude_mmap_bars: Vec<u64>,
    /// vfvm: `pf=`: any free VF of this PF (interface or PCI address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pf: Option<String>,
    /// vfvm: `mac=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// vfvm: `vlan=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// vfvm: `spoofchk=on|off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    /// vfvm: `trust=on|off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    /// vfvm: `managed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    /// vfvm: `rom=off|FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rom: Option<String>,
}

/// The body of `PUT vm.add-disk`: the fields of Cloud Hypervisor's
/// `DiskConfig` vfvm has (`direct` is O_DIRECT there, `-s`'s `nocache`
/// here), plus vfvm's own; other fields are ignored, and those that ask
/// for something vfvm lacks (`vhost_user`, `iommu`, a segment) refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// The image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Read-only (`ro`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// O_DIRECT (`nocache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<bool>,
    /// Request queues (`num_queues=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_queues: Option<u16>,
    /// The disk's serial (`serial=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// `id`, `iommu`, `pci_segment`, `pci_device_id`, `function`.
    #[serde(flatten)]
    pub pci_common: PciDeviceCommon,
    /// vhost-user: vfvm has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost_user: Option<bool>,
    /// vfvm: O_SYNC writes (`-s`'s `direct`, bhyve's word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<bool>,
    /// vfvm: `sectorsize=L[/P]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sectorsize: Option<String>,
}

/// The body of `PUT vm.remove-device` (Cloud Hypervisor's `VmRemoveDevice`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRemoveDevice {
    /// The device's id, as `vm.info` shows it.
    #[serde(default)]
    pub id: String,
    /// vfvm: seconds to wait for the guest's eject (default
    /// [`DEFAULT_EJECT_TIMEOUT_S`], at most [`MAX_EJECT_TIMEOUT_S`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

impl VmRemoveDevice {
    /// The eject wait, with the default applied and the maximum kept.
    pub fn timeout_s(&self) -> u64 {
        self.timeout_s
            .unwrap_or(DEFAULT_EJECT_TIMEOUT_S)
            .min(MAX_EJECT_TIMEOUT_S)
    }
}

/// The answer to `vm.add-device` and `vm.add-disk` (Cloud Hypervisor's
/// `PciDeviceInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDeviceInfo {
    /// The device's id.
    pub id: String,
    /// Its guest address, `0000:00:06.0`.
    pub bdf: String,
}

/// The body of `PUT vm.shutdown` (optional; Cloud Hypervisor sends none).
/// Unknown fields are ignored, as Cloud Hypervisor ignores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmShutdown {
    /// Seconds the guest has to power off after the button before vfvm
    /// stops it (default [`DEFAULT_SHUTDOWN_TIMEOUT_S`]; 0: stop at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

impl VmShutdown {
    /// The grace period, with the default applied.
    pub fn timeout_s(&self) -> u64 {
        self.timeout_s.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_S)
    }
}

/// `GET vmm.ping` (Cloud Hypervisor's `VmmPingResponse`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmPing {
    /// The build (the version, and the git revision where known).
    pub build_version: String,
    /// vfvm's version.
    pub version: String,
    /// The vfvm process.
    pub pid: i64,
    /// What this build can do.
    pub features: Vec<String>,
}

/// The VM's state (Cloud Hypervisor's `VmState` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// vCPUs run the guest.
    Running,
    /// vCPUs are parked outside KVM_RUN.
    Paused,
    /// The VM is stopping; no request changes it any more.
    Shutdown,
}

/// `GET vm.info`: Cloud Hypervisor's `VmInfo` (`config`, `state`,
/// `memory_actual_size`) and vfvm's own fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmInfo {
    /// The VM's configuration, in Cloud Hypervisor's `VmConfig` shape
    /// where the two overlap (cpus, memory, payload, disks, devices).
    pub config: serde_json::Value,
    /// Running, paused or shutting down.
    pub state: VmState,
    /// Guest RAM in bytes.
    pub memory_actual_size: u64,
    /// The VM's name.
    pub name: String,
    /// Guest memory as reserved on the host.
    pub memory: MemoryInfo,
    /// vCPUs and their topology.
    pub cpus: CpuInfo,
    /// One entry per PCI function, in slot order.
    pub devices: Vec<DeviceInfo>,
    /// How long each phase of the VM's start took.
    #[serde(default)]
    pub start: StartTimes,
}

/// How long each phase of the VM's start took, in seconds: the figures of
/// vfvm's one start log line ([`StartTimes::log_line`]), as `vm.info`
/// reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StartTimes {
    /// Allocating, populating (and locking) guest RAM.
    pub reserve_secs: f64,
    /// How guest RAM was reserved: page size, who holds the pages, threads.
    pub reserve: String,
    /// DMA-mapping guest RAM for passed-through devices (0 without one).
    pub dma_map_secs: f64,
    /// Reading the kernel (decompressing a bzImage's payload straight into
    /// guest memory) and loading it and the initrd, while guest RAM is
    /// reserved (the two overlap).
    pub load_kernel_secs: f64,
    /// How the kernel was loaded.
    pub kernel: String,
    /// From the start of `vfvm run` to the first vCPU entering the guest
    /// (its thread started, which enters KVM_RUN at once).
    pub first_vcpu_entry_secs: f64,
}

impl StartTimes {
    /// Records the reservation's time and how it was done.
    pub fn reserved(&mut self, time: std::time::Duration, how: String) {
        self.reserve_secs = time.as_secs_f64();
        self.reserve = how;
    }

    /// The one log line of a start (also what `vfvm ctl info` shows).
    pub fn log_line(&self) -> String {
        format!(
            "started in {:.3} s: reserve {:.3} s ({}), DMA map {:.3} s, load kernel {:.3} s ({}), \
             first vCPU entry {:.3} s",
            self.first_vcpu_entry_secs,
            self.reserve_secs,
            self.reserve,
            self.dma_map_secs,
            self.load_kernel_secs,
            self.kernel,
            self.first_vcpu_entry_secs,
        )
    }
}

/// Guest memory as reserved on the host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryInfo {
    /// Guest RAM in bytes.
    pub size: u64,
    /// Bytes reserved for it (the whole of it: vfvm never overcommits).
    pub reserved_bytes: u64,
    /// Bytes locked in host RAM (mlock, or huge pages, which never swap).
    pub locked_bytes: u64,
    /// The host page size backing it (4096, or 2 MiB huge pages).
    pub page_size: u64,
    /// Seconds it took to reserve and lock it.
    pub reserve_secs: f64,
    /// Seconds it took to map it for the VFs' DMA (VFIO); 0 without a VF.
    pub dma_map_secs: f64,
}

/// vCPUs and topology (`-c`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// vCPUs.
    pub count: u32,
    /// Sockets.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

/// One PCI function the guest sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device's id, for `vm.remove-device` (default: its slot, `5:0`).
    pub id: String,
    /// Its key in `vm.counters` (`vf@5:0`, `blk@4:0`; none for bridges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<String>,
    /// Its guest address, `0000:00:05.0`.
    pub bdf: String,
    /// bhyve's emulation name (`passthru`, `virtio-blk`, `hostbridge`, ...).
    pub emulation: String,
    /// A passed-through VF as the host sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthru: Option<PassthruInfo>,
    /// A disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskInfo>,
}

/// A passed-through function, with its VF settings as the PF reports them
/// at the time of the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassthruInfo {
    /// Host PCI address, `0000:01:10.0`.
    pub host_bdf: String,
    /// The PF's network interface, when the function is a VF of a NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pf: Option<String>,
    /// The VF's index on its PF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf: Option<u32>,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Port VLAN (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Spoof checking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    /// Trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    /// Link state: `auto`, `enable` or `disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<String>,
    /// The PF's driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pf_driver: Option<String>,
    /// Whether `vm.counters` has this VF's traffic: false when the PF's
    /// driver does not count per VF (igb reports only zeros).
    #[serde(default)]
    pub vf_stats: bool,
    /// Why the PF could not be asked, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The image.
    pub path: String,
    /// Its options as given to `-s` (`ro`, `nocache`, ...).
    pub options: Vec<String>,
}

/// One counter: `labels` say what it counts (the first is always
/// `device`; others split a counter, e.g. `vector`), `name` what is
/// counted. JSON (Cloud Hypervisor's `VmCounters`: device -> key -> value,
/// see [`Counter::key`]) and Prometheus text are two renderings of the
/// same list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// `("device", id)` first, then any others (`pf`, `vf`, ...).
    pub labels: Vec<(String, String)>,
    /// What is counted, snake_case (`rx_packets`).
    pub name: String,
    /// Its value.
    pub value: u64,
}

impl Counter {
    /// A counter of device `device`.
    pub fn new(device: &str, name: &str, value: u64) -> Self {
        Counter {
            labels: vec![("device".into(), device.into())],
            name: name.into(),
            value,
        }
    }

    /// The JSON key: the name, then `.VALUE` for each label after the
    /// device (`msix_fired.3` for vector 3).
    pub fn key(&self) -> String {
        let mut key = self.name.clone();
        for (k, v) in &self.labels {
            if k != "device" {
                key.push('.');
                key.push_str(v);
            }
        }
        key
    }

    /// The device label.
    pub fn device(&self) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == "device")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// `GET vm.counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmCounters(pub Vec<Counter>);

impl VmCounters {
    /// The counters by device, then key (the JSON shape).
    pub fn by_device(&self) -> BTreeMap<&str, BTreeMap<String, u64>> {
        let mut map: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for c in &self.0 {
            map.entry(c.device()).or_default().insert(c.key(), c.value);
        }
        map
    }

    /// The counter of `device` with JSON key `key`.
    pub fn get(&self, device: &str, key: &str) -> Option<u64> {
        self.0
            .iter()
            .find(|c| c.device() == device && c.key() == key)
            .map(|c| c.value)
    }
}

impl Serialize for VmCounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.by_device().serialize(s)
    }
}

impl<'de> Deserialize<'de> for VmCounters {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, BTreeMap<String, u64>>::deserialize(d)?;
        Ok(VmCounters(
            map.iter()
                .flat_map(|(device, counters)| {
                    counters
                        .iter()
                        .map(|(name, &value)| Counter::new(device, name, value))
                })
                .collect(),
        ))
    }
}

/// What the VMM answers to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiResponse {
    /// Answer to [`ApiRequest::Ping`].
    Ping(VmmPing),
    /// Answer to [`ApiRequest::Info`].
    Info(Box<VmInfo>),
    /// Answer to [`ApiRequest::Counters`].
    Counters(VmCounters),
    /// Answer to [`ApiRequest::AddDevice`] and [`ApiRequest::AddDisk`].
    Device(PciDeviceInfo),
    /// Done; nothing to report (HTTP 204).
    Done,
}

/// Why the VMM could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is not valid for this VM (a bad option, an occupied
    /// slot): 400.
    #[error("{0}")]
    BadRequest(String),
    /// What the request names does not exist or cannot be had (no such
    /// device id, a host device missing or held by another VM): 404.
    #[error("{0}")]
    NotFound(String),
    /// What the request names is in the VM already (an id, a host
    /// device): 409, as Cloud Hypervisor's document has it.
    #[error("{0}")]
    Conflict(String),
    /// The request does not fit the VM's state (resume while running):
    /// 405, as Cloud Hypervisor's document has it.
    #[error("{0}")]
    InvalidState(String),
    /// The VMM tried and failed.
    #[error("{0}")]
    Internal(String),
    /// The VMM does not answer (it is stopping, or busy for too long).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::InvalidState(_) => 405,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }
}

/// The body of every error response, as Cloud Hypervisor sends it and its
/// client (`ch-remote`) reads it: a JSON array of messages, from the top
/// error to its root cause. vfvm's errors are one line each, so one
/// message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorBody(pub Vec<String>);

impl ErrorBody {
    /// The body of one error message.
    pub fn new(message: &str) -> Self {
        ErrorBody(vec![message.to_string()])
    }

    /// The messages as one line, causes after ": ".
    pub fn line(&self) -> String {
        self.0.join(": ")
    }
}

/// `value` as JSON with every non-ASCII character escaped (`\uXXXX`):
/// Cloud Hypervisor's client decodes each 256-byte read as UTF-8 on its
/// own and fails on a character cut in two.
pub fn to_ascii_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let text = serde_json::to_string(value)?;
    if text.is_ascii() {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_serialize_by_device() {
        let mut vector = Counter::new("blk@4:0", "msix_fired", 5);
        vector.labels.push(("vector".into(), "1".into()));
        let c = VmCounters(vec![
            Counter::new("vmm", "io_out", 7),
            Counter::new("vf@5:0", "tx_packets", 20),
            Counter::new("vf@5:0", "rx_packets", 3),
            vector,
        ]);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"vmm": {"io_out": 7}, "vf@5:0": {"tx_packets": 20, "rx_packets": 3},
                "blk@4:0": {"msix_fired.1": 5}})
        );
        assert_eq!(c.get("blk@4:0", "msix_fired.1"), Some(5));
        let back: VmCounters = serde_json::from_value(v).unwrap();
        assert_eq!(back.get("vf@5:0", "tx_packets"), Some(20));
        assert_eq!(back.get("vmm", "io_out"), Some(7));
        assert_eq!(back.get("vmm", "nope"), None);
    }

    #[test]
    fn state_names_are_cloud_hypervisors() {
        for (s, name) in [
            (VmState::Running, "Running"),
            (VmState::Paused, "Paused"),
            (VmState::Shutdown, "Shutdown"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
    }

    #[test]
    fn shutdown_body_defaults_and_ignores_unknown_fields() {
        let b: VmShutdown = serde_json::from_str("{}").unwrap();
        assert_eq!(b.timeout_s(), DEFAULT_SHUTDOWN_TIMEOUT_S);
        let b: VmShutdown = serde_json::from_str(r#"{"timeout_s": 2, "x": [1]}"#).unwrap();
        assert_eq!(b.timeout_s(), 2);
        assert!(serde_json::from_str::<VmShutdown>(r#"{"timeout_s": "soon"}"#).is_err());
    }

    /// A body as the server reads it (`routes` parses a `serde_json::Value`).
    fn body<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::from_str(json).unwrap())
    }

    /// `v` serialized and read back is `v`, with the shared PCI fields at
    /// the top level as Cloud Hypervisor has them.
    fn round_trips<T>(v: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_value(v).unwrap();
        assert!(json.get("pci_common").is_none(), "{json}");
        assert_eq!(&serde_json::from_value::<T>(json).unwrap(), v);
    }

    #[test]
    fn cloud_hypervisors_device_config_is_accepted() {
        // What ch-remote add-device path=...,iommu=off,id=vf1 sends.
        let ch = r#"{"id":"vf1","iommu":false,"pci_segment":0,"pci_device_id":null,
            "path":"/sys/bus/pci/devices/0000:01:10.1/","fd":null,
            "x_nv_gpudirect_clique":null,"x_exclude_mmap_bars":[]}"#;
        let d: DeviceConfig = body(ch).unwrap();
        assert_eq!(
            d.path.as_deref(),
            Some("/sys/bus/pci/devices/0000:01:10.1/")
        );
        let c = &d.pci_common;
        assert_eq!(c.id.as_deref(), Some("vf1"));
        assert_eq!(
            (c.iommu, c.pci_segment, c.pci_device_id),
            (Some(false), Some(0), None)
        );
        let ours = r#"{"path":"/sys/bus/pci/devices/0000:01:10.1/","pci_device_id":6,
            "mac":"aa:88:44:00:02:01","vlan":5,"spoofchk":true,"managed":true,"x_nv_gpudirect_clique":3}"#;
        let d: DeviceConfig = body(ours).unwrap();
        assert_eq!(d.pci_common.pci_device_id, Some(6));
        assert_eq!(d.mac.as_deref(), Some("aa:88:44:00:02:01"));
        assert_eq!(
            (d.vlan, d.spoofchk, d.managed),
            (Some(5), Some(true), Some(true))
        );
        assert!(body::<DeviceConfig>(r#"{"pci_device_id":300}"#).is_err());
        round_trips(&d);
    }

    #[test]
    fn cloud_hypervisors_full_device_config_is_read_field_by_field() {
        // Every field of CH's DeviceConfig (PciDeviceCommonConfig
        // flattened, fd, the x_ fields), none at its default, and fields
        // neither has: the known ones land, the unknown ones are ignored.
        let ch = r#"{"id":"vf1","iommu":true,"pci_segment":1,"pci_device_id":6,
            "path":"/sys/bus/pci/devices/0000:01:10.1/","fd":7,
            "x_nv_gpudirect_clique":3,"x_exclude_mmap_bars":[0,2],
            "function":1,"not_a_field":{"x":[1]}}"#;
        let d: DeviceConfig = body(ch).unwrap();
        assert_eq!(
            d,
            DeviceConfig {
                path: Some("/sys/bus/pci/devices/0000:01:10.1/".into()),
                pci_common: PciDeviceCommon {
                    id: Some("vf1".into()),
                    iommu: Some(true),
                    pci_segment: Some(1),
                    pci_device_id: Some(6),
                    function: Some(1),
                },
                x_nv_gpudirect_clique: Some(3),
                x_exclude_mmap_bars: vec![0, 2],
                ..DeviceConfig::default()
            }
        );
        round_trips(&d);
        // A shared field of the wrong type is refused like any other.
        for bad in [
            r#"{"iommu":"yes"}"#,
            r#"{"pci_segment":-1}"#,
            r#"{"id":5}"#,
            r#"{"x_nv_gpudirect_clique":256}"#,
        ] {
            assert!(body::<DeviceConfig>(bad).is_err(), "{bad}");
        }
        assert_eq!(body::<DeviceConfig>("{}").unwrap(), DeviceConfig::default());
    }

    #[test]
    fn cloud_hypervisors_disk_config_is_accepted() {
        let ch = r#"{"path":"/img/d.raw","readonly":true,"direct":false,"iommu":false,
            "num_queues":1,"queue_size":128,"vhost_user":false,"disable_io_uring":false,
            "disable_aio":false,"backing_files":false,"sparse":true,"image_type":"Raw",
            "pci_segment":0,"id":"d1"}"#;
        let d: DiskConfig = body(ch).unwrap();
        assert_eq!(d.path.as_deref(), Some("/img/d.raw"));
        assert_eq!(
            (d.readonly, d.direct, d.num_queues),
            (Some(true), Some(false), Some(1))
        );
        assert_eq!(d.pci_common.id.as_deref(), Some("d1"));
        let r: VmRemoveDevice = serde_json::from_str(r#"{"id":"d1"}"#).unwrap();
        assert_eq!(r.timeout_s(), DEFAULT_EJECT_TIMEOUT_S);
        let r: VmRemoveDevice = serde_json::from_str(r#"{"id":"d1","timeout_s":999}"#).unwrap();
        assert_eq!(r.timeout_s(), MAX_EJECT_TIMEOUT_S);
    }

    #[test]
    fn cloud_hypervisors_full_disk_config_is_read_field_by_field() {
        // Every field of CH's DiskConfig, none at its default: what vfvm
        // has lands, the rest (queue_size, rate limits, affinity...) is
        // ignored, as are fields CH does not have either.
        let ch = r#"{"id":"d1","iommu":true,"pci_segment":2,"pci_device_id":7,
            "path":"/img/d.raw","readonly":true,"direct":true,"num_queues":2,
            "queue_size":256,"vhost_user":true,"vhost_socket":"/run/vu.sock",
            "rate_limit_group":"g0",
            "rate_limiter_config":{"bandwidth":{"size":1,"one_time_burst":0,"refill_time":1},"ops":null},
            "disable_io_uring":true,"disable_aio":true,"serial":"S1",
            "queue_affinity":[{"queue_index":0,"host_cpus":[1]}],"backing_files":true,
            "sparse":false,"image_type":"Qcow2","lock_granularity":"Full",
            "sync":true,"sectorsize":"512/4096","not_a_field":null}"#;
        let d: DiskConfig = body(ch).unwrap();
        assert_eq!(
            d,
            DiskConfig {
                path: Some("/img/d.raw".into()),
                readonly: Some(true),
                direct: Some(true),
                num_queues: Some(2),
                serial: Some("S1".into()),
                pci_common: PciDeviceCommon {
                    id: Some("d1".into()),
                    iommu: Some(true),
                    pci_segment: Some(2),
                    pci_device_id: Some(7),
                    function: None,
                },
                vhost_user: Some(true),
                sync: Some(true),
                sectorsize: Some("512/4096".into()),
            }
        );
        round_trips(&d);
        for bad in [r#"{"pci_device_id":"7"}"#, r#"{"num_queues":-1}"#] {
            assert!(body::<DiskConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_is_ascii() {
        let s = to_ascii_json(&ErrorBody::new("disque \u{e9}\u{1f600}")).unwrap();
        assert_eq!(s, r#"["disque \u00e9\ud83d\ude00"]"#);
        let back: ErrorBody = serde_json::from_str(&s).unwrap();
        assert_eq!(back.line(), "disque \u{e9}\u{1f600}");
        let chain: ErrorBody = serde_json::from_str(r#"["add-device", "no such file"]"#).unwrap();
        assert_eq!(chain.line(), "add-device: no such file");
    }

    #[test]
    fn start_line_and_json_have_every_phase() {
        let mut t = StartTimes {
            dma_map_secs: 0.25,
            load_kernel_secs: 0.0625,
            first_vcpu_entry_secs: 1.5,
            kernel: "vmlinux".into(),
            ..Default::default()
        };
        t.reserved(
            std::time::Duration::from_millis(750),
            "4 KiB pages, locked, 2 threads".into(),
        );
        assert_eq!(
            t.log_line(),
            "started in 1.500 s: reserve 0.750 s (4 KiB pages, locked, 2 threads), \
             DMA map 0.250 s, load kernel 0.062 s (vmlinux), first vCPU entry 1.500 s"
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["reserve_secs"], 0.75);
        assert_eq!(json["first_vcpu_entry_secs"], 1.5);
        assert_eq!(json["dma_map_secs"], 0.25);
        assert_eq!(json["load_kernel_secs"], 0.0625);
        assert_eq!(json["kernel"], "vmlinux");
    }
}
