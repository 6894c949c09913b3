//! A VF's settings as its PF sees them, and the one interface through which
//! vfvm reads and changes them ([`VfControl`], rtnetlink on a real host).

use super::netlink;
pub use crate::config::{VfLinkState, VfSettings};

/// One VF as its PF reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfReport {
    /// The VF's index on the PF (N of `virtfnN`).
    pub index: u32,
    /// Its settings.
    pub settings: VfSettings,
    /// Its traffic as the PF counts it (IFLA_VF_STATS), if reported.
    pub stats: Option<VfStats>,
}

/// PF drivers that do not implement `ndo_get_vf_stats` (Linux 6.12): the
/// kernel reports IFLA_VF_STATS for their VFs as zeros, which vfvm does
/// not pass off as counts. igb (82576, i350) is one; i40e, ice, ixgbe and
/// mlx5_core count.
const DRIVERS_WITHOUT_VF_STATS: &[&str] = &["igb"];

/// Whether a PF bound to `driver` counts its VFs' traffic.
pub fn counts_vf_traffic(driver: &str) -> bool {
    !DRIVERS_WITHOUT_VF_STATS.contains(&driver)
}

/// A VF's traffic as its PF counts it, with no agent in the guest
/// (IFLA_VF_STATS; since the PF's driver started counting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfStats {
    /// Packets the VF received.
    pub rx_packets: u64,
    /// Packets the VF sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Broadcast packets received.
    pub broadcast: u64,
    /// Multicast packets received.
    pub multicast: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

impl VfStats {
    /// (name, value) of every counter, in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("rx_packets", self.rx_packets),
            ("tx_packets", self.tx_packets),
            ("rx_bytes", self.rx_bytes),
            ("tx_bytes", self.tx_bytes),
            ("broadcast", self.broadcast),
            ("multicast", self.multicast),
            ("rx_dropped", self.rx_dropped),
            ("tx_dropped", self.tx_dropped),
        ]
    }
}

/// Reads and changes VF settings through the PF's network interface;
/// implemented over rtnetlink ([`netlink::Rtnetlink`]), faked in tests.
pub trait VfControl {
    /// Every VF that PF interface `pf` reports, in its order.
    fn list(&self, pf: &str) -> Result<Vec<VfReport>, netlink::Error>;

    /// VF `vf`'s settings on PF interface `pf`.
    fn get(&self, pf: &str, vf: u32) -> Result<VfSettings, netlink::Error> {
        self.list(pf)?
            .into_iter()
            .find(|r| r.index == vf)
            .map(|r| r.settings)
            .ok_or(netlink::Error::NoSuchVf(vf))
    }

    /// Applies the given settings of `change` to VF `vf` of PF interface `pf`.
    fn set(&self, pf: &str, vf: u32, change: &VfSettings) -> Result<(), netlink::Error>;
}

/// A VfControl for tests.
#[cfg(test)]
pub mod fake {
    use std::io;
    use std::sync::Mutex;

    use super::{VfControl, VfReport, VfSettings};
    use crate::host::netlink;

    /// Three VFs that all report `state`; every set is recorded in `sets`.
    #[derive(Default)]
    pub struct FakeVf {
        pub state: Mutex<VfSettings>,
        pub sets: Mutex<Vec<(String, u32, VfSettings)>>,
        /// Refuse every set (EPERM).
        pub refuse: bool,
        /// Refuse an all-zero MAC (EINVAL), as some drivers do.
        pub refuse_zero_mac: bool,
    }

    impl VfControl for FakeVf {
        fn list(&self, _pf: &str) -> Result<Vec<VfReport>, netlink::Error> {
            let settings = *self.state.lock().unwrap();
            Ok((0..3)
                .map(|index| VfReport {
                    index,
                    settings,
                    ..VfReport::default()
                })
                .collect())
        }

        fn set(&self, pf: &str, vf: u32, change: &VfSettings) -> Result<(), netlink::Error> {
            let zero_mac = change.mac.is_some_and(|m| m.is_zero());
            let errno = match (self.refuse, self.refuse_zero_mac && zero_mac) {
                (true, _) => Some(libc::EPERM),
                (_, true) => Some(libc::EINVAL),
                _ => None,
            };
            if let Some(errno) = errno {
                return Err(netlink::Error::Kernel(io::Error::from_raw_os_error(errno)));
            }
            self.sets
                .lock()
                .unwrap()
                .push((pf.to_string(), vf, *change));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MacAddr;

    #[test]
    fn changes_are_only_what_differs() {
        let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
        let current = VfSettings {
            mac: Some(mac),
            vlan: Some(0),
            spoofchk: Some(true),
            ..VfSettings::default()
        };
        let want = VfSettings {
            mac: Some(mac),
            vlan: Some(5),
            spoofchk: Some(true),
            trust: Some(false),
            ..VfSettings::default()
        };
        assert_eq!(
            want.changes_from(&current),
            VfSettings {
                vlan: Some(5),
                trust: Some(false),
                ..VfSettings::default()
            }
        );
        assert_eq!(current.changes_from(&current), VfSettings::default());
        assert_eq!(want.first_given(), Some("mac"));
        assert_eq!(VfSettings::default().first_given(), None);
    }
}
