//! The host side of SR-IOV passthrough: before the guest starts, check the
//! host can give the VM the device, apply VF settings through the PF, and
//! (for `managed`) bind it to vfio-pci; afterwards, give it back.
//!
//! - [`sysfs`]: devices, drivers, IOMMU groups, PF/VF links;
//! - [`netlink`]: VF MAC/VLAN/spoofchk/trust through the PF (rtnetlink);
//! - [`mac`]: stable MACs for VFs without `mac=`;
//! - [`prepare`](prepare::prepare): the checks and changes, returning a
//!   [`PassthruGuard`] whose drop restores the driver binding.

pub mod mac;
pub mod netlink;
pub mod prepare;
pub mod sysfs;
