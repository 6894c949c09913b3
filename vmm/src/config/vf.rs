//! A VF's settings: what `-s passthru` and iovctl.conf ask of a VF, and
//! what its PF reports (the host side is `host::vf`).

use serde::{Deserialize, Serialize};

use super::MacAddr;

/// A VF's MAC, port VLAN, spoof checking and trust (what `-s` sets), and
/// the VLAN priority, rate limits and link state `vfvm iov` may set.
///
/// The same type says what the user asked for (`None`: leave the host's
/// setting alone), what the PF reports (`None`: the driver does not report
/// it) and what to change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfSettings {
    /// `mac=`: the VF's MAC address. As reported, all zeros: none assigned.
    pub mac: Option<MacAddr>,
    /// `vlan=`: the VF's port VLAN, 0..=4095; 0 is untagged.
    pub vlan: Option<u16>,
    /// `spoofchk=on|off`: the PF's MAC anti-spoof check for the VF.
    pub spoofchk: Option<bool>,
    /// `trust=on|off`: VF trust (lets the guest use promiscuous mode, change its MAC...).
    pub trust: Option<bool>,
    /// The port VLAN's priority (sent with `vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// Transmit limit in Mbit/s (0: none; sent with `min_tx_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate: Option<u32>,
    /// Guaranteed transmit rate in Mbit/s (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate: Option<u32>,
    /// The link the VF sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<VfLinkState>,
}

impl VfSettings {
    /// Whether no setting is given (nothing to change).
    pub fn is_empty(&self) -> bool {
        *self == VfSettings::default()
    }

    /// The name of the first setting given (`mac`, `vlan`, ...), for errors.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.mac.is_some(), "mac"),
            (self.vlan.is_some(), "vlan"),
            (self.spoofchk.is_some(), "spoofchk"),
            (self.trust.is_some(), "trust"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }

    /// The settings of `self` that differ from `current` (what to change).
    pub fn changes_from(&self, current: &VfSettings) -> VfSettings {
        fn differ<T: PartialEq + Copy>(want: Option<T>, have: Option<T>) -> Option<T> {
            want.filter(|w| have != Some(*w))
        }
        VfSettings {
            mac: differ(self.mac, current.mac),
            vlan: differ(self.vlan, current.vlan),
            spoofchk: differ(self.spoofchk, current.spoofchk),
            trust: differ(self.trust, current.trust),
            qos: differ(self.qos, current.qos),
            max_tx_rate: differ(self.max_tx_rate, current.max_tx_rate),
            min_tx_rate: differ(self.min_tx_rate, current.min_tx_rate),
            link_state: differ(self.link_state, current.link_state),
        }
    }
}

/// A VF's administrative link state (`ip link set PF vf N state ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VfLinkState {
    /// Follows the PF's link.
    Auto,
    /// Always up.
    Enable,
    /// Always down.
    Disable,
}

impl VfLinkState {
    /// The name `ip link` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            VfLinkState::Auto => "auto",
            VfLinkState::Enable => "enable",
            VfLinkState::Disable => "disable",
        }
    }
}
