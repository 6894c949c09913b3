//! Image locks: who else may open a disk image while a VM has it.
//!
//! Two kinds, both taken non-blocking when the image is opened and both
//! belonging to the open file, so they vanish when vfvm exits, even on a
//! crash:
//!
//! - a whole-file `flock`, exclusive for a writable image and shared for a
//!   read-only one (other vfvm processes, bhyve-style tools);
//! - the open-file-description (OFD) byte-range locks QEMU's file-posix
//!   driver takes (and therefore libvirt-managed VMs), so vfvm and QEMU see
//!   each other. QEMU encodes each "permission" of the block layer as one
//!   byte: holding permission `i` is a shared lock on byte `100 + i`,
//!   refusing to share it with others a shared lock on byte `200 + i`.
//!   A user is admitted when nobody refuses a permission it holds (no lock
//!   on `200 + i`) and nobody holds a permission it refuses (no lock on
//!   `100 + i`).
//!
//! The permissions: `consistent read` (0), `write` (1), `write unchanged`
//! (2), `resize` (3). A vfvm disk holds consistent read, and write unless
//! `ro`; it shares everything but write. So any number of readers share an
//! image; a writer keeps out everybody else, readers too (they would see a
//! filesystem changing under them), as QEMU does for a writable drive
//! without `share-rw`.

use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::AsRawFd;

/// The byte of QEMU's first "holds permission" lock.
const PERM_BASE: i64 = 100;
/// The byte of QEMU's first "refuses to share permission" lock.
const SHARED_BASE: i64 = 200;
/// QEMU's `BLK_PERM_CONSISTENT_READ` and `BLK_PERM_WRITE`, as bit numbers
/// (then come `WRITE_UNCHANGED` and `RESIZE`, which vfvm shares).
const PERM_READ: i64 = 0;
const PERM_WRITE: i64 = 1;

/// Why an image could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another open file holds a conflicting lock.
    Conflict,
    /// The lock calls failed.
    Io(io::Error),
}

/// Locks `file` for a disk that writes unless `readonly`.
pub fn lock_image(file: &File, readonly: bool) -> Result<(), LockError> {
    let locked = if readonly {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(LockError::Conflict),
        Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    let held: &[i64] = if readonly {
        &[PERM_READ]
    } else {
        &[PERM_READ, PERM_WRITE]
    };
    let refused = [PERM_WRITE];
    // Take ours first, then look for others', as QEMU does: two openers
    // racing both see each other.
    for byte in held.iter().map(|p| PERM_BASE + p) {
        ofd_lock(file, byte).map_err(ofd_error)?;
    }
    for byte in refused.iter().map(|p| SHARED_BASE + p) {
        ofd_lock(file, byte).map_err(ofd_error)?;
    }
    let conflicting = held
        .iter()
        .map(|p| SHARED_BASE + p)
        .chain(refused.iter().map(|p| PERM_BASE + p));
    for byte in conflicting {
        if ofd_locked_by_others(file, byte).map_err(LockError::Io)? {
            return Err(LockError::Conflict);
        }
    }
    Ok(())
}

fn ofd_error(e: io::Error) -> LockError {
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => LockError::Conflict,
        _ => LockError::Io(e),
    }
}

fn flock_at(kind: libc::c_int, byte: i64) -> libc::flock {
    // SAFETY: `flock` is plain data; all zeros is a valid value (and the
    // `l_pid` OFD locks require).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl
}

/// A shared OFD lock on one byte (QEMU takes only shared ones).
fn ofd_lock(file: &File, byte: i64) -> io::Result<()> {
    let fl = flock_at(libc::F_RDLCK, byte);
    // SAFETY: `fl` is a valid flock that outlives the call; the kernel only
    // reads it.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether another open file holds a lock on `byte` (an exclusive lock
/// there would conflict).
fn ofd_locked_by_others(file: &File, byte: i64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK, byte);
    // SAFETY: `fl` is a valid flock that outlives the call; the kernel
    // writes the conflicting lock, if any, into it.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::TempFile;

    const PERM_COUNT: i64 = 4;

    /// What QEMU does for a drive (`raw_apply_lock_bytes` then
    /// `raw_check_lock_bytes`): lock the bytes of the held permissions and of
    /// the refused ones, then fail if others lock the opposite bytes.
    fn qemu_open(path: &std::path::Path, held: &[i64], shared: &[i64]) -> Option<File> {
        let f = File::options().read(true).write(true).open(path).unwrap();
        let refused: Vec<i64> = (0..PERM_COUNT).filter(|p| !shared.contains(p)).collect();
        for p in held {
            ofd_lock(&f, PERM_BASE + p).ok()?;
        }
        for p in &refused {
            ofd_lock(&f, SHARED_BASE + p).ok()?;
        }
        let conflict = held
            .iter()
            .map(|p| SHARED_BASE + p)
            .chain(refused.iter().map(|p| PERM_BASE + p))
            .any(|b| ofd_locked_by_others(&f, b).unwrap());
        (!conflict).then_some(f)
    }

    const QEMU_RW: (&[i64], &[i64]) = (&[0, 1], &[0, 2, 3]);
    const QEMU_RO: (&[i64], &[i64]) = (&[0], &[0, 2, 3]);

    fn open(path: &std::path::Path, readonly: bool) -> Result<File, LockError> {
        let f = File::options()
            .read(true)
            .write(!readonly)
            .open(path)
            .unwrap();
        lock_image(&f, readonly).map(|()| f)
    }

    #[test]
    fn qemu_and_vfvm_exclude_each_other() {
        let img = TempFile::new(4096);
        let p = img.path();
        // QEMU has it writable: vfvm can open it neither way.
        let q = qemu_open(p, QEMU_RW.0, QEMU_RW.1).expect("QEMU alone opens it");
        assert!(matches!(open(p, false), Err(LockError::Conflict)));
        assert!(matches!(open(p, true), Err(LockError::Conflict)));
        drop(q);
        // vfvm has it writable: QEMU can open it neither way.
        let v = open(p, false).unwrap();
        assert!(qemu_open(p, QEMU_RW.0, QEMU_RW.1).is_none());
        assert!(qemu_open(p, QEMU_RO.0, QEMU_RO.1).is_none());
        drop(v);
        // Readers share, whoever they are; a writer is kept out.
        let v = open(p, true).unwrap();
        let q = qemu_open(p, QEMU_RO.0, QEMU_RO.1).expect("two readers");
        assert!(qemu_open(p, QEMU_RW.0, QEMU_RW.1).is_none());
        drop(v);
        assert!(matches!(open(p, false), Err(LockError::Conflict)));
        let v2 = open(p, true).unwrap();
        drop((q, v2));
        assert!(open(p, false).is_ok());
    }
}
