//! The host side of one passthrough device: [`check`], then [`Plan::apply`].
//!
//! [`check`] reads the host and refuses, in one line naming the device and
//! the fix, anything that would fail later: no IOMMU, no such device, VF
//! settings for something that is not a VF or whose PF has no interface, a
//! host driver without `managed`, an IOMMU group shared with host drivers,
//! a device another vfvm holds (it claims the device: [`crate::host::claim`]).
//! It changes nothing; what it found and decided is the [`Plan`].
//!
//! [`Plan::apply`] makes the changes, in this order: for `managed`, the
//! device leaves its host driver for vfio-pci first, so that driver never
//! sees its MAC or VLAN change under it; then the VF settings go to the PF
//! (the MAC always: only a MAC the PF set administratively is taken by the
//! VF's driver). Before the first change it writes what the device was
//! (driver, VF settings) to the journal ([`crate::host::journal`]). The
//! [`Guard`] it returns holds the claim and, when dropped, puts the device
//! back as the journal says (VF settings as before the VM, then its
//! driver) and removes the record; drop it after the VFIO device is
//! closed. A vfvm killed before that leaves the record for the next start.

use std::path::PathBuf;
use std::sync::Arc;

use log::{info, warn};

use crate::config::{HostDevice, MacAddr, PassthruConfig, PfDevice};
use crate::host::claim::{self, Claim};
use crate::host::journal::{self, Journal, Record, VfBefore};
use crate::host::mac::stable_mac;
use crate::host::netlink;
use crate::host::pci::{self, Sysfs};
use crate::host::vf::{VfControl, VfSettings};

const VFIO_PCI: &str = "vfio-pci";
/// Drivers that may hold the other members of a device's IOMMU group.
const GROUP_SAFE_DRIVERS: &[&str] = &[VFIO_PCI, "pci-stub", "pcieport"];

/// A passthrough device refused before the guest starts, or a host change
/// that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel has no IOMMU.
    #[error("{device}: no IOMMU: enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD)")]
    NoIommu { device: String },
    /// VFIO would let devices forge interrupts.
    #[error("{device}: vfio_iommu_type1.allow_unsafe_interrupts is on, so a passed-through device could forge interrupts into the host: set it to N (echo N > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts, and drop the module option) on a host with interrupt remapping (intremap)")]
    UnsafeInterrupts { device: String },
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
    /// `pf=` names no SR-IOV PF. (The `-s` text that wraps every error
    /// here already names the `pf=`, so these do not repeat it.)
    #[error("{0}")]
    NoSuchPf(&'static str),
    /// `pf=`: every VF is taken or not a passthrough VF.
    #[error("no free VF: {taken} ({fix})")]
    NoFreeVf { taken: String, fix: String },
    /// Another vfvm holds the device, or its claim could not be taken.
    #[error(transparent)]
    Claim(#[from] claim::Error),
    /// What is about to change could not be written to the journal.
    #[error("{device}: {source} (nothing was changed)")]
    Journal {
        device: String,
        #[source]
        source: std::io::Error,
    },
    /// A sysfs file could not be read or written.
    #[error("{device}: {source}")]
    Sysfs {
        device: String,
        #[source]
        source: pci::Error,
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

/// The host facilities a check uses; tests substitute fakes.
pub struct Host<'a> {
    /// sysfs (normally `/sys`).
    pub sysfs: Sysfs,
    /// VF settings through the PF (normally rtnetlink).
    pub vf_control: &'a dyn VfControl,
    /// Directory for claims and the journal (normally `/run/vfvm`).
    pub lock_dir: PathBuf,
}

/// The device's driver binding: as found, and what a guard gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Bound to vfio-pci: nothing to change or give back.
    Vfio,
    /// Bound to this host driver: `managed` moves it to vfio-pci.
    Driver(String),
    /// Bound to no driver: `managed` binds it to vfio-pci, and it is left
    /// unbound afterwards.
    Unbound,
}

impl Binding {
    fn driver_name(&self) -> &str {
        match self {
            Binding::Vfio => VFIO_PCI,
            Binding::Driver(d) => d,
            Binding::Unbound => "no driver",
        }
    }
}

/// A VF whose settings go through its PF.
#[derive(Clone, Debug)]
pub struct PlannedVf {
    /// The PF's network interface.
    pub pf_netdev: String,
    /// The VF's index on the PF.
    pub index: u32,
    /// Its settings before vfvm changed anything (what a release restores).
    #[allow(dead_code, reason = "restored at release by the journal (issue 9)")]
    pub before: VfSettings,
    /// What [`Plan::apply`] sets (the MAC always).
    pub change: VfSettings,
    /// The MAC the guest will see.
    pub mac: MacAddr,
}

/// Everything [`check`] found and decided; [`Plan::apply`] carries it out.
/// It holds the device's claim, so no other vfvm can take it meanwhile.
#[derive(Debug)]
pub struct Plan {
    device: String,
    vm: String,
    sysfs: Sysfs,
    journal: Journal,
    binding: Binding,
    vf: Option<PlannedVf>,
    claim: Claim,
}

impl Plan {
    /// The device (for a pool, the VF taken).
    pub fn device(&self) -> &str {
        &self.device
    }
}

/// What must be undone when the VM is gone.
pub struct Guard {
    device: String,
    sysfs: Sysfs,
    journal: Journal,
    vf_control: Arc<dyn VfControl + Send + Sync>,
    /// What the journal says to undo; `None`: nothing changed.
    record: Option<Record>,
    mac: Option<MacAddr>,
    _claim: Claim,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("device", &self.device)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The device's host address (`0000:01:10.0`; for a pool, the VF taken).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The VF's MAC, when it is a VF whose PF reports one.
    pub fn mac(&self) -> Option<MacAddr> {
        self.mac
    }

    /// The PF's interface and the VF's index on it, for a VF whose
    /// settings go through its PF.
    pub fn pf_vf(&self) -> Option<(&str, u32)> {
        let vf = self.record.as_ref()?.vf.as_ref()?;
        Some((vf.pf_netdev.as_str(), vf.index))
    }
}

impl Drop for Guard {
    /// Puts the device back as the journal says: the VF's settings as they
    /// were before the VM, then, for `managed`, its original driver (unbind
    /// from vfio-pci, probe with driver_override naming it: a VF is only
    /// probed with an override while `sriov_drivers_autoprobe` is 0, then
    /// clear the override). The record goes once all of it is done.
    fn drop(&mut self) {
        let Some(record) = &self.record else {
            return;
        };
        let d = &self.device;
        match journal::undo(record, &self.sysfs, &*self.vf_control) {
            Ok(()) => {
                self.journal.remove(d);
                match (&record.driver, record.rebound) {
                    (Some(drv), true) => info!("{d}: settings restored, given back to {drv}"),
                    _ => info!("{d}: settings restored"),
                }
            }
            Err(e) => warn!("{e} (kept in the journal: vfvm recover retries it)"),
        }
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

/// Checks the host device of `cfg` for the VM and plans its changes; see
/// the module documentation. Nothing on the host changes. For `pf=`, the
/// first free VF of the PF is claimed ([`take_from_pool`]) and checked.
pub fn check(cfg: &PassthruConfig, place: GuestPlace, host: &Host) -> Result<Plan, Error> {
    match &cfg.host {
        HostDevice::Device(a) => check_device(cfg, a.to_string(), None, place, host),
        HostDevice::Pool { pf, .. } => {
            let claim = take_from_pool(pf, cfg.managed, place.vm, host)?;
            check_device(cfg, claim.device().to_string(), Some(claim), place, host)
        }
    }
}

/// Claims the first free VF of `pf`: one bound to vfio-pci (with
/// `managed`, any VF) that no VM holds. The claim is atomic, so VMs that
/// start at the same moment get different VFs.
pub fn take_from_pool(pf: &PfDevice, managed: bool, vm: &str, host: &Host) -> Result<Claim, Error> {
    let sysfs = &host.sysfs;
    let pf_addr = match pf {
        PfDevice::Netdev(n) => sysfs.netdev_device(n).ok_or(Error::NoSuchPf(
            "no network interface of that name with a PCI device (see ip link)",
        ))?,
        PfDevice::Pci(a) => a.to_string(),
    };
    let vfs = sysfs.virtfns(&pf_addr);
    if vfs.is_empty() {
        return Err(Error::NoSuchPf(
            "the PF has no VFs (create them: vfvm iov create -f FILE)",
        ));
    }
    let mut others = Vec::new();
    let candidates: Vec<String> = vfs
        .into_iter()
        .filter_map(|(_, vf)| match sysfs.driver(&vf) {
            Some(d) if d == VFIO_PCI => Some(vf),
            _ if managed => Some(vf),
            d => {
                let d = d.unwrap_or_else(|| "no driver".into());
                others.push(format!("{vf} is on {d}"));
                None
            }
        })
        .collect();
    match claim::claim_first_free(&host.lock_dir, &candidates, vm) {
        Ok(c) => {
            info!("pf={pf}: took VF {} for VM {vm}", c.device());
            Ok(c)
        }
        Err(held) => {
            let mut fix = Vec::new();
            if !held.is_empty() {
                fix.push("stop a VM that holds one");
            }
            if !others.is_empty() {
                fix.push("add `managed` to take VFs on host drivers");
            }
            fix.push("create more with vfvm iov");
            let taken: Vec<String> = held
                .iter()
                .map(|(vf, h)| format!("{vf} is held by {h}"))
                .chain(others)
                .collect();
            Err(Error::NoFreeVf {
                taken: taken.join(", "),
                fix: format!("to get one: {}", fix.join(", or ")),
            })
        }
    }
}

fn check_device(
    cfg: &PassthruConfig,
    device: String,
    claim: Option<Claim>,
    place: GuestPlace,
    host: &Host,
) -> Result<Plan, Error> {
    let pooled = claim.is_some();
    let sysfs = &host.sysfs;
    let d = || device.clone();

    if !sysfs.iommu_enabled() {
        return Err(Error::NoIommu { device: d() });
    }
    if sysfs.unsafe_interrupts_allowed() {
        return Err(Error::UnsafeInterrupts { device: d() });
    }
    if !sysfs.exists(&device) {
        return Err(Error::NotFound { device: d() });
    }
    let group = sysfs
        .iommu_group(&device)
        .ok_or_else(|| Error::NoIommu { device: d() })?;
    let pf = sysfs.physfn(&device);
    let given = cfg.vf.first_given();
    if let (None, Some(setting)) = (&pf, given) {
        return Err(Error::NotAVf {
            device: d(),
            setting,
        });
    }
    let vf = match &pf {
        Some(pf) => match (sysfs.netdev(pf), sysfs.vf_index(pf, &device)) {
            (Some(netdev), Some(index)) => Some((netdev, index)),
            _ if given.is_some() => {
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
    let binding = match sysfs.driver(&device) {
        Some(drv) if drv == VFIO_PCI => Binding::Vfio,
        Some(drv) => Binding::Driver(drv),
        None => Binding::Unbound,
    };
    if binding != Binding::Vfio && !cfg.managed {
        let driver = match &binding {
            Binding::Driver(drv) => Some(drv.as_str()),
            _ => None,
        };
        return Err(Error::WrongDriver {
            device: d(),
            driver: binding.driver_name().to_string(),
            commands: rebind_commands(&device, driver),
        });
    }
    let members = sysfs.group_members(group).map_err(|source| Error::Sysfs {
        device: d(),
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
    let vf = match vf {
        Some((pf_netdev, index)) => {
            let before =
                host.vf_control
                    .get(&pf_netdev, index)
                    .map_err(|source| Error::Netlink {
                        device: d(),
                        pf: pf_netdev.clone(),
                        vf: index,
                        source,
                    })?;
            Some(plan_vf(cfg, place, pooled, pf_netdev, index, before))
        }
        None => None,
    };
    let claim = match claim {
        Some(c) => c,
        None => claim::claim(&host.lock_dir, &device, place.vm)?,
    };
    Ok(Plan {
        device,
        vm: place.vm.to_string(),
        sysfs: sysfs.clone(),
        journal: Journal::new(&host.lock_dir),
        binding,
        vf,
        claim,
    })
}

/// The VF's MAC: `mac=`, else the PF's if it has one, else the stable one.
/// A VF from a pool always gets the stable one (without `mac=`): the VM
/// keeps its MAC whichever VF it gets.
fn plan_vf(
    cfg: &PassthruConfig,
    place: GuestPlace,
    pooled: bool,
    pf_netdev: String,
    index: u32,
    before: VfSettings,
) -> PlannedVf {
    let mac = cfg
        .vf
        .mac
        .or(before.mac.filter(|m| !m.is_zero() && !pooled))
        .unwrap_or_else(|| MacAddr::new(stable_mac(place.vm, place.slot, place.function)));
    let change = VfSettings {
        // Always set, even when unchanged: only a MAC the PF set
        // administratively is taken by the VF's driver; otherwise the
        // guest's driver picks a random one at every boot.
        mac: Some(mac),
        ..cfg.vf.changes_from(&before)
    };
    PlannedVf {
        pf_netdev,
        index,
        before,
        change,
        mac,
    }
}

impl Plan {
    /// The device's sysfs directory, for `VfioPciDevice::new`.
    pub fn sysfs_path(&self) -> PathBuf {
        self.sysfs.device_dir(&self.device)
    }

    /// Makes the planned host changes; see the module documentation. On a
    /// failure, what was changed is undone by the dropped guard.
    pub fn apply(self, vf_control: Arc<dyn VfControl + Send + Sync>) -> Result<Guard, Error> {
        let Plan {
            device,
            vm,
            sysfs,
            journal,
            binding,
            vf,
            claim,
        } = self;
        let rebound = binding != Binding::Vfio;
        let record = (rebound || vf.is_some()).then(|| Record {
            device: device.clone(),
            vm,
            pid: std::process::id(),
            rebound,
            driver: match &binding {
                Binding::Driver(d) => Some(d.clone()),
                Binding::Vfio | Binding::Unbound => None,
            },
            vf: vf.as_ref().map(|v| VfBefore {
                pf_netdev: v.pf_netdev.clone(),
                index: v.index,
                settings: v.before,
            }),
        });
        if let Some(r) = &record {
            // Before the first change: a vfvm killed from here on leaves
            // what to undo.
            journal.write(r).map_err(|source| Error::Journal {
                device: device.clone(),
                source,
            })?;
        }
        // From here on the guard puts back whatever was changed if a step fails.
        let guard = Guard {
            device: device.clone(),
            sysfs: sysfs.clone(),
            journal,
            vf_control: vf_control.clone(),
            record,
            mac: vf.as_ref().map(|v| v.mac),
            _claim: claim,
        };
        let (d, s) = (&device, &sysfs);
        let sysfs_err = |source| Error::Sysfs {
            device: d.clone(),
            source,
        };
        if rebound {
            s.set_driver_override(d, Some(VFIO_PCI))
                .map_err(sysfs_err)?;
            if let Binding::Driver(drv) = &binding {
                s.unbind(d, drv).map_err(sysfs_err)?;
            }
            s.probe(d).map_err(sysfs_err)?;
            info!("{d}: bound to vfio-pci (was {})", binding.driver_name());
        }
        if let Some(vf) = &vf {
            vf_control
                .set(&vf.pf_netdev, vf.index, &vf.change)
                .map_err(|source| Error::Netlink {
                    device: d.clone(),
                    pf: vf.pf_netdev.clone(),
                    vf: vf.index,
                    source,
                })?;
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::pci::fake::FakeSys;
    use crate::host::vf::fake::FakeVf;

    const PF: &str = "0000:01:00.0";
    const VF: &str = "0000:01:10.0";

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
                Some(("mac", m)) => c.vf.mac = Some(m.parse().unwrap()),
                Some(("vlan", v)) => c.vf.vlan = Some(v.parse().unwrap()),
                Some(("spoofchk", v)) => c.vf.spoofchk = Some(v == "on"),
                Some(("trust", v)) => c.vf.trust = Some(v == "on"),
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

    fn host<'a>(f: &FakeSys, vf: &'a FakeVf) -> Host<'a> {
        Host {
            sysfs: Sysfs::new(&f.root),
            vf_control: vf,
            lock_dir: f.root.join("run/vfvm"),
        }
    }

    fn run(f: &FakeSys, vf: &Arc<FakeVf>, c: &str) -> Result<Guard, Error> {
        check(&cfg(c), PLACE, &host(f, vf))?.apply(vf.clone())
    }

    const MAC1: MacAddr = MacAddr::new([2, 0, 0, 0, 0, 1]);

    fn err(f: &FakeSys, vf: &Arc<FakeVf>, c: &str) -> String {
        run(f, vf, c).unwrap_err().to_string()
    }

    #[test]
    fn ready_vf_gets_its_settings_and_keeps_its_mac_administratively() {
        let f = tree(Some("vfio-pci"));
        let vf = Arc::new(FakeVf::default());
        vf.state.lock().unwrap().mac = Some(MAC1);
        let g = run(&f, &vf, "vlan=5,spoofchk=on,trust=off").unwrap();
        assert_eq!(g.mac().map(|m| m.octets()), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(g.device(), VF);
        let sets = vf.sets.lock().unwrap();
        assert_eq!(sets.len(), 1);
        let (pf, index, change) = &sets[0];
        assert_eq!((pf.as_str(), *index), ("eth0", 0));
        assert_eq!(
            *change,
            VfSettings {
                // Set again so that it is administratively set.
                mac: Some(MAC1),
                vlan: Some(5),
                spoofchk: Some(true),
                trust: Some(false),
                ..VfSettings::default()
            }
        );
    }

    #[test]
    fn zero_mac_gets_the_stable_one_and_mac_option_wins() {
        let f = tree(Some("vfio-pci"));
        let vf = Arc::new(FakeVf::default());
        let g = run(&f, &vf, "").unwrap();
        let stable = stable_mac("vm1", 5, 0);
        assert_eq!(g.mac().map(|m| m.octets()), Some(stable));
        assert_eq!(vf.sets.lock().unwrap()[0].2.mac, Some(MacAddr::new(stable)));
        drop(g);
        let vf = Arc::new(FakeVf::default());
        vf.state.lock().unwrap().mac = Some(MAC1);
        let g = run(&f, &vf, "mac=aa:88:44:00:02:01").unwrap();
        assert_eq!(
            vf.sets.lock().unwrap()[0].2.mac.map(|m| m.octets()),
            Some([0xaa, 0x88, 0x44, 0, 2, 1])
        );
        assert_eq!(
            g.mac().map(|m| m.octets()),
            Some([0xaa, 0x88, 0x44, 0, 2, 1])
        );
    }

    #[test]
    fn no_iommu() {
        let f = FakeSys::new();
        let e = err(&f, &Arc::new(FakeVf::default()), "");
        assert_eq!(e, format!("{VF}: no IOMMU: enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD)"));
        // Groups exist but the device has none.
        f.device("0000:00:02.0", (1, 1), Some(0))
            .device(VF, (1, 2), None);
        assert!(err(&f, &Arc::new(FakeVf::default()), "").contains("no IOMMU"));
    }

    #[test]
    fn unsafe_interrupts_are_refused() {
        let f = tree(Some("vfio-pci"));
        f.unsafe_interrupts("N");
        run(&f, &Arc::new(FakeVf::default()), "").unwrap();
        f.unsafe_interrupts("Y");
        let e = err(&f, &Arc::new(FakeVf::default()), "");
        assert!(
            e.starts_with(&format!(
                "{VF}: vfio_iommu_type1.allow_unsafe_interrupts is on"
            )),
            "{e}"
        );
        assert!(e.contains("set it to N"), "{e}");
    }

    #[test]
    fn not_found() {
        let f = FakeSys::new();
        f.device("0000:00:02.0", (1, 1), Some(0));
        let e = err(&f, &Arc::new(FakeVf::default()), "");
        assert_eq!(
            e,
            format!("{VF}: no such PCI device on this host (see ls /sys/bus/pci/devices)")
        );
    }

    #[test]
    fn vf_settings_need_a_vf() {
        let f = FakeSys::new();
        f.device(VF, (0x8086, 0x10c9), Some(3)).bind(VF, "vfio-pci");
        let e = err(&f, &Arc::new(FakeVf::default()), "vlan=5");
        assert!(
            e.starts_with(&format!(
                "{VF}: not an SR-IOV VF (no physfn link), so vlan= cannot"
            )),
            "{e}"
        );
        assert!(
            run(&f, &Arc::new(FakeVf::default()), "").is_ok(),
            "a plain device needs none"
        );
    }

    #[test]
    fn wrong_driver_without_managed_names_the_commands() {
        let f = tree(Some("igbvf"));
        let vf = Arc::new(FakeVf::default());
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
        assert!(vf.sets.lock().unwrap().is_empty(), "nothing changed");
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
        let vf = Arc::new(FakeVf::default());
        let e = err(&f, &vf, "");
        assert_eq!(e, format!("{VF}: IOMMU group 11 is not viable: 0000:01:10.1 is bound to e1000e (unbind them or bind them to vfio-pci)"));
        assert!(vf.sets.lock().unwrap().is_empty());
    }

    #[test]
    fn second_vm_finds_the_device_locked() {
        let f = tree(Some("vfio-pci"));
        let vf = Arc::new(FakeVf::default());
        vf.state.lock().unwrap().mac = Some(MAC1);
        let first = run(&f, &vf, "").unwrap();
        let e = err(&f, &vf, "");
        assert!(
            e.starts_with(&format!(
                "{VF}: in use by VM vm1 (pid {}) (",
                std::process::id()
            )),
            "{e}"
        );
        drop(first);
        assert!(run(&f, &vf, "").is_ok());
    }

    /// A PF with VFs 0 and 1 on vfio-pci and VF 2 on igbvf, eth0 behind it.
    fn pool_tree() -> FakeSys {
        let f = tree(Some("vfio-pci"));
        f.device("0000:01:10.2", (0x8086, 0x10ca), Some(12))
            .device("0000:01:10.4", (0x8086, 0x10ca), Some(13))
            .vf(PF, 1, "0000:01:10.2")
            .vf(PF, 2, "0000:01:10.4")
            .bind("0000:01:10.2", "vfio-pci")
            .bind("0000:01:10.4", "igbvf");
        std::fs::create_dir_all(f.root.join("class/net/eth0")).unwrap();
        std::os::unix::fs::symlink(
            f.root.join("bus/pci/devices").join(PF),
            f.root.join("class/net/eth0/device"),
        )
        .unwrap();
        f
    }

    fn pool(opts: &str) -> PassthruConfig {
        let s: crate::config::PciSlotConfig = format!("5,passthru,pf=eth0{opts}").parse().unwrap();
        match s.device {
            crate::config::DeviceConfig::Passthru(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pools_give_each_vm_its_own_vf_and_the_stable_mac() {
        let f = pool_tree();
        let vf = Arc::new(FakeVf::default());
        // The VF has a MAC of its own: a pool VM still gets its stable one.
        *vf.state.lock().unwrap() = VfSettings {
            mac: Some(MAC1),
            ..VfSettings::default()
        };
        let place = |vm| GuestPlace {
            vm,
            slot: 5,
            function: 0,
        };
        let a = check(&pool(""), place("a"), &host(&f, &vf)).unwrap();
        let b = check(&pool(""), place("b"), &host(&f, &vf)).unwrap();
        assert_eq!((a.device(), b.device()), (VF, "0000:01:10.2"));
        let e = check(&pool(""), place("c"), &host(&f, &vf))
            .unwrap_err()
            .to_string();
        let pid = std::process::id();
        assert_eq!(e, format!("no free VF: {VF} is held by VM a (pid {pid}), 0000:01:10.2 is held by VM b (pid {pid}), 0000:01:10.4 is on igbvf (to get one: stop a VM that holds one, or add `managed` to take VFs on host drivers, or create more with vfvm iov)"));
        // With managed, the VF on igbvf is taken too.
        let c = check(&pool(",managed"), place("c"), &host(&f, &vf)).unwrap();
        assert_eq!(c.device(), "0000:01:10.4");
        drop(c);
        let g = a.apply(vf.clone()).unwrap();
        assert_eq!(g.mac(), Some(MacAddr::new(stable_mac("a", 5, 0))));
        drop((g, b));
        let e = check(&pool(""), place("d"), &host(&f, &vf))
            .unwrap()
            .device()
            .to_string();
        assert_eq!(e, VF, "released VFs are free again");
        let missing = PassthruConfig::with_host(HostDevice::Pool {
            pf: PfDevice::Netdev("eth7".into()),
            taken: None,
        });
        assert_eq!(
            check(&missing, place("e"), &host(&f, &vf))
                .unwrap_err()
                .to_string(),
            "no network interface of that name with a PCI device (see ip link)"
        );
    }

    #[test]
    fn release_puts_the_vf_back_and_removes_the_record() {
        let f = tree(Some("vfio-pci"));
        let vf = Arc::new(FakeVf::default());
        let clean = VfSettings {
            mac: Some(MacAddr::new([0; 6])),
            vlan: Some(0),
            spoofchk: Some(true),
            trust: Some(false),
            ..VfSettings::default()
        };
        *vf.state.lock().unwrap() = clean;
        let g = run(
            &f,
            &vf,
            "mac=aa:88:44:00:02:01,vlan=42,trust=on,spoofchk=off",
        )
        .unwrap();
        let journal = Journal::new(&f.root.join("run/vfvm"));
        let records = journal.records();
        assert_eq!(records.len(), 1);
        let record = records[0].1.clone().unwrap();
        assert_eq!((record.vm.as_str(), record.rebound), ("vm1", false));
        assert_eq!(record.vf.unwrap().settings, clean);
        drop(g);
        let sets = vf.sets.lock().unwrap();
        assert_eq!(sets.len(), 2, "the VM's settings, then the ones before");
        assert_eq!(sets[1].2, clean);
        assert!(journal.records().is_empty());
    }

    #[test]
    fn managed_rebinds_and_restores() {
        let f = tree(Some("igbvf"));
        let vf = Arc::new(FakeVf::default());
        vf.state.lock().unwrap().mac = Some(MAC1);
        let over = format!("bus/pci/devices/{VF}/driver_override");
        let g = run(&f, &vf, "managed").unwrap();
        assert_eq!(f.read(&over), "vfio-pci");
        assert_eq!(f.read("bus/pci/drivers/igbvf/unbind"), VF);
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
        // The fake kernel binds it to vfio-pci; the guard undoes all of it.
        f.bind(VF, "vfio-pci").write("bus/pci/drivers_probe", "");
        drop(g);
        assert_eq!(f.read(&over), "\n");
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), VF);
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
    }

    #[test]
    fn check_changes_nothing_but_holds_the_lock() {
        let f = tree(Some("igbvf"));
        let vf = Arc::new(FakeVf::default());
        vf.state.lock().unwrap().mac = Some(MAC1);
        let plan = check(&cfg("managed,vlan=5"), PLACE, &host(&f, &vf)).unwrap();
        assert_eq!(plan.sysfs_path(), f.root.join("bus/pci/devices").join(VF));
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "(null)\n"
        );
        assert_eq!(f.read("bus/pci/drivers/igbvf/unbind"), "");
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert!(vf.sets.lock().unwrap().is_empty());
        let e = check(&cfg("managed"), PLACE, &host(&f, &vf)).unwrap_err();
        assert!(matches!(e, Error::Claim(claim::Error::InUse { .. })), "{e}");
        drop(plan);
        assert!(check(&cfg("managed"), PLACE, &host(&f, &vf)).is_ok());
    }

    #[test]
    fn managed_unbound_device_is_left_unbound() {
        let f = tree(None);
        let vf = Arc::new(FakeVf::default());
        vf.state.lock().unwrap().mac = Some(MAC1);
        let e = err(&f, &vf, "");
        assert!(
            e.contains("bound to no driver") && !e.contains("unbind"),
            "{e}"
        );
        let g = run(&f, &vf, "managed").unwrap();
        f.bind(VF, "vfio-pci").write("bus/pci/drivers_probe", "");
        drop(g);
        assert_eq!(f.read("bus/pci/drivers_probe"), "", "not reprobed");
    }

    #[test]
    fn pf_refusal_is_reported_with_the_pf() {
        let f = tree(Some("vfio-pci"));
        let vf = Arc::new(FakeVf {
            refuse: true,
            ..FakeVf::default()
        });
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
        let e = err(&f, &Arc::new(FakeVf::default()), "vlan=3");
        assert_eq!(e, format!("{VF}: its PF {PF} has no network interface, so VF settings cannot be applied: bind the PF to its NIC driver"));
        let g = run(&f, &Arc::new(FakeVf::default()), "").unwrap();
        assert_eq!(g.mac(), None);
    }
}
