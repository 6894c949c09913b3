//! A minimal stderr logger: `vfvm: LEVEL: message`, level from `VFVM_LOG`
//! (error, warn, info, debug, trace; default info).

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            // \r keeps lines readable while the terminal is in raw mode.
            eprint!(
                "vfvm: {}: {}\r\n",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the logger.
pub fn init() {
    let level = std::env::var("VFVM_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelFilter::Info);
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(level);
    }
}
