//! The API's unix socket on the filesystem: who may connect, how it is
//! created, and how it goes away.
//!
//! - A socket at the path that nobody answers on (a dead vfvm's) is
//!   replaced; a live one, or a path that is not a socket, is refused.
//! - The socket is created mode 0600 (0660 with a group) whatever the
//!   umask: it is bound inside a fresh 0700 directory next to the path,
//!   given its mode (and group) there, and only then linked at the path
//!   (`link(2)` fails if something appeared there meanwhile).
//! - Every connection's peer is checked with `SO_PEERCRED` as well: root,
//!   the socket's owner, or, with a group, that group's members.
//! - It is removed at exit, unless another file has replaced it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use log::debug;

use crate::server::Error;

/// Who may use the API besides root and the socket's owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// A group whose members may use the API (`--api-group`): the socket
    /// gets this group and mode 0660.
    pub group: Option<u32>,
}

/// A connecting process, as `SO_PEERCRED` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id, if known (to read its supplementary groups).
    pub pid: Option<i32>,
}

impl Access {
    /// Whether `peer` may use the API of a vfvm running as `owner`.
    pub fn allows(&self, peer: Peer, owner: u32) -> bool {
        if peer.uid == 0 || peer.uid == owner {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        peer.gid == group
            || peer
                .pid
                .is_some_and(|pid| supplementary_groups(pid).contains(&group))
    }

    fn mode(&self) -> u32 {
        if self.group.is_some() {
            0o660
        } else {
            0o600
        }
    }
}

/// The supplementary groups of process `pid` (`Groups:` in its status).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The bound socket; dropping it does not remove it (see [`remove`]).
pub(crate) struct BoundSocket {
    pub(crate) listener: UnixListener,
    /// (st_dev, st_ino) of the socket file, to remove only our own.
    pub(crate) id: (u64, u64),
}

/// Creates the socket at `path` (see the module doc).
pub(crate) fn bind(path: &Path, access: Access) -> Result<BoundSocket, Error> {
    let at = |source: io::Error| Error::Socket {
        path: path.to_owned(),
        source,
    };
    remove_stale_socket(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        at(io::Error::new(
            io::ErrorKind::InvalidInput,
            "names a directory",
        ))
    })?;
    let private = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of a vfvm that had our pid and died here: only ever ours.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(at)?;
    let result = bind_privately(&private.join("s"), path, access);
    let _ = std::fs::remove_file(private.join("s"));
    if let Err(e) = std::fs::remove_dir(&private) {
        debug!("cannot remove {}: {e}", private.display());
    }
    result.map_err(at)
}

fn bind_privately(tmp: &Path, path: &Path, access: Access) -> io::Result<BoundSocket> {
    let listener = UnixListener::bind(tmp)?;
    if let Some(gid) = access.group {
        std::os::unix::fs::chown(tmp, None, Some(gid))?;
    }
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(access.mode()))?;
    std::fs::hard_link(tmp, path)?;
    let md = std::fs::symlink_metadata(path)?;
    Ok(BoundSocket {
        listener,
        id: (md.dev(), md.ino()),
    })
}

/// Removes `path` if it is still the socket `id` names.
pub(crate) fn remove(path: &Path, id: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(md) if (md.dev(), md.ino()) == id => {
            if let Err(e) = std::fs::remove_file(path) {
                log::warn!("cannot remove the API socket {}: {e}", path.display());
            }
        }
        Ok(_) => debug!("{} is no longer our socket; left alone", path.display()),
        Err(_) => {}
    }
}

/// Removes `path` if it is a socket nobody answers on.
fn remove_stale_socket(path: &Path) -> Result<(), Error> {
    let at = |source: io::Error| Error::Socket {
        path: path.to_owned(),
        source,
    };
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(at(e)),
    };
    if !md.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            debug!("removing stale API socket {}", path.display());
            std::fs::remove_file(path).map_err(at)
        }
        Err(e) => Err(at(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers() {
        let open = Access::default();
        let me = 1000;
        let peer = |uid, gid| Peer {
            uid,
            gid,
            pid: None,
        };
        assert!(open.allows(peer(0, 0), me), "root");
        assert!(open.allows(peer(me, 5), me), "the owner");
        assert!(!open.allows(peer(1001, 1001), me), "someone else");
        let group = Access { group: Some(77) };
        assert!(group.allows(peer(1001, 77), me), "primary group");
        assert!(!group.allows(peer(1001, 78), me));
        // Supplementary groups, read from /proc for the peer's pid.
        let mine = supplementary_groups(std::process::id() as i32);
        if let Some(&g) = mine.iter().find(|&&g| g != 0) {
            let p = Peer {
                uid: 4242,
                gid: 4242,
                pid: Some(std::process::id() as i32),
            };
            assert!(Access { group: Some(g) }.allows(p, me));
        }
        assert!(supplementary_groups(-1).is_empty());
    }
}
