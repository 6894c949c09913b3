//! virtio-blk: a disk image as a virtio block device.
//!
//! - [`device`]: the [`Block`] device: features, configuration, activation;
//! - [`request`]: descriptor chains to validated requests;
//! - [`disk`]: the image file: opening, locking, positioned I/O;
//! - [`handler`]: the request loop on the VMM's event thread;
//! - [`metrics`]: counters for the API.

pub mod device;
pub mod disk;
pub mod handler;
pub mod metrics;
pub mod request;

use std::io;
use std::path::PathBuf;

pub use device::{Block, BlockConfig};
pub use handler::BlockHandler;
pub use metrics::{BlockMetrics, BlockMetricsSnapshot};

/// Errors of setting up a block device. Each names the image and says what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image does not exist.
    #[error("{}: disk image not found; check the path", .0.display())]
    NotFound(PathBuf),
    /// The image cannot be opened with the requested access.
    #[error(
        "{}: permission denied opening it for {}; fix its permissions{}",
        path.display(),
        if *readonly { "reading" } else { "writing" },
        if *readonly { "" } else { " or attach it read-only (ro)" }
    )]
    Permission { path: PathBuf, readonly: bool },
    /// `nocache` on a filesystem without `O_DIRECT`.
    #[error("{}: its filesystem does not support O_DIRECT; remove the nocache option", .0.display())]
    DirectUnsupported(PathBuf),
    /// Any other open failure.
    #[error("{}: cannot open disk image: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    /// Another process holds a conflicting lock.
    #[error("{} is in use by another VM (locked)", .0.display())]
    Locked(PathBuf),
    /// Locking failed for another reason.
    #[error("{}: cannot lock disk image: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
    /// The size cannot be found.
    #[error("{}: cannot find the disk image's size: {source}", path.display())]
    Size { path: PathBuf, source: io::Error },
    /// The image is smaller than one logical sector.
    #[error("{}: disk image is {size} bytes, less than one {sector}-byte sector", path.display())]
    TooSmall {
        path: PathBuf,
        size: u64,
        sector: u32,
    },
    /// Sector sizes the device cannot present.
    #[error(
        "invalid sector sizes {logical}/{physical}: the logical size must be a power of two \
         from 512 to 4096 and the physical size a power of two from it to 65536"
    )]
    SectorSize { logical: u32, physical: u32 },
    /// A `serial=` too long for GET_ID.
    #[error("serial number {0:?} is longer than 20 bytes")]
    SerialTooLong(String),
    /// The serial could not be derived from the file.
    #[error("{}: cannot read the file's identity for a serial number: {source}", path.display())]
    Serial { path: PathBuf, source: io::Error },
    /// No eventfd for the queue.
    #[error("cannot create the queue eventfd: {0}")]
    EventFd(io::Error),
}
