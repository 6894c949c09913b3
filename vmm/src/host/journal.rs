//! What vfvm changed on the host, written down before it changes it, so it
//! can always be put back: at exit by the guard that made the change, and,
//! when a SIGKILL, the OOM killer or a power cut skipped that, by the next
//! `vfvm run`, `vfvm iov` or `vfvm recover` ([`recover`]).
//!
//! One record per device, `/run/vfvm/journal/DDDD:BB:SS.F.json`: its
//! original driver (when vfvm rebinds it) and its VF settings before the
//! VM (MAC, VLAN, spoof checking, trust). A record is written (and synced)
//! before the first change and removed once everything is restored. A
//! record whose device's claim ([`super::claim`]) can be taken belongs to
//! a vfvm that is gone: [`recover`] restores it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::warn;
use serde::{Deserialize, Serialize};

use super::claim;
use super::pci::Sysfs;
use super::vf::{VfControl, VfSettings};

const VFIO_PCI: &str = "vfio-pci";

/// A VF's settings before vfvm changed them, and where to set them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfBefore {
    /// The PF's network interface.
    pub pf_netdev: String,
    /// The VF's index on the PF.
    pub index: u32,
    /// Its settings as the PF reported them.
    pub settings: VfSettings,
}

/// What to undo for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The device (`DDDD:BB:SS.F`).
    pub device: String,
    /// Who changed it: the VM's name.
    pub vm: String,
    /// Its process.
    pub pid: u32,
    /// Whether vfvm moves the device to vfio-pci (and back).
    pub rebound: bool,
    /// The driver it had before (`None`: none), given back when `rebound`.
    pub driver: Option<String>,
    /// Its VF settings before, put back at release.
    pub vf: Option<VfBefore>,
}

/// The journal directory.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

fn io_context(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
}

impl Journal {
    /// The journal under `run_dir` (normally `/run/vfvm`).
    pub fn new(run_dir: &Path) -> Self {
        Journal {
            dir: run_dir.join("journal"),
        }
    }

    fn path(&self, device: &str) -> PathBuf {
        self.dir.join(format!("{device}.json"))
    }

    /// Writes `record` durably (a new file, synced, renamed into place).
    pub fn write(&self, record: &Record) -> io::Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| io_context("create", &self.dir, e))?;
        let path = self.path(&record.device);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(record).map_err(io::Error::other)?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| io_context("write", &path, e))
    }

    /// Removes `device`'s record (everything is restored).
    pub fn remove(&self, device: &str) {
        let path = self.path(device);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!("cannot remove {}: {e}", path.display());
            }
        }
    }

    /// Every record, with the file it came from.
    pub fn records(&self) -> Vec<(PathBuf, Result<Record, String>)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let rec = fs::read_to_string(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
                (p, rec)
            })
            .collect()
    }
}

/// The settings that put a VF back as it was: each one the PF reported.
fn settings_to_restore(before: &VfSettings) -> VfSettings {
    VfSettings {
        // Keep only what `-s` can change; the rest vfvm never touches.
        mac: before.mac,
        vlan: before.vlan,
        spoofchk: before.spoofchk,
        trust: before.trust,
        ..VfSettings::default()
    }
}

/// Puts the device of `record` back: VF settings first (while no host
/// driver has it), then its driver. Each step checks the current state, so
/// undoing what was only half done, or twice, is harmless.
pub fn undo(record: &Record, sysfs: &Sysfs, vf_control: &dyn VfControl) -> Result<(), String> {
    let d = &record.device;
    if let Some(vf) = &record.vf {
        let restore = settings_to_restore(&vf.settings);
        let result = vf_control
            .set(&vf.pf_netdev, vf.index, &restore)
            .or_else(|e| {
                // Some drivers refuse an all-zero MAC (none assigned): then
                // everything but the MAC.
                if restore.mac.is_some_and(|m| m.is_zero()) {
                    vf_control.set(
                        &vf.pf_netdev,
                        vf.index,
                        &VfSettings {
                            mac: None,
                            ..restore
                        },
                    )
                } else {
                    Err(e)
                }
            });
        result.map_err(|e| {
            format!(
                "{d}: cannot restore the settings of VF {} of {}: {e}",
                vf.index, vf.pf_netdev
            )
        })?;
    }
    if record.rebound && sysfs.exists(d) {
        let current = sysfs.driver(d);
        let back = record.driver.as_deref();
        let err = |e: super::pci::Error| {
            format!(
                "{d}: cannot give it back to {}: {e}",
                back.unwrap_or("no driver")
            )
        };
        if current.as_deref() == Some(VFIO_PCI) {
            sysfs.unbind(d, VFIO_PCI).map_err(err)?;
        }
        if let Some(drv) = back.filter(|b| current.as_deref() != Some(*b)) {
            sysfs.set_driver_override(d, Some(drv)).map_err(err)?;
            sysfs.probe(d).map_err(err)?;
        }
        sysfs.set_driver_override(d, None).map_err(err)?;
    }
    Ok(())
}

/// One record [`recover`] handled.
#[derive(Debug)]
pub struct Recovered {
    /// The device.
    pub device: String,
    /// The VM that had changed it.
    pub vm: String,
    /// Its (gone) process.
    pub pid: u32,
    /// Restored, or why not (the record is kept for the next try).
    pub result: Result<(), String>,
}

/// Restores every device whose record belongs to a vfvm that is gone (its
/// claim can be taken); records of running VMs are left alone.
pub fn recover(run_dir: &Path, sysfs: &Sysfs, vf_control: &dyn VfControl) -> Vec<Recovered> {
    let journal = Journal::new(run_dir);
    let mut out = Vec::new();
    for (path, record) in journal.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                warn!(
                    "{}: unreadable journal record, left alone: {e}",
                    path.display()
                );
                continue;
            }
        };
        // Held by a live vfvm: its guard will restore it.
        let Ok(_claim) = claim::claim(run_dir, &record.device, "recovery") else {
            continue;
        };
        let result = undo(&record, sysfs, vf_control);
        // The caller reports what was restored.
        match &result {
            Ok(()) => journal.remove(&record.device),
            Err(e) => warn!("{e} (kept in {})", path.display()),
        }
        out.push(Recovered {
            device: record.device,
            vm: record.vm,
            pid: record.pid,
            result,
        });
    }
    out
}

/// [`recover`] on the real host (`/sys`, rtnetlink, `/run/vfvm`); does
/// nothing, not even open a socket, when there is no record.
pub fn recover_host() -> Vec<Recovered> {
    let run_dir = Path::new(claim::RUN_DIR);
    if Journal::new(run_dir).records().is_empty() {
        return Vec::new();
    }
    match super::netlink::Rtnetlink::new() {
        Ok(netlink) => recover(run_dir, &Sysfs::host(), &netlink),
        Err(e) => {
            warn!(
                "cannot restore the host as the journal in {} says: {e}",
                run_dir.display()
            );
            Vec::new()
        }
    }
}

/// [`recover_host`] at the start of `vfvm run` and `vfvm iov`, logging
/// what it restored.
pub fn repair_at_start() {
    for r in recover_host() {
        match &r.result {
            Ok(()) => log::info!(
                "{}: restored what VM {} (pid {}, gone) had changed",
                r.device,
                r.vm,
                r.pid
            ),
            Err(e) => warn!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MacAddr;
    use crate::host::pci::fake::FakeSys;
    use crate::host::vf::fake::FakeVf;

    const PF: &str = "0000:01:00.0";
    const VF: &str = "0000:01:10.0";

    fn tree() -> FakeSys {
        let f = FakeSys::new();
        f.device(PF, (0x8086, 0x10c9), Some(10))
            .device(VF, (0x8086, 0x10ca), Some(11))
            .bind(PF, "igb")
            .bind(VF, "vfio-pci")
            .vf(PF, 0, VF)
            .netdev(PF, "eth0");
        f
    }

    fn record() -> Record {
        Record {
            device: VF.into(),
            vm: "vm1".into(),
            pid: 4242,
            rebound: true,
            driver: Some("igbvf".into()),
            vf: Some(VfBefore {
                pf_netdev: "eth0".into(),
                index: 0,
                settings: VfSettings {
                    mac: Some(MacAddr::new([0; 6])),
                    vlan: Some(0),
                    spoofchk: Some(true),
                    trust: Some(false),
                    ..VfSettings::default()
                },
            }),
        }
    }

    #[test]
    fn records_round_trip_and_are_removed() {
        let d = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/vfvm-journal-").unwrap();
        let j = Journal::new(d.as_path());
        assert!(j.records().is_empty());
        j.write(&record()).unwrap();
        let got = j.records();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, d.as_path().join("journal/0000:01:10.0.json"));
        assert_eq!(got[0].1, Ok(record()));
        j.remove(VF);
        assert!(j.records().is_empty());
    }

    #[test]
    fn undo_restores_settings_then_the_driver() {
        let f = tree();
        let vf = FakeVf::default();
        let sysfs = Sysfs::new(&f.root);
        undo(&record(), &sysfs, &vf).unwrap();
        assert_eq!(
            vf.sets
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.2)
                .collect::<Vec<_>>(),
            [record().vf.unwrap().settings]
        );
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), VF);
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "\n"
        );
        // Already back on its driver (killed before the rebind): nothing
        // is unbound or probed, the override is cleared.
        f.bind(VF, "igbvf").write("bus/pci/drivers_probe", "");
        f.write("bus/pci/drivers/vfio-pci/unbind", "");
        undo(&record(), &sysfs, &vf).unwrap();
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "");
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
    }

    #[test]
    fn a_refused_zero_mac_still_restores_the_rest() {
        let f = tree();
        let vf = FakeVf {
            refuse_zero_mac: true,
            ..FakeVf::default()
        };
        undo(&record(), &Sysfs::new(&f.root), &vf).unwrap();
        let sets = vf.sets.lock().unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(
            (sets[0].2.mac, sets[0].2.vlan, sets[0].2.trust),
            (None, Some(0), Some(false))
        );
    }

    #[test]
    fn recover_skips_live_holders_and_restores_the_rest() {
        let f = tree();
        let run = f.root.join("run/vfvm");
        let j = Journal::new(&run);
        j.write(&record()).unwrap();
        let vf = FakeVf::default();
        let sysfs = Sysfs::new(&f.root);
        let held = claim::claim(&run, VF, "vm1").unwrap();
        assert!(recover(&run, &sysfs, &vf).is_empty());
        assert_eq!(j.records().len(), 1, "a live VM's record stays");
        drop(held);
        let done = recover(&run, &sysfs, &vf);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].device.as_str(), done[0].vm.as_str(), done[0].pid),
            (VF, "vm1", 4242)
        );
        assert!(done[0].result.is_ok());
        assert!(j.records().is_empty());
        assert_eq!(vf.sets.lock().unwrap().len(), 1);
    }
}
