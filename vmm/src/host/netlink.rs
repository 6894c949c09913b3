//! VF attributes through the PF with rtnetlink: what `ip link set PF vf N
//! mac|vlan|spoofchk|trust` does, synchronously.
//!
//! Message building and parsing are pure functions over bytes (tested
//! without a socket); [`Rtnetlink`] sends them on a `NETLINK_ROUTE` socket
//! and checks the kernel's ACK.

use std::io;
use std::num::NonZeroI32;
use std::sync::OnceLock;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac,
    VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfStats,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::vf::{self, VfControl, VfReport, VfSettings};
use crate::config::MacAddr;

/// Errors of talking to the kernel about a VF.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket trouble.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused the request.
    #[error("kernel refused: {0}")]
    Kernel(#[source] io::Error),
    /// The reply could not be decoded.
    #[error("bad netlink reply: {0}")]
    Decode(String),
    /// The PF's reply had no entry for the VF.
    #[error("the PF reports no VF {0}")]
    NoSuchVf(u32),
}

fn serialize(message: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// RTM_SETLINK on interface `pf` with one IFLA_VF_INFO for VF `vf`.
pub fn set_vf_request(pf: &str, vf: u32, change: &VfSettings, seq: u32) -> Vec<u8> {
    let mut info = Vec::new();
    if let Some(mac) = change.mac {
        info.push(VfInfo::Mac(VfInfoMac::new(vf, &mac.octets())));
    }
    if change.vlan.is_some() || change.qos.is_some() {
        let (vlan, qos) = (change.vlan.unwrap_or(0), change.qos.unwrap_or(0));
        info.push(VfInfo::Vlan(VfInfoVlan::new(
            vf,
            u32::from(vlan),
            u32::from(qos),
        )));
    }
    if change.max_tx_rate.is_some() || change.min_tx_rate.is_some() {
        let (min, max) = (
            change.min_tx_rate.unwrap_or(0),
            change.max_tx_rate.unwrap_or(0),
        );
        info.push(VfInfo::Rate(VfInfoRate::new(vf, min, max)));
    }
    if let Some(state) = change.link_state {
        let state = match state {
            vf::VfLinkState::Auto => VfLinkState::Auto,
            vf::VfLinkState::Enable => VfLinkState::Enable,
            vf::VfLinkState::Disable => VfLinkState::Disable,
        };
        info.push(VfInfo::LinkState(VfInfoLinkState::new(vf, state)));
    }
    if let Some(on) = change.spoofchk {
        info.push(VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)));
    }
    if let Some(on) = change.trust {
        info.push(VfInfo::Trust(VfInfoTrust::new(vf, on)));
    }
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(pf.to_string()));
    link.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(info)]));
    serialize(
        RouteNetlinkMessage::SetLink(link),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    )
}

/// RTM_GETLINK on interface `pf` asking for VF details (RTEXT_FILTER_VF).
pub fn get_link_request(pf: &str, seq: u32) -> Vec<u8> {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(pf.to_string()));
    link.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
    serialize(RouteNetlinkMessage::GetLink(link), NLM_F_REQUEST, seq)
}

fn decode(reply: &[u8]) -> Result<NetlinkMessage<RouteNetlinkMessage>, Error> {
    NetlinkMessage::deserialize(reply).map_err(|e| Error::Decode(e.to_string()))
}

fn kernel_error(code: NonZeroI32) -> Error {
    Error::Kernel(io::Error::from_raw_os_error(-code.get()))
}

/// Checks the kernel's ACK to a request.
pub fn parse_ack(reply: &[u8]) -> Result<(), Error> {
    match decode(reply)?.payload {
        NetlinkPayload::Error(e) => e.code.map_or(Ok(()), |c| Err(kernel_error(c))),
        other => Err(Error::Decode(format!("expected an ACK, got {other:?}"))),
    }
}

/// Every VF's settings in the reply to [`get_link_request`], in the PF's order.
pub fn parse_vfs(reply: &[u8]) -> Result<Vec<VfReport>, Error> {
    let link = match decode(reply)?.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => link,
        NetlinkPayload::Error(e) => {
            return Err(e
                .code
                .map_or(Error::Decode("empty reply".into()), kernel_error))
        }
        other => return Err(Error::Decode(format!("expected a link, got {other:?}"))),
    };
    let infos = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::VfInfoList(list) => Some(list),
        _ => None,
    });
    Ok(infos.into_iter().flatten().filter_map(vf_report).collect())
}

/// One IFLA_VF_INFO entry; `None` without the IFLA_VF_MAC that names the VF.
fn vf_report(LinkVfInfo(info): &LinkVfInfo) -> Option<VfReport> {
    let index = info.iter().find_map(|i| match i {
        VfInfo::Mac(m) => Some(m.vf_id),
        _ => None,
    })?;
    let mut settings = VfSettings::default();
    let mut stats = None;
    for i in info {
        match i {
            VfInfo::Mac(m) => {
                let mut mac = [0; 6];
                mac.copy_from_slice(&m.mac[..6]);
                settings.mac = Some(MacAddr::new(mac));
            }
            VfInfo::Vlan(v) => {
                settings.vlan = Some(v.vlan_id as u16);
                settings.qos = Some(v.qos as u8);
            }
            VfInfo::Rate(r) => {
                settings.min_tx_rate = Some(r.min_tx_rate);
                settings.max_tx_rate = Some(r.max_tx_rate);
            }
            VfInfo::LinkState(l) => {
                settings.link_state = match l.state {
                    VfLinkState::Auto => Some(vf::VfLinkState::Auto),
                    VfLinkState::Enable => Some(vf::VfLinkState::Enable),
                    VfLinkState::Disable => Some(vf::VfLinkState::Disable),
                    _ => None,
                }
            }
            VfInfo::SpoofCheck(s) => settings.spoofchk = Some(s.enabled),
            VfInfo::Trust(t) => settings.trust = Some(t.enabled),
            VfInfo::Stats(list) => stats = Some(vf_stats(list)),
            _ => {}
        }
    }
    Some(VfReport {
        index,
        settings,
        stats,
    })
}

/// IFLA_VF_STATS' counters; ones the kernel adds later are skipped.
fn vf_stats(list: &[VfStats]) -> vf::VfStats {
    let mut s = vf::VfStats::default();
    for stat in list {
        match *stat {
            VfStats::RxPackets(v) => s.rx_packets = v,
            VfStats::TxPackets(v) => s.tx_packets = v,
            VfStats::RxBytes(v) => s.rx_bytes = v,
            VfStats::TxBytes(v) => s.tx_bytes = v,
            VfStats::Broadcast(v) => s.broadcast = v,
            VfStats::Multicast(v) => s.multicast = v,
            VfStats::RxDropped(v) => s.rx_dropped = v,
            VfStats::TxDropped(v) => s.tx_dropped = v,
            _ => {}
        }
    }
    s
}

/// A synchronous rtnetlink client.
pub struct Rtnetlink {
    socket: Socket,
}

const REPLY_MAX: usize = 64 * 1024;

impl Rtnetlink {
    /// Opens a `NETLINK_ROUTE` socket connected to the kernel.
    pub fn new() -> Result<Self, Error> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(Error::Socket)?;
        socket.bind_auto().map_err(Error::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(Error::Socket)?;
        Ok(Rtnetlink { socket })
    }

    fn request(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        self.socket.send(request, 0).map_err(Error::Socket)?;
        let mut reply = Vec::with_capacity(REPLY_MAX);
        self.socket.recv(&mut reply, 0).map_err(Error::Socket)?;
        Ok(reply)
    }
}

/// An [`Rtnetlink`] opened on first use: a VM whose devices need no VF
/// settings opens no socket.
#[derive(Default)]
pub struct LazyRtnetlink(OnceLock<Rtnetlink>);

impl LazyRtnetlink {
    fn get(&self) -> Result<&Rtnetlink, Error> {
        if let Some(n) = self.0.get() {
            return Ok(n);
        }
        let opened = Rtnetlink::new()?;
        Ok(self.0.get_or_init(|| opened))
    }
}

impl VfControl for LazyRtnetlink {
    fn list(&self, pf: &str) -> Result<Vec<VfReport>, Error> {
        self.get()?.list(pf)
    }

    fn set(&self, pf: &str, vf: u32, change: &VfSettings) -> Result<(), Error> {
        self.get()?.set(pf, vf, change)
    }
}

impl VfControl for Rtnetlink {
    fn list(&self, pf: &str) -> Result<Vec<VfReport>, Error> {
        parse_vfs(&self.request(&get_link_request(pf, 1))?)
    }

    fn set(&self, pf: &str, vf: u32, change: &VfSettings) -> Result<(), Error> {
        parse_ack(&self.request(&set_vf_request(pf, vf, change, 2))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::ErrorMessage;

    const RTM_GETLINK: u16 = 18;
    const RTM_SETLINK: u16 = 19;

    /// The payload of the first attribute of type `ty` in attribute bytes.
    fn find_attr(mut bytes: &[u8], ty: u16) -> Option<&[u8]> {
        while bytes.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
            let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
            if len < 4 || len > bytes.len() {
                return None;
            }
            if kind == ty {
                return Some(&bytes[4..len]);
            }
            bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
        }
        None
    }

    #[test]
    fn setlink_carries_each_vf_attribute() {
        let change = VfSettings {
            mac: Some(MacAddr::new([0xaa, 0x88, 0x44, 0, 2, 1])),
            vlan: Some(5),
            spoofchk: Some(true),
            trust: Some(false),
            qos: Some(3),
            max_tx_rate: Some(1000),
            min_tx_rate: None,
            link_state: Some(vf::VfLinkState::Disable),
        };
        let b = set_vf_request("eth0", 3, &change, 7);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_SETLINK);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), NLM_F_REQUEST | NLM_F_ACK);
        let attrs = &b[16 + 16..]; // nlmsghdr + ifinfomsg
        assert_eq!(find_attr(attrs, 3), Some(&b"eth0\0"[..])); // IFLA_IFNAME
        let list = find_attr(attrs, 22).unwrap(); // IFLA_VFINFO_LIST
        let info = find_attr(list, 1).unwrap(); // IFLA_VF_INFO
        let mac = find_attr(info, 1).unwrap(); // IFLA_VF_MAC: vf, mac[32]
        assert_eq!(&mac[..4], &3u32.to_ne_bytes());
        assert_eq!(&mac[4..10], &[0xaa, 0x88, 0x44, 0, 2, 1]);
        let vlan = find_attr(info, 2).unwrap(); // IFLA_VF_VLAN: vf, vlan, qos
        assert_eq!(vlan, [3u32, 5, 3].map(u32::to_ne_bytes).concat());
        let spoof = find_attr(info, 4).unwrap();
        assert_eq!(spoof, [3u32, 1].map(u32::to_ne_bytes).concat());
        let trust = find_attr(info, 9).unwrap();
        assert_eq!(trust, [3u32, 0].map(u32::to_ne_bytes).concat());
        let rate = find_attr(info, 6).unwrap(); // IFLA_VF_RATE: vf, min, max
        assert_eq!(rate, [3u32, 0, 1000].map(u32::to_ne_bytes).concat());
        let link = find_attr(info, 5).unwrap(); // IFLA_VF_LINK_STATE: vf, state
        assert_eq!(link, [3u32, 2].map(u32::to_ne_bytes).concat());
    }

    #[test]
    fn only_requested_attributes_are_sent() {
        let b = set_vf_request(
            "eth0",
            0,
            &VfSettings {
                vlan: Some(0),
                ..Default::default()
            },
            1,
        );
        let info = find_attr(find_attr(&b[32..], 22).unwrap(), 1).unwrap();
        assert!(find_attr(info, 1).is_none() && find_attr(info, 4).is_none());
        assert!(find_attr(info, 2).is_some());
    }

    #[test]
    fn getlink_asks_for_vf_info() {
        let b = get_link_request("enp1s0", 1);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_GETLINK);
        let mask = find_attr(&b[32..], 29).unwrap(); // IFLA_EXT_MASK
        assert_eq!(mask, 1u32.to_ne_bytes()); // RTEXT_FILTER_VF
    }

    fn reply(payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), payload);
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    fn error_reply(code: i32) -> Vec<u8> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(code);
        reply(NetlinkPayload::Error(e))
    }

    #[test]
    fn ack_and_nack() {
        assert!(parse_ack(&error_reply(0)).is_ok());
        let err = parse_ack(&error_reply(-libc::EOPNOTSUPP)).unwrap_err();
        assert!(matches!(&err, Error::Kernel(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP)));
        assert!(parse_ack(&[1, 2, 3]).is_err());
    }

    #[test]
    fn parses_the_vf_state_from_a_getlink_reply() {
        let vf = |id: u32, mac: [u8; 6], vlan: u32, spoof: bool| {
            LinkVfInfo(vec![
                VfInfo::Mac(VfInfoMac::new(id, &mac)),
                VfInfo::Vlan(VfInfoVlan::new(id, vlan, 0)),
                VfInfo::SpoofCheck(VfInfoSpoofCheck::new(id, spoof)),
                VfInfo::Trust(VfInfoTrust::new(id, true)),
            ])
        };
        let mut link = LinkMessage::default();
        let mut with_stats = vf(1, [2, 0, 0, 0, 0, 9], 5, false);
        with_stats.0.push(VfInfo::LinkState(
            netlink_packet_route::link::VfInfoLinkState::new(1, VfLinkState::Enable),
        ));
        with_stats.0.push(VfInfo::Stats(vec![
            VfStats::RxPackets(3),
            VfStats::TxPackets(20),
            VfStats::TxBytes(1960),
            VfStats::Multicast(2),
            VfStats::TxDropped(1),
        ]));
        link.attributes.push(LinkAttribute::VfInfoList(vec![
            vf(0, [0; 6], 0, true),
            with_stats,
        ]));
        let bytes = reply(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(
            link,
        )));
        let vfs = parse_vfs(&bytes).unwrap();
        assert_eq!(vfs.len(), 2);
        assert_eq!(
            vfs[1],
            VfReport {
                index: 1,
                settings: VfSettings {
                    mac: Some(MacAddr::new([2, 0, 0, 0, 0, 9])),
                    vlan: Some(5),
                    spoofchk: Some(false),
                    trust: Some(true),
                    qos: Some(0),
                    link_state: Some(vf::VfLinkState::Enable),
                    ..VfSettings::default()
                },
                stats: Some(vf::VfStats {
                    rx_packets: 3,
                    tx_packets: 20,
                    tx_bytes: 1960,
                    multicast: 2,
                    tx_dropped: 1,
                    ..Default::default()
                }),
            }
        );
        assert_eq!((vfs[0].settings.link_state, vfs[0].stats), (None, None));
        assert_eq!(vfs[0].index, 0);
        assert_eq!(vfs[0].settings.mac, Some(MacAddr::new([0; 6])));
        assert!(matches!(
            parse_vfs(&error_reply(-libc::ENODEV)),
            Err(Error::Kernel(_))
        ));
    }
}
