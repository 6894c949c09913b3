//! The hotplug API's bodies and `-s` text, both ways, so that one parser
//! checks what every client asks: a body (Cloud Hypervisor's
//! `DeviceConfig`/`DiskConfig` with vfvm's fields) becomes `-s` text that
//! the VMM parses like `vfvm run -s`, and `vfvm ctl add-device -s TEXT`
//! parses TEXT with that parser and sends the body it makes.

use api::{ApiRequest, DeviceConfig as DeviceBody, DiskConfig as DiskBody, PciDeviceCommon};

use crate::config::{DeviceConfig, HostDevice, PciSlotConfig, RomConfig};

/// Where a host device's sysfs directory is.
const SYSFS_DEVICES: &str = "/sys/bus/pci/devices/";

/// A value as one `-s` option: a ',' would start another option.
fn value(field: &str, v: &str) -> Result<String, String> {
    if v.contains(',') {
        return Err(format!("{field} {v:?}: ',' cannot be in a value"));
    }
    Ok(v.to_string())
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Refuses a segment or an IOMMU, which vfvm has not.
fn segment_and_iommu(common: &PciDeviceCommon) -> Result<(), String> {
    if let Some(s) = common.pci_segment.filter(|&s| s != 0) {
        return Err(format!("pci_segment {s}: vfvm has PCI segment 0 only"));
    }
    if common.iommu == Some(true) {
        return Err("iommu: vfvm has no virtual IOMMU (leave iommu false)".into());
    }
    Ok(())
}

/// The `-s` text of a `vm.add-device` body, at guest `slot`.
pub fn device_text(b: &DeviceBody, slot: u8) -> Result<String, String> {
    segment_and_iommu(&b.pci_common)?;
    if !b.x_exclude_mmap_bars.is_empty() {
        return Err("x_exclude_mmap_bars: vfvm maps every BAR it can (leave it empty)".into());
    }
    let host = match (&b.path, &b.pf) {
        (Some(path), None) => {
            let bdf = path
                .strip_prefix(SYSFS_DEVICES)
                .map(|rest| rest.trim_end_matches('/'))
                .filter(|bdf| !bdf.is_empty() && !bdf.contains('/'))
                .ok_or_else(|| {
                    format!("path {path:?}: give the device's sysfs directory, {SYSFS_DEVICES}DDDD:BB:SS.F/")
                })?;
            value("path", bdf)?
        }
        (None, Some(pf)) => format!("pf={}", value("pf", pf)?),
        (Some(_), Some(_)) => return Err("give path or pf, not both".into()),
        (None, None) => {
            return Err(format!(
                "path is missing: the device's sysfs directory, {SYSFS_DEVICES}DDDD:BB:SS.F/ (or pf for any free VF of a PF)"
            ))
        }
    };
    let mut text = format!(
        "{slot}:{},passthru,{host}",
        b.pci_common.function.unwrap_or(0)
    );
    if let Some(mac) = &b.mac {
        text += &format!(",mac={}", value("mac", mac)?);
    }
    if let Some(vlan) = b.vlan {
        text += &format!(",vlan={vlan}");
    }
    if let Some(on) = b.spoofchk {
        text += &format!(",spoofchk={}", on_off(on));
    }
    if let Some(on) = b.trust {
        text += &format!(",trust={}", on_off(on));
    }
    if b.managed == Some(true) {
        text += ",managed";
    }
    if let Some(rom) = &b.rom {
        text += &format!(",rom={}", value("rom", rom)?);
    }
    Ok(text)
}

/// The `-s` text of a `vm.add-disk` body, at guest `slot`.
pub fn disk_text(b: &DiskBody, slot: u8) -> Result<String, String> {
    segment_and_iommu(&b.pci_common)?;
    if b.vhost_user == Some(true) {
        return Err("vhost_user: vfvm has no vhost-user disks".into());
    }
    let path = b
        .path
        .as_deref()
        .ok_or("path is missing: the disk image (a file or a block device)")?;
    let mut text = format!(
        "{slot}:{},virtio-blk,{}",
        b.pci_common.function.unwrap_or(0),
        value("path", path)?
    );
    for (on, option) in [
        (b.readonly, "ro"),
        (b.direct, "nocache"),
        (b.sync, "direct"),
    ] {
        if on == Some(true) {
            text += &format!(",{option}");
        }
    }
    if let Some(n) = b.num_queues {
        text += &format!(",num_queues={n}");
    }
    if let Some(serial) = &b.serial {
        text += &format!(",serial={}", value("serial", serial)?);
    }
    if let Some(size) = &b.sectorsize {
        text += &format!(",sectorsize={}", value("sectorsize", size)?);
    }
    Ok(text)
}

/// The request `vfvm ctl add-device -s TEXT` sends for the parsed slot.
pub fn add_request(s: &PciSlotConfig) -> Result<ApiRequest, String> {
    let pci_common = PciDeviceCommon {
        id: s.id.clone(),
        pci_device_id: Some(s.slot),
        function: (s.function != 0).then_some(s.function),
        ..PciDeviceCommon::default()
    };
    match &s.device {
        DeviceConfig::Passthru(p) => {
            let (path, pf) = match &p.host {
                HostDevice::Device(a) => (Some(format!("{SYSFS_DEVICES}{a}/")), None),
                HostDevice::Pool { pf, .. } => (None, Some(pf.to_string())),
            };
            Ok(ApiRequest::AddDevice(DeviceBody {
                path,
                pf,
                pci_common,
                mac: p.vf.mac.map(|m| m.to_string()),
                vlan: p.vf.vlan,
                spoofchk: p.vf.spoofchk,
                trust: p.vf.trust,
                managed: p.managed.then_some(true),
                rom: match &p.rom {
                    RomConfig::Device => None,
                    RomConfig::Off => Some("off".into()),
                    RomConfig::File(f) => Some(f.display().to_string()),
                },
                ..DeviceBody::default()
            }))
        }
        DeviceConfig::VirtioBlk(b) => {
            let sectors = (b.logical_sector, b.physical_sector);
            Ok(ApiRequest::AddDisk(DiskBody {
                path: Some(b.path.display().to_string()),
                readonly: b.readonly.then_some(true),
                direct: b.nocache.then_some(true),
                sync: b.direct.then_some(true),
                num_queues: b.num_queues,
                serial: b.serial.clone(),
                sectorsize: (sectors != (512, 512)).then(|| format!("{}/{}", sectors.0, sectors.1)),
                pci_common,
                ..DiskBody::default()
            }))
        }
        other => Err(format!(
            "{}: only passthru and virtio-blk devices can be hot-added",
            other.emulation()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PciSlotConfig {
        text.parse().unwrap()
    }

    /// `-s` text -> body (ctl) -> `-s` text (VMM) -> the same slot.
    fn round_trip(text: &str) -> PciSlotConfig {
        let s = parse(text);
        let again = match add_request(&s).unwrap() {
            ApiRequest::AddDevice(b) => device_text(&b, s.slot).unwrap(),
            ApiRequest::AddDisk(b) => disk_text(&b, s.slot).unwrap(),
            other => panic!("{other:?}"),
        };
        let back = parse(&again);
        assert_eq!(back, s, "{text} -> {again}");
        back
    }

    #[test]
    fn ctl_and_api_take_every_option_of_the_same_parser() {
        for text in [
            "6:0,passthru,1/16/1",
            "6:0,passthru,0000:01:10.1,mac=aa:88:44:00:02:01,vlan=5,spoofchk=off,trust=on,managed",
            "6,passthru,pf=eth0,rom=off",
            "6:0,passthru,0000:01:10.1,rom=/tmp/x.rom",
            "7:0,virtio-blk,/tmp/disk.img",
            "7:0,virtio-blk,/tmp/disk.img,ro,nocache,direct,num_queues=2,serial=D1,sectorsize=512/4096",
        ] {
            round_trip(text);
        }
        assert!(add_request(&parse("0,hostbridge"))
            .unwrap_err()
            .contains("only passthru and virtio-blk"));
    }

    #[test]
    fn cloud_hypervisors_device_config_becomes_s_text() {
        // ch-remote add-device path=/sys/bus/pci/devices/0000:01:10.1/
        let b: DeviceBody = serde_json::from_str(
            r#"{"id":null,"iommu":false,"pci_segment":0,"pci_device_id":null,
                "path":"/sys/bus/pci/devices/0000:01:10.1/","x_nv_gpudirect_clique":null,
                "x_exclude_mmap_bars":[]}"#,
        )
        .unwrap();
        assert_eq!(device_text(&b, 6).unwrap(), "6:0,passthru,0000:01:10.1");
        let b: DeviceBody = serde_json::from_str(
            r#"{"path":"/sys/bus/pci/devices/0000:01:10.1","mac":"aa:88:44:00:02:01","managed":true}"#,
        )
        .unwrap();
        assert_eq!(
            device_text(&b, 6).unwrap(),
            "6:0,passthru,0000:01:10.1,mac=aa:88:44:00:02:01,managed"
        );
    }

    #[test]
    fn bodies_vfvm_cannot_honor_are_refused_in_one_sentence() {
        let sysfs = Some("/sys/bus/pci/devices/0000:01:10.1/".to_string());
        let cases = [
            (
                DeviceBody {
                    path: sysfs.clone(),
                    pci_common: PciDeviceCommon { iommu: Some(true), ..Default::default() },
                    ..Default::default()
                },
                "iommu: vfvm has no virtual IOMMU (leave iommu false)",
            ),
            (
                DeviceBody {
                    path: sysfs.clone(),
                    pci_common: PciDeviceCommon { pci_segment: Some(1), ..Default::default() },
                    ..Default::default()
                },
                "pci_segment 1: vfvm has PCI segment 0 only",
            ),
            (
                DeviceBody { path: Some("0000:01:10.1".into()), ..Default::default() },
                "path \"0000:01:10.1\": give the device's sysfs directory, /sys/bus/pci/devices/DDDD:BB:SS.F/",
            ),
            (
                DeviceBody { path: sysfs.clone(), pf: Some("eth0".into()), ..Default::default() },
                "give path or pf, not both",
            ),
            (
                DeviceBody { path: sysfs.clone(), mac: Some("aa,managed".into()), ..Default::default() },
                "mac \"aa,managed\": ',' cannot be in a value",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(device_text(&body, 6).unwrap_err(), want);
        }
        assert!(device_text(&DeviceBody::default(), 6)
            .unwrap_err()
            .starts_with("path is missing"));
        let disk = DiskBody {
            path: Some("/d".into()),
            vhost_user: Some(true),
            ..Default::default()
        };
        assert_eq!(
            disk_text(&disk, 7).unwrap_err(),
            "vhost_user: vfvm has no vhost-user disks"
        );
        assert!(disk_text(&DiskBody::default(), 7)
            .unwrap_err()
            .starts_with("path is missing"));
        // What the parser refuses, it refuses with its own words.
        let b = DeviceBody {
            path: sysfs,
            vlan: Some(5000),
            ..Default::default()
        };
        let e = device_text(&b, 6)
            .unwrap()
            .parse::<PciSlotConfig>()
            .unwrap_err();
        assert!(e.to_string().contains("vlan=5000"), "{e}");
    }
}
