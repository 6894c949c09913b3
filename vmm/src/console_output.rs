//! Where COM1's output goes: stdout or a file, written by a thread of its
//! own so that a vCPU never blocks in a write.
//!
//! - [`QueuedOutput`] is what the UART writes to. Bytes go into a bounded
//!   queue ([`QUEUE_MAX`]) that a `console-out` thread drains into the real
//!   writer. While the queue is full (stdout not read, a stopped `less`),
//!   the vCPU waits, so no output is lost, but only until the VM is asked
//!   to stop: from then on writes return at once and the bytes are
//!   dropped, so a stalled stdout cannot hold up `stop()`. A write error
//!   (EPIPE) ends the output with one warning; the VM goes on.
//! - [`ConsoleFile`] is the `-l com1,PATH` file: opened without following
//!   symlinks, mode 0600 when created, appended to, and kept under
//!   [`FILE_MAX`] bytes by moving a full file to `PATH.1` (replacing the
//!   previous one) and starting a new one. The guest decides what goes into
//!   it, so it must not be able to fill the host's disk.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::warn;

use crate::exit::ExitSignal;
use crate::sandbox::{Sandbox, ThreadKind};

/// Bytes of guest output held while the writer is behind.
pub const QUEUE_MAX: usize = 64 * 1024;
/// Largest console file before it is moved to `PATH.1`.
pub const FILE_MAX: u64 = 64 * 1024 * 1024;
/// How often a vCPU waiting for queue space checks whether the VM stops.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long dropping the output waits for the queue to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    queue: VecDeque<u8>,
    /// No more input: the writer thread drains the queue and ends.
    closed: bool,
    /// The writer failed: output is dropped.
    broken: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when bytes arrive or the output closes.
    data: Condvar,
    /// Signalled when the writer took bytes out of the queue.
    space: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The UART's writer: a bounded queue in front of a writer thread.
pub struct QueuedOutput {
    shared: Arc<Shared>,
    exit: Arc<ExitSignal>,
    thread: Option<JoinHandle<()>>,
}

impl QueuedOutput {
    /// Starts the thread writing to `out`, in its sandbox; `exit` tells
    /// when to stop waiting for a stalled writer.
    pub fn new(
        out: Box<dyn Write + Send>,
        exit: Arc<ExitSignal>,
        sandbox: &Arc<Sandbox>,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            sandbox.spawn(ThreadKind::ConsoleOut, "console-out".into(), move || {
                drain(&shared, out)
            })?
        };
        Ok(QueuedOutput {
            shared,
            exit,
            thread: Some(thread),
        })
    }
}

/// The writer thread: moves queued bytes to `out` until closed and empty.
fn drain(shared: &Shared, mut out: Box<dyn Write + Send>) {
    loop {
        let chunk: Vec<u8> = {
            let mut st = shared.lock();
            while st.queue.is_empty() && !st.closed {
                st = shared.data.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.queue.is_empty() {
                return;
            }
            let chunk = st.queue.drain(..).collect();
            shared.space.notify_all();
            chunk
        };
        if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
            warn!("console: cannot write the guest's output: {e}; it is dropped from now on");
            let mut st = shared.lock();
            st.broken = true;
            st.queue.clear();
            shared.space.notify_all();
            return;
        }
    }
}

impl Write for QueuedOutput {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut st = self.shared.lock();
        let mut rest = data;
        while !rest.is_empty() && !st.broken {
            let room = QUEUE_MAX.saturating_sub(st.queue.len());
            if room > 0 {
                let n = room.min(rest.len());
                st.queue.extend(&rest[..n]);
                rest = &rest[n..];
                self.shared.data.notify_one();
                continue;
            }
            if self.exit.reason().is_some() {
                // Stopping: the rest is dropped rather than waited for.
                break;
            }
            st = self
                .shared
                .space
                .wait_timeout(st, STOP_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedOutput {
    /// Lets the thread write what is queued, waiting for it at most
    /// [`DRAIN_TIMEOUT`]: a thread stuck in a write is left behind.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.data.notify_all();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            warn!("console: output is stalled; what the guest wrote last is lost");
        }
    }
}

/// The `-l com1,PATH` file, size-capped by rotation.
pub struct ConsoleFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

impl ConsoleFile {
    /// Opens `path` for appending (see the module doc), capped at `max` bytes.
    pub fn open(path: &Path, max: u64) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(ConsoleFile {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max,
        })
    }

    /// Moves the full file to `PATH.1` and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl Write for ConsoleFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size.saturating_add(data.len() as u64) > self.max {
            self.rotate()?;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the console file could not be reopened"))?;
        // What fits; the rest goes into the next file.
        let room = usize::try_from(self.max.saturating_sub(self.size)).unwrap_or(usize::MAX);
        let n = file.write(&data[..data.len().min(room.max(1))])?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::mpsc;

    use crate::config::SeccompMode;
    use crate::exit::VmExit;

    /// Threads without filters: this test process goes on after them.
    fn unfiltered() -> Arc<Sandbox> {
        Sandbox::new(SeccompMode::Off).unwrap()
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("vfvm-console-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn console_file_is_private_appended_and_refuses_symlinks() {
        let dir = Scratch::new("open");
        let path = dir.0.join("console.log");
        std::fs::write(&path, b"before\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = ConsoleFile::open(&path, FILE_MAX).unwrap();
        f.write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"before\nafter\n",
            "appended"
        );

        let fresh = dir.0.join("new.log");
        ConsoleFile::open(&fresh, FILE_MAX).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let target = dir.0.join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.0.join("link.log");
        symlink(&target, &link).unwrap();
        let err = ConsoleFile::open(&link, FILE_MAX)
            .err()
            .expect("a symlink is refused");
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn console_file_stays_under_its_cap() {
        let dir = Scratch::new("cap");
        let path = dir.0.join("console.log");
        let mut f = ConsoleFile::open(&path, 100).unwrap();
        for i in 0..1000u32 {
            f.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        let now = std::fs::read(&path).unwrap();
        let old = std::fs::read(dir.0.join("console.log.1")).unwrap();
        assert!(
            now.len() <= 100 && (90..=100).contains(&old.len()),
            "{} {}",
            now.len(),
            old.len()
        );
        assert!(String::from_utf8(now).unwrap().ends_with("line 999\n"));
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
    }

    /// A writer that blocks until told to go on, like a stdout nobody reads.
    struct Stalled(mpsc::Receiver<()>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stalled {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            self.1.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_holds_the_vcpu_only_until_the_vm_stops() {
        let (go, wait) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut out = QueuedOutput::new(
            Box::new(Stalled(wait, written.clone())),
            exit.clone(),
            &unfiltered(),
        )
        .unwrap();
        let (done_tx, done) = mpsc::channel();
        let vcpu = std::thread::spawn(move || {
            // More than the queue holds while the writer is stuck.
            for _ in 0..4 * QUEUE_MAX {
                out.write_all(b"x").unwrap();
            }
            done_tx.send(()).unwrap();
            out
        });
        assert!(
            done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the vCPU waits while the VM runs: nothing is lost"
        );
        exit.request(VmExit::PowerOff);
        done.recv_timeout(Duration::from_secs(2))
            .expect("a stop request releases the vCPU");
        let out = vcpu.join().unwrap();
        // The writer is still stuck: dropping the output does not wait forever.
        let t = Instant::now();
        drop(out);
        assert!(t.elapsed() < DRAIN_TIMEOUT + Duration::from_secs(1));
        drop(go);
    }

    #[test]
    fn output_reaches_the_writer_in_order_and_a_broken_one_is_survived() {
        let (go, wait) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut out = QueuedOutput::new(
            Box::new(Stalled(wait, written.clone())),
            exit,
            &unfiltered(),
        )
        .unwrap();
        for _ in 0..100 {
            go.send(()).unwrap();
        }
        for i in 0..50u8 {
            out.write_all(&[i]).unwrap();
        }
        drop(out);
        assert_eq!(*written.lock().unwrap(), (0..50).collect::<Vec<u8>>());

        struct Epipe;
        impl Write for Epipe {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::EPIPE))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut out = QueuedOutput::new(Box::new(Epipe), exit, &unfiltered()).unwrap();
        for _ in 0..4 * QUEUE_MAX {
            out.write_all(b"y").unwrap();
        }
    }
}
