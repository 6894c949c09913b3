//! What vfvm reads and changes on the host for a PCI function or VF, for
//! every user: a VM's passthrough ([`crate::passthru`]), VF pools and
//! `vfvm iov`.
//!
//! - [`pci`]: sysfs: functions, drivers, IOMMU groups, driver_override /
//!   bind / unbind / drivers_probe, sriov_numvfs / sriov_totalvfs,
//!   physfn / virtfnN, numa_node;
//! - [`vf`]: [`vf::VfSettings`] (MAC, VLAN, spoofchk, trust) and
//!   [`vf::VfControl`], reading and changing them through the PF;
//! - [`netlink`]: `VfControl` over rtnetlink;
//! - [`mac`]: stable MACs for VFs the user gave no `mac=`;
//! - [`claim`]: which VM holds which device (per-device lock and owner),
//!   the one place VF pools pick a free VF;
//! - [`journal`]: what vfvm changed, written before each change under
//!   /run/vfvm, undone at exit and repaired after a SIGKILL.

pub mod claim;
pub mod journal;
pub mod mac;
pub mod netlink;
pub mod pci;
pub mod vf;
