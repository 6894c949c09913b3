//! Parsing a descriptor chain into a typed, validated block request.
//!
//! The device makes no assumption about how the driver cut the request into
//! descriptors (virtio 1.2, 2.7.4): the readable descriptors form one byte
//! stream (header, then the data of a write or the segments of a discard),
//! the writable ones another (the data of a read, then the status byte,
//! always the last byte). Every check against the disk — range, alignment,
//! read-only, limits — happens here, so executing a [`Request`] cannot touch
//! the image outside what the guest may access.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

/// Bytes per virtio-blk sector, whatever the logical block size.
pub const SECTOR_SIZE: u64 = 512;
const HEADER_LEN: usize = 16;
const SEGMENT_LEN: usize = 16;

/// Why a chain is not a request the device will carry out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// No writable byte for the status, or it is outside guest memory.
    #[error("no writable status byte")]
    NoStatus,
    /// A readable descriptor follows a writable one.
    #[error("readable descriptor after a writable one")]
    DescriptorOrder,
    /// Fewer than 16 readable bytes.
    #[error("request header too short ({0} bytes)")]
    HeaderTooShort(usize),
    /// A buffer lies outside guest memory.
    #[error("buffer at {0:#x} is outside guest memory")]
    BadAddress(u64),
    /// Buffers in the direction the request type does not use.
    #[error("unexpected {0} data for this request type")]
    UnexpectedData(&'static str),
    /// A data length that is not a whole number of sectors.
    #[error("data length {0} is not a multiple of 512")]
    UnalignedLength(u64),
    /// Sector arithmetic overflows.
    #[error("sector {0} overflows")]
    Overflow(u64),
    /// Access past the end of the disk.
    #[error("sectors {sector}+{count} past the end of the disk ({capacity} sectors)")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        count: u64,
        /// Disk capacity in sectors.
        capacity: u64,
    },
    /// A write-type request on a read-only disk.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// Discard or write-zeroes payload of the wrong size.
    #[error("bad segment list of {0} bytes")]
    BadSegments(usize),
    /// More segments or sectors than advertised.
    #[error("segment list exceeds the advertised limits")]
    TooLarge,
    /// Flags the device does not support.
    #[error("unsupported segment flags {0:#x}")]
    UnsupportedFlags(u32),
    /// An unknown request type.
    #[error("unsupported request type {0}")]
    UnsupportedType(u32),
}

impl Error {
    /// The status the guest sees.
    pub fn status(&self) -> u8 {
        match self {
            Error::UnsupportedType(_) | Error::UnsupportedFlags(_) => VIRTIO_BLK_S_UNSUPP as u8,
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// A chain the device could not carry out, and where to report it.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    /// What is wrong.
    pub error: Error,
    /// The status byte, if the chain has a usable one.
    pub status: Option<GuestAddress>,
}

/// A guest buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// A byte range of the disk for discard or write-zeroes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Deallocate the range (write-zeroes with the UNMAP flag).
    pub unmap: bool,
}

/// What the guest asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Operation {
    /// Read `data`'s total length at byte `offset` into `data`.
    Read { offset: u64, data: Vec<Buf> },
    /// Write `data` at byte `offset`.
    Write { offset: u64, data: Vec<Buf> },
    /// Make completed writes durable.
    Flush,
    /// Write the serial number into `data`.
    GetId { data: Vec<Buf> },
    /// Deallocate ranges.
    Discard(Vec<Range>),
    /// Zero ranges.
    WriteZeroes(Vec<Range>),
}

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Operation,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// What requests may touch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Disk capacity in 512-byte sectors.
    pub capacity: u64,
    /// Refuse write, discard and write-zeroes.
    pub readonly: bool,
    /// Most sectors in one discard segment.
    pub max_discard_sectors: u32,
    /// Most segments in one discard request.
    pub max_discard_seg: u32,
    /// Most sectors in one write-zeroes segment.
    pub max_write_zeroes_sectors: u32,
    /// Most segments in one write-zeroes request.
    pub max_write_zeroes_seg: u32,
}

impl Request {
    /// Parses and validates `chain`, whose buffers are in `mem`, against
    /// `limits`.
    pub fn parse<M: GuestMemoryBackend>(
        chain: DescriptorChain<&M>,
        mem: &M,
        limits: &Limits,
    ) -> Result<Request, Rejected> {
        let mut readable = Vec::new();
        let mut writable: Vec<Buf> = Vec::new();
        let mut misordered = false;
        for desc in chain {
            let buf = Buf {
                addr: desc.addr(),
                len: desc.len(),
            };
            if buf.len == 0 {
                continue;
            }
            if desc.is_write_only() {
                writable.push(buf);
            } else {
                misordered |= !writable.is_empty();
                readable.push(buf);
            }
        }
        let status = split_back(&mut writable, 1)
            .and_then(|s| s.first().map(|b| b.addr))
            .filter(|&a| mem.check_range(a, 1))
            .ok_or(Rejected {
                error: Error::NoStatus,
                status: None,
            })?;
        let reject = |error| Rejected {
            error,
            status: Some(status),
        };
        if misordered {
            return Err(reject(Error::DescriptorOrder));
        }
        if let Some(b) = readable
            .iter()
            .chain(&writable)
            .find(|b| !mem.check_range(b.addr, b.len as usize))
        {
            return Err(reject(Error::BadAddress(b.addr.raw_value())));
        }
        let header = read_front(mem, &mut readable, HEADER_LEN).map_err(reject)?;
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        let op = parse_op(kind, sector, mem, readable, writable, limits).map_err(reject)?;
        Ok(Request { op, status })
    }
}

fn parse_op<M: GuestMemoryBackend>(
    kind: u32,
    sector: u64,
    mem: &M,
    mut readable: Vec<Buf>,
    writable: Vec<Buf>,
    limits: &Limits,
) -> Result<Operation, Error> {
    let no_readable = |r: &[Buf]| match r.is_empty() {
        true => Ok(()),
        false => Err(Error::UnexpectedData("readable")),
    };
    match kind {
        VIRTIO_BLK_T_IN => {
            no_readable(&readable)?;
            let offset = check_range(sector, total(&writable), limits)?;
            Ok(Operation::Read {
                offset,
                data: writable,
            })
        }
        VIRTIO_BLK_T_OUT => {
            if !writable.is_empty() {
                return Err(Error::UnexpectedData("writable"));
            }
            if limits.readonly {
                return Err(Error::ReadOnly);
            }
            let offset = check_range(sector, total(&readable), limits)?;
            Ok(Operation::Write {
                offset,
                data: readable,
            })
        }
        VIRTIO_BLK_T_FLUSH => Ok(Operation::Flush),
        VIRTIO_BLK_T_GET_ID => {
            no_readable(&readable)?;
            let mut data = writable;
            // Only the first 20 bytes carry the ID; the rest stay untouched.
            let excess = total(&data).saturating_sub(u64::from(VIRTIO_BLK_ID_BYTES));
            split_back(&mut data, excess);
            Ok(Operation::GetId { data })
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            if !writable.is_empty() {
                return Err(Error::UnexpectedData("writable"));
            }
            if limits.readonly {
                return Err(Error::ReadOnly);
            }
            let discard = kind == VIRTIO_BLK_T_DISCARD;
            let (max_sectors, max_seg) = if discard {
                (limits.max_discard_sectors, limits.max_discard_seg)
            } else {
                (limits.max_write_zeroes_sectors, limits.max_write_zeroes_seg)
            };
            let len = total(&readable) as usize;
            if len == 0 || !len.is_multiple_of(SEGMENT_LEN) {
                return Err(Error::BadSegments(len));
            }
            if len / SEGMENT_LEN > max_seg as usize {
                return Err(Error::TooLarge);
            }
            let bytes = read_front(mem, &mut readable, len)?;
            let ranges = bytes
                .chunks_exact(SEGMENT_LEN)
                .map(|s| parse_segment(s, discard, max_sectors, limits))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if discard {
                Operation::Discard(ranges)
            } else {
                Operation::WriteZeroes(ranges)
            })
        }
        _ => Err(Error::UnsupportedType(kind)),
    }
}

/// A `struct virtio_blk_discard_write_zeroes`.
fn parse_segment(s: &[u8], discard: bool, max: u32, limits: &Limits) -> Result<Range, Error> {
    let mut sector = [0u8; 8];
    sector.copy_from_slice(&s[..8]);
    let sector = u64::from_le_bytes(sector);
    let count = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let flags = u32::from_le_bytes([s[12], s[13], s[14], s[15]]);
    // Discard takes no flags; write-zeroes only UNMAP (virtio 1.2, 5.2.6.2).
    let allowed = if discard {
        0
    } else {
        VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
    };
    if flags & !allowed != 0 {
        return Err(Error::UnsupportedFlags(flags));
    }
    if count > max {
        return Err(Error::TooLarge);
    }
    let len = u64::from(count) * SECTOR_SIZE;
    Ok(Range {
        offset: check_range(sector, len, limits)?,
        len,
        unmap: flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0,
    })
}

/// Checks `len` bytes at `sector` lie on the disk; returns the byte offset.
fn check_range(sector: u64, len: u64, limits: &Limits) -> Result<u64, Error> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(Error::UnalignedLength(len));
    }
    let count = len / SECTOR_SIZE;
    let end = sector.checked_add(count).ok_or(Error::Overflow(sector))?;
    if end > limits.capacity {
        return Err(Error::OutOfRange {
            sector,
            count,
            capacity: limits.capacity,
        });
    }
    // Cannot overflow: end <= capacity = disk size / 512.
    Ok(sector * SECTOR_SIZE)
}

fn total(bufs: &[Buf]) -> u64 {
    bufs.iter().map(|b| u64::from(b.len)).sum()
}

/// Removes the last `n` bytes of `bufs` and returns them as buffers, or
/// `None` (leaving `bufs` alone) if there are fewer, or if a buffer's end
/// wraps past the top of the address space (it cannot lie in guest memory:
/// nothing has been range-checked yet when the status byte is split off).
fn split_back(bufs: &mut Vec<Buf>, n: u64) -> Option<Vec<Buf>> {
    if total(bufs) < n {
        return None;
    }
    let mut tail = Vec::new();
    let mut left = n;
    let mut cut = bufs.len();
    let mut last_keep = 0;
    while left > 0 {
        cut = cut.checked_sub(1)?;
        let b = bufs[cut];
        let take = left.min(u64::from(b.len)) as u32;
        last_keep = b.len - take;
        let addr = b.addr.checked_add(u64::from(last_keep))?;
        addr.checked_add(u64::from(take))?;
        tail.push(Buf { addr, len: take });
        left -= u64::from(take);
    }
    // Only now change `bufs`: every address above was valid.
    bufs.truncate(cut + 1);
    match bufs.last_mut() {
        Some(b) if last_keep > 0 => b.len = last_keep,
        _ => {
            bufs.pop();
        }
    }
    tail.reverse();
    Some(tail)
}

/// Removes and reads the first `n` bytes of `bufs`.
fn read_front<M: GuestMemoryBackend>(
    mem: &M,
    bufs: &mut Vec<Buf>,
    n: usize,
) -> Result<Vec<u8>, Error> {
    let available = total(bufs);
    if available < n as u64 {
        return Err(Error::HeaderTooShort(available as usize));
    }
    let mut out = vec![0u8; n];
    let mut done = 0;
    while done < n {
        let first = &mut bufs[0];
        let take = (n - done).min(first.len as usize);
        mem.read_slice(&mut out[done..done + take], first.addr)
            .map_err(|_| Error::BadAddress(first.addr.raw_value()))?;
        first.addr = first.addr.unchecked_add(take as u64);
        first.len -= take as u32;
        if first.len == 0 {
            bufs.remove(0);
        }
        done += take;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{memory, Driver, MEM_SIZE, VIRTQ_DESC_F_WRITE as W};
    use std::sync::Arc;
    use virtio_queue::QueueT;
    use vm_memory::GuestMemoryMmap;

    const HDR: u64 = 0x10000;
    const DATA: u64 = 0x20000;
    const STATUS: u64 = 0x30000;

    fn limits() -> Limits {
        Limits {
            capacity: 8,
            readonly: false,
            max_discard_sectors: 4,
            max_discard_seg: 2,
            max_write_zeroes_sectors: 4,
            max_write_zeroes_seg: 2,
        }
    }

    fn header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
        mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
    }

    fn parse_with(
        mem: &Arc<GuestMemoryMmap>,
        descs: &[(u64, u32, u16)],
        limits: &Limits,
    ) -> Result<Request, Rejected> {
        let mut driver = Driver::new(mem);
        driver.add(descs);
        let mut q = driver.queue();
        let chain = q.pop_descriptor_chain(&**mem).unwrap();
        Request::parse(chain, &**mem, limits)
    }

    fn parse(mem: &Arc<GuestMemoryMmap>, descs: &[(u64, u32, u16)]) -> Result<Request, Rejected> {
        parse_with(mem, descs, &limits())
    }

    fn rejected(error: Error) -> Result<Request, Rejected> {
        Err(Rejected {
            error,
            status: Some(GuestAddress(STATUS)),
        })
    }

    fn buf(addr: u64, len: u32) -> Buf {
        Buf {
            addr: GuestAddress(addr),
            len,
        }
    }

    #[test]
    fn read_with_separate_descriptors() {
        let mem = memory();
        header(&mem, VIRTIO_BLK_T_IN, 3);
        let r = parse(&mem, &[(HDR, 16, 0), (DATA, 1024, W), (STATUS, 1, W)]).unwrap();
        assert_eq!(
            r,
            Request {
                op: Operation::Read {
                    offset: 3 * 512,
                    data: vec![buf(DATA, 1024)],
                },
                status: GuestAddress(STATUS),
            }
        );
    }

    #[test]
    fn any_layout_header_with_data_and_status_with_data() {
        let mem = memory();
        header(&mem, VIRTIO_BLK_T_OUT, 1);
        let r = parse(&mem, &[(HDR, 16 + 512, 0), (STATUS, 1, W)]).unwrap();
        assert_eq!(
            r.op,
            Operation::Write {
                offset: 512,
                data: vec![buf(HDR + 16, 512)]
            }
        );
        header(&mem, VIRTIO_BLK_T_IN, 0);
        let r = parse(&mem, &[(HDR, 8, 0), (HDR + 8, 8, 0), (DATA, 513, W)]).unwrap();
        assert_eq!(r.status, GuestAddress(DATA + 512));
        assert_eq!(
            r.op,
            Operation::Read {
                offset: 0,
                data: vec![buf(DATA, 512)]
            }
        );
    }

    #[test]
    fn malformed_chains() {
        let mem = memory();
        header(&mem, VIRTIO_BLK_T_IN, 0);
        // Header too short.
        assert_eq!(
            parse(&mem, &[(HDR, 8, 0), (STATUS, 1, W)]),
            rejected(Error::HeaderTooShort(8))
        );
        // Status descriptor not writable: no status to report on.
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, 0)]),
            Err(Rejected {
                error: Error::NoStatus,
                status: None
            })
        );
        // Status outside guest memory.
        let outside = MEM_SIZE as u64 + 0x1000;
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (outside, 1, W)])
                .unwrap_err()
                .status,
            None
        );
        // Readable after writable.
        assert_eq!(
            parse(
                &mem,
                &[(HDR, 16, 0), (DATA, 512, W), (DATA, 512, 0), (STATUS, 1, W)]
            ),
            rejected(Error::DescriptorOrder)
        );
        // Data outside guest memory.
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (outside, 512, W), (STATUS, 1, W)]),
            rejected(Error::BadAddress(outside))
        );
        // Wrong direction for the type.
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, W)]),
            rejected(Error::UnexpectedData("readable"))
        );
        header(&mem, VIRTIO_BLK_T_OUT, 0);
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)]),
            rejected(Error::UnexpectedData("writable"))
        );
        // Not whole sectors.
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (DATA, 100, 0), (STATUS, 1, W)]),
            rejected(Error::UnalignedLength(100))
        );
    }

    #[test]
    fn ranges_are_checked() {
        let mem = memory();
        header(&mem, VIRTIO_BLK_T_IN, 7);
        let e = parse(&mem, &[(HDR, 16, 0), (DATA, 1024, W), (STATUS, 1, W)]).unwrap_err();
        assert_eq!(
            e.error,
            Error::OutOfRange {
                sector: 7,
                count: 2,
                capacity: 8
            }
        );
        assert_eq!(e.error.status(), VIRTIO_BLK_S_IOERR as u8);
        // The last sector is fine.
        header(&mem, VIRTIO_BLK_T_IN, 7);
        assert!(parse(&mem, &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)]).is_ok());
        header(&mem, VIRTIO_BLK_T_IN, u64::MAX);
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)]),
            rejected(Error::Overflow(u64::MAX))
        );
        header(&mem, VIRTIO_BLK_T_IN, u64::MAX / 512);
        assert!(matches!(
            parse(&mem, &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)])
                .unwrap_err()
                .error,
            Error::OutOfRange { .. }
        ));
    }

    #[test]
    fn unknown_type_is_unsupported() {
        let mem = memory();
        header(&mem, 99, 0);
        let e = parse(&mem, &[(HDR, 16, 0), (STATUS, 1, W)]).unwrap_err();
        assert_eq!(
            e,
            Rejected {
                error: Error::UnsupportedType(99),
                status: Some(GuestAddress(STATUS))
            }
        );
        assert_eq!(e.error.status(), VIRTIO_BLK_S_UNSUPP as u8);
    }

    #[test]
    fn read_only_refuses_writes() {
        let mem = memory();
        let ro = Limits {
            readonly: true,
            ..limits()
        };
        for kind in [
            VIRTIO_BLK_T_OUT,
            VIRTIO_BLK_T_DISCARD,
            VIRTIO_BLK_T_WRITE_ZEROES,
        ] {
            header(&mem, kind, 0);
            assert_eq!(
                parse_with(&mem, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, W)], &ro),
                rejected(Error::ReadOnly)
            );
        }
        header(&mem, VIRTIO_BLK_T_IN, 0);
        assert!(parse_with(&mem, &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)], &ro).is_ok());
    }

    fn segment(mem: &GuestMemoryMmap, i: u64, sector: u64, count: u32, flags: u32) {
        let at = DATA + 16 * i;
        mem.write_obj(sector, GuestAddress(at)).unwrap();
        mem.write_obj(count, GuestAddress(at + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
    }

    #[test]
    fn discard_and_write_zeroes_segments() {
        let mem = memory();
        let descs = |n: u32| [(HDR, 16, 0), (DATA, n, 0), (STATUS, 1, W)];
        header(&mem, VIRTIO_BLK_T_WRITE_ZEROES, 0);
        segment(&mem, 0, 1, 2, 0);
        segment(&mem, 1, 4, 4, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
        let r = parse(&mem, &descs(32)).unwrap();
        assert_eq!(
            r.op,
            Operation::WriteZeroes(vec![
                Range {
                    offset: 512,
                    len: 1024,
                    unmap: false
                },
                Range {
                    offset: 2048,
                    len: 2048,
                    unmap: true
                },
            ])
        );
        // Discard takes no flags.
        header(&mem, VIRTIO_BLK_T_DISCARD, 0);
        let e = parse(&mem, &descs(32)).unwrap_err().error;
        assert_eq!(
            e,
            Error::UnsupportedFlags(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
        );
        assert_eq!(e.status(), VIRTIO_BLK_S_UNSUPP as u8);
        segment(&mem, 1, 4, 4, 0);
        assert!(
            matches!(parse(&mem, &descs(32)).unwrap().op, Operation::Discard(r) if r.len() == 2)
        );
        // Bad sizes, too many segments, too many sectors, past the end.
        assert_eq!(parse(&mem, &descs(10)), rejected(Error::BadSegments(10)));
        assert_eq!(parse(&mem, &descs(48)), rejected(Error::TooLarge));
        segment(&mem, 0, 0, 5, 0);
        assert_eq!(parse(&mem, &descs(16)), rejected(Error::TooLarge));
        segment(&mem, 0, 6, 4, 0);
        assert!(matches!(
            parse(&mem, &descs(16)).unwrap_err().error,
            Error::OutOfRange { .. }
        ));
        // No segments at all.
        assert_eq!(
            parse(&mem, &[(HDR, 16, 0), (STATUS, 1, W)]),
            rejected(Error::BadSegments(0))
        );
    }

    #[test]
    fn get_id_writes_at_most_20_bytes() {
        let mem = memory();
        header(&mem, VIRTIO_BLK_T_GET_ID, 0);
        let r = parse(&mem, &[(HDR, 16, 0), (DATA, 32, W), (STATUS, 1, W)]).unwrap();
        assert_eq!(
            r.op,
            Operation::GetId {
                data: vec![buf(DATA, 20)]
            }
        );
        header(&mem, VIRTIO_BLK_T_FLUSH, 0);
        let r = parse(&mem, &[(HDR, 16, 0), (STATUS, 1, W)]).unwrap();
        assert_eq!(r.op, Operation::Flush);
    }

    #[test]
    fn split_back_takes_bytes_from_the_end() {
        let mut bufs = vec![buf(0x100, 4), buf(0x200, 2)];
        assert_eq!(
            split_back(&mut bufs, 3),
            Some(vec![buf(0x103, 1), buf(0x200, 2)])
        );
        assert_eq!(bufs, vec![buf(0x100, 3)]);
        assert_eq!(split_back(&mut bufs, 4), None);
        assert_eq!(bufs, vec![buf(0x100, 3)]);
        assert_eq!(split_back(&mut bufs, 3), Some(vec![buf(0x100, 3)]));
        assert_eq!(bufs, vec![]);
        assert_eq!(split_back(&mut bufs, 0), Some(vec![]));
    }

    #[test]
    fn split_back_refuses_buffers_that_wrap() {
        // Ends past the top of the address space: before this was checked,
        // debug builds panicked and release builds wrapped the status
        // address to the bottom of guest memory.
        let mut bufs = vec![buf(0x100, 4), buf(u64::MAX - 2, 8)];
        assert_eq!(split_back(&mut bufs, 1), None);
        assert_eq!(bufs, vec![buf(0x100, 4), buf(u64::MAX - 2, 8)]);
        let mut bufs = vec![buf(u64::MAX, 1)];
        assert_eq!(split_back(&mut bufs, 1), None);
        let mut bufs = vec![buf(u64::MAX - 1, 1)];
        assert_eq!(split_back(&mut bufs, 1), Some(vec![buf(u64::MAX - 1, 1)]));
    }

    #[test]
    fn a_status_descriptor_that_wraps_is_no_status() {
        let mem = memory();
        header(&mem, VIRTIO_BLK_T_IN, 0);
        let e = parse(&mem, &[(HDR, 16, 0), (u64::MAX - 3, 16, W)]).unwrap_err();
        assert_eq!(
            e,
            Rejected {
                error: Error::NoStatus,
                status: None
            }
        );
    }
}
