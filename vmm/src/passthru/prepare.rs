//! Host-side preparation of a passthrough device before the guest starts.
//!
//! Every check runs before anything on the host changes; each failure is
//! one line naming the device and the fix. Then, in order: VF settings
//! through the PF (as the testbed showed, before binding to vfio-pci), and,
//! for `managed`, rebinding to vfio-pci. The returned [`PassthruGuard`]
//! holds the per-device lock and gives the device back to its original
//! driver when dropped (drop it after the VFIO device is closed).

use std::fs::{self, File};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use log::{info, warn};

use super::mac::stable_mac;
use super::netlink::{self, VfChange, VfControl};
use super::sysfs::Sysfs;
use crate::config::{MacAddr, PassthruConfig};

const VFIO_PCI: &str = "vfio-pci";
/// Drivers that may hold the other members of a device's IOMMU group.
const GROUP_SAFE_DRIVERS: &[&str] = &[VFIO_PCI, "pci-stub", "pcieport"];

/// A passthrough device refused before the guest starts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel has no IOMMU.
    #[error("{device}: no IOMMU: enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD)")]
    NoIommu { device: String },
    /// No such PCI function.
    #[error("{device}: no such PCI device on this host (see ls /sys/bus/pci/devices)")]
    NotFound { device: String },
    /// VF settings given for something that is not a VF.
    #[error("{device}: not an SR-IOV VF (no physfn link), so {setting}= cannot be applied: remove it, or pass a VF (ls /sys/bus/pci/devices/PF/virtfn*)")]
    NotAVf {
        device: String,
        setting: &'static str,
    },
    /// The VF's PF has no network interface to set VF attributes through.
    #[error("{device}: its PF {pf} has no network interface, so VF settings cannot be applied: bind the PF to its NIC driver")]
    NoPfNetdev { device: String, pf: String },
    /// Bound to a driver other than vfio-pci and not `managed`.
    #[error("{device}: bound to {driver}, not vfio-pci: add `managed`, or run: {commands}")]
    WrongDriver {
        device: String,
        driver: String,
        commands: String,
    },
    /// Other devices in the IOMMU group are held by host drivers.
    #[error("{device}: IOMMU group {group} is not viable: {others} (unbind them or bind them to vfio-pci)")]
    GroupNotViable {
        device: String,
        group: u32,
        others: String,
    },
    /// Another vfvm holds the device.
    #[error("{device}: in use by another VM ({path} is locked)")]
    InUse { device: String, path: PathBuf },
    /// A host file could not be read or written.
    #[error("{device}: {what} {path}: {source}")]
    Io {
        device: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The PF refused or could not report VF settings.
    #[error("{device}: VF {vf} of {pf}: {source}")]
    Netlink {
        device: String,
        pf: String,
        vf: u32,
        #[source]
        source: netlink::Error,
    },
}

/// Where the device sits in the guest, for its stable MAC.
#[derive(Clone, Copy, Debug)]
pub struct GuestPlace<'a> {
    /// VM name.
    pub vm: &'a str,
    /// Guest PCI slot.
    pub slot: u8,
    /// Guest PCI function.
    pub function: u8,
}

/// The host facilities preparation uses; tests substitute fakes.
pub struct Host<'a> {
    /// sysfs (normally `/sys`).
    pub sysfs: Sysfs,
    /// VF settings through the PF (normally rtnetlink).
    pub vf_control: &'a dyn VfControl,
    /// Directory for per-device lock files (normally `/run/vfvm`).
    pub lock_dir: PathBuf,
}

/// What must be undone when the VM is gone.
#[derive(Debug)]
pub struct PassthruGuard {
    device: String,
    sysfs: Sysfs,
    /// `Some(original driver)` once `managed` rebinding has started;
    /// `Some(None)` for a device that had no driver (it is left unbound).
    rebound: Option<Option<String>>,
    /// The VF's MAC as programmed (for logs and the API).
    mac: Option<[u8; 6]>,
    _lock: File,
}

impl PassthruGuard {
    /// The device's sysfs directory, for `VfioPciDevice::new`.
    pub fn sysfs_path(&self) -> PathBuf {
        self.sysfs.device_dir(&self.device)
    }

    /// The VF's MAC, when it is a VF whose PF reports one.
    pub fn mac(&self) -> Option<MacAddr> {
        self.mac.map(MacAddr::new)
    }
}

fn write_sysfs(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

impl Drop for PassthruGuard {
    /// Gives a `managed` device back to its driver: unbind from vfio-pci,
    /// then probe with driver_override naming the original driver (a VF is
    /// only probed with an override while `sriov_drivers_autoprobe` is 0),
    /// then clear the override.
    fn drop(&mut self) {
        let Some(driver) = &self.rebound else {
            return;
        };
        let d = &self.device;
        let override_path = self.sysfs.driver_override(d);
        let mut steps = vec![(self.sysfs.unbind(VFIO_PCI), d.clone())];
        if let Some(drv) = driver {
            steps.push((override_path.clone(), drv.clone()));
            steps.push((self.sysfs.drivers_probe(), d.clone()));
        }
        steps.push((override_path, "\n".to_string()));
        let name = driver.as_deref().unwrap_or("no driver");
        for (path, value) in steps {
            if let Err(e) = write_sysfs(&path, &value) {
                warn!(
                    "{d}: cannot give the device back to {name}: {}: {e}",
                    path.display()
                );
                return;
            }
        }
        info!("{d}: given back to {name}");
    }
}

fn rebind_commands(device: &str, driver: Option<&str>) -> String {
    let mut cmds = vec![format!(
        "echo {VFIO_PCI} > /sys/bus/pci/devices/{device}/driver_override"
    )];
    if let Some(drv) = driver {
        cmds.push(format!("echo {device} > /sys/bus/pci/drivers/{drv}/unbind"));
    }
    cmds.push(format!("echo {device} > /sys/bus/pci/drivers_probe"));
    cmds.join("; ")
}

fn settings_given(cfg: &PassthruConfig) -> Option<&'static str> {
    [
        (cfg.mac.is_some(), "mac"),
        (cfg.vlan.is_some(), "vlan"),
        (cfg.spoofchk.is_some(), "spoofchk"),
        (cfg.trust.is_some(), "trust"),
    ]
    .into_iter()
    .find_map(|(given, name)| given.then_some(name))
}

fn lock(device: &str, dir: &Path) -> Result<File, Error> {
    let io_err = |what, path: &Path| {
        let device = device.to_string();
        let path = path.to_path_buf();
        move |source| Error::Io {
            device,
            what,
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let path = dir.join(format!("{device}.lock"));
    let file = File::create(&path).map_err(io_err("cannot create", &path))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Error::InUse {
                device: device.to_string(),
                path,
            }
        } else {
            io_err("cannot lock", &path)(e)
        });
    }
    Ok(file)
}

/// Checks and prepares the host device of `cfg` for the VM; see the module
/// documentation. The guard must outlive the VFIO device.
pub fn prepare(
    cfg: &PassthruConfig,
    place: GuestPlace,
    host: &Host,
) -> Result<PassthruGuard, Error> {
    let device = cfg.host.to_string();
    let sysfs = &host.sysfs;
    let d = || device.clone();

    // Checks: nothing on the host changes until they all pass.
    if !sysfs.iommu_enabled() {
        return Err(Error::NoIommu { device: d() });
    }
    if !sysfs.exists(&device) {
        return Err(Error::NotFound { device: d() });
    }
    let group = sysfs
        .iommu_group(&device)
        .ok_or_else(|| Error::NoIommu { device: d() })?;
    let pf = sysfs.physfn(&device);
    if let (None, Some(setting)) = (&pf, settings_given(cfg)) {
        return Err(Error::NotAVf {
            device: d(),
            setting,
        });
    }
    let vf = match &pf {
        Some(pf) => match (sysfs.netdev(pf), sysfs.vf_index(pf, &device)) {
            (Some(netdev), Some(index)) => Some((pf.clone(), netdev, index)),
            _ if settings_given(cfg).is_some() => {
                return Err(Error::NoPfNetdev {
                    device: d(),
                    pf: pf.clone(),
                })
            }
            _ => {
                warn!("{device}: PF {pf} has no network interface; leaving the VF's MAC alone");
                None
            }
        },
        None => None,
    };
    let driver = sysfs.driver(&device);
    let needs_rebind = driver.as_deref() != Some(VFIO_PCI);
    if needs_rebind && !cfg.managed {
        return Err(Error::WrongDriver {
            device: d(),
            driver: driver.clone().unwrap_or_else(|| "no driver".into()),
            commands: rebind_commands(&device, driver.as_deref()),
        });
    }
    let members = sysfs.group_members(group).map_err(|source| Error::Io {
        device: d(),
        what: "cannot list IOMMU group",
        path: PathBuf::from(format!("/sys/kernel/iommu_groups/{group}")),
        source,
    })?;
    let others: Vec<String> = members
        .iter()
        .filter(|m| **m != device)
        .filter_map(|m| {
            let drv = sysfs.driver(m)?;
            (!GROUP_SAFE_DRIVERS.contains(&drv.as_str())).then(|| format!("{m} is bound to {drv}"))
        })
        .collect();
    if !others.is_empty() {
        return Err(Error::GroupNotViable {
            device: d(),
            group,
            others: others.join(", "),
        });
    }
    let netlink_err = |pf: &str, vf: u32| {
        let device = d();
        let pf = pf.to_string();
        move |source| Error::Netlink {
            device,
            pf,
            vf,
            source,
        }
    };
    let current = match &vf {
        Some((_, netdev, index)) => Some(
            host.vf_control
                .get(netdev, *index)
                .map_err(netlink_err(netdev, *index))?,
        ),
        None => None,
    };
    let lock = lock(&device, &host.lock_dir)?;

    // Changes. The VF leaves its host driver first, so that driver never
    // sees its MAC or VLAN change under it.
    let mut guard = PassthruGuard {
        device: d(),
        sysfs: sysfs.clone(),
        rebound: None,
        mac: None,
        _lock: lock,
    };
    if needs_rebind {
        let io_err = |path: PathBuf| {
            let device = d();
            move |source| Error::Io {
                device,
                what: "cannot write",
                path,
                source,
            }
        };
        let override_path = sysfs.driver_override(&device);
        write_sysfs(&override_path, VFIO_PCI).map_err(io_err(override_path.clone()))?;
        // From here on the guard restores the binding if a step fails.
        guard.rebound = Some(driver.clone());
        if let Some(drv) = &driver {
            let unbind = sysfs.unbind(drv);
            write_sysfs(&unbind, &device).map_err(io_err(unbind.clone()))?;
        }
        let probe = sysfs.drivers_probe();
        write_sysfs(&probe, &device).map_err(io_err(probe.clone()))?;
        info!(
            "{device}: bound to vfio-pci (was {})",
            driver.as_deref().unwrap_or("unbound")
        );
    }
    if let (Some((_, netdev, index)), Some(current)) = (&vf, current) {
        let wanted = match cfg.mac {
            Some(m) => Some(m.octets()),
            None if current.mac == [0; 6] => Some(stable_mac(place.vm, place.slot, place.function)),
            None => None,
        };
        let mac = wanted.unwrap_or(current.mac);
        guard.mac = Some(mac);
        let change = VfChange {
            // Always set, even when unchanged: only a MAC the PF set
            // administratively is taken by the VF's driver; otherwise the
            // guest's driver picks a random one at every boot.
            mac: Some(mac),
            vlan: cfg.vlan.filter(|v| *v != current.vlan),
            spoofchk: cfg.spoofchk.filter(|s| current.spoofchk != Some(*s)),
            trust: cfg.trust.filter(|t| current.trust != Some(*t)),
        };
        if !change.is_empty() {
            host.vf_control
                .set(netdev, *index, &change)
                .map_err(netlink_err(netdev, *index))?;
        }
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::passthru::netlink::VfState;
    use crate::passthru::sysfs::fake::FakeSys;

    const PF: &str = "0000:01:00.0";
    const VF: &str = "0000:01:10.0";

    #[derive(Default)]
    struct FakeVf {
        state: RefCell<VfState>,
        sets: RefCell<Vec<(String, u32, VfChange)>>,
        refuse: bool,
    }

    impl VfControl for FakeVf {
        fn get(&self, _pf: &str, _vf: u32) -> Result<VfState, netlink::Error> {
            Ok(*self.state.borrow())
        }
        fn set(&self, pf: &str, vf: u32, change: &VfChange) -> Result<(), netlink::Error> {
            if self.refuse {
                return Err(netlink::Error::Kernel(io::Error::from_raw_os_error(
                    libc::EPERM,
                )));
            }
            self.sets.borrow_mut().push((pf.to_string(), vf, *change));
            Ok(())
        }
    }

    /// PF with igb and eth0, VF 0 in group 11 bound to `vf_driver`.
    fn tree(vf_driver: Option<&str>) -> FakeSys {
        let f = FakeSys::new();
        f.device(PF, (0x8086, 0x10c9), Some(10))
            .device(VF, (0x8086, 0x10ca), Some(11))
            .bind(PF, "igb")
            .vf(PF, 0, VF)
            .netdev(PF, "eth0");
        if let Some(drv) = vf_driver {
            f.bind(VF, drv);
        }
        f
    }

    fn cfg(s: &str) -> PassthruConfig {
        let mut c = PassthruConfig::new(VF.parse().unwrap());
        for opt in s.split(',').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("mac", m)) => c.mac = Some(m.parse().unwrap()),
                Some(("vlan", v)) => c.vlan = Some(v.parse().unwrap()),
                Some(("spoofchk", v)) => c.spoofchk = Some(v == "on"),
                Some(("trust", v)) => c.trust = Some(v == "on"),
                _ if opt == "managed" => c.managed = true,
                _ => panic!("{opt}"),
            }
        }
        c
    }

    const PLACE: GuestPlace = GuestPlace {
        vm: "vm1",
        slot: 5,
        function: 0,
    };

    fn run(f: &FakeSys, vf: &FakeVf, c: &str) -> Result<PassthruGuard, Error> {
        let host = Host {
            sysfs: Sysfs::new(&f.root),
            vf_control: vf,
            lock_dir: f.root.join("run/vfvm"),
        };
        prepare(&cfg(c), PLACE, &host)
    }

    fn err(f: &FakeSys, vf: &FakeVf, c: &str) -> String {
        run(f, vf, c).unwrap_err().to_string()
    }

    #[test]
    fn ready_vf_gets_its_settings_and_keeps_its_mac_administratively() {
        let f = tree(Some("vfio-pci"));
        let vf = FakeVf::default();
        vf.state.borrow_mut().mac = [2, 0, 0, 0, 0, 1];
        let g = run(&f, &vf, "vlan=5,spoofchk=on,trust=off").unwrap();
        assert_eq!(g.mac().map(|m| m.octets()), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(g.sysfs_path(), f.root.join("bus/pci/devices").join(VF));
        let sets = vf.sets.borrow();
        assert_eq!(sets.len(), 1);
        let (pf, index, change) = &sets[0];
        assert_eq!((pf.as_str(), *index), ("eth0", 0));
        assert_eq!(
            *change,
            VfChange {
                // Set again so that it is administratively set.
                mac: Some([2, 0, 0, 0, 0, 1]),
                vlan: Some(5),
                spoofchk: Some(true),
                trust: Some(false)
            }
        );
    }

    #[test]
    fn zero_mac_gets_the_stable_one_and_mac_option_wins() {
        let f = tree(Some("vfio-pci"));
        let vf = FakeVf::default();
        let g = run(&f, &vf, "").unwrap();
        let stable = stable_mac("vm1", 5, 0);
        assert_eq!(g.mac().map(|m| m.octets()), Some(stable));
        assert_eq!(vf.sets.borrow()[0].2.mac, Some(stable));
        drop(g);
        let vf = FakeVf::default();
        vf.state.borrow_mut().mac = [2, 0, 0, 0, 0, 1];
        let g = run(&f, &vf, "mac=aa:88:44:00:02:01").unwrap();
        assert_eq!(vf.sets.borrow()[0].2.mac, Some([0xaa, 0x88, 0x44, 0, 2, 1]));
        assert_eq!(
            g.mac().map(|m| m.octets()),
            Some([0xaa, 0x88, 0x44, 0, 2, 1])
        );
    }

    #[test]
    fn no_iommu() {
        let f = FakeSys::new();
        let e = err(&f, &FakeVf::default(), "");
        assert_eq!(e, format!("{VF}: no IOMMU: enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD)"));
        // Groups exist but the device has none.
        f.device("0000:00:02.0", (1, 1), Some(0))
            .device(VF, (1, 2), None);
        assert!(err(&f, &FakeVf::default(), "").contains("no IOMMU"));
    }

    #[test]
    fn not_found() {
        let f = FakeSys::new();
        f.device("0000:00:02.0", (1, 1), Some(0));
        let e = err(&f, &FakeVf::default(), "");
        assert_eq!(
            e,
            format!("{VF}: no such PCI device on this host (see ls /sys/bus/pci/devices)")
        );
    }

    #[test]
    fn vf_settings_need_a_vf() {
        let f = FakeSys::new();
        f.device(VF, (0x8086, 0x10c9), Some(3)).bind(VF, "vfio-pci");
        let e = err(&f, &FakeVf::default(), "vlan=5");
        assert!(
            e.starts_with(&format!(
                "{VF}: not an SR-IOV VF (no physfn link), so vlan= cannot"
            )),
            "{e}"
        );
        assert!(
            run(&f, &FakeVf::default(), "").is_ok(),
            "a plain device needs none"
        );
    }

    #[test]
    fn wrong_driver_without_managed_names_the_commands() {
        let f = tree(Some("igbvf"));
        let vf = FakeVf::default();
        let e = err(&f, &vf, "mac=aa:88:44:00:02:01");
        assert_eq!(
            e,
            format!(
                "{VF}: bound to igbvf, not vfio-pci: add `managed`, or run: \
                 echo vfio-pci > /sys/bus/pci/devices/{VF}/driver_override; \
                 echo {VF} > /sys/bus/pci/drivers/igbvf/unbind; \
                 echo {VF} > /sys/bus/pci/drivers_probe"
            )
        );
        assert!(vf.sets.borrow().is_empty(), "nothing changed");
        assert!(!f.root.join("run/vfvm").exists(), "not even the lock");
    }

    #[test]
    fn group_must_be_viable() {
        let f = tree(Some("vfio-pci"));
        f.device("0000:01:10.1", (0x8086, 0x1234), Some(11))
            .bind("0000:01:10.1", "e1000e")
            .device("0000:00:01.0", (0x8086, 0x1), Some(11))
            .bind("0000:00:01.0", "pcieport")
            .device("0000:01:10.3", (0x8086, 0x1), Some(11));
        let vf = FakeVf::default();
        let e = err(&f, &vf, "");
        assert_eq!(e, format!("{VF}: IOMMU group 11 is not viable: 0000:01:10.1 is bound to e1000e (unbind them or bind them to vfio-pci)"));
        assert!(vf.sets.borrow().is_empty());
    }

    #[test]
    fn second_vm_finds_the_device_locked() {
        let f = tree(Some("vfio-pci"));
        let vf = FakeVf::default();
        vf.state.borrow_mut().mac = [2, 0, 0, 0, 0, 1];
        let first = run(&f, &vf, "").unwrap();
        let e = err(&f, &vf, "");
        assert!(
            e.starts_with(&format!("{VF}: in use by another VM (")),
            "{e}"
        );
        drop(first);
        assert!(run(&f, &vf, "").is_ok());
    }

    #[test]
    fn managed_rebinds_and_restores() {
        let f = tree(Some("igbvf"));
        let vf = FakeVf::default();
        vf.state.borrow_mut().mac = [2, 0, 0, 0, 0, 1];
        let sysfs = Sysfs::new(&f.root);
        let g = run(&f, &vf, "managed").unwrap();
        assert_eq!(f.read(&sysfs.driver_override(VF)), "vfio-pci");
        assert_eq!(f.read(&sysfs.unbind("igbvf")), VF);
        assert_eq!(f.read(&sysfs.drivers_probe()), VF);
        // The fake kernel binds it to vfio-pci; the guard undoes all of it.
        f.bind(VF, "vfio-pci");
        fs::write(sysfs.drivers_probe(), "").unwrap();
        drop(g);
        assert_eq!(f.read(&sysfs.driver_override(VF)), "\n");
        assert_eq!(f.read(&sysfs.unbind("vfio-pci")), VF);
        assert_eq!(f.read(&sysfs.drivers_probe()), VF);
    }

    #[test]
    fn managed_unbound_device_is_left_unbound() {
        let f = tree(None);
        let vf = FakeVf::default();
        vf.state.borrow_mut().mac = [2, 0, 0, 0, 0, 1];
        let sysfs = Sysfs::new(&f.root);
        let e = err(&f, &vf, "");
        assert!(
            e.contains("bound to no driver") && !e.contains("unbind"),
            "{e}"
        );
        let g = run(&f, &vf, "managed").unwrap();
        f.bind(VF, "vfio-pci");
        fs::write(sysfs.drivers_probe(), "").unwrap();
        drop(g);
        assert_eq!(f.read(&sysfs.drivers_probe()), "", "not reprobed");
    }

    #[test]
    fn pf_refusal_is_reported_with_the_pf() {
        let f = tree(Some("vfio-pci"));
        let vf = FakeVf {
            refuse: true,
            ..FakeVf::default()
        };
        let e = err(&f, &vf, "trust=on");
        assert!(
            e.starts_with(&format!("{VF}: VF 0 of eth0: kernel refused")),
            "{e}"
        );
    }

    #[test]
    fn pf_without_netdev() {
        let f = FakeSys::new();
        f.device(PF, (0x8086, 0x10c9), Some(10))
            .device(VF, (0x8086, 0x10ca), Some(11))
            .vf(PF, 0, VF)
            .bind(VF, "vfio-pci");
        let e = err(&f, &FakeVf::default(), "vlan=3");
        assert_eq!(e, format!("{VF}: its PF {PF} has no network interface, so VF settings cannot be applied: bind the PF to its NIC driver"));
        let g = run(&f, &FakeVf::default(), "").unwrap();
        assert_eq!(g.mac(), None);
    }
}
