//! `vm.counters`: one list of [`Counter`]s from every source the VM has.
//!
//! - `vmm`: exits handled in userspace;
//! - each emulated device's [`Metrics`] under its id, its parts' under
//!   `ID/PART`: `blk@S:F` for each disk's requests, bytes, flushes, errors,
//!   interrupts, and `blk@S:F/qN` for each of its queues';
//! - `vf@S:F`: each VF's traffic as its PF counts it (IFLA_VF_STATS, read
//!   when asked: no agent in the guest), unless the PF's driver reports
//!   only zeros there (then `vm.info` says so);
//! - the emulated devices' MSI-X interrupts, under their own id:
//!   `msix_fired` in total and per vector (`vector` label).

use std::collections::BTreeMap;

use api::{Counter, VmCounters};
use devices::metrics::Metrics;

use super::VmView;
use crate::host::vf::VfReport;

/// Each PF's VF reports, or why it could not be read.
pub type PfReports = BTreeMap<String, Result<Vec<VfReport>, String>>;

/// The id of the device at `slot:function` for emulation `kind`.
pub fn device_id(kind: &str, slot: u8, function: u8) -> String {
    format!("{kind}@{slot}:{function}")
}

/// VF `index`'s report from its PF, if the PF answered and knows it.
pub fn report<'a>(reports: &'a PfReports, pf: &str, index: u32) -> Option<&'a VfReport> {
    reports
        .get(pf)?
        .as_ref()
        .ok()?
        .iter()
        .find(|r| r.index == index)
}

/// A device's counters under `id`, and those of its parts under
/// `id/PART` (a disk's queues: `blk@S:F/qN`).
fn device(out: &mut Vec<Counter>, id: &str, m: &dyn Metrics) {
    for (name, value) in m.counters() {
        out.push(Counter::new(id, name, value));
    }
    for (part, p) in m.parts() {
        device(out, &format!("{id}/{part}"), p);
    }
}

pub fn vm_counters(vm: &VmView, reports: &PfReports) -> VmCounters {
    let mut out = Vec::new();
    device(&mut out, "vmm", vm.counters.as_ref());
    for (id, metrics) in &vm.devices {
        device(&mut out, id, metrics.as_ref());
    }
    for vf in vm.vfs.iter().filter(|v| v.counted()) {
        let Some((pf, index)) = &vf.pf_vf else {
            continue;
        };
        let Some(stats) = report(reports, pf, *index).and_then(|r| r.stats) else {
            continue;
        };
        let id = device_id("vf", vf.slot, vf.function);
        for (name, value) in stats.fields() {
            out.push(Counter::new(&id, name, value));
        }
    }
    for (id, fired) in &vm.msix {
        let per_vector = fired.snapshot();
        out.push(Counter::new(id, "msix_fired", per_vector.iter().sum()));
        for (vector, &value) in per_vector.iter().enumerate() {
            let mut c = Counter::new(id, "msix_fired", value);
            c.labels.push(("vector".into(), vector.to_string()));
            out.push(c);
        }
    }
    VmCounters(out)
}
