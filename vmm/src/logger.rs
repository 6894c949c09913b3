//! The stderr logger: `vfvm: LEVEL: message`, level from `VFVM_LOG`
//! (error, warn, info, debug, trace; default info).
//!
//! A guest can make a device log on every bad register write or request,
//! hundreds of thousands of times a second, so lines are rate-limited per
//! source: the text before a message's first `": "` (devices begin their
//! messages with their name: `virtio-pci:`, `pci 04.0:`, `0000:01:10.0:`),
//! or the message itself. Each source may log [`BURST`] lines per
//! [`WINDOW`]; what it logs beyond that is counted, and one
//! `SOURCE: suppressed N similar messages` line reports the count when the
//! source next logs in a new window, or when vfvm exits.
//!
//! Writing never panics: a closed or full stderr (EPIPE) loses the line,
//! not the VM.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Lines one source may log per [`WINDOW`].
pub const BURST: u32 = 10;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Longest source key; longer prefixes are cut.
const KEY_MAX: usize = 64;
/// Most sources tracked; beyond, new sources share one key.
const KEYS_MAX: usize = 512;
/// The key shared by sources beyond [`KEYS_MAX`].
const OVERFLOW_KEY: &str = "(other sources)";

/// One source's current window.
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
    level: Level,
}

/// Counts lines per source and decides which are written.
pub struct RateLimiter {
    sources: HashMap<String, Window>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        RateLimiter {
            sources: HashMap::new(),
        }
    }

    /// Whether a line from `key` at `now` is written: `Some(n)` if it is,
    /// with `n` lines suppressed in the source's previous window (to
    /// report first), `None` if it is suppressed.
    pub fn check(&mut self, key: &str, level: Level, now: Instant) -> Option<u64> {
        if !self.sources.contains_key(key) && self.sources.len() >= KEYS_MAX {
            self.sources
                .retain(|_, w| w.suppressed > 0 || now.duration_since(w.start) < WINDOW);
        }
        let key = if self.sources.contains_key(key) || self.sources.len() < KEYS_MAX {
            key
        } else {
            OVERFLOW_KEY
        };
        let w = self.sources.entry(key.to_string()).or_insert(Window {
            start: now,
            logged: 0,
            suppressed: 0,
            level,
        });
        let mut reported = 0;
        if now.duration_since(w.start) >= WINDOW {
            reported = std::mem::take(&mut w.suppressed);
            w.start = now;
            w.logged = 0;
        }
        if w.logged < BURST {
            w.logged += 1;
            Some(reported)
        } else {
            w.suppressed += 1;
            // The report goes out at the level of the most severe line it
            // stands for.
            w.level = w.level.min(level);
            None
        }
    }

    /// Takes every source's count of suppressed lines not yet reported.
    pub fn take_suppressed(&mut self) -> Vec<(String, Level, u64)> {
        let mut out: Vec<_> = self
            .sources
            .iter_mut()
            .filter(|(_, w)| w.suppressed > 0)
            .map(|(k, w)| (k.clone(), w.level, std::mem::take(&mut w.suppressed)))
            .collect();
        out.sort();
        out
    }
}

/// The source of a message: the text before its first `": "`, at most
/// [`KEY_MAX`] bytes (cut at a character boundary).
fn source_key(message: &str) -> &str {
    let prefix = message.find(": ").map_or(message, |i| &message[..i]);
    let mut end = prefix.len().min(KEY_MAX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    &prefix[..end]
}

fn level_name(level: Level) -> String {
    level.as_str().to_lowercase()
}

/// One formatted line; `\r` keeps lines readable while the terminal is in
/// raw mode.
fn line(level: Level, message: &str) -> String {
    format!("vfvm: {}: {message}\r\n", level_name(level))
}

fn suppressed_line(key: &str, level: Level, n: u64) -> String {
    line(level, &format!("{key}: suppressed {n} similar messages"))
}

/// Writes `text` to `out`, ignoring errors: there is nowhere else to
/// report them.
fn write_ignoring_errors(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `line` (one line, without its end) to stderr; never panics.
pub fn stderr_line(text: &str) {
    write_ignoring_errors(&mut io::stderr().lock(), &format!("{text}\n"));
}

/// Writes `line` (one line, without its end) to stdout; never panics
/// (`vfvm iov show | head -1` closes the pipe early).
pub fn stdout_line(text: &str) {
    write_ignoring_errors(&mut io::stdout().lock(), &format!("{text}\n"));
}

struct Stderr {
    limiter: Mutex<RateLimiter>,
}

impl Stderr {
    fn limiter(&self) -> std::sync::MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs `message` at `level` to `out`, within the rate limit.
    fn emit(&self, out: &mut dyn Write, level: Level, message: &str, now: Instant) {
        let key = source_key(message);
        let Some(suppressed) = self.limiter().check(key, level, now) else {
            return;
        };
        let mut text = String::new();
        if suppressed > 0 {
            text.push_str(&suppressed_line(key, level, suppressed));
        }
        text.push_str(&line(level, message));
        write_ignoring_errors(out, &text);
    }

    /// Reports every count of suppressed lines to `out`.
    fn report_suppressed(&self, out: &mut dyn Write) {
        let text: String = self
            .limiter()
            .take_suppressed()
            .iter()
            .map(|(key, level, n)| suppressed_line(key, *level, *n))
            .collect();
        if !text.is_empty() {
            write_ignoring_errors(out, &text);
        }
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let message = record.args().to_string();
            self.emit(
                &mut io::stderr().lock(),
                record.level(),
                &message,
                Instant::now(),
            );
        }
    }

    /// Reports what was suppressed (vfvm calls this before it exits).
    fn flush(&self) {
        self.report_suppressed(&mut io::stderr().lock());
    }
}

/// Installs the logger.
pub fn init() {
    static LOGGER: std::sync::OnceLock<Stderr> = std::sync::OnceLock::new();
    let level = std::env::var("VFVM_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelFilter::Info);
    let logger = LOGGER.get_or_init(|| Stderr {
        limiter: Mutex::new(RateLimiter::new()),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr() -> Stderr {
        Stderr {
            limiter: Mutex::new(RateLimiter::new()),
        }
    }

    #[test]
    fn a_flood_from_one_source_is_cut_to_the_burst_and_reported() {
        let log = stderr();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..100_000 {
            log.emit(
                &mut out,
                Level::Warn,
                &format!("virtio-pci: bad 1-byte common config write at {i:#x}"),
                t0,
            );
        }
        // Another source is not held back by the flood.
        log.emit(&mut out, Level::Info, "pci 04.0: guest moved BAR0", t0);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), BURST as usize + 1, "{text}");
        assert!(text.ends_with("vfvm: info: pci 04.0: guest moved BAR0\r\n"));

        // The next window reports the count first, then logs again.
        let mut out = Vec::new();
        log.emit(&mut out, Level::Warn, "virtio-pci: again", t0 + WINDOW);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "vfvm: warn: virtio-pci: suppressed {} similar messages\r\nvfvm: warn: virtio-pci: again\r\n",
                100_000 - BURST
            )
        );
    }

    #[test]
    fn exit_reports_what_is_still_suppressed() {
        let log = stderr();
        let t0 = Instant::now();
        let mut sink = Vec::new();
        for _ in 0..BURST + 3 {
            log.emit(
                &mut sink,
                Level::Warn,
                "msix: ignoring unaligned table write",
                t0,
            );
            log.emit(
                &mut sink,
                Level::Error,
                "0000:01:10.0: cannot enable MSI-X",
                t0,
            );
        }
        let mut out = Vec::new();
        log.report_suppressed(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "vfvm: error: 0000:01:10.0: suppressed 3 similar messages\r\n\
             vfvm: warn: msix: suppressed 3 similar messages\r\n"
        );
        let mut again = Vec::new();
        log.report_suppressed(&mut again);
        assert!(again.is_empty(), "reported once");
    }

    #[test]
    fn source_keys() {
        assert_eq!(source_key("virtio-pci: bad write: x"), "virtio-pci");
        assert_eq!(
            source_key("0000:01:10.0: cannot enable MSI"),
            "0000:01:10.0"
        );
        assert_eq!(source_key("stopped by a signal"), "stopped by a signal");
        let long = "é".repeat(100);
        assert!(source_key(&long).len() <= KEY_MAX);
    }

    #[test]
    fn sources_are_bounded() {
        let mut l = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..10 * KEYS_MAX {
            l.check(&format!("dev{i}"), Level::Warn, t0);
        }
        assert!(l.sources.len() <= KEYS_MAX + 1);
        // Old sources make room again once their window has passed.
        assert_eq!(l.check("fresh", Level::Warn, t0 + WINDOW), Some(0));
        assert!(l.sources.contains_key("fresh"));
    }

    /// A stderr that is a closed pipe.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::EPIPE))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::EPIPE))
        }
    }

    #[test]
    fn a_broken_stderr_does_not_panic() {
        let log = stderr();
        for _ in 0..2 * BURST {
            log.emit(&mut Broken, Level::Error, "x: y", Instant::now());
        }
        log.report_suppressed(&mut Broken);
    }
}
