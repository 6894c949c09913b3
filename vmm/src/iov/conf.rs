//! iovctl.conf(5): a `PF` section (`device`, `num_vfs`), an optional
//! `DEFAULT` section whose values apply to every VF (before any `VF-N`),
//! and `VF-N` sections, turned into an [`IovConfig`] with one resolved
//! [`VfPolicy`] per VF. Everything that can be checked without the host is
//! checked here, each error at the line and column of the token it is
//! about; [`super::plan`] checks the rest against the host.

use std::collections::BTreeMap;
use std::fmt;

use super::ucl::{self, Kind, Pair, Pos, Value};
use crate::config::{MacAddr, PfDevice};
use crate::host::vf::VfLinkState as LinkState;

/// An error in the file: where, the token found, what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfError {
    /// Where the token starts.
    pub pos: Pos,
    /// The token as written.
    pub found: String,
    /// What would have been right.
    pub expected: String,
}

impl ConfError {
    /// An error at `pos` about `found`.
    pub fn new(pos: Pos, found: impl Into<String>, expected: impl Into<String>) -> Self {
        ConfError {
            pos,
            found: found.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}, expected {}",
            self.pos, self.found, self.expected
        )
    }
}

impl std::error::Error for ConfError {}

impl From<ucl::SyntaxError> for ConfError {
    fn from(e: ucl::SyntaxError) -> Self {
        ConfError::new(e.pos, e.found, e.expected)
    }
}

/// The keys of a VF (or `DEFAULT`) section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VfKey {
    Passthrough,
    MacAddr,
    MacAntiSpoof,
    AllowSetMac,
    AllowPromisc,
    Vlan,
    Qos,
    MaxTxRate,
    MinTxRate,
    LinkState,
}

impl VfKey {
    /// Every key, in the order `schema` prints them.
    pub const ALL: [VfKey; 10] = [
        VfKey::Passthrough,
        VfKey::MacAddr,
        VfKey::MacAntiSpoof,
        VfKey::AllowSetMac,
        VfKey::AllowPromisc,
        VfKey::Vlan,
        VfKey::Qos,
        VfKey::MaxTxRate,
        VfKey::MinTxRate,
        VfKey::LinkState,
    ];

    /// The key's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            VfKey::Passthrough => "passthrough",
            VfKey::MacAddr => "mac-addr",
            VfKey::MacAntiSpoof => "mac-anti-spoof",
            VfKey::AllowSetMac => "allow-set-mac",
            VfKey::AllowPromisc => "allow-promisc",
            VfKey::Vlan => "vlan",
            VfKey::Qos => "qos",
            VfKey::MaxTxRate => "max-tx-rate",
            VfKey::MinTxRate => "min-tx-rate",
            VfKey::LinkState => "link-state",
        }
    }

    /// Type and default as iovctl -S prints them (`bool (default = false)`).
    pub fn schema(self) -> &'static str {
        match self {
            VfKey::Passthrough => "bool (default = false)",
            VfKey::MacAddr => "unicast-mac",
            VfKey::MacAntiSpoof => "bool (default = true)",
            VfKey::AllowSetMac => "bool (default = false)",
            VfKey::AllowPromisc => "bool (default = false)",
            VfKey::Vlan => "vlan (0-4095 or \"trunk\") (default = \"trunk\")",
            VfKey::Qos => "uint8_t (0-7, with vlan)",
            VfKey::MaxTxRate => "uint32_t (Mbit/s)",
            VfKey::MinTxRate => "uint32_t (Mbit/s)",
            VfKey::LinkState => "string (auto, enable or disable)",
        }
    }

    fn from_name(name: &str) -> Option<VfKey> {
        VfKey::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One VF's policy: the file's `DEFAULT` and `VF-N` values over FreeBSD's
/// defaults. `None` leaves that setting as the host has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfPolicy {
    /// N of `VF-N` (and of the PF's `virtfnN`).
    pub index: u16,
    /// `passthrough`: reserved for VMs, bound to vfio-pci.
    pub passthrough: bool,
    /// `mac-addr`.
    pub mac: Option<MacAddr>,
    /// `mac-anti-spoof`: Linux's spoof checking.
    pub spoofchk: bool,
    /// `allow-set-mac`.
    pub allow_set_mac: bool,
    /// `allow-promisc`.
    pub allow_promisc: bool,
    /// `vlan`: the port VLAN; 0 for `"trunk"` (none, the guest may tag).
    pub vlan: u16,
    /// `qos`: the port VLAN's priority.
    pub qos: Option<u8>,
    /// `max-tx-rate` in Mbit/s (0: no limit).
    pub max_tx_rate: Option<u32>,
    /// `min-tx-rate` in Mbit/s.
    pub min_tx_rate: Option<u32>,
    /// `link-state`.
    pub link_state: Option<LinkState>,
    /// The keys the file gave for this VF (in `DEFAULT` or `VF-N`) and
    /// where each key is, for errors about them.
    pub given: Vec<(VfKey, Pos)>,
}

impl VfPolicy {
    fn defaults(index: u16) -> Self {
        VfPolicy {
            index,
            passthrough: false,
            mac: None,
            spoofchk: true,
            allow_set_mac: false,
            allow_promisc: false,
            vlan: 0,
            qos: None,
            max_tx_rate: None,
            min_tx_rate: None,
            link_state: None,
            given: Vec::new(),
        }
    }

    /// Linux's VF trust: what FreeBSD's allow-set-mac and allow-promisc
    /// each need.
    pub fn trust(&self) -> bool {
        self.allow_set_mac || self.allow_promisc
    }

    /// Where the file set `key` for this VF.
    pub fn given_at(&self, key: VfKey) -> Option<Pos> {
        self.given.iter().find(|(k, _)| *k == key).map(|(_, p)| *p)
    }

    fn apply(&mut self, setting: &Setting, pos: Pos) {
        match *setting {
            Setting::Passthrough(v) => self.passthrough = v,
            Setting::Mac(m) => self.mac = Some(m),
            Setting::AntiSpoof(v) => self.spoofchk = v,
            Setting::AllowSetMac(v) => self.allow_set_mac = v,
            Setting::AllowPromisc(v) => self.allow_promisc = v,
            Setting::Vlan(v) => self.vlan = v,
            Setting::Qos(q) => self.qos = Some(q),
            Setting::MaxTxRate(r) => self.max_tx_rate = Some(r),
            Setting::MinTxRate(r) => self.min_tx_rate = Some(r),
            Setting::LinkState(l) => self.link_state = Some(l),
        }
        let key = setting.key();
        self.given.retain(|(k, _)| *k != key);
        self.given.push((key, pos));
    }
}

/// A whole iovctl.conf file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IovConfig {
    /// `device`.
    pub device: PfDevice,
    /// Where `device`'s value is.
    pub device_pos: Pos,
    /// `num_vfs`.
    pub num_vfs: u16,
    /// Where `num_vfs`'s value is.
    pub num_vfs_pos: Pos,
    /// One policy per VF, `num_vfs` of them, in index order.
    pub vfs: Vec<VfPolicy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setting {
    Passthrough(bool),
    Mac(MacAddr),
    AntiSpoof(bool),
    AllowSetMac(bool),
    AllowPromisc(bool),
    Vlan(u16),
    Qos(u8),
    MaxTxRate(u32),
    MinTxRate(u32),
    LinkState(LinkState),
}

impl Setting {
    fn key(&self) -> VfKey {
        match self {
            Setting::Passthrough(_) => VfKey::Passthrough,
            Setting::Mac(_) => VfKey::MacAddr,
            Setting::AntiSpoof(_) => VfKey::MacAntiSpoof,
            Setting::AllowSetMac(_) => VfKey::AllowSetMac,
            Setting::AllowPromisc(_) => VfKey::AllowPromisc,
            Setting::Vlan(_) => VfKey::Vlan,
            Setting::Qos(_) => VfKey::Qos,
            Setting::MaxTxRate(_) => VfKey::MaxTxRate,
            Setting::MinTxRate(_) => VfKey::MinTxRate,
            Setting::LinkState(_) => VfKey::LinkState,
        }
    }
}

/// A section's settings with where each was.
type Settings = Vec<(Setting, Pos)>;

fn scalar(v: &Value) -> Option<(&str, bool)> {
    match &v.kind {
        Kind::Scalar { text, quoted } => Some((text, *quoted)),
        _ => None,
    }
}

fn boolean(v: &Value) -> Result<bool, ConfError> {
    let bad = || ConfError::new(v.pos, v.shown(), "a boolean: true or false (unquoted)");
    match scalar(v) {
        Some((t, false)) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// An unquoted decimal or 0x-hex integer within `range`; `what` says which.
fn integer(v: &Value, max: u64, what: &str) -> Result<u64, ConfError> {
    let bad = || ConfError::new(v.pos, v.shown(), what.to_string());
    let Some((t, false)) = scalar(v) else {
        return Err(bad());
    };
    let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
        None => None,
    };
    n.filter(|&n| n <= max).ok_or_else(bad)
}

fn string(v: &Value, what: &str) -> Result<String, ConfError> {
    scalar(v)
        .map(|(t, _)| t.to_string())
        .ok_or_else(|| ConfError::new(v.pos, v.shown(), what.to_string()))
}

fn section(pair: &Pair) -> Result<&[Pair], ConfError> {
    match &pair.value.kind {
        Kind::Object(pairs) => Ok(pairs),
        _ => Err(ConfError::new(
            pair.value.pos,
            pair.value.shown(),
            format!("a section: {} {{ ... }}", pair.key),
        )),
    }
}

/// Refuses a key given twice in one section.
fn once<'a>(seen: &mut Vec<(&'a str, Pos)>, pair: &'a Pair) -> Result<(), ConfError> {
    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == pair.key) {
        return Err(ConfError::new(
            pair.pos,
            format!("'{}' again", pair.key),
            format!("each key once per section (first at {first})"),
        ));
    }
    seen.push((&pair.key, pair.pos));
    Ok(())
}

fn vf_settings(pairs: &[Pair]) -> Result<Settings, ConfError> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for pair in pairs {
        once(&mut seen, pair)?;
        let Some(key) = VfKey::from_name(&pair.key) else {
            let known: Vec<&str> = VfKey::ALL.iter().map(|k| k.name()).collect();
            return Err(ConfError::new(
                pair.pos,
                format!("'{}'", pair.key),
                format!("a VF key: {}", known.join(", ")),
            ));
        };
        let v = &pair.value;
        let setting = match key {
            VfKey::Passthrough => Setting::Passthrough(boolean(v)?),
            VfKey::MacAntiSpoof => Setting::AntiSpoof(boolean(v)?),
            VfKey::AllowSetMac => Setting::AllowSetMac(boolean(v)?),
            VfKey::AllowPromisc => Setting::AllowPromisc(boolean(v)?),
            VfKey::MacAddr => {
                let what = "a unicast MAC address like \"02:56:48:7e:d9:f7\"";
                let text = string(v, what)?;
                let mac: MacAddr = text
                    .parse()
                    .map_err(|_| ConfError::new(v.pos, v.shown(), what))?;
                if mac.is_multicast() || mac.is_zero() {
                    let why = if mac.is_zero() {
                        "a MAC address other than all zeros"
                    } else {
                        "a unicast MAC address (the first octet even); this one is multicast"
                    };
                    return Err(ConfError::new(v.pos, v.shown(), why));
                }
                Setting::Mac(mac)
            }
            VfKey::Vlan => match scalar(v) {
                Some(("trunk", _)) => Setting::Vlan(0),
                _ => Setting::Vlan(integer(v, 4095, "a VLAN 0..4095 or \"trunk\"")? as u16),
            },
            VfKey::Qos => Setting::Qos(integer(v, 7, "a priority 0..7")? as u8),
            VfKey::MaxTxRate => {
                Setting::MaxTxRate(
                    integer(v, u64::from(u32::MAX), "a rate in Mbit/s (an integer)")? as u32,
                )
            }
            VfKey::MinTxRate => {
                Setting::MinTxRate(
                    integer(v, u64::from(u32::MAX), "a rate in Mbit/s (an integer)")? as u32,
                )
            }
            VfKey::LinkState => {
                let what = "auto, enable or disable";
                Setting::LinkState(match string(v, what)?.as_str() {
                    "auto" => LinkState::Auto,
                    "enable" => LinkState::Enable,
                    "disable" => LinkState::Disable,
                    _ => return Err(ConfError::new(v.pos, v.shown(), what)),
                })
            }
        };
        out.push((setting, pair.pos));
    }
    Ok(out)
}

/// The N of `VF-N`: decimal, no leading zeros.
fn vf_number(name: &str) -> Option<Option<u16>> {
    let digits = name.strip_prefix("VF-")?;
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    Some(if ok { digits.parse().ok() } else { None })
}

/// Where the text ends, for "missing" errors.
fn end_pos(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

/// Parses and checks a whole file (see the module documentation).
pub fn parse(text: &str) -> Result<IovConfig, ConfError> {
    let doc = ucl::parse(text)?;
    let mut pf: Option<&Pair> = None;
    let mut default: Option<(Settings, Pos)> = None;
    let mut vfs: BTreeMap<u16, (Settings, Pos)> = BTreeMap::new();
    let mut first_vf: Option<(&str, Pos)> = None;
    for pair in &doc {
        match pair.key.as_str() {
            "PF" => {
                if let Some(first) = pf {
                    return Err(ConfError::new(
                        pair.pos,
                        "a second PF section",
                        format!("one PF section per file (the first is at {})", first.pos),
                    ));
                }
                section(pair)?;
                pf = Some(pair);
            }
            "DEFAULT" => {
                if let Some((_, first)) = &default {
                    return Err(ConfError::new(
                        pair.pos,
                        "a second DEFAULT section",
                        format!("one DEFAULT section (the first is at {first})"),
                    ));
                }
                if let Some((vf, _)) = first_vf {
                    return Err(ConfError::new(
                        pair.pos,
                        format!("DEFAULT after {vf}"),
                        "DEFAULT before every VF-N section",
                    ));
                }
                default = Some((vf_settings(section(pair)?)?, pair.pos));
            }
            name => {
                let n =
                    match vf_number(name) {
                        Some(Some(n)) => n,
                        Some(None) => return Err(ConfError::new(
                            pair.pos,
                            format!("'{name}'"),
                            "VF-N with N a decimal number without leading zeros (VF-0, VF-1, ...)",
                        )),
                        None => {
                            return Err(ConfError::new(
                                pair.pos,
                                format!("'{name}'"),
                                "a section PF, DEFAULT or VF-N",
                            ))
                        }
                    };
                if let Some((_, first)) = vfs.get(&n) {
                    return Err(ConfError::new(
                        pair.pos,
                        format!("'{name}' again"),
                        format!("each VF once (the first {name} is at {first})"),
                    ));
                }
                first_vf.get_or_insert((&pair.key, pair.pos));
                vfs.insert(n, (vf_settings(section(pair)?)?, pair.pos));
            }
        }
    }
    let Some(pf) = pf else {
        return Err(ConfError::new(
            end_pos(text),
            "end of file",
            "a PF section: PF { device : \"eth0\"; num_vfs : 4; }",
        ));
    };
    let (device, device_pos, num_vfs, num_vfs_pos) = pf_section(pf)?;
    if let Some((&n, (_, pos))) = vfs.range(num_vfs..).next() {
        return Err(ConfError::new(
            *pos,
            format!("'VF-{n}'"),
            format!(
                "VF-0 to VF-{} (num_vfs is {num_vfs}, at {num_vfs_pos})",
                num_vfs - 1
            ),
        ));
    }
    let mut policies = Vec::with_capacity(usize::from(num_vfs));
    let mut macs: Vec<(MacAddr, u16)> = Vec::new();
    for index in 0..num_vfs {
        let mut p = VfPolicy::defaults(index);
        for (settings, _) in default.iter().chain(vfs.get(&index)) {
            for (s, pos) in settings {
                p.apply(s, *pos);
            }
        }
        if let (Some(mac), Some(pos)) = (p.mac, p.given_at(VfKey::MacAddr)) {
            if let Some(&(_, other)) = macs.iter().find(|(m, _)| *m == mac) {
                return Err(ConfError::new(
                    pos,
                    format!("mac-addr \"{mac}\" for VF-{index}"),
                    format!("a MAC not already given to VF-{other} (each VF needs its own)"),
                ));
            }
            macs.push((mac, index));
        }
        if let (Some(_), Some(pos), 0) = (p.qos, p.given_at(VfKey::Qos), p.vlan) {
            return Err(ConfError::new(
                pos,
                format!("qos for VF-{index} without a vlan"),
                "a vlan 1..4095 with qos (qos is the port VLAN's priority)",
            ));
        }
        if let (Some(min), Some(max), Some(pos)) =
            (p.min_tx_rate, p.max_tx_rate, p.given_at(VfKey::MinTxRate))
        {
            if max != 0 && min > max {
                return Err(ConfError::new(
                    pos,
                    format!("min-tx-rate {min} for VF-{index}"),
                    format!("at most max-tx-rate ({max})"),
                ));
            }
        }
        policies.push(p);
    }
    Ok(IovConfig {
        device,
        device_pos,
        num_vfs,
        num_vfs_pos,
        vfs: policies,
    })
}

fn pf_section(pf: &Pair) -> Result<(PfDevice, Pos, u16, Pos), ConfError> {
    let mut seen = Vec::new();
    let mut device = None;
    let mut num_vfs = None;
    for pair in section(pf)? {
        once(&mut seen, pair)?;
        let v = &pair.value;
        match pair.key.as_str() {
            "device" => {
                let what = "a network interface (\"eth0\") or a PCI address (\"0000:01:00.0\")";
                let dev = PfDevice::parse(&string(v, what)?)
                    .ok_or_else(|| ConfError::new(v.pos, v.shown(), what))?;
                device = Some((dev, v.pos));
            }
            "num_vfs" => {
                let n = integer(v, u64::from(u16::MAX), "a number of VFs, 1 or more")?;
                if n == 0 {
                    return Err(ConfError::new(
                        v.pos,
                        v.shown(),
                        "a number of VFs, 1 or more (to remove VFs: vfvm iov delete)",
                    ));
                }
                num_vfs = Some((n as u16, v.pos));
            }
            other => {
                return Err(ConfError::new(
                    pair.pos,
                    format!("'{other}'"),
                    "a PF key: device or num_vfs",
                ))
            }
        }
    }
    let missing = |key: &str, example: &str| {
        ConfError::new(
            pf.pos,
            format!("a PF section without {key}"),
            format!("{key} in it, e.g. {example}"),
        )
    };
    let (device, device_pos) = device.ok_or_else(|| missing("device", "device : \"eth0\";"))?;
    let (num_vfs, num_vfs_pos) = num_vfs.ok_or_else(|| missing("num_vfs", "num_vfs : 4;"))?;
    Ok((device, device_pos, num_vfs, num_vfs_pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE: &str = "\
# The example of the tests.
PF {
    device : \"eth0\";
    num_vfs : 3;
}
DEFAULT { allow-set-mac : true; }
VF-0 {
    mac-addr : \"aa:88:44:00:03:00\";
    passthrough : true;
}
VF-1 { mac-addr : \"aa:88:44:00:03:01\"; }
";

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn err(text: &str) -> String {
        parse(text).map_or_else(|e| e.to_string(), |_| "accepted".to_string())
    }

    #[test]
    fn resolves_default_and_vf_sections() {
        let c = parse(ISSUE).unwrap();
        assert_eq!(c.device, PfDevice::Netdev("eth0".into()));
        assert_eq!(
            c.device_pos,
            Pos {
                line: 3,
                column: 14
            }
        );
        assert_eq!((c.num_vfs, c.num_vfs_pos.line), (3, 4));
        assert_eq!(c.vfs.len(), 3);
        let [v0, v1, v2] = &c.vfs[..] else { panic!() };
        assert!(v0.passthrough && v0.trust() && v0.spoofchk);
        assert_eq!(v0.mac, Some(mac("aa:88:44:00:03:00")));
        assert!(!v1.passthrough && v1.trust());
        assert_eq!(v1.mac, Some(mac("aa:88:44:00:03:01")));
        assert_eq!(
            (v2.index, v2.mac, v2.passthrough, v2.vlan),
            (2, None, false, 0)
        );
        assert!(v2.trust() && v2.spoofchk && !v2.allow_promisc);
        assert_eq!(
            v2.given_at(VfKey::AllowSetMac),
            Some(Pos {
                line: 6,
                column: 11
            })
        );
        assert_eq!(
            v0.given_at(VfKey::MacAddr),
            Some(Pos { line: 8, column: 5 })
        );
        // The same file naming the PF by its PCI address.
        let c = parse(&ISSUE.replace("\"eth0\"", "\"0000:01:00.0\"")).unwrap();
        assert_eq!(c.device, PfDevice::Pci("0000:01:00.0".parse().unwrap()));
    }

    #[test]
    fn freebsd_files_work_unchanged() {
        // iovctl.conf(5)'s example, with a Linux device name.
        let text = "PF {\n\tdevice : \"ix0\";\n\tnum_vfs : 4;\n}\n\nDEFAULT {\n\tpassthrough : true;\n}\n\n\
                    VF-0 {\n\tmac-addr : \"02:56:48:7e:d9:f7\";\n\tpassthrough : false;\n}\n\n\
                    VF-1 {\n\tallow-set-mac : true;\n\tallow-promisc : true;\n\tmac-anti-spoof : false;\n\tvlan : \"trunk\";\n}\n";
        let c = parse(text).unwrap();
        assert_eq!(c.num_vfs, 4);
        assert!(!c.vfs[0].passthrough && c.vfs[2].passthrough && c.vfs[3].passthrough);
        assert!(c.vfs[1].trust() && !c.vfs[1].spoofchk && c.vfs[1].vlan == 0);
        // Linux extras.
        let c = parse(
            "PF { device = eth0; num_vfs = 0x2 }\n\
             VF-1 { vlan = 42; qos = 3; max-tx-rate = 1000; min-tx-rate = 10; link-state = disable }",
        )
        .unwrap();
        let v = &c.vfs[1];
        assert_eq!(
            (v.vlan, v.qos, v.max_tx_rate, v.min_tx_rate),
            (42, Some(3), Some(1000), Some(10))
        );
        assert_eq!(v.link_state, Some(LinkState::Disable));
        assert_eq!(c.vfs[0].link_state, None);
    }

    #[test]
    fn refuses_each_mistake_at_its_place() {
        let pf = "PF { device : \"eth0\"; num_vfs : 3; }\n";
        let cases: Vec<(String, &str)> = vec![
            // Line 7 of a file with a syntax error.
            (format!("{pf}\n\n\nVF-0 {{\n  passthrough : true;\n  mac-addr : ;\n}}\n"),
             "7:14: found ';', expected a value"),
            (format!("{pf}VF-0 {{ mac-adr : \"02:00:00:00:00:01\"; }}"),
             "2:8: found 'mac-adr', expected a VF key: passthrough, mac-addr, mac-anti-spoof, allow-set-mac, allow-promisc, vlan, qos, max-tx-rate, min-tx-rate, link-state"),
            (format!("{pf}VF-0 {{ mac-addr : \"01:00:5e:00:00:01\"; }}"),
             "2:19: found \"01:00:5e:00:00:01\", expected a unicast MAC address (the first octet even); this one is multicast"),
            (format!("{pf}VF-0 {{ mac-addr : \"00:00:00:00:00:00\"; }}"),
             "2:19: found \"00:00:00:00:00:00\", expected a MAC address other than all zeros"),
            (format!("{pf}VF-0 {{ mac-addr : \"02:00:00:00:00\"; }}"),
             "2:19: found \"02:00:00:00:00\", expected a unicast MAC address like \"02:56:48:7e:d9:f7\""),
            (format!("{pf}VF-0 {{ mac-addr : \"02:00:00:00:00:01\"; }}\nVF-2 {{ mac-addr : \"02:00:00:00:00:01\"; }}"),
             "3:8: found mac-addr \"02:00:00:00:00:01\" for VF-2, expected a MAC not already given to VF-0 (each VF needs its own)"),
            (format!("{pf}DEFAULT {{ mac-addr : \"02:00:00:00:00:01\"; }}"),
             "2:11: found mac-addr \"02:00:00:00:00:01\" for VF-1, expected a MAC not already given to VF-0 (each VF needs its own)"),
            (format!("{pf}VF-3 {{ passthrough : true; }}"),
             "2:1: found 'VF-3', expected VF-0 to VF-2 (num_vfs is 3, at 1:33)"),
            (format!("{pf}VF-01 {{ }}"),
             "2:1: found 'VF-01', expected VF-N with N a decimal number without leading zeros (VF-0, VF-1, ...)"),
            (format!("{pf}VF-x {{ }}"),
             "2:1: found 'VF-x', expected VF-N with N a decimal number without leading zeros (VF-0, VF-1, ...)"),
            (format!("{pf}VF-1 {{ }}\nVF-1 {{ }}"),
             "3:1: found 'VF-1' again, expected each VF once (the first VF-1 is at 2:1)"),
            (format!("{pf}VF-1 {{ }}\nDEFAULT {{ }}"),
             "3:1: found DEFAULT after VF-1, expected DEFAULT before every VF-N section"),
            (format!("{pf}DEFAULT {{ }}\nDEFAULT {{ }}"),
             "3:1: found a second DEFAULT section, expected one DEFAULT section (the first is at 2:1)"),
            (format!("{pf}{pf}"), "2:1: found a second PF section, expected one PF section per file (the first is at 1:1)"),
            (format!("{pf}VF {{ }}"), "2:1: found 'VF', expected a section PF, DEFAULT or VF-N"),
            (format!("{pf}VF-0 : true"), "2:8: found 'true', expected a section: VF-0 { ... }"),
            (format!("{pf}VF-0 {{ passthrough : \"true\"; }}"),
             "2:22: found \"true\", expected a boolean: true or false (unquoted)"),
            (format!("{pf}VF-0 {{ passthrough : 1; }}"),
             "2:22: found '1', expected a boolean: true or false (unquoted)"),
            (format!("{pf}VF-0 {{ passthrough : true; passthrough : false }}"),
             "2:28: found 'passthrough' again, expected each key once per section (first at 2:8)"),
            (format!("{pf}VF-0 {{ vlan : 4096 }}"), "2:15: found '4096', expected a VLAN 0..4095 or \"trunk\""),
            (format!("{pf}VF-0 {{ vlan : \"42\" }}"), "2:15: found \"42\", expected a VLAN 0..4095 or \"trunk\""),
            (format!("{pf}VF-0 {{ qos : 3 }}"),
             "2:8: found qos for VF-0 without a vlan, expected a vlan 1..4095 with qos (qos is the port VLAN's priority)"),
            (format!("{pf}VF-0 {{ vlan : 5; qos : 8 }}"), "2:24: found '8', expected a priority 0..7"),
            (format!("{pf}VF-0 {{ max-tx-rate : 10; min-tx-rate : 20 }}"),
             "2:26: found min-tx-rate 20 for VF-0, expected at most max-tx-rate (10)"),
            (format!("{pf}VF-0 {{ link-state : up }}"), "2:21: found 'up', expected auto, enable or disable"),
            (format!("{pf}VF-0 {{ mac-addr : [1] }}"),
             "2:19: found a list [ ... ], expected a unicast MAC address like \"02:56:48:7e:d9:f7\""),
            ("DEFAULT { }".to_string(), "1:12: found end of file, expected a PF section: PF { device : \"eth0\"; num_vfs : 4; }"),
            ("PF { num_vfs : 3 }".to_string(), "1:1: found a PF section without device, expected device in it, e.g. device : \"eth0\";"),
            ("PF { device : eth0 }".to_string(), "1:1: found a PF section without num_vfs, expected num_vfs in it, e.g. num_vfs : 4;"),
            ("PF { device : eth0; num_vfs : 0 }".to_string(),
             "1:31: found '0', expected a number of VFs, 1 or more (to remove VFs: vfvm iov delete)"),
            ("PF { device : eth0; num_vfs : 70000 }".to_string(), "1:31: found '70000', expected a number of VFs, 1 or more"),
            ("PF { device : eth0; num_vfs : 4k }".to_string(), "1:31: found '4k', expected a number of VFs, 1 or more"),
            ("PF { device : \"a/b\"; num_vfs : 1 }".to_string(),
             "1:15: found \"a/b\", expected a network interface (\"eth0\") or a PCI address (\"0000:01:00.0\")"),
            ("PF { device : \"0000:zz:00.0\"; num_vfs : 1 }".to_string(),
             "1:15: found \"0000:zz:00.0\", expected a network interface (\"eth0\") or a PCI address (\"0000:01:00.0\")"),
            ("PF { device : eth0; num_vfs : 1; vendor : 1 }".to_string(), "1:34: found 'vendor', expected a PF key: device or num_vfs"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(text, want)| err(text) != *want)
            .map(|(text, want)| format!("{text:?}\n  got:  {}\n  want: {want}", err(text)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Random edits of valid files and random bytes: every input gives a
    /// config or an error, never a panic (the fuzz target in fuzz/ goes
    /// further, coverage-guided).
    #[test]
    fn mutated_files_never_panic() {
        let seeds = [
            ISSUE,
            "PF{device=eth0;num_vfs=2}VF-1{vlan=3;qos=1;link-state=auto}",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "{}[];:,=\"'#/*\\ \nVF-0PFDEFAULTtrue0x9é".chars().collect();
        for i in 0..20_000u32 {
            let seed: Vec<char> = seeds[i as usize % seeds.len()].chars().collect();
            let mut text = seed.clone();
            for _ in 0..(rand() % 6 + 1) {
                let at = (rand() as usize) % (text.len() + 1);
                match rand() % 3 {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    1 => text.insert(at, alphabet[(rand() as usize) % alphabet.len()]),
                    _ => text.truncate(at),
                }
            }
            let text: String = text.into_iter().collect();
            let _ = parse(&text);
        }
    }

    #[test]
    fn the_packaged_example_parses() {
        let text = include_str!("../../../resources/etc/iov/example.conf.sample");
        parse(text).unwrap();
    }
}
