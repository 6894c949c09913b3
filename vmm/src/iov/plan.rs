//! An [`IovConfig`] against the host: everything the file asks is checked
//! (the PF exists and is SR-IOV capable, `num_vfs` within
//! `sriov_totalvfs`, keys this PF's driver can set, VFs in use by a VM left
//! alone) and turned into the list of [`Step`]s that would make the host
//! match it. Nothing changes here; [`super::apply`] carries the steps out.
//! A host that already matches gives no step, so `create` twice changes
//! nothing the second time.

use std::fmt;
use std::path::PathBuf;

use super::conf::{ConfError, IovConfig, VfKey, VfPolicy};
use crate::config::PfDevice;
use crate::host::claim;
use crate::host::pci::Sysfs;
use crate::host::vf::{VfControl, VfSettings};

/// The driver passthrough VFs are bound to.
pub const VFIO_PCI: &str = "vfio-pci";

/// The host facilities `vfvm iov` uses; tests substitute fakes.
pub struct IovHost<'a> {
    /// sysfs (normally `/sys`).
    pub sysfs: Sysfs,
    /// VF settings through the PF (normally rtnetlink).
    pub vf_control: &'a dyn VfControl,
    /// Where claims live (normally `/run/vfvm`).
    pub run_dir: PathBuf,
}

/// Why the file cannot be applied to this host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file asks for something this host cannot do, at a position.
    #[error("{0}")]
    Conf(ConfError),
    /// Something on the host prevents it (a VM holds a VF, netlink fails).
    #[error("{0}")]
    Host(String),
}

/// A PF as the host has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pf {
    /// Its PCI address.
    pub addr: String,
    /// Its network interface, if it has one.
    pub netdev: Option<String>,
    /// Its driver.
    pub driver: Option<String>,
    /// VFs now.
    pub num_vfs: u32,
    /// VFs it can have.
    pub total_vfs: u32,
}

impl Pf {
    /// `eth0 (0000:01:00.0)`, or the address alone.
    pub fn name(&self) -> String {
        match &self.netdev {
            Some(n) => format!("{n} ({})", self.addr),
            None => self.addr.clone(),
        }
    }
}

/// Finds the PF the file (or `-d`) names; `None` when no such device.
pub fn find_pf(sysfs: &Sysfs, device: &PfDevice) -> Result<Pf, String> {
    let addr = match device {
        PfDevice::Netdev(n) => sysfs.netdev_device(n).ok_or_else(|| {
            format!("no network interface {n} with a PCI device on this host (see ip link)")
        })?,
        PfDevice::Pci(a) => {
            let a = a.to_string();
            if !sysfs.exists(&a) {
                return Err(format!(
                    "no PCI device {a} on this host (see ls /sys/bus/pci/devices)"
                ));
            }
            a
        }
    };
    let Some(total_vfs) = sysfs.sriov_totalvfs(&addr).filter(|&n| n > 0) else {
        return Err(format!(
            "{addr} is not SR-IOV capable (it has no sriov_totalvfs): name the PF of an SR-IOV NIC, with SR-IOV enabled in the firmware"
        ));
    };
    Ok(Pf {
        netdev: sysfs.netdev(&addr),
        driver: sysfs.driver(&addr),
        num_vfs: sysfs.sriov_numvfs(&addr).unwrap_or(0),
        total_vfs,
        addr,
    })
}

/// The keys a PF driver cannot set on its VFs (the `ndo_set_vf_*` it
/// lacks or refuses); other drivers are let try.
pub fn unsupported_keys(driver: Option<&str>) -> &'static [VfKey] {
    match driver {
        // igb: no link-state; ndo_set_vf_rate refuses a min rate.
        Some("igb") => &[VfKey::MinTxRate, VfKey::LinkState],
        Some("ixgbe") | Some("i40e") => &[VfKey::MinTxRate],
        _ => &[],
    }
}

/// How a VF is to be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Reserved for VMs: vfio-pci.
    Passthrough,
    /// The host's own driver for it.
    Host,
}

/// One change to the host, in the order they are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `sriov_drivers_autoprobe` off, so new VFs get no driver by themselves.
    AutoprobeOff,
    /// `sriov_numvfs`: create this many VFs.
    CreateVfs(u16),
    /// VF settings through the PF.
    Settings { index: u16, change: VfSettings },
    /// Driver binding.
    Bind { index: u16, to: Use },
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The settings as `ip link` words: `mac 02:.. vlan 5 spoofchk on`.
pub fn describe(s: &VfSettings) -> String {
    let mut words = Vec::new();
    if let Some(m) = s.mac {
        words.push(format!("mac {m}"));
    }
    if let Some(v) = s.vlan {
        words.push(format!("vlan {v}"));
    }
    if let Some(q) = s.qos {
        words.push(format!("qos {q}"));
    }
    if let Some(r) = s.max_tx_rate {
        words.push(format!("max_tx_rate {r}"));
    }
    if let Some(r) = s.min_tx_rate {
        words.push(format!("min_tx_rate {r}"));
    }
    if let Some(b) = s.spoofchk {
        words.push(format!("spoofchk {}", on_off(b)));
    }
    if let Some(b) = s.trust {
        words.push(format!("trust {}", on_off(b)));
    }
    if let Some(l) = s.link_state {
        words.push(format!("state {}", l.as_str()));
    }
    words.join(" ")
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AutoprobeOff => write!(
                f,
                "sriov_drivers_autoprobe 0 (no driver binds a new VF by itself)"
            ),
            Step::CreateVfs(n) => write!(f, "sriov_numvfs {n} (create {n} VFs)"),
            Step::Settings { index, change } => write!(f, "VF-{index}: {}", describe(change)),
            Step::Bind {
                index,
                to: Use::Passthrough,
            } => {
                write!(f, "VF-{index}: bind to vfio-pci (passthrough, for VMs)")
            }
            Step::Bind {
                index,
                to: Use::Host,
            } => write!(f, "VF-{index}: bind to its host driver"),
        }
    }
}

/// What [`plan`] found and decided.
#[derive(Debug)]
pub struct Plan {
    /// The PF.
    pub pf: Pf,
    /// The changes, in order; empty when the host already matches.
    pub steps: Vec<Step>,
}

/// The settings a policy wants, as the PF would report them when met.
fn wanted(p: &VfPolicy) -> VfSettings {
    VfSettings {
        mac: p.mac,
        vlan: Some(p.vlan),
        spoofchk: Some(p.spoofchk),
        trust: Some(p.trust()),
        qos: p.qos,
        max_tx_rate: p.max_tx_rate.or(p.min_tx_rate.map(|_| 0)),
        min_tx_rate: p.min_tx_rate.or(p.max_tx_rate.map(|_| 0)),
        link_state: p.link_state,
    }
}

/// Checks `cfg` against the host and plans the changes.
pub fn plan(cfg: &IovConfig, host: &IovHost) -> Result<Plan, Error> {
    let sysfs = &host.sysfs;
    let at_device = |e: String| {
        Error::Conf(ConfError::new(
            cfg.device_pos,
            format!("device {}", cfg.device),
            e,
        ))
    };
    let pf = find_pf(sysfs, &cfg.device)
        .map_err(|e| at_device(format!("an SR-IOV PF on this host: {e}")))?;
    let n = u32::from(cfg.num_vfs);
    if n > pf.total_vfs {
        return Err(Error::Conf(ConfError::new(
            cfg.num_vfs_pos,
            format!("num_vfs {n}"),
            format!("at most {} (sriov_totalvfs of {})", pf.total_vfs, pf.name()),
        )));
    }
    if pf.num_vfs != 0 && pf.num_vfs != n {
        return Err(Error::Conf(ConfError::new(
            cfg.num_vfs_pos,
            format!("num_vfs {n}"),
            format!(
                "{} VFs, as {} has now: the kernel changes the number only from 0, so run vfvm iov delete -d {} first",
                pf.num_vfs,
                pf.name(),
                pf.netdev.as_deref().unwrap_or(&pf.addr)
            ),
        )));
    }
    let unsupported = unsupported_keys(pf.driver.as_deref());
    for vf in &cfg.vfs {
        for (key, pos) in &vf.given {
            if unsupported.contains(key) {
                return Err(Error::Conf(ConfError::new(
                    *pos,
                    format!("'{}'", key.name()),
                    format!(
                        "a key {} can set on its VFs (see vfvm iov schema -d {})",
                        pf.driver.as_deref().unwrap_or("this driver"),
                        pf.netdev.as_deref().unwrap_or(&pf.addr)
                    ),
                )));
            }
        }
    }
    let Some(netdev) = pf.netdev.clone() else {
        return Err(at_device(
            "a PF with a network interface, to set VF settings through (bind it to its NIC driver)"
                .into(),
        ));
    };
    let mut steps = Vec::new();
    let exists = pf.num_vfs == n;
    if !exists {
        if sysfs.sriov_autoprobe(&pf.addr) != Some(false) {
            steps.push(Step::AutoprobeOff);
        }
        steps.push(Step::CreateVfs(cfg.num_vfs));
    }
    let current = if exists {
        host.vf_control.list(&netdev).map_err(|e| {
            Error::Host(format!("{}: cannot read its VFs' settings: {e}", pf.name()))
        })?
    } else {
        Vec::new()
    };
    let addrs = sysfs.virtfns(&pf.addr);
    let mut binds = Vec::new();
    let mut settings = Vec::new();
    for vf in &cfg.vfs {
        let index = vf.index;
        let addr = addrs
            .iter()
            .find(|(i, _)| *i == u32::from(index))
            .map(|(_, a)| a.as_str());
        let have = current
            .iter()
            .find(|r| r.index == u32::from(index))
            .map(|r| r.settings)
            .unwrap_or_default();
        let change = wanted(vf).changes_from(&have);
        let driver = addr.and_then(|a| sysfs.driver(a));
        let to = if vf.passthrough {
            Use::Passthrough
        } else {
            Use::Host
        };
        let bind = match (to, driver.as_deref()) {
            (Use::Passthrough, Some(VFIO_PCI)) => false,
            (Use::Passthrough, _) => true,
            (Use::Host, Some(VFIO_PCI) | None) => true,
            (Use::Host, Some(_)) => false,
        };
        if let (Some(a), true) = (addr, bind || !change.is_empty()) {
            if let Some(h) = claim::holder(&host.run_dir, a) {
                return Err(Error::Host(format!(
                    "VF-{index} ({a}) of {} is in use by {h}: the file would change it, and vfvm never changes a VF a VM holds (stop the VM first); nothing was changed",
                    pf.name()
                )));
            }
        }
        if !change.is_empty() {
            settings.push(Step::Settings { index, change });
        }
        if bind {
            binds.push(Step::Bind { index, to });
        }
    }
    // Settings before binding: a VF's driver takes the MAC the PF set when
    // it binds; passthrough VFs are bound before the host's, so none of
    // them is ever probed by a host driver.
    binds.sort_by_key(|s| matches!(s, Step::Bind { to: Use::Host, .. }));
    steps.extend(settings);
    steps.extend(binds);
    Ok(Plan { pf, steps })
}

#[cfg(test)]
pub mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::MacAddr;
    use crate::host::netlink;
    use crate::host::pci::fake::FakeSys;
    use crate::host::vf::VfReport;
    use crate::iov::conf;

    pub const PF: &str = "0000:01:00.0";

    /// The PF's VFs' settings, and every set asked for.
    #[derive(Default)]
    pub struct FakeVfs {
        pub vfs: Mutex<Vec<VfReport>>,
        pub sets: Mutex<Vec<(u32, VfSettings)>>,
    }

    impl VfControl for FakeVfs {
        fn list(&self, _pf: &str) -> Result<Vec<VfReport>, netlink::Error> {
            Ok(self.vfs.lock().unwrap().clone())
        }
        fn set(&self, _pf: &str, vf: u32, change: &VfSettings) -> Result<(), netlink::Error> {
            self.sets.lock().unwrap().push((vf, *change));
            let mut vfs = self.vfs.lock().unwrap();
            if let Some(r) = vfs.iter_mut().find(|r| r.index == vf) {
                let s = &mut r.settings;
                s.mac = change.mac.or(s.mac);
                s.vlan = change.vlan.or(s.vlan);
                s.spoofchk = change.spoofchk.or(s.spoofchk);
                s.trust = change.trust.or(s.trust);
            }
            Ok(())
        }
    }

    /// An igb PF (eth0) that can have 7 VFs and has `vfs` of them.
    pub fn pf_tree(vfs: u32) -> FakeSys {
        let f = FakeSys::new();
        f.device(PF, (0x8086, 0x10c9), Some(10))
            .bind(PF, "igb")
            .netdev(PF, "eth0");
        f.write(&format!("bus/pci/devices/{PF}/sriov_totalvfs"), "7\n")
            .write(
                &format!("bus/pci/devices/{PF}/sriov_numvfs"),
                &format!("{vfs}\n"),
            )
            .write(
                &format!("bus/pci/devices/{PF}/sriov_drivers_autoprobe"),
                "1\n",
            );
        std::os::unix::fs::symlink(f.root.join("bus/pci/devices").join(PF), {
            std::fs::create_dir_all(f.root.join("class/net/eth0")).unwrap();
            f.root.join("class/net/eth0/device")
        })
        .unwrap();
        for i in 0..vfs {
            let vf = vf_addr(i);
            f.device(&vf, (0x8086, 0x10ca), Some(11 + i)).vf(PF, i, &vf);
        }
        f
    }

    pub fn vf_addr(i: u32) -> String {
        format!("0000:01:10.{}", i * 2)
    }

    pub const FILE: &str = "PF { device : \"eth0\"; num_vfs : 3; }\n\
        DEFAULT { allow-set-mac : true; }\n\
        VF-0 { mac-addr : \"02:00:00:00:00:10\"; passthrough : true; }\n\
        VF-1 { mac-addr : \"02:00:00:00:00:11\"; }\n";

    fn host<'a>(f: &FakeSys, vfs: &'a FakeVfs) -> IovHost<'a> {
        IovHost {
            sysfs: Sysfs::new(&f.root),
            vf_control: vfs,
            run_dir: f.root.join("run/vfvm"),
        }
    }

    fn steps(f: &FakeSys, vfs: &FakeVfs, text: &str) -> Result<Vec<String>, String> {
        let cfg = conf::parse(text).map_err(|e| e.to_string())?;
        let p = plan(&cfg, &host(f, vfs)).map_err(|e| e.to_string())?;
        Ok(p.steps.iter().map(Step::to_string).collect())
    }

    #[test]
    fn a_fresh_pf_gets_every_step_in_order() {
        let f = pf_tree(0);
        assert_eq!(
            steps(&f, &FakeVfs::default(), FILE).unwrap(),
            [
                "sriov_drivers_autoprobe 0 (no driver binds a new VF by itself)",
                "sriov_numvfs 3 (create 3 VFs)",
                "VF-0: mac 02:00:00:00:00:10 vlan 0 spoofchk on trust on",
                "VF-1: mac 02:00:00:00:00:11 vlan 0 spoofchk on trust on",
                "VF-2: vlan 0 spoofchk on trust on",
                "VF-0: bind to vfio-pci (passthrough, for VMs)",
                "VF-1: bind to its host driver",
                "VF-2: bind to its host driver",
            ]
        );
        // By PCI address, the same.
        let by_addr = FILE.replace("\"eth0\"", "\"0000:01:00.0\"");
        assert_eq!(steps(&f, &FakeVfs::default(), &by_addr).unwrap().len(), 8);
    }

    #[test]
    fn a_host_that_matches_needs_nothing() {
        let f = pf_tree(3);
        f.bind(&vf_addr(0), "vfio-pci")
            .bind(&vf_addr(1), "igbvf")
            .bind(&vf_addr(2), "igbvf");
        let report = |i: u32, mac: [u8; 6]| VfReport {
            index: i,
            settings: VfSettings {
                mac: Some(MacAddr::new(mac)),
                vlan: Some(0),
                spoofchk: Some(true),
                trust: Some(true),
                qos: Some(0),
                ..VfSettings::default()
            },
            stats: None,
        };
        let vfs = FakeVfs::default();
        *vfs.vfs.lock().unwrap() = vec![
            report(0, [2, 0, 0, 0, 0, 0x10]),
            report(1, [2, 0, 0, 0, 0, 0x11]),
            report(2, [0; 6]),
        ];
        assert_eq!(steps(&f, &vfs, FILE).unwrap(), Vec::<String>::new());
        // One VF differs: one step.
        vfs.vfs.lock().unwrap()[2].settings.trust = Some(false);
        assert_eq!(steps(&f, &vfs, FILE).unwrap(), ["VF-2: trust on"]);
        // A VM holds VF-2: refused, naming the VM.
        let _c = claim::claim(&f.root.join("run/vfvm"), &vf_addr(2), "web1").unwrap();
        let e = steps(&f, &vfs, FILE).unwrap_err();
        assert!(
            e.starts_with("VF-2 (0000:01:10.4) of eth0 (0000:01:00.0) is in use by VM web1 (pid "),
            "{e}"
        );
    }

    #[test]
    fn the_host_refuses_at_the_right_place() {
        let f = pf_tree(0);
        let vfs = FakeVfs::default();
        let err = |text: &str| steps(&f, &vfs, text).unwrap_err();
        assert_eq!(
            err("PF { device : eth0; num_vfs : 8; }"),
            "1:31: found num_vfs 8, expected at most 7 (sriov_totalvfs of eth0 (0000:01:00.0))"
        );
        assert_eq!(
            err("PF { device : eth9; num_vfs : 2; }"),
            "1:15: found device eth9, expected an SR-IOV PF on this host: no network interface eth9 with a PCI device on this host (see ip link)"
        );
        assert_eq!(
            err("PF { device : \"0000:02:00.0\"; num_vfs : 2; }"),
            "1:15: found device 0000:02:00.0, expected an SR-IOV PF on this host: no PCI device 0000:02:00.0 on this host (see ls /sys/bus/pci/devices)"
        );
        assert_eq!(
            err("PF { device : eth0; num_vfs : 2; }\nVF-1 { min-tx-rate : 10; }"),
            "2:8: found 'min-tx-rate', expected a key igb can set on its VFs (see vfvm iov schema -d eth0)"
        );
        let f = pf_tree(2);
        assert_eq!(
            steps(&f, &vfs, "PF { device : eth0; num_vfs : 3; }").unwrap_err(),
            "1:31: found num_vfs 3, expected 2 VFs, as eth0 (0000:01:00.0) has now: the kernel changes the number only from 0, so run vfvm iov delete -d eth0 first"
        );
    }
}
