//! `vm.info`: state, memory, vCPUs and one entry per PCI function, with
//! each VF's settings as its PF reports them now, and the configuration
//! in Cloud Hypervisor's `VmConfig` shape where the two overlap.

use api::{CpuInfo, DeviceInfo, DiskInfo, MemoryInfo, PassthruInfo, VmInfo, VmState};
use serde_json::json;

use super::counters::{device_id, report, PfReports};
use super::VmView;
use crate::config::{ConsoleConfig, DeviceConfig, PciSlotConfig, VmConfig};

const PAGE: u64 = 4096;

/// Each slot's device id: its emulation's short name and its address.
pub fn slot_id(s: &PciSlotConfig) -> String {
    let kind = match &s.device {
        DeviceConfig::VirtioBlk(_) => "blk",
        DeviceConfig::Passthru(_) => "vf",
        other => other.emulation(),
    };
    device_id(kind, s.slot, s.function)
}

pub fn vm_info(vm: &VmView, state: VmState, reports: &PfReports) -> VmInfo {
    let cfg = &vm.config;
    let size = cfg.memory.size;
    VmInfo {
        config: cloud_hypervisor_config(cfg),
        state,
        memory_actual_size: size,
        name: cfg.name.clone(),
        memory: MemoryInfo {
            size,
            reserved_bytes: size,
            locked_bytes: size,
            page_size: cfg.memory.hugepages.map_or(PAGE, |p| p.bytes()),
            reserve_secs: vm.start.reserve_secs,
            dma_map_secs: vm.start.dma_map_secs,
        },
        cpus: CpuInfo {
            count: cfg.cpus.cpus.into(),
            sockets: cfg.cpus.sockets.into(),
            cores: cfg.cpus.cores.into(),
            threads: cfg.cpus.threads.into(),
        },
        devices: cfg
            .slots
            .iter()
            .map(|s| device_info(vm, s, reports))
            .collect(),
        start: vm.start.clone(),
    }
}

fn device_info(vm: &VmView, s: &PciSlotConfig, reports: &PfReports) -> DeviceInfo {
    let counters = !matches!(s.device, DeviceConfig::HostBridge | DeviceConfig::Lpc);
    let mut d = DeviceInfo {
        id: s.id(),
        counters: counters.then(|| slot_id(s)),
        bdf: format!("0000:00:{:02x}.{}", s.slot, s.function),
        emulation: s.device.emulation().to_string(),
        passthru: None,
        disk: None,
    };
    match &s.device {
        DeviceConfig::VirtioBlk(b) => {
            // The options as `-s` takes them, from the one formatter.
            let shown = s.device.to_string();
            let prefix = format!("{},{}", s.device.emulation(), b.path.display());
            let options = shown
                .strip_prefix(&prefix)
                .unwrap_or("")
                .split(',')
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect();
            d.disk = Some(DiskInfo {
                path: b.path.display().to_string(),
                options,
            });
        }
        DeviceConfig::Passthru(p) => {
            let view = vm
                .vfs
                .iter()
                .find(|v| (v.slot, v.function) == (s.slot, s.function));
            let mut info = PassthruInfo {
                host_bdf: view.map_or_else(|| p.host.to_string(), |v| v.host.clone()),
                ..PassthruInfo::default()
            };
            if let Some(v) = view {
                info.pf_driver = v.pf_driver.clone();
                info.vf_stats = v.counted();
            }
            if let Some((pf, index)) = view.and_then(|v| v.pf_vf.as_ref()) {
                info.pf = Some(pf.clone());
                info.vf = Some(*index);
                match reports.get(pf) {
                    Some(Err(e)) => info.error = Some(format!("{pf}: {e}")),
                    _ => match report(reports, pf, *index) {
                        None => info.error = Some(format!("{pf} reports no VF {index}")),
                        Some(r) => {
                            info.mac = r.settings.mac.map(|m| m.to_string());
                            info.vlan = r.settings.vlan;
                            info.spoofchk = r.settings.spoofchk;
                            info.trust = r.settings.trust;
                            info.link_state = r.settings.link_state.map(|l| l.as_str().to_string());
                        }
                    },
                }
            }
            d.passthru = Some(info);
        }
        DeviceConfig::HostBridge | DeviceConfig::Lpc => {}
    }
    d
}

/// The configuration in Cloud Hypervisor's `VmConfig` field names, for
/// clients written for it, and vfvm's own under `vfvm`.
fn cloud_hypervisor_config(cfg: &VmConfig) -> serde_json::Value {
    let disks: Vec<_> = cfg
        .slots
        .iter()
        .filter_map(|s| match &s.device {
            DeviceConfig::VirtioBlk(b) => Some(json!({
                "path": b.path,
                "readonly": b.readonly,
                "direct": b.nocache,
                "id": s.id(),
                "pci_segment": 0,
                "serial": b.serial,
            })),
            _ => None,
        })
        .collect();
    let devices: Vec<_> = cfg
        .slots
        .iter()
        .filter_map(|s| match &s.device {
            DeviceConfig::Passthru(p) => Some(json!({
                "path": format!("/sys/bus/pci/devices/{}/", p.host),
                "id": s.id(),
                "iommu": false,
                "pci_segment": 0,
            })),
            _ => None,
        })
        .collect();
    let serial = match &cfg.console {
        Some(ConsoleConfig::Stdio) => json!({"mode": "Tty"}),
        Some(ConsoleConfig::File(path)) => json!({"mode": "File", "file": path}),
        None => json!({"mode": "Off"}),
    };
    json!({
        "cpus": {
            "boot_vcpus": cfg.cpus.cpus,
            "max_vcpus": cfg.cpus.cpus,
            "topology": {
                "threads_per_core": cfg.cpus.threads,
                "cores_per_die": cfg.cpus.cores,
                "dies_per_package": 1,
                "packages": cfg.cpus.sockets,
            },
        },
        "memory": {
            "size": cfg.memory.size,
            "hugepages": cfg.memory.hugepages.is_some(),
            "hugepage_size": cfg.memory.hugepages.map(|p| p.bytes()),
            "shared": false,
            "mergeable": false,
        },
        "payload": {
            "kernel": cfg.boot.kernel,
            "initramfs": cfg.boot.initrd,
            "cmdline": cfg.boot.cmdline,
        },
        "disks": disks,
        "devices": devices,
        "serial": serial,
        "console": {"mode": "Off"},
        // The UUID the guest sees: -U, or the one derived from the name.
        "platform": {
            "num_pci_segments": 1,
            "uuid": crate::smbios::system_uuid(cfg).to_string(),
            "serial_number": cfg.name,
            "oem_strings": cfg.oem_strings,
        },
        "vfvm": serde_json::to_value(cfg).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_reports_the_uuid_the_guest_sees() {
        let mut cfg = VmConfig::new("vm1", "bzImage");
        let c = cloud_hypervisor_config(&cfg);
        assert_eq!(
            c["platform"]["uuid"],
            "fe8e35a6-4f41-5beb-8feb-2b18131e3438"
        );
        assert_eq!(c["platform"]["serial_number"], "vm1");
        cfg.uuid = Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8".into());
        cfg.oem_strings = vec!["io.systemd.credential:a=b".into()];
        let c = cloud_hypervisor_config(&cfg);
        assert_eq!(
            c["platform"]["uuid"],
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(c["platform"]["oem_strings"][0], "io.systemd.credential:a=b");
    }
}
