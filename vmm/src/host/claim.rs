//! Which VM holds which PCI device: one lock file per device,
//! `/run/vfvm/DDDD:BB:SS.F.lock`, held with `flock` for as long as the VM
//! uses the device and naming the holder (`vm=NAME pid=PID`). The kernel
//! drops the lock when the holder dies, however it dies, so a lock that
//! can be taken means nobody holds the device, and a journal record
//! ([`super::journal`]) of a device whose lock can be taken belongs to a
//! vfvm that is gone.
//!
//! Taking the lock is atomic, which makes VF pools safe against VMs that
//! start at the same moment: [`claim_first_free`] takes the first device
//! of a list whose lock it gets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The default directory for locks and the journal.
pub const RUN_DIR: &str = "/run/vfvm";

/// A device could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another live process holds it.
    #[error("{device}: in use by {holder} ({} is locked)", path.display())]
    InUse {
        device: String,
        holder: Holder,
        path: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("{device}: cannot {what} {}: {source}", path.display())]
    Io {
        device: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Who holds a device, as its lock file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The VM's name (or `vfvm iov` while it changes the device).
    pub vm: String,
    /// Its process.
    pub pid: u32,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VM {} (pid {})", self.vm, self.pid)
    }
}

impl Holder {
    fn parse(text: &str) -> Holder {
        let mut h = Holder {
            vm: "another vfvm".to_string(),
            pid: 0,
        };
        for word in text.split_whitespace() {
            match word.split_once('=') {
                Some(("vm", v)) => h.vm = v.to_string(),
                Some(("pid", p)) => h.pid = p.parse().unwrap_or(0),
                _ => {}
            }
        }
        h
    }
}

/// A held device; dropping it releases the device.
#[derive(Debug)]
pub struct Claim {
    device: String,
    _file: File,
}

impl Claim {
    /// The claimed device's address.
    pub fn device(&self) -> &str {
        &self.device
    }
}

fn lock_path(dir: &Path, device: &str) -> PathBuf {
    dir.join(format!("{device}.lock"))
}

fn flock(file: &File, how: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    Holder::parse(&text)
}

/// Claims `device` for `vm` (this process), or says who holds it.
pub fn claim(dir: &Path, device: &str, vm: &str) -> Result<Claim, Error> {
    let io_err = |what, path: &Path| {
        let device = device.to_string();
        let path = path.to_path_buf();
        move |source| Error::Io {
            device,
            what,
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let path = lock_path(dir, device);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("create", &path))?;
    // A reader ([`holder`]) holds a shared lock for a moment: when the
    // file names no live process, try again briefly before giving up.
    let mut tries = 0;
    while !flock(&file, libc::LOCK_EX).map_err(io_err("lock", &path))? {
        let holder = read_holder(&mut file);
        tries += 1;
        if alive(holder.pid) || tries == 20 {
            return Err(Error::InUse {
                device: device.to_string(),
                holder,
                path,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let owner = format!("vm={vm} pid={}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(owner.as_bytes()))
        .map_err(io_err("write", &path))?;
    Ok(Claim {
        device: device.to_string(),
        _file: file,
    })
}

/// Who holds `device`, if anyone does now.
pub fn holder(dir: &Path, device: &str) -> Option<Holder> {
    let mut file = File::open(lock_path(dir, device)).ok()?;
    match flock(&file, libc::LOCK_SH) {
        Ok(false) => Some(read_holder(&mut file)),
        _ => None,
    }
}

/// Claims the first device of `candidates` nobody holds. `Err` lists who
/// holds each one (empty when there were no candidates).
pub fn claim_first_free(
    dir: &Path,
    candidates: &[String],
    vm: &str,
) -> Result<Claim, Vec<(String, Holder)>> {
    let mut held = Vec::new();
    for device in candidates {
        match claim(dir, device, vm) {
            Ok(c) => return Ok(c),
            Err(Error::InUse { holder, .. }) => held.push((device.clone(), holder)),
            Err(e) => log::warn!("{e}"),
        }
    }
    Err(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> vmm_sys_util::tempdir::TempDir {
        vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/vfvm-claim-").unwrap()
    }

    #[test]
    fn a_claim_names_its_holder_until_dropped() {
        let d = dir();
        let p = d.as_path();
        assert_eq!(holder(p, "0000:01:10.0"), None);
        let c = claim(p, "0000:01:10.0", "vm1").unwrap();
        assert_eq!(c.device(), "0000:01:10.0");
        let me = Holder {
            vm: "vm1".into(),
            pid: std::process::id(),
        };
        assert_eq!(holder(p, "0000:01:10.0"), Some(me.clone()));
        let e = claim(p, "0000:01:10.0", "vm2").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "0000:01:10.0: in use by VM vm1 (pid {}) ({}/0000:01:10.0.lock is locked)",
                std::process::id(),
                p.display()
            )
        );
        drop(c);
        assert_eq!(holder(p, "0000:01:10.0"), None);
        // A longer owner before a shorter one leaves no trailing bytes.
        drop(claim(p, "0000:01:10.0", "a-much-longer-name").unwrap());
        let c = claim(p, "0000:01:10.0", "b").unwrap();
        assert_eq!(holder(p, "0000:01:10.0").unwrap().vm, "b");
        drop(c);
    }

    #[test]
    fn pools_take_the_first_free_device() {
        let d = dir();
        let p = d.as_path();
        let vfs: Vec<String> = ["0000:01:10.0", "0000:01:10.2"].map(String::from).to_vec();
        let a = claim_first_free(p, &vfs, "a").unwrap();
        let b = claim_first_free(p, &vfs, "b").unwrap();
        assert_eq!((a.device(), b.device()), ("0000:01:10.0", "0000:01:10.2"));
        let held = claim_first_free(p, &vfs, "c").unwrap_err();
        let names: Vec<(&str, &str)> = held
            .iter()
            .map(|(d, h)| (d.as_str(), h.vm.as_str()))
            .collect();
        assert_eq!(names, [("0000:01:10.0", "a"), ("0000:01:10.2", "b")]);
        drop(a);
        assert_eq!(
            claim_first_free(p, &vfs, "c").unwrap().device(),
            "0000:01:10.0"
        );
        assert!(claim_first_free(p, &[], "c").unwrap_err().is_empty());
    }

    #[test]
    fn holders_in_other_processes_are_seen() {
        // flock locks belong to open file descriptions: a second open in
        // this process stands for another process.
        let d = dir();
        let p = d.as_path();
        let _c = claim(p, "0000:01:10.4", "vm9").unwrap();
        let mut f = File::open(lock_path(p, "0000:01:10.4")).unwrap();
        assert!(!flock(&f, libc::LOCK_EX).unwrap());
        assert_eq!(read_holder(&mut f).vm, "vm9");
    }
}
