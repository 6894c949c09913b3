//! The user's side of COM1: stdin into the UART, the terminal in raw mode.
//!
//! Stdin may be a terminal (put in raw mode; [`TerminalGuard`] restores it),
//! a pipe, or something that cannot be polled such as /dev/null or a
//! regular file (then there is no input). EOF stops the reading, not the VM.
//! Input is taken only as fast as the guest drains the UART's FIFO.

use std::io;
use std::sync::{Arc, Mutex};

use devices::serial::Serial;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use log::{debug, warn};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::terminal::Terminal;

const STDIN: i32 = libc::STDIN_FILENO;

/// Puts stdin in raw mode while alive, if it is a terminal.
pub struct TerminalGuard {
    raw: bool,
}

impl TerminalGuard {
    /// Raw mode for stdin when it is a terminal; nothing otherwise.
    pub fn new() -> Self {
        let stdin = io::stdin();
        let lock = stdin.lock();
        // SAFETY: isatty only inspects the descriptor.
        let raw = unsafe { libc::isatty(STDIN) } == 1 && lock.set_raw_mode().is_ok();
        if raw {
            install_restore_on_panic();
        }
        TerminalGuard { raw }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.raw {
            let _ = io::stdin().lock().set_canon_mode();
        }
    }
}

fn install_restore_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = io::stdin().lock().set_canon_mode();
        previous(info);
    }));
}

/// Feeds stdin to the UART on the event loop.
pub struct ConsoleInput {
    serial: Arc<Mutex<Serial>>,
    input_ready: EventFd,
    pending: Vec<u8>,
    watching_stdin: bool,
    eof: bool,
}

impl ConsoleInput {
    /// Input for `serial`, resumed through `input_ready` (the UART signals
    /// it when the guest emptied the FIFO).
    pub fn new(serial: Arc<Mutex<Serial>>, input_ready: EventFd) -> Self {
        ConsoleInput {
            serial,
            input_ready,
            pending: Vec::new(),
            watching_stdin: false,
            eof: false,
        }
    }

    /// Moves pending bytes into the FIFO as far as they fit.
    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        match serial.enqueue(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(e) => warn!("console: input dropped: {e}"),
        }
    }

    fn watch_stdin(&mut self, ops: &mut EventOps, on: bool) {
        if on == self.watching_stdin || (on && self.eof) {
            return;
        }
        let events = Events::new_raw(STDIN, EventSet::IN);
        let result = if on {
            ops.add(events)
        } else {
            ops.remove(events)
        };
        match result {
            Ok(()) => self.watching_stdin = on,
            Err(e) => {
                // /dev/null and regular files cannot be polled: no input.
                debug!("console: stdin not watched: {e:?}");
                self.eof = true;
            }
        }
    }

    fn read_stdin(&mut self, ops: &mut EventOps) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer of the given length.
        let n = unsafe { libc::read(STDIN, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => {
                self.watch_stdin(ops, false);
                self.eof = true;
            }
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted && e.kind() != io::ErrorKind::WouldBlock {
                    warn!("console: stdin: {e}; input stops");
                    self.watch_stdin(ops, false);
                    self.eof = true;
                }
            }
            n => {
                self.pending.extend_from_slice(&buf[..n as usize]);
                self.flush_pending();
                if !self.pending.is_empty() {
                    // Wait for the guest to drain the FIFO.
                    self.watch_stdin(ops, false);
                }
            }
        }
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.input_ready, EventSet::IN)) {
            warn!("console: cannot watch the UART: {e:?}");
        }
        self.watch_stdin(ops, true);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == STDIN {
            if events
                .event_set()
                .intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR)
            {
                self.read_stdin(ops);
            }
        } else {
            let _ = self.input_ready.read();
            self.flush_pending();
            if self.pending.is_empty() {
                self.watch_stdin(ops, true);
            }
        }
    }
}
