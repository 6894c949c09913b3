//! `vfvm iov show`: one table per PF, each VF's PCI address, driver, MAC,
//! VLAN, trust, spoof check, link state, IOMMU group, use (passthrough or
//! host) and the running vfvm VM that holds it; `--json` for scripts. And
//! `vfvm iov schema`: what a PF accepts, in iovctl -S's layout.

use std::fmt::Write;

use serde::Serialize;

use super::conf::VfKey;
use super::plan::{unsupported_keys, IovHost, Pf, VFIO_PCI};
use crate::host::claim::{self, Holder};
use crate::host::vf::VfSettings;

/// One VF as `show` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct VfRow {
    /// N of `VF-N`.
    pub index: u32,
    /// PCI address.
    pub pci: String,
    /// Bound driver.
    pub driver: Option<String>,
    /// Settings as the PF reports them.
    #[serde(flatten)]
    pub settings: VfSettings,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// `passthrough` (on vfio-pci) or `host`.
    #[serde(rename = "use")]
    pub usage: &'static str,
    /// The vfvm VM holding it, if one runs.
    pub vm: Option<Holder>,
}

/// One PF and its VFs.
#[derive(Clone, Debug, Serialize)]
pub struct PfReport {
    /// PCI address.
    pub pf: String,
    /// Network interface.
    pub netdev: Option<String>,
    /// Driver.
    pub driver: Option<String>,
    /// VFs enabled.
    pub num_vfs: u32,
    /// VFs possible.
    pub total_vfs: u32,
    /// Each VF.
    pub vfs: Vec<VfRow>,
}

/// Reads one PF's VFs.
pub fn report(pf: &Pf, host: &IovHost) -> Result<PfReport, String> {
    let sysfs = &host.sysfs;
    let settings = match &pf.netdev {
        Some(n) if pf.num_vfs > 0 => host
            .vf_control
            .list(n)
            .map_err(|e| format!("{}: cannot read its VFs' settings: {e}", pf.name()))?,
        _ => Vec::new(),
    };
    let vfs = sysfs
        .virtfns(&pf.addr)
        .into_iter()
        .map(|(index, pci)| {
            let driver = sysfs.driver(&pci);
            VfRow {
                index,
                settings: settings
                    .iter()
                    .find(|r| r.index == index)
                    .map(|r| r.settings)
                    .unwrap_or_default(),
                iommu_group: sysfs.iommu_group(&pci),
                usage: if driver.as_deref() == Some(VFIO_PCI) {
                    "passthrough"
                } else {
                    "host"
                },
                vm: claim::holder(&host.run_dir, &pci),
                driver,
                pci,
            }
        })
        .collect();
    Ok(PfReport {
        pf: pf.addr.clone(),
        netdev: pf.netdev.clone(),
        driver: pf.driver.clone(),
        num_vfs: pf.num_vfs,
        total_vfs: pf.total_vfs,
        vfs,
    })
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

fn on_off(v: Option<bool>) -> String {
    opt(v.map(|b| if b { "on" } else { "off" }))
}

/// The report as a table.
pub fn table(r: &PfReport) -> String {
    let mut out = String::new();
    let name = match &r.netdev {
        Some(n) => format!("{n} ({})", r.pf),
        None => r.pf.clone(),
    };
    let _ = writeln!(
        out,
        "PF {name}, {}: {} of {} VFs",
        r.driver.as_deref().unwrap_or("no driver"),
        r.num_vfs,
        r.total_vfs
    );
    let mut rows = vec![[
        "VF", "PCI", "DRIVER", "MAC", "VLAN", "TRUST", "SPOOFCHK", "LINK", "GROUP", "USE", "VM",
    ]
    .map(String::from)];
    for v in &r.vfs {
        let s = &v.settings;
        rows.push([
            v.index.to_string(),
            v.pci.clone(),
            opt(v.driver.clone()),
            opt(s.mac),
            opt(s.vlan.filter(|&v| v != 0)),
            on_off(s.trust),
            on_off(s.spoofchk),
            opt(s.link_state.map(|l| l.as_str())),
            opt(v.iommu_group),
            v.usage.to_string(),
            opt(v.vm.as_ref().map(|h| format!("{} (pid {})", h.vm, h.pid))),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// What `pf` accepts in an iovctl.conf file, in iovctl -S's layout,
/// without the keys its driver cannot set.
pub fn schema(pf: &Pf) -> String {
    let mut out =
        String::from("The following configuration parameters may be configured on the PF:\n");
    out.push_str("\tnum_vfs : uint16_t (required)\n\tdevice : string (required)\n");
    out.push_str("\nThe following configuration parameters may be configured on a VF:\n");
    let unsupported = unsupported_keys(pf.driver.as_deref());
    for key in VfKey::ALL.iter().filter(|k| !unsupported.contains(k)) {
        let _ = writeln!(out, "\t{} : {}", key.name(), key.schema());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MacAddr;
    use crate::config::PfDevice;
    use crate::host::pci::Sysfs;
    use crate::host::vf::VfReport;
    use crate::iov::plan::find_pf;
    use crate::iov::plan::tests::{pf_tree, vf_addr, FakeVfs};

    #[test]
    fn shows_each_vf_and_its_holder() {
        let f = pf_tree(2);
        f.bind(&vf_addr(0), "vfio-pci").bind(&vf_addr(1), "igbvf");
        let vfs = FakeVfs::default();
        *vfs.vfs.lock().unwrap() = vec![VfReport {
            index: 0,
            settings: VfSettings {
                mac: Some(MacAddr::new([2, 0, 0, 0, 0, 0x10])),
                vlan: Some(42),
                spoofchk: Some(true),
                trust: Some(false),
                ..VfSettings::default()
            },
            stats: None,
        }];
        let host = IovHost {
            sysfs: Sysfs::new(&f.root),
            vf_control: &vfs,
            run_dir: f.root.join("run/vfvm"),
        };
        let _held = claim::claim(&host.run_dir, &vf_addr(0), "vm1").unwrap();
        let pf = find_pf(&host.sysfs, &PfDevice::Netdev("eth0".into())).unwrap();
        let r = report(&pf, &host).unwrap();
        let pid = std::process::id();
        let want = format!(
            "PF eth0 (0000:01:00.0), igb: 2 of 7 VFs\n\
             VF  PCI           DRIVER    MAC                VLAN  TRUST  SPOOFCHK  LINK  GROUP  USE          VM\n\
             0   0000:01:10.0  vfio-pci  02:00:00:00:00:10  42    off    on        -     11     passthrough  vm1 (pid {pid})\n\
             1   0000:01:10.2  igbvf     -                  -     -      -         -     12     host         -\n"
        );
        assert_eq!(table(&r), want);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["vfs"][0]["use"], "passthrough");
        assert_eq!(json["vfs"][0]["vm"]["vm"], "vm1");
        assert_eq!(json["vfs"][0]["mac"], "02:00:00:00:00:10");
        assert_eq!(json["vfs"][1]["vm"], serde_json::Value::Null);
    }

    #[test]
    fn schema_leaves_out_what_the_driver_cannot_do() {
        let f = pf_tree(0);
        let pf = find_pf(&Sysfs::new(&f.root), &PfDevice::Netdev("eth0".into())).unwrap();
        let s = schema(&pf);
        assert!(s.starts_with("The following configuration parameters may be configured on the PF:\n\tnum_vfs : uint16_t (required)\n"), "{s}");
        assert!(s.contains("\tpassthrough : bool (default = false)\n\tmac-addr : unicast-mac\n\tmac-anti-spoof : bool (default = true)\n"), "{s}");
        assert!(
            s.contains("\tmax-tx-rate : ")
                && !s.contains("min-tx-rate")
                && !s.contains("link-state"),
            "{s}"
        );
    }
}
