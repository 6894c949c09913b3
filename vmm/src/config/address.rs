//! Host PCI addresses and MAC addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;

/// `Serialize` as the type's `Display` text and `Deserialize` from it with
/// its `FromStr`, so JSON and VM files hold what the user types.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A host PCI function address (domain, bus, device, function).
///
/// Displays in the Linux sysfs form `0000:01:10.0` (the name under
/// `/sys/bus/pci/devices/`). Parses from bhyve's decimal `B/S/F`
/// (`1/16/0`, domain 0) or the hexadecimal Linux forms `DDDD:BB:SS.F` and
/// `BB:SS.F`. Serializes as the Display string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

serde_as_text!(PciAddress);

const PCI_USE: &str = "use bhyve's B/S/F like 1/16/0, or DDDD:BB:SS.F like 0000:01:10.0";

impl FromStr for PciAddress {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        parse_pci(s).map_err(|reason| ConfigError::PciAddress {
            value: s.to_string(),
            reason,
        })
    }
}

fn parse_pci(s: &str) -> Result<PciAddress, String> {
    fn field(s: &str, name: &str, radix: u32, max: u32) -> Result<u32, String> {
        // At most 8 digits, so that the value fits a u32 in either radix.
        let valid = !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_digit(radix));
        let value = valid
            .then(|| u32::from_str_radix(s, radix).ok())
            .flatten()
            .ok_or_else(|| {
                let kind = if radix == 10 { "decimal" } else { "hex" };
                format!("{name} '{s}' is not a {kind} number ({PCI_USE})")
            })?;
        if value > max {
            let shown = if radix == 10 {
                format!("{max}")
            } else {
                format!("{max:x}")
            };
            return Err(format!("{name} {s} is out of range (at most {shown})"));
        }
        Ok(value)
    }

    let (domain, bus, device, function) = if s.contains('/') {
        let parts: Vec<&str> = s.split('/').collect();
        let [bus, device, function] = parts[..] else {
            return Err(format!("expected 3 numbers separated by '/' ({PCI_USE})"));
        };
        (
            0,
            field(bus, "bus", 10, 255)?,
            field(device, "slot", 10, 31)?,
            field(function, "function", 10, 7)?,
        )
    } else if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, rest) = match parts[..] {
            [domain, bus, rest] => (field(domain, "domain", 16, 0xffff)?, bus, rest),
            [bus, rest] => (0, bus, rest),
            _ => return Err(format!("too many ':' ({PCI_USE})")),
        };
        let Some((device, function)) = rest.split_once('.') else {
            return Err(format!("missing '.FUNCTION' after the device ({PCI_USE})"));
        };
        (
            domain,
            field(bus, "bus", 16, 0xff)?,
            field(device, "device", 16, 0x1f)?,
            field(function, "function", 16, 7)?,
        )
    } else {
        return Err(format!("not a PCI address ({PCI_USE})"));
    };
    // The ranges were checked above, so these conversions are lossless.
    Ok(PciAddress {
        domain: domain as u16,
        bus: bus as u8,
        device: device as u8,
        function: function as u8,
    })
}

/// An Ethernet MAC address. Displays and parses as `aa:bb:cc:dd:ee:ff`
/// (hex, either case); serializes as the Display string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Wraps six octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group (multicast or broadcast) address: the I/G bit of the first octet.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// All zeros, which no interface can have.
    pub const fn is_zero(&self) -> bool {
        u64::from_be_bytes([
            0, 0, self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5],
        ]) == 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

serde_as_text!(MacAddr);

impl FromStr for MacAddr {
    type Err = ConfigError;

    /// Any MAC address, including multicast; users decide what they accept.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let err = || ConfigError::MacAddr {
            value: s.to_string(),
            reason: "expected six 2-digit hex octets separated by ':' (like aa:88:44:00:02:01)"
                .to_string(),
        };
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(octets))
    }
}

/// A PF as the user names it (iovctl.conf's `device`, `-s ...,passthru,pf=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PfDevice {
    /// A network interface name (`eth0`), FreeBSD's `ix0` style.
    Netdev(String),
    /// A PCI address (`0000:01:00.0`).
    Pci(PciAddress),
}

impl PfDevice {
    /// A PCI address (`DDDD:BB:SS.F`, `BB:SS.F`) or an interface name
    /// (1 to 15 bytes, no '/', ':' or blanks).
    pub fn parse(text: &str) -> Option<PfDevice> {
        if text.contains(':') {
            text.parse().ok().map(PfDevice::Pci)
        } else {
            netdev_name_ok(text).then(|| PfDevice::Netdev(text.to_string()))
        }
    }
}

impl fmt::Display for PfDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PfDevice::Netdev(n) => f.write_str(n),
            PfDevice::Pci(a) => write!(f, "{a}"),
        }
    }
}

/// A Linux interface name: 1 to 15 bytes, no '/', ':' or blanks.
fn netdev_name_ok(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(domain: u16, bus: u8, device: u8, function: u8) -> PciAddress {
        PciAddress {
            domain,
            bus,
            device,
            function,
        }
    }

    #[test]
    fn parses_pci_addresses() {
        let cases: &[(&str, PciAddress, &str)] = &[
            ("1/16/0", pci(0, 1, 16, 0), "0000:01:10.0"),
            ("0/0/0", pci(0, 0, 0, 0), "0000:00:00.0"),
            ("255/31/7", pci(0, 255, 31, 7), "0000:ff:1f.7"),
            ("3/2/1", pci(0, 3, 2, 1), "0000:03:02.1"),
            ("0000:01:10.0", pci(0, 1, 16, 0), "0000:01:10.0"),
            ("0000:3b:02.7", pci(0, 0x3b, 2, 7), "0000:3b:02.7"),
            ("0000:3B:02.7", pci(0, 0x3b, 2, 7), "0000:3b:02.7"),
            ("ffff:ff:1f.7", pci(0xffff, 0xff, 0x1f, 7), "ffff:ff:1f.7"),
            ("1:2:3.4", pci(1, 2, 3, 4), "0001:02:03.4"),
            ("01:10.0", pci(0, 1, 16, 0), "0000:01:10.0"),
            ("1:0.1", pci(0, 1, 0, 1), "0000:01:00.1"),
        ];
        for (input, want, shown) in cases {
            let got: PciAddress = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, *want, "{input}");
            assert_eq!(got.to_string(), *shown, "{input}");
            assert_eq!(shown.parse::<PciAddress>().unwrap(), got);
        }
    }

    #[test]
    fn rejects_bad_pci_addresses() {
        const U: &str = "(use bhyve's B/S/F like 1/16/0, or DDDD:BB:SS.F like 0000:01:10.0)";
        let cases: &[(&str, String)] = &[
            ("", format!("not a PCI address {U}")),
            ("eth0", format!("not a PCI address {U}")),
            ("1/16", format!("expected 3 numbers separated by '/' {U}")),
            (
                "1/16/0/0",
                format!("expected 3 numbers separated by '/' {U}"),
            ),
            ("256/0/0", "bus 256 is out of range (at most 255)".into()),
            ("1000/0/0", "bus 1000 is out of range (at most 255)".into()),
            (
                "123456789/0/0",
                format!("bus '123456789' is not a decimal number {U}"),
            ),
            ("1/32/0", "slot 32 is out of range (at most 31)".into()),
            ("1/16/8", "function 8 is out of range (at most 7)".into()),
            (
                "1/0x10/0",
                format!("slot '0x10' is not a decimal number {U}"),
            ),
            ("a/16/0", format!("bus 'a' is not a decimal number {U}")),
            ("1//0", format!("slot '' is not a decimal number {U}")),
            ("-1/16/0", format!("bus '-1' is not a decimal number {U}")),
            (
                "0000:01:10",
                format!("missing '.FUNCTION' after the device {U}"),
            ),
            ("0:0000:01:10.0", format!("too many ':' {U}")),
            (
                "10000:01:10.0",
                "domain 10000 is out of range (at most ffff)".into(),
            ),
            (
                "0000:100:10.0",
                "bus 100 is out of range (at most ff)".into(),
            ),
            (
                "0000:01:20.0",
                "device 20 is out of range (at most 1f)".into(),
            ),
            (
                "0000:01:10.8",
                "function 8 is out of range (at most 7)".into(),
            ),
            (
                "0000:01:10.",
                format!("function '' is not a hex number {U}"),
            ),
            ("0000:0g:10.0", format!("bus '0g' is not a hex number {U}")),
            (
                "0000:01:10.0.1",
                format!("function '0.1' is not a hex number {U}"),
            ),
            (":01:10.0", format!("domain '' is not a hex number {U}")),
        ];
        for (input, reason) in cases {
            let err = input.parse::<PciAddress>().expect_err(input);
            assert_eq!(
                err,
                ConfigError::PciAddress {
                    value: input.to_string(),
                    reason: reason.clone()
                },
                "{input:?}"
            );
            assert_eq!(err.to_string(), format!("PCI address {input:?}: {reason}"));
        }
    }

    #[test]
    fn parses_mac_addresses() {
        let cases: &[(&str, [u8; 6], &str)] = &[
            (
                "aa:88:44:00:02:01",
                [0xaa, 0x88, 0x44, 0, 2, 1],
                "aa:88:44:00:02:01",
            ),
            (
                "AA:88:44:00:02:0F",
                [0xaa, 0x88, 0x44, 0, 2, 0xf],
                "aa:88:44:00:02:0f",
            ),
            ("00:00:00:00:00:00", [0; 6], "00:00:00:00:00:00"),
            ("ff:ff:ff:ff:ff:ff", [0xff; 6], "ff:ff:ff:ff:ff:ff"),
        ];
        for (input, octets, shown) in cases {
            let mac: MacAddr = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(mac, MacAddr(*octets));
            assert_eq!(mac.to_string(), *shown);
        }
    }

    #[test]
    fn rejects_bad_mac_addresses() {
        for input in [
            "",
            "aa:88:44:00:02",
            "aa:88:44:00:02:01:00",
            "aa-88-44-00-02-01",
            "a:88:44:00:02:01",
            "aaa:88:44:00:02:01",
            "gg:88:44:00:02:01",
            "+a:88:44:00:02:01",
            "aa:88:44:00:02:01:",
            "aa8844000201",
        ] {
            let err = input.parse::<MacAddr>().expect_err(input);
            assert_eq!(
                err.to_string(),
                format!("MAC address {input:?}: expected six 2-digit hex octets separated by ':' (like aa:88:44:00:02:01)")
            );
        }
    }

    #[test]
    fn classifies_mac_addresses() {
        let cases: &[(&str, bool, bool, bool)] = &[
            // (mac, multicast, zero, usable by a VF)
            ("aa:88:44:00:02:01", false, false, true),
            ("02:00:00:00:00:01", false, false, true),
            ("01:00:5e:00:00:01", true, false, false),
            ("ab:88:44:00:02:01", true, false, false),
            ("ff:ff:ff:ff:ff:ff", true, false, false),
            ("00:00:00:00:00:00", false, true, false),
            ("00:00:00:00:00:01", false, false, true),
        ];
        for &(input, multicast, zero, unicast) in cases {
            let mac: MacAddr = input.parse().unwrap();
            assert_eq!(mac.is_multicast(), multicast, "{input}");
            assert_eq!(mac.is_zero(), zero, "{input}");
            assert_eq!(!mac.is_multicast() && !mac.is_zero(), unicast, "{input}");
        }
    }
}
