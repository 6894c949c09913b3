//! The disk image behind a virtio-blk device.
//!
//! Opening: `bypass_cache` adds `O_DIRECT` (bypass the host page cache,
//! bhyve's `nocache`), `sync_writes` adds `O_SYNC` (each write is durable
//! when it completes, bhyve's `direct`).
//!
//! Locking ([`super::lock`]): any number of VMs may share an image
//! read-only, but as long as one VM has it open, writable or not, no other
//! VM (vfvm or QEMU) can open it for writing; and a writer keeps readers out
//! too, since they would see a filesystem changing under them.
//!
//! I/O is positioned (`preadv`/`pwritev`) straight between the file and
//! guest memory. `O_DIRECT` needs buffers, offsets and lengths aligned to the
//! logical sector; a request whose guest buffers are not goes through an
//! aligned bounce buffer, one chunk at a time.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vm_memory::VolatileSlice;

use super::lock::{lock_image, LockError};
use super::Error;

/// Length of a GET_ID serial number.
pub const SERIAL_LEN: usize = 20;
const BOUNCE_CHUNK: usize = 1 << 20;
const ZERO_CHUNK: usize = 1 << 20;

/// How to open an image.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenFlags {
    /// No writes.
    pub readonly: bool,
    /// `O_DIRECT`: bypass the host page cache.
    pub bypass_cache: bool,
    /// `O_SYNC`: each write durable when it completes.
    pub sync_writes: bool,
}

/// An open, locked disk image.
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: PathBuf,
    size: u64,
    readonly: bool,
    /// Buffer alignment `O_DIRECT` needs, if the image was opened with it.
    direct_align: Option<usize>,
    /// The image lives in memory (tmpfs): no I/O on it waits for a device.
    in_memory: bool,
}

impl Disk {
    /// Opens and locks the image at `path`; with `O_DIRECT`, buffers are
    /// aligned to `sector` bytes.
    pub fn open(path: &Path, flags: OpenFlags, sector: usize) -> Result<Disk, Error> {
        let mut custom = 0;
        if flags.bypass_cache {
            custom |= libc::O_DIRECT;
        }
        if flags.sync_writes {
            custom |= libc::O_SYNC;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!flags.readonly)
            .custom_flags(custom)
            .open(path)
            .map_err(|source| open_error(path, flags, source))?;
        let file_type = file
            .metadata()
            .map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?
            .file_type();
        if !file_type.is_file() && !file_type.is_block_device() {
            return Err(Error::NotAFile(path.to_owned()));
        }
        match lock_image(&file, flags.readonly) {
            Ok(()) => {}
            Err(LockError::Conflict) => return Err(Error::Locked(path.to_owned())),
            Err(LockError::Io(source)) => {
                return Err(Error::Lock {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let size = (&file)
            .seek(SeekFrom::End(0))
            .map_err(|source| Error::Size {
                path: path.to_owned(),
                source,
            })?;
        Ok(Disk {
            in_memory: is_tmpfs(&file),
            file,
            path: path.to_owned(),
            size,
            readonly: flags.readonly,
            direct_align: flags.bypass_cache.then_some(sector),
        })
    }

    /// Whether the image is in memory (tmpfs), where a write or a flush
    /// never waits for a device: io_uring would hand each to a kernel
    /// worker thread (tmpfs cannot start a write without blocking), which
    /// costs two thread switches for a memory copy the I/O thread can do
    /// itself.
    pub(super) fn in_memory(&self) -> bool {
        self.in_memory
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether writes are refused.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The open image, for io_uring.
    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A serial number derived from the file's identity (device and inode),
    /// stable across VM restarts.
    pub fn derived_serial(&self) -> io::Result<String> {
        let m = self.file.metadata()?;
        let mut s = format!("{:x}{:011x}", m.dev(), m.ino());
        s.truncate(SERIAL_LEN);
        Ok(s)
    }

    /// Whether `bufs` must go through a bounce buffer (`O_DIRECT` and
    /// misaligned).
    pub(super) fn needs_bounce(&self, bufs: &[VolatileSlice<'_>]) -> bool {
        self.direct_align.is_some_and(|a| {
            bufs.iter().any(|b| {
                !(b.ptr_guard().as_ptr() as usize).is_multiple_of(a) || !b.len().is_multiple_of(a)
            })
        })
    }

    /// Fills `bufs` from the image at `offset`.
    pub fn read_at(&self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<()> {
        if !self.needs_bounce(bufs) {
            return transfer(&self.file, bufs, offset, Direction::Read);
        }
        self.bounced(bufs, |chunk, done| {
            self.file.read_exact_at(chunk, offset + done as u64)?;
            for_each_piece(bufs, done, chunk.len(), |slice, at| {
                slice.copy_from(&chunk[at..at + slice.len()]);
            });
            Ok(())
        })
    }

    /// Writes `bufs` to the image at `offset`.
    pub fn write_at(&self, bufs: &[VolatileSlice<'_>], offset: u64) -> io::Result<()> {
        if !self.needs_bounce(bufs) {
            return transfer(&self.file, bufs, offset, Direction::Write);
        }
        self.bounced(bufs, |chunk, done| {
            for_each_piece(bufs, done, chunk.len(), |slice, at| {
                slice.copy_to(&mut chunk[at..at + slice.len()]);
            });
            self.file.write_all_at(chunk, offset + done as u64)
        })
    }

    /// Runs `step` on each chunk of the aligned bounce buffer that `bufs`
    /// go through (O_DIRECT with unaligned guest buffers), with the chunk's
    /// offset into `bufs`.
    fn bounced(
        &self,
        bufs: &[VolatileSlice<'_>],
        mut step: impl FnMut(&mut [u8], usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut bounce = AlignedBuf::new(BOUNCE_CHUNK, self.direct_align.unwrap_or(1));
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut done = 0;
        while done < total {
            let chunk = bounce.get(BOUNCE_CHUNK.min(total - done));
            step(chunk, done)?;
            done += chunk.len();
        }
        Ok(())
    }

    /// Makes completed writes durable.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Gives `len` bytes at `offset` back to the host filesystem; they read
    /// as zeros afterwards. A filesystem that cannot punch holes ignores it:
    /// a discard is only a hint.
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.fallocate(PUNCH_HOLE, offset, len) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            r => r,
        }
    }

    /// Zeroes `len` bytes at `offset`, deallocating them if `unmap`.
    pub fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        if unmap && self.fallocate(PUNCH_HOLE, offset, len).is_ok() {
            return Ok(());
        }
        match self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                self.write_zeroes_slowly(offset, len)
            }
            r => r,
        }
    }

    fn write_zeroes_slowly(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut zeros = AlignedBuf::new(ZERO_CHUNK, self.direct_align.unwrap_or(1));
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK as u64) as usize;
            self.file.write_all_at(zeros.get(n), offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: plain syscall on a file descriptor we own; no memory is
        // passed.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether `file` is on tmpfs.
fn is_tmpfs(file: &File) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one `struct statfs` to the pointer, which
    // points to enough (zeroed) memory for it.
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: fstatfs succeeded, so it filled the struct.
    let f_type = (r == 0).then(|| unsafe { st.assume_init() }.f_type);
    // The two have different integer types with glibc and with musl.
    #[allow(clippy::unnecessary_cast)]
    f_type.is_some_and(|t| t as i64 == libc::TMPFS_MAGIC as i64)
}

const PUNCH_HOLE: libc::c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;

fn open_error(path: &Path, flags: OpenFlags, source: io::Error) -> Error {
    let path = path.to_owned();
    match source.kind() {
        io::ErrorKind::NotFound => Error::NotFound(path),
        io::ErrorKind::PermissionDenied => Error::Permission {
            path,
            readonly: flags.readonly,
        },
        _ if flags.bypass_cache && source.raw_os_error() == Some(libc::EINVAL) => {
            Error::DirectUnsupported(path)
        }
        _ => Error::Open { path, source },
    }
}

/// Calls `f(piece, at)` for the pieces of `bufs` covering bytes
/// `[start, start + len)` of their concatenation; `at` is the piece's
/// position relative to `start`.
fn for_each_piece(
    bufs: &[VolatileSlice<'_>],
    start: usize,
    len: usize,
    mut f: impl FnMut(VolatileSlice<'_>, usize),
) {
    let end = start + len;
    let mut pos = 0;
    for b in bufs {
        let (lo, hi) = (pos.max(start), (pos + b.len()).min(end));
        if lo < hi {
            if let Ok(piece) = b.subslice(lo - pos, hi - lo) {
                f(piece, lo - start);
            }
        }
        pos += b.len();
        if pos >= end {
            break;
        }
    }
}

/// A zeroed heap buffer whose usable part starts at an aligned address.
struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> Self {
        let buf = vec![0u8; len + align];
        let start = buf.as_ptr().align_offset(align);
        AlignedBuf { buf, start }
    }

    fn get(&mut self, len: usize) -> &mut [u8] {
        &mut self.buf[self.start..self.start + len]
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// `preadv`/`pwritev` of `bufs` at `offset`, retried until complete.
fn transfer(
    file: &File,
    bufs: &[VolatileSlice<'_>],
    offset: u64,
    dir: Direction,
) -> io::Result<()> {
    // The guards keep the slices mapped while the kernel uses the pointers.
    let guards: Vec<_> = bufs.iter().map(|b| b.ptr_guard_mut()).collect();
    let mut iovs: Vec<libc::iovec> = guards
        .iter()
        .zip(bufs)
        .filter(|(_, b)| !b.is_empty())
        .map(|(g, b)| libc::iovec {
            iov_base: g.as_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut first = 0;
    let mut pos = offset;
    while first < iovs.len() {
        let count = (iovs.len() - first).min(libc::UIO_MAXIOV as usize) as libc::c_int;
        let off =
            libc::off_t::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let iov = iovs[first..].as_ptr();
        // SAFETY: `iov` points to `count` iovecs, each describing guest
        // memory that stays mapped (its guard is alive) and that the
        // VolatileSlice vouches is valid for its length; the kernel reads or
        // writes only within them.
        let n = unsafe {
            match dir {
                Direction::Read => libc::preadv(file.as_raw_fd(), iov, count, off),
                Direction::Write => libc::pwritev(file.as_raw_fd(), iov, count, off),
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut n = n as usize;
        pos += n as u64;
        while n > 0 {
            let iov = &mut iovs[first];
            if n < iov.iov_len {
                iov.iov_base = iov.iov_base.cast::<u8>().wrapping_add(n).cast();
                iov.iov_len -= n;
                n = 0;
            } else {
                n -= iov.iov_len;
                first += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::TempFile;

    #[test]
    fn errors_name_the_file() {
        let e = Disk::open(
            Path::new("/nonexistent/disk.img"),
            OpenFlags::default(),
            512,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/disk.img"), "{e}");
    }

    #[test]
    fn only_files_and_block_devices_are_disks() {
        let ro = OpenFlags {
            readonly: true,
            ..OpenFlags::default()
        };
        let e = Disk::open(Path::new("/tmp"), ro, 512).unwrap_err();
        assert_eq!(e.to_string(), "/tmp: not a regular file or block device");
        let e = Disk::open(Path::new("/dev/null"), ro, 512).unwrap_err();
        assert!(matches!(e, Error::NotAFile(_)), "{e}");
        let e = Disk::open(Path::new("/tmp"), OpenFlags::default(), 512).unwrap_err();
        assert!(e.to_string().contains("Is a directory"), "{e}");
    }

    #[test]
    fn writers_exclude_everyone_readers_share() {
        let f = TempFile::new(4096);
        let ro = OpenFlags {
            readonly: true,
            ..OpenFlags::default()
        };
        let a = Disk::open(f.path(), ro, 512).unwrap();
        let b = Disk::open(f.path(), ro, 512).unwrap();
        let e = Disk::open(f.path(), OpenFlags::default(), 512).unwrap_err();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        assert!(
            e.to_string().contains("in use by another VM (locked)"),
            "{e}"
        );
        drop((a, b));
        let w = Disk::open(f.path(), OpenFlags::default(), 512).unwrap();
        assert_eq!(w.size(), 4096);
        assert!(matches!(
            Disk::open(f.path(), ro, 512),
            Err(Error::Locked(_))
        ));
    }

    #[test]
    fn derived_serial_fits() {
        let f = TempFile::new(512);
        let d = Disk::open(f.path(), OpenFlags::default(), 512).unwrap();
        let s = d.derived_serial().unwrap();
        assert!(!s.is_empty() && s.len() <= SERIAL_LEN);
        assert_eq!(s, d.derived_serial().unwrap());
    }

    #[test]
    fn pieces_cover_the_requested_range() {
        let mut a = [0u8; 3];
        let mut b = [0u8; 5];
        let bufs = [
            VolatileSlice::from(&mut a[..]),
            VolatileSlice::from(&mut b[..]),
        ];
        let mut seen = Vec::new();
        for_each_piece(&bufs, 2, 4, |s, at| seen.push((s.len(), at)));
        assert_eq!(seen, [(1, 0), (3, 1)]);
    }

    #[test]
    fn write_zeroes_falls_back_and_stays_in_range() {
        let f = TempFile::with_bytes(&[0xaa; 4096]);
        let d = Disk::open(f.path(), OpenFlags::default(), 512).unwrap();
        d.write_zeroes_slowly(512, 1024).unwrap();
        d.write_zeroes(2048, 512, true).unwrap();
        let data = std::fs::read(f.path()).unwrap();
        assert!(data[..512].iter().all(|&b| b == 0xaa));
        assert!(data[512..1536].iter().all(|&b| b == 0));
        assert!(data[1536..2048].iter().all(|&b| b == 0xaa));
        assert!(data[2048..2560].iter().all(|&b| b == 0));
        assert!(data[2560..].iter().all(|&b| b == 0xaa));
    }
}
