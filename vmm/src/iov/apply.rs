//! Carrying out a [`Plan`] through [`crate::host`], and deleting a PF's
//! VFs. Each VF is claimed ([`crate::host::claim`]) while it changes, so a
//! VM starting meanwhile cannot take it half set up.
//!
//! A create that stops half way (an error, a SIGKILL) leaves VFs that the
//! same `vfvm iov create` finishes: the plan only lists what differs.

use std::time::{Duration, Instant};

use log::warn;

use super::plan::{IovHost, Pf, Plan, Step, Use, VFIO_PCI};
use crate::host::claim::{self, Claim};
use crate::host::pci::Sysfs;

/// Who a VF's claim names while `vfvm iov` changes it.
const IOV_OWNER: &str = "vfvm-iov";

fn vf_addr(sysfs: &Sysfs, pf: &Pf, index: u16) -> Result<String, String> {
    sysfs
        .virtfns(&pf.addr)
        .into_iter()
        .find(|(i, _)| *i == u32::from(index))
        .map(|(_, a)| a)
        .ok_or_else(|| {
            format!(
                "{}: VF-{index} did not appear (no virtfn{index})",
                pf.name()
            )
        })
}

/// Waits (10 s at most) for the PF's link after VFs were created: an
/// enabled PF resets, and a VF MAC set while its link is down is lost.
fn wait_for_link(sysfs: &Sysfs, netdev: &str) {
    let dir = sysfs.netdev_dir(netdev);
    let up = std::fs::read_to_string(dir.join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & 1 != 0);
    if !up {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(dir.join("carrier")).is_ok_and(|c| c.trim() == "1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    warn!("{netdev}: no carrier 10 s after creating VFs; VF MACs may not reach the VFs");
}

fn bind(sysfs: &Sysfs, pf: &Pf, vf: &str, to: Use) -> Result<(), String> {
    let err = |e: crate::host::pci::Error| format!("{vf}: {e}");
    let driver = sysfs.driver(vf);
    match to {
        Use::Passthrough => {
            sysfs.set_driver_override(vf, Some(VFIO_PCI)).map_err(err)?;
            if let Some(d) = driver.as_deref().filter(|d| *d != VFIO_PCI) {
                sysfs.unbind(vf, d).map_err(err)?;
            }
            sysfs.probe(vf).map_err(err)?;
            if sysfs.driver(vf).as_deref() != Some(VFIO_PCI) {
                return Err(format!("{vf} did not bind to vfio-pci: load it (modprobe vfio-pci) and run vfvm iov create again"));
            }
        }
        Use::Host => {
            if driver.as_deref() == Some(VFIO_PCI) {
                sysfs.unbind(vf, VFIO_PCI).map_err(err)?;
            }
            sysfs.set_driver_override(vf, None).map_err(err)?;
            // With autoprobe off only a named driver binds a VF: let the
            // kernel pick its own driver for this one probe.
            sysfs.set_sriov_autoprobe(&pf.addr, true).map_err(err)?;
            let probed = sysfs.probe(vf).map_err(err);
            sysfs.set_sriov_autoprobe(&pf.addr, false).map_err(err)?;
            probed?;
            if sysfs.driver(vf).is_none() {
                warn!("{vf}: no host driver took it (is the VF driver, e.g. igbvf, loaded?)");
            }
        }
    }
    Ok(())
}

/// Makes the plan's changes, in order, calling `done` after each.
pub fn apply(plan: &Plan, host: &IovHost, done: &mut dyn FnMut(&Step)) -> Result<(), String> {
    let sysfs = &host.sysfs;
    let pf = &plan.pf;
    let netdev = pf.netdev.as_deref().unwrap_or(&pf.addr);
    let pf_err = |e: crate::host::pci::Error| format!("{}: {e}", pf.name());
    let mut claims: Vec<Claim> = Vec::new();
    let mut claimed = |addr: &str| -> Result<(), String> {
        if !claims.iter().any(|c| c.device() == addr) {
            claims.push(claim::claim(&host.run_dir, addr, IOV_OWNER).map_err(|e| e.to_string())?);
        }
        Ok(())
    };
    for step in &plan.steps {
        match step {
            Step::AutoprobeOff => sysfs.set_sriov_autoprobe(&pf.addr, false).map_err(pf_err)?,
            Step::CreateVfs(n) => {
                sysfs
                    .set_sriov_numvfs(&pf.addr, u32::from(*n))
                    .map_err(pf_err)?;
                wait_for_link(sysfs, netdev);
            }
            Step::Settings { index, change } => {
                let vf = vf_addr(sysfs, pf, *index)?;
                claimed(&vf)?;
                host.vf_control
                    .set(netdev, u32::from(*index), change)
                    .map_err(|e| format!("{vf} (VF-{index} of {netdev}): {e}"))?;
            }
            Step::Bind { index, to } => {
                let vf = vf_addr(sysfs, pf, *index)?;
                claimed(&vf)?;
                bind(sysfs, pf, &vf, *to)?;
            }
        }
        done(step);
    }
    Ok(())
}

/// Removes every VF of `pf` (none may be held by a VM) and turns the
/// kernel's driver autoprobe back on, its default.
pub fn delete(pf: &Pf, host: &IovHost) -> Result<(), String> {
    let sysfs = &host.sysfs;
    let vfs = sysfs.virtfns(&pf.addr);
    let mut claims = Vec::new();
    for (index, vf) in &vfs {
        match claim::claim(&host.run_dir, vf, IOV_OWNER) {
            Ok(c) => claims.push(c),
            Err(claim::Error::InUse { holder, .. }) => {
                return Err(format!(
                "{}: VF-{index} ({vf}) is in use by {holder}: stop it first; nothing was deleted",
                pf.name()
            ))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let pf_err = |e: crate::host::pci::Error| format!("{}: {e}", pf.name());
    if !vfs.is_empty() || pf.num_vfs != 0 {
        sysfs.set_sriov_numvfs(&pf.addr, 0).map_err(pf_err)?;
    }
    sysfs.set_sriov_autoprobe(&pf.addr, true).map_err(pf_err)?;
    Ok(())
}
