//! virtio-blk: a disk image as a virtio block device.
//!
//! - [`device`]: the [`Block`] device: features, configuration, activation;
//! - [`request`]: descriptor chains to validated requests;
//! - [`disk`]: the image file: opening, positioned I/O;
//! - [`lock`]: image locks, as vfvm and QEMU take them;
//! - `worker`: the I/O threads (each serving one queue or several): the
//!   request loop, budget, batched completions;
//! - `uring`: requests in flight through io_uring;
//! - [`metrics`]: counters per queue, for the API.

pub mod device;
pub mod disk;
pub mod lock;
pub mod metrics;
pub mod request;
#[cfg(test)]
mod tests;
mod uring;
mod worker;

use std::io;
use std::path::PathBuf;

pub use device::{check_sector_sizes, Block, BlockConfig, SectorSizeError, MAX_QUEUES};
pub use metrics::{BlockMetrics, Counter, QueueMetrics};

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
    /// Neither a regular file nor a block device (a directory, a FIFO...).
    #[error("{}: not a regular file or block device", .0.display())]
    NotAFile(PathBuf),
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
    #[error("{0}")]
    SectorSize(#[source] device::SectorSizeError),
    /// A `serial=` too long for GET_ID.
    #[error("serial number {0:?} is longer than 20 bytes")]
    SerialTooLong(String),
    /// The serial could not be derived from the file.
    #[error("{}: cannot read the file's identity for a serial number: {source}", path.display())]
    Serial { path: PathBuf, source: io::Error },
    /// A queue count the device cannot offer.
    #[error("num_queues={0}: a disk has 1 to {max} queues", max = device::MAX_QUEUES)]
    QueueCount(u16),
    /// More I/O threads than queues, or none.
    #[error("iothreads={threads}: a disk with {queues} queue(s) has 1 to {queues} I/O threads")]
    ThreadCount { threads: u16, queues: u16 },
    /// No eventfd for the queue.
    #[error("cannot create the queue eventfd: {0}")]
    EventFd(io::Error),
}
