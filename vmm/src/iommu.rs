//! What the VFIO container's IOMMU can map, read before guest RAM is
//! DMA-mapped: the IOVA ranges it accepts (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)
//! and how many more mappings it takes (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
//! `vfio_iommu_type1.dma_entry_limit`). A layout it cannot map is refused
//! with one line, instead of a map call failing halfway through the start.
//!
//! The info ioctl is the only part that needs a container; parsing its
//! reply and deciding are pure functions, tested on built buffers.

use std::io;
use std::os::fd::AsRawFd;

/// `VFIO_IOMMU_GET_INFO`: `_IO(VFIO_TYPE, VFIO_BASE + 12)`.
const VFIO_IOMMU_GET_INFO: libc::c_ulong = (59 << 8) | (100 + 12);
/// `VFIO_IOMMU_INFO_CAPS`: the reply has a capability chain.
const INFO_CAPS: u32 = 1 << 1;
const CAP_IOVA_RANGE: u16 = 1;
const CAP_DMA_AVAIL: u16 = 3;
/// `struct vfio_iommu_type1_info`: argsz, flags, iova_pgsizes, cap_offset, pad.
const INFO_LEN: usize = 24;
/// The reply's largest size we accept (a few thousand IOVA ranges).
const INFO_MAX: usize = 64 * 1024;

/// What the IOMMU reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuInfo {
    /// IOVA ranges it can map, `(first, last)` inclusive; `None`: it did
    /// not say (older kernels), so anything goes.
    pub ranges: Option<Vec<(u64, u64)>>,
    /// How many more DMA mappings it takes; `None`: it did not say.
    pub dma_avail: Option<u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a `vfio_iommu_type1_info` reply with its capability chain.
/// Malformed capabilities end the chain (a loop is cut).
pub fn parse_info(reply: &[u8]) -> IommuInfo {
    let mut info = IommuInfo::default();
    let flags = u32_at(reply, 4).unwrap_or(0);
    if flags & INFO_CAPS == 0 {
        return info;
    }
    let mut at = u32_at(reply, 16).unwrap_or(0) as usize;
    let mut seen = 0;
    while at >= INFO_LEN && seen < 64 {
        seen += 1;
        let (Some(id), Some(next)) = (u16_at(reply, at), u32_at(reply, at + 4)) else {
            break;
        };
        match id {
            CAP_IOVA_RANGE => {
                let n = u32_at(reply, at + 8).unwrap_or(0) as usize;
                let ranges: Option<Vec<(u64, u64)>> = (0..n)
                    .map(|i| {
                        let r = at + 16 + 16 * i;
                        Some((u64_at(reply, r)?, u64_at(reply, r + 8)?))
                    })
                    .collect();
                if let Some(ranges) = ranges {
                    info.ranges = Some(ranges);
                }
            }
            CAP_DMA_AVAIL => info.dma_avail = u32_at(reply, at + 8),
            _ => {}
        }
        if next as usize <= at {
            break;
        }
        at = next as usize;
    }
    info
}

/// Asks the container's IOMMU (its type already set) what it can map.
pub fn read_info(container: &impl AsRawFd) -> io::Result<IommuInfo> {
    let mut argsz = INFO_LEN;
    loop {
        // u64s, so the buffer is aligned for the kernel's struct.
        let mut buf = vec![0u64; argsz.div_ceil(8)];
        let bytes = buf.len() * 8;
        buf[0] = bytes as u64; // argsz (the low half on little-endian x86)
                               // SAFETY: the buffer is `bytes` long, as its argsz says, and lives
                               // across the call; the kernel writes at most argsz bytes into it.
        let rc = unsafe {
            libc::ioctl(
                container.as_raw_fd(),
                VFIO_IOMMU_GET_INFO as _,
                buf.as_mut_ptr(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: reading the u64 buffer as bytes; u8 has no invalid values.
        let reply = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), bytes) };
        let wanted = u32_at(reply, 0).unwrap_or(0) as usize;
        if wanted <= bytes || wanted > INFO_MAX {
            return Ok(parse_info(reply));
        }
        argsz = wanted;
    }
}

/// Refuses a guest RAM layout (`(start, len)` regions, each one DMA
/// mapping) that the IOMMU cannot map; the reason is one line.
pub fn check_layout(ram: &[(u64, u64)], info: &IommuInfo) -> Result<(), String> {
    if let Some(ranges) = &info.ranges {
        for &(start, len) in ram.iter().filter(|(_, len)| *len > 0) {
            let last = start.saturating_add(len - 1);
            if !ranges.iter().any(|&(lo, hi)| lo <= start && last <= hi) {
                let usable: Vec<String> = ranges
                    .iter()
                    .map(|(lo, hi)| format!("{lo:#x}-{hi:#x}"))
                    .collect();
                return Err(format!(
                    "guest RAM at {start:#x}-{last:#x} is outside what the IOMMU can map ({}): use less memory (-m)",
                    usable.join(", ")
                ));
            }
        }
    }
    if let Some(avail) = info.dma_avail {
        if ram.len() > avail as usize {
            return Err(format!(
                "guest RAM needs {} DMA mappings but the IOMMU takes only {avail} more: stop other VMs using VFIO, or raise vfio_iommu_type1's dma_entry_limit",
                ram.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply: the info header, an IOVA range cap and a DMA avail cap.
    fn reply(ranges: &[(u64, u64)], avail: Option<u32>) -> Vec<u8> {
        let mut b = vec![0u8; INFO_LEN];
        let iova_at = INFO_LEN;
        let iova_len = 16 + 16 * ranges.len();
        let avail_at = iova_at + iova_len;
        b[4..8].copy_from_slice(&INFO_CAPS.to_ne_bytes());
        b[16..20].copy_from_slice(&(iova_at as u32).to_ne_bytes());
        b.extend_from_slice(&CAP_IOVA_RANGE.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        let next = if avail.is_some() { avail_at as u32 } else { 0 };
        b.extend_from_slice(&next.to_ne_bytes());
        b.extend_from_slice(&(ranges.len() as u32).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for (lo, hi) in ranges {
            b.extend_from_slice(&lo.to_ne_bytes());
            b.extend_from_slice(&hi.to_ne_bytes());
        }
        if let Some(a) = avail {
            b.extend_from_slice(&CAP_DMA_AVAIL.to_ne_bytes());
            b.extend_from_slice(&1u16.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&a.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    /// Intel VT-d with a 39-bit address width, minus the MSI window.
    const VTD: [(u64, u64); 2] = [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];

    #[test]
    fn parses_ranges_and_dma_avail() {
        let info = parse_info(&reply(&VTD, Some(65535)));
        assert_eq!(info.ranges.as_deref(), Some(&VTD[..]));
        assert_eq!(info.dma_avail, Some(65535));
        let info = parse_info(&reply(&VTD, None));
        assert_eq!(info.dma_avail, None);
        // No caps flag, a truncated reply, a looping chain: no panic.
        assert_eq!(parse_info(&[0; INFO_LEN]), IommuInfo::default());
        let full = reply(&VTD, Some(1));
        for cut in 0..full.len() {
            let _ = parse_info(&full[..cut]);
        }
        let mut looped = reply(&VTD, None);
        looped[INFO_LEN + 4..INFO_LEN + 8].copy_from_slice(&(INFO_LEN as u32).to_ne_bytes());
        assert_eq!(parse_info(&looped).ranges.as_deref(), Some(&VTD[..]));
    }

    #[test]
    fn layout_must_fit_one_range_and_the_mapping_budget() {
        let info = parse_info(&reply(&VTD, Some(65535)));
        let ram = [(0, 3 << 30), (4 << 30, 4 << 30)];
        assert_eq!(check_layout(&ram, &info), Ok(()));
        // 1 TiB above 4 GiB ends past the 39-bit (512 GiB) limit.
        let big = [(0, 3 << 30), (4 << 30, 1 << 40)];
        let e = check_layout(&big, &info).unwrap_err();
        assert_eq!(
            e,
            "guest RAM at 0x100000000-0x100ffffffff is outside what the IOMMU can map \
             (0x0-0xfedfffff, 0xfef00000-0x7fffffffff): use less memory (-m)"
        );
        // A region across the MSI window's hole.
        let across = [(0xfe00_0000, 0x0200_0000)];
        assert!(check_layout(&across, &info).is_err());
        let none_left = parse_info(&reply(&VTD, Some(1)));
        let e = check_layout(&ram, &none_left).unwrap_err();
        assert!(e.starts_with("guest RAM needs 2 DMA mappings but the IOMMU takes only 1 more"));
        // An IOMMU that says nothing: no refusal.
        assert_eq!(check_layout(&big, &IommuInfo::default()), Ok(()));
    }
}
